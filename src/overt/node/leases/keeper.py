"""The lease keeper: holds this host's id lease and its running VMs' leases on their
storage domains, renews them, and stops a VM whose lease it cannot renew in time.

It runs apart from the agent (the agent asks it over a Unix socket, `client.py`), so
an agent restart leaves the leases renewed; what it holds is written to its state
directory, so a restarted keeper adopts its leases again (or stops VMs whose lease
another host has meanwhile taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overt.node.leases import delta
from overt.node.leases.area import LeaseArea
from overt.node.leases.delta import (
    HeldLease,
    LeaseHandedOver,
    LeaseHeld,
    LeaseLost,
    LeaseTimings,
)
from overt.node.leases.export import DomainRef
from overt.node.leases.record import CorruptRecord, LeaseRecord, unpack
from overt.protocol.vm import LeaseSpec

log = logging.getLogger(__name__)
HOST_SLOTS = 250  # the part of `ids` scanned for this host's slot
RELEASE_GRACE_S = 120.0  # a lease acquired for a VM that never showed up is freed after this


@dataclass
class DomainAreas:
    ids: LeaseArea
    xleases: LeaseArea
    close: Callable[[], Awaitable[None]]
    # Whether what serves the areas still runs, and how to start it again (its
    # qemu-storage-daemon died: renewals would fail until the VMs are stopped).
    alive: Callable[[], bool] = lambda: True
    restart: Callable[[], Awaitable[tuple[LeaseArea, LeaseArea]]] | None = None


@dataclass
class _Domain:
    ref: DomainRef
    areas: DomainAreas
    timings: LeaseTimings
    host: HeldLease
    vms: dict[uuid.UUID, HeldLease] = field(default_factory=dict)
    acquired_at: dict[uuid.UUID, float] = field(default_factory=dict)
    renewing: bool = False


OpenDomain = Callable[[DomainRef], Awaitable[DomainAreas]]
StopVm = Callable[[uuid.UUID], Awaitable[None]]
VmRunning = Callable[[uuid.UUID], Awaitable[bool | None]]


class LeaseRefused(Exception):
    """The lease cannot be had: held by a live host, or its domain cannot be reached."""

    def __init__(self, message: str, owner: uuid.UUID | None = None) -> None:
        super().__init__(message)
        self.owner = owner


class Keeper:
    def __init__(self, host_id: uuid.UUID, state_dir: Path, open_domain: OpenDomain,
                 stop_vm: StopVm, vm_running: VmRunning | None = None,
                 clock: delta.Clock | None = None) -> None:
        self.host_id = host_id
        self.state_dir = state_dir
        self._open_domain = open_domain
        self._stop_vm = stop_vm
        self._vm_running = vm_running
        self.clock = clock or delta.Clock()
        self.domains: dict[uuid.UUID, _Domain] = {}
        self.specs: dict[uuid.UUID, LeaseSpec] = {}
        self._lock = asyncio.Lock()
        self._attached = asyncio.Event()
        self._tasks: set[asyncio.Future[None]] = set()

    # -- what the agent asks ---------------------------------------------------------------

    async def acquire(self, vm_id: uuid.UUID, spec: LeaseSpec) -> None:
        async with self._lock:
            domain = await self._attach(spec)
            if vm_id in domain.vms:
                return
            try:
                held = await asyncio.to_thread(
                    delta.acquire, domain.areas.xleases, spec.slot, vm_id, self.host_id,
                    domain.timings, self.clock)
            except LeaseHeld as exc:
                raise LeaseRefused(f"the lease of VM {vm_id} is held by host {exc.owner}, "
                                   "which renews it: the VM runs there", exc.owner) from None
            except (OSError, CorruptRecord) as exc:
                raise LeaseRefused(f"cannot acquire the lease of VM {vm_id} on storage "
                                   f"domain {spec.domain_id}: {exc}") from None
            self._hold(domain, vm_id, held, spec)
            log.info("VM lease acquired", extra={"vm": str(vm_id)})

    # -- live migration: the hand-over ------------------------------------------------------

    async def offer(self, vm_id: uuid.UUID, token: uuid.UUID | None) -> None:
        """Offer the VM's lease to the destination of its migration (who will present
        `token`), or withdraw the offer (None: the migration failed, the lease stays)."""
        async with self._lock:
            found = self._held(vm_id)
            if found is None:
                raise LeaseRefused(f"this host holds no lease of VM {vm_id} to hand over")
            domain, held = found
            try:
                await asyncio.to_thread(delta.offer, held, token, self.clock)
            except LeaseLost as exc:
                raise LeaseRefused(f"the lease of VM {vm_id} is no longer this host's: "
                                   f"{exc}") from None
            except (OSError, CorruptRecord) as exc:
                raise LeaseRefused(f"cannot mark the lease of VM {vm_id} for its hand-over: "
                                   f"{exc}") from None
            domain.acquired_at[vm_id] = self.clock.now()  # the release grace counts anew
            log.info("VM lease offered" if token else "VM lease offer withdrawn",
                     extra={"vm": str(vm_id)})

    async def take_over(self, vm_id: uuid.UUID, spec: LeaseSpec, token: uuid.UUID) -> None:
        """Take the lease the source of the VM's migration offered under `token`."""
        async with self._lock:
            domain = await self._attach(spec)
            if vm_id in domain.vms:
                return
            try:
                held = await asyncio.to_thread(
                    delta.take_over, domain.areas.xleases, spec.slot, vm_id, self.host_id,
                    token, domain.timings, self.clock)
            except LeaseHeld as exc:
                raise LeaseRefused(f"cannot take over the lease of VM {vm_id}: {exc}",
                                   exc.owner) from None
            except (OSError, CorruptRecord) as exc:
                raise LeaseRefused(f"cannot take over the lease of VM {vm_id} on storage "
                                   f"domain {spec.domain_id}: {exc}") from None
            self._hold(domain, vm_id, held, spec)
            log.info("VM lease taken over from the migration's source", extra={"vm": str(vm_id)})

    def _hold(self, domain: _Domain, vm_id: uuid.UUID, held: HeldLease, spec: LeaseSpec) -> None:
        """Renew the lease from now on, and remember it across a restart of the keeper."""
        domain.vms[vm_id] = held
        domain.acquired_at[vm_id] = self.clock.now()
        self.specs[vm_id] = spec
        self._save()

    def _held(self, vm_id: uuid.UUID) -> tuple[_Domain, HeldLease] | None:
        for domain in self.domains.values():
            if vm_id in domain.vms:
                return domain, domain.vms[vm_id]
        return None

    async def _handed_over(self, domain: _Domain, vm_id: uuid.UUID, reason: str) -> None:
        """The destination holds the lease now: stop renewing; a copy still running here
        (the hand-over came before the switch-over ended) is stopped."""
        if self._vm_running is not None and await self._vm_running(vm_id) is not False:
            await self._kill(domain, vm_id, f"{reason}, but it still ran here")
            return
        domain.vms.pop(vm_id, None)
        domain.acquired_at.pop(vm_id, None)
        self.specs.pop(vm_id, None)
        self._save()
        log.info("VM lease handed over", extra={"vm": str(vm_id)})

    async def release(self, vm_id: uuid.UUID) -> bool:
        async with self._lock:
            for domain in self.domains.values():
                held = domain.vms.pop(vm_id, None)
                if held is not None:
                    domain.acquired_at.pop(vm_id, None)
                    self.specs.pop(vm_id, None)
                    self._save()
                    with contextlib.suppress(OSError, CorruptRecord):
                        await asyncio.to_thread(delta.release, held)
                    log.info("VM lease released", extra={"vm": str(vm_id)})
                    return True
            return False

    def status(self) -> dict[str, Any]:
        now = self.clock.now()
        return {
            "host_id": str(self.host_id),
            "domains": {str(d.ref.domain_id): {
                "host_slot": d.host.slot, "renewed_age_s": round(now - d.host.renewed_at, 3),
                "lease_timeout_s": d.timings.lease_timeout} for d in self.domains.values()},
            "vms": {str(vm): {"domain_id": str(d.ref.domain_id), "slot": held.slot,
                              "renewed_age_s": round(now - held.renewed_at, 3)}
                    for d in self.domains.values() for vm, held in d.vms.items()},
        }

    # -- domains and the host id lease -----------------------------------------------------

    async def _attach(self, spec: LeaseSpec) -> _Domain:
        found = self.domains.get(spec.domain_id)
        if found is not None:
            return found
        ref = DomainRef(spec.domain_id, spec.server, spec.export, spec.lun)
        try:
            areas = await self._open_domain(ref)
        except OSError as exc:
            raise LeaseRefused(f"cannot reach the lease areas of storage domain "
                               f"{spec.domain_id}: {exc}") from None
        timings = LeaseTimings(spec.io_timeout_s)
        try:
            host = await asyncio.to_thread(self._acquire_host_id, areas.ids, timings)
        except (OSError, CorruptRecord, LeaseHeld) as exc:
            await areas.close()
            raise LeaseRefused(f"cannot take a host id on storage domain {spec.domain_id}: "
                               f"{exc}") from None
        domain = _Domain(ref, areas, timings, host)
        self.domains[spec.domain_id] = domain
        self._attached.set()
        log.info("host id lease acquired", extra={"storage_domain": str(spec.domain_id)})
        return domain

    def _acquire_host_id(self, ids: LeaseArea, timings: LeaseTimings) -> HeldLease:
        """Our slot if `ids` has one, else the first free one (a race for it is settled
        by the acquire's re-read: the loser tries the next)."""
        slots = ids.read_slots(HOST_SLOTS)
        mine, free = None, []
        for index, sector in enumerate(slots):
            try:
                record = unpack(sector)
            except CorruptRecord:
                continue
            if record is None:
                free.append(index)
            elif record.owner == self.host_id:
                mine = index
        for slot in ([mine] if mine is not None else []) + free:
            try:
                return delta.acquire(ids, slot, self.host_id, self.host_id, timings, self.clock)
            except LeaseHeld:
                continue
        raise LeaseHeld(self.host_id, "no free host id slot in the domain's ids area")

    # -- renewal and the watchdog ----------------------------------------------------------

    async def run(self) -> None:
        """Renew and watch until cancelled."""
        await asyncio.gather(self._renew_forever(), self._watch_forever())

    async def _renew_forever(self) -> None:
        while True:
            for domain in list(self.domains.values()):
                if not domain.renewing:
                    domain.renewing = True
                    task = asyncio.ensure_future(self._renew_domain(domain))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            await self._pause(min((d.timings.renew_interval for d in self.domains.values()),
                                   default=60.0))

    async def _renew_domain(self, domain: _Domain) -> None:
        try:
            try:
                await self._renew_host(domain)
            except LeaseLost as exc:
                await self._kill_all(domain, f"this host's id lease was taken: {exc}")
                return
            except (OSError, CorruptRecord) as exc:
                log.warning("cannot renew the host id lease: %s", exc,
                            extra={"storage_domain": str(domain.ref.domain_id)})
                return
            for vm_id, held in list(domain.vms.items()):
                try:
                    await asyncio.to_thread(delta.renew, held, self.clock)
                except LeaseHandedOver as exc:
                    await self._handed_over(domain, vm_id, str(exc))
                except LeaseLost as exc:
                    await self._kill(domain, vm_id, f"its lease was taken by another host: {exc}")
                except (OSError, CorruptRecord) as exc:
                    log.warning("cannot renew a VM lease: %s", exc, extra={"vm": str(vm_id)})
            await self._release_gone(domain)
        finally:
            domain.renewing = False

    async def _renew_host(self, domain: _Domain) -> None:
        """Renew the host id lease; if the areas' server died, serve them again and retry
        at once (the watchdog's deadline keeps running meanwhile)."""
        try:
            await asyncio.to_thread(delta.renew, domain.host, self.clock)
        except OSError:
            if not await self._restart_areas(domain):
                raise
            await asyncio.to_thread(delta.renew, domain.host, self.clock)

    async def _restart_areas(self, domain: _Domain) -> bool:
        """Serve the domain's areas again if their server died (the leases stay ours if
        the next renewal comes before the watchdog's deadline)."""
        areas = domain.areas
        if areas.alive() or areas.restart is None:
            return False
        try:
            ids, xleases = await areas.restart()
        except OSError as exc:
            log.warning("cannot serve the lease areas again: %s", exc,
                        extra={"storage_domain": str(domain.ref.domain_id)})
            return False
        areas.ids, areas.xleases = ids, xleases
        domain.host.area = ids
        for held in domain.vms.values():
            held.area = xleases
        log.info("lease areas served again", extra={"storage_domain": str(domain.ref.domain_id)})
        return True

    async def _release_gone(self, domain: _Domain) -> None:
        """Free the leases of VMs that no longer run here (stopped, or migrated away)."""
        if self._vm_running is None:
            return
        for vm_id in list(domain.vms):
            if self.clock.now() - domain.acquired_at.get(vm_id, 0.0) < RELEASE_GRACE_S:
                continue
            if await self._vm_running(vm_id) is False:
                await self.release(vm_id)

    async def _watch_forever(self) -> None:
        while True:
            now = self.clock.now()
            for domain in list(self.domains.values()):
                timings = domain.timings
                if delta.overdue(domain.host, timings, now):
                    await self._kill_all(domain, "the host id lease of its storage domain was "
                                         f"not renewed for {timings.kill_after:g} s")
                    continue
                for vm_id, held in list(domain.vms.items()):
                    if delta.overdue(held, timings, now):
                        await self._kill(domain, vm_id, "its lease on storage domain "
                                         f"{domain.ref.domain_id} could not be renewed for "
                                         f"{timings.kill_after:g} s (lease timeout "
                                         f"{timings.lease_timeout:g} s)")
            await self._pause(min((d.timings.io_timeout / 4 for d in self.domains.values()),
                                   default=60.0))

    async def _pause(self, seconds: float) -> None:
        """Sleep, or less when a domain is attached (its timings may be shorter)."""
        attached = self._attached
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(attached.wait(), seconds)
        if attached.is_set() and attached is self._attached:
            self._attached = asyncio.Event()

    async def _kill_all(self, domain: _Domain, reason: str) -> None:
        for vm_id in list(domain.vms):
            await self._kill(domain, vm_id, reason)

    async def _kill(self, domain: _Domain, vm_id: uuid.UUID, reason: str) -> None:
        """Stop the VM before another host may judge its lease dead, and say why."""
        domain.vms.pop(vm_id, None)
        domain.acquired_at.pop(vm_id, None)
        self.specs.pop(vm_id, None)
        self._save()
        log.error("stopping VM %s: %s", vm_id, reason, extra={"vm": str(vm_id)})
        stopped = True
        try:
            await self._stop_vm(vm_id)
        except Exception as exc:  # the record must be written whatever failed
            stopped = False
            reason = f"{reason}; stopping it failed: {exc}"
        self._record_kill(vm_id, reason, stopped)

    def _record_kill(self, vm_id: uuid.UUID, reason: str, stopped: bool) -> None:
        line = json.dumps({"at": time.time(), "vm_id": str(vm_id), "stopped": stopped,
                           "reason": reason})
        with (self.state_dir / "kills.jsonl").open("a") as out:
            out.write(line + "\n")

    def kills(self) -> list[dict[str, Any]]:
        path = self.state_dir / "kills.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # -- surviving a restart ---------------------------------------------------------------

    def _save(self) -> None:
        """`held.json`, 0600: a lease on an iSCSI domain with CHAP keeps the credentials
        its areas are opened with, so a restarted keeper can open them again before the
        watchdog's deadline (the agent cannot give them: it keeps none)."""
        held = {str(vm): spec.model_dump(mode="json") for vm, spec in self.specs.items()}
        temporary = self.state_dir / "held.json.new"
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(held))
        temporary.replace(self.state_dir / "held.json")

    async def adopt(self) -> None:
        """Take back the leases a previous keeper held; stop VMs whose lease is gone."""
        path = self.state_dir / "held.json"
        if not path.exists():
            return
        for vm, raw in json.loads(path.read_text()).items():
            vm_id, spec = uuid.UUID(vm), LeaseSpec.model_validate(raw)
            try:
                domain = await self._attach(spec)
                record = unpack(await asyncio.to_thread(domain.areas.xleases.read, spec.slot))
            except (LeaseRefused, OSError, CorruptRecord) as exc:
                log.error("cannot adopt the lease of VM %s: %s", vm_id, exc)
                continue  # the VM is not ours to renew; the watchdog cannot see it either
            if record is None or record.owner != self.host_id or record.resource != vm_id:
                self.specs[vm_id] = spec
                domain.vms[vm_id] = HeldLease(domain.areas.xleases, spec.slot,
                                              record or LeaseRecord(vm_id, self.host_id,
                                                                          0, 0, 0),
                                              self.clock.now())
                await self._kill(domain, vm_id, "its lease was taken while the lease keeper "
                                 "was not running")
                continue
            domain.vms[vm_id] = HeldLease(domain.areas.xleases, spec.slot, record,
                                          self.clock.now())
            domain.acquired_at[vm_id] = self.clock.now()
            self.specs[vm_id] = spec
        self._save()
