"""Finding: the CA that certifies nodes also vouched for the engine (and the broker).

Whatever signs node certificates is reachable by anyone on the network (`/v1/enroll`)
and certifies what nodes show. Should it ever sign a node's key for the engine's name
(a flaw in what it accepts, a stolen request), every other node and every client of
the engine would take that node for the engine: drive the other nodes' libvirt,
receive their events, read administrators' passwords. So nodes and the engine's
clients must not accept, for the engine's (or the broker's) name, a certificate of
the CA that certifies nodes; the attacker here holds such a certificate.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.bus.direct.tls import ENGINE_COMMON_NAME, ENGINE_SERVER_NAME
from overt.node.identity import NodeIdentity
from overt.pki.certs import (
    CertificateAuthority,
    PrivateKey,
    cert_pem,
    certificate_request,
    key_pem,
    load_cert,
    load_key,
    write_private,
)
from overt.protocol import CommandEnvelope
from overt.protocol.commands import HostCapabilitiesCommand
from overt.protocol.enrollment import EnrollmentGrant, EnrollmentRequest, EnrollmentStatus
from tests.integration.bus.direct.conftest import NodeCommands, capabilities
from tests.integration.node.harness import LoopThread, free_port
from tests.security.conftest import FakeNode, close_loop
from tests.support.engine import RunningEngine


def _approve_pending(connection: sdk.Connection) -> None:
    hosts = connection.system_service().hosts_service()
    pending = next(h for h in hosts.list() if h.status == types.HostStatus.PENDING_APPROVAL)
    hosts.host_service(pending.id).approve()


def _announce(engine: RunningEngine, request: EnrollmentRequest) -> EnrollmentGrant:
    context = ssl.create_default_context(cafile=str(engine.ca_file))
    context.check_hostname = False
    response = httpx.post(engine.gateway_url + "/v1/enroll", verify=context, timeout=30,
                          content=request.model_dump_json(),
                          headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return EnrollmentGrant.model_validate_json(response.text)


def _issuer_of(cert: x509.Certificate, pki_dir: Path) -> CertificateAuthority:
    """The CA (key and certificate, from the engine's data directory) that signed `cert`."""
    for key_file in sorted(pki_dir.glob("*.key")):
        pem = key_file.with_suffix(".pem")
        if not pem.exists():
            continue
        ca_cert = load_cert(pem.read_bytes())
        try:
            cert.verify_directly_issued_by(ca_cert)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return CertificateAuthority(load_key(key_file), ca_cert)
    raise AssertionError(f"no CA in {pki_dir} issued the node's certificate")


def _forged_engine_identity(ca: CertificateAuthority, key: PrivateKey,
                            directory: Path) -> tuple[Path, Path]:
    """The attacking node's key, certified by the node-certifying CA for the engine's names."""
    names = [ENGINE_SERVER_NAME, "localhost", "127.0.0.1"]
    cert = ca.sign(certificate_request(key, ENGINE_COMMON_NAME, names),
                   common_name=ENGINE_COMMON_NAME, names=names)
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "forged.pem", directory / "forged.key"
    cert_file.write_bytes(cert_pem(cert))
    write_private(key_file, key_pem(key))
    return cert_file, key_file


@contextmanager
def _serving(cert_file: Path, key_file: Path) -> Iterator[int]:
    """A TLS server showing the forged certificate (the attacker posing as the engine)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            while True:
                conn, _ = listener.accept()
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                except (ssl.SSLError, OSError):
                    conn.close()
        except OSError:
            return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        # shutdown wakes the accept() waiting in the thread (close alone leaves it to
        # its 10 s timeout)
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(timeout=10)


def _handshake(context: ssl.SSLContext, port: int, server_name: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=server_name):
        pass


@pytest.fixture
def victim(engine: RunningEngine, connection: sdk.Connection,
           tmp_path: Path) -> Iterator[tuple[DirectAgentTransport, NodeCommands]]:
    """Another node, enrolled with the engine and serving commands (mutual TLS)."""
    host_uuid = uuid.uuid4()
    identity = NodeIdentity(tmp_path / "victim", engine.ca_file)
    request = EnrollmentRequest(
        host_uuid=host_uuid, hostname="victim", address="127.0.0.1", rpc_port=54321,
        csr_pem=identity.csr_pem(host_uuid, [f"urn:uuid:{host_uuid}"]),
        capabilities=capabilities(host_uuid))
    _announce(engine, request)
    _approve_pending(connection)
    grant = _announce(engine, request)
    assert grant.status is EnrollmentStatus.APPROVED, grant.message
    identity.accept_grant(grant, host_uuid, engine.gateway_url)
    commands = NodeCommands(host_uuid)
    loop = LoopThread()
    node = DirectAgentTransport(identity, AgentServerSettings(
        listen_address="127.0.0.1", port=free_port()))
    loop.run(node.start(commands))
    yield node, commands
    loop.run(node.close())
    close_loop(loop)


def test_node_certificate_for_the_engine_name(
        engine: RunningEngine, connection: sdk.Connection, tmp_path: Path,
        victim: tuple[DirectAgentTransport, NodeCommands]) -> None:
    attacker = FakeNode()
    attacker.announce(engine)
    _approve_pending(connection)
    grant = attacker.announce(engine)
    assert grant.status is EnrollmentStatus.APPROVED and grant.certificate_pem
    node_ca = _issuer_of(load_cert(grant.certificate_pem.encode()),
                         engine.runtime.pki.directory)
    cert_file, key_file = _forged_engine_identity(node_ca, attacker.key, tmp_path / "attacker")

    # 1. Commands to another node, as the engine (client certificate, CN `engine`).
    accepted: list[str] = []
    node, commands = victim
    context = ssl.create_default_context(cafile=str(cert_file))  # any server cert will do
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(cert_file, key_file)
    command = CommandEnvelope(command=HostCapabilitiesCommand())
    try:
        answer = httpx.post(f"https://127.0.0.1:{node.port}/v1/commands", verify=context,
                            content=command.model_dump_json(), timeout=10,
                            headers={"Content-Type": "application/json"})
        if answer.status_code != 403:
            accepted.append(f"the other node answered the forged engine {answer.status_code}")
    except httpx.TransportError:
        pass  # the node refused the handshake
    if any(e.request_id == command.request_id for e in commands.seen):
        accepted.append("the other node ran the forged engine's command")

    with _serving(cert_file, key_file) as port:
        # 2. The other node delivering events or renewing at the engine's gateway: it
        # connects to whoever answers and checks the engine's name.
        for who, client, name in (
                ("the other node", node.identity.files().engine_client_context(),
                 ENGINE_SERVER_NAME),
                # 3. A client of the API, with the CA the engine publishes (pki-resource).
                ("a client of the API", ssl.create_default_context(cafile=str(engine.ca_file)),
                 "localhost")):
            try:
                _handshake(client, port, name)
            except ssl.SSLCertVerificationError:
                continue
            accepted.append(f"{who} took the forged certificate for {name!r}")
    assert accepted == []
