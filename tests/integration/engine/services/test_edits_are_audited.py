"""Edits of a VM and its NICs go through the service layer, which records each in the
audit log (the events an administrator reads), attributed to the user who made it."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from overt.engine import audit
from overt.engine.db.tables import AuditEvent, User, Vm, VmNic
from overt.engine.queries import lookup
from overt.engine.services import vm_nics, vms
from overt.engine.services.inputs import NicInput, VmInput
from tests.support.loopback import LoopbackEngine


async def _events(engine: LoopbackEngine, vm_id: uuid.UUID) -> list[tuple[int, str]]:
    async with engine.session() as session:
        rows = (await session.execute(select(AuditEvent).where(AuditEvent.vm_id == vm_id)
                                      .order_by(AuditEvent.id))).scalars().all()
        assert all(row.user_id == engine.user_id for row in rows)
        return [(row.code, row.description) for row in rows]


async def test_nic_and_vm_edits_are_audited_with_their_user(engine: LoopbackEngine) -> None:
    vm_id = await engine.add_vm("web")
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        vm = await lookup.get(session, Vm, vm_id, for_update=True)
        nic, _job = await vm_nics.add_nic(session, engine.jobs, vm,
                                          NicInput(mac="56:6f:1a:2b:3c:4d"), user)
        nic_id = nic.id
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        vm = await lookup.get(session, Vm, vm_id, for_update=True)
        await vm_nics.update_nic(session, engine.jobs, vm, nic_id, NicInput(linked=False), user)
        await vms.update_vm(session, vm_id, VmInput(description="front end"), user)
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        vm = await lookup.get(session, Vm, vm_id, for_update=True)
        await vm_nics.remove_nic(session, vm, nic_id, user)

    events = await _events(engine, vm_id)
    assert [code for code, _ in events] == [audit.NIC_ADDED, audit.NIC_UPDATED,
                                            audit.VM_UPDATED, audit.NIC_REMOVED]
    async with engine.session() as session:
        admin = (await session.get(User, engine.user_id)).user_name  # type: ignore[union-attr]
    assert events[0][1] == f"Interface nic1 (56:6f:1a:2b:3c:4d) was added to VM web by {admin}"
    assert events[3][1] == f"Interface nic1 was removed from VM web by {admin}"
    async with engine.session() as session:
        assert (await session.execute(select(VmNic).where(VmNic.vm_id == vm_id))).first() is None
        assert (await session.get(Vm, vm_id)).description == "front end"  # type: ignore[union-attr]
