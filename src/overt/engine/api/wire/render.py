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
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is int:
        return str(value)
    if kind is bool:
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return moment.isoformat(timespec="milliseconds")
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def _text(value: str) -> str:
    """`escape`, skipped for the common text that needs none."""
    if "&" in value or "<" in value or ">" in value:
        return escape(value)
    return value


def _quoted(value: str) -> str:
    """`quoteattr`, skipped for the common value (an id, an href) that needs nothing."""
    if "&" in value or "<" in value or ">" in value or '"' in value or "\n" in value \
            or "\r" in value or "\t" in value:
        return quoteattr(value)
    return f'"{value}"'


def _write(out: list[str], tag: str, rep: Representation) -> None:
    """Appends `<tag ...>children</tag>`; the opening tag is filled in last, once the
    attributes (wherever they stand among the keys) and whether it has children are known.
    Plain string building, strings (most leaves) on a path of their own: several times
    faster than an element tree for a listing of a thousand objects."""
    opening = len(out)
    out.append("")
    attributes = ""
    parent = False  # an empty list still makes `<tag></tag>`, as it always has
    for key, value in rep.items():
        kind = type(value)
        if kind is str:
            if key in _ATTRIBUTES:
                attributes += f" {key}={_quoted(value)}"
            else:
                parent = True
                if "&" in value or "<" in value or ">" in value:
                    value = escape(value)
                out.append(f"<{key}>{value}</{key}>")
        elif kind is dict:
            parent = True
            _write(out, key, value)
        elif kind is list:
            parent = True
            for item in value:
                if type(item) is dict:
                    _write(out, key, item)
                elif item is not None:
                    out.append(f"<{key}>{_text(scalar_text(item))}</{key}>")
        elif value is None:
            continue
        elif isinstance(value, dict | list):  # subclasses: the general path
            parent = True
            for item in value if isinstance(value, list) else (value,):
                if isinstance(item, dict):
                    _write(out, key, item)
                elif item is not None:
                    out.append(f"<{key}>{_text(scalar_text(item))}</{key}>")
        elif key in _ATTRIBUTES:
            attributes += f" {key}={_quoted(scalar_text(value))}"
        else:
            parent = True
            out.append(f"<{key}>{_text(scalar_text(value))}</{key}>")
    if not parent:
        out[opening] = f"<{tag}{attributes}/>"
    else:
        out[opening] = f"<{tag}{attributes}>"
        out.append(f"</{tag}>")


def child_xml(key: str, value: object) -> str:
    """What `key: value` of a representation adds inside its parent's element, written as
    `to_xml` writes it (nothing for None): for writers that build the rest of an object
    themselves (`api.list_xml`)."""
    out: list[str] = []
    _write(out, "x", {key: value})
    return "".join(out[1:-1]) if len(out) > 1 else ""


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
