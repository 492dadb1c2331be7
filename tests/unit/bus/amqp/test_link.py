import asyncio
import errno
import itertools

import pytest
from aiormq.exceptions import AMQPConnectionError, ConnectionClosed, ProbableAuthenticationError

from overt.bus.amqp import link
from overt.bus.amqp.link import Backoff, LinkReset, describe
from overt.bus.amqp.url import BrokerUrl

URL = BrokerUrl.parse("amqp://overt-node-1:hunter2@broker:5672/overt")


def test_delays_grow_to_the_maximum_with_some_jitter() -> None:
    delays = list(itertools.islice(Backoff(initial=0.5, maximum=4.0).delays(), 8))
    assert 0.4 <= delays[0] <= 0.6
    assert all(3.2 <= delay <= 4.8 for delay in delays[4:])
    assert delays[3] > delays[0]


def test_broker_failures_are_told_in_an_administrators_words() -> None:
    refused = AMQPConnectionError(errno.ECONNREFUSED, "Connect call failed")
    assert describe(refused, URL) == "nothing answers at broker:5672 (is RabbitMQ running?)"
    assert "No route to host" in describe(AMQPConnectionError(errno.EHOSTUNREACH, "x"), URL)
    assert "refused user 'overt-node-1'" in describe(ProbableAuthenticationError("x"), URL)
    shutdown = ConnectionClosed(320, "CONNECTION_FORCED - broker forced connection closure")
    assert describe(shutdown, URL) == (
        "the broker closed it: CONNECTION_FORCED - broker forced connection closure")
    assert describe(LinkReset("a channel closed"), URL) == "a channel closed"
    assert describe(TimeoutError(), URL) == "no answer from broker:5672 in time"
    untrusted = AMQPConnectionError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
                                       "failed: self-signed certificate in certificate chain")
    assert describe(untrusted, URL).startswith("the certificate of broker:5672 is not trusted")


def test_failure_descriptions_never_carry_the_password() -> None:
    leaky = RuntimeError("could not connect to amqp://overt-node-1:hunter2@broker")
    assert "hunter2" not in describe(leaky, URL)


class _FakeConnection:
    """What the link uses of an aio-pika connection."""

    def __init__(self) -> None:
        self.close_callbacks: set[object] = set()
        self.connected = asyncio.Event()
        self.connected.set()
        self.is_closed = False

    async def close(self) -> None:
        self.is_closed = True


async def test_a_link_to_a_cluster_tries_the_next_broker_when_one_is_down(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tried: list[str] = []

    async def connect(url: str, **_kwargs: object) -> _FakeConnection:
        tried.append(url.split("@")[1].split("/")[0])
        if "dead" in url:
            raise AMQPConnectionError(errno.ECONNREFUSED, "Connect call failed")
        return _FakeConnection()

    async def set_up(_connection: object) -> None:
        return None

    monkeypatch.setattr(link.aio_pika, "connect", connect)
    cluster = BrokerUrl.parse("amqp://engine:pw@dead:5672,alive:5672/overt")
    broker = link.BrokerLink(cluster, name="test", on_connect=set_up,  # type: ignore[arg-type]
                             on_disconnect=lambda: None, backoff=Backoff(initial=0.01),
                             connect_timeout=1)
    await broker.start()
    async with asyncio.timeout(5):
        await broker.wait_connected()
    assert tried == ["dead:5672", "alive:5672"]
    assert broker.url.host == "alive"
    await broker.close()
