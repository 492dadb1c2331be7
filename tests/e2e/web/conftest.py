"""The portal in Debian's Chromium (driven by Playwright), against `overt demo`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.e2e.demo.conftest import running_demo
from tests.support.demo import Demo
from tests.support.engine import RunningEngine

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = Path(__file__).resolve().parents[3] / "docs" / "screenshots"


# The demo's agent samples stats every few seconds (not 15), so graphs move while a test
# watches them.
STATS_INTERVAL_S = "2"


@pytest.fixture(scope="package")
def web_demo() -> Iterator[Demo]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("OVERT_NODE_STATS_INTERVAL_S", STATS_INTERVAL_S)
        with running_demo() as demo:
            yield demo


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    """Package-scoped: Playwright's synchronous API keeps an event loop running in this
    thread until it stops, which asyncio tests after these must not find."""
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: browser tests need Debian's chromium "
                    "(scripts/setup installs it)")
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def context(browser: Browser, web_demo: Demo) -> Iterator[BrowserContext]:
    base = web_demo.url.removesuffix("/ovirt-engine/api")
    context = browser.new_context(base_url=base, ignore_https_errors=True,
                                  viewport={"width": 1280, "height": 800})
    context.set_default_timeout(30_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, demo: Demo) -> None:
    sign_in_as_admin(page, demo.password)


def sign_in_as_admin(page: Page, password: str) -> None:
    page.goto("/signin")
    page.get_by_label("User name").fill("admin@internal")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/")


@contextlib.contextmanager
def admin_page(browser: Browser, engine: RunningEngine, *, height: int = 800
               ) -> Iterator[Page]:
    """A page 1280 px wide, in a browser context of its own, signed in to `engine`'s
    portal as admin@internal."""
    context = browser.new_context(base_url=engine.url.removesuffix("/ovirt-engine/api"),
                                  ignore_https_errors=True,
                                  viewport={"width": 1280, "height": height})
    context.set_default_timeout(30_000)
    try:
        page = context.new_page()
        sign_in_as_admin(page, engine.password)
        yield page
    finally:
        context.close()
