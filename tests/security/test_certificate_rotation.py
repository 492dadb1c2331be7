"""Certificates that cannot take the cluster down. The engine and two (simulated) nodes
share one clock object that the test moves three years ahead: with rotation on, every
certificate is renewed on time and the hosts stay up; with rotation off, they expire,
the alert fires, the hosts go non-responsive, and `overt pki recover` brings them back."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from cryptography import x509
from sqlalchemy import select

from overt.bus.direct.agent import DirectAgentTransport
from overt.engine.db.tables import Host
from overt.engine.pki.rotation import certificate_states
from overt.engine.web.pages import certificate_alerts
from overt.node.agent import AgentTimings
from overt.node.simulated.fleet import FleetSpec, SimulatedFleet
from overt.pki.certs import fingerprint, load_cert
from overt.pki.expiry import CertificateState, Expiry
from tests.integration.node.harness import LoopThread
from tests.support.demo import wait_until
from tests.support.engine import start_engine
from tests.support.fleet_site import FleetSite

pytestmark = pytest.mark.slow  # years of a faked clock, step by step

NODES = 2
STEP = dt.timedelta(days=30)
THREE_YEARS = dt.timedelta(days=3 * 365 + 1)


class Site(FleetSite):
    def __init__(self, *, rotation: bool) -> None:
        self.base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-rotation-"))
        self.engine = start_engine(self.base / "engine", cert_rotation=rotation,
                                   cert_check_interval_s=0.3, heartbeat_timeout_s=3.0)
        self.clock = self.engine.runtime.clock
        self.loop = LoopThread()
        self.fleet = SimulatedFleet(FleetSpec(
            engine_url=f"https://127.0.0.1:{self.engine.runtime.settings.gateway_port}",
            data_dir=self.base / "fleet", count=NODES, bus="direct",
            engine_ca_file=self.engine.ca_file, announce_interval_s=0.3,
            cert_check_interval_s=0.3, clock=self.clock,
            timings=AgentTimings(stats_interval_s=5.0, heartbeat_interval_s=0.5)))
        self.loop.run(self.fleet.start())
        self.connection = self.engine.admin_connection()

    @property
    def hosts(self) -> sdk.services.HostsService:
        return self.connection.system_service().hosts_service()

    def approve_all(self) -> None:
        def all_up() -> bool:
            listed = self.hosts.list()
            for host in listed:
                if host.status == types.HostStatus.PENDING_APPROVAL:
                    self.hosts.host_service(host.id).approve()
            return len(listed) == NODES and self.all_up()
        wait_until(all_up, 60, "the nodes to be approved and up")

    def all_up(self) -> bool:
        return all(h.status == types.HostStatus.UP for h in self.hosts.list())

    def states(self) -> list[CertificateState]:
        future = asyncio.run_coroutine_threadsafe(
            certificate_states(self.engine.runtime.db, self.engine.runtime.pki),
            self.engine.loop)
        return future.result(30)

    def dashboard_alerts(self) -> list[str]:
        """The certificate warnings of the portal's dashboard ("Needs attention")."""
        async def read() -> list[str]:
            async with self.engine.runtime.db.transaction() as session:
                return [e.description for e in await certificate_alerts(session)]
        return asyncio.run_coroutine_threadsafe(read(), self.engine.loop).result(30)

    def engine_issued(self, what: str) -> list[x509.Certificate]:
        """The engine's certificate ("engine"), or every host's ("hosts")."""
        if what == "engine":
            return [self.engine.runtime.pki.engine_certificate()]

        async def read() -> list[str]:
            async with self.engine.runtime.db.transaction() as session:
                return [pem for pem in (await session.execute(
                    select(Host.certificate_pem))).scalars() if pem]
        pems = asyncio.run_coroutine_threadsafe(read(), self.engine.loop).result(30)
        assert len(pems) == NODES
        return [load_cert(pem.encode()) for pem in pems]



@pytest.fixture
def rotating() -> Iterator[Site]:
    site = Site(rotation=True)
    yield site
    site.close()


@pytest.fixture
def frozen() -> Iterator[Site]:
    site = Site(rotation=False)
    yield site
    site.close()


def test_hosts_stay_up_through_three_years_of_automatic_rotation(rotating: Site) -> None:
    site = rotating
    site.approve_all()
    engine_cert = fingerprint(site.engine.runtime.pki.engine_certificate())
    moved = dt.timedelta(0)
    while moved < THREE_YEARS:
        site.clock.advance(STEP)
        moved += STEP
        wait_until(lambda: all(s.expiry is Expiry.OK for s in site.states()), 60,
                   f"every certificate due to be renewed ({moved.days} days ahead)")
        wait_until(site.all_up, 30, f"every host to be up ({moved.days} days ahead)")
    now = site.clock.now()
    assert all(s.not_after - now > dt.timedelta(days=30) for s in site.states())
    assert fingerprint(site.engine.runtime.pki.engine_certificate()) != engine_cert
    events = site.events()
    assert sum("renewed its certificate" in e for e in events) >= NODES
    assert any("Renewed the engine certificate" in e for e in events)
    assert not [e for e in events if "certificate expire" in e]  # no alert: nothing lapsed
    assert site.dashboard_alerts() == []


def test_expired_certificates_alert_and_one_command_recovers(frozen: Site) -> None:
    site = frozen
    site.approve_all()
    site.clock.advance(THREE_YEARS)
    wait_until(lambda: all(h.status == types.HostStatus.NON_RESPONSIVE
                           for h in site.hosts.list()), 60,
               "the hosts to go non-responsive with expired certificates")
    wait_until(lambda: any("certificate expired on" in e and "overt pki recover" in e
                           for e in site.events()), 30, "the expiry alert")
    assert sum("host" in e and "certificate expired on" in e for e in site.events()) == NODES
    assert any("overt pki recover" in a for a in site.dashboard_alerts())

    env = {**os.environ, "OVERT_CLOCK_OFFSET_S": str(site.clock.offset_s)}
    data_dir = str(site.engine.runtime.settings.data_dir)
    status = subprocess.run([sys.executable, "-m", "overt", "pki", "status", "--data-dir",
                             data_dir], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 1 and "expired" in status.stdout, status.stdout + status.stderr
    recovered = subprocess.run([sys.executable, "-m", "overt", "pki", "recover",
                                "--data-dir", data_dir], env=env, capture_output=True,
                               text=True, timeout=120)
    assert recovered.returncode == 0, recovered.stdout + recovered.stderr
    assert "engine" in recovered.stdout and "host" in recovered.stdout

    wait_until(site.all_up, 90, "every host to be up again after `overt pki recover`")
    assert all(s.expiry is Expiry.OK for s in site.states())
    assert site.dashboard_alerts() == []
    status = subprocess.run([sys.executable, "-m", "overt", "pki", "status", "--data-dir",
                             data_dir], env=env, capture_output=True, text=True, timeout=120)
    assert status.returncode == 0, status.stdout + status.stderr


CA_STEP = dt.timedelta(days=250)  # lands in every 825-day certificate's renewal window
PAST_CA_RENEWAL = dt.timedelta(days=2500)  # the CAs' ten years are renewed on day ~2433


def test_hosts_stay_up_through_the_renewal_of_the_cas(rotating: Site) -> None:
    """The clock moves past the point where both CAs are renewed (same key and name, a
    later expiry): what the old ones issued stays valid under the new ones and the other
    way round, the nodes take the renewed server CA, and every host stays up."""
    site = rotating
    site.approve_all()
    pki = site.engine.runtime.pki
    old_server, old_node = pki.ca.cert, pki.node_ca.cert
    old_issued = {name: site.engine_issued(name) for name in ("engine", "hosts")}
    moved = dt.timedelta(0)
    while moved < PAST_CA_RENEWAL:
        site.clock.advance(CA_STEP)
        moved += CA_STEP
        wait_until(lambda: all(s.expiry is Expiry.OK for s in site.states()), 60,
                   f"every certificate due to be renewed ({moved.days} days ahead)")
        wait_until(site.all_up, 30, f"every host to be up ({moved.days} days ahead)")
    server, node = pki.ca.cert, pki.node_ca.cert
    for old, new in ((old_server, server), (old_node, node)):
        assert new.not_valid_after_utc > old.not_valid_after_utc
        assert (new.subject, new.public_key()) == (old.subject, old.public_key())
    # Cross-trusted: certificates of the old CA certificates verify under the renewed
    # ones, and the renewed CAs' certificates under the old ones.
    for cert in old_issued["engine"]:
        cert.verify_directly_issued_by(server)
    for cert in old_issued["hosts"]:
        cert.verify_directly_issued_by(node)
    pki.engine_certificate().verify_directly_issued_by(old_server)
    for cert in site.engine_issued("hosts"):
        cert.verify_directly_issued_by(old_node)
    # Every node trusts the renewed server CA now (it came with a renewal grant).
    for agent in site.fleet.nodes:
        assert isinstance(agent.transport, DirectAgentTransport)
        trusted = agent.transport.identity.trusted_ca_file()
        assert trusted is not None and load_cert(trusted.read_bytes()) == server
    # The CAs are renewed in the last step; their event is recorded once the engine has
    # reloaded and checked the hosts, which may be after the states read OK above.
    def both_cas_renewed() -> bool:
        renewals = [e for e in site.events() if "Renewed" in e]
        return any("server CA" in e for e in renewals) and any("node CA" in e for e in renewals)
    wait_until(both_cas_renewed, 30, "the events of both CAs' renewal")
    assert not [e for e in site.events() if "certificate expire" in e]
    assert site.dashboard_alerts() == []
