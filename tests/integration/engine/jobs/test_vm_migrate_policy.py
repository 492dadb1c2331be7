"""A migration's progress in its job's step, the policy its node is asked to apply, and
the cluster's migration network, over the fast lane (the simulated hypervisor reports
job statistics: passes over memory made up from the time the migration has run)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from overt.engine.db.tables import (
    AuditEvent,
    Cluster,
    ClusterNetwork,
    Host,
    HostNetworkAttachment,
    Job,
    Network,
    Step,
    Vm,
)
from overt.engine.model.migration_options import POST_COPY_ID, MigrationOptions
from overt.engine.model.status import VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.services import vms
from overt.node.simulated.hypervisor import SimulatedTimings
from overt.node.simulated.migration import SimulatedMigration
from overt.protocol.migration import MigrationPolicy
from tests.support.loopback import LoopbackEngine


async def _running_vm(engine: LoopbackEngine) -> tuple[uuid.UUID, str, str]:
    """A VM up on one of two hosts: its id, its host's name and the other's."""
    await engine.add_host("h1")
    await engine.add_host("h2")
    vm_id = await engine.add_vm("web", memory_mib=1024)
    assert (await engine.job((await engine.act(vms.start_vm, vm_id)).id)).state == "done"
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    source = next(n for n, node in engine.hosts.items() if node.host_id == vm.host_id)
    return vm_id, source, ("h2" if source == "h1" else "h1")


async def _migrate(engine: LoopbackEngine, vm_id: uuid.UUID, target: str) -> SimulatedMigration:
    """Migrate and wait for the job's end; the migration the source's node was asked for."""
    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    assert (await engine.job(job.id)).state == "done", (await engine.job(job.id)).error
    made = [m for node in engine.hosts.values() for m in node.hypervisor.migrations_made]
    return max(made, key=lambda m: m.began)


async def _set(engine: LoopbackEngine, *, cluster: MigrationOptions | None = None,
               vm_id: uuid.UUID | None = None, vm: MigrationOptions | None = None,
               downtime_ms: int | None = None) -> None:
    async with engine.session() as session:
        if cluster is not None:
            (await session.get(Cluster, engine.cluster_id)).migration = cluster.to_json()
        if vm_id is not None:
            row = await session.get(Vm, vm_id)
            row.migration = (vm or MigrationOptions()).to_json()
            row.migration_downtime_ms = downtime_ms


async def test_the_step_shows_the_migration_progress_and_then_its_figures(
        engine: LoopbackEngine) -> None:
    vm_id, source, target = await _running_vm(engine)
    engine.hosts[source].hypervisor.timings = SimulatedTimings(migrate_s=1.0)
    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    seen: list[tuple[int | None, str]] = []

    async def finished() -> bool:
        async with engine.session() as session:
            step = (await session.execute(select(Step).where(Step.job_id == job.id))
                    ).scalars().first()
            state = (await session.get(Job, job.id)).state
        if step is not None:
            seen.append((step.progress, step.description))
        return state in ("done", "failed")
    await engine.eventually(finished, what="the migration to end")

    title = f"Migrating VM web from host {source} to host {target}"
    during = [(p, d) for p, d in seen if p is not None and p < 100]
    assert during, f"no progress shown while migrating: {seen}"
    for progress, description in during:
        assert description.startswith(f"{title}: {progress}% of 1024.0 MiB sent, ")
        assert "remaining, iteration " in description
        assert description.endswith("expected downtime 40 ms")
    assert len({p for p, _ in during}) > 1, "the progress never moved"
    assert [p for p, _ in during] == sorted(p for p, _ in during)
    progress, description = seen[-1]
    assert progress == 100
    assert description.startswith(f"{title}: total 1.")
    assert description.endswith(", downtime 40 ms, 1536.0 MiB transferred")
    ended = await engine.job(job.id)
    assert ended.result["migration"]["downtime_ms"] == 40
    assert ended.result["migration"]["transferred_bytes"] == 1536 * 1024 * 1024
    async with engine.session() as session:
        said = [e.description for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.vm_id == vm_id, AuditEvent.code == 63)
        )).scalars()]
    assert len(said) == 1 and said[0].endswith(", downtime 40 ms, 1536.0 MiB transferred)")


async def test_a_plain_migration_asks_for_no_policy(engine: LoopbackEngine) -> None:
    vm_id, _, target = await _running_vm(engine)
    assert (await _migrate(engine, vm_id, target)).policy == MigrationPolicy()


async def test_the_vm_overrides_its_cluster_options(engine: LoopbackEngine) -> None:
    vm_id, source, target = await _running_vm(engine)
    await _set(engine, cluster=MigrationOptions(auto_converge=True, compressed=True,
                                                bandwidth_method="custom", bandwidth_mbps=500))
    assert (await _migrate(engine, vm_id, target)).policy == MigrationPolicy(
        auto_converge=True, compressed=True, bandwidth_mbps=500)

    await _set(engine, vm_id=vm_id, vm=MigrationOptions(
        compressed=False, encrypted=True, bandwidth_method="custom", bandwidth_mbps=40),
        downtime_ms=250)
    assert (await _migrate(engine, vm_id, source)).policy == MigrationPolicy(
        auto_converge=True, compressed=False, encrypted=True, bandwidth_mbps=40,
        max_downtime_ms=250)

    await _set(engine, vm_id=vm_id, vm=MigrationOptions(bandwidth_method="hypervisor_default"))
    assert (await _migrate(engine, vm_id, target)).policy == MigrationPolicy(
        auto_converge=True, compressed=True)


async def test_the_post_copy_policy_switches_a_vm_that_does_not_converge(
        engine: LoopbackEngine) -> None:
    vm_id, source, target = await _running_vm(engine)
    await _set(engine, vm_id=vm_id, vm=MigrationOptions(policy_id=POST_COPY_ID))
    engine.hosts[source].hypervisor.timings = SimulatedTimings(migrate_s=0.4)
    migration = await _migrate(engine, vm_id, target)
    assert migration.policy == MigrationPolicy(auto_converge=True, post_copy_after_iterations=3)
    async with engine.session() as session:
        said = (await session.execute(select(AuditEvent.description).where(
            AuditEvent.vm_id == vm_id, AuditEvent.code == 63))).scalars().all()
    assert said[-1].endswith("transferred, post-copy)")  # the simulated 4th pass is past 3


async def test_the_stream_goes_over_the_clusters_migration_network(
        engine: LoopbackEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    vm_id, source, target = await _running_vm(engine)
    monkeypatch.setattr(engine.worker.services.settings, "migration_stream_uri",
                        "tcp://{address}")
    assert (await _migrate(engine, vm_id, target)).migration_uri == "tcp://127.0.0.1"

    async with engine.session() as session:
        cluster = await session.get(Cluster, engine.cluster_id)
        network = Network(id=uuid.uuid4(), name="migr", data_center_id=cluster.data_center_id,
                          usages=["migration"], bridge="migr")
        session.add(network)
        await session.flush()
        session.add(ClusterNetwork(cluster_id=cluster.id, network_id=network.id))
        for name, address in (("h1", "10.9.0.1"), ("h2", "10.9.0.2")):
            session.add(HostNetworkAttachment(host_id=engine.hosts[name].host_id,
                                              network_id=network.id, nic_name="eth1",
                                              boot_protocol="static", address=address))
    migration = await _migrate(engine, vm_id, source)
    assert migration.migration_uri == f"tcp://10.9.0.{source[1]}"
    assert migration.destination_uri == f"simulated://{source}"  # control: management
    async with engine.session() as session:
        steps = (await session.execute(select(Step.description).join(
            Job, Job.id == Step.job_id).where(Job.vm_id == vm_id, Job.action == "vm.migrate")
            .order_by(Step.start_time))).scalars().all()
    assert steps[-1].startswith(f"Migrating VM web from host {target} to host {source} "
                                "over network migr: total ")


async def _qemu_without_kvm(engine: LoopbackEngine, host: str, version: str) -> None:
    """The host says it runs guests on QEMU `version` without KVM (TCG)."""
    async with engine.session() as session:
        row = await session.get(Host, engine.hosts[host].host_id)
        row.capabilities = {**row.capabilities, "virt_mode": "qemu", "qemu_version": version}


async def test_a_tcg_host_on_qemu_7_migrates_its_guest_paused_and_says_why(
        engine: LoopbackEngine) -> None:
    vm_id, source, target = await _running_vm(engine)
    await _set(engine, cluster=MigrationOptions(policy_id=POST_COPY_ID, auto_converge=True))
    await _qemu_without_kvm(engine, source, "7.2.22")
    job = await engine.act(vms.migrate_vm, vm_id, host=Ref(name=target))
    assert (await engine.job(job.id)).state == "done", (await engine.job(job.id)).error
    made = engine.hosts[source].hypervisor.migrations_made[-1]
    assert made.policy.live is False
    assert made.policy.auto_converge is False and made.policy.post_copy_after_iterations is None
    async with engine.session() as session:
        step = (await session.execute(select(Step).where(Step.job_id == job.id).where(
            Step.description.like("Migrating VM %")))).scalars().one()
        events = {e.code: e for e in (await session.execute(
            select(AuditEvent).where(AuditEvent.vm_id == vm_id))).scalars()}
    assert step.description.startswith(f"Migrating VM web from host {source} to host {target} "
                                       "with the guest paused for the copy: total ")
    assert step.description.endswith("MiB transferred, guest paused")
    warned = events[9677]
    assert warned.severity == "warning"
    assert warned.description == (
        f"VM web is migrated with its guest paused for the copy, not live: host {source} "
        "cannot migrate it live safely (its hypervisor is QEMU 7.2.22 without KVM, whose "
        "live migration loses guest writes (fixed in QEMU 9.0))")
    assert (await engine.job(job.id)).result["migration"]["live"] is False
    assert (await engine.vm_reaches(vm_id, [VmStatus.UP])).host_id \
        == engine.hosts[target].host_id


@pytest.mark.parametrize("version", ["9.0.0", "8.2.2-kvm"])
async def test_kvm_or_a_fixed_qemu_migrates_live(engine: LoopbackEngine, version: str) -> None:
    vm_id, source, target = await _running_vm(engine)
    if version.endswith("-kvm"):
        async with engine.session() as session:
            row = await session.get(Host, engine.hosts[source].host_id)
            row.capabilities = {**row.capabilities, "virt_mode": "kvm",
                                "qemu_version": version.removesuffix("-kvm")}
    else:
        await _qemu_without_kvm(engine, source, version)
    made = await _migrate(engine, vm_id, target)
    assert made.policy == MigrationPolicy() and made.policy.live
    async with engine.session() as session:
        codes = set((await session.execute(select(AuditEvent.code).where(
            AuditEvent.vm_id == vm_id))).scalars())
    assert 63 in codes and 9677 not in codes


async def test_the_engine_told_the_qemu_is_fixed_migrates_tcg_guests_live(
        engine: LoopbackEngine) -> None:
    vm_id, source, target = await _running_vm(engine)
    await _qemu_without_kvm(engine, source, "7.2.22")
    engine.settings.migration_tcg_live = True
    made = await _migrate(engine, vm_id, target)
    assert made.policy.live is True
