"""The broker's certificate is the engine's to issue and rotate (a RabbitMQ Overt
manages): from the server CA, renewed like the others well before it expires, served
by RabbitMQ at once, with the nodes of fully managed mode connected all along.

A private RabbitMQ node with a TLS listener reads its files from the directory the
engine writes them to; engine and simulated nodes share a clock the test moves ahead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from cryptography import x509

from overt.bus.amqp.agent import AmqpAgentTransport
from overt.clock import Clock
from overt.engine.pki.authority import EnginePki
from overt.engine.pki.broker_tls import BrokerTls
from overt.node.agent import AgentTimings
from overt.node.managed import ManagedAgentTransport
from overt.node.simulated.fleet import FleetSpec, SimulatedFleet
from overt.pki.certs import fingerprint, load_cert
from overt.pki.expiry import Expiry
from overt.system.daemons import RabbitNode
from overt.system.waiting import tcp_port_answers
from tests.conftest import require_root
from tests.integration.node.harness import LoopThread
from tests.security.conftest import close_loop
from tests.support.broker import Broker, close_broker, open_broker, private_node, remove_private_node
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, start_engine

pytestmark = [pytest.mark.amqp, pytest.mark.slow]

NODES = 2
NAMES = ("localhost", "127.0.0.1")
AHEAD = dt.timedelta(days=700)  # every 825-day certificate is due, none expired


def served_certificate(port: int) -> x509.Certificate:
    """The certificate the broker shows to a new connection now."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


@dataclass
class ManagedSite:
    base: Path
    broker: Broker
    tls_port: int
    engine: RunningEngine
    clock: Clock
    loop: LoopThread
    fleet: SimulatedFleet
    connection: sdk.Connection

    def hosts_up(self) -> bool:
        hosts = self.connection.system_service().hosts_service().list()
        return len(hosts) == NODES and all(h.status == types.HostStatus.UP for h in hosts)

    def approve_all(self) -> None:
        service = self.connection.system_service().hosts_service()

        def approved_and_up() -> bool:
            for host in service.list():
                if host.status == types.HostStatus.PENDING_APPROVAL:
                    service.host_service(host.id).approve()
            return self.hosts_up()
        wait_until(approved_and_up, 90, "the nodes to be approved and up")

    def states_ok(self) -> bool:
        future = asyncio.run_coroutine_threadsafe(
            _states(self.engine), self.engine.loop)
        return all(s.expiry is Expiry.OK for s in future.result(30))

    def buses(self) -> list[AmqpAgentTransport]:
        buses = []
        for node in self.fleet.nodes:
            assert isinstance(node.transport, ManagedAgentTransport)
            assert node.transport.bus is not None
            buses.append(node.transport.bus)
        return buses


async def _states(engine: RunningEngine) -> list:  # type: ignore[type-arg]
    from overt.engine.pki.rotation import certificate_states

    return await certificate_states(engine.runtime.db, engine.runtime.pki)


@pytest.fixture
def site() -> Iterator[ManagedSite]:
    require_root()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-broker-tls-"))
    base.chmod(0o755)
    plain = private_node()
    assert plain.base_dir is not None and plain.name is not None
    tls_dir, tls_port = plain.base_dir / "tls", plain.amqp_port + 1
    clock = Clock()
    # The engine's PKI first: the broker starts with the certificate the engine issued.
    settings = {"broker_tls_dir": tls_dir, "broker_tls_names": list(NAMES),
                "broker_rabbitmq_node": plain.name}
    EnginePki(base / "engine" / "pki", addresses=["127.0.0.1"],
              broker=BrokerTls(tls_dir, NAMES)).ensure()
    node = RabbitNode(plain.name, plain.amqp_port, plain.management_port, plain.base_dir, (
        f"listeners.ssl.default = 127.0.0.1:{tls_port}",
        f"ssl_options.cacertfile = {tls_dir / 'ca.pem'}",
        f"ssl_options.certfile = {tls_dir / 'broker.pem'}",
        f"ssl_options.keyfile = {tls_dir / 'broker.key'}",
        "ssl_options.verify = verify_none", "ssl_options.fail_if_no_peer_cert = false"))
    loop = LoopThread()
    try:
        broker = open_broker(node)
        wait_until(lambda: tcp_port_answers("127.0.0.1", tls_port), 30,
                   "RabbitMQ's TLS listener")
        engine = start_engine(
            base / "engine", bus=asyncio.run(broker.engine_url(scheme="amqps", port=tls_port)),
            broker_admin_url=broker.admin_url, broker_node_url=f"amqps://localhost:{tls_port}",
            broker_management_port=plain.management_port,
            cert_check_interval_s=0.3, heartbeat_timeout_s=5.0, **settings)
        engine.runtime.clock.offset_s = 0.0
        clock = engine.runtime.clock
        fleet = SimulatedFleet(FleetSpec(
            engine_url=f"https://127.0.0.1:{engine.runtime.settings.gateway_port}",
            data_dir=base / "fleet", count=NODES, bus="amqps", seed=uuid.uuid4().hex[:6],
            engine_ca_file=engine.ca_file, announce_interval_s=0.3, cert_check_interval_s=0.3,
            clock=clock, timings=AgentTimings(stats_interval_s=5.0, heartbeat_interval_s=0.5)))
        loop.run(fleet.start())
        connection = sdk.Connection(url=engine.url, username="admin@internal",
                                    password=engine.password, ca_file=str(engine.ca_file))
        yield ManagedSite(base, broker, tls_port, engine, clock, loop, fleet, connection)
        connection.close()
        loop.run(fleet.stop())
        engine.stop()
        close_broker(broker)
    finally:
        close_loop(loop)
        remove_private_node(node)
        shutil.rmtree(base, ignore_errors=True)


def _node_connections(caplog: pytest.LogCaptureFixture) -> int:
    """How many times the nodes connected to the broker (the links log each one)."""
    return sum("overt node" in r.getMessage() and "connected to the broker" in r.getMessage()
               for r in caplog.records)


def test_broker_certificate_rotation_keeps_nodes_connected(
        site: ManagedSite, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="overt.bus.amqp")
    site.approve_all()
    pki = site.engine.runtime.pki
    first = served_certificate(site.tls_port)
    assert pki.broker is not None
    assert fingerprint(first) == fingerprint(load_cert(pki.broker.cert_file.read_bytes()))
    first.verify_directly_issued_by(pki.ca.cert)  # the server CA, not the node CA
    assert len(site.buses()) == NODES  # each node talks through the broker
    connected = _node_connections(caplog)
    assert connected >= NODES

    site.clock.advance(AHEAD)
    wait_until(site.states_ok, 60, "every due certificate, the broker's too, to be renewed")
    renewed = load_cert(pki.broker.cert_file.read_bytes())
    assert fingerprint(renewed) != fingerprint(first)
    assert renewed.not_valid_after_utc > first.not_valid_after_utc
    wait_until(lambda: fingerprint(served_certificate(site.tls_port)) == fingerprint(renewed),
               30, "the broker to serve its renewed certificate")
    renewed.verify_directly_issued_by(pki.ca.cert)
    sans = renewed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)

    # The nodes stayed connected through the rotation (no new connection) and up.
    wait_until(site.hosts_up, 30, "every host to be up after the broker's rotation")
    assert len(site.buses()) == NODES  # each node talks through the broker
    assert _node_connections(caplog) == connected
    events = [e.description for e in site.connection.system_service().events_service().list(
        max=500)]
    assert any("broker" in e and "Renewed" in e for e in events)
    assert not [e for e in events if "certificate expire" in e]

    # `overt pki status` on the engine's machine lists the broker's certificate.
    settings = site.engine.runtime.settings
    env = {**os.environ, "OVERT_CLOCK_OFFSET_S": str(site.clock.offset_s),
           "OVERT_BROKER_TLS_DIR": str(settings.broker_tls_dir)}
    status = subprocess.run([sys.executable, "-m", "overt", "pki", "status", "--json",
                             "--data-dir", str(settings.data_dir)], env=env,
                            capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    listed = {c["what"]: c for c in json.loads(status.stdout)["certificates"]}
    assert {"server CA", "node CA", "engine", "broker"} <= set(listed)
    assert listed["broker"]["state"] == "ok"
    assert listed["broker"]["not_after"] == renewed.not_valid_after_utc.isoformat()
