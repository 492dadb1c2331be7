"""The host services follow the host state machine: every user action on a host in every
status either leads where the table says (with its audit event or job) or is refused with
a conflict that changes nothing."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select

from overt.engine.db.database import Database
from overt.engine.db.seed import ADMIN
from overt.engine.db.tables import AuditEvent, Cluster, Host, Job, User
from overt.engine.model.errors import Conflict
from overt.engine.model.host_actions import HostAction
from overt.engine.model.status import HostStatus
from overt.engine.services import host_facts, hosts
from overt.engine.services.jobs import JobSubmitter
from tests.unit.engine.model.test_host_actions import LEADS_TO, cell

USER_ACTIONS = (HostAction.INSTALL, HostAction.APPROVE, HostAction.DEACTIVATE,
                HostAction.ACTIVATE, HostAction.REMOVE, HostAction.REFRESH)


async def _act(db: Database, action: HostAction, host_id: uuid.UUID) -> None:
    jobs = JobSubmitter()
    async with db.transaction() as session:
        user = (await session.execute(select(User).where(User.user_name == ADMIN))).scalar_one()
        match action:
            case HostAction.INSTALL:
                await hosts.install_host(session, jobs, host_id, user)
            case HostAction.APPROVE:
                await hosts.approve_host(session, host_id, user)
            case HostAction.DEACTIVATE:
                await hosts.deactivate_host(session, jobs, host_id, user)
            case HostAction.ACTIVATE:
                await hosts.activate_host(session, host_id, user)
            case HostAction.REMOVE:
                await hosts.remove_host(session, host_id, user)
            case HostAction.REFRESH:
                await host_facts.refresh_host(session, jobs, host_id, user)


async def _hosts_in_every_status(db: Database) -> dict[HostStatus, uuid.UUID]:
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        session.add(User(id=uuid.uuid4(), user_name=ADMIN, administrator=True))
        made = {status: uuid.uuid4() for status in HostStatus}
        for status, host_id in made.items():
            session.add(Host(id=host_id, name=f"h-{status}", address=f"h-{status}.example",
                             cluster_id=cluster.id, status=status,
                             key_fingerprint="AB:" * 31 + "AB"))
    return made


async def _counts(db: Database, host_id: uuid.UUID) -> tuple[int, int]:
    async with db.transaction() as session:
        events = (await session.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.host_id == host_id))).scalar_one()
        jobs = (await session.execute(select(func.count()).select_from(Job).where(
            Job.host_id == host_id))).scalar_one()
    return int(events), int(jobs)


@pytest.mark.parametrize("action", USER_ACTIONS)
async def test_every_host_action_in_every_status_follows_the_table(db: Database,
                                                                   action: HostAction) -> None:
    for status, host_id in (await _hosts_in_every_status(db)).items():
        expected = cell(status, action)
        before = await _counts(db, host_id)
        if expected == "-":
            with pytest.raises(Conflict, match=f"host h-{status}.*: it is {status}"):
                await _act(db, action, host_id)
        else:
            await _act(db, action, host_id)
        async with db.transaction() as session:
            host = await session.get(Host, host_id)
            now = host.status if host is not None else None
        events, jobs = await _counts(db, host_id)
        if expected == "x" and action is HostAction.REMOVE:
            assert now is None, status
        elif expected == "x" and action in LEADS_TO:
            assert now is LEADS_TO[action], status
            assert events == before[0] + 1, status  # the audit log says who did it
        elif expected == "x":  # refresh: a job asks the node; the status stays
            assert (now, jobs) == (status, before[1] + 1), status
        else:  # refused, or nothing left to do: nothing changes
            assert (now, events, jobs) == (status, *before), status
