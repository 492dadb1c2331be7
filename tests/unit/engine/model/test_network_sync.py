"""An attachment's sync against what the node reported, and the required networks it lacks."""

from __future__ import annotations

from overt.engine.model.network_sync import (
    WantedNetwork,
    compare,
    missing_networks,
    parse_reported,
    sync_state,
)
from overt.protocol.host import ReportedNetwork

WANTED = WantedNetwork(name="blue", vlan=100, mtu=0, boot_protocol="static",
                       address="10.0.0.1", netmask="255.255.255.0")


def _reported(**changes: object) -> ReportedNetwork:
    base = ReportedNetwork(name="blue", bridge="blue", nic="eth1", vlan=100, mtu=1500,
                           addresses=("10.0.0.1/24",))
    return base.model_copy(update=changes)


def test_a_network_realised_as_defined_is_in_sync() -> None:
    state = sync_state(WANTED, True, {"blue": _reported()})
    assert state.in_sync
    assert state.configurations is not None
    assert [(c.name, c.expected, c.actual) for c in state.configurations] == [
        ("vlan", "100", "100"), ("mtu", "1500", "1500"), ("ipv4_address", "10.0.0.1", "10.0.0.1"),
        ("ipv4_netmask", "255.255.255.0", "255.255.255.0")]


def test_each_difference_is_named_with_both_values() -> None:
    reported = _reported(vlan=None, mtu=9000, addresses=("fe80::1/64", "10.0.0.7/16"))
    assert [(c.name, c.expected, c.actual) for c in compare(WANTED, reported)
            if not c.in_sync] == [("vlan", "100", ""), ("mtu", "1500", "9000"),
                                  ("ipv4_address", "10.0.0.1", "10.0.0.7"),
                                  ("ipv4_netmask", "255.255.255.0", "255.255.0.0")]
    # The wanted address among others is in sync; no address at all is a difference.
    assert all(c.in_sync for c in compare(WANTED, _reported(addresses=("10.9.9.9/8",
                                                                      "10.0.0.1/24"))))
    assert {c.name: c.actual for c in compare(WANTED, _reported(addresses=()))
            }["ipv4_address"] == ""


def test_a_missing_bridge_or_an_unapplied_attachment_is_out_of_sync() -> None:
    missing = sync_state(WANTED, True, {})
    assert not missing.in_sync and missing.configurations is not None
    assert [(c.name, c.expected, c.actual) for c in missing.configurations] == [
        ("bridged", "true", "false")]
    assert not sync_state(WANTED, False, {"blue": _reported()}).in_sync


def test_without_a_report_only_whether_the_node_applied_it_counts() -> None:
    assert parse_reported(None) is None
    assert sync_state(WANTED, True, None).in_sync
    assert sync_state(WANTED, True, None).configurations is None
    plain = WantedNetwork(name="blue", vlan=None, mtu=9000, boot_protocol="none")
    assert all(c.in_sync for c in compare(plain, _reported(vlan=None, mtu=9000, addresses=())))


def test_missing_networks_are_the_required_ones_not_carried() -> None:
    assert missing_networks(["red", "blue", "green"], ["green", "other"]) == ["blue", "red"]
    assert missing_networks([], []) == []
    stored = parse_reported([_reported().model_dump(mode="json")])
    assert stored is not None and list(stored) == ["blue"]
