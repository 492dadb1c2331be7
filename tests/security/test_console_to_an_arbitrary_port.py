"""A node that reports a VM's VNC port cannot make the engine's console proxy connect to an
arbitrary port (SSH, the database, ...); console passwords are not trivially short."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets.sync.client as ws_client
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.consoles import FakeVnc, console_token, vm_with_console
from tests.support.engine import RunningEngine, start_engine
from tests.support.portal import sign_in


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path / "engine")
    yield running
    running.stop()


def _free_port_below_vnc() -> int:
    """A port below VNC's range, like SSH on 22: the first free one from 2222 (other test
    runs on this machine may hold some)."""
    for port in range(2222, 2322):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port between 2222 and 2321")


def test_console_to_an_arbitrary_port_is_refused(engine: RunningEngine) -> None:
    target = FakeVnc(_free_port_below_vnc())
    try:
        vm_id = asyncio.run_coroutine_threadsafe(vm_with_console(engine, target.port),
                                                 engine.loop).result(timeout=30)
        base = engine.url.removesuffix("/ovirt-engine/api")
        with httpx.Client(base_url=base, timeout=30,
                          verify=ssl.create_default_context(cafile=engine.ca_file)) as portal:
            cookie = sign_in(portal, "admin", engine.password)
            token = asyncio.run_coroutine_threadsafe(console_token(engine, cookie, vm_id),
                                                     engine.loop).result(timeout=30)
            with pytest.raises((ConnectionClosed, InvalidStatus, OSError, TimeoutError)), ws_client.connect(
                    f"wss://{base.split('//', 1)[1]}/console/{vm_id}/ws?token={token}",
                    ssl=ssl.create_default_context(cafile=engine.ca_file),
                    additional_headers={"Cookie": f"overt_session={cookie}",
                                        "Origin": base}, open_timeout=20) as console:
                console.recv(timeout=10)
        assert target.connections == []
    finally:
        target.close()


@pytest.mark.parametrize("password", ["a", "abc12"])
def test_a_short_console_password_is_refused(engine: RunningEngine, password: str) -> None:
    vm_id = asyncio.run_coroutine_threadsafe(vm_with_console(engine, 5900),
                                             engine.loop).result(timeout=30)
    with httpx.Client(verify=ssl.create_default_context(cafile=engine.ca_file), timeout=60,
                      auth=("admin@internal", engine.password)) as api:
        answer = api.post(f"{engine.url}/vms/{vm_id}/ticket",
                          content=f"<action><ticket><value>{password}</value></ticket></action>",
                          headers={"Content-Type": "application/xml"})
    assert answer.status_code == 400, answer.text[:300]
    assert "6 to 8 characters" in answer.text
