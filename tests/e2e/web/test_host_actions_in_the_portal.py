"""A host's life in the portal: a node announces itself, the administrator approves it,
switches it to maintenance, installs it again, activates it and removes it, each by a
button on the host's page, watching the status change without reloading.

The node is a second agent on a libvirtd of its own (a private mount namespace, so it has
a host UUID of its own), next to the demo's host `local`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import ovirtsdk4.types as types
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import sign_in
from tests.support.agent import Agent
from tests.support.demo import Demo, wait_until
from tests.support.private_libvirt import PrivateLibvirt

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def second_node(web_demo: Demo) -> Iterator[Agent]:
    base = web_demo.data_dir.parent / "second-node"
    machine = PrivateLibvirt(base / "machine", fresh_cache=False)
    machine.make_namespace()
    agent = Agent(base, engine_url=f"https://127.0.0.1:{web_demo.gateway_port}",
                  engine_ca=web_demo.ca_file, libvirt_uri=None)
    try:
        machine.start_daemons()
        agent.libvirt_uri = machine.uri
        agent.start()
        yield agent
    finally:
        agent.stop()
        machine.stop()
        shutil.rmtree(base, ignore_errors=True)


def _click(page: Page, action: str) -> None:
    button = page.locator(f"button[data-action='{action}']")
    expect(button).to_be_enabled()
    button.click()


def test_a_host_from_approval_to_removal(page: Page, web_demo: Demo, second_node: Agent
                                         ) -> None:
    conn = web_demo.connect()
    try:
        hosts = conn.system_service().hosts_service()
        pending = wait_until(lambda: next((h for h in hosts.list() if h.status ==
                                           types.HostStatus.PENDING_APPROVAL), None), 90,
                             "the second node to announce itself")
    finally:
        conn.close()
    name = pending.name

    sign_in(page, web_demo)
    page.goto("/hosts")
    page.get_by_role("link", name=name, exact=True).click()
    status = page.get_by_test_id("host-status")
    expect(status).to_have_text("pending approval")
    # Only what a pending host allows is offered.
    expect(page.locator("button[data-action='activate']")).to_be_disabled()
    expect(page.locator("button[data-action='deactivate']")).to_be_disabled()

    _click(page, "approve")
    expect(page.locator("#action-result")).to_contain_text(f"Host {name} was approved")
    expect(status).to_have_text("up", timeout=90_000)

    _click(page, "deactivate")
    expect(page.locator("#action-result")).to_contain_text(
        f"Host {name} was switched to maintenance")
    expect(status).to_have_text("maintenance")
    expect(page.locator("button[data-action='install']")).to_be_enabled()

    _click(page, "install")
    expect(page.locator("#action-result")).to_contain_text(f"Installing host {name}")
    expect(status).to_have_text("up", timeout=90_000)

    _click(page, "deactivate")
    expect(status).to_have_text("maintenance")
    _click(page, "activate")
    expect(page.locator("#action-result")).to_contain_text(f"Host {name} was activated")
    expect(status).to_have_text("up", timeout=90_000)

    # A host that is up cannot be removed: the button says so by being disabled.
    expect(page.locator("button[data-action='remove']")).to_be_disabled()
    _click(page, "deactivate")
    expect(status).to_have_text("maintenance")
    page.once("dialog", lambda dialog: dialog.accept())
    _click(page, "remove")
    page.wait_for_url("**/hosts")
    expect(page.get_by_test_id("host-status-local")).to_have_text("up")
    expect(page.get_by_role("link", name=name, exact=True)).to_have_count(0)

    page.goto("/events")
    expect(page.get_by_text(f"Host {name} was removed by admin@internal")).to_be_visible()
    expect(page.get_by_text(f"Host {name} is being installed by admin@internal")
           ).to_be_visible()


def test_a_host_action_without_the_form_token_is_refused(page: Page, web_demo: Demo) -> None:
    sign_in(page, web_demo)
    conn = web_demo.connect()
    try:
        local = conn.system_service().hosts_service().list(search="name=local")[0]
    finally:
        conn.close()
    response = page.request.post(f"/hosts/{local.id}/deactivate", form={"csrf_token": "x"})
    assert response.status == 403
    assert "Request refused" in response.text()
    page.goto(f"/hosts/{local.id}")
    expect(page.get_by_test_id("host-status")).to_have_text("up")
