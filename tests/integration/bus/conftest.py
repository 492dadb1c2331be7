"""The broker the bus tests run against: this machine's RabbitMQ, in a vhost of this run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from overt.system.daemons import SYSTEM_RABBITMQ
from tests.conftest import require_root
from tests.integration.bus.broker import Broker, close_broker, open_broker


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[Broker]:
    """This machine's RabbitMQ (started when it does not answer), with a vhost and an
    administrator of this test run, both removed at the end."""
    require_root()
    broker = open_broker(SYSTEM_RABBITMQ)
    yield broker
    close_broker(broker)
