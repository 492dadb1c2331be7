"""The broker's TLS certificate, issued and rotated by the engine (a RabbitMQ Overt manages).

The engine writes the server CA (`ca.pem`), the broker's certificate (`broker.pem`)
and key (`broker.key`) into the directory RabbitMQ's `ssl_options` point at (see
docs/broker.md), then makes RabbitMQ read them again: RabbitMQ caches PEM files, and
clearing that cache makes the next handshake use the new certificate. Connections
already open keep theirs (it was checked at their handshake): nodes stay connected
through a rotation, and reconnect to the new certificate, which chains to the same
server CA, with the same names.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import grp
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from overt.pki.certs import (
    CertificateAuthority,
    cert_pem,
    certificate_request,
    key_pem,
    load_cert,
    new_key,
)

log = logging.getLogger(__name__)

BROKER_CN = "broker"
# RabbitMQ runs as this user and reads the key through its group.
RABBITMQ_GROUP = "rabbitmq"


@dataclass(frozen=True)
class BrokerTls:
    """Where the broker reads its TLS files, the names its certificate carries (the
    addresses nodes and engine processes use), and how to make it read them again."""

    directory: Path
    names: tuple[str, ...]
    reload: Callable[[], None] | None = None

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "broker.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "broker.key"

    def certificate(self) -> x509.Certificate | None:
        try:
            return load_cert(self.cert_file.read_bytes())
        except (FileNotFoundError, ValueError):
            return None

    def current(self, ca: CertificateAuthority) -> bool:
        """Whether the installed certificate is this CA's, for these names."""
        cert = self.certificate()
        if cert is None or cert.issuer != ca.cert.subject or not self.ca_file.exists():
            return False
        try:
            sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return False
        named = {str(v) for v in sans.get_values_for_type(x509.DNSName)} | {
            str(v) for v in sans.get_values_for_type(x509.IPAddress)}
        return set(self.names) <= named

    def install(self, ca: CertificateAuthority, *, now: dt.datetime) -> x509.Certificate:
        """Issue the broker a new key and certificate from `ca`, write them where the broker
        reads them, and make it read them again."""
        key = new_key()
        names = list(dict.fromkeys(self.names))
        cert = ca.sign(certificate_request(key, BROKER_CN, names),
                       common_name=BROKER_CN, names=names, now=now)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        _readable_by_broker(self.directory)
        _write(self.ca_file, cert_pem(ca.cert), 0o644)
        _write(self.key_file, key_pem(key), 0o640)
        _write(self.cert_file, cert_pem(cert), 0o644)
        log.info("installed the broker's certificate (until %s) in %s",
                 cert.not_valid_after_utc, self.directory)
        if self.reload is not None:
            try:
                self.reload()
            except (OSError, RuntimeError) as exc:  # CommandFailed is a RuntimeError
                log.warning("the broker was not told to read its new certificate (%s); it "
                            "reads it at its next start", exc)
        return cert


def _write(path: Path, data: bytes, mode: int) -> None:
    """Replace a file at once (the broker never reads half of it)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.touch(mode=0o600)
    tmp.chmod(0o600)
    tmp.write_bytes(data)
    _readable_by_broker(tmp)
    tmp.chmod(mode)
    tmp.replace(path)


def _readable_by_broker(path: Path) -> None:
    """Give the file to the broker's group (when there is one and this process may)."""
    try:
        gid = grp.getgrnam(RABBITMQ_GROUP).gr_gid
    except KeyError:
        return
    if os.geteuid() == 0:
        with contextlib.suppress(OSError):
            shutil.chown(path, group=gid)
