"""A host page's buttons are enabled exactly where the host state machine lets the action
start (the grid of tests/unit/engine/model/test_host_actions.py)."""

import pytest

from overt.engine.db.tables import Host
from overt.engine.model.status import HostStatus
from overt.engine.web.hosts import ACTIONS, host_buttons
from tests.unit.engine.model.test_host_actions import cell


@pytest.mark.parametrize("status", list(HostStatus))
def test_buttons_are_enabled_where_the_action_may_start(status: HostStatus) -> None:
    buttons = host_buttons(Host(name="h1", status=status))
    assert [name for name, _button, _enabled in buttons] == list(ACTIONS)
    assert {name: enabled for name, _button, enabled in buttons} == {
        name: cell(status, button.action) == "x" for name, button in ACTIONS.items()}
