"""Fully managed mode: a node enrolls over HTTPS and from then on talks through the broker,
with an account of its own that it keeps across restarts and loses with its host."""

from __future__ import annotations

import asyncio
import shutil
import stat
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.engine.composition import Parts
from tests.conftest import require_root
from tests.support.agent import Agent
from tests.support.broker import Broker
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, start_engine

pytestmark = [pytest.mark.amqp, pytest.mark.slow]


@pytest.fixture
def base() -> Iterator[Path]:
    require_root()
    path = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-managed-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _connect(engine: RunningEngine) -> sdk.Connection:
    return sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))


def _node_accounts(rabbitmq: Broker) -> set[uuid.UUID]:
    async def accounts() -> set[uuid.UUID]:
        async with rabbitmq.admin() as admin:
            return await admin.node_accounts()
    return asyncio.run(accounts())


def test_a_node_keeps_its_broker_account_across_restarts_and_loses_it_with_its_host(
        base: Path, rabbitmq: Broker) -> None:
    engine = start_engine(base / "engine", bus=asyncio.run(rabbitmq.engine_url()),
                          broker_admin_url=rabbitmq.admin_url, broker_sweep_interval_s=0.5)
    agent = Agent(base / "node", engine_url=f"https://127.0.0.1:"
                  f"{engine.runtime.settings.gateway_port}", engine_ca=engine.ca_file, bus="amqp")
    conn = _connect(engine)
    try:
        agent.start()
        hosts = conn.system_service().hosts_service()
        pending = wait_until(lambda: next(iter(hosts.list()), None), 60, "the node to announce")
        hosts.host_service(pending.id).approve()
        host = hosts.host_service(pending.id)
        wait_until(lambda: host.get().status == types.HostStatus.UP, 60, "the host to come up")
        account = base / "node" / "node" / "broker.json"
        assert stat.S_IMODE(account.stat().st_mode) == 0o600
        password = account.read_text().split('"url":"')[1].split("@")[0].split(":")[-1]
        assert password not in agent.log.read_text()
        assert "serving enrollment only (commands come through the broker)" in \
            agent.log.read_text()
        node_uuid = uuid.UUID(host.get().hardware_information.uuid)
        assert node_uuid in _node_accounts(rabbitmq)

        agent.stop()
        wait_until(lambda: host.get().status == types.HostStatus.NON_RESPONSIVE, 60,
                   "the host to stop answering")
        agent.start()  # reconnects with the account it stored
        wait_until(lambda: host.get().status == types.HostStatus.UP, 60, "the host back up")
        assert agent.log.read_text().count("asking the engine") == 0

        host.deactivate()
        wait_until(lambda: host.get().status == types.HostStatus.MAINTENANCE, 30, "maintenance")
        host.remove()
        wait_until(lambda: node_uuid not in _node_accounts(rabbitmq), 30,
                   "the node's broker account to be removed")
        wait_until(lambda: "the broker refused user" in agent.log.read_text(), 30,
                   "the node to be shut out of the broker")
    finally:
        conn.close()
        agent.stop()
        engine.stop()


def test_a_host_added_by_a_worker_without_broker_rights_gets_its_account_from_the_api(
        base: Path, rabbitmq: Broker) -> None:
    """The api process holds the broker administrator's URL, the worker does not: the node
    enrolled by the worker asks the api's gateway for its broker account."""
    bus = asyncio.run(rabbitmq.engine_url())
    db = f"sqlite:///{base}/engine.db"
    api = start_engine(base / "engine", db=db, bus=bus, parts=Parts(worker=False),
                       broker_admin_url=rabbitmq.admin_url)
    worker = start_engine(base / "engine", db=db, bus=bus, parts=Parts(api=False, monitor=False),
                          gateway_port=api.runtime.settings.gateway_port)
    agent = Agent(base / "node", engine_ca=api.ca_file, bus="amqp")
    conn = _connect(api)
    try:
        assert worker.runtime.broker is None
        agent.start()
        hosts = conn.system_service().hosts_service()
        host = hosts.add(types.Host(name="added", address="127.0.0.1", port=agent.port,
                                    ssh=types.Ssh(fingerprint=agent.key_fingerprint()),
                                    cluster=types.Cluster(name="Default")))
        wait_until(lambda: hosts.host_service(host.id).get().status == types.HostStatus.UP, 90,
                   "the host to come up")
        assert "asking the engine" in agent.log.read_text()
    finally:
        conn.close()
        agent.stop()
        worker.stop()
        api.stop()
