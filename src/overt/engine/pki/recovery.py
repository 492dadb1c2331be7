"""`overt pki recover`: bring back a datacenter whose certificates have expired.

Run on the engine's machine (it needs the CAs' keys). It renews the CAs (same keys, so
what they issued stays valid), the engine's and the broker's certificates (when the
engine manages the broker's), and issues every enrolled
host a new certificate for the key the engine pinned for it: no node has to be
reached, and none has to prove anything new. A running engine serves its renewed
certificate within one check (`cert_check_interval_s`); each node, finding its own
certificate expired, asks the gateway and gets the one issued here.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import Host
from overt.engine.pki.authority import EnginePki
from overt.pki.certs import fingerprint, load_cert
from overt.pki.expiry import Expiry, expiry_of


@dataclass(frozen=True)
class Recovery:
    renewed: list[str]  # "server CA", "node CA", "engine", "broker", "host NAME"


async def recover(db: Database, pki: EnginePki) -> Recovery:
    renewed = pki.renew_due()
    now = pki.clock.now()
    async with db.transaction() as session:
        hosts = (await session.execute(select(Host).where(
            Host.certificate_pem.is_not(None), Host.host_uuid.is_not(None))
            .order_by(Host.name).with_for_update())).scalars().all()
        for host in hosts:
            assert host.certificate_pem is not None and host.host_uuid is not None
            current = load_cert(host.certificate_pem.encode())
            if expiry_of(current, now) is Expiry.OK and pki.issued_by_node_ca(current):
                continue  # (one of the server CA is from before the node CA: moved to it)
            host.certificate_pem = pki.reissue_node_certificate(host.certificate_pem,
                                                                host.host_uuid)
            host.certificate_fingerprint = fingerprint(load_cert(host.certificate_pem.encode()))
            renewed.append(f"host {host.name}")
        if renewed:
            audit.record(session, f"Certificates recovered: {', '.join(renewed)} renewed "
                         "(overt pki recover)", code=audit.CERTIFICATES_RECOVERED)
    return Recovery(renewed)
