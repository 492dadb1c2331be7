"""Kdump detection over the fast lane: a host stops answering while the real
`fence_kdump_send` (Debian's fence-agents) sends its messages to the engine's fence_kdump
listener on 127.0.0.1. The host is kdumping, never power fenced (the simulated BMC is never
asked), its highly available VM restarts elsewhere once its lease has expired; when the
messages stop the dump is over and the host is non responsive. Forged messages from a host
that is only cut off (its VM without a lease still running) never free that VM. Messages
from an address that is no host's, or for a host whose kdump detection is off, change
nothing: it is fenced as before. A host whose node reports kdump not enabled (no crash
kernel, no fence_kdump target) is fenced at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from overt.engine.db.tables import AuditEvent, Host, Job, Step, User, Vm, VmLeaseRenewal, utcnow
from overt.engine.jobs import queue
from overt.engine.jobs.kinds import RecoverHost
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.monitor.kdump_listener import KdumpListener
from overt.engine.services import host_facts, power_management
from overt.protocol.host import KdumpStatus
from tests.integration.engine.jobs.test_host_recovery import (
    BIG,
    ROOMY,
    _copies,
    _falls_silent,
    _nfs_domain,
    _policy,
    _recovered,
    _running,
    _said,
    _where,
    _with_power_management,
)
from tests.support.loopback import LoopbackEngine
from tests.support.simulated_bmc import SimulatedBmcs

SENDER = "/usr/libexec/fence-agents/fence_kdump_send"


@pytest.fixture
def heartbeat_check_s() -> None:
    """Hosts are judged on their heartbeats every tick, as the engine does (these tests
    silence one)."""
    return None


@pytest.fixture
def bmcs(engine: LoopbackEngine) -> SimulatedBmcs:
    found = SimulatedBmcs(engine)
    engine.worker.services.fence_agent = found
    return found


@pytest.fixture
async def listener(engine: LoopbackEngine) -> AsyncIterator[KdumpListener]:
    found = KdumpListener(engine.db, address="127.0.0.1", port=0)
    await found.start()
    yield found
    await found.close()


class KdumpSender:
    """The real fence_kdump_send, as a crashed host's kdump kernel runs it."""

    def __init__(self) -> None:
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, port: int) -> None:
        if shutil.which(SENDER) is None:
            pytest.fail(f"{SENDER} is missing: install the Debian package fence-agents")
        self.procs.append(await asyncio.create_subprocess_exec(
            SENDER, "--ipport", str(port), "--interval", "1", "--count", "0", "127.0.0.1"))

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
        self.procs.clear()


@pytest.fixture
async def sender() -> AsyncIterator[KdumpSender]:
    found = KdumpSender()
    yield found
    await found.stop()


async def _two_hosts(engine: LoopbackEngine, bmcs: SimulatedBmcs, *,
                     h1_address: str = "127.0.0.1",
                     h1_kdump: KdumpStatus = KdumpStatus.ENABLED) -> None:
    """h1 (power management, the address given, its node reporting kdump `h1_kdump`) and
    h2 (127.0.0.2); no grace."""
    await engine.add_host("h1", memory_mib=BIG, kdump_status=h1_kdump)
    await engine.add_host("h2", memory_mib=ROOMY)
    async with engine.session() as session:
        for name, address in (("h1", h1_address), ("h2", "127.0.0.2")):
            host = await session.get(Host, engine.hosts[name].host_id)
            assert host is not None
            host.address = address
    await _with_power_management(engine, bmcs, "h1")
    await _policy(engine)


async def _crashes(engine: LoopbackEngine, name: str) -> None:
    """Its kernel panics: every VM and its agent are gone, its power stays on."""
    engine.hosts[name].hypervisor.power_off()
    await engine.hosts[name].agent.stop()


async def _host(engine: LoopbackEngine, name: str) -> Host:
    async with engine.session() as session:
        host = await session.get(Host, engine.hosts[name].host_id, populate_existing=True)
        assert host is not None
        return host


async def _messages_recorded(engine: LoopbackEngine, name: str) -> None:
    async def recorded() -> bool:
        return (await _host(engine, name)).kdump_message_at is not None
    await engine.eventually(recorded, what=f"a fence_kdump message recorded for {name}")


async def _leased(engine: LoopbackEngine, vm_ids: list[uuid.UUID], *,
                  timeout_s: float) -> dt.datetime:
    """The VMs hold leases on an NFS domain, h1's keeper renewed them just now (it stops
    when its kernel crashes): they expire `timeout_s` later. Returns the renewal time."""
    domain_id = await _nfs_domain(engine)
    renewed_at = utcnow()
    async with engine.session() as session:
        for slot, vm_id in enumerate(vm_ids, start=3):
            vm = await session.get(Vm, vm_id)
            assert vm is not None
            vm.lease_storage_domain_id, vm.lease_slot = domain_id, slot
            session.add(VmLeaseRenewal(vm_id=vm_id, host_id=engine.hosts["h1"].host_id,
                                       storage_domain_id=domain_id, renewed_at=renewed_at,
                                       lease_timeout_s=timeout_s))
    return renewed_at


async def test_a_kdumping_host_is_not_fenced_and_its_ha_vm_restarts_once_its_lease_expired(
        engine: LoopbackEngine, bmcs: SimulatedBmcs, listener: KdumpListener,
        sender: KdumpSender) -> None:
    await _two_hosts(engine, bmcs)
    ha = await _running(engine, "ha", memory_mib=512, ha=True)
    plain = await _running(engine, "plain")
    assert {(await _where(engine, v))[1] for v in (ha, plain)} == {"h1"}
    renewed_at = await _leased(engine, [ha, plain], timeout_s=2.0)

    await _crashes(engine, "h1")
    await sender.start(listener.port)
    await _messages_recorded(engine, "h1")
    await _falls_silent(engine, "h1")

    async def kdumping() -> bool:
        return (await _host(engine, "h1")).status == HostStatus.KDUMPING
    await engine.eventually(kdumping, what="h1 kdumping")

    restart_said = ("Highly available VM ha is restarted on host h2: its host h1 failed and "
                    "its copy there is gone")

    async def restarted_on_h2() -> bool:
        return restart_said in await _said(engine)
    # The restart is placed on h2 (its start then fails there: loopback nodes run no lease
    # keeper; the lab's HA tests start leased VMs for real), so the VM is on h2 only until
    # that start fails: the audit log is what stays.
    await engine.eventually(restarted_on_h2, what="ha restarted on h2")
    assert await _where(engine, plain) == (VmStatus.DOWN, "nowhere")
    assert await _copies(engine, "ha") == []  # none on h1: it crashed
    assert (await _host(engine, "h1")).status == HostStatus.KDUMPING  # still dumping
    async with engine.session() as session:
        events = {e.description: e.time for e in (await session.execute(
            select(AuditEvent).order_by(AuditEvent.id))).scalars()}
    assert ("Kdump flow is in progress on host h1: it crashed and its kdump kernel sends "
            "fence_kdump messages (from 127.0.0.1); it is kdumping and is not power fenced; "
            "its VMs are down once their leases on shared storage expire") in events
    why = "its lease on shared storage expired (host h1 stopped renewing it)"
    down = f"VM plain is down: {why}; it was not shut down gracefully"
    assert down in events, list(events)
    restarted = [t for d, t in events.items() if d == restart_said]
    expiry = renewed_at + dt.timedelta(seconds=2.0)
    assert restarted and restarted[0] >= expiry and events[down] >= expiry  # never before

    await sender.stop()  # the dump is written: the kdump kernel stops sending
    job = await _recovered(engine, "h1")
    assert job.result["kdump"] == "finished" and job.result["restarted"] == ["ha"]
    assert (await _host(engine, "h1")).status == HostStatus.NON_RESPONSIVE
    assert ("Kdump flow finished on host h1: no fence_kdump message for 1.5 s; it stays non "
            "responsive until it answers again (its kdump configuration reboots it); it is "
            "not power fenced") in await _said(engine)
    assert [a for a in bmcs.actions if a[0] == "h1"] == []  # its BMC never asked


@pytest.mark.parametrize("fence_works", [True, False], ids=["fence-works", "fence-fails"])
async def test_forged_messages_from_a_cut_off_hosts_address_never_run_a_vm_twice(
        engine: LoopbackEngine, bmcs: SimulatedBmcs, listener: KdumpListener,
        sender: KdumpSender, fence_works: bool) -> None:
    """The attack: h1 is only cut off from the engine (its VM without a lease still runs
    there) and someone on the management network sends fence_kdump messages from its
    address. A message is unauthenticated UDP: it must not free the VM. h1 is fenced as
    without kdump detection; with its fence failing, its VM stays unknown, on h1 only."""
    await _two_hosts(engine, bmcs)
    if not fence_works:
        bmcs.broken.add("h1")
    ha = await _running(engine, "ha", memory_mib=512, ha=True)
    await engine.hosts["h1"].agent.stop()  # cut off; its hypervisor still runs the VM
    await sender.start(listener.port)  # the forged messages
    await _messages_recorded(engine, "h1")
    await _falls_silent(engine, "h1")
    recovery_id = engine.hosts["h1"].host_id

    async def settled() -> bool:  # the recovery ended, or a second copy runs
        if len(await _copies(engine, "ha")) > 1:
            return True
        async with engine.session() as session:
            return (await session.execute(select(Job.id).where(
                Job.action == "host.recover", Job.host_id == recovery_id,
                Job.state.in_(("done", "failed"))))).first() is not None
    await engine.eventually(settled, what="the recovery of h1 (or a second copy of ha)")
    # Never two copies (none for a moment is fine: h1 fenced, the restart not yet run).
    assert len(await _copies(engine, "ha")) <= 1, await _copies(engine, "ha")
    assert (await _host(engine, "h1")).status != HostStatus.KDUMPING
    said = await _said(engine)
    assert ("Host h1 is fenced without waiting for fence_kdump messages: VM(s) ha on it have "
            "no lease on shared storage, and a fence_kdump message (unauthenticated) cannot "
            "prove their copies gone") in said, said
    assert not any(line.startswith("Kdump flow is in progress") for line in said), said
    if fence_works:
        assert ("h1", "reboot") in bmcs.actions
        await engine.vm_reaches(ha, [VmStatus.UP])
        assert await _where(engine, ha) == (VmStatus.UP, "h2")
        assert await _copies(engine, "ha") == ["h2"]
    else:
        assert await _where(engine, ha) == (VmStatus.UNKNOWN, "h1")
        assert await _copies(engine, "ha") == ["h1"]


async def test_messages_from_an_address_of_no_host_change_nothing(
        engine: LoopbackEngine, bmcs: SimulatedBmcs, listener: KdumpListener,
        sender: KdumpSender, caplog: pytest.LogCaptureFixture) -> None:
    # h1 is 127.0.0.9 to the engine: the messages from 127.0.0.1 are nobody's.
    await _two_hosts(engine, bmcs, h1_address="127.0.0.9")  # h1 runs no VM: it may wait
    caplog.set_level(logging.WARNING, logger="overt.engine.monitor.kdump_listener")
    await _crashes(engine, "h1")
    await sender.start(listener.port)

    async def ignored() -> bool:
        return "ignoring fence_kdump messages from 127.0.0.1: it is the address of no host" \
            in caplog.text
    await engine.eventually(ignored, what="the messages ignored")
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert ("h1", "reboot") in bmcs.actions  # fenced as without kdump detection
    assert job.result.get("kdump") is None
    for name in ("h1", "h2"):
        assert (await _host(engine, name)).kdump_message_at is None
    said = await _said(engine)
    assert ("Kdump flow is not in progress on host h1: no fence_kdump message came within "
            "0.3 s; it is fenced as its cluster's fencing policy says") in said
    assert not any(line.startswith("Kdump flow is in progress") for line in said)
    # Logged once, however many messages came.
    assert caplog.text.count("ignoring fence_kdump messages from 127.0.0.1") == 1


async def test_kdump_detection_off_ignores_the_messages(
        engine: LoopbackEngine, bmcs: SimulatedBmcs, listener: KdumpListener,
        sender: KdumpSender) -> None:
    await _two_hosts(engine, bmcs)
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await power_management.set_kdump_detection(session, engine.hosts["h1"].host_id, False,
                                                   user)
    ha = await _running(engine, "ha", memory_mib=512, ha=True)
    await _crashes(engine, "h1")
    await sender.start(listener.port)
    await _messages_recorded(engine, "h1")
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert ("h1", "reboot") in bmcs.actions
    assert job.result.get("kdump") is None
    await engine.vm_reaches(ha, [VmStatus.UP])
    said = await _said(engine)
    assert "Kdump detection of host h1 was disabled by " + (
        f"admin-{engine.user_id.hex[:6]}@internal") in said
    assert not any(line.startswith("Kdump flow") for line in said), said
    assert ("Host h1 is fenced without waiting for fence_kdump messages: its power "
            "management's kdump detection is off") in said
    async with engine.session() as session:
        jobs = list((await session.execute(select(Job.description))).scalars())
    assert "Power management restart of non responsive host h1" in jobs


async def test_a_sender_that_is_several_hosts_address_is_not_trusted(
        engine: LoopbackEngine) -> None:
    """Two hosts recorded with the same address: a message cannot tell which one crashed."""
    await engine.add_host("h1")
    await engine.add_host("h2")  # both 127.0.0.1, as the loopback engine adds them
    listener = KdumpListener(engine.db, address="127.0.0.1", port=0)
    assert await listener.record("127.0.0.1") is False
    assert (await _host(engine, "h1")).kdump_message_at is None
    assert (await _host(engine, "h2")).kdump_message_at is None


async def test_a_recovery_run_again_while_the_host_is_kdumping_waits_for_the_dumps_end(
        engine: LoopbackEngine) -> None:
    """The engine restarted while a host dumped: its recovery, run again, does not fence nor
    judge it again; it waits for the dump's end (its last message is long past here)."""
    await engine.add_host("h1")
    await engine.hosts["h1"].agent.stop()
    async with engine.session() as session:
        host = await session.get(Host, engine.hosts["h1"].host_id)
        assert host is not None
        host.status = HostStatus.KDUMPING
        host.kdump_message_at = utcnow() - dt.timedelta(minutes=5)
        await queue.submit(session, RecoverHost(host_id=host.id),
                           description="Handling non responsive host h1")
    engine.wakeup.set()
    job = await _recovered(engine, "h1")

    assert job.result["kdump"] == "finished"
    assert (await _host(engine, "h1")).status == HostStatus.NON_RESPONSIVE
    said = await _said(engine)
    assert any(line.startswith("Kdump flow finished on host h1") for line in said), said
    assert not any(line.startswith("Host h1 is not fenced") for line in said), said


async def _steps(engine: LoopbackEngine, job: Job) -> list[str]:
    async with engine.session() as session:
        return list((await session.execute(select(Step.description).where(
            Step.job_id == job.id).order_by(Step.number))).scalars())


async def test_a_host_whose_node_reports_kdump_disabled_is_fenced_without_waiting(
        engine: LoopbackEngine, bmcs: SimulatedBmcs, listener: KdumpListener) -> None:
    """Its node reported kdump enabled; after its kdump was switched off, a refresh of its
    capabilities brings `disabled`, and its recovery fences it with no wait for messages
    that cannot come (oVirt's KDUMP_DETECTION_NOT_CONFIGURED_ON_VDS)."""
    await _two_hosts(engine, bmcs)
    assert (await _host(engine, "h1")).kdump_status == KdumpStatus.ENABLED
    engine.hosts["h1"].hypervisor.kdump_status = KdumpStatus.DISABLED
    refresh = await engine.act(host_facts.refresh_host, engine.hosts["h1"].host_id)
    assert (await engine.job(refresh.id)).state == "done"
    assert (await _host(engine, "h1")).kdump_status == KdumpStatus.DISABLED
    ha = await _running(engine, "ha", memory_mib=512, ha=True)

    await _crashes(engine, "h1")
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert ("h1", "reboot") in bmcs.actions
    assert job.result.get("kdump") is None
    assert not any("fence_kdump messages" in step for step in await _steps(engine, job))
    await engine.vm_reaches(ha, [VmStatus.UP])
    assert await _where(engine, ha) == (VmStatus.UP, "h2")
    said = await _said(engine)
    assert ("Kdump integration is enabled for host h1, but kdump is not configured properly "
            "on host (its kdump status is disabled): it is fenced without waiting for "
            "fence_kdump messages; configure kdump with fence_kdump_nodes on the host and "
            "refresh its capabilities") in said
    assert not any(line.startswith("Kdump flow") for line in said), said


async def test_a_host_whose_kdump_status_is_unknown_is_not_waited_for(
        engine: LoopbackEngine, bmcs: SimulatedBmcs, listener: KdumpListener) -> None:
    """As oVirt: anything but `enabled` (a node that cannot read its kdump configuration, or
    an older agent that reports none) is not configured."""
    await _two_hosts(engine, bmcs, h1_kdump=KdumpStatus.UNKNOWN)
    await _crashes(engine, "h1")
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert ("h1", "reboot") in bmcs.actions
    assert not any("fence_kdump messages" in step for step in await _steps(engine, job))
    assert any(line.startswith("Kdump integration is enabled for host h1, but kdump is not "
                               "configured properly on host (its kdump status is unknown)")
               for line in await _said(engine))


async def test_a_host_whose_node_reports_kdump_enabled_is_waited_for(
        engine: LoopbackEngine, bmcs: SimulatedBmcs, listener: KdumpListener) -> None:
    await _two_hosts(engine, bmcs)
    await _crashes(engine, "h1")
    await _falls_silent(engine, "h1")
    job = await _recovered(engine, "h1")

    assert ("h1", "reboot") in bmcs.actions
    assert "Waiting up to 1 s for fence_kdump messages of host h1 (kdump detection)" in (
        await _steps(engine, job))
    assert not any(line.startswith("Kdump integration") for line in await _said(engine))
