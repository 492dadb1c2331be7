"""The delta lease algorithm on a local file, with a clock the test drives."""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from overt.node.leases import delta
from overt.node.leases.area import FileArea
from overt.node.leases.delta import LeaseHeld, LeaseLost, LeaseTimings
from overt.node.leases.record import SECTOR, CorruptRecord, LeaseRecord, unpack

HOST_A, HOST_B, VM = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
TIMINGS = LeaseTimings(io_timeout=1.0)


class FakeClock(delta.Clock):
    """Time moves only when someone sleeps; `during_sleep` runs what other hosts do."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.during_sleep: list[Callable[[], None]] = []
        super().__init__(now=lambda: self.t, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.t += seconds
        for action in self.during_sleep:
            action()


@pytest.fixture
def area(tmp_path: Path) -> FileArea:
    path = tmp_path / "xleases"
    path.write_bytes(bytes(SECTOR * 8))
    found = FileArea(path, direct=False)
    yield found
    found.close()


def test_a_free_lease_is_taken_and_written_to_its_slot(area: FileArea) -> None:
    held = delta.acquire(area, 3, VM, HOST_A, TIMINGS, FakeClock())
    on_disk = unpack(area.read(3))
    assert on_disk == held.record
    assert (on_disk.owner, on_disk.resource, on_disk.generation) == (HOST_A, VM, 1)
    assert unpack(area.read(2)) is None


def test_a_lease_its_owner_renews_cannot_be_taken(area: FileArea) -> None:
    clock = FakeClock()
    held = delta.acquire(area, 0, VM, HOST_A, TIMINGS, clock)
    clock.during_sleep.append(lambda: delta.renew(held, clock))
    with pytest.raises(LeaseHeld) as refused:
        delta.acquire(area, 0, VM, HOST_B, TIMINGS, clock)
    assert refused.value.owner == HOST_A
    assert unpack(area.read(0)).owner == HOST_A


def test_a_lease_nobody_renews_is_taken_after_the_lease_timeout(area: FileArea) -> None:
    clock = FakeClock()
    delta.acquire(area, 0, VM, HOST_A, TIMINGS, clock)
    started = clock.t
    taken = delta.acquire(area, 0, VM, HOST_B, TIMINGS, clock)
    assert clock.t - started >= TIMINGS.lease_timeout  # watched it stand still that long
    assert (unpack(area.read(0)).owner, taken.record.generation) == (HOST_B, 2)


def test_the_old_owner_finds_its_lease_lost_on_renewal(area: FileArea) -> None:
    clock = FakeClock()
    old = delta.acquire(area, 0, VM, HOST_A, TIMINGS, clock)
    delta.acquire(area, 0, VM, HOST_B, TIMINGS, clock)
    with pytest.raises(LeaseLost):
        delta.renew(old, clock)
    assert unpack(area.read(0)).owner == HOST_B


def test_of_two_racing_acquirers_only_the_last_writer_wins(area: FileArea) -> None:
    clock = FakeClock()
    rival = LeaseRecord(VM, HOST_B, 1, 1, 1)
    # B writes its record while A waits out its acquire delay: A's re-read sees B.
    clock.during_sleep.append(lambda: area.write(0, rival.pack()))
    with pytest.raises(LeaseHeld) as refused:
        delta.acquire(area, 0, VM, HOST_A, TIMINGS, clock)
    assert refused.value.owner == HOST_B


def test_a_released_lease_is_free_at_once(area: FileArea) -> None:
    clock = FakeClock()
    held = delta.acquire(area, 0, VM, HOST_A, TIMINGS, clock)
    delta.release(held)
    started = clock.t
    delta.acquire(area, 0, VM, HOST_B, TIMINGS, clock)
    assert clock.t - started == TIMINGS.acquire_delay  # no watching a free slot


def test_renewal_moves_the_timestamp_and_overdue_counts_from_the_last_one(
        area: FileArea) -> None:
    clock = FakeClock()
    held = delta.acquire(area, 0, VM, HOST_A, TIMINGS, clock)
    # counted from before the acquire's write, not from its end: the conservative side
    assert not delta.overdue(held, TIMINGS, held.renewed_at + TIMINGS.kill_after - 0.5)
    assert delta.overdue(held, TIMINGS, held.renewed_at + TIMINGS.kill_after)
    delta.renew(held, clock)
    assert unpack(area.read(0)).timestamp == 2
    clock.t += TIMINGS.kill_after
    assert delta.overdue(held, TIMINGS, clock.t)


def test_the_owner_stops_before_anyone_may_judge_the_lease_dead() -> None:
    for io_timeout in (0.5, 1.0, 10.0):
        timings = LeaseTimings(io_timeout)
        assert timings.kill_after + 2 * io_timeout <= timings.lease_timeout
        assert timings.renew_interval < timings.kill_after


def test_a_slot_of_garbage_is_refused_not_taken_for_free(area: FileArea) -> None:
    area.write(1, b"\x01" * SECTOR)
    with pytest.raises(CorruptRecord):
        unpack(area.read(1))


def test_a_record_of_the_layout_before_hand_overs_still_reads() -> None:
    resource, owner = uuid.uuid4(), uuid.uuid4()
    body = struct.pack("<8s16s16sQQI", b"OVLEASE1", resource.bytes, owner.bytes, 3, 7, 10)
    sector = (body + struct.pack("<I", zlib.crc32(body))).ljust(SECTOR, b"\0")
    assert unpack(sector) == LeaseRecord(resource, owner, 3, 7, 10)
    offered = LeaseRecord(resource, owner, 3, 8, 10, handover=uuid.uuid4())
    assert unpack(offered.pack()) == offered
    damaged = bytearray(offered.pack())
    damaged[65] ^= 1  # a bit of the token flipped
    with pytest.raises(CorruptRecord):
        unpack(bytes(damaged))
