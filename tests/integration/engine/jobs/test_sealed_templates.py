"""Sealed templates (oVirt's `seal=true`) over the fast lane: after the copies, the job has a
"Sealing template NAME" step in which the node runs virt-sysprep on the template's new
boot volume; here the node's virt-sysprep run is recorded instead of booting libguestfs's
appliance (tests/e2e/demo/test_sealed_template.py runs the real one). A failed seal
fails the job with virt-sysprep's words and removes the half-made template."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from overt.engine.db.tables import Disk, Job, Lock, Step, StorageDomain, Template, User, Vm
from overt.engine.jobs.handlers import disk_copies
from overt.engine.model.errors import Conflict
from overt.engine.model.status import DiskStatus, TemplateStatus
from overt.engine.queries.lookup import Ref
from overt.engine.services import templates, vms
from overt.engine.services.inputs import VmInput
from overt.node.errors import NodeFailure
from overt.node.storage import sealing
from overt.protocol import ErrorCode
from overt.protocol.storage import SealProgress
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20
NO_OS = ("virt-sysprep: error: no operating systems were found in the guest image")


async def _user(engine: LoopbackEngine) -> User:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
    assert user is not None
    return user


async def _down_vm(engine: LoopbackEngine, os_type: str = "other_linux") -> uuid.UUID:
    """A down VM `web` with one disk (a thin one over an imported template `base`)."""
    await engine.add_host("h1")
    source = engine.directory / "h1" / "images" / "base.raw"
    await asyncio.to_thread(source.write_bytes, b"\x11" * (4 * MIB))
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain))).scalar_one()
        await templates.import_image_template(
            session, engine.jobs, name="base", image_path=str(source), size_bytes=4 * MIB,
            storage_domain=domain, user=await _user(engine))
    await engine.job(await _last_job(engine, "disk.create"))
    vm = await engine.act(vms.add_vm, VmInput(name="web", cluster=Ref(name="Default"),
                                              template=Ref(name="base")))
    await engine.job(await _last_job(engine, "disk.create"))
    async with engine.session() as session:
        row = await session.get(Vm, vm.id)
        assert row is not None
        row.os_type = os_type
    return vm.id


async def _last_job(engine: LoopbackEngine, action: str) -> uuid.UUID:
    async with engine.session() as session:
        return (await session.execute(select(Job.id).where(Job.action == action)
                                      .order_by(Job.start_time.desc()))).scalars().first()  # type: ignore[return-value]


async def _make(engine: LoopbackEngine, vm_id: uuid.UUID) -> Job:
    async with engine.session() as session:
        made = await templates.create_template_from_vm(
            session, engine.jobs, name="web-tpl", vm=Ref(id=vm_id), user=await _user(engine),
            seal=True)
        assert made.status == TemplateStatus.LOCKED
    return await engine.job(await _last_job(engine, "template.create"))


async def _steps(engine: LoopbackEngine, job: Job) -> list[tuple[str, str]]:
    async with engine.session() as session:
        return [(s.description, s.status) for s in (await session.execute(
            select(Step).where(Step.job_id == job.id).order_by(Step.number))).scalars()]


async def test_a_sealed_template_has_its_boot_volume_sealed_after_the_copy(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    vm_id = await _down_vm(engine)
    runs: list[tuple[list[str], bool]] = []

    async def recorded(disk_args: list[str], timeout_s: float, *, tcg: bool, said: str) -> str:
        runs.append((disk_args, tcg))
        return '[  28.0] Performing "machine-id" ...\n[  30.1] Performing "ssh-hostkeys" ...\n'
    monkeypatch.setattr(sealing, "run_sysprep", recorded)
    job = await _make(engine, vm_id)
    assert job.state == "done", job.error
    assert await _steps(engine, job) == [
        ("Copying disk web_base_disk1 to disk web_base_disk1 on storage domain h1-local",
         "finished"),
        ("Sealing template web-tpl", "finished")]
    async with engine.session() as session:
        template = (await session.execute(select(Template).where(
            Template.name == "web-tpl"))).scalar_one()
        assert template.status == TemplateStatus.OK.value
        disk = (await session.execute(select(Disk).where(
            Disk.template_id == template.id))).scalar_one()
        domain = await session.get(StorageDomain, disk.storage_domain_id)
    assert domain is not None
    # virt-sysprep opened the template's own new volume (never the VM's), as qcow2.
    [(disk_args, _tcg)] = runs
    assert disk_args == ["--format", "qcow2", "-a", str(Path(domain.path) / disk.image_path)]


async def test_the_seal_step_shows_virt_sysprep_s_stage_and_progress(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    vm_id = await _down_vm(engine)
    seen = asyncio.Event()

    async def half_way(disk_args: list[str], timeout_s: float, *, tcg: bool, said: str) -> str:
        sealing._running[said] = SealProgress(running=True, stage="ssh-hostkeys",
                                              operations_done=16, percent=50)
        try:
            await asyncio.wait_for(seen.wait(), 30)
        finally:
            sealing._running.pop(said, None)
        return ""
    monkeypatch.setattr(sealing, "run_sysprep", half_way)
    monkeypatch.setattr(disk_copies, "SEAL_PROGRESS_INTERVAL_S", 0.05)
    async with engine.session() as session:
        await templates.create_template_from_vm(session, engine.jobs, name="web-tpl",
                                                vm=Ref(id=vm_id), user=await _user(engine),
                                                seal=True)

    async def shown() -> bool:
        async with engine.session() as session:
            return (await session.execute(select(Step).where(
                Step.description == "Sealing template web-tpl: ssh-hostkeys",
                Step.progress == 50))).first() is not None
    await engine.eventually(shown)
    seen.set()
    job = await engine.job(await _last_job(engine, "template.create"))
    assert job.state == "done", job.error
    assert (await _steps(engine, job))[-1] == ("Sealing template web-tpl", "finished")


async def test_a_seal_that_fails_fails_the_job_and_removes_the_template(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    vm_id = await _down_vm(engine)
    sealed: list[str] = []

    async def no_os(disk_args: list[str], timeout_s: float, *, tcg: bool, said: str) -> str:
        sealed.append(disk_args[-1])
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, f"sealing {said} failed: {NO_OS}")
    monkeypatch.setattr(sealing, "run_sysprep", no_os)
    job = await _make(engine, vm_id)
    assert job.state == "failed" and NO_OS in (job.error or "")
    steps = await _steps(engine, job)
    assert steps[-1] == ("Sealing template web-tpl", "failed")
    await engine.job(await _last_job(engine, "storage.remove_volumes"))
    await engine.settled()
    assert sealed and not await asyncio.to_thread(Path(sealed[0]).exists)
    async with engine.session() as session:
        assert (await session.execute(select(Template).where(
            Template.name == "web-tpl"))).first() is None
        assert (await session.execute(select(Lock))).all() == []
        assert (await session.execute(select(Disk.name).where(
            Disk.status != DiskStatus.OK))).scalars().all() == []


async def test_sealing_is_refused_for_a_windows_vm(engine: LoopbackEngine) -> None:
    vm_id = await _down_vm(engine, os_type="windows_2019x64")
    with pytest.raises(Conflict, match="VM web runs Windows: sealing"):
        await _make(engine, vm_id)
    async with engine.session() as session:
        assert (await session.execute(select(Template).where(
            Template.name == "web-tpl"))).first() is None


async def test_virt_sysprep_reports_its_own_error_line() -> None:
    out = ("[   0.0] Examining the guest ...\n" + NO_OS + "\n\nIf reporting bugs, run "
           "virt-sysprep with debugging enabled\n")
    assert sealing.error_of(out) == NO_OS
