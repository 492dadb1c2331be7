"""A host's bonds: NICs joined as one Open vSwitch bond by `setupnetworks` (`modified_bonds`,
`removed_bonds`), checked before anything changes.

oVirt speaks Linux bonding modes; Open vSwitch has three bond modes, so `mode=1`
(active-backup) and `mode=4` (802.3ad, LACP, as `balance-tcp`) map to them and OVS's own
`balance-slb` is accepted by name; the other Linux modes are refused.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Host, HostBond
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.queries.host_bonds import MODES, bond_id
from overt.engine.queries.lookup import Ref
from overt.engine.services import host_facts

BOND_NAME = re.compile(r"^bond[0-9]{1,4}$")


@dataclass
class BondInput:
    """One `<host_nic>` of `modified_bonds`."""

    id: uuid.UUID | None = None
    name: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    slaves: list[Ref] = field(default_factory=list)


def _mode(options: dict[str, str], what: str) -> str:
    mode = options.get("mode", "1")
    if mode not in MODES:
        raise InvalidInput(f"{what}: bonding mode {mode!r} is not one Open vSwitch bonds "
                           "carry (1/active-backup, 4/802.3ad, balance-slb)")
    return mode


@dataclass
class BondPlan:
    """The bonds a host will have, by name (name -> (slaves, options)), and which go."""

    wanted: dict[str, tuple[list[str], dict[str, str]]]
    removed: list[HostBond]


def plan(host: Host, current: list[HostBond], modified: list[BondInput],
         removed: list[Ref]) -> BondPlan:
    nics = {nic.name for nic in host_facts.host_nics(host) if not nic.bridged}
    by_name = {b.name: b for b in current}
    by_id = {bond_id(host.id, b.name): b for b in current}
    gone: list[HostBond] = []
    for index, ref in enumerate(removed):
        bond = by_id.get(ref.id) if ref.id is not None else by_name.get(ref.name or "")
        if bond is None:
            raise InvalidInput(f"removed_bonds[{index}]: host {host.name} has no bond "
                               f"{ref.id or ref.name}")
        gone.append(bond)
    wanted = {b.name: (list(b.slaves), dict(b.options)) for b in current if b not in gone}
    for index, item in enumerate(modified):
        what = f"modified_bonds[{index}]"
        existing = by_id.get(item.id) if item.id is not None else None
        name = existing.name if existing is not None else (item.name or "")
        if not BOND_NAME.match(name):
            raise InvalidInput(f"{what}: a bond's name is bond followed by a number, "
                               f"not {name!r}")
        slaves = []
        for ref in item.slaves:
            slave = ref.name or next((n.name for n in host_facts.host_nics(host)
                                      if n.id == ref.id), None)
            if slave is None or slave not in nics:
                raise InvalidInput(f"{what}: slave {ref.name or ref.id} is not a NIC of host "
                                   f"{host.name}")
            slaves.append(slave)
        if len(set(slaves)) < 2:
            raise InvalidInput(f"{what}: a bond needs at least two distinct slave NICs")
        options = dict(wanted.get(name, ([], {}))[1]) | item.options
        _mode(options, what)
        wanted[name] = (sorted(set(slaves)), options)
    owners: dict[str, str] = {}
    for name, (slaves, _options) in wanted.items():
        for slave in slaves:
            if slave in owners:
                raise InvalidInput(f"NIC {slave} of host {host.name} cannot be a slave of both "
                                   f"{owners[slave]} and {name}")
            owners[slave] = name
    return BondPlan(wanted=wanted, removed=gone)


def check_networks(host: Host, bonds: BondPlan, placed: list[tuple[str, int | None, str]]
                   ) -> None:
    """Networks (name, vlan, nic) only on NICs that are no bond's slave, none on a removed
    bond. (Two untagged networks on one bond are refused with those on one NIC.)"""
    slaves = {s: name for name, (ss, _o) in bonds.wanted.items() for s in ss}
    for network, _vlan, nic in placed:
        if nic in slaves:
            raise InvalidInput(f"network {network} cannot ride on NIC {nic} of host "
                               f"{host.name}: it is a slave of {slaves[nic]}")
        if any(b.name == nic for b in bonds.removed) and nic not in bonds.wanted:
            raise Conflict(f"Cannot remove bond {nic} of host {host.name}: network "
                           f"{network} rides on it.")


async def apply(session: AsyncSession, host: Host, current: list[HostBond],
                bonds: BondPlan) -> None:
    by_name = {b.name: b for b in current}
    for bond in bonds.removed:
        if bond.name not in bonds.wanted:
            await session.delete(bond)
    for name, (slaves, options) in bonds.wanted.items():
        row = by_name.get(name)
        if row is None:
            row = HostBond(id=bond_id(host.id, name), host_id=host.id, name=name)
            session.add(row)
        row.slaves, row.options = slaves, options
