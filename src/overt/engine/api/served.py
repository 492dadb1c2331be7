"""Which paths the API serves, so objects advertise exactly the links and actions that answer.

`ApiRoutes` records every route it declares here; views ask before they advertise a
sub-collection or an action (oVirt clients follow every `<link>` they are given).
"""

from __future__ import annotations

import re
import uuid

_SERVED: set[tuple[str, str]] = set()
_PARAM = re.compile(r"\{[^}/]+\}")


def _shape(path: str) -> str:
    """A path with its ids (route parameters or UUIDs) replaced by `*`."""
    parts = []
    for part in _PARAM.sub("*", path).split("/"):
        try:
            uuid.UUID(part)
            parts.append("*")
        except ValueError:
            parts.append(part)
    return "/".join(parts)


def declare(method: str, path: str) -> None:
    _SERVED.add((method, _shape(path)))


def serves(method: str, path: str) -> bool:
    """Whether `method` on `path` (a concrete href, ids included) reaches a handler."""
    return (method, _shape(path)) in _SERVED
