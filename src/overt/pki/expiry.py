"""When a certificate is due for renewal, and when its expiry is worth an alert.

Renewal starts a third of the lifetime before expiry, and never later than 90 days
before (nodes' 825-day certificates: 275 days ahead); the CA's ten years, a year
ahead. An alert fires once a certificate has 30 days or less left: by then renewal
should long have happened, so something stops it (or rotation is off).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509

from overt.pki.certs import CA_VALIDITY, CERT_VALIDITY

RENEW_BEFORE_MIN = dt.timedelta(days=90)
ALERT_BEFORE = dt.timedelta(days=30)


class Expiry(StrEnum):
    OK = "ok"
    RENEW = "renew"  # due for renewal (quietly)
    ALERT = "alert"  # 30 days or less left
    EXPIRED = "expired"


@dataclass(frozen=True)
class CertificateState:
    what: str  # "server CA", "node CA", "engine", "broker", "host NAME"
    not_after: dt.datetime
    expiry: Expiry

    def days_left(self, now: dt.datetime) -> int:
        return (self.not_after - now).days


def renew_before(cert: x509.Certificate) -> dt.timedelta:
    # The nominal lifetime: a certificate issued by a clock ahead of the real time is
    # dated from the real time (see certs.valid_from), which must not stretch it.
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    lifetime = min(cert.not_valid_after_utc - cert.not_valid_before_utc,
                   CA_VALIDITY if is_ca else CERT_VALIDITY)
    return max(lifetime / 3, RENEW_BEFORE_MIN) if lifetime > RENEW_BEFORE_MIN * 3 \
        else lifetime / 3


def expiry_of(cert: x509.Certificate, now: dt.datetime) -> Expiry:
    left = cert.not_valid_after_utc - now
    if left <= dt.timedelta(0):
        return Expiry.EXPIRED
    if left <= ALERT_BEFORE:
        return Expiry.ALERT
    if left <= renew_before(cert):
        return Expiry.RENEW
    return Expiry.OK


def state_of(what: str, cert: x509.Certificate, now: dt.datetime) -> CertificateState:
    return CertificateState(what, cert.not_valid_after_utc, expiry_of(cert, now))


def expired(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_after_utc <= now
