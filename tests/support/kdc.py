"""A private MIT Kerberos KDC for tests: its own realm, database, config and loopback port.

It holds the engine's service principal HTTP/127.0.0.1 (its keys in a keytab the engine
reads) and user principals for the test directory's people.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.engine import free_port

REALM = "OVERT.TEST"
MASTER_PASSWORD = "master-Secret-1"


@dataclass
class Kdc:
    directory: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def krb5_conf(self) -> Path:
        return self.directory / "krb5.conf"

    @property
    def keytab(self) -> Path:
        return self.directory / "http.keytab"

    def env(self, ccache: Path | None = None) -> dict[str, str]:
        env = {"KRB5_CONFIG": str(self.krb5_conf),
               "KRB5_KDC_PROFILE": str(self.directory / "kdc.conf"),
               "KRB5RCACHETYPE": "none"}
        if ccache is not None:
            env["KRB5CCNAME"] = f"FILE:{ccache}"
        return env

    def admin(self, query: str) -> None:
        subprocess.run(["kadmin.local", "-r", REALM, "-q", query],
                       env={**os.environ, **self.env()}, check=True, capture_output=True)

    def kinit(self, principal: str, password: str, ccache: Path, *,
              lifetime: str | None = None) -> None:
        args = ["kinit", *(["-l", lifetime] if lifetime else []), f"{principal}@{REALM}"]
        subprocess.run(args, input=password + "\n", text=True, check=True,
                       capture_output=True, env={**os.environ, **self.env(ccache)})

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_kdc(directory: Path, users: dict[str, str]) -> Kdc:
    """Create the realm, its principals and the engine's keytab, and start krb5kdc."""
    for tool in ("krb5kdc", "kdb5_util", "kadmin.local", "kinit"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise RuntimeError(f"{tool} is missing: run scripts/setup (krb5-kdc, "
                               "krb5-admin-server, krb5-user)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    (directory / "krb5.conf").write_text(f"""[libdefaults]
 default_realm = {REALM}
 dns_lookup_realm = false
 dns_lookup_kdc = false
 dns_canonicalize_hostname = false
 rdns = false
 udp_preference_limit = 1
 # one second of tolerated clock skew, not five minutes, so a test sees a ticket expire
 clockskew = 1
[realms]
 {REALM} = {{
  kdc = 127.0.0.1:{port}
 }}
[domain_realm]
 127.0.0.1 = {REALM}
""")
    (directory / "kdc.conf").write_text(f"""[kdcdefaults]
 kdc_ports = {port}
 kdc_tcp_ports = {port}
[realms]
 {REALM} = {{
  database_name = {directory}/principal
  key_stash_file = {directory}/stash
  acl_file = {directory}/kadm5.acl
  max_life = 10h
 }}
[logging]
 kdc = FILE:{directory}/kdc.log
""")
    (directory / "kadm5.acl").write_text("")
    env = {**os.environ, "KRB5_CONFIG": str(directory / "krb5.conf"),
           "KRB5_KDC_PROFILE": str(directory / "kdc.conf")}
    subprocess.run(["kdb5_util", "create", "-s", "-r", REALM, "-P", MASTER_PASSWORD],
                   env=env, check=True, capture_output=True)
    with (directory / "krb5kdc.out").open("wb") as out:
        process = subprocess.Popen(["krb5kdc", "-n", "-r", REALM], env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    kdc = Kdc(directory, port, process)
    try:
        kdc.admin("addprinc -randkey HTTP/127.0.0.1")
        kdc.admin(f"ktadd -k {kdc.keytab} HTTP/127.0.0.1")
        for name, password in users.items():
            kdc.admin(f"addprinc -pw {password} {name}")
        deadline = time.monotonic() + 20
        probe = directory / "probe.ccache"
        name, password = next(iter(users.items()))
        while True:  # the KDC answers once a kinit works
            try:
                kdc.kinit(name, password, probe)
                return kdc
            except subprocess.CalledProcessError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"krb5kdc did not start: {exc.stderr}") from None
                time.sleep(0.2)
    except BaseException:
        kdc.stop()
        raise
