"""What node and transport tests share: an engine-side event loop, a PKI, a recording
event sink, and the agent run as a real `overt node` process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from overt.bus.direct.tls import TlsFiles, issue_engine_identity, node_names
from overt.node.identity import NodeIdentity
from overt.pki.certs import CertificateAuthority, cert_pem, endorse, fingerprint
from overt.protocol import EventEnvelope
from overt.protocol.enrollment import EnrollmentGrant, EnrollmentStatus
from tests.support.ports import free_port as free_port  # where the node tests import it

T = TypeVar("T")


class LoopThread:
    """An asyncio loop in a thread, so sync tests can keep servers running between steps."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class Pki:
    """The engine's two real CAs with the engine's identity, issuing node identities on
    demand: the server CA signs the engine's certificate, the node CA nodes' ones.

    `engine.ca_file` holds both: the engine checks nodes against the node CA, clients
    check the engine against the server CA (and certificates of `other_identity`)."""

    directory: Path
    ca: CertificateAuthority = field(default_factory=lambda: CertificateAuthority.create("t"))
    node_ca: CertificateAuthority = field(
        default_factory=lambda: CertificateAuthority.create("t nodes"))

    def __post_init__(self) -> None:
        self.engine = issue_engine_identity(self.ca, self.directory / "engine", ["127.0.0.1"])
        self.engine.ca_file.write_bytes(cert_pem(self.ca.cert) + cert_pem(self.node_ca.cert))

    def enroll_node(self, data_dir: Path, host_uuid: uuid.UUID, gateway_url: str) -> NodeIdentity:
        """Give a node's data dir what enrollment would: key, node-CA-issued certificate,
        the server CA, and the node CA vouched for by it."""
        identity = NodeIdentity(data_dir, ca_fingerprint=fingerprint(self.ca.cert))
        identity.trust_ca(cert_pem(self.ca.cert).decode())
        names = node_names(host_uuid, "node", "127.0.0.1")
        cert = self.node_ca.sign(identity.csr_pem(host_uuid, names).encode())
        identity.accept_grant(EnrollmentGrant(
            status=EnrollmentStatus.APPROVED, certificate_pem=cert_pem(cert).decode(),
            ca_pem=cert_pem(self.ca.cert).decode(), gateway_url=gateway_url,
            node_ca_pem=cert_pem(self.node_ca.cert).decode(),
            node_ca_endorsement=endorse(self.ca, self.node_ca.cert)),
            host_uuid, gateway_url)
        return identity

    def other_identity(self, directory: Path, common_name: str,
                       ca: CertificateAuthority | None = None) -> TlsFiles:
        """A client identity with any CN, from this CA or another one."""
        from overt.pki.certs import certificate_request, key_pem, new_key, write_private

        issuer = ca or self.ca
        key = new_key()
        cert = issuer.sign(certificate_request(key, common_name, ["127.0.0.1"]))
        directory.mkdir(parents=True, exist_ok=True)
        files = TlsFiles(self.engine.ca_file, directory / "c.pem", directory / "c.key")
        files.cert_file.write_bytes(cert_pem(cert))
        write_private(files.key_file, key_pem(key))
        return files


class RecordingSink:
    """The engine's event callback in tests: records every event it is handed."""

    def __init__(self) -> None:
        self.events: list[EventEnvelope] = []
        self.fail_next = 0

    async def __call__(self, event: EventEnvelope) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("database unavailable")
        self.events.append(event)

    def wait_for(self, check: Callable[[list[EventEnvelope]], bool], timeout: float = 30,
                 what: str = "events") -> list[EventEnvelope]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            snapshot = list(self.events)
            if check(snapshot):
                return snapshot
            time.sleep(0.05)
        kinds = [(e.seq, e.event.type) for e in self.events[-20:]]
        raise AssertionError(f"{what} did not arrive within {timeout} s; last: {kinds}")


class AgentProcess:
    """`python -m overt node ...` as its own process, the way an operator runs it."""

    def __init__(self, data_dir: Path, storage_dir: Path, port: int, log_file: Path,
                 extra: tuple[str, ...] = ()) -> None:
        self.argv = [sys.executable, "-m", "overt", "node", "--listen-address", "127.0.0.1",
                     "--port", str(port), "--data-dir", str(data_dir),
                     "--storage-dir", str(storage_dir), "--virt-type", "qemu",
                     "--stats-interval", "1", "--heartbeat-interval", "1",
                     "--log-level", "DEBUG", *extra]
        self.port = port
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the agent exited ({self.proc.returncode}):\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"the agent did not listen within 60 s:\n{self.log()}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-6000:]
