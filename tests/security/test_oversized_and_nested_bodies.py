"""Strangers cannot make the engine grow or fail: bodies are refused by size before they are
read (413), deeply nested JSON and XML are answered 400, enrolling nodes cannot store
oversized fields or an unbounded number of pending hosts."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from overt.engine.db.tables import Host
from overt.engine.enrollment import registry as enrollment
from overt.engine.model.status import HostStatus
from overt.pki.certs import certificate_request, new_key
from overt.protocol.host import HostCapabilities, VirtMode
from tests.support.engine import RunningEngine, start_engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path_factory.mktemp("bodies") / "engine")
    yield running
    running.stop()


@pytest.fixture
def client(engine: RunningEngine) -> Iterator[httpx.Client]:
    with httpx.Client(verify=ssl.create_default_context(cafile=engine.ca_file), timeout=60,
                      auth=("admin@internal", engine.password)) as client:
        yield client


def _chunks(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b" " * 65536
        sent += 65536


def test_an_oversized_api_body_is_refused_by_its_declared_size(
        engine: RunningEngine, client: httpx.Client) -> None:
    response = client.post(f"{engine.url}/vms", content=b"<vm>" + b" " * (16 << 20) + b"</vm>",
                           headers={"Content-Type": "application/xml"})
    assert response.status_code == 413
    assert "<fault>" in response.text


def test_an_oversized_streamed_body_is_refused_while_it_is_read(
        engine: RunningEngine, client: httpx.Client) -> None:
    response = client.post(f"{engine.url}/vms", content=_chunks(16 << 20),
                           headers={"Content-Type": "application/xml"})
    assert response.status_code == 413


def test_an_oversized_sign_in_form_is_refused(engine: RunningEngine,
                                              client: httpx.Client) -> None:
    response = client.post(f"{engine.url.removesuffix('/api')}/sso/oauth/token",
                           data={"grant_type": "password", "username": "x" * (1 << 20),
                                 "password": "y"})
    assert response.status_code == 413


@pytest.mark.parametrize("kind", ["json", "xml"])
def test_deeply_nested_bodies_are_answered_400(engine: RunningEngine, client: httpx.Client,
                                               kind: str) -> None:
    depth = 100_000
    body = '{"a":' * depth + "1" + "}" * depth if kind == "json" else \
        "<vm>" + "<a>" * depth + "</a>" * depth + "</vm>"
    response = client.post(f"{engine.url}/vms", content=body.encode(),
                           headers={"Content-Type": f"application/{kind}",
                                    "Accept": "application/xml"})
    assert response.status_code == 400, response.text[:300]
    assert "nested" in response.text
    assert client.get(f"{engine.url}/vms").text.count("<vm ") == 0


def _enroll_body(host_uuid: uuid.UUID, hostname: str = "node") -> dict[str, object]:
    caps = HostCapabilities(host_uuid=host_uuid, hostname=hostname, agent_version="1",
                            protocol_version=1, cpu_model="cpu", cpu_sockets=1, cpu_cores=1,
                            cpu_threads=1, memory_mib=1024, libvirt_version="9",
                            qemu_version="7", virt_mode=VirtMode.QEMU, kernel="6")
    csr = certificate_request(new_key(), str(host_uuid), [f"urn:uuid:{host_uuid}"]).decode()
    return {"host_uuid": str(host_uuid), "hostname": hostname, "address": "192.0.2.9",
            "csr_pem": csr, "capabilities": caps.model_dump(mode="json")}


def _pending(engine: RunningEngine) -> int:
    async def count() -> int:
        async with engine.runtime.db.transaction() as session:
            return int((await session.execute(select(func.count()).select_from(Host).where(
                Host.status == HostStatus.PENDING_APPROVAL.value))).scalar_one())
    return asyncio.run_coroutine_threadsafe(count(), engine.loop).result(timeout=30)


def _gateway(engine: RunningEngine) -> httpx.Client:
    return httpx.Client(base_url=f"https://127.0.0.1:{engine.runtime.settings.gateway_port}",
                        verify=ssl.create_default_context(cafile=engine.ca_file), timeout=60)


def test_an_enrollment_with_oversized_fields_stores_nothing(engine: RunningEngine) -> None:
    before = _pending(engine)
    with _gateway(engine) as gateway:
        huge_name = gateway.post("/v1/enroll", json=_enroll_body(uuid.uuid4(), "n" * 100_000))
        huge_body = gateway.post("/v1/enroll", content=b"{" + b" " * (8 << 20) + b"}")
    assert huge_name.status_code in (400, 413)
    assert huge_body.status_code == 413
    assert _pending(engine) == before


def test_pending_hosts_are_capped(engine: RunningEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    cap = _pending(engine) + 3
    monkeypatch.setattr(enrollment, "MAX_PENDING_HOSTS", cap, raising=False)
    with _gateway(engine) as gateway:
        answers = [gateway.post("/v1/enroll", json=_enroll_body(uuid.uuid4())).json()
                   for _ in range(6)]
    assert _pending(engine) == cap
    assert all(a["status"] == "pending_approval" for a in answers)
    assert "approved or removed" in answers[-1]["message"] and answers[-1]["host_id"] is None
