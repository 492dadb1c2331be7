"""A host's bonds as the engine defines them: shared reads (the API, the services and the
network setup job read them)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Host, HostBond
from overt.engine.model.bond_sync import BondView, DefinedBond, bond_views, parse_reported
from overt.protocol.networks import BondWiring

# Linux bonding modes (oVirt's `mode=`) as Open vSwitch's bond modes, with LACP or not.
MODES = {"1": ("active-backup", "off"), "active-backup": ("active-backup", "off"),
         "4": ("balance-tcp", "active"), "802.3ad": ("balance-tcp", "active"),
         "lacp": ("balance-tcp", "active"), "balance-slb": ("balance-slb", "off"),
         "balance-tcp": ("balance-tcp", "active")}


async def list_bonds(session: AsyncSession, host_id: uuid.UUID) -> list[HostBond]:
    rows = await session.execute(select(HostBond).where(HostBond.host_id == host_id)
                                 .order_by(HostBond.name))
    return list(rows.scalars())


def bond_id(host_id: uuid.UUID, name: str) -> uuid.UUID:
    return uuid.uuid5(host_id, name)  # as `host_facts.host_nics` names NICs


def wiring(bond: HostBond) -> BondWiring:
    mode, lacp = MODES[str(bond.options.get("mode", "1"))]
    return BondWiring(name=bond.name, slaves=tuple(bond.slaves), mode=mode, lacp=lacp)


def defined(bond: HostBond) -> DefinedBond:
    mode, _lacp = MODES[str(bond.options.get("mode", "1"))]
    return DefinedBond(name=bond.name, mode=mode, slaves=tuple(sorted(bond.slaves)),
                       options={str(k): str(v) for k, v in bond.options.items()})


async def host_bond_views(session: AsyncSession, host: Host) -> list[BondView]:
    """The host's bonds, defined or reported, with their differences."""
    rows = await list_bonds(session, host.id)
    return bond_views([defined(b) for b in rows], parse_reported(host.reported_bonds))
