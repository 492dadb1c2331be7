"""Several api processes share the engine's data directory; each checks the certificates'
expiry on its own. Finding the engine's certificate due at the same moment, they must
renew it once, and leave a key that matches the certificate beside it."""

from __future__ import annotations

import datetime as dt
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path

from overt.clock import Clock
from overt.engine.pki.authority import EnginePki
from overt.pki.certs import fingerprint
from overt.pki.expiry import Expiry, expiry_of

PROCESSES = 4
AHEAD = dt.timedelta(days=700)  # the engine's 825-day certificate is due, not expired

RENEW = """
import json, sys, time
from pathlib import Path
from overt.clock import Clock
from overt.engine.pki.authority import EnginePki
directory, go, offset = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
pki = EnginePki(directory, addresses=["127.0.0.1"], clock=Clock(offset))
while not go.exists():
    time.sleep(0.001)
print(json.dumps(pki.renew_due()))
"""


def test_api_processes_renewing_at_the_same_moment_renew_once(tmp_path: Path) -> None:
    directory = tmp_path / "pki"
    EnginePki(directory, addresses=["127.0.0.1"]).ensure()
    before = fingerprint(EnginePki(directory, addresses=[]).engine_certificate())
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", RENEW, str(directory), str(go),
                                 str(AHEAD.total_seconds())], stdout=subprocess.PIPE,
                                text=True) for _ in range(PROCESSES)]
    time.sleep(1.0)  # every process started and waits for the signal
    go.touch()
    results = [json.loads(w.communicate(timeout=60)[0]) for w in workers]
    assert all(w.returncode == 0 for w in workers)

    assert sorted(results, key=len) == [[]] * (PROCESSES - 1) + [["engine"]]
    pki = EnginePki(directory, addresses=[], clock=Clock(AHEAD.total_seconds()))
    renewed = pki.engine_certificate()
    assert fingerprint(renewed) != before
    assert expiry_of(renewed, pki.clock.now()) is Expiry.OK
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)  # the key is the certificate's
