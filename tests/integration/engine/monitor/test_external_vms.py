"""Domains Overt did not create show as external VMs, under a name no other VM has."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.monitor.reconcile import reconcile
from overt.protocol.boots import new_boot_id
from overt.protocol.host import HostState, VmState, VmStatusReport


async def test_an_external_domain_whose_names_are_taken_gets_a_free_one(db: Database) -> None:
    host_id = uuid.uuid4()
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        session.add(Host(id=host_id, name=f"h-{host_id.hex[:8]}", address="192.0.2.1",
                         cluster_id=cluster.id, status="up", host_uuid=uuid.uuid4()))
        # An Overt VM of the same name, and an external VM shown under the other name
        # from when it ran elsewhere.
        for name, origin in (("web", "overt"), ("external-web", "external")):
            session.add(Vm(id=uuid.uuid4(), name=name, cluster_id=cluster.id,
                           template_id=BLANK_TEMPLATE_ID, memory_mib=0, origin=origin))
    state = HostState(host_uuid=uuid.uuid4(), boot_id=new_boot_id(), seq=0, free_memory_mib=1,
                      vms=(VmStatusReport(vm_id=None, name="web", state=VmState.RUNNING),))
    for _ in range(2):  # reported twice: still one external VM
        async with db.transaction() as session:
            host = await session.get(Host, host_id)
            assert host is not None
            await reconcile(session, host, state)
    async with db.transaction() as session:
        shown = (await session.execute(select(Vm.name, Vm.status).where(
            Vm.host_id == host_id))).all()
    assert shown == [("external-web-2", "up")]
