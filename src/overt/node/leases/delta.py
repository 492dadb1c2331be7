"""Delta leases (Chockler and Malkhi's "light-weight leases", as sanlock implements
them): mutual exclusion over shared storage with no lock server and no common clock.

Timings scale with the I/O timeout T (sanlock's defaults use T = 10 s):
- the owner renews every `renew_interval` = 2T;
- another host judges a lease dead when its timestamp has not changed for
  `lease_timeout` = 8T of its own watching;
- the owner stops its VM when it could not renew for `kill_after` = 6T, so the VM is
  gone before anyone may judge the lease dead (2T to spare for the kill).

Acquire: read the slot; if another host's record is there, watch it for a full
`lease_timeout` and give up if its timestamp moves (a live owner); then write our
record (generation + 1), wait `2T` and read again: if the record is still ours no
racing acquirer overwrote it, and the lease is ours.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from overt.node.leases.area import LeaseArea
from overt.node.leases.record import FREE, LeaseRecord, unpack


class LeaseHeld(Exception):
    """Another host holds the lease and renews it."""

    def __init__(self, owner: uuid.UUID, message: str) -> None:
        super().__init__(message)
        self.owner = owner


class LeaseLost(Exception):
    """Our record is no longer in the slot: someone took the lease (we were judged dead)."""


class LeaseHandedOver(LeaseLost):
    """The destination of a live migration took the lease we offered it: the VM runs
    there now; ours stops renewing (and stops the VM if it still runs here)."""


HANDOVER_ATTEMPTS = 3  # a source renewal in flight may overwrite the first takeover write


@dataclass(frozen=True)
class LeaseTimings:
    io_timeout: float = 10.0

    @property
    def renew_interval(self) -> float:
        return 2 * self.io_timeout

    @property
    def lease_timeout(self) -> float:
        return 8 * self.io_timeout

    @property
    def kill_after(self) -> float:
        return 6 * self.io_timeout

    @property
    def acquire_delay(self) -> float:
        return 2 * self.io_timeout


@dataclass
class Clock:
    """Monotonic time and sleep, swapped for a fake one in unit tests."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


@dataclass
class HeldLease:
    """A lease this host holds: its slot and the record last written."""

    area: LeaseArea
    slot: int
    record: LeaseRecord
    renewed_at: float  # our monotonic time just before the last successful write
    history: list[str] = field(default_factory=list)
    # One read-modify-write of the slot at a time: a renewal (from the renewing task's
    # thread) must not write back a record older than an offer made meanwhile.
    writing: threading.Lock = field(default_factory=threading.Lock, repr=False,
                                    compare=False)


def acquire(area: LeaseArea, slot: int, resource: uuid.UUID, owner: uuid.UUID,
            timings: LeaseTimings, clock: Clock | None = None, *,
            poll: float | None = None) -> HeldLease:
    """Take the lease in `slot` for `owner`, or raise LeaseHeld (read, wait, re-read)."""
    clock = clock or Clock()
    current = unpack(area.read(slot))
    if current is not None and current.owner != owner:
        _wait_for_expiry(area, slot, current, timings, clock, poll or timings.io_timeout)
    generation = (current.generation if current else 0) + 1
    mine = LeaseRecord(resource, owner, generation, 1, int(max(1, timings.io_timeout)))
    started = clock.now()
    area.write(slot, mine.pack())
    clock.sleep(timings.acquire_delay)
    after = unpack(area.read(slot))
    if after != mine:
        holder = after.owner if after else owner
        raise LeaseHeld(holder, f"host {holder} took the lease of {resource} at the same "
                        "time; it is theirs")
    return HeldLease(area, slot, mine, started)


def _wait_for_expiry(area: LeaseArea, slot: int, seen: LeaseRecord, timings: LeaseTimings,
                     clock: Clock, poll: float) -> None:
    deadline = clock.now() + timings.lease_timeout
    while clock.now() < deadline:
        clock.sleep(min(poll, max(0.0, deadline - clock.now())))
        now = unpack(area.read(slot))
        if now is None:
            return  # released while we watched
        if now != seen:
            raise LeaseHeld(now.owner, f"the lease of {now.resource} is held by host "
                            f"{now.owner}, which renews it")


def renew(lease: HeldLease, clock: Clock | None = None) -> None:
    """Bump our timestamp; LeaseLost if the slot is no longer ours."""
    clock = clock or Clock()
    _write_ours(lease, clock, _KEEP)


def offer(lease: HeldLease, token: uuid.UUID | None, clock: Clock | None = None) -> None:
    """Mark our lease as offered to whoever presents `token` (a live migration's
    destination), or withdraw the offer (None). We keep renewing it meanwhile."""
    _write_ours(lease, clock or Clock(), token)


_KEEP = object()  # a renewal keeps the hand-over offer as it is when it writes


def _write_ours(lease: HeldLease, clock: Clock, handover: object) -> None:
    with lease.writing:
        _write_ours_now(lease, clock, lease.record.handover if handover is _KEEP else handover)


def _write_ours_now(lease: HeldLease, clock: Clock, handover: object) -> None:
    on_disk = unpack(lease.area.read(lease.slot))
    if on_disk is None or on_disk.owner != lease.record.owner \
            or on_disk.generation != lease.record.generation:
        if on_disk is not None and lease.record.handover is not None \
                and on_disk.resource == lease.record.resource \
                and on_disk.generation == lease.record.generation + 1:
            raise LeaseHandedOver(f"the lease of {lease.record.resource} was taken over by "
                                  f"host {on_disk.owner}, the destination of its migration")
        raise LeaseLost(f"the lease of {lease.record.resource} was taken by "
                        f"{on_disk.owner if on_disk else 'nobody (released)'}")
    assert handover is None or isinstance(handover, uuid.UUID)
    record = LeaseRecord(lease.record.resource, lease.record.owner, lease.record.generation,
                         lease.record.timestamp + 1, lease.record.io_timeout, handover)
    started = clock.now()
    lease.area.write(lease.slot, record.pack())
    lease.record, lease.renewed_at = record, started


def take_over(area: LeaseArea, slot: int, resource: uuid.UUID, owner: uuid.UUID,
              token: uuid.UUID, timings: LeaseTimings, clock: Clock | None = None) -> HeldLease:
    """Take a lease its owner offered under `token`, without the lease timeout's wait:
    the owner is alive and consents. Write our record (generation + 1), wait 2T and read
    again; the owner's renewal in flight may have overwritten it (then write again), and
    its next renewal finds our record and stops renewing. A free slot is acquired as
    usual; any other record (no offer, another token) refuses."""
    clock = clock or Clock()
    source = owner
    for _ in range(HANDOVER_ATTEMPTS):
        current = unpack(area.read(slot))
        if current is None:
            return acquire(area, slot, resource, owner, timings, clock)
        if current.owner == owner and current.resource == resource:
            return HeldLease(area, slot, current, clock.now())  # ours already
        if current.resource != resource or current.handover != token:
            raise LeaseHeld(current.owner, f"the lease of {resource} is held by host "
                            f"{current.owner}, which did not offer it to this migration")
        source = current.owner
        mine = LeaseRecord(resource, owner, current.generation + 1, 1,
                           int(max(1, timings.io_timeout)))
        started = clock.now()
        area.write(slot, mine.pack())
        clock.sleep(timings.acquire_delay)
        after = unpack(area.read(slot))
        if after == mine:
            return HeldLease(area, slot, mine, started)
        if after is None or after.handover != token or after.generation != current.generation:
            holder = after.owner if after else owner
            raise LeaseHeld(holder, f"the lease of {resource} changed hands during its "
                            f"hand-over (now host {holder})")
    raise LeaseHeld(source, f"the lease of {resource} could not be taken over from "
                    f"host {source}: its renewals kept overwriting ours")


def release(lease: HeldLease) -> None:
    """Free the slot if it is still ours (a clean stop: the next acquirer need not wait)."""
    on_disk = unpack(lease.area.read(lease.slot))
    if on_disk == lease.record:
        lease.area.write(lease.slot, FREE)


def overdue(lease: HeldLease, timings: LeaseTimings, now: float) -> bool:
    """Whether the owner must stop using the lease: not renewed for `kill_after`."""
    return now - lease.renewed_at >= timings.kill_after
