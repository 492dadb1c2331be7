"""Which node certificate the engine accepts for each host: exactly the one it issued last.

A certificate that chains to the engine CA and names a host UUID is not enough: an old
key (renewed since) or a removed host's certificate stays CA-valid for its lifetime.
The gateway therefore accepts a node's connection only when the certificate's
fingerprint is the host's current one (`hosts.certificate_fingerprint`); removing a
host deletes its row, which revokes its certificate on the next check.
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Host
from overt.pki.certs import same_fingerprint

# A positive answer is reused this long (the gateway checks every request of a fleet);
# a removed host or a renewed certificate is refused at most this much later.
CACHE_S = 2.0


class CertificatePins:
    def __init__(self, db: Database, *, cache_s: float = CACHE_S) -> None:
        self.db = db
        self.cache_s = cache_s
        self._known: dict[uuid.UUID, tuple[str, float]] = {}

    async def accepts(self, host_uuid: uuid.UUID, fingerprint: str) -> bool:
        """Whether `fingerprint` is the current certificate of the host with `host_uuid`."""
        cached = self._known.get(host_uuid)
        if cached is not None and cached[1] > time.monotonic() and cached[0] == fingerprint:
            return True
        async with self.db.transaction() as session:
            pinned = (await session.execute(select(Host.certificate_fingerprint).where(
                Host.host_uuid == host_uuid))).scalar_one_or_none()
        if not same_fingerprint(pinned, fingerprint):
            self._known.pop(host_uuid, None)
            return False
        self._known[host_uuid] = (fingerprint, time.monotonic() + self.cache_s)
        return True
