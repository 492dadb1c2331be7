"""The boot files over HTTP, next to dnsmasq's TFTP: iPXE fetches the kernel and initramfs
with HTTP's TCP window instead of TFTP's one-packet-per-acknowledgement (tens of
megabytes over TFTP take a minute under software emulation; over HTTP, seconds).

A read-only server of the TFTP root's few files, by name, on the managed networks' engine
addresses; anything else is 404, and no path ever leaves the root."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

CHUNK = 1 << 16
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class BootFileServer:
    def __init__(self, root: Path, names: Iterable[str]) -> None:
        self.root = root
        self.names = frozenset(names)
        self.servers: list[asyncio.Server] = []

    async def start(self, addresses: Iterable[str], port: int) -> None:
        for address in addresses:
            self.servers.append(await asyncio.start_server(self._serve, address, port))
            log.info("network boot: serving the boot files on http://%s:%d/", address, port)

    @property
    def ports(self) -> list[int]:
        return [sock.getsockname()[1] for s in self.servers for sock in s.sockets]

    async def stop(self) -> None:
        for server in self.servers:
            server.close()
            await server.wait_closed()
        self.servers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)).decode("latin-1")
        parts = request.split("\r\n", 1)[0].split()
        if len(parts) != 3:
            return self._status(writer, 400)
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return self._status(writer, 405)
        name = target.split("?", 1)[0].lstrip("/")
        path = self.root / name
        if name not in self.names or not path.is_file():
            return self._status(writer, 404)
        size = path.stat().st_size
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nContent-Type: "
                     "application/octet-stream\r\nConnection: close\r\n\r\n".encode())
        if method == "GET":
            with path.open("rb") as f:
                while chunk := f.read(CHUNK):
                    writer.write(chunk)
                    await writer.drain()
        await writer.drain()

    @staticmethod
    def _status(writer: asyncio.StreamWriter, code: int) -> None:
        writer.write(f"HTTP/1.1 {code} {_REASONS[code]}\r\nContent-Length: 0\r\n"
                     "Connection: close\r\n\r\n".encode())
