"""The agent's side of the keeper's socket."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from overt.protocol.host import HostIdLease, LeaseReport, VmLease
from overt.protocol.vm import LeaseSpec


class KeeperUnavailable(Exception):
    """No keeper answers on the socket: leases cannot be acquired on this node."""


class LeaseClient:
    def __init__(self, socket_path: Path, timeout_s: float = 300.0) -> None:
        self.socket_path = socket_path
        self.timeout_s = timeout_s  # an acquire may watch a lease for its whole timeout

    async def request(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket_path))
        except OSError as exc:
            raise KeeperUnavailable(f"the lease keeper of this node is not running "
                                    f"({self.socket_path}: {exc.strerror})") from None
        try:
            writer.write(json.dumps(body).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), self.timeout_s)
        finally:
            writer.close()
        if not line:
            raise KeeperUnavailable("the lease keeper closed the connection")
        reply: dict[str, Any] = json.loads(line)
        return reply

    async def acquire(self, vm_id: uuid.UUID, lease: LeaseSpec,
                      wait_for_keeper_s: float = 30.0) -> dict[str, Any]:
        """Ask for the lease; a keeper that is (re)starting is waited for a while."""
        body = {"op": "acquire", "vm_id": str(vm_id), "lease": lease.model_dump(mode="json")}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_for_keeper_s
        while True:
            try:
                return await self.request(body)
            except KeeperUnavailable:
                if loop.time() >= deadline:
                    raise
                await asyncio.sleep(0.5)

    async def offer(self, vm_id: uuid.UUID, token: uuid.UUID | None) -> dict[str, Any]:
        """Offer the VM's lease to its migration's destination (None withdraws it)."""
        return await self.request({"op": "offer", "vm_id": str(vm_id),
                                   "token": str(token) if token else None})

    async def take_over(self, vm_id: uuid.UUID, lease: LeaseSpec,
                        token: uuid.UUID) -> dict[str, Any]:
        """Take the lease the migration's source offered under `token`."""
        return await self.request({"op": "take_over", "vm_id": str(vm_id), "token": str(token),
                                   "lease": lease.model_dump(mode="json")})

    async def release(self, vm_id: uuid.UUID) -> dict[str, Any]:
        return await self.request({"op": "release", "vm_id": str(vm_id)})

    async def status(self) -> dict[str, Any]:
        return await self.request({"op": "status"})

    async def report(self) -> LeaseReport:
        """The keeper's status as the engine gets it in the node's stats."""
        status = await self.status()
        domains = status.get("domains") or {}
        return LeaseReport(
            domains=tuple(HostIdLease(domain_id=uuid.UUID(domain), **{
                k: facts[k] for k in ("renewed_age_s", "lease_timeout_s")})
                for domain, facts in domains.items()),
            vms=tuple(VmLease(vm_id=uuid.UUID(vm), domain_id=uuid.UUID(facts["domain_id"]),
                              renewed_age_s=facts["renewed_age_s"])
                      for vm, facts in (status.get("vms") or {}).items()))
