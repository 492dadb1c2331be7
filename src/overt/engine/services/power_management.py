"""Power management of hosts (oVirt's `power_management` and `fenceagents`), and fencing.

Agent passwords are sealed (`engine.secrets`) before they reach the database and are never
returned, logged nor put in an error or an audit event."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit, fencing
from overt.engine.db.tables import FenceAgent, Host, Job, User
from overt.engine.jobs.kinds import FenceHost
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.model.host_actions import HostAction, check_host_action
from overt.engine.queries import lookup
from overt.engine.secrets import Secret, SecretBox
from overt.engine.services.jobs import JobSubmitter

FENCE_TYPES = tuple(fencing.ACTIONS)


async def set_enabled(session: AsyncSession, host_id: uuid.UUID, enabled: bool, user: User) -> Host:
    return await _set_flag(session, host_id, "pm_enabled", "Power management", enabled, user)


async def set_kdump_detection(session: AsyncSession, host_id: uuid.UUID, enabled: bool,
                              user: User) -> Host:
    """oVirt's `power_management.kdump_detection`: whether a recovery waits for the host's
    fence_kdump messages before fencing it."""
    return await _set_flag(session, host_id, "kdump_detection", "Kdump detection", enabled,
                           user)


async def _set_flag(session: AsyncSession, host_id: uuid.UUID, flag: str, what: str,
                    enabled: bool, user: User) -> Host:
    """Turn one of the host's power management switches on or off, with the event."""
    host = await lookup.get(session, Host, host_id, for_update=True)
    if getattr(host, flag) != enabled:
        setattr(host, flag, enabled)
        audit.record(session, f"{what} of host {host.name} was "
                     f"{'enabled' if enabled else 'disabled'} by {user.user_name}",
                     code=audit.HOST_POWER_MANAGEMENT_UPDATED, host_id=host.id, user_id=user.id)
    return host


def _check_type(agent_type: str) -> None:
    if agent_type not in fencing.AGENT_PROGRAMS:
        raise InvalidInput(f"agent.type {agent_type!r} is not supported; supported: "
                           f"{', '.join(sorted(fencing.AGENT_PROGRAMS))}")


def _check_options(options: dict[str, str]) -> None:
    refused = sorted(set(options) - fencing.ALLOWED_OPTIONS)
    if refused:
        raise InvalidInput(f"agent.options {', '.join(refused)} are not allowed; allowed: "
                           f"{', '.join(sorted(fencing.ALLOWED_OPTIONS))}")
    for name, value in options.items():
        if "\n" in value or "\r" in value:
            raise InvalidInput(f"agent.options {name} must be one line")


def _check_line(name: str, value: str) -> None:
    """Values go to the agent one per line: a newline would smuggle in another option."""
    if "\n" in value or "\r" in value:
        raise InvalidInput(f"agent.{name} must be one line")


async def add_agent(session: AsyncSession, box: SecretBox, host_id: uuid.UUID, user: User, *,
                    agent_type: str, address: str, port: int | None, username: str,
                    password: Secret, options: dict[str, str], order: int | None) -> FenceAgent:
    host = await lookup.get(session, Host, host_id, for_update=True)
    _check_type(agent_type)
    _check_options(options)
    for name, value in (("address", address), ("username", username),
                        ("password", password.reveal())):
        _check_line(name, value)
    if not address:
        raise InvalidInput("agent.address is required")
    if order is None:
        order = int((await session.execute(select(func.count()).select_from(FenceAgent).where(
            FenceAgent.host_id == host_id))).scalar_one()) + 1
    agent = FenceAgent(id=uuid.uuid4(), host_id=host.id, order=order, type=agent_type,
                       address=address, port=port, username=username,
                       password_sealed=box.seal(password), options=dict(options))
    session.add(agent)
    audit.record(session, f"A {agent_type} power management agent at {address} was added to "
                 f"host {host.name} by {user.user_name}", code=audit.HOST_POWER_MANAGEMENT_UPDATED,
                 host_id=host.id, user_id=user.id)
    return agent


async def get_agent(session: AsyncSession, host_id: uuid.UUID, agent_id: uuid.UUID,
                    *, for_update: bool = False) -> FenceAgent:
    stmt = select(FenceAgent).where(FenceAgent.id == agent_id, FenceAgent.host_id == host_id)
    agent = (await session.execute(stmt.with_for_update() if for_update else stmt)).scalar_one_or_none()
    if agent is None:
        raise NotFound(f"Host {host_id} has no fence agent {agent_id}")
    return agent


async def update_agent(session: AsyncSession, box: SecretBox, host_id: uuid.UUID,
                       agent_id: uuid.UUID, user: User, *, agent_type: str | None,
                       address: str | None, port: int | None, username: str | None,
                       password: Secret | None, options: dict[str, str] | None,
                       order: int | None) -> FenceAgent:
    host = await lookup.get(session, Host, host_id, for_update=True)
    agent = await get_agent(session, host_id, agent_id, for_update=True)
    if agent_type is not None:
        _check_type(agent_type)
    if options is not None:
        _check_options(options)
    for name, value in (("address", address), ("username", username),
                        ("password", password.reveal() if password else None)):
        if value is not None:
            _check_line(name, value)
    if address == "":
        raise InvalidInput("agent.address must not be empty")
    agent.type = agent_type or agent.type
    agent.address = address or agent.address
    agent.port = port if port is not None else agent.port
    agent.username = username if username is not None else agent.username
    agent.order = order if order is not None else agent.order
    if options is not None:
        agent.options = dict(options)
    if password is not None:
        agent.password_sealed = box.seal(password)
    audit.record(session, f"The power management agent at {agent.address} of host {host.name} "
                 f"was updated by {user.user_name}", code=audit.HOST_POWER_MANAGEMENT_UPDATED,
                 host_id=host.id, user_id=user.id)
    return agent


async def remove_agent(session: AsyncSession, host_id: uuid.UUID, agent_id: uuid.UUID,
                       user: User) -> None:
    host = await lookup.get(session, Host, host_id, for_update=True)
    agent = await get_agent(session, host_id, agent_id, for_update=True)
    audit.record(session, f"The power management agent at {agent.address} of host {host.name} "
                 f"was removed by {user.user_name}", code=audit.HOST_POWER_MANAGEMENT_UPDATED,
                 host_id=host.id, user_id=user.id)
    await session.delete(agent)


async def _agent_count(session: AsyncSession, host: Host) -> int:
    return int((await session.execute(select(func.count()).select_from(FenceAgent).where(
        FenceAgent.host_id == host.id))).scalar_one())


async def configured(session: AsyncSession, host: Host) -> bool:
    """Whether `host` can be fenced: power management enabled with at least one agent."""
    return host.pm_enabled and await _agent_count(session, host) > 0


async def fence(session: AsyncSession, jobs: JobSubmitter, host_id: uuid.UUID, fence_type: str,
                user: User, *, correlation_id: str | None = None) -> Job:
    """Submit the fence job; refused at once when the host has no power management."""
    if fence_type not in FENCE_TYPES:
        raise InvalidInput(f"fence_type must be one of {', '.join(FENCE_TYPES)}, "
                           f"not {fence_type!r}")
    host = await lookup.get(session, Host, host_id, for_update=True)
    check_host_action(HostAction.FENCE, host.status, host_name=host.name)
    agents = await _agent_count(session, host)
    if not host.pm_enabled or not agents:
        why = "it has no fence agent" if not agents else "power management is disabled"
        raise Conflict(f"Cannot {fence_type} host {host.name}: power management is not "
                       f"configured ({why}).")
    # No host lock: fencing is for hosts whose other jobs (an install, a refresh) are stuck.
    return await jobs.submit(session, FenceHost(host_id=host.id, fence_type=fence_type),
                             description=f"Power management {fence_type} of host {host.name}",
                             owner_id=user.id, correlation_id=correlation_id)
