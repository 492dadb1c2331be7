"""A lab node's virtual BMC, driven by the real `fence_ipmilan`: power off kills the node's
libvirtd and every QEMU on it, power on brings its libvirtd back."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from overt.lab.lab import Lab
from overt.lab.node_power import node_processes
from overt.lab.topology import LabSpec, Topology
from overt.system.daemons import ensure_libvirtd
from overt.system.waiting import unix_socket_answers
from tests.conftest import require_root

pytestmark = [pytest.mark.lab, pytest.mark.slow]
PASSWORD = "Lab-Bmc-Pw-5"
# A lab of its own: powering a node off and on must not disturb the lab the other tests
# share (a node of the shared lab came back without its namespace after this test).
BMC_LAB = LabSpec(nodes=1, prefix="ovbmc",
                  address_block=os.environ.get("OVERT_TEST_BMC_LAB_BLOCK", "10.214.0.0/16"))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_root()
    ensure_libvirtd()
    lab = Lab(Topology(BMC_LAB))
    lab.up()
    yield lab
    lab.down()


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fence(port: int, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["fence_ipmilan"], input=(
        f"action={action}\nip=127.0.0.1\nipport={port}\nusername=admin\n"
        f"password={PASSWORD}\nlanplus=1\n"), capture_output=True, text=True, check=False,
        timeout=120)


@pytest.fixture
def node1_bmc(lab: Lab, tmp_path: Path) -> Iterator[int]:
    (tmp_path / "pw").write_text(PASSWORD)
    port = _udp_port()
    with (tmp_path / "bmc.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "overt.lab.bmc", "--lab-node", "node1", "--lab-prefix",
             BMC_LAB.prefix, "--port", str(port), "--password-file", str(tmp_path / "pw")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while "listening" not in (tmp_path / "bmc.log").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, \
            (tmp_path / "bmc.log").read_text()
        time.sleep(0.2)
    yield port
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    lab.hypervisor("node1").ensure_running()  # leave the lab as it was


def test_power_off_and_on_through_the_bmc(lab: Lab, node1_bmc: int) -> None:
    hypervisor = lab.hypervisor("node1")
    anchor = hypervisor.anchor()
    assert anchor is not None
    qemu = subprocess.Popen(lab.exec_argv("node1", [
        "qemu-system-x86_64", "-machine", "none", "-nodefaults", "-nographic", "-S",
        "-display", "none", "-serial", "none", "-monitor", "none"]), stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not any(Path(f"/proc/{p}/comm").read_text().startswith("qemu")
                      for p in node_processes(anchor) if Path(f"/proc/{p}").exists()):
            assert qemu.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)

        status = fence(node1_bmc, "status")
        assert (status.returncode, "Status: ON" in status.stdout) == (0, True), status.stderr
        off = fence(node1_bmc, "off")
        assert off.returncode == 0, off.stderr
        assert not unix_socket_answers(str(hypervisor.socket))
        assert qemu.wait(timeout=30) == -signal.SIGKILL  # the node's QEMU died with it
        assert fence(node1_bmc, "status").returncode == 2  # off
        assert hypervisor.anchor() == anchor  # the node itself (its namespace) remains

        on = fence(node1_bmc, "on")
        assert on.returncode == 0, on.stderr
        assert unix_socket_answers(str(hypervisor.socket))
        assert "Status: ON" in fence(node1_bmc, "status").stdout
    finally:
        if qemu.poll() is None:
            qemu.kill()
            qemu.wait()
