"""The address plan is checked before anything runs, and the files dnsmasq and chrony read
say exactly what the engine means to serve."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from overt.engine.netsvc.addresses import AddressBook, PoolExhausted
from overt.engine.netsvc.configs import render_chrony, render_dnsmasq
from overt.engine.netsvc.inventory import HostEntry, Inventory, NicEntry
from overt.engine.netsvc.plan import PlanError, load_plan, parse_plan

PLAN = {
    "domain": "Example", "upstream_dns": ["192.0.2.53"], "ntp_servers": ["192.0.2.123"],
    "networks": [{"name": "vmnet", "interface": "br-vm", "subnet": "10.233.5.0/24",
                  "address": "10.233.5.1", "gateway": "10.233.5.254",
                  "dhcp_range": "10.233.5.100-10.233.5.150",
                  "reserved_range": "10.233.5.10-10.233.5.12"}],
}


def _plan(**network: object) -> dict[str, object]:
    return {**PLAN, "networks": [{**PLAN["networks"][0], **network}]}  # type: ignore[index]


def test_plan_file_is_read_and_normalised(tmp_path: Path) -> None:
    path = tmp_path / "netsvc.toml"
    path.write_text('domain = "example."\n[[networks]]\nname = "vmnet"\nsubnet = "10.233.5.0/24"'
                    '\naddress = "10.233.5.1"\ndhcp_range = "10.233.5.100-10.233.5.150"\n'
                    'reserved_range = "10.233.5.10-10.233.5.20"\n')
    plan = load_plan(path, gateway_port=9444)
    assert plan.domain == "example"
    assert plan.gateway_port == 9444
    net = plan.networks[0]
    assert net.interface == "vmnet"  # the network's bridge, by default
    assert net.gateway is None
    assert net.reserved_addresses()[0] == ipaddress.IPv4Address("10.233.5.10")


@pytest.mark.parametrize(("change", "message"), [
    ({"address": "10.9.9.9"}, "not in 10.233.5.0/24"),
    ({"gateway": "10.9.9.9"}, "gateway"),
    ({"dhcp_range": "10.233.5.150-10.233.5.100"}, "ascending"),
    ({"dhcp_range": "10.233.5.11-10.233.5.120"}, "overlap"),
    ({"reserved_range": "nonsense"}, "FIRST-LAST"),
    ({"subnet": "10.233.5.0/33"}, "vmnet"),
    ({"interface": "a-name-longer-than-15"}, "interface"),
    ({"dhcp_rnage": "10.233.5.100-10.233.5.150"}, "unknown setting dhcp_rnage"),
])
def test_bad_network_plans_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_plan(_plan(**change))


def test_bad_domain_and_missing_networks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="not a DNS domain"):
        parse_plan({**PLAN, "domain": "bad_domain!"})
    with pytest.raises(PlanError, match="unknown setting upstream"):
        parse_plan({**PLAN, "upstream": ["192.0.2.1"]})
    with pytest.raises(PlanError, match=r"'dns\.example' is not an IP address"):
        parse_plan({**PLAN, "upstream_dns": ["dns.example"]})
    with pytest.raises(PlanError, match="tables"):
        parse_plan({"domain": "example", "networks": "vmnet"})
    with pytest.raises(PlanError, match="no \\[\\[networks\\]\\]"):
        parse_plan({"domain": "example"})
    with pytest.raises(PlanError, match="cannot read"):
        load_plan(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("domain = ")
    with pytest.raises(PlanError, match=r"bad\.toml"):
        load_plan(tmp_path / "bad.toml")


def test_addresses_are_stable_and_freed(tmp_path: Path) -> None:
    net = parse_plan(PLAN).networks[0]
    book = AddressBook(tmp_path / "addresses.json")
    first = book.assign(net, ["56:6f:00:00:00:02", "56:6f:00:00:00:01"])
    assert {m: str(a) for m, a in first.items()} == {
        "56:6f:00:00:00:01": "10.233.5.10", "56:6f:00:00:00:02": "10.233.5.11"}
    # The first NIC goes away; the second keeps its address, a new one takes the free one.
    second = book.assign(net, ["56:6f:00:00:00:02", "56:6f:00:00:00:03"])
    assert str(second["56:6f:00:00:00:02"]) == "10.233.5.11"
    assert str(second["56:6f:00:00:00:03"]) == "10.233.5.10"
    # Full: the NICs that had an address keep it, one more gets the last, the rest none.
    macs = ["56:6f:00:00:00:02", "56:6f:00:00:00:03", "56:6f:00:00:01:01", "56:6f:00:00:01:02"]
    with pytest.raises(PoolExhausted, match="is full; no address for 56:6f:00:00:01:02") as full:
        book.assign(net, macs)
    assert {m: str(a) for m, a in full.value.assigned.items()} == {
        "56:6f:00:00:00:02": "10.233.5.11", "56:6f:00:00:00:03": "10.233.5.10",
        "56:6f:00:00:01:01": "10.233.5.12"}


def test_dnsmasq_files(tmp_path: Path) -> None:
    plan = parse_plan(PLAN, gateway_port=8444)
    net = plan.networks[0]
    inventory = Inventory(
        nics=(NicEntry("vmnet", "56:6f:00:00:00:01", "Web_1", "Default", "nic1"),
              NicEntry("vmnet", "56:6f:00:00:00:02", "Web_1", "Default", "nic2"),
              NicEntry("vmnet", "56:6f:00:00:00:03", "db", "prod", "nic1")),
        hosts=(HostEntry("vmnet", "node1", "Default", ipaddress.IPv4Address("10.233.5.2")),))
    addresses = {"vmnet": {"56:6f:00:00:00:01": ipaddress.IPv4Address("10.233.5.10"),
                           "56:6f:00:00:00:02": ipaddress.IPv4Address("10.233.5.11"),
                           "56:6f:00:00:00:03": ipaddress.IPv4Address("10.233.5.12")}}
    files = render_dnsmasq(plan, net, inventory, addresses, tmp_path, user="root",
                           group="root")
    main = files.main.splitlines()
    for line in ("interface=br-vm", "domain=example", "local=/example/", "no-resolv",
                 "server=192.0.2.53", "no-hosts", f"addn-hosts={tmp_path}/hosts",
                 f"dhcp-hostsfile={tmp_path}/dhcp-hosts", f"pid-file={tmp_path}/dnsmasq.pid",
                 "dhcp-range=set:dynamic,10.233.5.100,10.233.5.150,255.255.255.0,1h",
                 "dhcp-range=set:reserved,10.233.5.0,static,255.255.255.0,1h",
                 "dhcp-option=option:router,10.233.5.254",
                 "dhcp-option=option:dns-server,10.233.5.1",
                 "dhcp-option=option:ntp-server,10.233.5.1",
                 "srv-host=_overt._tcp.example,engine.example,8444"):
        assert line in main
    assert files.hosts.splitlines()[1:] == [
        "10.233.5.1 engine.example", "10.233.5.10 web-1.default.example",
        "10.233.5.11 web-1.default.example", "10.233.5.12 db.prod.example",
        "10.233.5.2 node1.default.example"]
    # One name per VM: its second NIC gets its address without the name.
    assert files.dhcp_hosts.splitlines()[1:] == [
        "56:6f:00:00:00:01,10.233.5.10,web-1", "56:6f:00:00:00:02,10.233.5.11",
        "56:6f:00:00:00:03,10.233.5.12,db"]


def test_dnsmasq_without_upstream_or_gateway_uses_the_system_resolver(tmp_path: Path) -> None:
    raw = _plan(gateway=None)
    raw["upstream_dns"] = []
    raw["ntp"] = False
    plan = parse_plan(raw)
    main = render_dnsmasq(plan, plan.networks[0], Inventory((), ()), {}, tmp_path,
                          user="root", group="root").main.splitlines()
    assert "no-resolv" not in main
    assert "dhcp-option=option:router" in main  # no default route offered
    assert not any("ntp-server" in line for line in main)


def test_chrony_file_is_private(tmp_path: Path) -> None:
    conf = render_chrony(parse_plan(PLAN), tmp_path).splitlines()
    for line in (f"pidfile {tmp_path}/chronyd.pid", f"driftfile {tmp_path}/chrony.drift",
                 "cmdport 0", "bindcmdaddress /", "local stratum 10",
                 "bindaddress 10.233.5.1", "server 192.0.2.123 iburst",
                 "allow 10.233.5.0/24"):
        assert line in conf
