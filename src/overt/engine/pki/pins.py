"""Which node certificate the engine accepts for each host: exactly the one it issued last.

A certificate that chains to the engine CA and names a host UUID is not enough: an old
key (renewed since) or a removed host's certificate stays CA-valid for its lifetime.
The gateway therefore accepts a node's connection only when the certificate's
fingerprint is the host's current one (`hosts.certificate_fingerprint`); removing a
host deletes its row, which revokes its certificate on the next check. With the
engine's PKI given, the pinned certificate must also come from a CA the engine still
accepts for nodes: once the pre-split CA is retired, a host pinned to one of its
certificates is refused (the TLS context may still hold that CA until a restart).
"""

from __future__ import annotations

import time
import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Host
from overt.engine.pki.authority import EnginePki
from overt.pki.certs import load_cert, same_fingerprint

# A positive answer is reused this long (the gateway checks every request of a fleet);
# a removed host or a renewed certificate is refused at most this much later.
CACHE_S = 2.0


class CertificatePins:
    def __init__(self, db: Database, *, cache_s: float = CACHE_S,
                 pki: EnginePki | None = None) -> None:
        self.db = db
        self.pki = pki
        self.cache_s = cache_s
        self._known: dict[uuid.UUID, tuple[str, float]] = {}

    async def accepts(self, host_uuid: uuid.UUID, fingerprint: str) -> bool:
        """Whether `fingerprint` is the current certificate of the host with `host_uuid`."""
        cached = self._known.get(host_uuid)
        if cached is not None and cached[1] > time.monotonic() and cached[0] == fingerprint:
            return True
        async with self.db.transaction() as session:
            row = (await session.execute(select(
                Host.certificate_fingerprint, Host.certificate_pem).where(
                Host.host_uuid == host_uuid))).one_or_none()
        pinned, pem = row if row is not None else (None, None)
        if not same_fingerprint(pinned, fingerprint) or (
                self.pki is not None and pem is not None
                and not self.pki.accepted_for_node(load_cert(pem.encode()))):
            self._known.pop(host_uuid, None)
            return False
        self._known[host_uuid] = (fingerprint, time.monotonic() + self.cache_s)
        return True
