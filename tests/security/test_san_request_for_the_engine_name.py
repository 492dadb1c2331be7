"""Finding: the CA signed any name a node asked for. An enrolled node must not get a
certificate naming the engine (or any host name or address), with which it could pass
for the engine towards other nodes, or for the API towards clients."""

from __future__ import annotations

import socket

import ovirtsdk4 as sdk
from cryptography import x509

from overt.bus.direct.tls import ENGINE_COMMON_NAME
from overt.pki.certs import load_cert
from overt.protocol.enrollment import EnrollmentStatus
from tests.security.conftest import FakeNode
from tests.support.engine import RunningEngine


def test_san_request_for_the_engine_name(engine: RunningEngine,
                                         connection: sdk.Connection) -> None:
    node = FakeNode()
    wanted = [f"urn:uuid:{node.host_uuid}", ENGINE_COMMON_NAME, "localhost",
              socket.gethostname(), "127.0.0.1", "broker.example"]
    node.announce(engine, wanted)
    hosts = connection.system_service().hosts_service()
    [pending] = hosts.list()
    hosts.host_service(pending.id).approve()
    grant = node.announce(engine, wanted)
    assert grant.status is EnrollmentStatus.APPROVED and grant.certificate_pem
    cert = load_cert(grant.certificate_pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [], "the node got host names"
    assert sans.get_values_for_type(x509.IPAddress) == [], "the node got addresses"
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"urn:uuid:{node.host_uuid}"]
    assert cert.subject.rfc4514_string() == f"CN={node.host_uuid}"
