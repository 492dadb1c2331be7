"""What a portal session opened must not outlive it: the event stream and the console
websocket close at sign-out, a session has an absolute lifetime however active it is, and
expired SSO tokens are purged."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client as ws_client
from sqlalchemy import func, select, update
from websockets.exceptions import ConnectionClosed

from overt.engine.db.tables import Token, User, WebSession, utcnow
from overt.engine.identity import tokens
from overt.engine.web import sessions
from tests.support.consoles import FakeVnc, console_token, vm_with_console
from tests.support.engine import RunningEngine, start_engine
from tests.support.portal import sign_in, sign_out

CLOSE_WITHIN_S = 5.0


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path / "engine")
    yield running
    running.stop()


def _portal(engine: RunningEngine) -> httpx.Client:
    return httpx.Client(base_url=engine.url.removesuffix("/ovirt-engine/api"), timeout=30,
                        verify=ssl.create_default_context(cafile=engine.ca_file))


def _run(engine: RunningEngine, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, engine.loop).result(timeout=30)


def _signed_in(engine: RunningEngine, portal: httpx.Client) -> str:
    """Sign in; the session's CSRF token (as its pages carry it)."""
    cookie = sign_in(portal, "admin", engine.password)

    async def csrf() -> str:
        async with engine.runtime.db.transaction() as session:
            return str((await session.execute(select(WebSession.csrf_token).where(
                WebSession.digest == sessions.digest(cookie)))).scalar_one())
    return str(_run(engine, csrf()))


def test_the_event_stream_ends_at_sign_out(engine: RunningEngine) -> None:
    with _portal(engine) as portal, _portal(engine) as other_tab:
        csrf = _signed_in(engine, portal)
        other_tab.cookies = portal.cookies
        ended = threading.Event()
        received: list[str] = []

        def listen() -> None:
            with other_tab.stream("GET", "/events/stream") as stream:
                assert stream.status_code == 200
                for line in stream.iter_lines():
                    received.append(line)
            ended.set()

        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        time.sleep(1.0)
        assert not ended.is_set()
        signed_out_at = time.monotonic()
        sign_out(portal, csrf)
        assert ended.wait(CLOSE_WITHIN_S + 20), "the stream never ended"
        assert time.monotonic() - signed_out_at < CLOSE_WITHIN_S
        assert "event: signedout" in received


def _open_console(engine: RunningEngine, portal: httpx.Client, vm_id: uuid.UUID
                  ) -> ws_client.ClientConnection:
    cookie = portal.cookies["overt_session"]
    token = _run(engine, console_token(engine, cookie, vm_id))
    origin = str(portal.base_url).rstrip("/")
    host = origin.split("//", 1)[1]
    return ws_client.connect(
        f"wss://{host}/console/{vm_id}/ws?token={token}",
        ssl=ssl.create_default_context(cafile=engine.ca_file),
        additional_headers={"Cookie": f"overt_session={cookie}", "Origin": origin},
        open_timeout=20)


def test_the_console_websocket_closes_at_sign_out(engine: RunningEngine) -> None:
    vnc = FakeVnc(_free_port_at_least(5900))
    try:
        vm_id = _run(engine, vm_with_console(engine, vnc.port))
        with _portal(engine) as portal:
            csrf = _signed_in(engine, portal)
            with _open_console(engine, portal, vm_id) as console:
                assert console.recv(timeout=10) == b"RFB 003.008\n"
                signed_out_at = time.monotonic()
                sign_out(portal, csrf)
                with pytest.raises((ConnectionClosed, TimeoutError)):
                    while True:
                        console.recv(timeout=CLOSE_WITHIN_S + 20)
                assert time.monotonic() - signed_out_at < CLOSE_WITHIN_S
    finally:
        vnc.close()


def test_a_session_ends_after_its_absolute_lifetime_however_active(
        engine: RunningEngine) -> None:
    with _portal(engine) as portal:
        cookie = sign_in(portal, "admin", engine.password)
        page = f"/vms/{uuid.uuid4()}/console"
        assert portal.get(page).status_code == 404  # signed in: there is no such VM

        async def age_it() -> None:
            async with engine.runtime.db.transaction() as session:
                await session.execute(update(WebSession).where(
                    WebSession.digest == sessions.digest(cookie)).values(
                    created_at=utcnow() - dt.timedelta(days=2),
                    last_seen_at=utcnow() - dt.timedelta(minutes=1)))

        _run(engine, age_it())
        assert portal.get(page).status_code == 303  # to the sign-in page


def test_expired_sso_tokens_are_purged(engine: RunningEngine) -> None:
    async def plant_expired() -> None:
        async with engine.runtime.db.transaction() as session:
            admin = (await session.execute(select(User))).scalars().first()
            assert admin is not None
            session.add(Token(digest=tokens.digest("old"), user_id=admin.id,
                              expires_at=utcnow() - dt.timedelta(hours=1)))

    async def expired_left() -> int:
        async with engine.runtime.db.transaction() as session:
            return int((await session.execute(select(func.count()).select_from(Token).where(
                Token.expires_at <= utcnow()))).scalar_one())

    _run(engine, plant_expired())
    with _portal(engine) as portal:
        answer = portal.post("/ovirt-engine/sso/oauth/token", data={
            "grant_type": "password", "username": "admin", "password": engine.password})
        assert answer.status_code == 200
    assert _run(engine, expired_left()) == 0


def _free_port_at_least(low: int) -> int:
    for port in range(low, 65535):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")
