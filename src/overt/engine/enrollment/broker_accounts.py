"""Nodes' broker accounts (fully managed mode), held by the process that enrolls nodes.

`BrokerAdminAccounts` gives the registry what it needs from the broker's management
API; `NodeAccountSweeper` deletes the account of every host that is no longer in
the engine, so a removed host's node loses the broker at once and for good.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from overt.bus.amqp import BrokerAdmin, BrokerAdminError
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
