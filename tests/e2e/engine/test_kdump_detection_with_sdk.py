"""Kdump detection through the official SDK: `power_management.kdump_detection` (true by
default, as in oVirt) read and changed on a host, and the engine's own fence_kdump listener
recording the real `fence_kdump_send`'s message for the host whose address sent it, and the
host's `kdump_status` as its node reported it."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import subprocess
import time
from collections.abc import Iterator

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select, update

from overt.engine.db.tables import Host
from overt.protocol.host import KdumpStatus
from tests.support.engine import RunningEngine

SENDER = "/usr/libexec/fence-agents/fence_kdump_send"


@pytest.fixture
def host(connection: sdk.Connection) -> Iterator[types.Host]:
    hosts = connection.system_service().hosts_service()
    made = hosts.add(types.Host(name="dumper", address="127.0.0.1", port=9,
                                cluster=types.Cluster(name="Default")))
    yield made
    with contextlib.suppress(sdk.Error):
        hosts.host_service(made.id).remove(force=True)


def test_kdump_detection_is_on_by_default_and_can_be_turned_off(
        connection: sdk.Connection, host: types.Host) -> None:
    service = connection.system_service().hosts_service().host_service(host.id)
    assert service.get().power_management.kdump_detection is True

    service.update(types.Host(power_management=types.PowerManagement(kdump_detection=False)))
    got = service.get().power_management
    assert got.kdump_detection is False
    assert got.enabled is False  # the other field is left as it was
    service.update(types.Host(power_management=types.PowerManagement(kdump_detection=True)))
    assert service.get().power_management.kdump_detection is True
    events = connection.system_service().events_service().list(search="host.name=dumper")
    said = [e.description for e in events]
    assert any(d.startswith("Kdump detection of host dumper was disabled by admin") for d in said)


def test_the_engines_listener_records_fence_kdump_send(api_engine: RunningEngine,
                                                       host: types.Host) -> None:
    listener = api_engine.runtime.kdump_listener
    assert listener is not None, "the engine runs no fence_kdump listener"
    sent = subprocess.run([SENDER, "--ipport", str(listener.port), "--count", "1",
                           "--interval", "1", "127.0.0.1"], capture_output=True, timeout=30,
                          check=False)
    assert sent.returncode == 0, sent.stderr

    async def recorded() -> tuple[dt.datetime | None, str | None]:
        async with api_engine.runtime.db.transaction() as session:
            row = (await session.execute(select(Host.kdump_message_at, Host.kdump_sender)
                                         .where(Host.name == "dumper"))).one()
            return row[0], row[1]
    deadline = time.monotonic() + 30
    while True:  # asked on the engine's own loop, as its listener writes there
        at, sender = asyncio.run_coroutine_threadsafe(recorded(), api_engine.loop).result(30)
        if at is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert at is not None and sender == "127.0.0.1"


def test_the_hosts_kdump_status_is_as_its_node_reported_it(
        api_engine: RunningEngine, connection: sdk.Connection, host: types.Host) -> None:
    service = connection.system_service().hosts_service().host_service(host.id)
    # No node has reported yet: unknown (which a recovery does not wait for).
    assert service.get().kdump_status == types.KdumpStatus.UNKNOWN

    async def reported(status: KdumpStatus) -> None:  # as its capabilities store it
        async with api_engine.runtime.db.transaction() as session:
            await session.execute(update(Host).where(Host.name == "dumper")
                                  .values(kdump_status=status))
    for status, seen in ((KdumpStatus.ENABLED, types.KdumpStatus.ENABLED),
                         (KdumpStatus.DISABLED, types.KdumpStatus.DISABLED)):
        asyncio.run_coroutine_threadsafe(reported(status), api_engine.loop).result(30)
        assert service.get().kdump_status == seen
        listed = connection.system_service().hosts_service().list(search="name=dumper")
        assert [h.kdump_status for h in listed] == [seen]
