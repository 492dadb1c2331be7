import errno
import itertools

from aiormq.exceptions import AMQPConnectionError, ConnectionClosed, ProbableAuthenticationError

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
