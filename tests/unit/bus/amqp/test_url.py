import pytest
from hypothesis import given
from hypothesis import strategies as st

from overt.bus.amqp.url import BrokerUrl, broker_url


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
