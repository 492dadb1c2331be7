"""Broker passwords never cross the network unencrypted without an explicit opt-in, never sit
on a command line, and the shared events queue is bounded (a real RabbitMQ)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from overt.bus.amqp.admin import BrokerAdmin
from overt.bus.amqp.engine import AmqpEngineTransport
from overt.bus.amqp.topology import EVENTS_QUEUE, partition_queue
from overt.config import EngineSettings
from tests.integration.bus.amqp.conftest import engine, sink
from tests.support.broker import Broker

__all__ = ["engine", "sink"]

REMOTE = "amqp://overt-engine:secret-pw@192.0.2.10:5672/overt"


def test_plain_amqp_to_another_machine_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        EngineSettings(data_dir=tmp_path, bus=REMOTE)
    message = str(refused.value)
    assert "amqps://" in message and "OVERT_BROKER_ALLOW_PLAIN" in message
    assert "secret-pw" not in message
    with pytest.raises(ValidationError):
        EngineSettings(data_dir=tmp_path, broker_node_url="amqp://192.0.2.10:5672")
    # Explicit opt-in (a lab), TLS, or this machine: accepted.
    assert EngineSettings(data_dir=tmp_path, bus=REMOTE, broker_allow_plain=True).managed
    assert EngineSettings(data_dir=tmp_path, bus=REMOTE.replace("amqp:", "amqps:")).managed
    assert EngineSettings(data_dir=tmp_path, bus=REMOTE.replace("192.0.2.10", "127.0.0.1"))


def test_the_management_api_over_http_to_another_machine_is_refused() -> None:
    with pytest.raises(ValueError, match="https://"):
        BrokerAdmin.for_broker(REMOTE)
    with pytest.raises(ValueError, match="unencrypted"):
        BrokerAdmin("http://192.0.2.10:15672", username="a", password="b", vhost="v",
                    node_url="amqps://192.0.2.10:5671")


@pytest.mark.slow  # a process of its own: the command's imports alone take seconds
def test_the_demo_refuses_a_broker_password_on_its_command_line(tmp_path: Path) -> None:
    ran = subprocess.run([sys.executable, "-m", "overt", "demo", "--bus", REMOTE, "--data-dir",
                          str(tmp_path / "engine"), "--port", "1"], capture_output=True,
                         text=True, timeout=120)
    assert ran.returncode == 1
    assert "--bus-file" in ran.stdout + ran.stderr
    assert not (tmp_path / "engine").exists()  # nothing was started


@pytest.mark.amqp
async def test_the_events_queue_is_bounded(rabbitmq: Broker,
                                           engine: AmqpEngineTransport) -> None:
    async with rabbitmq.admin() as admin:
        await admin.enroll_node(uuid.uuid4())
    async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{rabbitmq.node.management_port}/api",
            auth=(rabbitmq.admin_user, rabbitmq.admin_password)) as api:
        for name in (EVENTS_QUEUE, partition_queue(0).name, partition_queue(31).name):
            for _ in range(40):  # the management API's view of a queue lags by a few seconds
                queue = (await api.get(f"/queues/{rabbitmq.vhost.replace('/', '%2F')}/"
                                       f"{name}")).json()
                limits = queue.get("effective_policy_definition") or {}
                if limits:
                    break
                await asyncio.sleep(0.5)
            assert limits.get("max-length", 0) > 0 and \
                limits.get("overflow") == "reject-publish", queue
