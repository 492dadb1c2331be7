"""The image data server (ovirt-imageio) ends with the process that started it: an engine
or agent killed outright leaves no server behind holding its port and its tickets."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

STARTER = """
import asyncio, sys
from pathlib import Path
from overt.imageio.daemon import DaemonFiles, ImageioDaemon
home = Path(sys.argv[1])
daemon = ImageioDaemon(DaemonFiles(home, cert_file=home / "cert.pem", key_file=home / "key.pem",
                                   ca_file=home / "cert.pem"), address="127.0.0.1", port=0)
asyncio.run(daemon.ensure_started())
print(daemon._process.pid, flush=True)
sys.stdin.read()
"""


def _self_signed(home: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    (home / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (home / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in state  # a zombie no one reaps has ended all the same


def test_the_daemon_ends_when_its_starter_is_killed(tmp_path: Path) -> None:
    _self_signed(tmp_path)
    with subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as starter:
        assert starter.stdout is not None
        daemon_pid = int(starter.stdout.readline())
        assert _alive(daemon_pid)
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait()
    deadline = time.monotonic() + 15
    while _alive(daemon_pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(daemon_pid), "the image data server outlived the engine"
