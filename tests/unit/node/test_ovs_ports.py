"""Which bridges a VM NIC joins as an OVS port: an untagged network's bridge is an OVS
fake bridge when a bond carries it, a Linux bridge otherwise; the switch is asked only for
untagged NICs, and a host without a switch has no OVS bridges."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from overt.node import ovs_ports
from overt.system.commands import CommandFailed, ToolMissing


def test_the_untagged_bridges_the_switch_has_are_ovs_ones(
        monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[list[str]] = []

    def list_br(argv: Sequence[str], **_: object) -> subprocess.CompletedProcess[str]:
        asked.append(list(argv))
        return subprocess.CompletedProcess(argv, 0, "ob-bond0\nguestnet\nvlan100\n", "")
    monkeypatch.setattr(ovs_ports, "run", list_br)
    assert ovs_ports.ovs_bridges(["guestnet", "ovirtmgmt"]) == frozenset({"guestnet"})
    assert asked == [["ovs-vsctl", "--timeout=10", "list-br"]]
    assert ovs_ports.ovs_bridges([]) == frozenset()  # only tagged NICs: nothing asked
    assert len(asked) == 1


def test_no_switch_means_linux_bridges(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(argv: Sequence[str], **_: object) -> subprocess.CompletedProcess[str]:
        raise ToolMissing("ovs-vsctl is not installed")
    monkeypatch.setattr(ovs_ports, "run", missing)
    assert ovs_ports.ovs_bridges(["guestnet"]) == frozenset()

    def down(argv: Sequence[str], **_: object) -> subprocess.CompletedProcess[str]:
        raise CommandFailed(list(argv), 1, "database connection failed")
    monkeypatch.setattr(ovs_ports, "run", down)
    assert ovs_ports.ovs_bridges(["guestnet"]) == frozenset()
