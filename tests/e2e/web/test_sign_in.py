"""Signing in and out, and what the portal refuses: no session, wrong password, forged posts."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.e2e.web.conftest import sign_in
from tests.support.demo import Demo

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_a_page_without_a_session_goes_to_sign_in(page: Page) -> None:
    page.goto("/vms")
    expect(page).to_have_url(re.compile(r"/signin\?next=%2Fvms$"))
    expect(page.get_by_role("heading", name="Sign in to Overt")).to_be_visible()


def test_a_failed_sign_in_says_why(page: Page) -> None:
    page.goto("/signin")
    page.get_by_label("User name").fill("admin@internal")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("the user name or password is incorrect")
    expect(page).to_have_url(re.compile(r"/signin$"))


def test_sign_in_leads_back_and_sign_out_ends_the_session(page: Page, web_demo: Demo) -> None:
    page.goto("/hosts")
    page.get_by_label("User name").fill("admin@internal")
    page.get_by_label("Password").fill(web_demo.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/hosts$"))
    expect(page.get_by_test_id("host-status-local")).to_have_text("up")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/signin$"))
    page.goto("/hosts")
    expect(page).to_have_url(re.compile(r"/signin\?next="))


def test_a_forged_post_without_the_csrf_token_is_refused(page: Page, context: BrowserContext,
                                                         web_demo: Demo) -> None:
    sign_in(page, web_demo)
    cookies = {c["name"] for c in context.cookies()}
    assert "overt_session" in cookies
    session_cookie = next(c for c in context.cookies() if c["name"] == "overt_session")
    assert session_cookie["httpOnly"] and session_cookie["secure"]
    assert session_cookie["sameSite"] == "Strict"
    # The session cookie goes along, as it would from a page of another site; the token not.
    forged = context.request.post("/vms", form={"name": "forged-1", "memory_mib": "256"},
                                  max_redirects=0)
    assert forged.status == 403
    assert "security token" in forged.text()
    wrong = context.request.post("/vms", form={"name": "forged-2", "csrf_token": "guess"},
                                 max_redirects=0)
    assert wrong.status == 403
    page.goto("/vms")
    expect(page.get_by_text("forged-1")).to_have_count(0)
