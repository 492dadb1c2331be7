"""The transport over TLS (amqps://), with the broker's certificate signed by the engine CA."""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from overt.bus.amqp.agent import AmqpAgentTransport
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.base import NodeAddress
from overt.pki.certs import CertificateAuthority, cert_pem, certificate_request, key_pem, new_key
from overt.protocol import CommandEnvelope
from overt.protocol.commands import HostCapabilitiesCommand
from overt.system.daemons import RabbitNode
from overt.system.waiting import tcp_port_answers, wait_until
from tests.conftest import require_root
from tests.integration.bus.contract.harness import RecordingSink, answering_handler, heartbeat
from tests.integration.bus.contract.transports import TEST_BACKOFF
from tests.support.broker import (
    Broker,
    close_broker,
    open_broker,
    private_node,
    remove_private_node,
)

pytestmark = [pytest.mark.amqp, pytest.mark.slow]


@dataclass(frozen=True)
class TlsBroker:
    broker: Broker
    tls_port: int
    ca_file: Path

    @property
    def node_url(self) -> str:
        return f"amqps://localhost:{self.tls_port}"

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def _broker_tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """The engine CA, and a broker certificate it signed for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True)
    ca = CertificateAuthority.create("Overt test CA")
    key = new_key()
    cert = ca.sign(certificate_request(key, "broker", ["127.0.0.1", "localhost"]))
    paths = directory / "ca.pem", directory / "broker.pem", directory / "broker.key"
    for path, data in zip(paths, (cert_pem(ca.cert), cert_pem(cert), key_pem(key)),
                          strict=True):
        path.write_bytes(data)
    return paths


@pytest.fixture(scope="module")
def tls_rabbitmq() -> Iterator[TlsBroker]:
    require_root()
    plain = private_node()
    assert plain.base_dir is not None
    ca, cert, key = _broker_tls_files(plain.base_dir / "tls")
    tls_port = plain.amqp_port + 1
    node = RabbitNode(plain.name, plain.amqp_port, plain.management_port, plain.base_dir, (
        f"listeners.ssl.default = 127.0.0.1:{tls_port}",
        f"ssl_options.cacertfile = {ca}", f"ssl_options.certfile = {cert}",
        f"ssl_options.keyfile = {key}", "ssl_options.verify = verify_none",
        "ssl_options.fail_if_no_peer_cert = false"))
    try:
        broker = open_broker(node)
        wait_until(lambda: tcp_port_answers("127.0.0.1", tls_port), timeout=30,
                   what="RabbitMQ's TLS listener")
        yield TlsBroker(broker, tls_port, ca)
        close_broker(broker)
    finally:
        remove_private_node(node)


@pytest.mark.asyncio
async def test_engine_and_node_talk_over_tls_when_they_trust_the_engine_ca(
        tls_rabbitmq: TlsBroker) -> None:
    broker, host = tls_rabbitmq.broker, uuid.uuid4()
    credentials = await broker.enroll(host, node_url=tls_rabbitmq.node_url)
    assert credentials.url.startswith("amqps://")
    engine_url = await broker.engine_url(scheme="amqps", port=tls_rabbitmq.tls_port)
    context = tls_rabbitmq.client_context()
    sink = RecordingSink()
    engine = AmqpEngineTransport(engine_url, backoff=TEST_BACKOFF, ssl_context=context)
    agent = AmqpAgentTransport(credentials, host, backoff=TEST_BACKOFF, ssl_context=context)
    try:
        await engine.start(sink)
        await agent.start(answering_handler(host))
        async with asyncio.timeout(10):
            await engine.wait_connected()
            await agent.wait_connected()
        reply = await engine.call(NodeAddress(host),
                                  CommandEnvelope(command=HostCapabilitiesCommand()))
        assert reply.ok
        await agent.publish(heartbeat(host, uuid.uuid4(), 1))
        assert await sink.wait_for_seqs(host, 1) == [1]
    finally:
        await agent.close()
        await engine.close()


@pytest.mark.asyncio
async def test_a_node_that_does_not_trust_the_broker_refuses_to_talk_and_says_why(
        tls_rabbitmq: TlsBroker, caplog: pytest.LogCaptureFixture) -> None:
    host = uuid.uuid4()
    credentials = await tls_rabbitmq.broker.enroll(host, node_url=tls_rabbitmq.node_url)
    caplog.set_level(logging.WARNING, logger="overt.bus.amqp")
    agent = AmqpAgentTransport(credentials, host, backoff=TEST_BACKOFF,
                               ssl_context=ssl.create_default_context())
    try:
        await agent.start(answering_handler(host))
        assert f"the certificate of localhost:{tls_rabbitmq.tls_port} is not trusted" in (
            caplog.text)
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        await agent.close()
