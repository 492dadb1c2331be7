"""Attack tests of the trust chain: a real engine (in a thread, direct transport) and an
attacker speaking HTTPS to its node gateway and API the way any host on the network can;
and the engine databases of the integration tests (SQLite, and PostgreSQL for tests marked pg)."""

from __future__ import annotations

import asyncio
import json
import ssl
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import ovirtsdk4 as sdk
import pytest
from sqlalchemy import func, select

from overt.engine.db.tables import Job
from overt.pki.certs import PrivateKey, certificate_request, key_pem, new_key, write_private
from overt.protocol.enrollment import EnrollmentGrant, EnrollmentRequest
from tests.integration.bus.direct.conftest import capabilities
from tests.integration.engine.conftest import db, db_url, lane_dir, migrated_sqlite, seeded_sqlite
from tests.integration.node.harness import LoopThread
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, start_engine

__all__ = ["db", "db_url", "lane_dir", "migrated_sqlite", "seeded_sqlite"]


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Iterator[RunningEngine]:
    """An engine; a test marked `install_timeout(S)` gives up installing hosts after S s."""
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-sec-"))
    marker = request.node.get_closest_marker("install_timeout")
    settings = {"host_install_timeout_s": marker.args[0]} if marker else {}
    running = start_engine(base / "engine", **settings)
    yield running
    wait_for_idle_jobs(running)
    running.stop()


def close_loop(loop: LoopThread) -> None:
    """Close a test's loop once the transports its servers closed are gone (they finish
    closing on the loop's next turns)."""
    loop.run(asyncio.sleep(0.2))
    loop.close()


def wait_for_idle_jobs(engine: RunningEngine) -> None:
    """Let a job that is running finish its step before the engine stops (a job stopped
    mid-step leaves coroutines behind that pytest reports in a later test)."""
    async def running() -> int:
        async with engine.runtime.db.transaction() as session:
            return int((await session.execute(select(func.count()).select_from(Job).where(
                Job.state == "running"))).scalar_one())

    wait_until(lambda: asyncio.run_coroutine_threadsafe(running(), engine.loop).result(10) == 0,
               60, "the engine's running jobs to finish their step")


@pytest.fixture
def connection(engine: RunningEngine) -> Iterator[sdk.Connection]:
    conn = engine.admin_connection()
    yield conn
    conn.close()


@dataclass
class FakeNode:
    """Someone on the network with a key of their own, claiming to be host `host_uuid`."""

    host_uuid: uuid.UUID = field(default_factory=uuid.uuid4)
    key: PrivateKey = field(default_factory=new_key)
    address: str = "127.0.0.1"

    def key_fingerprint(self) -> str:
        from overt.pki.certs import key_fingerprint  # (the attack tests also run on old code)

        return key_fingerprint(self.key.public_key())

    def request(self, names: list[str] | None = None) -> EnrollmentRequest:
        csr = certificate_request(self.key, str(self.host_uuid),
                                  names or [f"urn:uuid:{self.host_uuid}"]).decode()
        return EnrollmentRequest(host_uuid=self.host_uuid, hostname="node",
                                 address=self.address, rpc_port=54321, csr_pem=csr,
                                 capabilities=capabilities(self.host_uuid))

    def announce(self, engine: RunningEngine, names: list[str] | None = None
                 ) -> EnrollmentGrant:
        """POST /v1/enroll, without a client certificate (as a fresh node does)."""
        context = ssl.create_default_context(cafile=str(engine.ca_file))
        context.check_hostname = False
        response = httpx.post(engine.gateway_url + "/v1/enroll", verify=context, timeout=30,
                              content=self.request(names).model_dump_json(),
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 200, response.text
        return EnrollmentGrant.model_validate_json(response.text)


def post_events(engine: RunningEngine, directory: Path, host_uuid: uuid.UUID,
                cert_pem_text: str, key: PrivateKey) -> httpx.Response:
    """POST /v1/events with a client certificate, as an enrolled node delivers its events."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "client.pem", directory / "client.key"
    cert_file.write_text(cert_pem_text)
    write_private(key_file, key_pem(key))
    context = ssl.create_default_context(cafile=str(engine.ca_file))
    context.check_hostname = False
    context.load_cert_chain(cert_file, key_file)
    event = {"host_uuid": str(host_uuid), "boot_id": str(uuid.uuid4()), "seq": 1,
             "event": {"type": "host.heartbeat", "vm_count": 0, "free_memory_mib": 1,
                       "uptime_s": 1}}
    return httpx.post(engine.gateway_url + "/v1/events", verify=context, timeout=30,
                      content=json.dumps([event]), headers={"Content-Type": "application/json"})
