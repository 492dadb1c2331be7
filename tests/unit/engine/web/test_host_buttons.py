"""A host page's buttons are enabled exactly where the host state machine lets the action
start (the grid of tests/unit/engine/model/test_host_actions.py); the power management
buttons also need the host's power management configured."""

import pytest

from overt.engine.db.tables import Host
from overt.engine.model.status import HostStatus
from overt.engine.web.hosts import ACTIONS, FENCE_ACTIONS, fence_buttons, host_buttons
from tests.unit.engine.model.test_host_actions import cell


@pytest.mark.parametrize("status", list(HostStatus))
def test_buttons_are_enabled_where_the_action_may_start(status: HostStatus) -> None:
    buttons = host_buttons(Host(name="h1", status=status))
    assert [name for name, _button, _enabled in buttons] == list(ACTIONS)
    assert {name: enabled for name, _button, enabled in buttons} == {
        name: cell(status, button.action) == "x" for name, button in ACTIONS.items()}


@pytest.mark.parametrize("status", list(HostStatus))
def test_fence_buttons_follow_the_state_machine_and_power_management(status: HostStatus
                                                                      ) -> None:
    host = Host(name="h1", status=status)
    assert [name for name, _b, _e in fence_buttons(host, True)] == [
        "fence-status", "fence-restart", "fence-stop", "fence-start"]
    assert {enabled for _n, _b, enabled in fence_buttons(host, True)} == {
        cell(status, FENCE_ACTIONS["fence-restart"].action) == "x"}
    assert not any(enabled for _n, _b, enabled in fence_buttons(host, False))
    # Those that cut the power ask first.
    assert {name for name, button in FENCE_ACTIONS.items() if button.destructive} == {
        "fence-restart", "fence-stop"}
