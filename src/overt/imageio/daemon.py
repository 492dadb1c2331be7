"""An ovirt-imageio daemon, started on demand: one per engine API process, one per node.

The daemon serves `/images/TICKET` over TLS with a certificate of the server CA (so
clients trust it with the engine CA, like the API) and takes tickets on a control socket
only its owner can reach. Tickets name an NBD socket (`nbd:unix:PATH`) or, on the
engine's proxy, a node's daemon (`https://NODE:PORT/images/TICKET`), never a file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx

log = logging.getLogger(__name__)

START_WITHIN_S = 30.0
# The daemon ends with the process that started it (an engine or agent killed outright
# leaves no server behind holding its port): it watches for its parent to change.
_LAUNCH = """
import os, threading, time
parent = os.getppid()
def _orphaned():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=_orphaned, daemon=True).start()
from ovirt_imageio._internal.server import main
main()
"""


@dataclass(frozen=True)
class DaemonFiles:
    """Where the daemon keeps its configuration and sockets, and the TLS files it serves with."""

    home: Path
    cert_file: Path
    key_file: Path
    ca_file: Path

    @property
    def control_socket(self) -> Path:
        return self.home / "run" / "control.sock"


def _free_port(address: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def render_config(files: DaemonFiles, *, address: str, port: int) -> str:
    """imageio's configuration: TLS on, no local (unix) data socket, tickets by our socket."""
    return "\n".join([
        "[daemon]", f"run_dir = {files.home / 'run'}", "drop_privileges = false",
        "systemd_enable = false", "",
        "[tls]", "enable = true", f"key_file = {files.key_file}",
        f"cert_file = {files.cert_file}", f"ca_file = {files.ca_file}", "",
        "[remote]", f"host = {address}", f"port = {port}", "",
        "[local]", "enable = false", "",
        "[control]", "transport = unix", f"socket = {files.control_socket}", "",
        "[handlers]", "keys = logfile", "",
        "[handler_logfile]", "keyword__class = logging.FileHandler",
        f"args = ('{files.home / 'daemon.log'}',)", "kwargs = {}", "level = WARNING",
        "formatter = long", "",
        # INFO lines carry whole tickets (their ids are the bearer secret): warnings only.
        "[logger_root]", "level = WARNING", "handlers = logfile", "",
    ])


class ImageioDaemon:
    """Starts the daemon on demand, adds and removes its tickets, stops it with the engine."""

    # What a failure raises: the engine's Unavailable, the node's NodeFailure.
    fail: ClassVar[type[Exception]] = RuntimeError

    def __init__(self, files: DaemonFiles, *, address: str, port: int) -> None:
        self.files = files
        self.address = address
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = asyncio.Lock()

    @property
    def port(self) -> int:
        return self._port

    async def ensure_started(self) -> None:
        async with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            await asyncio.to_thread(self._start)

    def _start(self) -> None:
        if self._port == 0:
            self._port = _free_port(self.address)
        conf = self.files.home / "conf" / "conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        (self.files.home / "run").mkdir(mode=0o700, exist_ok=True)
        (conf / "50-overt.conf").write_text(render_config(self.files, address=self.address,
                                                          port=self._port))
        self.files.control_socket.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, "--conf-dir", str(self.files.home / "conf")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + START_WITHIN_S
        while not self.files.control_socket.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self._process = None
                raise self.fail("The image data server (ovirt-imageio) did not start; see "
                                  f"{self.files.home / 'daemon.log'}")
            time.sleep(0.05)
        log.info("image data server listening on %s:%d", self.address, self._port)

    async def _control(self, method: str, path: str, body: dict[str, Any] | None = None
                       ) -> httpx.Response:
        transport = httpx.AsyncHTTPTransport(uds=str(self.files.control_socket))
        async with httpx.AsyncClient(transport=transport, timeout=30) as client:
            reply = await client.request(method, f"http://imageio{path}", json=body)
        if reply.status_code >= 300 and not (method == "GET" and reply.status_code == 404):
            raise self.fail(f"The image data server refused {method} {path.split('/')[1]}: "
                              f"{reply.status_code}")
        return reply

    async def ticket_info(self, ticket_id: str) -> dict[str, Any] | None:
        """The daemon's view of a ticket (`idle_time`, `transferred`, ...); None: gone."""
        reply = await self._control("GET", f"/tickets/{ticket_id}")
        if reply.status_code == 404:
            return None
        info: dict[str, Any] = reply.json()
        return info

    async def add_ticket(self, ticket: dict[str, Any]) -> None:
        await self.ensure_started()
        await self._control("PUT", f"/tickets/{ticket['uuid']}", ticket)

    async def extend_ticket(self, ticket_id: str, timeout_s: int) -> None:
        await self._control("PATCH", f"/tickets/{ticket_id}", {"timeout": timeout_s})

    async def read_head(self, ticket_id: str, length: int) -> bytes:
        """The first `length` bytes of a ticket's image, read as a client would (through
        the ticket, so a node's volume is read through the proxy): what an upload wrote."""
        wildcard = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104
        host = wildcard.get(self.address, self.address)
        context = ssl.create_default_context(cafile=str(self.files.ca_file))
        context.check_hostname = False  # our own daemon, on this machine: the CA suffices
        url = f"https://{f'[{host}]' if ':' in host else host}:{self._port}/images/{ticket_id}"
        try:
            async with httpx.AsyncClient(verify=context, timeout=60) as client:
                reply = await client.get(url, headers={"Range": f"bytes=0-{length - 1}"})
        except httpx.HTTPError as exc:
            raise self.fail(f"The image data server could not be read: {exc}") from None
        if reply.status_code not in (200, 206):
            raise self.fail(f"The image data server refused a read: {reply.status_code}")
        return reply.content[:length]

    async def remove_ticket(self, ticket_id: str) -> None:
        if self._process is not None:
            await self._control("DELETE", f"/tickets/{ticket_id}")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            os.killpg(self._process.pid, signal.SIGTERM)
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
        self._process = None
