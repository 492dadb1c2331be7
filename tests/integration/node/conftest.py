"""A real node for the VM tests: `overt node` as a process on the root libvirtd, enrolled
with a test CA, and the engine's side (direct transport + gateway) in this process."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import libvirt
import pytest
from pydantic import BaseModel

from overt.bus.base import NodeAddress
from overt.bus.direct.engine import DirectEngineTransport
from overt.bus.direct.gateway import NodeGateway
from overt.lab.guest import GuestImage
from overt.node.hypervisor.libvirt_host import parse_capabilities
from overt.protocol import CommandEnvelope, Reply
from overt.protocol.commands import Command, VolumeCreate
from overt.protocol.events import VmLifecycle
from overt.protocol.vm import DiskSpec, FileSource, GraphicsSpec, VmSpec
from tests.integration.node.harness import AgentProcess, LoopThread, Pki, RecordingSink, free_port

VM_PREFIX = "ovnd-"
M = TypeVar("M", bound=BaseModel)


@dataclass
class Node:
    """The node under test as the engine sees it."""

    loop: LoopThread
    engine: DirectEngineTransport
    address: NodeAddress
    sink: RecordingSink
    agent: AgentProcess
    storage_dir: Path
    base_image: Path

    def call(self, command: Command, key: str | None = None, timeout: float = 60) -> Reply:
        envelope = CommandEnvelope(idempotency_key=key, timeout_s=timeout, command=command)
        return self.loop.run(self.engine.call(self.address, envelope), timeout + 10)

    def ok(self, command: Command, model: type[M], key: str | None = None) -> M:
        reply = self.call(command, key)
        assert reply.ok, reply.error
        return model.model_validate(reply.result)

    def lifecycle(self, vm_id: uuid.UUID) -> list[VmLifecycle]:
        return [e.event for e in self.sink.events
                if isinstance(e.event, VmLifecycle) and e.event.vm.vm_id == vm_id]

    def new_vm(self, memory_mib: int = 256) -> VmSpec:
        """A test-guest VM on its own overlay disk (created through the agent)."""
        name = f"{VM_PREFIX}{uuid.uuid4().hex[:8]}"
        disk = self.storage_dir / f"{name}.qcow2"
        reply = self.call(VolumeCreate(path=str(disk), size_bytes=64 << 20,
                                       backing=str(self.base_image)))
        assert reply.ok, reply.error
        return VmSpec(id=uuid.uuid4(), name=name, memory_mib=memory_mib,
                      disks=(DiskSpec(id=uuid.uuid4(), source=FileSource(path=str(disk)),
                                      bootable=True),),
                      graphics=GraphicsSpec(password="t0psecr"),
                      serial_log=str(self.storage_dir / f"{name}.serial.log"))


def _remove_test_domains(conn: libvirt.virConnect, names: set[str]) -> None:
    for dom in conn.listAllDomains(0):
        if dom.name() in names:
            with contextlib.suppress(libvirt.libvirtError):
                if dom.isActive():
                    dom.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                dom.undefine()


@pytest.fixture(scope="session")
def node(local_libvirt: libvirt.virConnect, guest_image: GuestImage) -> Iterator[Node]:
    loop = LoopThread()
    work = Path(tempfile.mkdtemp(prefix="ovnd-node-"))
    storage = Path(tempfile.mkdtemp(prefix="ovnd-images-", dir="/var/tmp"))
    storage.chmod(0o755)
    base = storage / "base.qcow2"
    shutil.copyfile(guest_image.qcow2_disk, base)
    pki = Pki(work / "pki")
    sink = RecordingSink()
    gateway = NodeGateway(pki.engine, host="127.0.0.1", port=0, sink=sink)
    engine = DirectEngineTransport(pki.engine, gateway=gateway)
    loop.run(engine.start(sink))
    host_uuid = parse_capabilities(local_libvirt.getCapabilities()).host_uuid
    pki.enroll_node(work / "data", host_uuid, f"https://127.0.0.1:{gateway.port}")
    agent = AgentProcess(work / "data", storage, free_port(), work / "agent.log")
    agent.start()
    created_before = {d.name() for d in local_libvirt.listAllDomains(0)}
    try:
        yield Node(loop, engine, NodeAddress(host_uuid, agent.url), sink, agent, storage, base)
    finally:
        agent.stop()
        loop.run(engine.close())
        loop.close()
        ours = {d.name() for d in local_libvirt.listAllDomains(0)
                if d.name().startswith(VM_PREFIX)} - created_before
        _remove_test_domains(local_libvirt, ours)
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture
def vm(node: Node, local_libvirt: libvirt.virConnect) -> Iterator[VmSpec]:
    """A fresh VM spec; its domain is removed after the test whatever happened."""
    spec = node.new_vm()
    yield spec
    _remove_test_domains(local_libvirt, {spec.name})
