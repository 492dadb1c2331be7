"""Per-host reachability of the active storage domains over the fast lane: the monitor
probes each host (a simulated node answers what the test lets it reach); a host cut off
from a domain is non operational with oVirt's reason and an audit event naming the
domain, runs no new VMs, and is up again by itself once it reaches the domain. A domain
no host reaches is inactive instead, and active again once one does."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from overt.engine.db.tables import (
    AuditEvent,
    Cluster,
    Disk,
    DiskAttachment,
    Host,
    StorageDomain,
    User,
)
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import (
    DiskStatus,
    HostStatus,
    StorageDomainStatus,
    StorageType,
    VmStatus,
)
from overt.engine.model.storage_reach import STORAGE_DOMAIN_UNREACHABLE
from overt.engine.services import vms
from overt.engine.services.inputs import DiskInput, LogicalUnitInput, VmInput
from overt.engine.services.lun_disks import add_lun_disk
from overt.protocol.storage import DOMAIN_AREA
from overt.protocol.storage_reach import DomainReach, DomainsReach, StorageDomainsProbe
from tests.support.loopback import LoopbackEngine, SimulatedNode

GIB = 1 << 30
MIB = 1 << 20


class Storage:
    """What one simulated node reaches: every domain probed but those in `cut`."""

    def __init__(self) -> None:
        self.cut: set[uuid.UUID] = set()
        self.probed: list[uuid.UUID] = []

    async def probe(self, command: StorageDomainsProbe) -> DomainsReach:
        found = []
        for target in command.domains:
            self.probed.append(target.domain_id)
            if target.domain_id in self.cut:
                found.append(DomainReach(domain_id=target.domain_id, reachable=False,
                                         error="no answer from 10.0.9.9 within 10 s"))
            else:
                found.append(DomainReach(domain_id=target.domain_id, reachable=True,
                                         total_bytes=100 * GIB, free_bytes=60 * GIB))
        return DomainsReach(domains=found)


def _storage(node: SimulatedNode) -> Storage:
    storage = Storage()
    node.agent.probe_storage = storage.probe
    return storage


async def _nfs_domain(engine: LoopbackEngine, name: str,
                      status: StorageDomainStatus = StorageDomainStatus.ACTIVE) -> StorageDomain:
    async with engine.session() as session:
        cluster = await session.get(Cluster, engine.cluster_id)
        assert cluster is not None
        domain = StorageDomain(name=name, storage_type=StorageType.NFS.value, address="10.0.9.9",
                               path=f"/exports/{name}", storage_uuid=uuid.uuid4(),
                               data_center_id=cluster.data_center_id, status=status.value)
        session.add(domain)
        await session.flush()
        return domain


async def _host(engine: LoopbackEngine, node: SimulatedNode) -> Host:
    async with engine.session() as session:
        host = await session.get(Host, node.host_id)
    assert host is not None
    return host


async def _events(engine: LoopbackEngine, host_id: uuid.UUID) -> list[tuple[int, str]]:
    async with engine.session() as session:
        return [(e.code, e.description) for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.host_id == host_id)
            .order_by(AuditEvent.id))).scalars()]


async def test_a_host_cut_off_from_a_domain_is_non_operational_until_it_reaches_it(
        engine: LoopbackEngine) -> None:
    h1, h2 = await engine.add_host("h1"), await engine.add_host("h2")
    s1, s2 = _storage(h1), _storage(h2)
    data = await _nfs_domain(engine, "data1")
    await _nfs_domain(engine, "parked", StorageDomainStatus.MAINTENANCE)
    assert data.storage_uuid is not None

    await engine.monitor.storage.probe_all()
    assert s1.probed == s2.probed == [data.storage_uuid]  # only the active domain
    async with engine.session() as session:  # the space the export reports
        seen = await session.get(StorageDomain, data.id)
        assert seen is not None
        assert (seen.available_bytes, seen.used_bytes) == (60 * GIB, 40 * GIB)

    s1.cut.add(data.storage_uuid)
    await engine.monitor.storage.probe_all()
    assert (await _host(engine, h1)).status == HostStatus.UP  # one miss is not enough
    await engine.monitor.storage.probe_all()
    host = await _host(engine, h1)
    assert (host.status, host.status_detail) == (HostStatus.NON_OPERATIONAL,
                                                 STORAGE_DOMAIN_UNREACHABLE)
    assert (await _host(engine, h2)).status == HostStatus.UP
    code, text = (await _events(engine, h1.host_id))[-1]
    assert code == 522
    assert "cannot access the Storage Domain(s) data1" in text
    assert "no answer from 10.0.9.9" in text

    # The scheduler places new VMs only on the host that reaches the domain.
    for name in ("a", "b"):
        vm_id = await engine.add_vm(name)
        job = await engine.act(vms.start_vm, vm_id)
        assert (await engine.job(job.id)).state == "done"
        assert (await engine.vm(vm_id)).host_id == h2.host_id

    await engine.monitor.storage.probe_all()  # still cut off: no second event
    assert (await _host(engine, h1)).status == HostStatus.NON_OPERATIONAL
    assert sum(c == 522 for c, _ in await _events(engine, h1.host_id)) == 1

    s1.cut.clear()
    await engine.monitor.storage.probe_all()
    host = await _host(engine, h1)
    assert (host.status, host.status_detail) == (HostStatus.UP, "")
    assert "reaches every active storage domain" in (await _events(engine, h1.host_id))[-1][1]
    vm_id = await engine.add_vm("c")
    async with engine.session() as session:  # only h1 may take it now
        h2_row = await session.get(Host, h2.host_id)
        assert h2_row is not None
        h2_row.status = HostStatus.MAINTENANCE
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    assert (await engine.vm(vm_id)).host_id == h1.host_id


async def test_a_host_not_answering_and_one_down_for_another_reason_are_left_alone(
        engine: LoopbackEngine) -> None:
    h1 = await engine.add_host("h1")
    storage = _storage(h1)
    data = await _nfs_domain(engine, "data1")
    assert data.storage_uuid is not None
    storage.cut.add(data.storage_uuid)
    async with engine.session() as session:  # non operational for its networks
        host = await session.get(Host, h1.host_id)
        assert host is not None
        host.status, host.status_detail = HostStatus.NON_OPERATIONAL, "network_unreachable"
    for _ in range(3):
        await engine.monitor.storage.probe_all()
    assert storage.probed == []
    host = await _host(engine, h1)
    assert (host.status, host.status_detail) == (HostStatus.NON_OPERATIONAL,
                                                 "network_unreachable")

    async with engine.session() as session:
        host = await session.get(Host, h1.host_id)
        assert host is not None
        host.status, host.status_detail = HostStatus.UP, ""

    async def silent(_command: StorageDomainsProbe) -> DomainsReach:
        raise TimeoutError("the node does not answer")
    h1.agent.probe_storage = silent
    for _ in range(3):
        await engine.monitor.storage.probe_all()
    assert (await _host(engine, h1)).status == HostStatus.UP  # the heartbeat watch judges it


async def test_a_host_cut_off_from_a_domain_put_in_maintenance_is_up_again(
        engine: LoopbackEngine) -> None:
    h1 = await engine.add_host("h1")
    storage = _storage(h1)
    _storage(await engine.add_host("h2"))  # reaches it: the domain stays active
    data = await _nfs_domain(engine, "data1")
    assert data.storage_uuid is not None
    storage.cut.add(data.storage_uuid)
    for _ in range(2):
        await engine.monitor.storage.probe_all()
    assert (await _host(engine, h1)).status == HostStatus.NON_OPERATIONAL

    async with engine.session() as session:  # the administrator parks the domain
        domain = await session.get(StorageDomain, data.id)
        assert domain is not None
        domain.status = StorageDomainStatus.MAINTENANCE
    probed = len(storage.probed)
    await engine.monitor.storage.probe_all()
    host = await _host(engine, h1)
    assert (host.status, host.status_detail) == (HostStatus.UP, "")
    assert len(storage.probed) == probed  # nothing left to probe


async def _domain_events(engine: LoopbackEngine, sd_id: uuid.UUID) -> list[tuple[int, str]]:
    async with engine.session() as session:
        return [(e.code, e.description) for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.storage_domain_id == sd_id,
                                     AuditEvent.host_id.is_(None))
            .order_by(AuditEvent.id))).scalars()]


async def _status(engine: LoopbackEngine, sd_id: uuid.UUID) -> StorageDomainStatus:
    async with engine.session() as session:
        domain = await session.get(StorageDomain, sd_id)
    assert domain is not None
    return StorageDomainStatus(domain.status)


async def test_a_domain_no_host_reaches_is_inactive_until_one_reaches_it(
        engine: LoopbackEngine) -> None:
    """oVirt's rule: when every host of the data center misses a domain it is the domain's
    fault, not the hosts': the domain is inactive (an event says why) and the hosts are
    up; once a host reaches it, it is active again and a host still cut off is blamed."""
    h1, h2 = await engine.add_host("h1"), await engine.add_host("h2")
    s1, s2 = _storage(h1), _storage(h2)
    data = await _nfs_domain(engine, "data1")
    other = await _nfs_domain(engine, "data2")
    assert data.storage_uuid is not None

    s1.cut.add(data.storage_uuid)
    for _ in range(2):
        await engine.monitor.storage.probe_all()
    assert (await _host(engine, h1)).status == HostStatus.NON_OPERATIONAL
    assert await _status(engine, data.id) == StorageDomainStatus.ACTIVE  # h2 reaches it

    s2.cut.add(data.storage_uuid)
    await engine.monitor.storage.probe_all()  # h2's first miss is not enough
    assert await _status(engine, data.id) == StorageDomainStatus.ACTIVE
    assert (await _host(engine, h2)).status == HostStatus.UP
    await engine.monitor.storage.probe_all()
    assert await _status(engine, data.id) == StorageDomainStatus.INACTIVE
    assert await _status(engine, other.id) == StorageDomainStatus.ACTIVE
    for node in (h1, h2):  # nothing left they fail to reach: both up
        host = await _host(engine, node)
        assert (host.status, host.status_detail) == (HostStatus.UP, "")
    [(code, text)] = await _domain_events(engine, data.id)
    assert code == 970
    assert "Storage Domain data1 (Data Center Default) was deactivated by system because " \
        "it's not visible by any of the hosts" in text
    assert "no answer from 10.0.9.9" in text
    assert not any(c == 522 for c, _ in await _events(engine, h2.host_id))

    vm_id = await engine.add_vm("on-data1")  # a VM whose disk is there does not start
    async with engine.session() as session:
        disk = Disk(name="d1", storage_domain_id=data.id, provisioned_size=GIB,
                    status=DiskStatus.OK, image_path="images/d1")
        session.add(disk)
        await session.flush()
        session.add(DiskAttachment(disk_id=disk.id, vm_id=vm_id))
    with pytest.raises(Conflict, match="Storage Domain data1 is inactive"):
        await engine.act(vms.start_vm, vm_id)
    assert (await engine.vm(vm_id)).status == VmStatus.DOWN

    await engine.monitor.storage.probe_all()  # still unreachable: no second event
    assert await _status(engine, data.id) == StorageDomainStatus.INACTIVE
    assert len(await _domain_events(engine, data.id)) == 1
    assert s2.probed.count(data.storage_uuid) == 5  # an inactive domain is still probed

    s2.cut.clear()
    await engine.monitor.storage.probe_all()
    assert await _status(engine, data.id) == StorageDomainStatus.ACTIVE
    code, text = (await _domain_events(engine, data.id))[-1]
    assert code == 9674 and "is reached by host h2 again: it is active" in text
    host = await _host(engine, h1)  # h2 reaches it, h1 still does not: h1 is blamed
    assert (host.status, host.status_detail) == (HostStatus.NON_OPERATIONAL,
                                                 STORAGE_DOMAIN_UNREACHABLE)
    assert (await _host(engine, h2)).status == HostStatus.UP

    s1.cut.clear()
    await engine.monitor.storage.probe_all()
    assert (await _host(engine, h1)).status == HostStatus.UP
    assert await _status(engine, data.id) == StorageDomainStatus.ACTIVE


async def test_an_iscsi_domains_free_space_follows_its_luns_size(engine: LoopbackEngine) -> None:
    """The probe reports the LUN's size as the target has it now (grown here): free space
    is that less the metadata area and the extents the engine allocated."""
    h1 = await engine.add_host("h1")
    sizes: dict[uuid.UUID, int] = {}

    async def probe(command: StorageDomainsProbe) -> DomainsReach:
        return DomainsReach(domains=[DomainReach(domain_id=t.domain_id, reachable=True,
                                                 total_bytes=sizes[t.domain_id])
                                     for t in command.domains])
    h1.agent.probe_storage = probe
    async with engine.session() as session:
        cluster = await session.get(Cluster, engine.cluster_id)
        assert cluster is not None
        domain = StorageDomain(name="san1", storage_type=StorageType.ISCSI.value,
                               address="10.0.9.9:3260", path="iqn.2026-11.dev.overt:t/1",
                               storage_uuid=uuid.uuid4(), data_center_id=cluster.data_center_id,
                               status=StorageDomainStatus.ACTIVE.value,
                               used_bytes=3 * GIB, available_bytes=7 * GIB - DOMAIN_AREA)
        session.add(domain)
        await session.flush()
        assert domain.storage_uuid is not None
        sizes[domain.storage_uuid] = 10 * GIB
    await engine.monitor.storage.probe_all()
    async with engine.session() as session:
        seen = await session.get(StorageDomain, domain.id)
        assert seen is not None
        assert (seen.used_bytes, seen.available_bytes) == (3 * GIB, 7 * GIB - DOMAIN_AREA)
    assert domain.storage_uuid is not None
    sizes[domain.storage_uuid] = 20 * GIB  # the LUN grown on the target
    await engine.monitor.storage.probe_all()
    async with engine.session() as session:
        seen = await session.get(StorageDomain, domain.id)
        assert seen is not None
        assert (seen.used_bytes, seen.available_bytes) == (3 * GIB, 17 * GIB - DOMAIN_AREA)
    sizes[domain.storage_uuid] = 2 * GIB  # smaller than what is allocated: nothing free
    await engine.monitor.storage.probe_all()
    async with engine.session() as session:
        seen = await session.get(StorageDomain, domain.id)
        assert seen is not None and seen.available_bytes == 0


async def test_a_direct_lun_disks_size_is_read_from_its_lun_not_taken_from_the_client(
        engine: LoopbackEngine) -> None:
    """A direct LUN disk is added with the size unknown (whatever the client says); the
    next storage round has one host read the LUN's size, once."""
    h1 = await engine.add_host("h1")
    storage = _storage(h1)
    async with engine.session() as session:
        admin = (await session.execute(select(User))).scalars().first()
        assert admin is not None
        disk = await add_lun_disk(session, DiskInput(
            name="db-lun", provisioned_size=1 * GIB, lun=LogicalUnitInput(
                address="san.example", port=3260, target="iqn.2026-12.org.example:luns",
                lun_mapping=3)), admin)
        disk_id = disk.id
    assert disk.provisioned_size == 0

    await engine.monitor.storage.probe_all()
    assert storage.probed == [disk_id]
    async with engine.session() as session:
        sized = await session.get(Disk, disk_id)
        assert sized is not None
        assert (sized.provisioned_size, sized.actual_size) == (100 * GIB, 100 * GIB)
        events = [e.description for e in (await session.execute(select(AuditEvent))).scalars()]
    assert any(f"Direct LUN disk db-lun is {100 * GIB} bytes" in e for e in events)
    assert (await _host(engine, h1)).status == HostStatus.UP  # a LUN disk judges no host
    await engine.monitor.storage.probe_all()
    assert storage.probed == [disk_id]  # read once


async def _running_on_domains(engine: LoopbackEngine, name: str,
                              domains: list[StorageDomain]) -> uuid.UUID:
    """A VM up with a disk on each of `domains`."""
    vm_id = await engine.add_vm(name)
    async with engine.session() as session:
        for n, domain in enumerate(domains):
            disk = Disk(name=f"{name}-d{n}", storage_domain_id=domain.id,
                        provisioned_size=GIB, status=DiskStatus.OK,
                        image_path=f"images/{name}-d{n}")
            session.add(disk)
            await session.flush()
            session.add(DiskAttachment(disk_id=disk.id, vm_id=vm_id))
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    return vm_id


async def _resume_behaviour(engine: LoopbackEngine, vm_id: uuid.UUID, value: str) -> None:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await vms.update_vm(session, vm_id, VmInput(storage_error_resume_behaviour=value), user)


async def test_a_vm_paused_by_a_storage_error_resumes_once_its_host_reaches_the_storage(
        engine: LoopbackEngine) -> None:
    """oVirt's auto_resume: a VM its storage paused (the disks' error policy is "stop") is
    paused with the reason and oVirt's event; while its host does not reach one of its
    domains it stays paused; once the host reaches every one, the engine resumes it and
    the event says it recovered. With leave_paused it stays paused until started."""
    h1 = await engine.add_host("h1")
    storage = _storage(h1)
    data, other = await _nfs_domain(engine, "data1"), await _nfs_domain(engine, "data2")
    assert data.storage_uuid is not None and other.storage_uuid is not None
    vm_id = await _running_on_domains(engine, "io", [data, other])
    kept = await _running_on_domains(engine, "kept", [data])
    await _resume_behaviour(engine, kept, "leave_paused")
    assert (await engine.vm(kept)).storage_error_resume_behaviour == "leave_paused"
    untouched = await _running_on_domains(engine, "fine", [other])

    storage.cut.add(other.storage_uuid)
    for paused in (vm_id, kept):
        h1.hypervisor.storage_error(paused)
        vm = await engine.vm_reaches(paused, [VmStatus.PAUSED])
        assert vm.paused_reason == "io_error"
    async with engine.session() as session:
        said = [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.code == 145))).scalars()]
    assert sorted(said) == ["VM io has been paused due to storage I/O problem.",
                            "VM kept has been paused due to storage I/O problem."]

    await engine.monitor.storage.probe_all()  # data2 still out of reach: stays paused
    await engine.settled()
    assert (await engine.vm(vm_id)).status == VmStatus.PAUSED
    assert h1.hypervisor._vm(vm_id).state.value == "paused_error"

    storage.cut.clear()
    await engine.monitor.storage.probe_all()
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert vm.paused_reason == ""
    assert h1.hypervisor._vm(vm_id).state.value == "running"
    async with engine.session() as session:
        [recovered] = [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.code == 196))).scalars()]
    assert recovered == "VM io has recovered from paused back to up."
    await engine.monitor.storage.probe_all()
    await engine.settled()
    assert (await engine.vm(kept)).status == VmStatus.PAUSED  # leave_paused: the admin's call
    assert (await engine.vm(untouched)).status == VmStatus.UP

    job = await engine.act(vms.start_vm, kept)  # start resumes it
    assert (await engine.job(job.id)).state == "done"
    assert (await engine.vm_reaches(kept, [VmStatus.UP])).paused_reason == ""


async def test_kill_and_unknown_storage_error_resume_behaviours_are_refused(
        engine: LoopbackEngine) -> None:
    vm_id = await engine.add_vm("v")
    for value, said in (("kill", "'kill' is not supported"), ("later", "not 'later'")):
        with pytest.raises(InvalidInput, match=said):
            await _resume_behaviour(engine, vm_id, value)
    assert (await engine.vm(vm_id)).storage_error_resume_behaviour == "auto_resume"
