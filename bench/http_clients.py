"""Engine -> node requests with aiohttp's client vs httpx's, over HTTPS to an aiohttp server.

What this decides: which client the direct transport uses for commands (the hot path
of every VM action). Both clients POST a small JSON command over one pooled TLS
connection per node, as `DirectEngineTransport` does: sequentially (one job's steps)
and concurrently (a burst of starts). Prints ms per request and requests per second.
Usage:
    .venv/bin/python -m bench.http_clients [--requests 2000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ssl
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
from aiohttp import web

from overt.pki.certs import cert_pem, key_pem, new_key, self_signed

BODY = b'{"request_id": "00000000-0000-0000-0000-000000000001", "command": {"name": "vm.status"}}'


def _tls(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = new_key()
    cert = self_signed(key, "node", ["localhost"], now=dt.datetime.now(dt.UTC))
    (directory / "node.pem").write_bytes(cert_pem(cert))
    (directory / "node.key").write_bytes(key_pem(key))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(directory / "node.pem", directory / "node.key")
    client = ssl.create_default_context(cafile=str(directory / "node.pem"))
    return server, client


async def _serve(context: ssl.SSLContext) -> tuple[web.AppRunner, int]:
    async def commands(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"ok": true, "result": {}}', content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/commands", commands)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def _timed(post: Callable[[], Awaitable[None]], requests: int, concurrency: int
                 ) -> float:
    """Seconds for `requests` posts, `concurrency` at a time."""
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            await post()
    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    return time.perf_counter() - start


async def run(requests: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server_tls, client_tls = _tls(Path(tmp))
        runner, port = await _serve(server_tls)
        url = f"https://localhost:{port}/v1/commands"
        headers = {"Content-Type": "application/json"}
        try:
            async with aiohttp.ClientSession() as session:
                async def aiohttp_post() -> None:
                    async with session.post(url, data=BODY, ssl=client_tls,
                                            headers=headers) as reply:
                        await reply.read()
                results = {"aiohttp": await _measure(aiohttp_post, requests, concurrency)}
            async with httpx.AsyncClient(verify=client_tls) as client:
                async def httpx_post() -> None:
                    (await client.post(url, content=BODY, headers=headers)).read()
                results["httpx"] = await _measure(httpx_post, requests, concurrency)
        finally:
            await runner.cleanup()
    print(f"{requests} POSTs over HTTPS to an aiohttp server on this machine")
    print(f"{'client':8} {'sequential ms/req':>18} {'concurrent req/s':>17} (x{concurrency})")
    for name, (sequential, concurrent) in results.items():
        print(f"{name:8} {sequential * 1000 / requests:18.3f} {requests / concurrent:17.0f}")


async def _measure(post: Callable[[], Awaitable[None]], requests: int, concurrency: int
                   ) -> tuple[float, float]:
    await _timed(post, 50, 1)  # warm: the TLS connection and the pool
    return await _timed(post, requests, 1), await _timed(post, requests, concurrency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.concurrency))


if __name__ == "__main__":
    main()
