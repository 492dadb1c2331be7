"""`scripts/demo` on a machine whose libvirtd has never run: an empty /var/cache/libvirt,
no libvirtd started. The demo starts libvirtd, whose first call probes QEMU, and comes up.

The machine is a private mount namespace (this machine's shared libvirtd is not touched):
its own /etc/libvirt, /var/lib/libvirt, /var/cache/libvirt and /run.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4.types as types
import pytest

from tests.e2e.demo.conftest import new_demo
from tests.support.demo import Demo
from tests.support.private_libvirt import PrivateLibvirt

pytestmark = [pytest.mark.slow]
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def fresh_machine() -> Iterator[tuple[Demo, PrivateLibvirt]]:
    demo = new_demo(None)
    machine = PrivateLibvirt(demo.data_dir.parent / "machine", fresh_cache=True)
    machine.make_namespace()
    demo.command = machine.enter([str(REPO / "scripts" / "demo")])
    try:
        yield demo, machine
    finally:
        demo.stop()
        demo.print_logs()
        machine.stop()
        shutil.rmtree(demo.data_dir.parent, ignore_errors=True)


def test_scripts_demo_comes_up_where_libvirtd_never_ran(
    fresh_machine: tuple[Demo, PrivateLibvirt]
) -> None:
    demo, machine = fresh_machine
    # Empty, or not there at all where this machine's libvirtd never probed QEMU yet.
    cache = machine.capabilities_cache
    assert not cache.exists() or not any(cache.iterdir())
    assert not machine.socket.exists()
    demo.start(timeout=420)
    output = re.sub(r"\x1b\[[0-9;]*m", "", demo.output())
    assert "setup: Python environment (.venv): done in" in output
    assert "starting libvirtd: done in" in output
    assert "the agent answers on" in output
    # The libvirtd that answers is the namespace's own, and it probed QEMU for the first time.
    assert machine.socket.exists()
    assert any(machine.capabilities_cache.glob("*.xml"))
    conn = demo.connect()
    try:
        system = conn.system_service()
        local = system.hosts_service().list(search="name=local")[0]
        assert local.status == types.HostStatus.UP
        assert local.hardware_information.uuid == str(machine.host_uuid)
        template = system.templates_service().list(search="name=test-guest")[0]
        assert template.status == types.TemplateStatus.OK
    finally:
        conn.close()
