"""Reading a node's Open vSwitch bonds from `ovs-appctl bond/show`: mode, LACP state,
slaves with their link, and the active slave, for OVS 3.x ("member") and 2.x ("slave")."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from overt.node import ovs_bonds
from overt.protocol.host import ReportedBond, ReportedBondSlave
from overt.system.commands import CommandFailed, ToolMissing

OVS3 = """---- bond1 ----
bond_mode: balance-tcp
bond may use recirculation: yes, Recirc-ID : 1
bond-hash-basis: 0
lb_output action: disabled, bond-id: -1
updelay: 0 ms
downdelay: 0 ms
next rebalance: 9870 ms
lacp_status: configured
lacp_fallback_ab: false
active-backup primary: <none>
active member mac: 00:00:00:00:00:00(none)

member eth3: disabled
  may_enable: false

member eth4: disabled
  may_enable: false

---- bond0 ----
bond_mode: active-backup
bond may use recirculation: no, Recirc-ID : -1
bond-hash-basis: 0
lb_output action: disabled, bond-id: -1
updelay: 0 ms
downdelay: 0 ms
lacp_status: off
lacp_fallback_ab: false
active-backup primary: <none>
active member mac: 6a:3b:01:02:03:04(bndb)

member bnda: disabled
  may_enable: false

member bndb: enabled
  active member
  may_enable: true
"""

OVS2 = """---- bond0 ----
bond_mode: active-backup
lacp_status: off
active slave mac: 6a:3b:01:02:03:04(eth1)

slave eth1: enabled
\tactive slave
\tmay_enable: true

slave eth2: enabled
\tmay_enable: true
"""


def test_bonds_with_their_slaves_links_and_active_slave() -> None:
    assert ovs_bonds.parse_bond_show(OVS3) == (
        ReportedBond(name="bond0", mode="active-backup", lacp="off",
                     slaves=(ReportedBondSlave(name="bnda", link_up=False),
                             ReportedBondSlave(name="bndb", link_up=True)),
                     active_slave="bndb"),
        ReportedBond(name="bond1", mode="balance-tcp", lacp="configured",
                     slaves=(ReportedBondSlave(name="eth3", link_up=False),
                             ReportedBondSlave(name="eth4", link_up=False)),
                     active_slave=None))


def test_older_switches_say_slave() -> None:
    [bond] = ovs_bonds.parse_bond_show(OVS2)
    assert (bond.active_slave, [s.name for s in bond.slaves if s.link_up]) == (
        "eth1", ["eth1", "eth2"])


def test_no_switch_or_no_bonds_is_no_bonds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ovs_bonds.parse_bond_show("") == ()

    def missing(argv: Sequence[str], **_: object) -> subprocess.CompletedProcess[str]:
        raise ToolMissing("ovs-appctl is not installed")
    monkeypatch.setattr(ovs_bonds, "run", missing)
    assert ovs_bonds.switch_bonds() == ()

    def down(argv: Sequence[str], **_: object) -> subprocess.CompletedProcess[str]:
        raise CommandFailed(list(argv), 1, "cannot connect to ovs-vswitchd")
    monkeypatch.setattr(ovs_bonds, "run", down)
    assert ovs_bonds.switch_bonds() == ()
