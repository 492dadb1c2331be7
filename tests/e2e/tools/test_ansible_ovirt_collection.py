"""oVirt's Ansible collection (ovirt.ovirt) against `overt demo`, as its documentation shows:
a VM with a disk and a NIC is created, tagged, started, stopped and removed by a playbook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.system.daemons import LOCAL_LIBVIRT_URI
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.vm, pytest.mark.slow]
PLAYBOOK = Path(__file__).parent / "vm_lifecycle.yml"
VM_NAME = "ansible-web"


def ansible_playbook() -> Path:
    """The venv's ansible-playbook (ansible 8 bundles ovirt.ovirt; scripts/setup installs it)."""
    command = Path(sys.executable).parent / "ansible-playbook"
    if not command.exists():
        pytest.fail(f"{command} is missing: run scripts/setup (the dev extras install ansible)")
    return command


def run_playbook(demo: Demo, stage: str, tmp_path: Path) -> str:
    variables = {"engine_url": demo.url, "engine_password": demo.password,
                 "engine_cafile": str(demo.ca_file), "vm_name": VM_NAME, "stage": stage,
                 # The modules run on this machine with the interpreter that has ovirtsdk4.
                 "ansible_python_interpreter": sys.executable}
    result = subprocess.run(
        [str(ansible_playbook()), "-i", "localhost,", "-c", "local",
         "-e", json.dumps(variables), str(PLAYBOOK)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "ANSIBLE_HOME": str(tmp_path / "ansible"),
             "ANSIBLE_NOCOLOR": "1", "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "none")})
    assert result.returncode == 0, f"ansible-playbook failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_a_playbook_creates_starts_stops_and_removes_a_vm(demo: Demo, tmp_path: Path) -> None:
    conn = demo.connect()
    vms = conn.system_service().vms_service()
    try:
        output = run_playbook(demo, "up", tmp_path)
        assert "changed: [localhost]" in output
        [vm] = vms.list(search=f"name={VM_NAME}")
        assert vm.status == types.VmStatus.UP
        service = vms.vm_service(vm.id)
        disks = [conn.follow_link(a.disk) for a in service.disk_attachments_service().list()]
        assert sorted(d.name for d in disks) == [f"{VM_NAME}-data", f"{VM_NAME}_test-guest_disk1"]
        assert next(d for d in disks if d.name == f"{VM_NAME}-data").provisioned_size == 64 << 20
        [nic] = service.nics_service().list()
        assert nic.name == "nic1"
        assert [t.name for t in service.tags_service().list()] == [f"{VM_NAME}-tag"]
        domain_xml = libvirt.open(LOCAL_LIBVIRT_URI).lookupByUUIDString(vm.id).XMLDesc()
        assert nic.mac.address in domain_xml
        # The template's disk and the data disk, beside the VM's (empty) cdrom drive.
        assert domain_xml.count("device='disk'") == 2
        assert domain_xml.count("device='cdrom'") == 1

        run_playbook(demo, "gone", tmp_path)
        assert vms.list(search=f"name={VM_NAME}") == []
        assert [t.name for t in conn.system_service().tags_service().list()] == ["root"]
        with pytest.raises(libvirt.libvirtError):
            libvirt.open(LOCAL_LIBVIRT_URI).lookupByUUIDString(vm.id)
        wait_until(lambda: not [d for d in conn.system_service().disks_service().list()
                                if d.name.startswith(VM_NAME)], 60, "the VM's disks to go")
    except (AssertionError, sdk.Error):
        demo.print_logs()
        raise
    finally:
        leftover = vms.list(search=f"name={VM_NAME}")
        demo.destroy_leftover_domains([v.id for v in leftover])
        conn.close()
