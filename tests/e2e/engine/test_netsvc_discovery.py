"""`overt engine` with an address plan runs the network services next to its other parts:
a real `overt node` started with no engine URL, on the managed network, finds the engine by
the DNS SRV record the engine's dnsmasq publishes and asks to join; stopping the engine
stops its dnsmasq and chronyd. Engine and node each live in a private network namespace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from overt.lab import netns
from tests.support.demo import wait_until
from tests.support.netns_pair import Wire, veth_pair

pytestmark = pytest.mark.slow

PASSWORD = "test-Password-1"
API_PORT = 8443
GATEWAY_PORT = 8444


@pytest.fixture
def wire() -> Iterator[Wire]:
    with veth_pair("56:6f:00:33:01:01") as w:
        yield w


def _engine(wire: Wire, base: Path) -> subprocess.Popen[bytes]:
    plan = base / "netsvc.toml"
    plan.write_text(
        'domain = "overt.test"\nupstream_dns = []\n[[networks]]\nname = "ovirtmgmt"\n'
        f'interface = "{wire.engine_if}"\nsubnet = "{wire.subnet}"\naddress = "{wire.host(1)}"\n'
        f'dhcp_range = "{wire.host(100)}-{wire.host(150)}"\n'
        f'reserved_range = "{wire.host(10)}-{wire.host(50)}"\n')
    argv = ["ip", "netns", "exec", wire.engine_ns, sys.executable, "-m", "overt", "engine",
            "--data-dir", str(base / "engine"), "--address", str(wire.host(1)),
            "--port", str(API_PORT), "--public-address", str(wire.host(1)),
            "--netsvc-file", str(plan)]
    with (base / "engine.log").open("ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "OVERT_ADMIN_PASSWORD": PASSWORD})


def _node(wire: Wire, base: Path) -> subprocess.Popen[bytes]:
    address = str(wire.host(200))
    argv = ["ip", "netns", "exec", wire.vm_ns, sys.executable, "-m", "overt", "node",
            "--listen-address", address, "--advertise-address", address,
            "--data-dir", str(base / "node"), "--storage-dir", str(base / "images"),
            "--engine-ca-file", str(base / "engine" / "pki" / "ca.pem"),
            "--discovery-domain", "overt.test", "--discovery-nameserver", str(wire.host(1))]
    env = {**os.environ, "OVERT_NODE_ANNOUNCE_INTERVAL_S": "1"}
    with (base / "node.log").open("ab") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env)


def _hosts(wire: Wire, base: Path) -> list[dict[str, str]]:
    """The engine's hosts, as the official SDK shows them (from the engine's namespace)."""
    code = (
        "import json, ovirtsdk4 as sdk\n"
        f"c = sdk.Connection(url='https://{wire.host(1)}:{API_PORT}/ovirt-engine/api', "
        f"username='admin@internal', password='{PASSWORD}', "
        f"ca_file='{base / 'engine' / 'pki' / 'ca.pem'}')\n"
        "print(json.dumps([{'name': h.name, 'address': h.address, 'status': str(h.status)} "
        "for h in c.system_service().hosts_service().list()]))\n")
    done = wire.run_in(wire.engine_ns, sys.executable, "-c", code)
    return json.loads(done.stdout) if done.returncode == 0 else []


def _stop(process: subprocess.Popen[bytes], log: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if log.exists():
        print(f"==== {log.name}\n{log.read_text(errors='replace')[-3000:]}")


def test_node_without_engine_url_enrolls_through_the_srv_record(wire: Wire) -> None:
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="nsv-e2e-"))
    engine = _engine(wire, base)
    node: subprocess.Popen[bytes] | None = None
    try:
        ca = base / "engine" / "pki" / "ca.pem"
        wait_until(lambda: ca.exists() and (base / "engine" / "netsvc" / "chrony.conf").exists(),
                   90, "the engine to start its network services")
        node = _node(wire, base)
        pending = wait_until(lambda: next(iter(_hosts(wire, base)), None), 90,
                             "the node to find the engine and announce itself")
        assert pending["address"] == str(wire.host(200))
        assert pending["status"] == "pending_approval"
        assert "found the engine by DNS" in (base / "node.log").read_text()
        daemons = netns.pids_in(wire.engine_ns)
        assert len(daemons) >= 3  # the engine, its dnsmasq and its chronyd
    finally:
        if node is not None:
            _stop(node, base / "node.log")
        _stop(engine, base / "engine.log")
    # Stopping the engine stopped what it started.
    assert engine.returncode == 0
    assert netns.pids_in(wire.engine_ns) == []
    subprocess.run(["rm", "-rf", str(base)], check=False)
