"""A login flood, run as its own process: wrong passwords to the SSO token endpoint from
many loopback addresses (127.0.0.2, ...) and user names, for a while; prints the answers'
status codes as JSON.

    python -m tests.support.login_flood URL SECONDS CONNECTIONS SOURCES
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import time
from collections import Counter

import httpx


async def _worker(url: str, deadline: float, source: str, counts: Counter[str]) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=source, verify=False)
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:
        while time.monotonic() < deadline:
            user = "admin" if secrets.randbelow(2) else f"user{secrets.token_hex(3)}"
            try:
                response = await client.post(url, data={
                    "grant_type": "password", "username": user,
                    "password": secrets.token_hex(8), "scope": "ovirt-app-api"})
                counts[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                counts[type(exc).__name__] += 1


async def main(url: str, seconds: float, connections: int, sources: int) -> None:
    deadline = time.monotonic() + seconds
    counts: Counter[str] = Counter()
    await asyncio.gather(*(_worker(url, deadline, f"127.0.0.{2 + i % sources}", counts)
                           for i in range(connections)))
    print(json.dumps(counts))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
