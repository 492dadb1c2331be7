"""Required networks and out-of-sync attachments over the fast lane: a simulated node
reports the networks it really carries; the engine judges its host by that report.

A host lacking a required network of its cluster is non operational (`network_unreachable`,
an audit event naming the network) and runs no VMs; it is up again by itself once
`setupnetworks` gives it the network or the network is no longer required. An attachment
the node realised differently (tag, MTU, address) is out of sync with the differences, and
`setupnetworks` with `synchronized_network_attachments` re-applies it."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from overt.engine.db.tables import AuditEvent, Cluster, Host, User
from overt.engine.model.errors import Conflict
from overt.engine.model.network_sync import NETWORK_UNREACHABLE, SyncState
from overt.engine.model.status import HostStatus
from overt.engine.queries.host_networks import list_attachments
from overt.engine.queries.lookup import Ref
from overt.engine.services import cluster_networks, host_facts, host_networks, hosts, vms
from overt.engine.services.host_networks import AttachmentInput, SetupInput
from overt.engine.services.networks import NetworkInput, add_network
from overt.protocol.host import NicInfo
from tests.support.loopback import LoopbackEngine

NICS = (NicInfo(name="eth0", mac="52:54:00:00:00:01", mtu=1500),
        NicInfo(name="guest0", mac="52:54:00:00:00:02", mtu=9000))


async def _network(engine: LoopbackEngine, name: str, vlan: int, *,
                   required: bool) -> uuid.UUID:
    """A network of the Default data center, attached to the engine's cluster."""
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        cluster = await session.get(Cluster, engine.cluster_id)
        assert user is not None and cluster is not None
        network = await add_network(session, NetworkInput(
            name=name, vlan_id=vlan, data_center=Ref(id=cluster.data_center_id)), user)
        await session.flush()
        await cluster_networks.attach(session, cluster, Ref(id=network.id), required, user)
        return network.id


async def _set_required(engine: LoopbackEngine, network_id: uuid.UUID, required: bool) -> None:
    async with engine.session() as session:
        cluster = await session.get(Cluster, engine.cluster_id)
        assert cluster is not None
        await cluster_networks.update(session, cluster, network_id, required)


async def _host_is(engine: LoopbackEngine, host_id: uuid.UUID, status: HostStatus) -> Host:
    async def reached() -> Host | None:
        async with engine.session() as session:
            host = await session.get(Host, host_id)
        assert host is not None
        return host if host.status == status else None
    return await engine.eventually(reached, what=f"host {host_id} to be {status}")


async def _attach(engine: LoopbackEngine, host_id: uuid.UUID, network: str,
                  address: str) -> None:
    job = await engine.act(host_networks.setup_networks, host_id, SetupInput(modified=[
        AttachmentInput(network=Ref(name=network), nic=Ref(name="guest0"),
                        boot_protocol="static", address=address, netmask="255.255.255.0")]))
    assert (await engine.job(job.id)).state == "done"


async def _sync(engine: LoopbackEngine, host_id: uuid.UUID, network: str) -> SyncState:
    async with engine.session() as session:
        host = await session.get(Host, host_id)
        assert host is not None
        for attachment, net in await list_attachments(session, host_id):
            if net.name == network:
                return host_networks.attachment_sync(host, attachment, net)
    raise AssertionError(f"host {host_id} has no attachment of {network}")


async def _resynced(engine: LoopbackEngine, host_id: uuid.UUID) -> bool:
    async with engine.session() as session:
        host = await session.get(Host, host_id)
    assert host is not None
    return host.boot_id == engine.hosts["h1"].agent.sequencer.boot_id  # type: ignore[union-attr]


async def _events(engine: LoopbackEngine, host_id: uuid.UUID) -> list[str]:
    async with engine.session() as session:
        return list((await session.execute(select(AuditEvent.description).where(
            AuditEvent.host_id == host_id).order_by(AuditEvent.id))).scalars())


async def test_a_host_lacking_a_required_network_is_non_operational_until_it_carries_it(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", nics=NICS)
    vm_id = await engine.add_vm("web")

    await _network(engine, "blue", 100, required=True)
    host = await _host_is(engine, node.host_id, HostStatus.NON_OPERATIONAL)
    assert host.status_detail == NETWORK_UNREACHABLE
    assert any("networks are missing on host: 'blue'" in e
               for e in await _events(engine, node.host_id))
    try:  # the scheduler places no VM on it
        job = await engine.act(vms.start_vm, vm_id)
    except Conflict as refused:
        assert "h1" in str(refused) or "host" in str(refused)
    else:
        assert (await engine.job(job.id)).state == "failed"
    assert (await engine.vm(vm_id)).host_id is None

    # Its agent restarted and reporting again, it stays non operational: it still lacks it.
    await engine.restart_agent("h1")
    await engine.eventually(lambda: _resynced(engine, node.host_id), what="the new report")
    host = await _host_is(engine, node.host_id, HostStatus.NON_OPERATIONAL)

    await _attach(engine, node.host_id, "blue", "10.9.0.1")  # oVirt's auto-recovery
    host = await _host_is(engine, node.host_id, HostStatus.UP)
    assert host.status_detail == ""
    assert [n.vlan for n in node.networks.carried.values()] == [100]
    assert (await _sync(engine, node.host_id, "blue")).in_sync
    assert any("carries every required network" in e
               for e in await _events(engine, node.host_id))
    job = await engine.act(vms.start_vm, vm_id)
    assert (await engine.job(job.id)).state == "done"
    assert (await engine.vm(vm_id)).host_id == node.host_id


async def test_the_nodes_report_decides_and_a_network_made_optional_brings_the_host_up(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", nics=NICS)
    network_id = await _network(engine, "green", 200, required=False)
    await _attach(engine, node.host_id, "green", "10.9.1.1")
    await _set_required(engine, network_id, True)
    await _host_is(engine, node.host_id, HostStatus.UP)  # it carries it

    node.networks.lose("green")  # gone from the host, though the engine still attaches it
    job = await engine.act(host_facts.refresh_host, node.host_id)
    assert (await engine.job(job.id)).state == "done"
    host = await _host_is(engine, node.host_id, HostStatus.NON_OPERATIONAL)
    assert host.status_detail == NETWORK_UNREACHABLE
    sync = await _sync(engine, node.host_id, "green")
    assert not sync.in_sync

    await _set_required(engine, network_id, False)
    host = await _host_is(engine, node.host_id, HostStatus.UP)
    assert host.status_detail == ""

    # In maintenance a host is left alone; activated, it is judged on its fresh report.
    await _set_required(engine, network_id, True)
    await _host_is(engine, node.host_id, HostStatus.NON_OPERATIONAL)
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await hosts.deactivate_host(session, engine.jobs, node.host_id, user)
    await _set_required(engine, network_id, False)
    await _set_required(engine, network_id, True)
    assert (await _host_is(engine, node.host_id, HostStatus.MAINTENANCE)).status_detail == ""
    async with engine.session() as session:
        await hosts.activate_host(session, node.host_id, user)
    await _host_is(engine, node.host_id, HostStatus.NON_OPERATIONAL)


async def test_an_attachment_realised_otherwise_is_out_of_sync_until_synchronised(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", nics=NICS)
    await _network(engine, "red", 300, required=False)
    await _attach(engine, node.host_id, "red", "10.9.2.1")

    async def settled_in_sync() -> SyncState | None:
        sync = await _sync(engine, node.host_id, "red")
        return sync if sync.in_sync else None
    sync = await engine.eventually(settled_in_sync, what="the attachment to be in sync")
    assert sync.configurations is not None
    assert {c.name: (c.expected, c.actual) for c in sync.configurations} == {
        "vlan": ("300", "300"), "mtu": ("1500", "1500"),
        "ipv4_address": ("10.9.2.1", "10.9.2.1"), "ipv4_netmask": ("255.255.255.0",) * 2}

    node.networks.drift("red", vlan=301, mtu=1400, addresses=("10.9.2.9/16",))
    job = await engine.act(host_facts.refresh_host, node.host_id)
    assert (await engine.job(job.id)).state == "done"

    async def out_of_sync() -> SyncState | None:
        sync = await _sync(engine, node.host_id, "red")
        return None if sync.in_sync else sync
    sync = await engine.eventually(out_of_sync, what="the attachment to be out of sync")
    assert sync.configurations is not None
    differences = {c.name: (c.expected, c.actual) for c in sync.configurations
                   if not c.in_sync}
    assert differences == {"vlan": ("300", "301"), "mtu": ("1500", "1400"),
                           "ipv4_address": ("10.9.2.1", "10.9.2.9"),
                           "ipv4_netmask": ("255.255.255.0", "255.255.0.0")}
    await _host_is(engine, node.host_id, HostStatus.UP)  # out of sync is not missing

    async with engine.session() as session:
        attachment_id = next(a.id for a, n in await list_attachments(session, node.host_id)
                             if n.name == "red")
    job = await engine.act(host_networks.setup_networks, node.host_id,
                           SetupInput(synchronized=[attachment_id]))
    assert (await engine.job(job.id)).state == "done"
    await engine.eventually(settled_in_sync, what="the attachment to be in sync again")
    carried = node.networks.carried["red"]
    assert (carried.vlan, carried.mtu, carried.addresses) == (300, 1500, ("10.9.2.1/24",))


async def test_a_setup_the_node_rolled_back_leaves_the_attachments_as_they_were(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", nics=NICS)
    await _network(engine, "blue", 100, required=False)
    await _network(engine, "red", 300, required=False)
    await _attach(engine, node.host_id, "blue", "10.9.0.1")
    before = await _layout(engine, node.host_id)

    node.networks.cuts_off = "red"
    job = await engine.act(host_networks.setup_networks, node.host_id, SetupInput(
        modified=[AttachmentInput(network=Ref(name="red"), nic=Ref(name="guest0")),
                  AttachmentInput(network=Ref(name="blue"), nic=Ref(name="guest0"),
                                  boot_protocol="static", address="10.9.0.7",
                                  netmask="255.255.255.0")],
        check_connectivity=True, connectivity_timeout_s=5))
    assert (await engine.job(job.id)).state == "failed"
    assert await _layout(engine, node.host_id) == before
    assert list(node.networks.carried) == ["blue"]
    assert any("network change of host h1 was rolled back" in e and "did not confirm" in e
               for e in await _events(engine, node.host_id))
    await _host_is(engine, node.host_id, HostStatus.UP)


async def _layout(engine: LoopbackEngine, host_id: uuid.UUID) -> list[tuple[str, str, str | None,
                                                                         bool]]:
    async with engine.session() as session:
        return sorted((n.name, a.nic_name, a.address, a.applied)
                      for a, n in await list_attachments(session, host_id))


async def test_setupnetworks_has_the_node_read_back_at_once_not_at_the_monitors_tick(
        engine: LoopbackEngine) -> None:
    """The job tells the monitor it marked the host for resync: with a tick of an hour the
    attachment is still in sync as soon as the node's report is read back."""
    node = await engine.add_host("h1", nics=NICS)
    await _network(engine, "blue", 100, required=False)
    engine.monitor.tick_s = 3600
    engine.monitor.resync_soon()  # the loop takes the new tick from its next wait on
    await _attach(engine, node.host_id, "blue", "10.9.0.1")

    async def in_sync() -> bool:
        return (await _sync(engine, node.host_id, "blue")).in_sync
    await engine.eventually(in_sync, what="blue in sync without waiting for the tick")
