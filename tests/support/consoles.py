"""A VM with a console, seeded straight into a running engine's database, and a stand-in
for its VNC server: what the console security tests share."""

from __future__ import annotations

import socket
import threading
import uuid

from sqlalchemy import select

from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.web import sessions
from tests.support.engine import RunningEngine


class FakeVnc:
    """A TCP server standing in for a VM's VNC server; counts the connections it gets."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"RFB 003.008\n")
            self.connections.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


async def vm_with_console(engine: RunningEngine, port: int) -> uuid.UUID:
    async with engine.runtime.db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        host = Host(id=uuid.uuid4(), name="h1", address="127.0.0.1", cluster_id=cluster.id,
                    status=HostStatus.MAINTENANCE.value, host_uuid=uuid.uuid4())
        session.add(host)
        await session.flush()
        vm = Vm(id=uuid.uuid4(), name="vm1", cluster_id=cluster.id, host_id=host.id,
                template_id=BLANK_TEMPLATE_ID, memory_mib=256, status=VmStatus.UP.value,
                vnc_port=port)
        session.add(vm)
        return vm.id


async def console_token(engine: RunningEngine, cookie: str, vm_id: uuid.UUID) -> str:
    async with engine.runtime.db.transaction() as session:
        found = await sessions.find_session(session, cookie)
        assert found is not None
        return await sessions.issue_console_token(session, found[0], vm_id)
