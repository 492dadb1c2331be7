"""A host that fails, over the fast lane: connecting for its grace, then non responsive; the
recovery job fences it under its cluster's fencing policy (simulated BMCs stand in for
`fence_ipmilan`) and only with proof that the VMs' copies are gone marks them down and
restarts the highly available ones elsewhere, highest priority first. Without proof the VMs
stay unknown and nothing runs twice."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from overt.engine.db.tables import (
    AuditEvent,
    Host,
    Job,
    Step,
    StorageDomain,
    StorageLeaseRenewal,
    User,
    Vm,
    VmLeaseRenewal,
    utcnow,
)
from overt.engine.model.errors import InvalidInput
from overt.engine.model.status import HostStatus, StorageDomainStatus, VmStatus
from overt.engine.secrets import Secret, SecretBox
from overt.engine.services import clusters, power_management, vms
from overt.engine.services.clusters import ClusterInput
from overt.engine.services.inputs import VmInput
from tests.support.loopback import LoopbackEngine
from tests.support.simulated_bmc import SimulatedBmcs

# The first host is the roomiest: the scheduler starts every VM there.
BIG, ROOMY, SMALL = 8192, 4096, 1536


@pytest.fixture
def heartbeat_check_s() -> None:
    """Hosts are judged on their heartbeats every tick, as the engine does: a host these
    tests silence is connecting, then non responsive, within two ticks."""
    return None


@pytest.fixture
def bmcs(engine: LoopbackEngine) -> SimulatedBmcs:
    found = SimulatedBmcs(engine)
    engine.worker.services.fence_agent = found
    return found


async def _policy(engine: LoopbackEngine, **fields: Any) -> None:
    """The cluster's fencing policy; no grace unless a test asks for one."""
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await clusters.update_cluster(session, engine.cluster_id, ClusterInput(
            fencing_policy={"grace_s": 0.0, "grace_per_vm_s": 0.0, **fields}), user)


async def _with_power_management(engine: LoopbackEngine, bmcs: SimulatedBmcs,
                                 name: str) -> None:
    address = f"bmc-{name}.example"
    bmcs.add(name, address)
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        host_id = engine.hosts[name].host_id
        await power_management.set_enabled(session, host_id, True, user)
        await power_management.add_agent(
            session, SecretBox(engine.settings.data_dir), host_id, user, agent_type="ipmilan",
            address=address, port=None, username="admin", password=Secret("Bmc-pw-1"),
            options={}, order=None)


async def _running(engine: LoopbackEngine, name: str, *, memory_mib: int = 256,
                   ha: bool = False, priority: int = 1) -> uuid.UUID:
    vm_id = await engine.add_vm(name, memory_mib=memory_mib)
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        vm.high_availability, vm.ha_priority = ha, priority
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    return vm_id


async def _falls_silent(engine: LoopbackEngine, name: str) -> None:
    """Its last heartbeat is older than the monitor's timeout: the monitor judges it."""
    async with engine.session() as session:
        host = await session.get(Host, engine.hosts[name].host_id)
        assert host is not None
        host.last_heartbeat_at = utcnow() - dt.timedelta(hours=2)


async def _recovered(engine: LoopbackEngine, name: str) -> Job:
    host_id = engine.hosts[name].host_id

    async def ended() -> Job | None:
        async with engine.session() as session:
            job = (await session.execute(select(Job).where(
                Job.action == "host.recover", Job.host_id == host_id))).scalars().first()
        return job if job is not None and job.state in ("done", "failed") else None
    job = await engine.eventually(ended, what=f"the recovery of host {name}")
    assert job.state == "done", job.error
    return job


async def _said(engine: LoopbackEngine) -> list[str]:
    async with engine.session() as session:
        return [e.description for e in (await session.execute(
            select(AuditEvent).order_by(AuditEvent.id))).scalars()]


async def _where(engine: LoopbackEngine, vm_id: uuid.UUID) -> tuple[str, str]:
    vm = await engine.vm(vm_id)
    async with engine.session() as session:
        host = await session.get(Host, vm.host_id) if vm.host_id else None
    return vm.status, host.name if host is not None else "nowhere"


async def _copies(engine: LoopbackEngine, name: str) -> list[str]:
    """Where a VM of this name runs, hypervisor by hypervisor."""
    return [node for node, sim in engine.hosts.items()
            for report in await sim.hypervisor.list_vms() if report.name == name]


async def _starts(engine: LoopbackEngine) -> int:
    async with engine.session() as session:
        return len((await session.execute(select(Job.id).where(
            Job.action == "vm.start"))).all())


async def test_a_fenced_hosts_ha_vms_restart_elsewhere_by_priority_and_others_go_down(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=SMALL)
    await _with_power_management(engine, bmcs, "h1")
    # skip_if_sd_active cannot tell (no lease keeper reported): it does not hold the fence
    # back.
    await _policy(engine, skip_if_sd_active=True)
    # h2 has room for one of the two: the higher priority gets it, though named last.
    alpha = await _running(engine, "alpha", memory_mib=1024, ha=True, priority=1)
    zulu = await _running(engine, "zulu", memory_mib=1024, ha=True, priority=100)
    plain = await _running(engine, "plain")
    assert {(await _where(engine, v))[1] for v in (alpha, zulu, plain)} == {"h1"}

    await bmcs.power_off("h1")
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert ("h1", "reboot") in bmcs.actions
    assert job.result["proven"] == 3 and job.result["restarted"] == ["zulu"]
    assert job.result["not_restarted"] == ["alpha"]
    await engine.vm_reaches(zulu, [VmStatus.UP])
    assert await _where(engine, zulu) == (VmStatus.UP, "h2")
    assert await _where(engine, alpha) == (VmStatus.DOWN, "nowhere")
    assert await _where(engine, plain) == (VmStatus.DOWN, "nowhere")
    assert await _copies(engine, "zulu") == ["h2"]
    said = await _said(engine)
    why = "host h1 was fenced (power management restart succeeded)"
    assert f"VM plain is down: {why}; it was not shut down gracefully" in said
    assert f"VM alpha is down: {why}; it was not shut down gracefully" in said
    assert ("Highly available VM zulu is restarted on host h2: its host h1 failed and its "
            "copy there is gone") in said
    assert any(line.startswith("Highly available VM alpha could not be restarted after host "
                               "h1 failed: ") for line in said), said
    assert "Host h1 is not responding after its grace period of 0 s" in said
    assert (await engine.vm(plain)).stop_reason.endswith("not shut down gracefully")


async def test_a_fenced_host_that_is_back_before_its_fence_returns_still_has_its_ha_vm_restarted(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    """The restart brings the node's agent back before `fence_ipmilan` returns: the monitor
    already has the VMs down (gone from the host). The HA VM is restarted all the same, and
    not on the host that just failed while another can take it."""
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=ROOMY)
    await _with_power_management(engine, bmcs, "h1")
    await _policy(engine)
    bmcs.boots.add("h1")
    ha = await _running(engine, "ha", memory_mib=512, ha=True)
    plain = await _running(engine, "plain")
    assert {(await _where(engine, v))[1] for v in (ha, plain)} == {"h1"}

    await bmcs.power_off("h1")
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert ("h1", "reboot") in bmcs.actions
    assert job.result["proven"] == 2 and job.result["restarted"] == ["ha"], job.result
    await engine.vm_reaches(ha, [VmStatus.UP])
    assert await _where(engine, ha) == (VmStatus.UP, "h2")
    assert await _copies(engine, "ha") == ["h2"]
    assert await _where(engine, plain) == (VmStatus.DOWN, "nowhere")
    said = await _said(engine)
    assert ("Highly available VM ha is restarted on host h2: its host h1 failed and its "
            "copy there is gone") in said


async def test_without_proof_the_vms_stay_unknown_and_nothing_restarts(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=ROOMY)
    await _with_power_management(engine, bmcs, "h1")
    await _policy(engine)
    ha = await _running(engine, "ha", ha=True)
    starts = await _starts(engine)
    # The node is cut off, its BMC unreachable: its VM may well still run.
    await engine.hosts["h1"].agent.stop()
    bmcs.broken.add("h1")
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert job.result["proven"] == 0 and job.result["restarted"] == []
    assert await _where(engine, ha) == (VmStatus.UNKNOWN, "h1")
    assert await _starts(engine) == starts
    assert await _copies(engine, "ha") == ["h1"]
    said = await _said(engine)
    assert any(line.startswith("VM(s) ha of non responsive host h1 stay unknown: there is no "
                               "proof they are gone (Cannot restart host h1: fence_ipmilan "
                               "reboot at bmc-h1.example failed")
               and line.endswith("highly available VM(s) ha are not restarted elsewhere, so "
                                 "that no VM ever runs twice") for line in said), said


async def test_a_network_outage_of_the_cluster_skips_fencing(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=ROOMY)
    await _with_power_management(engine, bmcs, "h1")
    # One host of two unreachable is 50%: at the threshold, fencing is skipped.
    await _policy(engine, skip_if_connectivity_broken=True, connectivity_threshold=50)
    ha = await _running(engine, "ha", ha=True)
    await engine.hosts["h1"].agent.stop()  # cut off, still powered: its VM runs on
    await _falls_silent(engine, "h1")
    await _recovered(engine, "h1")

    assert ("h1", "reboot") not in bmcs.actions
    assert ("h1", "status") in bmcs.actions  # asked, not acted: the power is on
    assert await _where(engine, ha) == (VmStatus.UNKNOWN, "h1")
    assert await _copies(engine, "ha") == ["h1"]
    said = await _said(engine)
    assert ("Host h1 is not fenced: 1 of the 2 hosts of its cluster are unreachable "
            "(50% >= 50%): a network outage is more likely than host failures") in said


async def test_fencing_disabled_still_restarts_when_the_bmc_reports_power_off(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=ROOMY)
    await _with_power_management(engine, bmcs, "h1")
    await _policy(engine, enabled=False)
    ha = await _running(engine, "ha", ha=True)
    await bmcs.power_off("h1")
    await _falls_silent(engine, "h1")
    await _recovered(engine, "h1")

    assert bmcs.actions == [("h1", "status")]  # no power action: the policy forbids it
    await engine.vm_reaches(ha, [VmStatus.UP])
    assert await _where(engine, ha) == (VmStatus.UP, "h2")
    said = await _said(engine)
    assert ("Host h1 is not fenced: fencing is disabled in the fencing policy of host h1's "
            "cluster") in said
    assert ("VM ha is down: the power management of host h1 reports its power off; it was "
            "not shut down gracefully") in said


async def test_a_host_without_power_management_is_not_fenced_and_its_vms_stay_unknown(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=ROOMY)
    await _policy(engine)
    ha = await _running(engine, "ha", ha=True)
    await engine.hosts["h1"].agent.stop()
    await _falls_silent(engine, "h1")
    await _recovered(engine, "h1")

    assert bmcs.actions == []
    assert await _where(engine, ha) == (VmStatus.UNKNOWN, "h1")
    assert "Host h1 is not fenced: host h1 has no power management configured" in \
        await _said(engine)


async def test_a_blip_within_the_grace_does_nothing(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=ROOMY)
    await _with_power_management(engine, bmcs, "h1")
    await _policy(engine, grace_s=3600.0)
    ha = await _running(engine, "ha", ha=True)
    await _falls_silent(engine, "h1")

    async def connecting() -> bool:
        async with engine.session() as session:
            host = await session.get(Host, engine.hosts["h1"].host_id)
        return host is not None and host.status == HostStatus.CONNECTING
    await engine.eventually(connecting, what="h1 to be connecting")
    assert await _where(engine, ha) == (VmStatus.UP, "h1")  # left alone during the grace

    await engine.restart_agent("h1")  # heard again
    await engine.settled()
    assert await _where(engine, ha) == (VmStatus.UP, "h1")
    assert bmcs.actions == []
    async with engine.session() as session:
        assert (await session.execute(select(Job.id).where(
            Job.action == "host.recover"))).first() is None
    assert any(line.startswith("Host h1 answers again ") and line.endswith(
        "into its grace period: it is up, nothing was done to it or its VMs")
        for line in await _said(engine))


async def test_the_ha_priority_is_stored_within_ovirts_range(engine: LoopbackEngine) -> None:
    vm_id = await engine.add_vm("web")
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await vms.update_vm(session, vm_id, VmInput(high_availability=True, ha_priority=50),
                            user)
    assert ((await engine.vm(vm_id)).high_availability, (await engine.vm(vm_id)).ha_priority) \
        == (True, 50)
    with pytest.raises(InvalidInput, match="priority must be between 0 and 100"):
        async with engine.session() as session:
            await vms.update_vm(session, vm_id, VmInput(high_availability=False,
                                                        ha_priority=101), user)
    assert ((await engine.vm(vm_id)).high_availability, (await engine.vm(vm_id)).ha_priority) \
        == (True, 50)


async def _nfs_domain(engine: LoopbackEngine) -> uuid.UUID:
    async with engine.session() as session:
        domain = StorageDomain(name=f"nfs-{uuid.uuid4().hex[:6]}", storage_type="nfs",
                               path="/exports/data", address="nfs.example",
                               status=StorageDomainStatus.ACTIVE)
        session.add(domain)
        await session.flush()
        return domain.id


async def test_a_host_that_still_renews_its_storage_lease_is_not_fenced(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=ROOMY)
    await _with_power_management(engine, bmcs, "h1")
    await _policy(engine, skip_if_sd_active=True)
    ha = await _running(engine, "ha", ha=True)
    domain_id = await _nfs_domain(engine)
    async with engine.session() as session:  # its lease keeper's last report: just now
        session.add(StorageLeaseRenewal(host_id=engine.hosts["h1"].host_id,
                                        storage_domain_id=domain_id, renewed_at=utcnow(),
                                        lease_timeout_s=80.0))
    await engine.hosts["h1"].agent.stop()  # cut off from the engine, not from storage
    await _falls_silent(engine, "h1")
    await _recovered(engine, "h1")

    assert ("h1", "reboot") not in bmcs.actions
    assert await _where(engine, ha) == (VmStatus.UNKNOWN, "h1")
    assert await _copies(engine, "ha") == ["h1"]
    assert "Host h1 is not fenced: host h1 still renews its storage leases" in \
        await _said(engine)


async def test_an_expired_vm_lease_proves_the_copy_gone_without_power_management(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=ROOMY)
    await _policy(engine)
    leased = await _running(engine, "leased", ha=True)
    other = await _running(engine, "other", ha=True)
    domain_id = await _nfs_domain(engine)
    async with engine.session() as session:
        vm = await session.get(Vm, leased)
        assert vm is not None
        vm.lease_storage_domain_id, vm.lease_slot = domain_id, 3
        # h1's keeper last renewed the lease long ago: it has stopped that copy since.
        session.add(VmLeaseRenewal(vm_id=leased, host_id=engine.hosts["h1"].host_id,
                                   storage_domain_id=domain_id,
                                   renewed_at=utcnow() - dt.timedelta(minutes=10),
                                   lease_timeout_s=80.0))
    await engine.hosts["h1"].agent.stop()
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert bmcs.actions == []  # no power management: the lease alone is the proof
    assert job.result["proven"] == 1
    assert await _where(engine, other) == (VmStatus.UNKNOWN, "h1")
    said = await _said(engine)
    assert ("VM leased is down: its lease on shared storage expired (host h1 stopped "
            "renewing it); it was not shut down gracefully") in said
    assert any(line.startswith("Highly available VM leased is restarted on host h2")
               for line in said), said


async def test_a_lease_not_yet_expired_is_waited_for_and_the_vm_restarted_only_after(
        engine: LoopbackEngine, bmcs: SimulatedBmcs) -> None:
    await engine.add_host("h1", memory_mib=BIG)
    await engine.add_host("h2", memory_mib=ROOMY)
    await _with_power_management(engine, bmcs, "h1")
    bmcs.broken.add("h1")  # the fence agent fails: no power proof
    await _policy(engine)
    leased = await _running(engine, "leased", ha=True)
    domain_id = await _nfs_domain(engine)
    renewed_at = utcnow()  # h1's keeper renewed just now; it expires 4 s later
    async with engine.session() as session:
        vm = await session.get(Vm, leased)
        assert vm is not None
        vm.lease_storage_domain_id, vm.lease_slot = domain_id, 3
        session.add(VmLeaseRenewal(vm_id=leased, host_id=engine.hosts["h1"].host_id,
                                   storage_domain_id=domain_id, renewed_at=renewed_at,
                                   lease_timeout_s=4.0))
    await engine.hosts["h1"].agent.stop()
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert job.result["proven"] == 1 and job.result["fence_succeeded"] is False
    async with engine.session() as session:
        events = {e.description: e.time for e in (await session.execute(
            select(AuditEvent).order_by(AuditEvent.id))).scalars()}
        steps = [s.description for s in (await session.execute(
            select(Step).where(Step.job_id == job.id))).scalars()]
    down = ("VM leased is down: its lease on shared storage expired (host h1 stopped "
            "renewing it); it was not shut down gracefully")
    assert down in events, list(events)
    assert events[down] >= renewed_at + dt.timedelta(seconds=4.0)  # never before expiry
    restarted = [t for d, t in events.items()
                 if d.startswith("Highly available VM leased is restarted on host h2")]
    assert restarted and restarted[0] >= renewed_at + dt.timedelta(seconds=4.0)
    assert any(s.startswith("Waiting up to ") and s.endswith(
        " s for the leases of VM(s) leased of host h1 to expire") for s in steps), steps
