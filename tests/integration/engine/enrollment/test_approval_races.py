"""An approved node's enrollment: its certificate is signed and its broker account made with
no transaction open (a fleet's events must not find hosts' rows held meanwhile), the
host's row locked only to write them. An approval or removal that happens in between
is not lost: the loser gets a 409 (or the node is told to ask again) and no broker
account or certificate is left behind."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.database import Database
from overt.engine.db.tables import Host
from overt.engine.enrollment.registry import Registry
from overt.engine.model.errors import Conflict, NotFound
from overt.engine.model.status import HostStatus
from overt.engine.pki.authority import EnginePki
from overt.engine.services import hosts
from overt.protocol.enrollment import BrokerCredentials, EnrollmentStatus
from tests.integration.engine.enrollment.users import administrator
from tests.security.conftest import FakeNode, engine  # noqa: F401  (the SDK test's engine)
from tests.support.engine import RunningEngine


class CountingDb:
    """The engine's database, counting the transactions open at any moment."""

    def __init__(self, db: Database) -> None:
        self.db, self.open = db, 0

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        self.open += 1
        try:
            async with self.db.transaction() as session:
                yield session
        finally:
            self.open -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


class Broker:
    """The broker's accounts; `meanwhile` runs while an account is being made (what another
    request does during the broker's calls)."""

    def __init__(self, db: CountingDb) -> None:
        self.db, self.accounts = db, set[uuid.UUID]()
        self.open_while_made: list[int] = []
        self.meanwhile: Callable[[], Awaitable[None]] | None = None

    async def create_node_user(self, host_uuid: uuid.UUID) -> BrokerCredentials:
        self.open_while_made.append(self.db.open)
        self.accounts.add(host_uuid)
        if self.meanwhile is not None:
            await self.meanwhile()
        return BrokerCredentials(url="amqp://node@broker/overt", username=f"node-{host_uuid}",
                                 command_queue=f"commands.{host_uuid}",
                                 events_exchange="events", stats_exchange="stats")

    async def delete_node_user(self, host_uuid: uuid.UUID) -> None:
        self.accounts.discard(host_uuid)


async def _host(db: Database, node: FakeNode) -> Host | None:
    async with db.transaction() as session:
        return (await session.execute(select(Host).where(
            Host.host_uuid == node.host_uuid))).scalar_one_or_none()


@pytest.fixture
def registry(db: Database, tmp_path: Path) -> Registry:
    pki = EnginePki(tmp_path / "pki", addresses=["127.0.0.1"])
    pki.ensure()
    counting = CountingDb(db)
    return Registry(counting, pki, gateway_url="https://127.0.0.1:1",  # type: ignore[arg-type]
                    broker=Broker(counting))


async def _pending(db: Database, registry: Registry) -> tuple[FakeNode, Host]:
    node = FakeNode()
    assert (await registry.announce(node.request())).status is EnrollmentStatus.PENDING_APPROVAL
    host = await _host(db, node)
    assert host is not None
    return node, host


async def _approve(db: Database, host: Host) -> None:
    async with db.transaction() as session:
        await hosts.approve_host(session, host.id, await administrator(db))


async def _remove(db: Database, host: Host) -> None:
    async with db.transaction() as session:
        await hosts.remove_host(session, host.id, await administrator(db), force=True)


async def test_the_certificate_and_account_are_made_with_no_transaction_open(
        db: Database, registry: Registry) -> None:
    broker: Broker = registry.broker  # type: ignore[assignment]
    signing_open: list[int] = []
    sign = registry.pki.issue_node_certificate

    def counted_sign(csr_pem: str, host_uuid: uuid.UUID) -> str:
        signing_open.append(registry.db.open)  # type: ignore[attr-defined]
        return sign(csr_pem, host_uuid)

    registry.pki.issue_node_certificate = counted_sign  # type: ignore[method-assign]
    node, host = await _pending(db, registry)
    await _approve(db, host)

    grant = await registry.announce(node.request())

    assert grant.status is EnrollmentStatus.APPROVED and grant.broker is not None
    assert (broker.open_while_made, signing_open) == ([0], [0])
    enrolled = await _host(db, node)
    assert enrolled is not None and enrolled.status is HostStatus.CONNECTING
    assert enrolled.certificate_pem == grant.certificate_pem
    assert enrolled.broker_username == grant.broker.username
    assert broker.accounts == {node.host_uuid}


async def test_a_host_removed_while_its_account_is_made_is_not_enrolled_and_keeps_nothing(
        db: Database, registry: Registry) -> None:
    broker: Broker = registry.broker  # type: ignore[assignment]
    node, host = await _pending(db, registry)
    await _approve(db, host)

    async def removed() -> None:
        broker.meanwhile = None
        await _remove(db, host)
    broker.meanwhile = removed

    grant = await registry.announce(node.request())

    # Its node asked again, as a newcomer: pending, without certificate or account.
    assert grant.status is EnrollmentStatus.PENDING_APPROVAL and grant.certificate_pem is None
    assert broker.accounts == set(), "the account made for the removed host is left"
    again = await _host(db, node)
    assert again is not None and again.id != host.id
    assert again.status is HostStatus.PENDING_APPROVAL
    assert (again.certificate_pem, again.broker_username) == (None, None)
    with pytest.raises(NotFound):
        await _approve(db, host)  # the removed host: nothing to approve


async def test_a_host_that_keeps_changing_is_told_to_ask_again_and_keeps_nothing(
        db: Database, registry: Registry) -> None:
    """Removed and announced again, then approved again, while each account is made: the
    node is told to ask again, no account is left and nothing is certified."""
    broker: Broker = registry.broker  # type: ignore[assignment]
    node, host = await _pending(db, registry)
    await _approve(db, host)

    async def churn() -> None:
        current = await _host(db, node)
        assert current is not None
        await _remove(db, current)
        fresh = Registry(registry.db, registry.pki, gateway_url=registry.gateway_url)
        await fresh.announce(node.request())
        newcomer = await _host(db, node)
        assert newcomer is not None
        await _approve(db, newcomer)
    broker.meanwhile = churn

    grant = await registry.announce(node.request())

    assert grant.status is EnrollmentStatus.PENDING_APPROVAL and grant.certificate_pem is None
    assert "ask again" in (grant.message or "")
    assert broker.accounts == set()
    left = await _host(db, node)
    assert left is not None and left.status is HostStatus.INSTALLING
    assert (left.certificate_pem, left.broker_username) == (None, None)

    broker.meanwhile = None  # once it stops changing, the node's next announce enrolls it
    grant = await registry.announce(node.request())
    assert grant.status is EnrollmentStatus.APPROVED
    assert broker.accounts == {node.host_uuid}


async def test_of_two_concurrent_approvals_one_wins_and_the_other_is_a_conflict(
        db: Database, registry: Registry) -> None:
    node, host = await _pending(db, registry)
    await administrator(db)
    outcomes = await asyncio.gather(_approve(db, host), _approve(db, host),
                                    return_exceptions=True)
    assert sorted(type(o).__name__ for o in outcomes) == ["Conflict", "NoneType"]
    [conflict] = [o for o in outcomes if isinstance(o, Conflict)]
    assert "not pending approval" in str(conflict)
    assert (await registry.announce(node.request())).status is EnrollmentStatus.APPROVED


def test_approvals_racing_through_the_sdk_one_is_refused_with_409(
        engine: RunningEngine) -> None:  # noqa: F811
    node = FakeNode()
    assert node.announce(engine).status is EnrollmentStatus.PENDING_APPROVAL
    connection = engine.admin_connection()
    try:
        service = connection.system_service().hosts_service()
        [pending] = [h for h in service.list() if h.status == types.HostStatus.PENDING_APPROVAL]
        errors: list[sdk.Error] = []

        def approve() -> None:
            conn = engine.admin_connection()
            try:
                conn.system_service().hosts_service().host_service(pending.id).approve()
            except sdk.Error as exc:
                errors.append(exc)
            finally:
                conn.close()

        threads = [threading.Thread(target=approve) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [e.code for e in errors] == [409], errors
        assert "not pending approval" in str(errors[0])

        grant = node.announce(engine)
        assert grant.status is EnrollmentStatus.APPROVED and grant.certificate_pem
        host = service.host_service(pending.id)
        assert host.get().status in (types.HostStatus.CONNECTING, types.HostStatus.UP,
                                     types.HostStatus.NON_RESPONSIVE)
        host.remove(force=True)
        with pytest.raises(sdk.Error) as gone:
            host.approve()
        assert gone.value.code == 404
    finally:
        connection.close()
