"""Event subscriptions (oVirt's `users/{id}/eventsubscriptions`) and the SNMP managers
the notifier sends their traps to.

A subscription's `address` names a manager, or is empty for every manager. Secrets of a
manager (community, passphrases) are sealed before they reach the database and are never
shown, logged or audited. Every check runs before anything is written.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import EventSubscription, SnmpManager, User
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.notifier.events import check_event
from overt.engine.queries import lookup
from overt.engine.secrets import Secret, SecretBox
from overt.snmp.targets import check_host_port
from overt.snmp.trap import check_engine_id, check_secret

METHODS = ("snmp", "smtp")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,31}$")
MIN_PASSPHRASE = 8  # net-snmp refuses shorter USM passphrases


# -- subscriptions -----------------------------------------------------------------

async def subscriptions(session: AsyncSession, user_id: uuid.UUID) -> list[EventSubscription]:
    await lookup.get(session, User, user_id)
    return list((await session.execute(
        select(EventSubscription).where(EventSubscription.user_id == user_id)
        .order_by(EventSubscription.event))).scalars())


async def subscription(session: AsyncSession, user_id: uuid.UUID,
                       event: str) -> EventSubscription:
    await lookup.get(session, User, user_id)
    found = await session.get(EventSubscription, (user_id, event))
    if found is None:
        raise NotFound(f"the user has no subscription to event {event}")
    return found


async def subscribe(session: AsyncSession, user_id: uuid.UUID, *, event: str | None,
                    method: str | None, address: str | None, by: User) -> EventSubscription:
    target = await lookup.get(session, User, user_id)
    if not event:
        raise InvalidInput("event_subscription.event is required")
    try:
        check_event(event)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    method = method or "snmp"
    if method == "smtp":
        raise InvalidInput("notification_method smtp is not available: this engine sends SNMP "
                           "traps only (use notification_method snmp)")
    if method not in METHODS:
        raise InvalidInput(f"notification_method {method!r} is not one of snmp, smtp")
    address = (address or "").strip()
    if address and (await session.execute(select(SnmpManager.id).where(
            SnmpManager.name == address))).first() is None:
        raise InvalidInput(f"event_subscription.address {address!r} names no SNMP manager; "
                           "give a manager's name, or no address for every manager")
    if await session.get(EventSubscription, (user_id, event)) is not None:
        raise Conflict(f"user {target.user_name} is already subscribed to event {event}")
    row = EventSubscription(user_id=user_id, event=event, notification_method=method,
                            address=address)
    session.add(row)
    await session.flush()
    audit.record(session, f"User {target.user_name} was subscribed to event {event} "
                 f"({method}{' to ' + address if address else ''}) by {by.user_name}",
                 user_id=by.id)
    return row


async def unsubscribe(session: AsyncSession, user_id: uuid.UUID, event: str, by: User) -> None:
    row = await subscription(session, user_id, event)
    target = await lookup.get(session, User, user_id)
    await session.delete(row)
    audit.record(session, f"User {target.user_name} was unsubscribed from event {event} by "
                 f"{by.user_name}", user_id=by.id)


# -- SNMP managers -------------------------------------------------------------------

@dataclass
class ManagerInput:
    name: str | None = None
    address: str | None = None
    port: int | None = None
    version: str | None = None  # v2c | v3
    community: Secret | None = field(default=None, repr=False)
    user: str | None = None
    auth_passphrase: Secret | None = field(default=None, repr=False)
    priv_passphrase: Secret | None = field(default=None, repr=False)
    engine_id: str | None = None


async def managers(session: AsyncSession) -> list[SnmpManager]:
    return list((await session.execute(select(SnmpManager).order_by(SnmpManager.name)
                                       )).scalars())


async def get_manager(session: AsyncSession, manager_id: uuid.UUID) -> SnmpManager:
    return await lookup.get(session, SnmpManager, manager_id)


def _checked(data: ManagerInput) -> tuple[str, str, int, str]:
    if not data.name or not _NAME.match(data.name):
        raise InvalidInput("snmp_manager.name is required: 1-64 letters, digits, '.', '_' or "
                           "'-', starting with a letter or digit")
    if not data.address:
        raise InvalidInput("snmp_manager.address is required (an IP address or DNS name)")
    port = 162 if data.port is None else data.port
    try:
        check_host_port(data.address, port, f"{data.address}:{port}")
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    version = data.version or ("v3" if data.user else "v2c")
    if version not in ("v2c", "v3"):
        raise InvalidInput(f"snmp_manager.version {version!r} is not v2c or v3")
    try:
        if version == "v2c":
            check_secret("community", data.community.reveal() if data.community else "")
        else:
            if not data.user or not _USER.match(data.user):
                raise InvalidInput("snmp_manager.user is required for v3: 1-32 letters, "
                                   "digits, '.', '_', '@' or '-'")
            for what, secret in (("auth_passphrase", data.auth_passphrase),
                                 ("priv_passphrase", data.priv_passphrase)):
                check_secret(f"snmp_manager.{what}", secret.reveal() if secret else "",
                             min_length=MIN_PASSPHRASE)
            if data.engine_id:
                check_engine_id(data.engine_id)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    return data.name, data.address, port, version


async def add_manager(session: AsyncSession, box: SecretBox, data: ManagerInput,
                      by: User) -> SnmpManager:
    name, address, port, version = _checked(data)
    if await lookup.name_taken(session, SnmpManager, name):
        raise Conflict(f"an SNMP manager named {name} already exists")
    row = SnmpManager(name=name, host=address, port=port, version=version)
    if version == "v2c":
        assert data.community is not None
        row.community_sealed = box.seal(data.community)
    else:
        assert data.auth_passphrase is not None and data.priv_passphrase is not None
        row.user_name = data.user or ""
        row.auth_sealed = box.seal(data.auth_passphrase)
        row.priv_sealed = box.seal(data.priv_passphrase)
        row.engine_id = check_engine_id(data.engine_id) if data.engine_id \
            else new_engine_id()
    session.add(row)
    await session.flush()
    audit.record(session, f"SNMP manager {name} ({version}, {address}:{port}) was added by "
                 f"{by.user_name}", user_id=by.id)
    return row


async def update_manager(session: AsyncSession, box: SecretBox, manager_id: uuid.UUID,
                         data: ManagerInput, by: User) -> SnmpManager:
    """Change a manager: what is not given (None) stays, its secrets too (a new one
    replaces the old); a change of version needs the other version's secrets. A new name
    is followed by the subscriptions that named the old one."""
    row = await lookup.get(session, SnmpManager, manager_id, for_update=True)
    version = data.version or row.version
    same = version == row.version

    def kept(given: Secret | None, sealed: str) -> Secret | None:
        if given is not None or not same or not sealed:
            return given
        try:
            return box.open(sealed)
        except ValueError:  # sealed under another key: it must be given again
            return None

    merged = ManagerInput(
        name=row.name if data.name is None else data.name,
        address=row.host if data.address is None else data.address,
        port=row.port if data.port is None else data.port, version=version,
        community=kept(data.community, row.community_sealed),
        user=(row.user_name or None) if data.user is None else data.user,
        auth_passphrase=kept(data.auth_passphrase, row.auth_sealed),
        priv_passphrase=kept(data.priv_passphrase, row.priv_sealed),
        engine_id=(row.engine_id or None) if data.engine_id is None else data.engine_id)
    name, address, port, version = _checked(merged)
    if await lookup.name_taken(session, SnmpManager, name, other_than=row.id):
        raise Conflict(f"an SNMP manager named {name} already exists")
    old_name = row.name
    row.name, row.host, row.port, row.version = name, address, port, version
    if version == "v2c":
        assert merged.community is not None
        row.community_sealed = box.seal(merged.community)
        row.user_name = row.auth_sealed = row.priv_sealed = row.engine_id = ""
    else:
        assert merged.auth_passphrase is not None and merged.priv_passphrase is not None
        row.community_sealed = ""
        row.user_name = merged.user or ""
        row.auth_sealed = box.seal(merged.auth_passphrase)
        row.priv_sealed = box.seal(merged.priv_passphrase)
        row.engine_id = check_engine_id(merged.engine_id) if merged.engine_id \
            else new_engine_id()
    if name != old_name:
        for sub in (await session.execute(select(EventSubscription).where(
                EventSubscription.address == old_name))).scalars():
            sub.address = name
    await session.flush()
    audit.record(session, f"SNMP manager {name} ({version}, {address}:{port}) was updated by "
                 f"{by.user_name}", user_id=by.id)
    return row


def new_engine_id() -> str:
    """A local SNMP engine id (RFC 3411 format 5, octets; enterprise 8072 is net-snmp's)."""
    return "0x80001f8804" + uuid.uuid4().hex[:16]


async def remove_manager(session: AsyncSession, manager_id: uuid.UUID, by: User) -> None:
    row = await get_manager(session, manager_id)
    users = list((await session.execute(
        select(EventSubscription.event).where(EventSubscription.address == row.name))).scalars())
    if users:
        raise Conflict(f"SNMP manager {row.name} is named by subscriptions to "
                       f"{', '.join(sorted(set(users)))}: remove those first")
    await session.delete(row)
    audit.record(session, f"SNMP manager {row.name} was removed by {by.user_name}",
                 user_id=by.id)
