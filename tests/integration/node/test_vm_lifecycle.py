"""VMs driven through the agent's API (direct transport) on real libvirt/QEMU (TCG)."""

from __future__ import annotations

import time
from pathlib import Path

import libvirt
import pytest

from overt.lab.guest import BOOT_MARKER
from overt.protocol.commands import (
    VmDefine,
    VmDestroy,
    VmPause,
    VmReboot,
    VmResume,
    VmSetTicket,
    VmShutdown,
    VmStart,
    VmStatus,
    VmTicket,
    VmUndefine,
)
from overt.protocol.events import StatsSample
from overt.protocol.host import VmState, VmStatusReport
from overt.protocol.vm import VmSpec
from tests.integration.node.conftest import Node
from tests.support.domains import wait_for_text

pytestmark = pytest.mark.vm

BOOT_TIMEOUT_S = 30


def _boot(node: Node, vm: VmSpec, key: str | None = None) -> VmStatusReport:
    report = node.ok(VmStart(vm_id=vm.id, spec=vm), VmStatusReport, key)
    assert vm.serial_log is not None
    wait_for_text(Path(vm.serial_log), BOOT_MARKER, timeout=BOOT_TIMEOUT_S)
    return report


def _wait_state(node: Node, vm: VmSpec, state: VmState, timeout: float = 30) -> None:
    node.sink.wait_for(lambda _e: any(ev.vm.state is state for ev in node.lifecycle(vm.id)),
                       timeout, what=f"a {state.value} event of {vm.name}")


def test_a_started_vm_boots_and_reports_running(node: Node, vm: VmSpec,
                                               local_libvirt: libvirt.virConnect) -> None:
    report = _boot(node, vm, key="job-start-1")
    assert report.vm_id == vm.id and report.state is VmState.RUNNING
    assert report.spec_version == 1 and report.vnc_port is not None
    dom = local_libvirt.lookupByName(vm.name)
    assert dom.UUIDString() == str(vm.id)
    assert "overt.dev/xmlns/vm/1" in dom.XMLDesc(0)
    status = node.ok(VmStatus(vm_id=vm.id), VmStatusReport)
    assert status.state is VmState.RUNNING


def test_graceful_shutdown_powers_the_guest_off(node: Node, vm: VmSpec) -> None:
    _boot(node, vm)
    report = node.ok(VmShutdown(vm_id=vm.id, timeout_s=60, force_after_timeout=False),
                     VmStatusReport)
    assert report.state is VmState.GONE  # a transient domain is gone once off
    assert vm.serial_log is not None
    assert "ACPI power button pressed" in Path(vm.serial_log).read_text()
    _wait_state(node, vm, VmState.GONE)
    details = [ev.detail for ev in node.lifecycle(vm.id)]
    assert "stopped/shutdown" in details and "stopped/destroyed" not in details


def test_destroy_stops_the_vm_at_once(node: Node, vm: VmSpec) -> None:
    _boot(node, vm)
    report = node.ok(VmDestroy(vm_id=vm.id), VmStatusReport)
    assert report.state is VmState.GONE
    _wait_state(node, vm, VmState.GONE)
    assert "stopped/destroyed" in [ev.detail for ev in node.lifecycle(vm.id)]


def test_pause_and_resume(node: Node, vm: VmSpec, local_libvirt: libvirt.virConnect) -> None:
    _boot(node, vm)
    assert node.ok(VmPause(vm_id=vm.id), VmStatusReport).state is VmState.PAUSED
    dom = local_libvirt.lookupByName(vm.name)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    assert node.ok(VmResume(vm_id=vm.id), VmStatusReport).state is VmState.RUNNING
    refused = node.call(VmResume(vm_id=vm.id))
    assert not refused.ok and refused.error is not None
    assert refused.error.code.value == "invalid_state", refused.error
    _wait_state(node, vm, VmState.PAUSED)
    node.sink.wait_for(lambda _e: [ev.detail for ev in node.lifecycle(vm.id)][-1:]
                       == ["resumed/unpaused"], what="the resumed event")


def test_reboot_boots_the_guest_again(node: Node, vm: VmSpec) -> None:
    _boot(node, vm)
    report = node.ok(VmReboot(vm_id=vm.id), VmStatusReport)
    assert report.state is VmState.RUNNING
    assert vm.serial_log is not None
    log = Path(vm.serial_log)
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while log.read_text(errors="replace").count(BOOT_MARKER) < 2:
        assert time.monotonic() < deadline, f"no second boot:\n{log.read_text()}"
        time.sleep(0.2)
    node.sink.wait_for(lambda _e: "rebooted" in [ev.detail for ev in node.lifecycle(vm.id)],
                       what="the reboot event")
    assert node.ok(VmStatus(vm_id=vm.id), VmStatusReport).state is VmState.RUNNING


def test_stats_show_the_cpu_time_of_a_running_vm_rising(node: Node, vm: VmSpec) -> None:
    _boot(node, vm)

    def samples() -> list[int]:
        return [s.cpu_time_ns for e in node.sink.events if isinstance(e.event, StatsSample)
                for s in e.event.vms if s.vm_id == vm.id]
    node.sink.wait_for(lambda _e: len(samples()) >= 3, what="three stats samples of the VM")
    cpu = samples()
    assert cpu == sorted(cpu) and cpu[-1] > cpu[0]
    last = next(s for e in reversed(node.sink.events) if isinstance(e.event, StatsSample)
                for s in e.event.vms if s.vm_id == vm.id)
    assert last.memory_mib == 256 and last.disk_read_bytes > 0
    sample = next(e for e in reversed(node.sink.events) if isinstance(e.event, StatsSample))
    assert sample.seq is None and sample.event.host.memory_total_mib > 0


def test_events_of_each_transition_arrive_in_order(node: Node, vm: VmSpec) -> None:
    _boot(node, vm)
    node.ok(VmPause(vm_id=vm.id), VmStatusReport)
    node.ok(VmResume(vm_id=vm.id), VmStatusReport)
    node.ok(VmDestroy(vm_id=vm.id), VmStatusReport)
    _wait_state(node, vm, VmState.GONE)
    mine = [e for e in node.sink.events
            if e.event.type == "vm.lifecycle" and e.event.vm.vm_id == vm.id]  # type: ignore[union-attr]
    states = [e.event.vm.state for e in mine  # type: ignore[union-attr]
              if e.event.vm.state is not VmState.SHUTTING_DOWN]  # type: ignore[union-attr]
    transitions = [s for i, s in enumerate(states) if i == 0 or s is not states[i - 1]]
    assert transitions == [VmState.RUNNING, VmState.PAUSED, VmState.RUNNING, VmState.GONE]
    assert [e.seq or 0 for e in mine] == sorted(e.seq or 0 for e in mine)
    seqs = [e.seq for e in node.sink.events if e.seq is not None and
            e.boot_id == mine[0].boot_id]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gaps, no reordering


def test_a_resent_command_does_not_act_twice(node: Node, vm: VmSpec,
                                             local_libvirt: libvirt.virConnect) -> None:
    first = _boot(node, vm, key="job-42/step-1")
    again = node.call(VmStart(vm_id=vm.id, spec=vm), key="job-42/step-1")
    assert again.ok and VmStatusReport.model_validate(again.result) == first
    fresh = node.call(VmStart(vm_id=vm.id, spec=vm), key="job-43/step-1")
    assert not fresh.ok and fresh.error is not None
    assert fresh.error.code.value == "invalid_state"  # a new job would start it again
    assert [d.name() for d in local_libvirt.listAllDomains(0)].count(vm.name) == 1
    started = [ev for ev in node.lifecycle(vm.id) if ev.detail == "started/booted"]
    assert len(started) == 1


def test_a_defined_vm_starts_stops_and_is_undefined(
        node: Node, vm: VmSpec, local_libvirt: libvirt.virConnect) -> None:
    assert node.ok(VmDefine(spec=vm), VmStatusReport).state is VmState.SHUTOFF
    assert local_libvirt.lookupByName(vm.name).isPersistent()
    assert node.ok(VmStart(vm_id=vm.id), VmStatusReport).state is VmState.RUNNING
    assert vm.serial_log is not None
    wait_for_text(Path(vm.serial_log), BOOT_MARKER, timeout=BOOT_TIMEOUT_S)
    refused = node.call(VmUndefine(vm_id=vm.id))
    assert refused.error is not None and refused.error.code.value == "invalid_state"
    assert node.ok(VmDestroy(vm_id=vm.id), VmStatusReport).state is VmState.SHUTOFF
    assert node.ok(VmUndefine(vm_id=vm.id), VmStatusReport).state is VmState.GONE
    missing = node.call(VmStatus(vm_id=vm.id))
    assert missing.error is not None and missing.error.code.value == "no_such_vm"


def test_a_console_ticket_sets_the_vnc_password(node: Node, vm: VmSpec,
                                               local_libvirt: libvirt.virConnect) -> None:
    report = _boot(node, vm)
    ticket = node.ok(VmSetTicket(vm_id=vm.id, password="n3wpass", expiry_s=60), VmTicket)
    assert ticket.vnc_port == report.vnc_port and ticket.expires_at > time.time()
    secure = local_libvirt.lookupByName(vm.name).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    assert 'passwd="n3wpass"' in secure.replace("'", '"')
    assert "n3wpass" not in node.agent.log() and "t0psecr" not in node.agent.log()
