"""Killing the agent never stops a VM; a restarted agent finds and reports it."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from overt.lab.guest import BOOT_MARKER
from overt.protocol.commands import HostStateCommand, VmStart, VmStatus
from overt.protocol.events import HostStateReport
from overt.protocol.host import HostState, VmState, VmStatusReport
from overt.protocol.vm import VmSpec
from tests.integration.node.conftest import Node
from tests.support.domains import wait_for_text

pytestmark = pytest.mark.vm


def test_after_sigkill_and_restart_the_vm_still_runs_and_is_reported(
        node: Node, vm: VmSpec, local_libvirt: libvirt.virConnect) -> None:
    node.ok(VmStart(vm_id=vm.id, spec=vm), VmStatusReport, key="job-restart")
    assert vm.serial_log is not None
    wait_for_text(Path(vm.serial_log), BOOT_MARKER, timeout=30)
    first_boot = node.sink.events[-1].boot_id

    node.agent.kill()
    dom = local_libvirt.lookupByName(vm.name)
    assert dom.isActive() and dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING

    node.agent.start()
    events = node.sink.wait_for(
        lambda evs: any(e.boot_id != first_boot for e in evs), what="events of the new boot")
    new_boot = [e for e in events if e.boot_id != first_boot]
    first = new_boot[0]
    assert first.seq == 1 and isinstance(first.event, HostStateReport)
    reported = {vm.vm_id: vm for vm in first.event.state.vms}
    assert reported[vm.id].state is VmState.RUNNING and reported[vm.id].name == vm.name
    assert node.ok(VmStatus(vm_id=vm.id), VmStatusReport).state is VmState.RUNNING
    state = node.ok(HostStateCommand(), HostState)
    assert any(v.vm_id == vm.id and v.state is VmState.RUNNING for v in state.vms)
    # the first result is remembered across the restart: a resent start does not act
    again = node.call(VmStart(vm_id=vm.id, spec=vm), key="job-restart")
    assert again.ok
    assert dom.isActive()


def test_stopping_the_agent_leaves_vms_running(node: Node, vm: VmSpec,
                                               local_libvirt: libvirt.virConnect) -> None:
    node.ok(VmStart(vm_id=vm.id, spec=vm), VmStatusReport)
    assert node.agent.stop() == 0
    assert local_libvirt.lookupByName(vm.name).isActive()
    node.agent.start()
    assert node.ok(VmStatus(vm_id=vm.id), VmStatusReport).state is VmState.RUNNING
