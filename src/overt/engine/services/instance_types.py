"""oVirt's instance types: named hardware (memory, CPU topology) a VM created with one takes.

A VM keeps a reference to its instance type; changing or removing the type later does not
change VMs already made with it (their values were copied at creation).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import InstanceType, User
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.queries import lookup

MIB = 1 << 20
MAX_MEMORY_MIB = 4 * 1024 * 1024
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class InstanceTypeInput:
    name: str | None = None
    description: str | None = None
    memory_bytes: int | None = None
    sockets: int | None = None
    cores: int | None = None
    threads: int | None = None


def _memory_mib(memory_bytes: int) -> int:
    if memory_bytes <= 0 or memory_bytes % MIB:
        raise InvalidInput("instance_type.memory must be a positive whole number of MiB in "
                           f"bytes, not {memory_bytes}")
    mib = memory_bytes // MIB
    if not 16 <= mib <= MAX_MEMORY_MIB:
        raise InvalidInput(f"instance_type.memory must be between 16 MiB and {MAX_MEMORY_MIB} "
                           "MiB")
    return mib


def _topology(value: int | None, what: str, highest: int) -> int | None:
    if value is not None and not 1 <= value <= highest:
        raise InvalidInput(f"instance_type.cpu.topology.{what} must be between 1 and "
                           f"{highest}, not {value}")
    return value


async def _apply(session: AsyncSession, kind: InstanceType, data: InstanceTypeInput) -> None:
    if data.name is not None:
        if not _NAME_RE.match(data.name):
            raise InvalidInput(f"instance_type.name {data.name!r} is not valid: 1-64 letters, "
                               "digits, '.', '_' or '-'")
        if await lookup.name_taken(session, InstanceType, data.name, other_than=kind.id):
            raise Conflict(f"An instance type named {data.name} already exists.")
        kind.name = data.name
    if data.description is not None:
        kind.description = data.description
    if data.memory_bytes is not None:
        kind.memory_mib = _memory_mib(data.memory_bytes)
    kind.cpu_sockets = _topology(data.sockets, "sockets", 64) or kind.cpu_sockets
    kind.cpu_cores = _topology(data.cores, "cores", 64) or kind.cpu_cores
    kind.cpu_threads = _topology(data.threads, "threads", 8) or kind.cpu_threads


async def add_instance_type(session: AsyncSession, data: InstanceTypeInput,
                            user: User | None) -> InstanceType:
    if not data.name:
        raise InvalidInput("instance_type.name is required")
    kind = InstanceType(id=uuid.uuid4(), name="", description="", memory_mib=1024,
                        cpu_sockets=1, cpu_cores=1, cpu_threads=1)
    await _apply(session, kind, data)
    session.add(kind)
    await session.flush()
    _record(session, f"Instance type {kind.name} was added", audit.INSTANCE_TYPE_ADDED, user)
    return kind


async def update_instance_type(session: AsyncSession, kind_id: uuid.UUID,
                               data: InstanceTypeInput, user: User | None) -> InstanceType:
    kind = await lookup.get(session, InstanceType, kind_id)
    await _apply(session, kind, data)
    await session.flush()
    _record(session, f"Instance type {kind.name} was updated", audit.INSTANCE_TYPE_UPDATED,
            user)
    return kind


async def remove_instance_type(session: AsyncSession, kind_id: uuid.UUID,
                               user: User | None) -> None:
    kind = await lookup.get(session, InstanceType, kind_id)
    await session.delete(kind)
    _record(session, f"Instance type {kind.name} was removed", audit.INSTANCE_TYPE_REMOVED,
            user)


def _record(session: AsyncSession, description: str, code: int, user: User | None) -> None:
    by = f" by {user.user_name}" if user is not None else ""
    audit.record(session, description + by, code=code, user_id=user.id if user else None)
