"""A host's bonds, defined by the engine and reported by its node, side by side: in sync
when the node has them with the defined mode and slaves, out of sync with the differences
otherwise, and not judged before the node has reported."""

from __future__ import annotations

from overt.engine.model.bond_sync import DefinedBond, bond_views, slave_links
from overt.protocol.host import ReportedBond, ReportedBondSlave

DEFINED = DefinedBond(name="bond0", mode="active-backup", slaves=("eth1", "eth2"),
                      options={"mode": "1"})


def _reported(name: str, mode: str, *slaves: tuple[str, bool],
              active: str | None = None) -> ReportedBond:
    return ReportedBond(name=name, mode=mode, active_slave=active,
                        slaves=tuple(ReportedBondSlave(name=s, link_up=up) for s, up in slaves))


def test_a_bond_the_node_has_as_defined_is_in_sync_with_its_active_slave() -> None:
    reported = _reported("bond0", "active-backup", ("eth1", False), ("eth2", True),
                         active="eth2")
    [view] = bond_views([DEFINED], {"bond0": reported})
    assert (view.in_sync, view.slaves, view.link_up, view.options) == (
        True, ("eth1", "eth2"), True, {"mode": "1"})
    assert slave_links({"bond0": reported}) == {"eth1": False, "eth2": True}


def test_differences_and_bonds_only_one_side_has() -> None:
    views = bond_views([DEFINED], {"bond1": _reported("bond1", "balance-slb", ("eth3", True),
                                                      ("eth4", True))})
    lost, extra = views
    assert (lost.name, lost.in_sync, lost.link_up) == ("bond0", False, None)
    assert lost.differences == [("mode", "active-backup", ""), ("slaves", "eth1,eth2", "")]
    assert (extra.name, extra.in_sync, extra.options) == ("bond1", False,
                                                          {"mode": "balance-slb"})
    assert extra.differences == [("mode", "", "balance-slb"), ("slaves", "", "eth3,eth4")]

    [changed] = bond_views([DEFINED], {"bond0": _reported("bond0", "balance-tcp",
                                                          ("eth1", True), ("eth5", True))})
    assert changed.differences == [("mode", "active-backup", "balance-tcp"),
                                   ("slaves", "eth1,eth2", "eth1,eth5")]
    assert changed.slaves == ("eth1", "eth5")  # what the host really has


def test_nothing_is_judged_before_the_node_reports() -> None:
    [view] = bond_views([DEFINED], None)
    assert (view.in_sync, view.slaves, view.link_up) == (True, ("eth1", "eth2"), None)
