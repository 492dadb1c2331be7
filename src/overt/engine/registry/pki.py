"""The engine's PKI in its data directory: the CA, the engine's own certificate, node certs."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

from cryptography import x509

from overt.pki.certs import (
    CertificateAuthority,
    cert_pem,
    certificate_request,
    key_pem,
    new_key,
    write_private,
)

ENGINE_CN = "engine"


class EnginePki:
    """Files: ca.pem, ca.key, engine.pem, engine.key (keys owner-only)."""

    def __init__(self, directory: Path, *, addresses: list[str]) -> None:
        self.directory = directory
        self.addresses = addresses

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "engine.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "engine.key"

    def ensure(self) -> None:
        """Create the CA and the engine certificate when they do not exist yet."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.ca_file.exists():
            CertificateAuthority.create(f"Overt engine CA {uuid.uuid4().hex[:8]}").save(
                self.directory)
        if not self.cert_file.exists():
            key = new_key()
            names = sorted({"localhost", "127.0.0.1", socket.gethostname(), *self.addresses})
            cert = self.ca.sign(certificate_request(key, ENGINE_CN, names))
            write_private(self.key_file, key_pem(key))
            self.cert_file.write_bytes(cert_pem(cert))

    @property
    def ca(self) -> CertificateAuthority:
        return CertificateAuthority.load(self.directory)

    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    def issue_node_certificate(self, csr_pem: str, host_uuid: uuid.UUID, address: str) -> str:
        """A node's certificate: CN and SAN carry its host UUID; the address the engine uses
        and the names the node asked for are SANs too."""
        csr = x509.load_pem_x509_csr(csr_pem.encode())
        try:
            asked = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            requested = [str(n.value) for n in asked]
        except x509.ExtensionNotFound:
            requested = []
        names = list(dict.fromkeys([f"urn:uuid:{host_uuid}", address, *requested]))
        cert = self.ca.sign(csr_pem.encode(), common_name=str(host_uuid), names=names)
        return cert_pem(cert).decode()
