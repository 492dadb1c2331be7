"""`NodeClient.call` returns the result model each command declares, read from a real
agent (simulated hypervisor) over the loopback transport."""

from __future__ import annotations

import typing

import pytest
from pydantic import BaseModel
from sqlalchemy import select

from overt.engine.db.tables import Host
from overt.engine.nodes import NodeCommandFailed
from overt.protocol.commands import (
    Command,
    Empty,
    HostCapabilitiesCommand,
    HostStateCommand,
    VmStatus,
    VolumeInfoCommand,
)
from overt.protocol.host import HostCapabilities, HostState, VmStatusReport
from tests.support.loopback import LoopbackEngine


def test_every_command_declares_a_result_model() -> None:
    commands = typing.get_args(typing.get_args(Command)[0])
    assert len(commands) >= 16
    for command in commands:
        assert issubclass(command.result, BaseModel), command.__name__
    assert VmStatus.result is VmStatusReport and HostStateCommand.result is HostState


async def test_a_call_returns_the_commands_declared_result(engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1", memory_mib=8192)
    async with engine.session() as session:
        host = (await session.execute(select(Host).where(Host.id == node.host_id))).scalar_one()

    caps = await engine.nodes.call(host, HostCapabilitiesCommand())
    assert isinstance(caps, HostCapabilities)
    assert caps.host_uuid == node.host_uuid and caps.memory_mib == 8192
    state = await engine.nodes.call(host, HostStateCommand())
    assert isinstance(state, HostState) and state.vms == ()


async def test_naming_another_result_model_is_refused_before_sending(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1")
    async with engine.session() as session:
        host = (await session.execute(select(Host).where(Host.id == node.host_id))).scalar_one()
    with pytest.raises(TypeError, match="HostCapabilitiesCommand returns HostCapabilities"):
        await engine.nodes.call(host, HostCapabilitiesCommand(), Empty)
    with pytest.raises(NodeCommandFailed, match="h1"):  # the node's own error, by host name
        await engine.nodes.call(host, VolumeInfoCommand(path="/nonexistent/disk.qcow2"))
