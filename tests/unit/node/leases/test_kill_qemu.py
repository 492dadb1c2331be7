"""When libvirt cannot destroy a VM, the keeper kills its QEMU found by `-uuid`."""

from __future__ import annotations

import subprocess
import sys
import uuid

from overt.node.leases.service import kill_qemu


def test_the_vms_qemu_is_killed_and_no_other() -> None:
    vm, other = uuid.uuid4(), uuid.uuid4()
    qemus = {target: subprocess.Popen(  # a stand-in named like QEMU, with its -uuid
        ["qemu-system-x86_64", "-c", "import time; time.sleep(60)", "-uuid", str(target)],
        executable=sys.executable) for target in (vm, other)}
    try:
        assert kill_qemu(vm)
        assert qemus[vm].wait(timeout=10) == -9
        assert qemus[other].poll() is None
        assert not kill_qemu(uuid.uuid4())
    finally:
        for process in qemus.values():
            process.kill()
            process.wait()
