"""Fixtures of the direct transport tests: a PKI, an engine loop, a gateway, a node server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.bus.direct.gateway import NodeGateway
from overt.node.identity import NodeIdentity
from overt.pki.certs import fingerprint
from overt.protocol import CommandEnvelope, Reply
from overt.protocol.commands import Empty, HostCapabilitiesCommand, VmStatus
from overt.protocol.host import HostCapabilities, VirtMode, VmState, VmStatusReport
from tests.integration.node.harness import LoopThread, Pki, RecordingSink, free_port

HOST_UUID = uuid.UUID("0b6c1a3e-3d1f-4f3a-9c55-6a7b8c9d0e1f")


def capabilities(host_uuid: uuid.UUID = HOST_UUID) -> HostCapabilities:
    return HostCapabilities(
        host_uuid=host_uuid, hostname="node-under-test", agent_version="0", protocol_version=1,
        cpu_model="qemu64", cpu_sockets=1, cpu_cores=2, cpu_threads=1, memory_mib=2048,
        libvirt_version="9.0.0", qemu_version="7.2.0", virt_mode=VirtMode.QEMU, kernel="6.1")


class NodeCommands:
    """The agent's command callback in these tests: answers from fixed facts, records calls."""

    def __init__(self, host_uuid: uuid.UUID = HOST_UUID) -> None:
        self.host_uuid = host_uuid
        self.seen: list[CommandEnvelope] = []
        self.delay_s = 0.0

    async def __call__(self, envelope: CommandEnvelope) -> Reply:
        import asyncio

        self.seen.append(envelope)
        await asyncio.sleep(self.delay_s)
        command = envelope.command
        if isinstance(command, HostCapabilitiesCommand):
            return Reply.success(envelope.request_id, capabilities(self.host_uuid))
        if isinstance(command, VmStatus):
            return Reply.success(envelope.request_id, VmStatusReport(
                vm_id=command.vm_id, name="vm", state=VmState.RUNNING))
        return Reply.success(envelope.request_id, Empty())


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def gateway(loop: LoopThread, pki: Pki, sink: RecordingSink) -> Iterator[NodeGateway]:
    gw = NodeGateway(pki.engine, host="127.0.0.1", port=0, sink=sink)
    loop.run(gw.start())
    yield gw
    loop.run(gw.stop())


def gateway_url(gw: NodeGateway) -> str:
    return f"https://127.0.0.1:{gw.port}"


@pytest.fixture
def commands() -> NodeCommands:
    return NodeCommands()


@pytest.fixture
def enrolled_node(loop: LoopThread, pki: Pki, gateway: NodeGateway, commands: NodeCommands,
                  tmp_path: Path) -> Iterator[DirectAgentTransport]:
    """A node's transport, enrolled with the test CA, serving `commands`."""
    data_dir = tmp_path / "node"
    identity = pki.enroll_node(data_dir, HOST_UUID, gateway_url(gateway))
    transport = DirectAgentTransport(identity, AgentServerSettings(
        listen_address="127.0.0.1", port=free_port()))
    loop.run(transport.start(commands))
    yield transport
    loop.run(transport.close())


@pytest.fixture
def unenrolled_node(loop: LoopThread, pki: Pki, commands: NodeCommands,
                   tmp_path: Path) -> Iterator[DirectAgentTransport]:
    """A node's transport before enrollment, told the engine CA's fingerprint."""
    identity = NodeIdentity(tmp_path / "fresh", ca_fingerprint=fingerprint(pki.ca.cert))
    transport = DirectAgentTransport(identity, AgentServerSettings(
        listen_address="127.0.0.1", port=free_port()))
    loop.run(transport.start(commands))
    yield transport
    loop.run(transport.close())
