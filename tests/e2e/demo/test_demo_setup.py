"""The demo's set-up as a new user meets it: an agent slow to start the first time, a run
after a failed install, and a Ctrl-C (or a kill) in the middle of the set-up."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator

import ovirtsdk4.types as types
import pytest

from overt.system.processes import alive
from overt.system.waiting import tcp_port_answers
from tests.e2e.demo.conftest import new_demo
from tests.support.demo import Demo, wait_until
from tests.support.private_libvirt import PrivateLibvirt

pytestmark = [pytest.mark.slow]


@pytest.fixture
def demo() -> Iterator[Demo]:
    """A demo not started yet; stopped (with its agent) and removed at the end."""
    made = new_demo(None)
    yield made
    made.stop()
    made.print_logs()
    with contextlib.suppress(OSError, ValueError):
        pid = int(made.agent_pidfile.read_text())
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(made.data_dir.parent, ignore_errors=True)


@pytest.fixture
def private_demo() -> Iterator[Demo]:
    """A demo (not started yet) on a libvirtd of its own, so that no VM of this machine's
    shared libvirtd shows up on its host `local` (a host with VMs refuses maintenance)."""
    made = new_demo(None)
    machine = PrivateLibvirt(made.data_dir.parent / "machine", fresh_cache=False)
    machine.make_namespace()
    made.command = machine.enter([sys.executable, "-m", "overt", "demo"])
    try:
        yield made
    finally:
        made.stop()
        made.print_logs()
        machine.stop()
        shutil.rmtree(made.data_dir.parent, ignore_errors=True)


def _local_host(demo: Demo) -> types.Host:
    conn = demo.connect()
    try:
        return conn.system_service().hosts_service().list(search="name=local")[0]
    finally:
        conn.close()


def test_the_demo_waits_for_an_agent_whose_first_start_is_slow(demo: Demo) -> None:
    demo.env["OVERT_NODE_TEST_START_DELAY_S"] = "18"
    demo.start(timeout=300)
    output = demo.output()
    assert f"waiting for the agent to answer on 127.0.0.1:{demo.node_port}" in output
    assert "still waiting for the agent" in output
    assert "bringing up this machine as host 'local': done in" in output
    assert _local_host(demo).status == types.HostStatus.UP


def test_the_demo_run_again_repairs_a_host_whose_install_failed(private_demo: Demo) -> None:
    demo = private_demo
    # A first run whose engine gives up installing hosts after 3 s, and judges a silent
    # host non responsive after 5 s (no grace).
    demo.env.update(OVERT_HOST_INSTALL_TIMEOUT_S="3", OVERT_HEARTBEAT_TIMEOUT_S="5",
                    OVERT_HOST_GRACE_S="0")
    demo.start()
    conn = demo.connect()
    try:
        hosts = conn.system_service().hosts_service()
        local = hosts.list(search="name=local")[0]
        host_service = hosts.host_service(local.id)
        # The agent goes away; the host is installed again while it is away: that fails.
        os.kill(int(demo.agent_pidfile.read_text()), signal.SIGKILL)
        wait_until(lambda: host_service.get().status == types.HostStatus.NON_RESPONSIVE, 60,
                   "the host to be non responsive")
        host_service.deactivate()
        host_service.install()
        failed = wait_until(lambda: (h := host_service.get()).status ==
                            types.HostStatus.INSTALL_FAILED and h, 60, "the install to fail")
        assert "cannot reach the Overt agent" in failed.status_detail
    finally:
        conn.close()
    demo.stop()
    assert demo.process is not None and demo.process.returncode == 0

    demo.env.clear()
    demo.mark_restart()
    demo.start()
    assert "host 'local' is install_failed: installing it again" in demo.output()
    assert _local_host(demo).status == types.HostStatus.UP


@pytest.mark.parametrize(("sig", "stage"), [
    (signal.SIGINT, "waiting for the agent to answer"),
    (signal.SIGTERM, "waiting for the agent to answer"),
    (signal.SIGINT, "bringing up this machine as host 'local'…"),
    (signal.SIGTERM, "bringing up this machine as host 'local'…"),
])
def test_stopping_the_demo_during_its_set_up_leaves_nothing_running(
    demo: Demo, sig: signal.Signals, stage: str
) -> None:
    if stage.startswith("waiting"):
        demo.env["OVERT_NODE_TEST_START_DELAY_S"] = "120"
    demo.launch()
    assert demo.process is not None
    wait_until(lambda: stage in demo.output() or demo.process.poll() is not None, 240, stage)
    assert demo.process.poll() is None, demo.output()
    agent = int(demo.agent_pidfile.read_text())
    assert alive(agent)
    demo.process.send_signal(sig)
    try:
        code = demo.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the demo did not stop after {sig.name}:\n{demo.output()[-3000:]}")
    assert code == 0, demo.output()[-3000:]
    assert "Overt stopped" in demo.output()
    assert not alive(agent)
    assert not demo.agent_pidfile.exists()
    for port in (demo.port, demo.gateway_port, demo.node_port):
        assert not tcp_port_answers("127.0.0.1", port), f"port {port} still answers"

    # Nothing is in the way of the next run, which comes up.
    demo.env.clear()
    demo.mark_restart()
    demo.start()
    assert _local_host(demo).status == types.HostStatus.UP


def test_a_leftover_agent_of_the_same_data_directory_is_reused(demo: Demo) -> None:
    demo.start()
    agent = int(demo.agent_pidfile.read_text())
    demo.kill_engine()  # kill -9: no chance to stop its agent
    assert alive(agent)
    demo.start()
    assert f"the agent of this machine is still running (pid {agent}); using it" in \
        demo.output()
    assert _local_host(demo).status == types.HostStatus.UP
    demo.stop()
    assert not alive(agent)
