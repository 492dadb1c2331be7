import asyncio

import pytest

from overt.bus.amqp.admin import BrokerAdmin


def test_the_admin_of_a_broker_url_finds_its_management_api_and_the_nodes_address() -> None:
    plain = BrokerAdmin.for_broker("amqp://overt-admin:pw@broker:5672/overt", allow_plain=True)
    tls = BrokerAdmin.for_broker("amqps://overt-admin:pw@broker:5671/overt",
                                 node_url="amqps://10.77.0.1:5671")
    try:
        assert plain.management_url == "http://broker:15672"
        assert tls.management_url == "https://broker:15671"
        assert plain.vhost == tls.vhost == "overt"
    finally:
        asyncio.run(plain.aclose())
        asyncio.run(tls.aclose())


@pytest.mark.parametrize("node_url", ["http://broker:5672", "amqp://user:pw@broker:5672",
                                      "amqp://"])
def test_nodes_are_never_handed_an_address_with_credentials_or_without_host(
        node_url: str) -> None:
    with pytest.raises(ValueError, match="not a broker address for nodes"):
        BrokerAdmin("http://broker:15672", username="a", password="b", vhost="v",
                    node_url=node_url)


def test_nodes_are_handed_every_broker_of_a_cluster() -> None:
    admin = BrokerAdmin("http://lb:15672", username="a", password="b", vhost="v",
                        node_url="amqp://10.0.0.1:5672,10.0.0.2:5672", allow_plain=True)
    try:
        assert admin._node_addresses == [("10.0.0.1", 5672), ("10.0.0.2", 5672)]
    finally:
        asyncio.run(admin.aclose())
