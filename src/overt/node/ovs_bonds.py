"""The Open vSwitch bonds a node really has, read from its switch (`ovs-appctl bond/show`):
whoever made them, with each slave's state and the slave that carries the traffic now."""

from __future__ import annotations

import logging
import re
import subprocess

from overt.protocol.host import ReportedBond, ReportedBondSlave
from overt.system.commands import CommandFailed, ToolMissing, run

log = logging.getLogger(__name__)

_HEADER = re.compile(r"^---- (?P<name>\S+) ----$")
# OVS 2.x says "slave", 3.x "member".
_SLAVE = re.compile(r"^(?:member|slave) (?P<name>[^:\s]+): (?P<state>enabled|disabled)$")
_ACTIVE = re.compile(r"^\s+active (?:member|slave)$")


def switch_bonds() -> tuple[ReportedBond, ...]:
    """The switch's bonds; none when the node has no running Open vSwitch."""
    try:
        text = run(["ovs-appctl", "--timeout=10", "bond/show"], timeout=20).stdout
    except ToolMissing:
        return ()
    except (CommandFailed, subprocess.TimeoutExpired) as exc:
        log.debug("no Open vSwitch bonds to report: %s", exc)
        return ()
    return parse_bond_show(text)


def parse_bond_show(text: str) -> tuple[ReportedBond, ...]:
    """`ovs-appctl bond/show` output, one bond per `---- NAME ----` section."""
    bonds: list[ReportedBond] = []
    for section in _sections(text):
        name, lines = section
        fields: dict[str, str] = {}
        slaves: list[ReportedBondSlave] = []
        active: str | None = None
        for line in lines:
            slave = _SLAVE.match(line)
            if slave:
                slaves.append(ReportedBondSlave(name=slave["name"],
                                                link_up=slave["state"] == "enabled"))
            elif _ACTIVE.match(line) and slaves:
                active = slaves[-1].name
            elif ":" in line and not line.startswith(" "):
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
        bonds.append(ReportedBond(
            name=name, mode=fields.get("bond_mode", "active-backup"),
            lacp=fields.get("lacp_status", "off"),
            slaves=tuple(sorted(slaves, key=lambda s: s.name)), active_slave=active))
    return tuple(sorted(bonds, key=lambda b: b.name))


def _sections(text: str) -> list[tuple[str, list[str]]]:
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        header = _HEADER.match(line.strip())
        if header:
            sections.append((header["name"], []))
        elif sections and line.strip():
            sections[-1][1].append(line.rstrip())
    return sections
