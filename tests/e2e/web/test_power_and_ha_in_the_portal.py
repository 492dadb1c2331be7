"""Power management on a host's page and high availability on a VM's page.

The demo's host `local` gets a virtual BMC (`overt.lab.bmc` on loopback, powering a
stand-in process) and the real `fence_ipmilan`: its Power buttons appear enabled only
once power management is configured, the ones that cut the power ask first, and a fence
shows its job's steps as they go. A VM that is down offers no migration (the VM state
machine) and its HA settings are edited and saved from its page.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from playwright.sync_api import Dialog, Page, expect

from tests.e2e.web.conftest import sign_in
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

BMC_PASSWORD = "Portal-Bmc-Pw-5521"
MIB = 1 << 20


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def bmc_port(tmp_path: Path) -> Iterator[int]:
    """A virtual BMC whose power is a stand-in process (not the demo's host itself)."""
    (tmp_path / "pw").write_text(BMC_PASSWORD)
    port = _udp_port()
    with (tmp_path / "bmc.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "overt.lab.bmc", "--port", str(port), "--password-file",
             str(tmp_path / "pw"), "--", "sleep", "100000"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: proc.poll() is not None
                   or "listening" in (tmp_path / "bmc.log").read_text(), 30, "the BMC to listen")
        assert proc.poll() is None, (tmp_path / "bmc.log").read_text()
        yield port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture
def local_host(web_demo: Demo) -> Iterator[types.Host]:
    """The demo's host; afterwards without power management, as before."""
    conn = web_demo.connect()
    try:
        host = conn.system_service().hosts_service().list(search="name=local")[0]
        yield host
        service = conn.system_service().hosts_service().host_service(host.id)
        service.update(types.Host(power_management=types.PowerManagement(enabled=False)))
        agents = service.fence_agents_service()
        for agent in agents.list():
            agents.agent_service(agent.id).remove()
    finally:
        conn.close()


def test_a_hosts_power_buttons_follow_its_power_management(
        page: Page, web_demo: Demo, local_host: types.Host, bmc_port: int) -> None:
    sign_in(page, web_demo)
    page.goto(f"/hosts/{local_host.id}")
    expect(page.get_by_test_id("pm-missing")).to_be_visible()
    for action in ("fence-status", "fence-restart", "fence-stop", "fence-start"):
        expect(page.locator(f"button[data-action='{action}']")).to_be_disabled()

    conn = web_demo.connect()
    try:
        service = conn.system_service().hosts_service().host_service(local_host.id)
        service.fence_agents_service().add(types.Agent(
            type="ipmilan", address="127.0.0.1", port=bmc_port, username="admin",
            password=BMC_PASSWORD, order=1))
        service.update(types.Host(power_management=types.PowerManagement(enabled=True)))
    finally:
        conn.close()
    page.reload()
    expect(page.get_by_test_id("pm-missing")).to_have_count(0)
    for action in ("fence-status", "fence-restart", "fence-stop", "fence-start"):
        expect(page.locator(f"button[data-action='{action}']")).to_be_enabled()

    # Restart asks first; declined, nothing is done.
    asked: list[str] = []

    def decline(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.dismiss()
    page.once("dialog", decline)
    page.locator("button[data-action='fence-restart']").click()
    wait_until(lambda: asked, 10, "the confirmation")
    assert asked == ["Restart host local? Its power is cut and restored: every VM on it "
                     "stops at once."]
    expect(page.locator("#action-result")).to_be_empty()

    # The power status, through the real fence agent, its job's steps shown as they go.
    page.locator("button[data-action='fence-status']").click()
    result = page.locator("#action-result")
    expect(result).to_contain_text("Power management status of host local")
    expect(result.locator("[data-job-state]")).to_have_attribute(
        "data-job-state", "done", timeout=60_000)
    expect(result).to_contain_text("Power status of host local through ipmilan at 127.0.0.1")
    page.goto("/events")
    expect(page.get_by_text("Host local: power management status through ipmilan at "
                            "127.0.0.1 succeeded (power on)")).to_be_visible()


def test_a_vms_high_availability_is_edited_on_its_page(page: Page, web_demo: Demo) -> None:
    conn = web_demo.connect()
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name="portal-ha", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="Blank"), memory=64 * MIB))
    try:
        sign_in(page, web_demo)
        page.goto(f"/vms/{vm.id}")
        expect(page.get_by_test_id("vm-status")).to_have_text("down")
        # Down: nothing to migrate, nor to cancel.
        expect(page.locator("button[data-action='migrate']")).to_be_disabled()
        expect(page.locator("button[data-action='cancelmigration']")).to_have_count(0)
        expect(page.get_by_test_id("vm-ha")).to_have_text("Not highly available")

        page.get_by_label("Restart on another host if its host fails").check()
        page.get_by_test_id("vm-ha-priority").select_option(label="High")
        page.locator("button[data-action='high-availability']").click()
        expect(page.locator("#action-result")).to_contain_text(
            "VM portal-ha is highly available (restart priority 100).")
        saved = vms.vm_service(vm.id).get().high_availability
        assert (saved.enabled, saved.priority) == (True, 100)
        page.reload()
        expect(page.get_by_test_id("vm-ha")).to_have_text(
            "Highly available, restart priority 100")

        page.get_by_label("Restart on another host if its host fails").uncheck()
        page.locator("button[data-action='high-availability']").click()
        expect(page.locator("#action-result")).to_contain_text(
            "VM portal-ha is not highly available.")
        assert vms.vm_service(vm.id).get().high_availability.enabled is False

        # A priority out of range is refused and changes nothing.
        response = page.request.post(f"/vms/{vm.id}/high-availability", form={
            "csrf_token": page.locator("input[name='csrf_token']").first.input_value(),
            "ha": "on", "ha_priority": "500"})
        assert response.status == 400
        assert "Restart priority" in response.text()
        assert vms.vm_service(vm.id).get().high_availability.enabled is False
    finally:
        with contextlib.suppress(sdk.Error):
            vms.vm_service(vm.id).remove()
        conn.close()
