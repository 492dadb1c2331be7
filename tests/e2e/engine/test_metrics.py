"""GET /metrics against a real engine: Prometheus' own parser reads it, its figures are the
ones the official SDK reads from the API, and nobody scrapes it without credentials."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import uuid
from collections import Counter
from collections.abc import Iterator

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import select

from overt import __version__
from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Host, Job, StatsSample, User, Vm, utcnow
from overt.engine.identity.passwords import hash_password
from overt.engine.model.status import HostStatus, JobStatus, VmStatus
from tests.conftest import postgres_database
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

MIB = 2**20
TOKEN = "metrics-" + "0123456789abcdef" * 3
PLAIN_USER, PLAIN_PASSWORD = "viewer@internal", "a-viewer-password"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningEngine]:
    """An engine with no nodes and a metrics token, with a fleet written into its database."""
    data = tmp_path_factory.mktemp("engine")
    token_file = data / "metrics-token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(postgres_database()) if request.param == "postgresql" else None
        # The hosts are never heard from: a long heartbeat timeout keeps their status as written.
        running = start_engine(data, db=db, transport=NoNodes(), metrics_token_file=token_file,
                               heartbeat_timeout_s=3600.0)
        asyncio.run(_fleet(running.runtime.settings.database_url()))
        yield running
        running.stop()


async def _fleet(url: str) -> None:
    """Hosts in several statuses (one heard 2 minutes ago), VMs running on them, jobs."""
    db = Database(url)
    now = utcnow()
    try:
        async with db.transaction() as session:
            cluster = (await session.execute(select(Cluster))).scalars().first()
            assert cluster is not None

            def host(name: str, status: HostStatus, heard: dt.timedelta | None) -> Host:
                return Host(id=uuid.uuid4(), name=name, address="192.0.2.1", cluster_id=cluster.id,
                            status=status, memory_mib=8192, free_memory_mib=2048,
                            cpu_percent=37.5, last_heartbeat_at=now - heard if heard else None)
            up1 = host("metrics-up-1", HostStatus.UP, dt.timedelta(seconds=1))
            up2 = host("metrics-up-2", HostStatus.UP, dt.timedelta(seconds=1))
            late = host("metrics-late", HostStatus.NON_RESPONSIVE, dt.timedelta(seconds=120))
            session.add_all([up1, up2, late, host("metrics-maint", HostStatus.MAINTENANCE, None)])
            await session.flush()
            session.add_all(StatsSample(subject_type="host", subject_id=up1.id,
                                        time=now - dt.timedelta(seconds=15 * i), cpu_percent=37.5,
                                        memory_used_mib=5000 + i, memory_total_mib=8192)
                            for i in range(4))
            session.add_all(
                Vm(name=f"metrics-vm-{n}", cluster_id=cluster.id, template_id=BLANK_TEMPLATE_ID,
                   memory_mib=512, status=status, host_id=on.id, cpu_percent=10.0 + n,
                   memory_used_mib=200 + n, start_time=now)
                for n, (status, on) in enumerate([(VmStatus.UP, up1), (VmStatus.UP, up2),
                                                  (VmStatus.PAUSED, up1)]))
            # A job waiting for its retry: the worker leaves it queued.
            session.add(Job(action="vm.start", description="Starting a VM",
                            not_before=now + dt.timedelta(days=1)))
            session.add(User(user_name=PLAIN_USER, password_hash=hash_password(PLAIN_PASSWORD)))
    finally:
        await db.dispose()


@pytest.fixture(scope="module")
def connection(engine: RunningEngine) -> Iterator[sdk.Connection]:
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    yield conn
    conn.close()


def _get(engine: RunningEngine, path: str = "/metrics", **headers: str) -> httpx.Response:
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    base = engine.url.removesuffix("/ovirt-engine/api")
    return httpx.get(base + path, headers=headers, verify=tls, timeout=30)


def _scrape(engine: RunningEngine, **headers: str) -> dict[str, list[Sample]]:
    reply = _get(engine, Authorization=f"Bearer {TOKEN}", **headers)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=")
    return {family.name: family.samples for family in text_string_to_metric_families(reply.text)}


def _by(samples: list[Sample], label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in samples}


def test_counts_by_status_are_the_apis(engine: RunningEngine, connection: sdk.Connection) -> None:
    system = connection.system_service()
    system.vms_service().add(types.Vm(name="metrics-down", cluster=types.Cluster(name="Default"),
                                      template=types.Template(name="Blank"), memory=256 * MIB))
    jobs = system.jobs_service()
    ended = jobs.add(types.Job(description="Checking the disks"))
    jobs.job_service(ended.id).end(succeeded=True)
    jobs.add(types.Job(description="Backing up the VMs"))
    families = _scrape(engine)

    hosts = Counter(h.status.value for h in system.hosts_service().list())
    vms = Counter(v.status.value for v in system.vms_service().list())
    listed_jobs = Counter(j.status.value for j in jobs.list())
    assert hosts == {"up": 2, "non_responsive": 1, "maintenance": 1}
    assert vms["up"] == 2 and vms["paused"] == 1 and vms["down"] >= 1
    assert listed_jobs["finished"] >= 1 and listed_jobs["started"] >= 2
    for family, listed, values in (("overt_hosts", hosts, HostStatus), ("overt_vms", vms, VmStatus),
                                   ("overt_jobs", listed_jobs, JobStatus)):
        exported = _by(families[family], "status")
        assert set(exported) == {s.value for s in values}  # every status, 0 when none has it
        assert exported == {s.value: float(listed.get(s.value, 0)) for s in values}, family
    assert families["overt_jobs_queued"][0].value == 1  # the one waiting for its retry


def test_host_and_vm_figures_are_the_apis(engine: RunningEngine,
                                          connection: sdk.Connection) -> None:
    families = _scrape(engine)
    hosts = connection.system_service().hosts_service()
    for host in hosts.list():
        stats = {s.name: s.values[0].datum for s in
                 hosts.host_service(host.id).statistics_service().list()}
        labels = {"host": host.name, "id": host.id}
        exported = {name: next(s.value for s in families[name] if s.labels == labels)
                    for name in ("overt_host_cpu_percent", "overt_host_memory_used_bytes",
                                 "overt_host_memory_total_bytes", "overt_host_memory_free_bytes")}
        assert exported == {"overt_host_cpu_percent": pytest.approx(stats["cpu.current.total"]),
                            "overt_host_memory_used_bytes": stats["memory.used"],
                            "overt_host_memory_total_bytes": stats["memory.total"],
                            "overt_host_memory_free_bytes": stats["memory.free"]}, host.name
    used = _by(families["overt_host_memory_used_bytes"], "host")
    assert used["metrics-up-1"] == 5000 * MIB  # the newest sample's
    assert used["metrics-up-2"] == (8192 - 2048) * MIB  # no sample: total less free

    vms = connection.system_service().vms_service()
    running = [vm for vm in vms.list() if vm.host is not None]
    assert len(running) == 3
    cpu = {(s.labels["vm"], s.labels["id"], s.labels["host"]): s.value
           for s in families["overt_vm_cpu_percent"]}
    memory = {(s.labels["vm"], s.labels["id"], s.labels["host"]): s.value
              for s in families["overt_vm_memory_used_bytes"]}
    assert len(cpu) == len(memory) == 3  # VMs that do not run have no series
    for vm in running:
        stats = {s.name: s.values[0].datum for s in
                 vms.vm_service(vm.id).statistics_service().list()}
        key = (vm.name, vm.id, connection.follow_link(vm.host).name)
        assert cpu[key] == pytest.approx(stats["cpu.current.total"])
        assert memory[key] == stats["memory.used"]


def test_monitor_lag_engine_and_request_latency(engine: RunningEngine,
                                               connection: sdk.Connection) -> None:
    connection.system_service().hosts_service().list()
    assert _get(engine, "/ovirt-engine/api/nosuch/" + "x" * 40,
                Authorization=f"Bearer {TOKEN}").status_code == 404
    families = _scrape(engine)
    lag = _by(families["overt_monitor_last_event_age_seconds"], "host")
    assert set(lag) == {"metrics-up-1", "metrics-up-2", "metrics-late"}  # monitored hosts only
    assert 120 <= lag["metrics-late"] < 600
    assert lag["metrics-up-1"] < lag["metrics-late"]

    requests = families["overt_api_request_duration_seconds"]
    counts = {(s.labels["route"], s.labels["method"], s.labels["status"]): s.value
              for s in requests if s.name.endswith("_count")}
    assert counts[("/ovirt-engine/api/hosts", "GET", "200")] >= 1
    assert counts[("unmatched", "GET", "404")] >= 1
    assert not any("nosuch" in route for route, _, _ in counts)  # never a raw path
    assert any(s.labels.get("le") == "+Inf" for s in requests)

    info = families["overt_engine_info"][0].labels
    assert info["version"] == __version__
    assert info["database"] in ("sqlite", "postgresql")
    assert families["process_resident_memory_bytes"][0].value > 0
    assert families["overt_metrics_fleet_read_seconds"][0].value > 0


def test_a_scrape_needs_the_token_or_a_user_with_a_system_role(engine: RunningEngine,
                                                                connection: sdk.Connection
                                                                ) -> None:
    for headers in ({}, {"Authorization": "Bearer " + TOKEN[:-1] + "X"},
                    {"Authorization": "Bearer x"}, {"Authorization": f"Basic {TOKEN}"}):
        refused = _get(engine, **headers)
        assert refused.status_code == 401, headers
        assert "<fault>" in refused.text and "overt_" not in refused.text
    wrong = httpx.BasicAuth("admin@internal", "not-the-password")
    tls = ssl.create_default_context(cafile=str(engine.ca_file))
    base = engine.url.removesuffix("/ovirt-engine/api")
    assert httpx.get(base + "/metrics", auth=wrong, verify=tls).status_code == 401
    viewer = httpx.get(base + "/metrics", auth=(PLAIN_USER, PLAIN_PASSWORD), verify=tls)
    assert viewer.status_code == 403 and "role on the system" in viewer.text
    events = connection.system_service().events_service().list(max=50)
    assert any(e.description == f"User {PLAIN_USER} was refused GET /metrics: no role on the "
               "system" for e in events)

    admin = httpx.get(base + "/metrics", auth=("admin@internal", engine.password), verify=tls)
    assert admin.status_code == 200 and "overt_hosts{" in admin.text
    sso = _get(engine, Authorization=f"Bearer {connection.authenticate()}")
    assert sso.status_code == 200 and "overt_vms{" in sso.text

