"""Job kinds as data: every kind has a unit, stored rows load back (also rows stored by an
earlier engine), bad rows are refused with what is wrong, and locks come in level order."""

from __future__ import annotations

import uuid

import pytest

from overt.engine.db.tables import Job
from overt.engine.jobs import kinds
from overt.engine.jobs.handlers import UNITS
from overt.engine.jobs.kinds import (
    KINDS,
    CreateDisk,
    InstallHost,
    RefreshHost,
    RemoveDisk,
    SetTicket,
    ShutdownVm,
    StartVm,
    StopVm,
    UnreadableJob,
)

VM, HOST, DISK, TEMPLATE = (uuid.uuid4() for _ in range(4))


def _row(action: str, params: dict[str, object]) -> Job:
    return Job(id=uuid.uuid4(), action=action, params=params, description="a job")


def test_every_kind_has_a_unit_and_a_unique_name() -> None:
    assert set(UNITS) == set(KINDS.values())
    assert len({spec.kind for spec in KINDS.values()}) == len(KINDS)


@pytest.mark.parametrize("spec", [
    StartVm(vm_id=VM, host_id=HOST), StartVm(vm_id=VM, host_id=HOST, vnc_password="x1"),
    StopVm(vm_id=VM, reason="maintenance"), ShutdownVm(vm_id=VM),
    SetTicket(vm_id=VM, host_id=HOST, password="s3cret", expiry_s=30),
    CreateDisk(disk_id=DISK, copy_from="/srv/image.qcow2", template_id=TEMPLATE),
    RemoveDisk(disk_id=DISK), InstallHost(host_id=HOST), RefreshHost(host_id=HOST),
])
def test_a_stored_spec_loads_back_equal(spec: kinds.JobSpec) -> None:
    loaded = kinds.load(_row(spec.kind, kinds.payload(spec)))
    assert loaded == spec and type(loaded) is type(spec)


@pytest.mark.parametrize(("action", "params", "expected"), [
    ("vm.start", {"vm_id": str(VM)}, StartVm(vm_id=VM)),
    ("vm.stop", {"vm_id": str(VM), "reason": ""}, StopVm(vm_id=VM)),
    ("vm.ticket", {"vm_id": str(VM), "password": "s3cret", "expiry_s": 120},
     SetTicket(vm_id=VM, password="s3cret")),
    ("disk.create", {"disk_id": str(DISK), "copy_from": None}, CreateDisk(disk_id=DISK)),
])
def test_rows_stored_by_the_previous_engine_still_load(
        action: str, params: dict[str, object], expected: kinds.JobSpec) -> None:
    assert kinds.load(_row(action, params)) == expected


def test_a_secret_leaves_the_stored_payload_once_dropped() -> None:
    spec = SetTicket(vm_id=VM, password="s3cret")
    assert "password" not in kinds.payload(spec.model_copy(update={"password": None}))


@pytest.mark.parametrize(("action", "params", "said"), [
    ("vm.teleport", {"vm_id": str(VM)}, "of a kind this engine does not know ('vm.teleport')"),
    ("vm.shutdown", {"vm_id": str(VM), "timeout_s": 5}, "timeout_s: Extra inputs"),
    ("vm.stop", {}, "vm_id: Field required"),
    ("disk.remove", {"disk_id": "not-a-uuid"}, "disk_id: Input should be a valid UUID"),
])
def test_an_unreadable_row_is_refused_saying_what_is_wrong(
        action: str, params: dict[str, object], said: str) -> None:
    with pytest.raises(UnreadableJob) as refused:
        kinds.load(_row(action, params))
    assert said in str(refused.value)


def test_locks_are_declared_by_the_kind_and_taken_in_level_order() -> None:
    assert StopVm(vm_id=VM).locks() == (("vm", VM),)
    assert SetTicket(vm_id=VM).locks() == () and RefreshHost(host_id=HOST).locks() == ()
    declared = CreateDisk(disk_id=DISK, template_id=TEMPLATE).locks()
    assert kinds.ordered((*declared, ("host", HOST), ("vm", VM), ("cluster", HOST))) == [
        ("cluster", HOST), ("host", HOST), ("vm", VM), ("disk", DISK), ("template", TEMPLATE)]


def test_the_job_row_names_the_vm_and_host_the_spec_is_about() -> None:
    start = StartVm(vm_id=VM, host_id=HOST)
    assert (start.vm(), start.host()) == (VM, HOST)
    assert (InstallHost(host_id=HOST).vm(), InstallHost(host_id=HOST).host()) == (None, HOST)
