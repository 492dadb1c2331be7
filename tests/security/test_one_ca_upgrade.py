"""Upgrading an engine of one CA (before the server CA / node CA split) keeps its hosts up.

The data directory is laid out the way the previous version did: one `pki/ca.pem` and
`ca.key` that signed the engine's certificate and every node's. A (simulated) node
enrolled under it keeps running; the upgraded engine starts on that directory. The host
must come up without an administrator, end on a certificate of the node CA, and once no
host is on the old CA, a node certificate of it must be refused even when pinned."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select

from overt.bus.direct.agent import DirectAgentTransport
from overt.bus.direct.http import EVENTS_PATH
from overt.engine.composition import Parts
from overt.engine.db.tables import Cluster, Host
from overt.engine.model.status import HostStatus
from overt.node.agent import AgentTimings
from overt.node.identity import NodeIdentity
from overt.node.simulated.fleet import FleetSpec, SimulatedFleet, node_name, node_uuid
from overt.pki.certs import CertificateAuthority, cert_pem, csr_key_fingerprint, fingerprint, load_cert
from tests.integration.node.harness import LoopThread
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, free_port, start_engine
from tests.support.fleet_site import FleetSite

SEED = "upgrade"


def legacy_node_certificate(ca: CertificateAuthority, identity: NodeIdentity,
                            host: uuid.UUID) -> str:
    """What the one-CA engine issued a node: its CA, CN and SAN naming the host UUID."""
    csr = identity.csr_pem(host, [f"urn:uuid:{host}"]).encode()
    return cert_pem(ca.sign(csr, common_name=str(host), names=[f"urn:uuid:{host}"])).decode()


class UpgradedSite(FleetSite):
    """A one-CA data directory with one enrolled, running node; then the new engine."""

    def __init__(self, *, rotation: bool) -> None:
        self.base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-caupgrade-"))
        self.data = self.base / "engine"
        pki = self.data / "pki"
        self.host_uuid = node_uuid(SEED, 0)
        # The previous version's layout: one CA for the engine's certificate and the nodes'.
        pki.mkdir(parents=True, mode=0o700)
        one_ca = CertificateAuthority.create("Overt engine CA old1")
        one_ca.save(pki, "ca")
        self.one_ca = one_ca
        home = self.base / "fleet" / node_name(SEED, 0) / "node"
        home.mkdir(parents=True, mode=0o700)
        self.identity = NodeIdentity(home)
        self.identity.key()
        self.legacy_pem = legacy_node_certificate(one_ca, self.identity, self.host_uuid)
        gateway_port = free_port()
        gateway = f"https://127.0.0.1:{gateway_port}"
        (home / "node.pem").write_text(self.legacy_pem)
        (home / "engine-ca.pem").write_bytes((pki / "ca.pem").read_bytes())
        self.host_id = uuid.uuid4()
        (home / "enrollment.json").write_text(json.dumps(
            {"host_id": str(self.host_id), "gateway_url": gateway}))
        # The node keeps running across the engine's upgrade.
        self.loop = LoopThread()
        self.fleet = SimulatedFleet(FleetSpec(
            engine_url=gateway, data_dir=self.base / "fleet", count=1, seed=SEED,
            bus="direct", engine_ca_file=pki / "ca.pem", announce_interval_s=0.3,
            cert_check_interval_s=0.3,
            timings=AgentTimings(stats_interval_s=5.0, heartbeat_interval_s=0.5)))
        self.loop.run(self.fleet.start())
        transport = self.fleet.nodes[0].transport
        assert isinstance(transport, DirectAgentTransport) and transport.port is not None
        self.record_host(transport.port)
        # The files a one-CA engine has (the run above only seeded the database).
        for name in ("node-ca.pem", "node-ca.key", "node-trust.pem", "legacy-node-ca.pem"):
            (pki / name).unlink(missing_ok=True)
        # Heartbeats every 0.5 s: a host judged lost after 10 s of silence stalled for real
        # during its move, not because a loaded machine ran its process late.
        self.engine = start_engine(self.data, gateway_port=gateway_port, cert_rotation=rotation,
                                   cert_check_interval_s=0.3, heartbeat_timeout_s=10.0)
        self.connection = self.engine.admin_connection()

    def record_host(self, rpc_port: int) -> None:
        """The host row the one-CA engine had: enrolled, pinned to the legacy certificate;
        `connecting`, so only the node's heartbeats through the upgraded engine make it
        up. (An engine run without monitor or worker seeds the database first.)"""
        seeding = start_engine(self.data, parts=Parts(monitor=False, worker=False))

        async def insert() -> None:
            async with seeding.runtime.db.transaction() as session:
                cluster = (await session.execute(select(Cluster).where(
                    Cluster.name == "Default"))).scalar_one()
                key = csr_key_fingerprint(self.identity.csr_pem(self.host_uuid, []))
                session.add(Host(
                    id=self.host_id, name=node_name(SEED, 0), address="127.0.0.1",
                    port=rpc_port, cluster_id=cluster.id, status=HostStatus.CONNECTING,
                    host_uuid=self.host_uuid, certificate_pem=self.legacy_pem,
                    certificate_fingerprint=fingerprint(load_cert(self.legacy_pem.encode())),
                    key_fingerprint=key, approved_key_fingerprint=key, needs_resync=True,
                    memory_mib=262_144, free_memory_mib=262_144))
        asyncio.run_coroutine_threadsafe(insert(), seeding.loop).result(30)
        seeding.stop()

    def host(self) -> types.Host:
        return self.connection.system_service().hosts_service().list()[0]

    def pinned_pem(self) -> str:
        async def read() -> str | None:
            async with self.engine.runtime.db.transaction() as session:
                return (await session.execute(select(Host.certificate_pem))).scalar_one()
        pem = asyncio.run_coroutine_threadsafe(read(), self.engine.loop).result(30)
        assert pem is not None
        return pem

    def pin(self, pem: str) -> None:
        async def write() -> None:
            async with self.engine.runtime.db.transaction() as session:
                host = (await session.execute(select(Host))).scalar_one()
                host.certificate_pem = pem
                host.certificate_fingerprint = fingerprint(load_cert(pem.encode()))
        asyncio.run_coroutine_threadsafe(write(), self.engine.loop).result(30)



@pytest.fixture(params=[True, False], ids=["rotation", "rotation-off"])
def site(request: pytest.FixtureRequest) -> Iterator[UpgradedSite]:
    """With rotation off too: moving off the old CA is no renewal an administrator
    turned off, and an upgrade must not take the hosts down either way."""
    upgraded = UpgradedSite(rotation=request.param)
    yield upgraded
    upgraded.close()


def post_events_as(engine: RunningEngine, cert_file: Path, key_file: Path) -> int:
    """The HTTP status of an (empty) events batch sent with that client certificate."""
    context = ssl.create_default_context(cafile=str(engine.ca_file))
    context.check_hostname = False
    context.load_cert_chain(cert_file, key_file)

    async def post() -> int:
        url = f"https://127.0.0.1:{engine.runtime.settings.gateway_port}{EVENTS_PATH}"
        async with aiohttp.ClientSession() as session, session.post(
                url, data="[]", ssl=context) as response:
            return response.status
    return asyncio.run(post())


def test_hosts_of_a_one_ca_engine_stay_up_and_move_to_the_node_ca(site: UpgradedSite) -> None:
    pki = site.engine.runtime.pki
    wait_until(lambda: site.host().status == types.HostStatus.UP, 60,
               "the host enrolled under the one-CA engine to be up after the upgrade")
    wait_until(lambda: pki.issued_by_node_ca(load_cert(site.pinned_pem().encode())), 60,
               "the host to move to the node CA by itself")
    current = load_cert(site.pinned_pem().encode())
    # The engine pins the certificate it issues as it answers; the node writes it on
    # receiving the answer, a moment later.
    wait_until(lambda: load_cert(site.identity.cert_file.read_bytes()) == current, 30,
               "the node to take its node-CA certificate")
    assert current.public_key() == load_cert(site.legacy_pem.encode()).public_key()
    wait_until(lambda: not pki.legacy_ca_file.exists(), 30,
               "the pre-split CA to be retired for nodes")
    wait_until(lambda: site.host().status == types.HostStatus.UP, 30,
               "the host to be up on its node-CA certificate")
    events = site.events()
    assert any("renewed its certificate" in e for e in events)
    assert any("no longer accepted for nodes" in e for e in events)
    assert not [e for e in events if "enroll the node again" in e or "refused" in e.lower()
                or "not responding" in e]

    # Afterwards a certificate of the old CA is refused, even pinned (as if stolen).
    pem = legacy_node_certificate(site.one_ca, site.identity, site.host_uuid)
    legacy_file = site.base / "legacy.pem"
    legacy_file.write_text(pem)
    assert post_events_as(site.engine, site.identity.cert_file, site.identity.key_file) == 200
    site.pin(pem)
    assert not pki.accepted_for_node(load_cert(pem.encode()))
    wait_until(lambda: post_events_as(site.engine, legacy_file, site.identity.key_file) == 403,
               10, "the gateway to refuse the old CA's node certificate")

    # `overt pki status` names hosts still on the old CA (this one, pinned to it now).
    env = {**os.environ, "OVERT_CLOCK_OFFSET_S": "0"}
    status = subprocess.run([sys.executable, "-m", "overt", "pki", "status", "--data-dir",
                             str(site.data)], env=env, capture_output=True, text=True,
                            timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "pre-split" in status.stdout and node_name(SEED, 0) in status.stdout, status.stdout
    assert "REFUSED" in status.stdout
