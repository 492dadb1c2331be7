"""Provisioning profiles: which node image a machine booting from the network gets (by
its MAC, or the default profile), with what kernel arguments, and the cluster it joins.

Every check runs before anything is written; each change is audited."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import Cluster, ProvisioningProfile, User
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.provisioning.boot import kernel_args_problem, normalize_mac
from overt.engine.provisioning.images import NodeImages
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ProfileInput:
    """A profile as asked; None: not given (on update: unchanged). `mac` "" on update:
    make it the default profile."""

    name: str | None = None
    mac: str | None = None
    image: str | None = None
    kernel_args: str | None = None
    cluster: Ref | None = None
    clear_cluster: bool = False  # on update: no cluster of its own (new nodes join Default)


async def profiles(session: AsyncSession) -> list[ProvisioningProfile]:
    return list((await session.execute(select(ProvisioningProfile).order_by(
        ProvisioningProfile.name))).scalars())


async def get_profile(session: AsyncSession, profile_id: uuid.UUID) -> ProvisioningProfile:
    return await lookup.get(session, ProvisioningProfile, profile_id)


async def for_macs(session: AsyncSession, macs: list[str]) -> ProvisioningProfile | None:
    """The profile of a machine with these MACs (its boot MAC first): its own, else the
    default one."""
    rows = await profiles(session)
    wanted = [m for m in (normalize_mac(mac) for mac in macs) if m]
    for mac in wanted:
        for row in rows:
            if row.mac == mac:
                return row
    return next((row for row in rows if row.mac is None), None)


def _mac(text: str) -> str | None:
    if text == "":
        return None
    mac = normalize_mac(text)
    if mac is None:
        raise InvalidInput(f"provisioning_profile.mac {text[:40]!r} is not a MAC address "
                           "(aa:bb:cc:dd:ee:ff)")
    return mac


def _image(images: NodeImages, name: str) -> str:
    if images.get(name) is None:
        known = ", ".join(images.names()) or "none: build one with `overt node-image build`"
        raise InvalidInput(f"provisioning_profile.image {name[:64]!r} is not a node image "
                           f"this engine serves (it has: {known})")
    return name


def _kernel_args(text: str) -> str:
    problem = kernel_args_problem(text)
    if problem:
        raise InvalidInput(f"provisioning_profile.kernel_args: {problem}")
    return text.strip()


async def _unique(session: AsyncSession, row_id: uuid.UUID | None, *, name: str,
                  mac: str | None) -> None:
    for other in await profiles(session):
        if other.id == row_id:
            continue
        if other.name == name:
            raise Conflict(f"a provisioning profile named {name} already exists")
        if other.mac == mac:
            raise Conflict(f"provisioning profile {other.name} is already the "
                           + (f"profile of MAC {mac}" if mac else "default profile"))


async def add_profile(session: AsyncSession, images: NodeImages, data: ProfileInput,
                      by: User) -> ProvisioningProfile:
    if data.name is None or not _NAME.match(data.name):
        raise InvalidInput("provisioning_profile.name is required: 1-64 letters, digits, "
                           "'.', '_' or '-'")
    if data.image is None:
        raise InvalidInput("provisioning_profile.image is required (a node image's name)")
    mac = _mac(data.mac or "")
    image = _image(images, data.image)
    args = _kernel_args(data.kernel_args or "")
    cluster = await lookup.resolve(session, Cluster, data.cluster, "provisioning_profile."
                                   "cluster") if data.cluster is not None else None
    await _unique(session, None, name=data.name, mac=mac)
    row = ProvisioningProfile(id=uuid.uuid4(), name=data.name, mac=mac, image=image,
                              kernel_args=args, cluster_id=cluster.id if cluster else None)
    session.add(row)
    audit.record(session, f"Provisioning profile {row.name} ({f'MAC {mac}' if mac else 'default'}"
                 f", image {image}) was added by {by.user_name}",
                 code=audit.PROVISIONING_PROFILE_ADDED, user_id=by.id,
                 cluster_id=row.cluster_id)
    return row


async def update_profile(session: AsyncSession, images: NodeImages, profile_id: uuid.UUID,
                         data: ProfileInput, by: User) -> ProvisioningProfile:
    row = await lookup.get(session, ProvisioningProfile, profile_id, for_update=True)
    name = row.name if data.name is None else data.name
    if not _NAME.match(name):
        raise InvalidInput("provisioning_profile.name: 1-64 letters, digits, '.', '_' or '-'")
    mac = row.mac if data.mac is None else _mac(data.mac)
    image = row.image if data.image is None else _image(images, data.image)
    args = row.kernel_args if data.kernel_args is None else _kernel_args(data.kernel_args)
    cluster_id = row.cluster_id if data.cluster is None else (await lookup.resolve(
        session, Cluster, data.cluster, "provisioning_profile.cluster")).id
    if data.clear_cluster and data.cluster is None:
        cluster_id = None
    await _unique(session, row.id, name=name, mac=mac)
    row.name, row.mac, row.image, row.kernel_args, row.cluster_id = (name, mac, image, args,
                                                                     cluster_id)
    audit.record(session, f"Provisioning profile {name} was updated by {by.user_name}",
                 code=audit.PROVISIONING_PROFILE_UPDATED, user_id=by.id,
                 cluster_id=cluster_id)
    return row


async def remove_profile(session: AsyncSession, profile_id: uuid.UUID, by: User) -> None:
    row = await lookup.get(session, ProvisioningProfile, profile_id, for_update=True)
    await session.delete(row)
    audit.record(session, f"Provisioning profile {row.name} was removed by {by.user_name}",
                 code=audit.PROVISIONING_PROFILE_REMOVED, user_id=by.id)
