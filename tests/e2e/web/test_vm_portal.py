"""The VM Portal as a user without the SuperUser role lives it: signed in, they see only
the VM they hold a role on, start it, open its console, power it off, and change their
password; the admin portal's pages send them back to theirs."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import ovirtsdk4.types as types
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import SCREENSHOTS
from tests.support.demo import Demo

pytestmark = [pytest.mark.browser, pytest.mark.vm, pytest.mark.slow]

MIB = 2**20
PASSWORD = "Quiet-Harbour-2026"


@pytest.fixture
def user_with_a_vm(web_demo: Demo) -> Iterator[tuple[str, str]]:
    """A new internal user with UserRole on one new (diskless) VM; the VM's name."""
    login, vm_name = f"u{secrets.token_hex(3)}", f"theirs-{secrets.token_hex(3)}"
    admin = web_demo.connect()
    system = admin.system_service()
    cluster = system.clusters_service().list()[0]
    vm = system.vms_service().add(types.Vm(name=vm_name, cluster=types.Cluster(id=cluster.id),
                                           template=types.Template(name="Blank"),
                                           memory=128 * MIB))
    user = system.users_service().add(types.User(
        user_name=f"{login}@internal", domain=types.Domain(name="internal"), password=PASSWORD))
    system.vms_service().vm_service(vm.id).permissions_service().add(types.Permission(
        role=types.Role(name="UserRole"), user=types.User(id=user.id)))
    try:
        yield f"{login}@internal", vm_name
    finally:
        vm_service = system.vms_service().vm_service(vm.id)
        if vm_service.get().status != types.VmStatus.DOWN:
            vm_service.stop()
        system.users_service().user_service(user.id).remove()
        vm_service.remove()
        admin.close()


def _sign_in(page: Page, user: str, password: str) -> None:
    page.goto("/signin")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_user_runs_their_vm_in_the_vm_portal(page: Page, web_demo: Demo,
                                               user_with_a_vm: tuple[str, str]) -> None:
    user, vm_name = user_with_a_vm
    _sign_in(page, user, PASSWORD)
    page.wait_for_url("**/user")
    expect(page.get_by_role("heading", name="My virtual machines")).to_be_visible()
    expect(page.get_by_role("link", name="Overt VM Portal")).to_be_visible()
    rows = page.locator("tbody tr[data-vm]")
    expect(rows).to_have_count(1)  # the demo's other VMs are not theirs
    expect(page.get_by_test_id(f"vm-status-{vm_name}")).to_have_text("down")
    expect(page.get_by_role("button", name=f"Power off {vm_name}")).to_have_count(0)
    page.get_by_role("link", name="New VM").click()  # no role of theirs allows it
    expect(page.locator("#no-clusters")).to_contain_text("You may not create VMs")
    page.get_by_role("link", name="My VMs").click()

    page.get_by_role("button", name=f"Start {vm_name}").click()
    expect(page.locator("#user-notice")).to_have_text(f"Start: {vm_name}")
    status = page.get_by_test_id(f"vm-status-{vm_name}")
    expect(status).to_have_text("up", timeout=60_000)  # the table refreshes itself
    page.screenshot(path=str(SCREENSHOTS / "vm-portal.png"))

    page.get_by_role("link", name=f"Console of {vm_name}").click()
    expect(page.locator("#console-status")).to_contain_text("Connected", timeout=30_000)
    page.get_by_role("link", name=vm_name).click()  # back to the VM Portal
    page.wait_for_url("**/user")

    page.get_by_role("button", name=f"Power off {vm_name}").click()
    expect(page.locator("#user-notice")).to_have_text(f"Power off: {vm_name}")
    expect(status).to_have_text("down", timeout=60_000)

    page.goto("/vms")  # the admin portal sends them back
    page.wait_for_url("**/user")


def test_a_user_changes_their_password_in_the_vm_portal(page: Page, web_demo: Demo,
                                                        user_with_a_vm: tuple[str, str]
                                                        ) -> None:
    user, _vm_name = user_with_a_vm
    _sign_in(page, user, PASSWORD)
    page.wait_for_url("**/user")
    page.get_by_role("link", name="Change password").click()
    page.get_by_label("Current password").fill("not-my-password")
    page.get_by_label("New password", exact=True).fill("Brand-New-Lantern-7")
    page.get_by_label("New password again").fill("Brand-New-Lantern-7")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password-error")).to_contain_text("current password is incorrect")

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("Brand-New-Lantern-7")
    page.get_by_label("New password again").fill("Brand-New-Lantern-7")
    page.get_by_role("button", name="Change password").click()
    expect(page.locator("#password-done")).to_have_text("Your password was changed.")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/signin")
    _sign_in(page, user, PASSWORD)
    expect(page.locator("#signin-error")).to_contain_text("incorrect")
    _sign_in(page, user, "Brand-New-Lantern-7")
    page.wait_for_url("**/user")
