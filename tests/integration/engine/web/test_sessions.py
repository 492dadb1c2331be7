"""Portal sessions and console tokens on a real database: expiry, sign-out, one-time use."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest_asyncio
from sqlalchemy import select, update

from overt.engine.db.database import Database
from overt.engine.db.seed import ADMIN, BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, User, Vm, WebSession, utcnow
from overt.engine.web import sessions


@pytest_asyncio.fixture
async def db(db: Database) -> Database:
    """The engine's database with its administrator."""
    async with db.transaction() as session:
        session.add(User(user_name=ADMIN, password_hash=None, administrator=True))
    return db


async def _admin(db: Database) -> User:
    async with db.transaction() as session:
        return (await session.execute(select(User).where(User.user_name == ADMIN))).scalar_one()


async def _vm(db: Database) -> uuid.UUID:
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        vm = Vm(id=uuid.uuid4(), name=f"vm-{uuid.uuid4().hex[:6]}", cluster_id=cluster.id,
                template_id=BLANK_TEMPLATE_ID, memory_mib=256)
        session.add(vm)
        return vm.id


async def test_a_session_is_found_by_its_cookie_only_and_ends_at_sign_out(db: Database) -> None:
    admin = await _admin(db)
    async with db.transaction() as session:
        cookie, row = await sessions.start_session(session, admin)
    assert row.digest == sessions.digest(cookie) and cookie not in row.digest
    async with db.transaction() as session:
        found = await sessions.find_session(session, cookie)
        assert found is not None and found[1].user_name == ADMIN
        assert await sessions.find_session(session, cookie + "x") is None
        assert await sessions.find_session(session, None) is None
        await sessions.end_session(session, cookie)
    async with db.transaction() as session:
        assert await sessions.find_session(session, cookie) is None


async def test_inactivity_ends_a_session_and_activity_extends_it(db: Database) -> None:
    admin = await _admin(db)
    async with db.transaction() as session:
        cookie, row = await sessions.start_session(session, admin)
        digest = row.digest
    old = utcnow() - dt.timedelta(minutes=10)
    async with db.transaction() as session:
        await session.execute(update(WebSession).where(WebSession.digest == digest).values(
            last_seen_at=old, expires_at=old + sessions.IDLE_TIMEOUT))
    async with db.transaction() as session:
        assert await sessions.find_session(session, cookie) is not None  # touched: extended
    async with db.transaction() as session:
        row = await session.get(WebSession, digest)
        assert row is not None and row.expires_at > utcnow() + sessions.IDLE_TIMEOUT \
            - dt.timedelta(minutes=1)
        row.expires_at = utcnow() - dt.timedelta(seconds=1)
    async with db.transaction() as session:
        assert await sessions.find_session(session, cookie) is None


async def test_a_console_token_opens_once_for_its_session_and_vm(db: Database) -> None:
    admin = await _admin(db)
    vm_id, other_vm = await _vm(db), await _vm(db)
    async with db.transaction() as session:
        _cookie, mine = await sessions.start_session(session, admin)
        _cookie2, theirs = await sessions.start_session(session, admin)
        token = await sessions.issue_console_token(session, mine, vm_id)
    async with db.transaction() as session:
        assert not await sessions.redeem_console_token(session, token, theirs, vm_id)
        assert not await sessions.redeem_console_token(session, token, mine, other_vm)
        assert not await sessions.redeem_console_token(session, "guess", mine, vm_id)
        assert await sessions.redeem_console_token(session, token, mine, vm_id)
    async with db.transaction() as session:
        assert not await sessions.redeem_console_token(session, token, mine, vm_id)  # used


def test_csrf_tokens_compare_exactly() -> None:
    token = sessions.new_secret()
    assert sessions.same_secret(token, token)
    assert not sessions.same_secret(token[:-1], token)
    assert not sessions.same_secret("", token)
    assert not sessions.same_secret(None, token)
