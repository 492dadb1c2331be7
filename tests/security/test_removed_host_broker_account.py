"""Finding: a removed host's node kept its broker account until the next sweep (30 s by
default, two sweeps to be sure), and with it the broker: its command queue, publishing
events and replies. Removing the host must delete the account before the API answers."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.protocol.enrollment import EnrollmentStatus
from tests.conftest import require_root
from tests.security.conftest import FakeNode, wait_for_idle_jobs
from tests.support.broker import Broker
from tests.support.engine import RunningEngine, start_engine

pytestmark = [pytest.mark.amqp]


@pytest.fixture
def managed(rabbitmq: Broker) -> Iterator[RunningEngine]:
    """A fully managed engine whose sweep of orphaned accounts is an hour away."""
    require_root()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-sec-"))
    engine = start_engine(base / "engine", bus=asyncio.run(rabbitmq.engine_url()),
                          broker_admin_url=rabbitmq.admin_url, broker_sweep_interval_s=3600)
    yield engine
    wait_for_idle_jobs(engine)
    engine.stop()
    shutil.rmtree(base, ignore_errors=True)


def _accounts(rabbitmq: Broker) -> set[uuid.UUID]:
    async def read() -> set[uuid.UUID]:
        async with rabbitmq.admin() as admin:
            return await admin.node_accounts()
    return asyncio.run(read())


def test_removed_host_broker_account(managed: RunningEngine, rabbitmq: Broker) -> None:
    node = FakeNode()
    node.announce(managed)
    connection = sdk.Connection(url=managed.url, username="admin@internal",
                                password=managed.password, ca_file=str(managed.ca_file))
    try:
        hosts = connection.system_service().hosts_service()
        [pending] = [h for h in hosts.list() if h.status == types.HostStatus.PENDING_APPROVAL]
        hosts.host_service(pending.id).approve()
        grant = node.announce(managed)
        assert grant.status is EnrollmentStatus.APPROVED and grant.broker is not None
        assert node.host_uuid in _accounts(rabbitmq)

        hosts.host_service(pending.id).remove(force=True)
        assert node.host_uuid not in _accounts(rabbitmq), \
            "the removed host's node keeps its broker account"
    finally:
        connection.close()
