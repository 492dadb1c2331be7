"""Event subscriptions through the official SDK (`users/{id}/eventsubscriptions`) and SNMP
managers through the API: a host whose install fails reaches a real `snmptrapd` as the
engine's trap; bad input is a 400 fault that changes nothing; secrets never come back."""

from __future__ import annotations

import secrets
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.engine.identity.roles import USER_ROLE
from tests.integration.node.snmp.netsnmp import Snmptrapd, free_udp_port
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, start_engine
from tests.support.internal_users import add_internal_user, give_role
from tests.support.no_nodes import NoNodes

pytestmark = pytest.mark.slow  # a real snmptrapd, an engine's host install timing out

OBJ = ".1.3.6.1.4.1.99999.2.1"
COMMUNITY = "c0mmunity-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def notifying_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    engine = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes(),
                          host_install_timeout_s=0.5, notifier_interval_s=0.2)
    yield engine
    engine.stop()


@pytest.fixture
def connection(notifying_engine: RunningEngine) -> Iterator[sdk.Connection]:
    conn = sdk.Connection(url=notifying_engine.url, username="admin@internal",
                          password=notifying_engine.password,
                          ca_file=str(notifying_engine.ca_file))
    yield conn
    conn.close()


@pytest.fixture
def http(notifying_engine: RunningEngine) -> Iterator[httpx.Client]:
    with httpx.Client(verify=ssl.create_default_context(cafile=notifying_engine.ca_file),
                      auth=("admin@internal", notifying_engine.password),
                      base_url=notifying_engine.url,
                      headers={"Accept": "application/xml",
                               "Content-Type": "application/xml"}) as client:
        yield client


@pytest.fixture
def trapd(tmp_path: Path) -> Iterator[Snmptrapd]:
    daemon = Snmptrapd(tmp_path / "trapd", COMMUNITY)
    yield daemon
    daemon.stop()


def _admin(connection: sdk.Connection) -> sdk.services.UserService:
    users = connection.system_service().users_service()
    admin = next(u for u in users.list() if u.user_name.startswith("admin"))
    return users.user_service(admin.id)


def _manager_xml(name: str, address: str, port: int | str, extra: str = "") -> str:
    return (f"<snmp_manager><name>{name}</name><address>{address}</address><port>{port}</port>"
            f"{extra}</snmp_manager>")


def test_a_subscribed_event_reaches_the_manager(
        connection: sdk.Connection, http: httpx.Client, trapd: Snmptrapd,
        notifying_engine: RunningEngine) -> None:
    added = http.post("/snmpmanagers", content=_manager_xml(
        "nms", "127.0.0.1", trapd.port, f"<community>{COMMUNITY}</community>"))
    assert added.status_code == 201, added.text
    assert "<name>nms</name>" in added.text and COMMUNITY not in added.text
    manager_id = added.text.split('id="', 1)[1].split('"', 1)[0]

    subscriptions = _admin(connection).event_subscriptions_service()
    made = subscriptions.add(types.EventSubscription(
        event=types.NotifiableEvent.HOST_INSTALL_FAILED,
        notification_method=types.NotificationMethod.SNMP, address="nms"))
    assert made.id == "host_install_failed" and made.address == "nms"
    assert made.notification_method == types.NotificationMethod.SNMP
    assert [s.event for s in subscriptions.list()] == [types.NotifiableEvent.HOST_INSTALL_FAILED]
    got = subscriptions.event_subscription_service("host_install_failed").get()
    assert got.event == types.NotifiableEvent.HOST_INSTALL_FAILED and got.user.id

    # a host nobody answers for: its install fails, and the manager gets the trap
    hosts = connection.system_service().hosts_service()
    host = hosts.add(types.Host(name="nowhere", address="127.0.0.1", port=free_udp_port(),
                                cluster=types.Cluster(name="Default")))
    [line] = wait_until(lambda: trapd.traps() or None, 20, "the trap at snmptrapd")
    assert 'STRING: "host_install_failed"' in line
    assert f"{OBJ}.3.0 = INTEGER: 505" in line and f"{OBJ}.4.0 = INTEGER: 3" in line  # error
    assert f'{OBJ}.9.0 = STRING: "{host.id}"' in line
    assert f'{OBJ}.10.0 = STRING: "nowhere"' in line

    # the database files (WAL included) hold the subscription, never the community in clear
    data_dir = notifying_engine.runtime.settings.data_dir
    stored = b"".join(f.read_bytes() for f in data_dir.glob("engine.db*"))
    assert b"host_install_failed" in stored and COMMUNITY.encode() not in stored

    # the manager is named by a subscription: it stays until the subscription goes
    assert http.delete(f"/snmpmanagers/{manager_id}").status_code == 409
    subscriptions.event_subscription_service("host_install_failed").remove()
    assert subscriptions.list() == []
    with pytest.raises(sdk.NotFoundError):
        subscriptions.event_subscription_service("host_install_failed").get()
    assert http.delete(f"/snmpmanagers/{manager_id}").status_code == 200
    hosts.host_service(host.id).remove()


@pytest.mark.parametrize("body", [
    "<event_subscription><event>vm_paused_eio</event></event_subscription>",  # not raised
    "<event_subscription><event>no_such_event</event></event_subscription>",
    "<event_subscription/>",
    "<event_subscription><event>host_failure</event><address>a@b.com</address>"
    "</event_subscription>",  # no such manager
    "<event_subscription><event>host_failure</event>"
    "<notification_method>smtp</notification_method></event_subscription>",
])
def test_bad_subscriptions_are_400_and_change_nothing(
        connection: sdk.Connection, http: httpx.Client, body: str) -> None:
    user = _admin(connection)
    answer = http.post(f"/users/{user.get().id}/eventsubscriptions", content=body)
    assert answer.status_code == 400, answer.text
    assert "<fault>" in answer.text and "<detail>" in answer.text
    assert user.event_subscriptions_service().list() == []


def test_the_sdk_gets_a_400_fault_for_an_unknown_event(connection: sdk.Connection) -> None:
    subscriptions = _admin(connection).event_subscriptions_service()
    with pytest.raises(sdk.Error) as refused:
        subscriptions.add(types.EventSubscription(event=types.NotifiableEvent.DWH_ERROR,
                                                  notification_method=types.NotificationMethod.SNMP))
    assert refused.value.code == 400
    assert "is not one this engine notifies" in str(refused.value)
    assert subscriptions.list() == []


@pytest.mark.parametrize("body", [
    _manager_xml("m1", "300.1.1.1", 162, "<community>c</community>"),
    _manager_xml("m1", "bad host!", 162, "<community>c</community>"),
    _manager_xml("m1", "127.0.0.1", 70000, "<community>c</community>"),
    _manager_xml("m1", "127.0.0.1", 0, "<community>c</community>"),
    _manager_xml("m1", "127.0.0.1", 162),  # v2c without a community
    _manager_xml("m1", "127.0.0.1", 162, "<version>v1</version><community>c</community>"),
    _manager_xml("m1", "127.0.0.1", 162, "<user>nms</user><auth_passphrase>short</auth_passphrase>"
                 "<priv_passphrase>long-enough</priv_passphrase>"),
    _manager_xml("m1", "127.0.0.1", 162, "<user>nms</user><auth_passphrase>long-enough"
                 "</auth_passphrase><priv_passphrase>long-enough</priv_passphrase>"
                 "<engine_id>zz</engine_id>"),
    _manager_xml("", "127.0.0.1", 162, "<community>c</community>"),
])
def test_bad_managers_are_400_and_change_nothing(http: httpx.Client, body: str) -> None:
    answer = http.post("/snmpmanagers", content=body)
    assert answer.status_code == 400, answer.text
    assert "<fault>" in answer.text
    assert "<name>" not in http.get("/snmpmanagers").text


def test_a_v3_manager_shows_its_user_and_engine_id_never_its_passphrases(
        http: httpx.Client) -> None:
    auth, priv = "auth-" + secrets.token_hex(6), "priv-" + secrets.token_hex(6)
    added = http.post("/snmpmanagers", content=_manager_xml(
        "nms3", "nms.example", 1162, f"<version>v3</version><user>overt</user>"
        f"<auth_passphrase>{auth}</auth_passphrase><priv_passphrase>{priv}</priv_passphrase>"))
    assert added.status_code == 201, added.text
    listed = http.get("/snmpmanagers").text
    for text in (added.text, listed):
        assert "<user>overt</user>" in text and "<engine_id>0x80001f8804" in text
        assert auth not in text and priv not in text
    manager_id = added.text.split('id="', 1)[1].split('"', 1)[0]
    assert http.post("/snmpmanagers", content=_manager_xml(
        "nms3", "127.0.0.1", 162, "<community>c</community>")).status_code == 409
    assert http.delete(f"/snmpmanagers/{manager_id}").status_code == 200


def test_a_user_reads_their_own_subscriptions_only(
        notifying_engine: RunningEngine, http: httpx.Client) -> None:
    password = "Pw-" + secrets.token_hex(8)
    user_id = add_internal_user(notifying_engine, "reader", password)
    give_role(notifying_engine, user_id, USER_ROLE.id)
    admin_id = next(u["id"] for u in _json(http.get("/users", headers=JSON))["user"]
                    if u["user_name"] == "admin@internal")
    with httpx.Client(verify=ssl.create_default_context(cafile=notifying_engine.ca_file),
                      auth=("reader@internal", password), base_url=notifying_engine.url,
                      headers={"Accept": "application/xml"}) as reader:
        assert reader.get(f"/users/{user_id}/eventsubscriptions").status_code == 200
        assert reader.get(f"/users/{admin_id}/eventsubscriptions").status_code == 404
        assert reader.get("/snmpmanagers").status_code == 403
        refused = reader.post(f"/users/{user_id}/eventsubscriptions",
                              content="<event_subscription><event>host_failure</event>"
                                      "</event_subscription>",
                              headers={"Content-Type": "application/xml"})
        assert refused.status_code == 403
    assert http.get(f"/users/{user_id}/eventsubscriptions").status_code == 200  # the admin


JSON = {"Accept": "application/json"}


def _json(answer: httpx.Response) -> dict[str, list[dict[str, str]]]:
    assert answer.status_code == 200, answer.text
    return dict(answer.json())
