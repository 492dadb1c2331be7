"""A SIMULATED migration's figures: passes over memory made up from the time it has run,
so the engine's progress reporting and the policy's post-copy switch can be tested."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from overt.protocol.migration import MigrationOutcome, MigrationPolicy, MigrationProgress

PASSES = 4  # a simulated migration converges in this many passes over memory
DOWNTIME_MS = 40


@dataclass
class SimulatedMigration:
    """One outgoing migration: each pass takes a quarter of `duration_s` and sends half of
    what is left; `cancelled` is set by cancelmigration."""

    memory_mib: int
    duration_s: float
    policy: MigrationPolicy
    destination_uri: str
    migration_uri: str | None
    began: float = field(default_factory=time.monotonic)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    def _passes(self, now: float) -> float:
        if self.duration_s <= 0:
            return float(PASSES)
        return min(float(PASSES), (now - self.began) / self.duration_s * PASSES)

    @property
    def post_copy(self) -> bool:
        after = self.policy.post_copy_after_iterations
        return after is not None and self._passes(time.monotonic()) >= after

    def progress(self) -> MigrationProgress:
        now = time.monotonic()
        passes = self._passes(now)
        total = self.memory_mib * 1024 * 1024
        remaining = int(total / 2 ** passes) if passes < PASSES else 0
        return MigrationProgress(
            active=True, elapsed_ms=round((now - self.began) * 1000),
            memory_total_bytes=total, memory_remaining_bytes=remaining,
            memory_processed_bytes=total - remaining, data_processed_bytes=total - remaining,
            iteration=int(passes) + 1, expected_downtime_ms=DOWNTIME_MS,
            post_copy=self.post_copy)

    def outcome(self) -> MigrationOutcome:
        total = self.memory_mib * 1024 * 1024
        if not self.policy.live:  # paused for the whole copy: one pass, all of it downtime
            took = round((time.monotonic() - self.began) * 1000)
            return MigrationOutcome(total_ms=took, downtime_ms=took, transferred_bytes=total,
                                    iterations=1, live=False)
        return MigrationOutcome(
            total_ms=round((time.monotonic() - self.began) * 1000), downtime_ms=DOWNTIME_MS,
            transferred_bytes=total + total // 2, iterations=PASSES, post_copy=self.post_copy)
