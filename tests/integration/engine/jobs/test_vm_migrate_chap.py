"""Migrating a VM whose disk is on a CHAP-protected iSCSI domain: the destination's
libvirtd gets the iSCSI secret before the migration starts (the simulated destination,
as libvirt, refuses a VM whose disks name a secret it lacks); the source drops it once
the VM has left, the destination when the migration fails."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable

import pytest
from sqlalchemy import select

from overt.engine.db.tables import (
    AuditEvent,
    Disk,
    DiskAttachment,
    Job,
    Step,
    StorageDomain,
    Vm,
)
from overt.engine.model.status import DiskStatus, StorageDomainStatus, StorageType, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.secrets import Secret
from overt.engine.services import vms
from overt.node.leases.export import DomainRef
from overt.node.leases.keeper import DomainAreas
from overt.node.storage.chap import secret_id
from overt.protocol.commands import VmPrepareIncoming
from overt.protocol.vm import ChapAuth
from tests.integration.engine.jobs.test_vm_migrate_lease import SLOT, keepers  # noqa: F401
from tests.support.loopback import LoopbackEngine
from tests.unit.node.leases.test_keeper import Node

TARGET = "iqn.2024-01.dev.overt:chap"
PASSWORD = "Chap-Secret-0451"
CHAP = {secret_id(TARGET): ChapAuth(username="init1", password=PASSWORD)}
MIB = 1 << 20


async def _chap_vm(engine: LoopbackEngine, name: str = "web") -> uuid.UUID:
    """A running VM whose boot disk is a volume of an iSCSI domain with CHAP."""
    box = engine.worker.services.secret_box()
    vm_id = await engine.add_vm(name)
    async with engine.session() as session:
        domain = (await session.execute(select(StorageDomain).where(
            StorageDomain.name == "san-chap"))).scalar_one_or_none()
        if domain is None:
            domain = StorageDomain(
                id=uuid.uuid4(), name="san-chap", storage_type=StorageType.ISCSI.value,
                address="10.9.9.9", path=f"{TARGET}/1",
                status=StorageDomainStatus.ACTIVE.value, used_bytes=0,
                available_bytes=1 << 30, chap_username="init1",
                chap_password_sealed=box.seal(Secret(PASSWORD)))
            session.add(domain)
            await session.flush()
        disk = Disk(id=uuid.uuid4(), name=f"{name}-boot", storage_domain_id=domain.id,
                    provisioned_size=8 * MIB, format="cow", status=DiskStatus.OK,
                    image_path=f"{domain.id}/extents/{3 * MIB}/{9 * MIB}/{uuid.uuid4()}/"
                               f"{uuid.uuid4()}")
        session.add(disk)
        await session.flush()
        session.add(DiskAttachment(disk_id=disk.id, vm_id=vm_id, bootable=True))
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    return vm_id


async def _placed(engine: LoopbackEngine, vm_id: uuid.UUID) -> tuple[str, str]:
    vm = await engine.vm(vm_id)
    source = next(n for n, h in engine.hosts.items() if h.host_id == vm.host_id)
    return source, "h2" if source == "h1" else "h1"


async def _said(engine: LoopbackEngine, job_id: uuid.UUID) -> str:
    """Everything the engine recorded of the job: its row, steps and events."""
    async with engine.session() as session:
        job = await session.get(Job, job_id)
        steps = (await session.execute(select(Step).where(Step.job_id == job_id))).scalars()
        events = (await session.execute(select(AuditEvent).where(
            AuditEvent.job_id == job_id))).scalars()
        return "\n".join([repr(job.__dict__) if job else "", *(s.description for s in steps),
                          *(e.description for e in events)])


async def test_the_destination_has_the_chap_secret_before_the_vm_comes(
        engine: LoopbackEngine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await engine.add_host("h1")
    await engine.add_host("h2")
    vm_id = await _chap_vm(engine)
    source, target = await _placed(engine, vm_id)
    source_hyp, target_hyp = engine.hosts[source].hypervisor, engine.hosts[target].hypervisor
    assert source_hyp.secrets == CHAP and target_hyp.secrets == {}
    seen: list[dict[str, ChapAuth]] = []
    accept = target_hyp.accept_migration

    async def arriving(incoming: object) -> None:  # what the destination had as it came
        seen.append(dict(target_hyp.secrets))
        await accept(incoming)  # type: ignore[arg-type]
    target_hyp.accept_migration = arriving  # type: ignore[method-assign]

    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert (await _placed(engine, vm_id))[0] == target
    assert seen == [CHAP]
    assert target_hyp.secrets == CHAP
    assert source_hyp.secrets == {}  # the VM left: no VM there names it any more
    said = await _said(engine, job.id)
    assert f"Preparing host {target} for VM web" in said
    assert PASSWORD not in said and PASSWORD not in caplog.text
    assert PASSWORD not in repr(VmPrepareIncoming(vm_id=vm_id, luns=()))


async def test_a_failed_migration_leaves_no_chap_secret_on_the_destination(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    await engine.add_host("h2")
    vm_id = await _chap_vm(engine)
    source, target = await _placed(engine, vm_id)
    target_hyp = engine.hosts[target].hypervisor
    target_hyp.refuse_incoming = "the destination refused the VM"

    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    ended = await engine.job(job.id)
    assert ended.state == "failed" and "refused" in (ended.error or "")
    await engine.settled()
    vm = await engine.vm(vm_id)
    assert vm.status == VmStatus.UP and (await _placed(engine, vm_id))[0] == source
    assert target_hyp.secrets == {}
    assert engine.hosts[source].hypervisor.secrets == CHAP


async def test_a_failed_migration_keeps_a_secret_another_vm_on_the_destination_needs(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    await engine.add_host("h2")
    first = await _chap_vm(engine, "first")
    source, target = await _placed(engine, first)
    second = await _chap_vm(engine, "second")
    if (await _placed(engine, second))[0] != target:  # put it beside the destination
        job = await engine.act(vms.migrate_vm, second, host=Ref(name=target))
        assert (await engine.job(job.id)).state == "done"
        await engine.vm_reaches(second, [VmStatus.UP])
    target_hyp = engine.hosts[target].hypervisor
    target_hyp.refuse_incoming = "the destination refused the VM"

    job = await engine.act(vms.migrate_vm, first, host=Ref(name=target))
    assert (await engine.job(job.id)).state == "failed"
    assert target_hyp.secrets == CHAP  # VM second runs there on the same domain
    assert engine.hosts[source].hypervisor.secrets == CHAP


async def test_a_leased_vm_on_a_chap_domain_has_its_lease_opened_with_the_credentials(
        engine: LoopbackEngine, keepers: dict[str, Node]) -> None:  # noqa: F811
    """The lease's areas are a window of the CHAP LUN: the source's keeper opens them with
    the domain's credentials at the start, the destination's at the take-over."""
    opened: dict[str, list[DomainRef]] = {name: [] for name in keepers}
    for name, node in keepers.items():
        def record(ref: DomainRef, node: Node = node, name: str = name
                   ) -> Awaitable[DomainAreas]:
            opened[name].append(ref)
            return node.open_domain(ref)
        node.keeper._open_domain = record
    vm_id = await engine.add_vm("leased")
    async with engine.session() as session:
        domain = StorageDomain(
            id=uuid.uuid4(), name="san-chap", storage_type=StorageType.ISCSI.value,
            address="10.9.9.9", path=f"{TARGET}/1", status=StorageDomainStatus.ACTIVE.value,
            used_bytes=0, available_bytes=1 << 30, chap_username="init1",
            chap_password_sealed=engine.worker.services.secret_box().seal(Secret(PASSWORD)))
        session.add(domain)
        await session.flush()
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        vm.lease_storage_domain_id, vm.lease_slot = domain.id, SLOT
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    source, target = await _placed(engine, vm_id)

    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    assert (await engine.job(job.id)).state == "done"
    assert list(keepers[target].keeper.status()["vms"]) == [str(vm_id)]
    for name in (source, target):
        luns = [ref.lun for ref in opened[name]]
        assert [(lun.target, lun.chap) for lun in luns if lun is not None] == \
            [(TARGET, CHAP[secret_id(TARGET)])]
