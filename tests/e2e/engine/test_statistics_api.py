"""Statistics (oVirt's shape, read by the SDK), their history (Overt's extension) and the
console ticket's refusal of a VM that does not run."""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import uuid

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.engine.db.database import Database
from overt.engine.db.tables import Host, StatsSample, utcnow
from tests.support.engine import RunningEngine

MIB = 2**20


def _vm(conn: sdk.Connection, name: str) -> types.Vm:
    return conn.system_service().vms_service().add(types.Vm(
        name=name, cluster=types.Cluster(name="Default"), template=types.Template(name="Blank"),
        memory=256 * MIB))


def _in_db(engine: RunningEngine, *rows: object) -> None:
    async def insert() -> None:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                session.add_all(rows)
        finally:
            await db.dispose()
    asyncio.run(insert())


def _samples(subject_type: str, subject_id: str, minutes: int) -> list[StatsSample]:
    now = utcnow()
    return [StatsSample(subject_type=subject_type, subject_id=uuid.UUID(subject_id),
                        time=now - dt.timedelta(seconds=15 * i), cpu_percent=float(i % 4),
                        memory_used_mib=128, memory_total_mib=256, net_rx_bps=1000.0,
                        net_tx_bps=500.0) for i in range(minutes * 4)]


def test_vm_statistics_read_by_the_sdk(connection: sdk.Connection) -> None:
    vm = _vm(connection, "stats-1")
    service = connection.system_service().vms_service().vm_service(vm.id).statistics_service()
    current = {s.name: s for s in service.list()}
    assert {"cpu.current.total", "memory.installed", "memory.used"} <= set(current)
    installed = current["memory.installed"]
    assert installed.values[0].datum == 256 * MIB
    assert installed.unit == types.StatisticUnit.BYTES
    assert installed.kind == types.StatisticKind.GAUGE
    assert current["cpu.current.total"].unit == types.StatisticUnit.PERCENT
    assert current["cpu.current.total"].values[0].datum == 0  # a VM that is down
    assert service.statistic_service(installed.id).get().name == "memory.installed"


def test_host_statistics_read_by_the_sdk(connection: sdk.Connection,
                                         api_engine: RunningEngine) -> None:
    cluster_id = connection.system_service().clusters_service().list()[0].id
    host_id = uuid.uuid4()
    _in_db(api_engine, Host(id=host_id, name=f"stats-host-{host_id.hex[:6]}", address="192.0.2.9",
                            cluster_id=uuid.UUID(cluster_id), status="maintenance",
                            memory_mib=4096, free_memory_mib=1024, cpu_percent=12.5))
    _in_db(api_engine, *_samples("host", str(host_id), 1))
    service = connection.system_service().hosts_service().host_service(str(host_id)) \
        .statistics_service()
    current = {s.name: s.values[0].datum for s in service.list()}
    assert current["memory.total"] == 4096 * MIB
    assert current["memory.used"] == 128 * MIB  # the last sample's
    assert current["cpu.current.total"] == pytest.approx(12.5)


def test_statistics_history_extension(connection: sdk.Connection,
                                      api_engine: RunningEngine) -> None:
    vm = _vm(connection, "stats-2")
    _in_db(api_engine, *_samples("vm", vm.id, 10))
    base = api_engine.url.removesuffix("/ovirt-engine/api")
    tls = ssl.create_default_context(cafile=str(api_engine.ca_file))
    with httpx.Client(base_url=base, verify=tls, timeout=30,
                      auth=("admin@internal", api_engine.password)) as http:
        reply = http.get(f"/ovirt-engine/api/vms/{vm.id}/statistics/history",
                         params={"from": "-900", "resolution": "60"},
                         headers={"Accept": "application/json"})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["resolution"] == 60
        assert body["vm"]["id"] == vm.id
        points = body["point"]
        assert 10 <= len(points) <= 11  # ten minutes of samples in one-minute buckets
        full = points[1:-1]
        assert all(p["cpu_percent"] == pytest.approx(1.5) for p in full)  # mean of 0..3
        assert all(p["memory_used"] == 128 * MIB and p["network_rx_bps"] == 1000 for p in full)
        raw = http.get(f"/ovirt-engine/api/vms/{vm.id}/statistics/history",
                       params={"from": "-300"})
        assert raw.status_code == 200
        assert raw.headers["content-type"].startswith("application/xml")
        assert raw.text.count("<point>") >= 19  # the raw samples of the last five minutes
        bad = http.get(f"/ovirt-engine/api/vms/{vm.id}/statistics/history",
                       params={"from": "yesterday"})
        assert bad.status_code == 400 and "ISO 8601" in bad.text


def test_a_ticket_needs_a_running_vm(connection: sdk.Connection) -> None:
    vm = _vm(connection, "ticket-1")
    with pytest.raises(sdk.Error) as caught:
        connection.system_service().vms_service().vm_service(vm.id).ticket()
    assert caught.value.code == 409
    assert "start it first" in str(caught.value)


