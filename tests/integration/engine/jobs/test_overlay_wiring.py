"""What the engine sends a host for an overlay network: its VNI, the host's own address as
the tunnel's local end, and the other hosts the network is attached to as remotes."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, select

from overt.engine.db.database import Database
from overt.engine.db.tables import (
    Cluster,
    DataCenter,
    Host,
    HostNetworkAttachment,
    Job,
    Network,
    Step,
    StorageDomain,
    User,
)
from overt.engine.jobs.handlers.host_networks import _overlay
from overt.engine.model.overlay import OVERLAY_PROVIDER
from overt.engine.model.status import VmStatus
from overt.engine.queries.host_networks import list_attachments
from overt.engine.queries.lookup import Ref
from overt.engine.services import cluster_networks, host_networks, hosts, vms
from overt.engine.services.host_networks import AttachmentInput, SetupInput
from overt.engine.services.networks import NetworkInput, add_network
from overt.protocol.host import NicInfo
from overt.protocol.networks import VxlanWiring
from tests.support.loopback import LoopbackEngine, SimulatedNode


async def test_an_overlays_tunnels_go_to_the_other_hosts_that_carry_it(db: Database) -> None:
    async with db.transaction() as session:
        dc = (await session.execute(select(DataCenter))).scalars().first()
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert dc is not None and cluster is not None
        overlay = Network(id=uuid.uuid4(), name="overlay1", data_center_id=dc.id,
                          bridge="overlay1", usages=["vm"], vxlan_id=5001)
        session.add(overlay)
        hosts = [Host(id=uuid.uuid4(), name=f"h{i}", address=address, cluster_id=cluster.id,
                      status="up")
                 for i, address in enumerate(("192.0.2.1", "192.0.2.2", "192.0.2.3",
                                              "localhost"))]
        session.add_all(hosts)
        await session.flush()
        for host in hosts[:2] + hosts[3:]:  # h2 does not carry the overlay
            session.add(HostNetworkAttachment(host_id=host.id, network_id=overlay.id,
                                              nic_name="eth0"))
        await session.flush()
        assert await _overlay(session, hosts[0], overlay) == VxlanWiring(
            vni=5001, local="192.0.2.1", remotes=("127.0.0.1", "192.0.2.2"))
        # A host known by name gets its address as the local end.
        assert (await _overlay(session, hosts[3], overlay)).local == "127.0.0.1"


# -- hosts joining and leaving: the others' tunnel lists follow (fast lane) -----------------

NICS = (NicInfo(name="eth0", mac="52:54:00:00:00:01", mtu=1500),)


async def _overlay_network(engine: LoopbackEngine) -> None:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        cluster = await session.get(Cluster, engine.cluster_id)
        assert user is not None and cluster is not None
        network = await add_network(session, NetworkInput(
            name="ov1", data_center=Ref(id=cluster.data_center_id),
            external_provider=Ref(name=OVERLAY_PROVIDER)), user)
        await session.flush()
        await cluster_networks.attach(session, cluster, Ref(id=network.id), False, user)


async def _host(engine: LoopbackEngine, name: str, address: str) -> SimulatedNode:
    node = await engine.add_host(name, nics=NICS)
    async with engine.session() as session:
        host = await session.get(Host, node.host_id)
        assert host is not None
        host.address = address
    return node


async def _join(engine: LoopbackEngine, node: SimulatedNode) -> None:
    job = await engine.act(host_networks.setup_networks, node.host_id, SetupInput(modified=[
        AttachmentInput(network=Ref(name="ov1"), nic=Ref(name="eth0"))]))
    assert (await engine.job(job.id)).state == "done"
    await engine.settled()  # and the jobs it made for the other hosts


def _remotes(node: SimulatedNode) -> tuple[str, ...] | None:
    wiring = node.networks.wirings.get("ov1")
    return None if wiring is None or wiring.vxlan is None else wiring.vxlan.remotes


async def _rewire_jobs(engine: LoopbackEngine, host: str) -> list[tuple[str, list[str]]]:
    """The tunnel updates of `host` that ran: (state, its steps' descriptions)."""
    async with engine.session() as session:
        jobs = (await session.execute(select(Job).where(Job.description.startswith(
            f"Updating the overlay tunnels of host {host}:")).order_by(Job.start_time))
                ).scalars().all()
        return [(j.state, list((await session.execute(select(Step.description).where(
            Step.job_id == j.id))).scalars())) for j in jobs]


async def _out_of_sync_after(engine: LoopbackEngine, action: Any, host_id: uuid.UUID,
                             peer_id: uuid.UUID) -> bool:
    """Runs `action` on `host_id` and reads, in the same transaction (before any job ran),
    whether the peer's overlay attachment is marked not applied (out of sync)."""
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        await action(session, engine.jobs, host_id, user)
        await session.flush()
        [(attachment, _n)] = await list_attachments(session, peer_id)
        return not attachment.applied


async def test_the_other_hosts_of_an_overlay_follow_hosts_joining_and_leaving(
        engine: LoopbackEngine) -> None:
    await _overlay_network(engine)
    h1 = await _host(engine, "h1", "192.0.2.1")
    h2 = await _host(engine, "h2", "192.0.2.2")
    h3 = await _host(engine, "h3", "192.0.2.3")

    await _join(engine, h1)
    assert _remotes(h1) == ()
    await _join(engine, h2)  # h1 was set up first: it learns of h2 by a job of its own
    assert (_remotes(h1), _remotes(h2)) == (("192.0.2.2",), ("192.0.2.1",))
    [(state, steps)] = await _rewire_jobs(engine, "h1")
    assert state == "done" and steps == ["Applying 1 network(s) on host h1"]
    await _join(engine, h3)
    assert (_remotes(h1), _remotes(h2), _remotes(h3)) == (
        ("192.0.2.2", "192.0.2.3"), ("192.0.2.1", "192.0.2.3"), ("192.0.2.1", "192.0.2.2"))

    # h3 goes to maintenance: the others stop flooding to it, out of sync until they have.
    assert await _out_of_sync_after(engine, hosts.deactivate_host, h3.host_id, h1.host_id)
    await engine.eventually(lambda: _has(h1, "192.0.2.2"), what="h1 to drop h3")
    await engine.eventually(lambda: _has(h2, "192.0.2.1"), what="h2 to drop h3")
    await engine.eventually(lambda: _synced(engine, h1.host_id), what="h1 in sync again")

    # Activated again, it rejoins: the others tunnel to it, and it to them.
    await engine.act(lambda s, j, hid, u: hosts.activate_host(s, hid, u, j), h3.host_id)
    await engine.settled()
    assert (_remotes(h1), _remotes(h2), _remotes(h3)) == (
        ("192.0.2.2", "192.0.2.3"), ("192.0.2.1", "192.0.2.3"), ("192.0.2.1", "192.0.2.2"))

    # h2 is removed (from maintenance): h1 and h3 keep only each other.
    await engine.act(hosts.deactivate_host, h2.host_id)
    await engine.eventually(lambda: _no_jobs(engine), what="the jobs to end")
    async with engine.session() as session:  # the fast lane's local domain goes first
        await session.execute(delete(StorageDomain).where(StorageDomain.host_id == h2.host_id))
    await engine.act(lambda s, j, hid, u: hosts.remove_host(s, hid, u, jobs=j), h2.host_id)
    await engine.settled()
    assert (_remotes(h1), _remotes(h3)) == (("192.0.2.3",), ("192.0.2.1",))
    assert await _synced(engine, h1.host_id) and await _synced(engine, h3.host_id)


async def _synced(engine: LoopbackEngine, host_id: uuid.UUID) -> bool:
    async with engine.session() as session:
        return all(a.applied for a, _n in await list_attachments(session, host_id))


async def _has(node: SimulatedNode, *remotes: str) -> bool:
    return _remotes(node) == remotes


async def _no_jobs(engine: LoopbackEngine) -> bool:
    async with engine.session() as session:
        return (await session.execute(select(Job.id).where(
            Job.state.in_(["queued", "running"])))).first() is None


async def test_a_host_drained_into_maintenance_leaves_the_others_tunnels(
        engine: LoopbackEngine) -> None:
    """Its VMs migrate away first (the tunnel still carries them); once the drain job has
    switched it to maintenance, the other hosts stop flooding to it."""
    await _overlay_network(engine)
    h1 = await _host(engine, "h1", "192.0.2.1")
    h2 = await _host(engine, "h2", "192.0.2.2")
    for node in (h1, h2):
        await _join(engine, node)
    assert _remotes(h1) == ("192.0.2.2",)
    vm_id = await engine.add_vm("web")
    started = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(started.id)).state == "done"
    vm = await engine.vm_reaches(vm_id, [VmStatus.UP])
    running_on, other = (h1, h2) if vm.host_id == h1.host_id else (h2, h1)

    drain = await engine.act(hosts.deactivate_host, running_on.host_id)
    assert drain is not None and (await engine.job(drain.id)).state == "done"
    await engine.eventually(lambda: _has(other), what="the other host to drop the drained one")
    await engine.eventually(lambda: _synced(engine, other.host_id), what="it in sync again")
    assert (await engine.vm(vm_id)).host_id == other.host_id
