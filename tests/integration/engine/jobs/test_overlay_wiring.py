"""What the engine sends a host for an overlay network: its VNI, the host's own address as
the tunnel's local end, and the other hosts the network is attached to as remotes."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, DataCenter, Host, HostNetworkAttachment, Network
from overt.engine.jobs.handlers.host_networks import _overlay
from overt.protocol.networks import VxlanWiring


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
