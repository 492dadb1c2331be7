"""Nodes' broker accounts (fully managed mode), held by the process that enrolls nodes.

`BrokerAdminAccounts` gives the registry what it needs from the broker's management
API. Removing a host deletes its account at once (`revoke_after_commit`, from the
API and the portal); `NodeAccountSweeper` deletes the account of every host that is
no longer in the engine, for removals whose deletion failed (broker unreachable) or
was done elsewhere (another api process, the database by hand).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from overt.bus.amqp.admin import BrokerAdmin, BrokerAdminError
from overt.engine.db.database import Database
from overt.engine.db.tables import Host
from overt.engine.model.errors import Unavailable
from overt.protocol.enrollment import BrokerCredentials

log = logging.getLogger(__name__)


class BrokerAdminAccounts:
    """`BrokerAccounts` over RabbitMQ's management API; broker failures are `Unavailable`."""

    def __init__(self, admin: BrokerAdmin) -> None:
        self.admin = admin

    async def create_node_user(self, host_uuid: uuid.UUID) -> BrokerCredentials:
        try:
            return await self.admin.enroll_node(host_uuid)
        except BrokerAdminError as exc:
            raise Unavailable(f"cannot create the broker account of node {host_uuid}: "
                              f"{exc}") from None

    async def delete_node_user(self, host_uuid: uuid.UUID) -> None:
        try:
            await self.admin.revoke_node(host_uuid)
        except BrokerAdminError as exc:
            raise Unavailable(f"cannot remove the broker account of node {host_uuid}: "
                              f"{exc}") from None

    async def node_users(self) -> set[uuid.UUID]:
        try:
            await self.admin.ensure_shared()  # the queues' limits, once per process
            return await self.admin.node_accounts()
        except BrokerAdminError as exc:
            raise Unavailable(f"cannot list the nodes' broker accounts: {exc}") from None

    async def aclose(self) -> None:
        await self.admin.aclose()


RevokeAccount = Callable[[uuid.UUID], Awaitable[None]]


class _AfterCommit(Protocol):
    """An API or portal request's context: `then` runs once its transaction committed."""

    services: Any
    then: Callable[[], Awaitable[Any]] | None


def revoke_after_commit(ctx: _AfterCommit, host_uuid: uuid.UUID | None, answer: Any) -> None:
    """Delete a removed host's broker account once the removal is committed, before the
    request is answered: its node loses the broker at once, not at the next sweep."""
    revoke: RevokeAccount | None = getattr(ctx.services, "revoke_node_account", None)
    if revoke is None or host_uuid is None:
        return
    removed = host_uuid

    async def then() -> Any:
        try:
            await revoke(removed)
        except Unavailable as exc:
            log.warning("%s; the account goes at the next sweep", exc.detail)
        else:
            log.info("removed the broker account of node %s with its host", removed)
        return answer
    ctx.then = then


class NodeAccountSweeper:
    """Deletes the broker accounts of hosts the engine no longer has.

    An account is created while its host is being enrolled, a moment before the
    host's row says so; an account is therefore removed only once it has had no host
    on two sweeps in a row."""

    def __init__(self, db: Database, accounts: BrokerAdminAccounts, *, interval_s: float) -> None:
        self.db = db
        self.accounts = accounts
        self.interval_s = interval_s
        self._suspects: set[uuid.UUID] = set()

    async def run(self) -> None:
        failing = False
        while True:
            try:
                await self.sweep()
            except (Unavailable, SQLAlchemyError) as exc:
                if not failing:
                    log.warning("cannot check the nodes' broker accounts now (%s); trying "
                                "again", exc)
                failing = True
            else:
                failing = False
            await asyncio.sleep(self.interval_s)

    async def sweep(self) -> set[uuid.UUID]:
        """One pass; returns the hosts whose accounts were removed."""
        accounts = await self.accounts.node_users()
        if not accounts:
            self._suspects = set()
            return set()
        async with self.db.transaction() as session:
            known = set((await session.execute(select(Host.host_uuid).where(
                Host.host_uuid.in_(list(accounts))))).scalars())
        orphans = accounts - known
        removed = set()
        for host_uuid in orphans & self._suspects:
            await self.accounts.delete_node_user(host_uuid)
            log.info("removed the broker account of node %s: its host is no longer in the "
                     "engine", host_uuid)
            removed.add(host_uuid)
        self._suspects = orphans - removed
        return removed
