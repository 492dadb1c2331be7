"""When a host counts as cut off from a storage domain: pure rules over the monitor's
probes, with oVirt's reason for the non operational host.

One failed probe is not enough: a probe can lose a race with a busy server. A host is
judged unreachable from a domain after `needed` failed probes in a row, and reachable
again at its first successful one (oVirt's auto-recovery).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

# oVirt's `NonOperationalReason` for a host that cannot access an active domain of its DC.
STORAGE_DOMAIN_UNREACHABLE = "storage_domain_unreachable"
STRIKES_NEEDED = 2


class Strikes:
    """Failed probes in a row, per host and domain."""

    def __init__(self, needed: int = STRIKES_NEEDED) -> None:
        self.needed = max(1, needed)
        self._misses: dict[tuple[uuid.UUID, uuid.UUID], int] = {}

    def note(self, host_id: uuid.UUID, domain_id: uuid.UUID, reachable: bool) -> bool:
        """Record one probe; True when the host now counts as cut off from the domain."""
        key = (host_id, domain_id)
        if reachable:
            self._misses.pop(key, None)
            return False
        self._misses[key] = self._misses.get(key, 0) + 1
        return self._misses[key] >= self.needed

    def forget(self, host_id: uuid.UUID, keep: Iterable[uuid.UUID]) -> None:
        """Drop the counts of domains the host no longer has to reach."""
        kept = set(keep)
        for key in [k for k in self._misses if k[0] == host_id and k[1] not in kept]:
            del self._misses[key]
