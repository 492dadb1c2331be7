"""A host's graphs move as its samples arrive, without reloading the page."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.web.conftest import sign_in
from tests.e2e.web.test_vm_in_the_portal import graph_points
from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.vm]


def test_a_hosts_graphs_grow_without_a_reload(page: Page, web_demo: Demo) -> None:
    sign_in(page, web_demo)
    page.get_by_role("link", name="Hosts", exact=True).click()
    page.get_by_role("link", name="local", exact=True).click()
    expect(page.get_by_role("heading", name="Host local")).to_be_visible()
    loaded_at = page.evaluate("performance.timeOrigin")
    first = wait_until(lambda: (g := graph_points(page))[0] > 0 and g, 30,
                       "the host's samples on its graphs")
    expect(page.get_by_text("No samples yet")).to_be_hidden()

    def grown(since: int) -> tuple[int, int]:
        return wait_until(lambda: (g := graph_points(page))[0] > since and g, 30,
                          "a new sample on the host's graphs")

    later = grown(grown(first[0])[0])
    assert later[1] > 0  # uPlot drew the CPU line
    assert page.evaluate("performance.timeOrigin") == loaded_at  # no reload happened
