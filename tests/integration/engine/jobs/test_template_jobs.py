"""Templates from VMs, thin VMs and full clones over the fast lane: the jobs copy real
images with qemu-img on the simulated nodes' storage directories; what users see (statuses,
steps, locks, refusals) and what lies on storage are both checked."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import (
    AuditEvent,
    Disk,
    DiskAttachment,
    Job,
    Lock,
    Step,
    StorageDomain,
    Template,
    User,
    Vm,
)
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import (
    DiskFormat,
    DiskStatus,
    StorageDomainStatus,
    StorageType,
    TemplateStatus,
    VmStatus,
)
from overt.engine.queries.lookup import Ref
from overt.engine.queries.vm_spec import build_vm_spec
from overt.engine.services import templates, vms
from overt.engine.services.disk_copies import CopyTarget
from overt.engine.services.inputs import VmInput
from overt.node.errors import NodeFailure
from overt.node.storage import copies
from overt.protocol import ErrorCode
from overt.protocol.ovirt_metadata import parse_metadata, render_metadata
from overt.protocol.vm import NfsSource
from tests.support.export_directory import ExportDirectory, use_export_directories
from tests.support.loopback import LoopbackEngine

MIB = 1 << 20
BASE_BYTE, TOP_BYTE = 0x11, 0x5A  # the template's data, and what the VM wrote over it


def _qemu_io(image: Path, command: str) -> str:
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(image)], check=True,
                          capture_output=True, text=True).stdout


def _info(image: Path) -> dict[str, Any]:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(image)], check=True,
                         capture_output=True, text=True).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def _holds(image: Path, byte: int, offset: int) -> bool:
    """Whether the image reads as 64 KiB of `byte` at `offset` (qemu-io's pattern check)."""
    done = subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"read -P {byte:#x} {offset} 64k",
                           str(image)], capture_output=True, text=True, check=False)
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


async def _user(engine: LoopbackEngine) -> User:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
    assert user is not None
    return user


async def _ended(engine: LoopbackEngine, action: str) -> Job:
    async with engine.session() as session:
        job = (await session.execute(select(Job).where(Job.action == action)
                                     .order_by(Job.start_time.desc()))).scalars().first()
    assert job is not None, f"no {action} job"
    return await engine.job(job.id)


async def _image(engine: LoopbackEngine, disk_id: uuid.UUID) -> Path:
    async with engine.session() as session:
        disk = await session.get(Disk, disk_id)
        assert disk is not None
        domain = await session.get(StorageDomain, disk.storage_domain_id)
    assert domain is not None
    return Path(domain.path) / disk.image_path


async def _vm_disks(engine: LoopbackEngine, vm_id: uuid.UUID) -> list[Disk]:
    async with engine.session() as session:
        return list((await session.execute(select(Disk).join(
            DiskAttachment, DiskAttachment.disk_id == Disk.id).where(
            DiskAttachment.vm_id == vm_id))).scalars())


async def _template_disks(engine: LoopbackEngine, template_id: uuid.UUID) -> list[Disk]:
    async with engine.session() as session:
        return list((await session.execute(select(Disk).where(
            Disk.template_id == template_id))).scalars())


async def _template_id(engine: LoopbackEngine, name: str) -> uuid.UUID:
    async with engine.session() as session:
        return (await session.execute(select(Template.id).where(Template.name == name))
                ).scalar_one()


async def _counts(engine: LoopbackEngine) -> tuple[int, ...]:
    async with engine.session() as session:
        return tuple([(await session.execute(select(func.count()).select_from(table))
                       ).scalar_one() for table in (Template, Disk, Vm, Job, Lock)])


async def _vm_over_a_template(engine: LoopbackEngine) -> uuid.UUID:
    """A down VM `web` whose thin disk holds the template's bytes and its own on top."""
    node = await engine.add_host("h1")
    images = engine.directory / "h1" / "images"
    source = images / "base.raw"
    await asyncio.to_thread(source.write_bytes, bytes([BASE_BYTE]) * (8 * MIB))
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain))).scalar_one()
        await templates.import_image_template(
            session, engine.jobs, name="base", image_path=str(source), size_bytes=8 * MIB,
            storage_domain=domain, user=await _user(engine))
    assert (await _ended(engine, "disk.create")).state == "done"
    vm = await engine.act(vms.add_vm, VmInput(name="web", cluster=Ref(name="Default"),
                                              template=Ref(name="base")))
    assert (await _ended(engine, "disk.create")).state == "done"
    [disk] = await _vm_disks(engine, vm.id)
    await asyncio.to_thread(_qemu_io, await _image(engine, disk.id),
                            f"write -P {TOP_BYTE:#x} {2 * MIB} 64k")
    assert node.name == "h1"
    return vm.id


async def test_a_template_is_a_flattened_copy_of_a_down_vms_disks(
        engine: LoopbackEngine) -> None:
    vm_id = await _vm_over_a_template(engine)
    async with engine.session() as session:
        made = await templates.create_template_from_vm(
            session, engine.jobs, name="web-tpl", vm=Ref(id=vm_id), user=await _user(engine))
        assert made.status == TemplateStatus.LOCKED
        template_id = made.id
    job = await _ended(engine, "template.create")
    assert job.state == "done", job.error
    async with engine.session() as session:
        template = await session.get(Template, template_id)
        assert template is not None and template.status == TemplateStatus.OK.value
        assert template.memory_mib == (await session.get(Vm, vm_id)).memory_mib  # type: ignore[union-attr]
        steps = [s.description for s in (await session.execute(
            select(Step).where(Step.job_id == job.id))).scalars()]
        assert steps == ["Copying disk web_base_disk1 to disk web_base_disk1 on storage "
                         "domain h1-local"]
        assert (await session.execute(select(Lock))).all() == []
        events = [e.description for e in (await session.execute(select(AuditEvent))).scalars()]
        assert "Template web-tpl was created from VM web" in events
    [disk] = await _template_disks(engine, template_id)
    assert disk.status == DiskStatus.OK.value and disk.backing_disk_id is None
    image = await _image(engine, disk.id)
    assert "backing-filename" not in await asyncio.to_thread(_info, image)
    assert await asyncio.to_thread(_holds, image, BASE_BYTE, 0)
    assert await asyncio.to_thread(_holds, image, TOP_BYTE, 2 * MIB)
    # The VM is free again: it starts.
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])


async def test_thin_vms_and_clones_of_a_template_and_its_removal(
        engine: LoopbackEngine) -> None:
    vm_id = await _vm_over_a_template(engine)
    async with engine.session() as session:
        template_id = (await templates.create_template_from_vm(
            session, engine.jobs, name="web-tpl", vm=Ref(name="web"),
            user=await _user(engine))).id
    assert (await _ended(engine, "template.create")).state == "done"
    [template_disk] = await _template_disks(engine, template_id)

    thin = await engine.act(vms.add_vm, VmInput(name="thin", cluster=Ref(name="Default"),
                                                template=Ref(id=template_id)))
    assert (await _ended(engine, "disk.create")).state == "done"
    [thin_disk] = await _vm_disks(engine, thin.id)
    assert thin_disk.backing_disk_id == template_disk.id
    assert (await asyncio.to_thread(_info, await _image(engine, thin_disk.id)))[
        "full-backing-filename"] == str(await _image(engine, template_disk.id))

    clone = await engine.act(vms.add_vm, VmInput(name="full", cluster=Ref(name="Default"),
                                                 template=Ref(id=template_id)), clone=True)
    assert (await _ended(engine, "vm.clone")).state == "done"
    [clone_disk] = await _vm_disks(engine, clone.id)
    assert clone_disk.status == DiskStatus.OK.value and clone_disk.backing_disk_id is None
    assert (await engine.vm(clone.id)).template_id == BLANK_TEMPLATE_ID
    image = await _image(engine, clone_disk.id)
    assert "backing-filename" not in await asyncio.to_thread(_info, image)
    assert await asyncio.to_thread(_holds, image, TOP_BYTE, 2 * MIB)

    # The clone action on a VM: its own copy of the thin VM's disk.
    job = await engine.act(vms.clone_vm, thin.id, "thin-copy")
    assert (await engine.job(job.id)).state == "done"
    async with engine.session() as session:
        copy = (await session.execute(select(Vm).where(Vm.name == "thin-copy"))).scalar_one()
    [copy_disk] = await _vm_disks(engine, copy.id)
    assert copy_disk.backing_disk_id is None and copy_disk.id != thin_disk.id
    assert await asyncio.to_thread(_holds, await _image(engine, copy_disk.id), BASE_BYTE, 0)
    await engine.job((await engine.act(vms.start_vm, copy.id)).id)
    await engine.vm_reaches(copy.id, [VmStatus.UP])

    # Refused while a VM is a thin copy of it; removed with its disks once none is.
    before = await _counts(engine)
    with pytest.raises(Conflict, match="being used by the following VMs: thin"):
        await engine.act(templates.remove_template, template_id)
    assert await _counts(engine) == before
    await engine.job((await engine.act(vms.remove_vm, thin.id)).id)
    template_image = await _image(engine, template_disk.id)
    await engine.act(templates.remove_template, template_id)
    assert (await _ended(engine, "disk.remove")).state == "done"
    async with engine.session() as session:
        assert await session.get(Template, template_id) is None
        assert await session.get(Disk, template_disk.id) is None
    assert not await asyncio.to_thread(template_image.exists)
    assert (await engine.vm(clone.id)).status == VmStatus.DOWN.value
    assert vm_id != clone.id


async def test_bad_requests_are_refused_and_change_nothing(engine: LoopbackEngine) -> None:
    vm_id = await _vm_over_a_template(engine)
    user = await _user(engine)
    before = await _counts(engine)
    refusals: list[tuple[type[Exception], str, dict[str, Any]]] = [
        (InvalidInput, "template.vm .* does not exist", {"name": "t1", "vm": Ref(id=uuid.uuid4())}),
        (Conflict, "The name 'base' is already in use", {"name": "base", "vm": Ref(id=vm_id)}),
        (Conflict, "The name 'blank' is already in use", {"name": "blank", "vm": Ref(id=vm_id)}),
        (InvalidInput, "template.name is required", {"name": None, "vm": Ref(id=vm_id)}),
        (InvalidInput, "is not valid", {"name": "no spaces", "vm": Ref(id=vm_id)}),
    ]
    for error, message, arguments in refusals:
        with pytest.raises(error, match=message):
            async with engine.session() as session:
                await templates.create_template_from_vm(session, engine.jobs, user=user,
                                                        **arguments)
    for name, message in (("web", "The name 'web' is already in use"),
                          ("", "vm.name is required")):
        with pytest.raises(Conflict if name else InvalidInput, match=message):
            await engine.act(vms.clone_vm, vm_id, name)
    with pytest.raises(Conflict, match="The Blank template cannot be removed"):
        await engine.act(templates.remove_template, BLANK_TEMPLATE_ID)
    assert await _counts(engine) == before
    await engine.add_host("h2")
    with pytest.raises(Conflict, match="disk web_base_disk1 is on the local storage of "
                       "another host than storage domain h2-local"):
        async with engine.session() as session:
            other = (await session.execute(select(StorageDomain).where(
                StorageDomain.name == "h2-local"))).scalar_one()
            await templates.create_template_from_vm(session, engine.jobs, name="t3",
                                                    vm=Ref(id=vm_id), user=user,
                                                    default_target=CopyTarget(domain=other))
    assert await _counts(engine) == before

    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    before = await _counts(engine)
    with pytest.raises(Conflict, match="VM web is up: it must be down"):
        async with engine.session() as session:
            await templates.create_template_from_vm(session, engine.jobs, name="t2",
                                                    vm=Ref(id=vm_id), user=user)
    with pytest.raises(Conflict, match="Cannot clone VM web: it is up"):
        await engine.act(vms.clone_vm, vm_id, "web2")
    assert await _counts(engine) == before

    await engine.worker.stop()  # a clone of the template waits in the queue
    await engine.act(vms.add_vm, VmInput(name="full", cluster=Ref(name="Default"),
                                         template=Ref(name="base")), clone=True)
    before = await _counts(engine)
    with pytest.raises(Conflict, match="Template base is being copied: Creating VM full as a "
                       "clone of template base"):
        await engine.act(templates.remove_template, await _template_id(engine, "base"))
    assert await _counts(engine) == before


@pytest.mark.parametrize("what", ["template", "clone"])
async def test_a_copy_cut_short_leaves_nothing_locked_and_no_partial_image(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, what: str) -> None:
    """The node fails half-way through the copy (after writing part of the target): the
    job's compensation forgets the template or clone and removes the partial image."""
    vm_id = await _vm_over_a_template(engine)
    written: list[Path] = []

    async def cut_short(command: copies.VolumeCopy, _source: str, target: str) -> None:
        await asyncio.to_thread(Path(target).write_bytes, b"half a copy")
        written.append(Path(target))
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "copying failed: No space left on device")
    monkeypatch.setattr(copies, "_convert", cut_short)
    before = await _counts(engine)
    if what == "template":
        async with engine.session() as session:
            await templates.create_template_from_vm(session, engine.jobs, name="web-tpl",
                                                    vm=Ref(id=vm_id), user=await _user(engine))
        job = await _ended(engine, "template.create")
    else:
        job = await engine.job((await engine.act(vms.clone_vm, vm_id, "web2")).id)
    assert job.state == "failed" and "No space left on device" in job.error
    # Gone with the failure, disks included: none is left `illegal` meanwhile.
    assert (await _counts(engine))[:3] == before[:3]
    assert (await _ended(engine, "storage.remove_volumes")).state == "done"
    await engine.settled()
    assert written and not await asyncio.to_thread(written[0].exists)
    async with engine.session() as session:
        assert (await session.execute(select(Lock))).all() == []
        locked = (await session.execute(select(Disk.name).where(
            Disk.status != DiskStatus.OK))).scalars().all()
        assert locked == []
        assert (await session.execute(select(Template).where(
            Template.name == "web-tpl"))).first() is None
        assert (await session.execute(select(Vm).where(Vm.name == "web2"))).first() is None
    templates_, disks, vm_count, _jobs, _locks = await _counts(engine)
    assert (templates_, disks, vm_count) == before[:3]
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])


async def _meta(volume: Path) -> dict[str, str]:
    """A volume's `.meta` (oVirt's keys)."""
    text = await asyncio.to_thread(Path(f"{volume}.meta").read_text)
    return parse_metadata(text)


async def test_templates_thin_vms_and_clones_on_an_nfs_domain(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On NFS, in oVirt's layout: the template's volume is a flattened copy marked SHARED,
    a thin VM's volume a qcow2 layer naming it relatively (`../IMG/VOL`, PUUID), which the
    VM's spec gives libvirt as its backing; a clone is a volume of its own."""
    use_export_directories(monkeypatch, tmp_path / "nfs")

    vm_id = await _vm_over_a_template(engine)
    sd_id = uuid.uuid4()
    async with engine.session() as session:
        host_id = (await session.execute(select(StorageDomain.host_id))).scalar_one()
        session.add(StorageDomain(id=sd_id, name="nfs1", storage_type=StorageType.NFS.value,
                                  address="10.9.9.9", path="/export", host_id=host_id,
                                  status=StorageDomainStatus.ACTIVE.value))
    export = ExportDirectory("10.9.9.9", "/export")
    await asyncio.to_thread(export.makedirs, f"/{sd_id}/dom_md")
    await asyncio.to_thread(export.write_bytes, f"/{sd_id}/dom_md/metadata",
                            render_metadata({"SDUUID": str(sd_id)}, checksum=True, eof=False))

    async with engine.session() as session:
        domain = await session.get(StorageDomain, sd_id)
        template_id = (await templates.create_template_from_vm(
            session, engine.jobs, name="nfs-tpl", vm=Ref(id=vm_id), user=await _user(engine),
            default_target=CopyTarget(domain=domain))).id
    job = await _ended(engine, "template.create")
    assert job.state == "done", job.error
    [template_disk] = await _template_disks(engine, template_id)
    assert template_disk.storage_domain_id == sd_id
    image, volume = template_disk.image_path.split("/")[2:]
    assert image == str(template_disk.id)
    meta = await _meta(export.base / template_disk.image_path)
    assert (meta["VOLTYPE"], meta["LEGALITY"], meta["IMAGE"]) == ("SHARED", "LEGAL", image)
    template_image = export.base / template_disk.image_path
    assert await asyncio.to_thread(_holds, template_image, TOP_BYTE, 2 * MIB)

    thin = await engine.act(vms.add_vm, VmInput(name="thin", cluster=Ref(name="Default"),
                                                template=Ref(id=template_id)))
    assert (await _ended(engine, "disk.create")).state == "done"
    [thin_disk] = await _vm_disks(engine, thin.id)
    thin_image = export.base / thin_disk.image_path
    # The backing is the template volume's whole URL (the fast lane's export: a path).
    assert (await asyncio.to_thread(_info, thin_image))["backing-filename"] == \
        str(template_image)
    assert (await _meta(thin_image))["PUUID"] == volume
    assert await asyncio.to_thread(_holds, thin_image, TOP_BYTE, 2 * MIB)
    async with engine.session() as session:
        spec = await build_vm_spec(session, await engine.vm(thin.id), vnc_password="secret")
    [disk_spec] = spec.disks
    assert disk_spec.source == NfsSource(server="10.9.9.9",
                                         path=f"/export/{thin_disk.image_path}")
    assert disk_spec.backing == NfsSource(server="10.9.9.9",
                                          path=f"/export/{template_disk.image_path}")

    # A clone of the thin VM reads the whole chain, flattened.
    job = await engine.act(vms.clone_vm, thin.id, "thin-copy")
    assert (await engine.job(job.id)).state == "done"
    async with engine.session() as session:
        copy_id = (await session.execute(select(Vm.id).where(Vm.name == "thin-copy"))
                   ).scalar_one()
    [copy_disk] = await _vm_disks(engine, copy_id)
    copy_image = export.base / copy_disk.image_path
    assert "backing-filename" not in await asyncio.to_thread(_info, copy_image)
    assert await asyncio.to_thread(_holds, copy_image, TOP_BYTE, 2 * MIB)
    assert await asyncio.to_thread(_holds, copy_image, BASE_BYTE, 0)

    clone = await engine.act(vms.add_vm, VmInput(name="full", cluster=Ref(name="Default"),
                                                 template=Ref(id=template_id)), clone=True)
    assert (await _ended(engine, "vm.clone")).state == "done"
    [clone_disk] = await _vm_disks(engine, clone.id)
    clone_image = export.base / clone_disk.image_path
    assert clone_disk.storage_domain_id == sd_id
    assert "backing-filename" not in await asyncio.to_thread(_info, clone_image)
    assert (await _meta(clone_image))["VOLTYPE"] == "LEAF"
    assert await asyncio.to_thread(_holds, clone_image, BASE_BYTE, 0)
    await engine.job((await engine.act(vms.start_vm, clone.id)).id)
    await engine.vm_reaches(clone.id, [VmStatus.UP])

    # Removing the thin VM takes its volume away; the template's stays.
    assert (await engine.job((await engine.act(vms.remove_vm, thin.id)).id)).state == "done"
    assert not await asyncio.to_thread(thin_image.parent.exists)
    assert await asyncio.to_thread(_holds, template_image, TOP_BYTE, 2 * MIB)


async def test_a_template_disk_may_have_another_format_than_the_vms(
        engine: LoopbackEngine) -> None:
    """oVirt's per-disk override (`vm.disk_attachments.disk.format`): a raw copy."""
    vm_id = await _vm_over_a_template(engine)
    [source] = await _vm_disks(engine, vm_id)
    async with engine.session() as session:
        template_id = (await templates.create_template_from_vm(
            session, engine.jobs, name="raw-tpl", vm=Ref(id=vm_id), user=await _user(engine),
            targets={source.id: CopyTarget(format=DiskFormat.RAW)})).id
    assert (await _ended(engine, "template.create")).state == "done"
    [disk] = await _template_disks(engine, template_id)
    image = await _image(engine, disk.id)
    assert disk.format == "raw" and image.suffix == ".raw"
    assert (await asyncio.to_thread(_info, image))["format"] == "raw"
    data = await asyncio.to_thread(image.read_bytes)
    assert data[:16] == bytes([BASE_BYTE]) * 16
    assert data[2 * MIB:2 * MIB + 16] == bytes([TOP_BYTE]) * 16


async def test_an_engine_that_dies_mid_copy_leaves_the_job_to_a_successor(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker stops mid-copy (the engine's process dies): the job's lease lapses, another
    worker takes it, the copy is made again over the half-written target and the template
    ends `ok`; nothing stays locked."""
    vm_id = await _vm_over_a_template(engine)
    convert, go_on = copies._convert, asyncio.Event()
    started: list[Path] = []

    async def stalls_first(command: copies.VolumeCopy, source: str, target: str) -> None:
        if not started:
            started.append(Path(target))
            await asyncio.to_thread(Path(target).write_bytes, b"half a copy")
            await go_on.wait()
        await convert(command, source, target)
    monkeypatch.setattr(copies, "_convert", stalls_first)
    async with engine.session() as session:
        template_id = (await templates.create_template_from_vm(
            session, engine.jobs, name="web-tpl", vm=Ref(id=vm_id),
            user=await _user(engine))).id
    async def copying() -> bool:
        return bool(started)
    await engine.eventually(copying, what="the copy to start")
    await engine.worker.stop()  # the engine dies: its job is abandoned mid-copy
    async with engine.session() as session:
        job = (await session.execute(select(Job).where(Job.action == "template.create"))
               ).scalar_one()
        assert (job.state, (await session.get(Template, template_id)).status) == (  # type: ignore[union-attr]
            "running", TemplateStatus.LOCKED.value)
        job.lease_until = job.start_time  # its lease lapsed long ago

    ended = await engine.successor_ends(job.id, go_on)
    assert (ended.state, ended.attempts) == ("done", 2), ended.error
    async with engine.session() as session:
        template = await session.get(Template, template_id)
        assert template is not None and template.status == TemplateStatus.OK.value
        assert (await session.execute(select(Lock))).all() == []
    [disk] = await _template_disks(engine, template_id)
    assert disk.status == DiskStatus.OK.value
    image = await _image(engine, disk.id)
    assert image == started[0]
    assert await asyncio.to_thread(_holds, image, TOP_BYTE, 2 * MIB)
