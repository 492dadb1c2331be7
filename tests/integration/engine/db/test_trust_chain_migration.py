"""Hosts enrolled before keys were recorded keep working after the upgrade: the migration
records the key of their certificate (renewals) or of their approved request."""

from __future__ import annotations

import uuid
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, text

from overt.engine.db import migrate
from overt.pki.certs import (
    CertificateAuthority,
    cert_pem,
    certificate_request,
    key_fingerprint,
    new_key,
)


def test_enrolled_and_approved_hosts_get_their_keys(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/engine.db"
    config = migrate.alembic_config(url)
    command.upgrade(config, "0002")
    enrolled_key, approved_key = new_key(), new_key()
    cert = CertificateAuthority.create("t").sign(
        certificate_request(enrolled_key, "n", ["urn:uuid:x"]))
    engine = create_engine(url)
    with engine.begin() as db:
        cluster = uuid.uuid4().hex  # SQLite does not enforce the foreign key here
        for name, status, pem, csr in [
                ("enrolled", "up", cert_pem(cert).decode(), None),
                ("approved", "installing", None,
                 certificate_request(approved_key, "n", ["urn:uuid:y"]).decode())]:
            db.execute(text(
                "INSERT INTO hosts (id, name, description, address, port, cluster_id, status, "
                "status_detail, certificate_pem, pending_csr, capabilities, memory_mib, "
                "free_memory_mib, cpu_percent, last_seq, needs_resync, created_at) VALUES "
                "(:id, :name, '', 'a', 1, :cluster, :status, '', :pem, :csr, '{}', 0, 0, 0, "
                "0, 0, CURRENT_TIMESTAMP)"),
                {"id": uuid.uuid4().hex, "name": name, "cluster": cluster, "status": status,
                 "pem": pem, "csr": csr})
    migrate.upgrade(url)
    with engine.connect() as db:
        rows = dict((r[0], (r[1], r[2])) for r in db.execute(text(
            "SELECT name, key_fingerprint, approved_key_fingerprint FROM hosts")))
    engine.dispose()
    enrolled = key_fingerprint(enrolled_key.public_key())
    approved = key_fingerprint(approved_key.public_key())
    assert rows == {"enrolled": (enrolled, enrolled), "approved": (approved, approved)}
