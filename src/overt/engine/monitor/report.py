"""What the monitor did lately, in one log line per interval: counts and node-to-database lag.

Lag is the time from the moment a node made an event (`sent_at`, the node's
clock) to the commit that recorded it; with clocks in sync it is what an
administrator waits before the engine knows. `bench/scale.py` reads these lines.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

log = logging.getLogger(__name__)

MAX_SAMPLES = 200_000  # per interval; beyond that lags are not sampled (counts still are)


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank); 0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class MonitorReport:
    """Counts outcomes and lags; `run` logs and resets them every `interval_s`."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self.outcomes: Counter[str] = Counter()
        self._event_lags: list[float] = []
        self._stats_lags: list[float] = []
        self._last_lag = 0.0  # of the last event applied ...
        self._last_at = 0.0  # ... and when (monotonic)

    def event(self, outcome: str, sent_at: float) -> None:
        self.outcomes[outcome] += 1
        lag = time.time() - sent_at
        # Whatever became of it, an old event taken from the queue means a backlog.
        self._last_lag, self._last_at = lag, time.monotonic()
        if outcome == "applied" and len(self._event_lags) < MAX_SAMPLES:
            self._event_lags.append(lag)

    def behind_s(self, recent_s: float = 5.0) -> float:
        """How long ago the node made the event this monitor handled last (applied, found
        duplicate or refused), if it handled one in the last `recent_s` seconds: how far
        behind the nodes it is (else 0)."""
        if time.monotonic() - self._last_at > recent_s:
            return 0.0
        return max(0.0, self._last_lag)

    def resync_refused(self) -> None:
        """A resync's state found its host's row held by another process: tried again."""
        self.outcomes["busy"] += 1

    def resynced(self) -> None:
        """A full state report was fetched from a host."""
        self.outcomes["resyncs"] += 1

    def stats(self, sent_at: list[float]) -> None:
        now = time.time()
        self.outcomes["stats"] += len(sent_at)
        room = MAX_SAMPLES - len(self._stats_lags)
        self._stats_lags.extend(now - at for at in sent_at[:room])

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.flush()

    def flush(self) -> None:
        counts, self.outcomes = self.outcomes, Counter()
        events, self._event_lags = self._event_lags, []
        stats, self._stats_lags = self._stats_lags, []
        if not counts:
            return
        log.info(
            "monitor: in the last %.0f s: %d events applied, %d duplicate, %d stale, %d "
            "refused as early, %d as busy, %d stats samples written; node to database: events "
            "p50 %.0f ms p99 %.0f ms max %.0f ms, stats p99 %.0f ms; %d resyncs", self.interval_s,
            counts["applied"], counts["duplicate"], counts["stale"], counts["early"],
            counts["busy"], counts["stats"],
            1000 * percentile(events, 0.50), 1000 * percentile(events, 0.99),
            1000 * max(events, default=0.0), 1000 * percentile(stats, 0.99), counts["resyncs"])
