"""Rendering a representation (plain dicts and lists) as oVirt XML or JSON.

A representation is a dict whose keys are element names, in order. Rules, as the
oVirt SDK reads them:
- `id`, `href` (and `rel` on links) are XML attributes; everything else is a child;
- a list value is that element repeated (`{"vm": [a, b]}` is `<vm/><vm/>`);
- booleans are `true`/`false`; datetimes ISO 8601 with milliseconds and offset;
  enums their lowercase value; None is left out.
JSON mirrors the XML: an object's attributes and children become keys.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from typing import Any
from xml.sax.saxutils import escape, quoteattr

Representation = dict[str, Any]

_ATTRIBUTES = frozenset({"id", "href", "rel"})


def scalar_text(value: object) -> str:
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return moment.isoformat(timespec="milliseconds")
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _write(out: list[str], tag: str, rep: Representation) -> None:
    attributes = []
    children = []
    for key, value in rep.items():
        if value is None:
            continue
        if key in _ATTRIBUTES and not isinstance(value, dict | list):
            attributes.append(f" {key}={quoteattr(scalar_text(value))}")
        else:
            children.append((key, value))
    if not children:
        out.append(f"<{tag}{''.join(attributes)}/>")
        return
    out.append(f"<{tag}{''.join(attributes)}>")
    for key, value in children:
        for item in value if isinstance(value, list) else (value,):
            if isinstance(item, dict):
                _write(out, key, item)
            elif item is not None:
                out.append(f"<{key}>{escape(scalar_text(item))}</{key}>")
    out.append(f"</{tag}>")


def to_xml(root: str, rep: Representation) -> bytes:
    """Serialise with the standard library's XML escaping (faster than building a tree)."""
    out = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n']
    _write(out, root, rep)
    return "".join(out).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    return scalar_text(value)


def to_json(rep: Representation) -> bytes:
    return json.dumps(_jsonable(rep), separators=(",", ":")).encode()
