"""What oVirt accepts as the name of an inventory object."""

from __future__ import annotations

import re

from overt.engine.model.errors import InvalidInput

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
NETWORK_NAME_MAX = 15  # the host bridge carries the network's name


def check_name(what: str, name: str, *, max_length: int = 40) -> str:
    """`name` if it is 1..max_length letters, digits, '-', '_' or '.'; else InvalidInput."""
    name = name.strip()
    if not name:
        raise InvalidInput(f"{what}.name must not be empty")
    if len(name) > max_length or not _NAME.match(name):
        raise InvalidInput(f"{what}.name {name!r} must be at most {max_length} letters, digits, "
                           "'-', '_' or '.'")
    return name
