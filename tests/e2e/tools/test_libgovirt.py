"""remote-viewer's oVirt client library (libgovirt, behind `ovirt://` URIs) against `overt
demo`: it fetches the engine's CA, signs in with the Basic credentials it sends only when
challenged, lists the VMs and gets a console ticket that is the VM's VNC password.

libgovirt is reached from Debian's python3 through gobject-introspection (the venv's Python
has no gi). It fetches the CA through GIO, that is gvfs over HTTPS: as on a desktop that
trusts the engine's certificate, the client runs with the engine CA added to the system
trust store, in a mount namespace of its own so the machine's store is untouched.
"""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import libvirt
import ovirtsdk4.types as types
import pytest

from overt.system.daemons import LOCAL_LIBVIRT_URI
from tests.support.demo import Demo

pytestmark = [pytest.mark.vm, pytest.mark.slow]
CLIENT = Path(__file__).parent / "govirt_client.py"
SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEM_TRUST = "/etc/ssl/certs/ca-certificates.crt"


def require_libgovirt() -> None:
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GoVirt', '1.0')"],
        capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.fail("libgovirt is not usable from Debian's python3 (install gir1.2-govirt-1.0, "
                    f"python3-gi, gvfs-backends, dbus-daemon: scripts/setup):\n{probe.stderr}")


def run_govirt(demo: Demo, vm_name: str, tmp_path: Path) -> dict[str, object]:
    require_libgovirt()
    trust = tmp_path / "trust.pem"
    trust.write_text(Path(SYSTEM_TRUST).read_text() + demo.ca_file.read_text())
    host = urlsplit(demo.url).netloc
    script = f'mount --bind "$0" {SYSTEM_TRUST} && exec dbus-run-session -- "$@"'
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, str(trust),
         SYSTEM_PYTHON, str(CLIENT), host, "admin@internal", demo.password, vm_name],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"libgovirt client failed:\n{result.stdout}\n{result.stderr}"
    seen: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return seen


def vnc_password(vm_id: str) -> str | None:
    xml = libvirt.open(LOCAL_LIBVIRT_URI).lookupByUUIDString(vm_id).XMLDesc(
        libvirt.VIR_DOMAIN_XML_SECURE)
    graphics = ET.fromstring(xml).find("devices/graphics[@type='vnc']")
    assert graphics is not None
    return graphics.get("passwd")


def test_libgovirt_fetches_the_ca_the_vms_and_a_console_ticket(
        demo: Demo, running_vm: types.Vm, tmp_path: Path) -> None:
    seen = run_govirt(demo, running_vm.name, tmp_path)

    assert seen["ca"] == demo.ca_file.read_text()
    vms = seen["vms"]
    assert isinstance(vms, dict)
    assert vms[running_vm.name]["id"] == running_vm.id
    assert seen["vm_up"] is True
    display = seen["display"]
    assert isinstance(display, dict)
    assert display["expiry"] == 120
    assert display["address"] == running_vm.display.address
    assert display["port"] == running_vm.display.port > 0
    assert len(display["ticket"]) == 8
    assert vnc_password(running_vm.id) == display["ticket"]
