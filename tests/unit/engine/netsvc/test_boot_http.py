"""The boot files' HTTP server answers exactly the files it serves, whole, and nothing
else (no other name, no path out of its root, no method that writes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from overt.engine.netsvc.boot_http import BootFileServer


async def _request(port: int, raw: bytes) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.decode().split("\r\n")[0], body


async def test_serves_its_files_and_refuses_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "tftp"
    root.mkdir()
    kernel = bytes(range(256)) * 1000
    (root / "vmlinuz").write_bytes(kernel)
    (root / "boot.ipxe").write_text("#!ipxe\n")
    (tmp_path / "secret").write_text("not served")
    server = BootFileServer(root, ["vmlinuz", "initrd.img"])
    await server.start(["127.0.0.1"], 0)
    try:
        [port] = server.ports
        status, body = await _request(port, b"GET /vmlinuz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == "HTTP/1.1 200 OK" and body == kernel
        status, body = await _request(port, b"HEAD /vmlinuz HTTP/1.0\r\n\r\n")
        assert status == "HTTP/1.1 200 OK" and body == b""
        for target in ("/initrd.img", "/boot.ipxe", "/../secret", "/%2e%2e/secret", "/"):
            status, _ = await _request(port, f"GET {target} HTTP/1.1\r\n\r\n".encode())
            assert status == "HTTP/1.1 404 Not Found", target
        status, _ = await _request(port, b"PUT /vmlinuz HTTP/1.1\r\n\r\n")
        assert status == "HTTP/1.1 405 Method Not Allowed"
        status, _ = await _request(port, b"nonsense\r\n\r\n")
        assert status == "HTTP/1.1 400 Bad Request"
    finally:
        await server.stop()
    assert server.servers == []
