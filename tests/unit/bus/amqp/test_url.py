import pytest
from hypothesis import given
from hypothesis import strategies as st

from overt.bus.amqp.url import BrokerUrl, broker_addresses, broker_url


def test_a_url_shows_everything_but_its_password() -> None:
    url = BrokerUrl.parse("amqp://engine:s3cret@broker.example:5672/overt")
    assert (url.username, url.password, url.host, url.port, url.vhost) == (
        "engine", "s3cret", "broker.example", 5672, "overt")
    assert "s3cret" not in str(url) and "s3cret" not in repr(url)
    assert str(url).startswith("amqp://engine:***@broker.example:5672/overt")
    assert url.scrub("login failed for engine:s3cret") == "login failed for engine:***"


def test_heartbeats_default_to_fifteen_seconds_unless_the_url_says() -> None:
    assert "heartbeat=15" in BrokerUrl.parse("amqp://u:p@h/v").url
    assert "heartbeat=5" in BrokerUrl.parse("amqp://u:p@h/v?heartbeat=5").url


def test_ports_and_vhosts_have_rabbitmq_defaults() -> None:
    assert BrokerUrl.parse("amqps://u:p@h/v").port == 5671
    assert BrokerUrl.parse("amqp://u:p@h").vhost == "/"
    assert BrokerUrl.parse("amqp://u:p@h/%2F").vhost == "/"


@pytest.mark.parametrize("url", ["http://u:p@h/v", "amqp://h/v", "amqp://u@h/v"])
def test_urls_without_scheme_or_credentials_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="broker URL") as caught:
        BrokerUrl.parse(url)
    assert ":p@" not in str(caught.value)


@given(username=st.text(min_size=1, max_size=20), password=st.text(min_size=1, max_size=40),
       vhost=st.text(min_size=1, max_size=20))
def test_built_urls_parse_back_to_what_went_in(username: str, password: str,
                                               vhost: str) -> None:
    url = BrokerUrl.parse(broker_url("amqp", username, password, "broker", 5672, vhost))
    assert (url.username, url.password, url.vhost) == (username, password, vhost)


def test_a_url_may_name_every_broker_of_a_cluster() -> None:
    url = BrokerUrl.parse("amqp://engine:s3cret@10.0.0.1:5672,10.0.0.2,[fd00::3]:5673/overt")
    assert (url.host, url.port) == ("10.0.0.1", 5672)
    members = url.members()
    assert [(m.host, m.port) for m in members] == [
        ("10.0.0.1", 5672), ("10.0.0.2", 5672), ("fd00::3", 5673)]
    assert [m.url.split("?")[0] for m in members] == [
        "amqp://engine:s3cret@10.0.0.1:5672/overt", "amqp://engine:s3cret@10.0.0.2:5672/overt",
        "amqp://engine:s3cret@[fd00::3]:5673/overt"]
    assert all(m.username == "engine" and m.vhost == "overt" for m in members)
    assert "s3cret" not in str(url) and "10.0.0.2" in str(url)


def test_built_urls_name_every_broker_given() -> None:
    built = broker_url("amqp", "node", "pw", "a", 5672, "v", others=(("b", 5673),))
    assert built == "amqp://node:pw@a:5672,b:5673/v"
    assert broker_addresses(built) == [("a", 5672), ("b", 5673)]
    assert broker_addresses("amqps://a,b:1") == [("a", 5671), ("b", 1)]


@pytest.mark.parametrize("url", ["amqp://u:p@a:x/v", "amqp://u:p@a,,b/v", "amqp://u:p@/v"])
def test_a_cluster_url_with_a_bad_address_is_refused(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        BrokerUrl.parse(url)
    assert ":p@" not in str(caught.value)
