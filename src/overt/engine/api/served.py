"""Which paths the API serves, so objects advertise exactly the links and actions that answer.

`ApiRoutes` records every route it declares here; views ask before they advertise a
sub-collection or an action (oVirt clients follow every `<link>` they are given).
"""

from __future__ import annotations

import functools
import re
import uuid

_SERVED: set[tuple[str, str]] = set()
_PARAM = re.compile(r"\{[^}/]+\}")
# Ids as the engine writes them (str(uuid)): replaced in one pass, no parse per part.
_CANONICAL_ID = re.compile(r"(?<![^/])[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                           r"(?![^/])")
_SHORTEST_ID = 32  # uuid.UUID reads no shorter spelling


def _shape(path: str) -> str:
    """A path with its ids (route parameters or UUIDs) replaced by `*`."""
    parts = []
    for part in _CANONICAL_ID.sub("*", _PARAM.sub("*", path)).split("/"):
        if len(part) < _SHORTEST_ID:
            parts.append(part)
            continue
        try:
            uuid.UUID(part)
            parts.append("*")
        except ValueError:
            parts.append(part)
    return "/".join(parts)


def declare(method: str, path: str) -> None:
    _SERVED.add((method, _shape(path)))
    _served_under.cache_clear()  # (the shapes of paths stay what they are)


def serves(method: str, path: str) -> bool:
    """Whether `method` on `path` (a concrete href, ids included) reaches a handler."""
    return (method, _shape(path)) in _SERVED


def served_under(method: str, base: str, names: tuple[str, ...]) -> tuple[str, ...]:
    """Those of `names` that `method` on `base/name` reaches (one shape of `base` for all).

    Listings ask this for every object: the answer depends only on the base's shape, and
    an object's base is its collection's (the same for all of them) and its id."""
    head, _, last = base.rpartition("/")
    if _LAST_ID.fullmatch(last):
        return _served_under(method, f"{_head_shape(head)}/*", names)
    return _served_under(method, _shape(base), names)


_LAST_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@functools.lru_cache(maxsize=1024)
def _head_shape(head: str) -> str:
    return _shape(head)


@functools.lru_cache(maxsize=1024)
def _served_under(method: str, shape: str, names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in names if (method, f"{shape}/{_shape(name)}") in _SERVED)
