"""The ways a node is trusted now, end to end with a real engine: the one-time token of a
host added by address, and a token that is wrong (or used for another CA)."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
import uuid
from pathlib import Path

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from aiohttp import web

from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.engine.db.tables import Host
from overt.engine.web.sessions import SIGNIN_COOKIE
from overt.node.identity import NodeIdentity
from overt.pki import tokens
from overt.pki.certs import fingerprint
from tests.integration.bus.direct.conftest import NodeCommands
from tests.integration.node.harness import LoopThread, free_port
from tests.security.conftest import FakeNode, close_loop
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine


def _tls(engine: RunningEngine) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(engine.ca_file))


def _add(engine: RunningEngine, port: int) -> tuple[str, str]:
    """POST /hosts as `overt host add` does: the answer carries the one-time token."""
    response = httpx.post(engine.url + "/hosts", verify=_tls(engine), timeout=30,
                          auth=("admin@internal", engine.password),
                          headers={"Accept": "application/json"},
                          json={"name": "tokened", "address": "127.0.0.1", "port": port})
    assert response.status_code == 201, response.text
    host = response.json()
    return host["id"], host["enrollment_token"]


def _stored_token(engine: RunningEngine, host_id: str) -> str | None:
    """What the engine's database holds of the host's enrollment token."""
    async def read() -> str | None:
        async with engine.runtime.db.transaction() as session:
            host = await session.get(Host, uuid.UUID(host_id))
            return host.enroll_token if host is not None else None
    return asyncio.run_coroutine_threadsafe(read(), engine.loop).result(30)


def test_a_node_started_with_the_token_is_enrolled(engine: RunningEngine,
                                                   connection: sdk.Connection) -> None:
    loop = LoopThread()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-token-"))
    port = free_port()
    host_id, token = _add(engine, port)
    assert len(token) >= 24
    assert _stored_token(engine, host_id) == tokens.digest(token)  # never in clear
    node = DirectAgentTransport(NodeIdentity(base, enroll_token=token), AgentServerSettings(
        listen_address="127.0.0.1", port=port))
    loop.run(node.start(NodeCommands()))
    try:
        hosts = connection.system_service().hosts_service()
        wait_until(lambda: node.enrolled, 60, "the node to be enrolled")
        host = hosts.host_service(host_id).get()
        assert host.status in (types.HostStatus.CONNECTING, types.HostStatus.UP)
        assert host.ssh.fingerprint == node.identity.key_fingerprint()
        assert node.identity.ca_file.read_bytes() == engine.ca_file.read_bytes()
        assert _stored_token(engine, host_id) is None  # one-time: erased once enrolled
        assert "enrollment_token" not in httpx.get(
            engine.url + f"/hosts/{host_id}", verify=_tls(engine),
            auth=("admin@internal", engine.password),
            headers={"Accept": "application/json"}).json()
    finally:
        loop.run(node.close())
        close_loop(loop)


def test_a_certificate_the_node_did_not_take_is_sent_again(engine: RunningEngine,
                                                           connection: sdk.Connection) -> None:
    """The install job was cut off after issuing the certificate, before the node took it
    (a dropped connection, or the engine stopped there): its retry must not take the host
    for enrolled, or the monitor knocks forever with a certificate the node never got."""
    loop = LoopThread()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-token-"))
    port = free_port()
    host_id, token = _add(engine, port)
    node = DirectAgentTransport(NodeIdentity(base, enroll_token=token), AgentServerSettings(
        listen_address="127.0.0.1", port=port))
    take_certificate = node.enrollment.certificate
    refused: list[str] = []

    async def cut_first_delivery(request: web.Request) -> web.Response:
        if not refused:
            refused.append(await request.text())
            return web.json_response({"error": "connection lost"}, status=503)
        return await take_certificate(request)

    node.enrollment.certificate = cut_first_delivery  # type: ignore[method-assign]
    commands = NodeCommands()
    loop.run(node.start(commands))
    try:
        wait_until(lambda: node.enrolled, 40, "the node to be enrolled after a retry")
        seen_at_enrollment = len(commands.seen)
        assert len(refused) == 1
        host = connection.system_service().hosts_service().host_service(host_id)
        # The engine now calls the node over mutual TLS with the certificate it holds.
        wait_until(lambda: len(commands.seen) > seen_at_enrollment, 15,
                   "the engine to reach the node with its certificate")
        assert host.get().status in (types.HostStatus.CONNECTING, types.HostStatus.UP)
        assert _stored_fingerprint(engine, host_id) == fingerprint(
            node.identity.certificate())
    finally:
        loop.run(node.close())
        close_loop(loop)


def _stored_fingerprint(engine: RunningEngine, host_id: str) -> str | None:
    async def read() -> str | None:
        async with engine.runtime.db.transaction() as session:
            host = await session.get(Host, uuid.UUID(host_id))
            return host.certificate_fingerprint if host is not None else None
    return asyncio.run_coroutine_threadsafe(read(), engine.loop).result(30)


# The job gives up after its second knock (the first is retried 2 s later), not its third.
@pytest.mark.install_timeout(1)
def test_a_wrong_token_enrolls_nothing(engine: RunningEngine,
                                       connection: sdk.Connection) -> None:
    loop = LoopThread()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-token-"))
    port = free_port()
    host_id, _token = _add(engine, port)
    node = DirectAgentTransport(NodeIdentity(base, enroll_token="not-the-token"),
                                AgentServerSettings(listen_address="127.0.0.1", port=port))
    loop.run(node.start(NodeCommands()))
    try:
        hosts = connection.system_service().hosts_service()
        wait_until(lambda: any("not the one this node was told to trust" in e.description
                               for e in connection.system_service().events_service().list(
                                   max=10)), 60, "the node to refuse the engine")
        failed = wait_until(lambda: (h := hosts.host_service(host_id).get()).status ==
                            types.HostStatus.INSTALL_FAILED and h, 120, "the install to fail")
        assert failed.certificate is None
        assert not node.enrolled and not node.identity.ca_file.exists()
    finally:
        loop.run(node.close())
        close_loop(loop)


def test_the_portal_shows_the_key_to_compare(engine: RunningEngine,
                                             connection: sdk.Connection) -> None:
    node = FakeNode()
    node.announce(engine)
    [pending] = connection.system_service().hosts_service().list()
    portal = engine.url.removesuffix("/ovirt-engine/api")
    with httpx.Client(base_url=portal, verify=_tls(engine), timeout=30) as browser:
        browser.get("/signin")
        token = browser.cookies.get(SIGNIN_COOKIE)
        signed_in = browser.post("/signin", data={
            "csrf_token": token, "username": "admin@internal",
            "password": engine.password, "next": f"/hosts/{pending.id}"},
            follow_redirects=True)
        assert signed_in.status_code == 200
        assert node.key_fingerprint() in signed_in.text
        assert "compare with the node's log before approving" in signed_in.text
