"""Certificates that cannot take the cluster down: the engine's periodic look at every expiry.

Each check renews the CA and the engine's certificate when due (with rotation on),
makes the engine's servers and clients use a renewed certificate at once (also one
`overt pki recover` wrote), and records one alert event per certificate that has 30
days or less left, or has expired: nodes renew their own certificates through the
gateway (see Registry), so a node's alert means that renewal is not happening.

After an upgrade from a one-CA data directory, each check also looks for hosts still
on the pre-split CA (nodes move themselves to the node CA by renewing early); once
none is left, that CA stops being accepted for nodes (`retire_legacy_ca`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.database import Database
from overt.engine.db.tables import Host
from overt.engine.model.status import LogSeverity
from overt.engine.pki.authority import EnginePki
from overt.pki.certs import fingerprint, load_cert
from overt.pki.expiry import CertificateState, Expiry, state_of

log = logging.getLogger(__name__)


async def hosts_on_legacy_ca(db: Database, pki: EnginePki) -> list[str]:
    """Names of the hosts whose current certificate the pre-split CA issued."""
    async with db.transaction() as session:
        rows = (await session.execute(select(Host.name, Host.certificate_pem).where(
            Host.certificate_pem.is_not(None)).order_by(Host.name))).all()
    return [name for name, pem in rows
            if pem and pki.issued_by_legacy_ca(load_cert(pem.encode()))]


async def certificate_states(db: Database, pki: EnginePki) -> list[CertificateState]:
    """Every certificate the engine knows of: the CA, its own, each enrolled host's."""
    now = pki.clock.now()
    states = pki.states()
    async with db.transaction() as session:
        rows = (await session.execute(select(Host.name, Host.certificate_pem).where(
            Host.certificate_pem.is_not(None)).order_by(Host.name))).all()
    for name, pem in rows:
        if pem:
            states.append(state_of(f"host {name}", load_cert(pem.encode()), now))
    return states


class CertificateWatch:
    def __init__(self, db: Database, pki: EnginePki, *, rotation: bool, interval_s: float,
                 reload: Callable[[], None]) -> None:
        self.db = db
        self.pki = pki
        self.rotation = rotation
        self.interval_s = interval_s
        self.reload = reload
        self._loaded = fingerprint(pki.engine_certificate())
        self._alerted: set[tuple[str, object, Expiry]] = set()

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except (OSError, ValueError, SQLAlchemyError) as exc:
                log.error("cannot check the certificates' expiry now: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def check(self) -> list[CertificateState]:
        renewed = await asyncio.to_thread(self.pki.renew_due) if self.rotation else []
        current = fingerprint(self.pki.engine_certificate())
        if current != self._loaded:
            self._loaded = current
            self.reload()
            log.info("the engine serves its renewed certificate %s", current[:23])
        states = await certificate_states(self.db, self.pki)
        retired = self.pki.legacy_ca() is not None and not await hosts_on_legacy_ca(
            self.db, self.pki) and await asyncio.to_thread(self.pki.retire_legacy_ca)
        if retired:
            self.reload()  # new connections to nodes no longer trust the pre-split CA
            log.info("every host has moved to the node CA: the pre-split CA is no longer "
                     "accepted for nodes")
        async with self.db.transaction() as session:
            if retired:
                audit.record(session, "Every host now has a certificate of the node CA: "
                             "certificates of the pre-split engine CA are no longer accepted "
                             "for nodes", code=audit.CERTIFICATE_RENEWED)
            if renewed:
                audit.record(session, f"Renewed the {' and '.join(renewed)} certificate(s) "
                             "before they expire", code=audit.CERTIFICATE_RENEWED)
            for state in states:
                if state.expiry in (Expiry.ALERT, Expiry.EXPIRED):
                    self._alert(session, state)
        return states

    def _alert(self, session: AsyncSession, state: CertificateState) -> None:
        key = (state.what, state.not_after, state.expiry)
        if key in self._alerted:
            return
        self._alerted.add(key)
        when = state.not_after.strftime("%Y-%m-%d %H:%M UTC")
        text = (f"The {state.what} certificate expired on {when}"
                if state.expiry is Expiry.EXPIRED else
                f"The {state.what} certificate expires on {when} and was not renewed")
        hint = ("; run `overt pki recover` on the engine" if state.expiry is Expiry.EXPIRED
                else "; check that certificate rotation is on (`overt pki status`)")
        audit.record(session, text + hint, code=audit.CERTIFICATE_EXPIRING,
                     severity=LogSeverity.ERROR if state.expiry is Expiry.EXPIRED
                     else LogSeverity.WARNING)
        log.warning("%s%s", text, hint)
