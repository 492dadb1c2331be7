"""A private OpenLDAP server for tests: its own config, database, CA and loopback ports.

Seeded with a small tree: people alice, bob, carol (disabled), dave; groups `staff`
(alice) inside `engineers` (staff, bob) inside `everyone` (engineers), so alice belongs
to all three through nesting.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from overt.pki.certs import CertificateAuthority, cert_pem, certificate_request, key_pem, new_key
from tests.support.engine import free_port

SUFFIX = "dc=example,dc=com"
ROOT_DN = f"cn=admin,{SUFFIX}"
ROOT_PASSWORD = "root-Secret-1"
SERVICE_DN = f"cn=overt,{SUFFIX}"
SERVICE_PASSWORD = "service-Secret-1"
PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-1", "carol": "carol-Secret-1",
             "dave": "dave-Secret-1"}


def _conf(d: Path, port_tls: bool) -> str:
    schemas = "\n".join(f"include /etc/ldap/schema/{s}.schema"
                        for s in ("core", "cosine", "inetorgperson", "nis"))
    return f"""{schemas}
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d}/slapd.pid
argsfile {d}/slapd.args
TLSCACertificateFile {d}/ca.pem
TLSCertificateFile {d}/server.pem
TLSCertificateKeyFile {d}/server.key
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {d}/db
access to attrs=userPassword by self write by anonymous auth by * none
access to * by users read by * none
"""


def _seed() -> str:
    people = []
    for uid, (given, sn, extra) in {
        "alice": ("Alice", "Liddell", ""), "bob": ("Bob", "Builder", ""),
        "carol": ("Carol", "Danvers", "description: disabled\n"),
        "dave": ("Dave", "Lister", ""),
    }.items():
        people.append(f"""dn: uid={uid},ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: {uid}
cn: {given} {sn}
givenName: {given}
sn: {sn}
mail: {uid}@example.com
userPassword: {PASSWORDS[uid]}
{extra}""")
    return f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: {SERVICE_DN}
objectClass: person
cn: overt
sn: service
userPassword: {SERVICE_PASSWORD}

{chr(10).join(people)}
dn: cn=staff,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,{SUFFIX}

dn: cn=engineers,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: engineers
member: cn=staff,ou=groups,{SUFFIX}
member: uid=bob,ou=people,{SUFFIX}

dn: cn=everyone,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: everyone
member: cn=engineers,ou=groups,{SUFFIX}
"""


@dataclass
class Slapd:
    directory: Path
    port: int
    tls_port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def profile_toml(self, name: str = "example.com", *, servers: list[str] | None = None,
                     start_tls: bool = False, ca_file: Path | None = None) -> str:
        urls = ", ".join(f'"{u}"' for u in (servers or [self.url]))
        ca = f'ca_file = "{ca_file}"\n' if ca_file else ""
        return f"""[[ldap]]
name = "{name}"
servers = [{urls}]
start_tls = {"true" if start_tls else "false"}
{ca}bind_dn = "{SERVICE_DN}"
bind_password = "{SERVICE_PASSWORD}"
user_base = "ou=people,{SUFFIX}"
group_base = "ou=groups,{SUFFIX}"
user_filter = "(&(objectClass=inetOrgPerson)(!(description=disabled)))"
timeout_s = 2.0
"""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_slapd(directory: Path) -> Slapd:
    """Start slapd on two free loopback ports (ldap:// with StartTLS, ldaps://) and seed it."""
    slapd = shutil.which("slapd") or "/usr/sbin/slapd"
    if not Path(slapd).exists() or shutil.which("ldapadd") is None:
        raise RuntimeError("slapd and ldap-utils are needed: run scripts/setup (apt-get "
                           "install slapd ldap-utils)")
    (directory / "db").mkdir(parents=True)
    ca = CertificateAuthority.create("Test LDAP CA")
    key = new_key()
    cert = ca.sign(certificate_request(key, "127.0.0.1", ["127.0.0.1", "localhost"]))
    (directory / "ca.pem").write_bytes(cert_pem(ca.cert))
    (directory / "server.pem").write_bytes(cert_pem(cert))
    (directory / "server.key").write_bytes(key_pem(key))
    (directory / "slapd.conf").write_text(_conf(directory, True))
    port, tls_port = free_port(), free_port()
    with (directory / "slapd.log").open("wb") as log:
        process = subprocess.Popen(
            [slapd, "-d", "0", "-f", str(directory / "slapd.conf"),
             "-h", f"ldap://127.0.0.1:{port}/ ldaps://127.0.0.1:{tls_port}/"],
            stdout=log, stderr=subprocess.STDOUT)
    server = Slapd(directory, port, tls_port, process)
    (directory / "seed.ldif").write_text(_seed())
    deadline = time.monotonic() + 20
    while True:
        done = subprocess.run(["ldapadd", "-x", "-H", server.url, "-D", ROOT_DN, "-w",
                               ROOT_PASSWORD, "-f", str(directory / "seed.ldif")],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return server
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"slapd did not start or seed: {done.stderr}\n"
                               f"{(directory / 'slapd.log').read_text()[-2000:]}")
        time.sleep(0.2)
