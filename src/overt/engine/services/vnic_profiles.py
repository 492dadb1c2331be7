"""vNIC profiles: how a VM NIC plugs into a network (port mirroring, network filter,
custom properties). A network's default profile is made with it (see `networks`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Network, User, VmNic, VnicProfile
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.names import check_name
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref

# The filters libvirt ships that oVirt offers (`networkfilters`); ids are stable per name.
NETWORK_FILTERS = ("vdsm-no-mac-spoofing", "allow-arp", "allow-dhcp", "allow-dhcp-server",
                   "allow-incoming-ipv4", "allow-ipv4", "clean-traffic", "no-arp-spoofing",
                   "no-ip-spoofing", "no-mac-spoofing")
_FILTER_NS = uuid.UUID("7f1c9a52-2f43-4b7e-9d0e-6a1f3c0b9e11")
DEFAULT_FILTER = "vdsm-no-mac-spoofing"
_MAX_PROPERTIES = 32


def filter_id(name: str) -> uuid.UUID:
    return uuid.uuid5(_FILTER_NS, name)


def filter_by_id(filter_ref: Ref) -> str:
    if filter_ref.name is not None and filter_ref.id is None and filter_ref.name in NETWORK_FILTERS:
        return filter_ref.name
    for name in NETWORK_FILTERS:
        if filter_id(name) == filter_ref.id:
            return name
    raise InvalidInput(f"vnic_profile.network_filter {filter_ref.id or filter_ref.name} is not "
                       f"one of the network filters ({', '.join(NETWORK_FILTERS)})")


@dataclass
class ProfileInput:
    """What a client may set on a vNIC profile; None leaves a field as it is."""

    name: str | None = None
    description: str | None = None
    network: Ref | None = None
    port_mirroring: bool | None = None
    network_filter: Ref | None = None
    clear_filter: bool = False  # an explicit empty <network_filter/>
    custom_properties: dict[str, str] | None = field(default=None)


def _check_properties(props: dict[str, str] | None) -> dict[str, str] | None:
    if props is None:
        return None
    if len(props) > _MAX_PROPERTIES:
        raise InvalidInput(f"a vNIC profile has at most {_MAX_PROPERTIES} custom properties")
    for key in props:
        check_name("vnic_profile.custom_properties.custom_property", key)
    return props


async def _name_taken(session: AsyncSession, network_id: uuid.UUID, name: str,
                      other_than: uuid.UUID | None = None) -> bool:
    stmt = select(VnicProfile.id).where(VnicProfile.network_id == network_id,
                                        VnicProfile.name == name)
    if other_than is not None:
        stmt = stmt.where(VnicProfile.id != other_than)
    return (await session.execute(stmt)).first() is not None


async def add_profile(session: AsyncSession, data: ProfileInput, user: User,
                      *, network: Network | None = None) -> VnicProfile:
    if network is None:
        network = await lookup.resolve(session, Network, data.network, "vnic_profile.network")
    name = check_name("vnic_profile", data.name or "")
    if await _name_taken(session, network.id, name):
        raise Conflict(f"Cannot add VM network interface profile. The name {name!r} is already "
                       f"used by network {network.name}.")
    profile = VnicProfile(
        id=uuid.uuid4(), name=name, description=data.description or "", network_id=network.id,
        port_mirroring=bool(data.port_mirroring),
        network_filter=None if data.clear_filter or data.network_filter is None
        else filter_by_id(data.network_filter),
        custom_properties=_check_properties(data.custom_properties) or {})
    session.add(profile)
    audit.record(session, f"VM network interface profile {name} was added to network "
                 f"{network.name} by {user.user_name}", code=audit.NETWORK_UPDATED,
                 data_center_id=network.data_center_id, user_id=user.id)
    return profile


async def nics_on(session: AsyncSession, profile_id: uuid.UUID) -> int:
    return await lookup.count(session, VmNic, VmNic.vnic_profile_id == profile_id)


async def update_profile(session: AsyncSession, profile_id: uuid.UUID, data: ProfileInput,
                         user: User) -> VnicProfile:
    profile = await lookup.get(session, VnicProfile, profile_id, for_update=True)
    if data.network is not None:
        network = await lookup.resolve(session, Network, data.network, "vnic_profile.network")
        if network.id != profile.network_id:
            raise Conflict(f"Cannot edit VM network interface profile {profile.name}: a profile "
                           "cannot move to another network.")
    if data.name is not None:
        name = check_name("vnic_profile", data.name)
        if await _name_taken(session, profile.network_id, name, other_than=profile.id):
            raise Conflict(f"Cannot edit VM network interface profile. The name {name!r} is "
                           "already in use on its network.")
        profile.name = name
    props = _check_properties(data.custom_properties)
    wiring = (data.port_mirroring is not None and data.port_mirroring != profile.port_mirroring)
    if wiring and await nics_on(session, profile.id):
        raise Conflict(f"Cannot change port mirroring of profile {profile.name}: VM NICs use it.")
    if data.port_mirroring is not None:
        profile.port_mirroring = data.port_mirroring
    if data.clear_filter:
        profile.network_filter = None
    elif data.network_filter is not None:
        profile.network_filter = filter_by_id(data.network_filter)
    if props is not None:
        profile.custom_properties = props
    if data.description is not None:
        profile.description = data.description
    audit.record(session, f"VM network interface profile {profile.name} was updated by "
                 f"{user.user_name}", code=audit.NETWORK_UPDATED, user_id=user.id)
    return profile


async def remove_profile(session: AsyncSession, profile_id: uuid.UUID, user: User) -> None:
    profile = await lookup.get(session, VnicProfile, profile_id, for_update=True)
    used = await nics_on(session, profile.id)
    if used:
        raise Conflict(f"Cannot remove VM network interface profile {profile.name}: {used} VM "
                       "NIC(s) use it.")
    audit.record(session, f"VM network interface profile {profile.name} was removed by "
                 f"{user.user_name}", code=audit.NETWORK_UPDATED, user_id=user.id)
    await session.delete(profile)
