"""TLS for the direct transport: identities (CA, certificate, key files) and SSL contexts.

The engine's server CA signs its certificate (CN and DNS name `engine`), the node CA
a node's (its host UUID, SAN `urn:uuid:...`). Each side's `TlsFiles.ca_file` is the
CA of its peers: the server CA on a node, the node CA on the engine, so neither CA
vouches for the other side's names. Nodes check the engine's name; the engine
identifies nodes by host UUID and pinned fingerprint.
"""

from __future__ import annotations

import ssl
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.x509.oid import NameOID

from overt.pki.certs import (
    CertificateAuthority,
    cert_pem,
    certificate_request,
    key_pem,
    new_key,
    write_private,
)

ENGINE_COMMON_NAME = "engine"
# The DNS name every engine certificate carries and nodes check (TLS server_hostname):
# the engine CA never puts a DNS name in a node's certificate, so no node can pass for
# the engine towards another node.
ENGINE_SERVER_NAME = "engine"


@dataclass(frozen=True)
class TlsFiles:
    """A peer's TLS identity on disk: the CA it trusts, its certificate and its key."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self, *, client_certs: ssl.VerifyMode) -> ssl.SSLContext:
        """A server context; `client_certs` CERT_REQUIRED or CERT_OPTIONAL (checked vs the CA)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.load_verify_locations(cafile=self.ca_file)
        ctx.verify_mode = client_certs
        return ctx

    def engine_client_context(self) -> ssl.SSLContext:
        """A node's context towards the engine: the CA, and the engine's name checked
        (connect with server_hostname=ENGINE_SERVER_NAME)."""
        ctx = self.client_context()
        ctx.check_hostname = True
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that shows our certificate and trusts only the CA."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = False  # peers are identified by CA + names, not DNS
        ctx.load_verify_locations(cafile=self.ca_file)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def issue_engine_identity(ca: CertificateAuthority, directory: Path,
                          names: list[str]) -> TlsFiles:
    """Make the engine's key and CA-signed certificate (CN `engine`) in `directory`."""
    names = list(dict.fromkeys([ENGINE_SERVER_NAME, *names]))
    key = new_key()
    cert = ca.sign(certificate_request(key, ENGINE_COMMON_NAME, names),
                   common_name=ENGINE_COMMON_NAME, names=names)
    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(directory / "ca.pem", directory / "engine.pem", directory / "engine.key")
    files.ca_file.write_bytes(cert_pem(ca.cert))
    files.cert_file.write_bytes(cert_pem(cert))
    write_private(files.key_file, key_pem(key))
    return files


def peer_certificate(request: web.Request) -> x509.Certificate | None:
    """The client certificate of a request's TLS connection, if the client showed one."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None


def common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


def node_names(host_uuid: uuid.UUID, hostname: str, address: str | None) -> list[str]:
    """What a node's certificate names: its identity, hostname and address."""
    names = [f"urn:uuid:{host_uuid}", hostname]
    if address:
        names.append(address)
    return names
