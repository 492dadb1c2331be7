"""Bonds as the node reports them, over the fast lane: after `setupnetworks` the simulated
node reports the bond on its switch with its active slave; when that slave loses its link
the bond fails over, the node reports by itself, and the engine shows the new active slave
and the slave's link down. A bond made on the host behind the engine's back is shown too,
out of sync; so is one the engine defines and the host does not have."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from overt.engine.db.tables import Host, HostBond
from overt.engine.model.bond_sync import BondView
from overt.engine.queries.host_bonds import host_bond_views
from overt.engine.queries.lookup import Ref
from overt.engine.services import host_facts, host_networks
from overt.engine.services.host_bonds import BondInput
from overt.engine.services.host_networks import SetupInput
from overt.protocol.host import NicInfo, ReportedBond, ReportedBondSlave
from tests.support.loopback import LoopbackEngine

NICS = (NicInfo(name="eth0", mac="52:54:00:00:00:01", mtu=1500),
        NicInfo(name="eth1", mac="52:54:00:00:00:02", mtu=1500),
        NicInfo(name="eth2", mac="52:54:00:00:00:03", mtu=1500))


async def _views(engine: LoopbackEngine, host_id: uuid.UUID) -> dict[str, BondView]:
    async with engine.session() as session:
        host = await session.get(Host, host_id)
        assert host is not None
        return {v.name: v for v in await host_bond_views(session, host)}


async def _refresh(engine: LoopbackEngine, host_id: uuid.UUID) -> None:
    job = await engine.act(host_facts.refresh_host, host_id)
    assert (await engine.job(job.id)).state == "done"


async def test_the_engine_shows_the_bonds_and_active_slave_the_node_reports(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", nics=NICS)
    job = await engine.act(host_networks.setup_networks, node.host_id, SetupInput(
        modified_bonds=[BondInput(name="bond0", options={"mode": "1"},
                                  slaves=[Ref(name="eth1"), Ref(name="eth2")])]))
    assert (await engine.job(job.id)).state == "done"

    async def reported() -> BondView | None:
        view = (await _views(engine, node.host_id)).get("bond0")
        return view if view is not None and view.reported is not None else None
    bond = await engine.eventually(reported, what="the node to report bond0")
    assert bond.in_sync and bond.reported is not None
    assert (bond.reported.active_slave, bond.slaves, bond.link_up) == ("eth1",
                                                                       ("eth1", "eth2"), True)

    node.networks.link_down("eth1")  # the active slave's cable is pulled: the node reports

    async def failed_over() -> BondView | None:
        view = (await _views(engine, node.host_id))["bond0"]
        return view if view.reported and view.reported.active_slave == "eth2" else None
    bond = await engine.eventually(failed_over, what="the engine to show eth2 active")
    assert bond.in_sync and bond.link_up is True
    assert bond.reported is not None
    assert {s.name: s.link_up for s in bond.reported.slaves} == {"eth1": False, "eth2": True}


async def test_bonds_the_host_has_otherwise_are_shown_out_of_sync(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", nics=NICS)
    node.networks.add_bond(ReportedBond(name="bond7", mode="balance-slb", slaves=(
        ReportedBondSlave(name="eth1", link_up=True), ReportedBondSlave(name="eth2"))))
    async with engine.session() as session:  # defined, but never set up on the host
        session.add(HostBond(id=uuid.uuid4(), host_id=node.host_id, name="bond3",
                             slaves=["eth1", "eth2"], options={"mode": "4"}))
    await _refresh(engine, node.host_id)

    async def both() -> dict[str, BondView] | None:
        views = await _views(engine, node.host_id)
        return views if views.get("bond7") and views["bond7"].reported else None
    views = await engine.eventually(both, what="the node to report bond7")
    assert sorted(views) == ["bond3", "bond7"]
    assert views["bond7"].differences == [("mode", "", "balance-slb"),
                                          ("slaves", "", "eth1,eth2")]
    assert views["bond7"].options == {"mode": "balance-slb"}
    assert views["bond3"].differences == [("mode", "balance-tcp", ""),
                                          ("slaves", "eth1,eth2", "")]
    async with engine.session() as session:
        rows = (await session.execute(select(HostBond.name).where(
            HostBond.host_id == node.host_id))).scalars().all()
    assert list(rows) == ["bond3"]  # a reported bond is shown, never recorded as defined
