"""Finding: approval was not tied to a key. An administrator approves the node that asked to
join; an attacker who knows its host UUID (every node certificate shows one) then asks
with a key of its own and must not get a certificate for that host."""

from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from overt.pki.certs import load_cert
from overt.protocol.enrollment import EnrollmentStatus
from tests.security.conftest import FakeNode
from tests.support.engine import RunningEngine


def test_hijack_by_uuid(engine: RunningEngine, connection: sdk.Connection) -> None:
    node = FakeNode()
    assert node.announce(engine).status is EnrollmentStatus.PENDING_APPROVAL
    hosts = connection.system_service().hosts_service()
    [pending] = hosts.list()
    assert pending.status == types.HostStatus.PENDING_APPROVAL
    hosts.host_service(pending.id).approve()

    attacker = FakeNode(host_uuid=node.host_uuid)  # same public UUID, its own key
    stolen = attacker.announce(engine)
    assert stolen.status is not EnrollmentStatus.APPROVED, "the attacker's key was certified"
    assert stolen.certificate_pem is None

    grant = node.announce(engine)  # the approved node still gets its certificate
    assert grant.status is EnrollmentStatus.APPROVED and grant.certificate_pem
    cert = load_cert(grant.certificate_pem.encode())
    assert cert.public_key() == node.key.public_key()
    events = [e.description for e in connection.system_service().events_service().list(max=10)]
    assert any("not the key the administrator approved" in e for e in events)
