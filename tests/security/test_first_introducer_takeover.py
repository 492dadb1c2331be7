"""Finding: a node that was not enrolled yet trusted whoever introduced itself first, and
pinned that CA: anyone who reached a fresh node before the engine could enroll it in a
CA of their own and drive its libvirt (root on the node)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from overt.bus.base import NodeAddress, TransportError
from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.bus.direct.engine import DirectEngineTransport
from overt.node.identity import NodeIdentity
from overt.pki.certs import cert_pem
from overt.protocol import CommandEnvelope
from overt.protocol.commands import VmStatus
from overt.protocol.enrollment import EngineIntroduction, EnrollmentGrant, EnrollmentStatus
from tests.integration.bus.direct.conftest import HOST_UUID, NodeCommands
from tests.integration.node.harness import LoopThread, Pki, free_port
from tests.security.conftest import close_loop


def test_first_introducer_takeover(tmp_path: Path) -> None:
    loop = LoopThread()
    commands = NodeCommands()
    node = DirectAgentTransport(NodeIdentity(tmp_path / "fresh"), AgentServerSettings(
        listen_address="127.0.0.1", port=free_port()))
    loop.run(node.start(commands))
    url = f"https://127.0.0.1:{node.port}"
    intruder = Pki(tmp_path / "intruder")  # a CA and an "engine" of the attacker's own

    async def take_over() -> bool:
        engine = DirectEngineTransport(intruder.engine)
        await engine.start(None)
        try:
            request, _key = await engine.request_enrollment(url, EngineIntroduction(
                ca_pem=cert_pem(intruder.ca.cert).decode(), gateway_url="https://192.0.2.1:1",
                host_id=uuid.uuid4()))
            cert = intruder.ca.sign(request.csr_pem.encode())
            await engine.send_certificate(url, EnrollmentGrant(
                status=EnrollmentStatus.APPROVED, certificate_pem=cert_pem(cert).decode(),
                ca_pem=cert_pem(intruder.ca.cert).decode()))
            reply = await engine.call(NodeAddress(host_uuid=HOST_UUID, url=url),
                                      CommandEnvelope(command=VmStatus(vm_id=uuid.uuid4())))
            return reply.ok
        finally:
            await engine.close()

    try:
        with pytest.raises(TransportError, match="trusts no engine"):
            loop.run(take_over())
        assert not node.enrolled
        assert not node.identity.ca_file.exists()  # nothing pinned
        assert [c for c in commands.seen if isinstance(c.command, VmStatus)] == []
    finally:
        loop.run(node.close())
        close_loop(loop)
