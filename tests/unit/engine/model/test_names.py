"""Names oVirt accepts for inventory objects."""

from __future__ import annotations

import pytest

from overt.engine.model.errors import InvalidInput
from overt.engine.model.names import NETWORK_NAME_MAX, check_name


@pytest.mark.parametrize("name", ["Default", "dc-1", "east_wing.2", "a" * 40])
def test_good_names_pass_trimmed(name: str) -> None:
    assert check_name("data_center", f" {name} ") == name


@pytest.mark.parametrize("name", ["", "   ", "two words", "a/b", "é", "a" * 41])
def test_bad_names_are_refused_saying_what_is_allowed(name: str) -> None:
    with pytest.raises(InvalidInput, match=r"data_center\.name"):
        check_name("data_center", name)


def test_network_names_fit_a_host_bridge() -> None:
    assert check_name("network", "a" * NETWORK_NAME_MAX, max_length=NETWORK_NAME_MAX)
    with pytest.raises(InvalidInput, match="at most 15"):
        check_name("network", "a" * 16, max_length=NETWORK_NAME_MAX)
