"""A host's bonds as the engine defines them next to those its node reports on its switch:
pure rules. A bond is in sync when the node has it with the defined OVS mode and slaves;
a bond only the node has (made behind the engine's back) or only the engine has (lost on
the host) is out of sync. Nothing is judged before the node has reported bonds."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from overt.protocol.host import ReportedBond

# An OVS bond mode as oVirt's `mode=` option shows it.
OPTION_OF_MODE = {"active-backup": "1", "balance-tcp": "4", "balance-slb": "balance-slb"}


@dataclass(frozen=True)
class DefinedBond:
    """A bond as the engine defines it: its OVS mode and slaves."""

    name: str
    mode: str
    slaves: tuple[str, ...]
    options: dict[str, str]


@dataclass(frozen=True)
class BondView:
    """One bond to show: the definition, the report, and how they differ."""

    name: str
    defined: DefinedBond | None
    reported: ReportedBond | None
    judged: bool  # whether the node has reported its bonds at all

    @property
    def differences(self) -> list[tuple[str, str, str]]:
        """(property, expected, actual) for every property that differs."""
        if not self.judged:
            return []
        expected_mode = self.defined.mode if self.defined else ""
        expected_slaves = ",".join(self.defined.slaves) if self.defined else ""
        actual_mode = self.reported.mode if self.reported else ""
        actual_slaves = ",".join(sorted(s.name for s in self.reported.slaves)) \
            if self.reported else ""
        found = [("mode", expected_mode, actual_mode), ("slaves", expected_slaves, actual_slaves)]
        return [d for d in found if d[1] != d[2]]

    @property
    def in_sync(self) -> bool:
        return not self.differences

    @property
    def slaves(self) -> tuple[str, ...]:
        """The slaves the node has, else those defined."""
        if self.reported is not None:
            return tuple(sorted(s.name for s in self.reported.slaves))
        return self.defined.slaves if self.defined else ()

    @property
    def options(self) -> dict[str, str]:
        if self.defined is not None:
            return dict(self.defined.options)
        assert self.reported is not None
        return {"mode": OPTION_OF_MODE.get(self.reported.mode, self.reported.mode)}

    @property
    def link_up(self) -> bool | None:
        """Whether any slave has its link; None when the node has not reported it."""
        if self.reported is None:
            return None
        return any(s.link_up for s in self.reported.slaves)


def parse_reported(rows: Iterable[dict[str, Any]] | None) -> dict[str, ReportedBond] | None:
    if rows is None:
        return None
    return {b.name: b for b in (ReportedBond.model_validate(row) for row in rows)}


def bond_views(defined: Sequence[DefinedBond], reported: dict[str, ReportedBond] | None
               ) -> list[BondView]:
    """Every bond the engine defines or the node reports, by name."""
    by_name = {b.name: b for b in defined}
    names = sorted(set(by_name) | set(reported or {}))
    return [BondView(name=n, defined=by_name.get(n), reported=(reported or {}).get(n),
                     judged=reported is not None) for n in names]


def slave_links(reported: dict[str, ReportedBond] | None) -> dict[str, bool]:
    """Each reported bond slave's link state, by NIC name."""
    return {s.name: s.link_up for b in (reported or {}).values() for s in b.slaves}
