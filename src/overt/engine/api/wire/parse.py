"""Parsing request bodies (XML or JSON) into one tree that resource readers query.

XML is parsed with defusedxml (no entities, no external references). Readers ask
for typed values and get a clear InvalidInput naming the element when a value is
malformed, so bad input becomes a 400 fault, never a 500.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeVar
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from overt.engine.model.errors import InvalidInput

E = TypeVar("E", bound=StrEnum)
MAX_BODY = 4 << 20
# Deeper documents are refused: no oVirt document nests more than a dozen levels, and
# converting a deeper one would exhaust the interpreter's stack (a 500).
MAX_DEPTH = 64


@dataclass
class Node:
    """One element of a request body: its tag, attributes, text and children."""

    tag: str
    attrs: dict[str, str] = field(default_factory=dict)
    text: str | None = None
    children: list[Node] = field(default_factory=list)
    path: str = ""

    # -- navigation -------------------------------------------------------------

    def child(self, name: str) -> Node | None:
        for node in self.children:
            if node.tag == name:
                return node
        return None

    def all(self, name: str) -> Iterator[Node]:
        return (node for node in self.children if node.tag == name)

    def items(self, container: str, item: str) -> list[Node]:
        """The items of an inline list, e.g. items("disk_attachments", "disk_attachment")."""
        holder = self.child(container)
        return list(holder.all(item)) if holder is not None else []

    def has(self, name: str) -> bool:
        return self.child(name) is not None or name in self.attrs

    # -- typed values -------------------------------------------------------------

    def get_str(self, name: str) -> str | None:
        if name in self.attrs:
            return self.attrs[name]
        node = self.child(name)
        if node is None:
            return None
        return node.text if node.text is not None else ""

    def required_str(self, name: str) -> str:
        value = self.get_str(name)
        if value is None or value == "":
            raise InvalidInput(f"{self.tag}.{name} is required")
        return value

    def get_int(self, name: str, *, minimum: int | None = None) -> int | None:
        raw = self.get_str(name)
        if raw is None:
            return None
        try:
            value = int(raw.strip())
        except ValueError:
            raise InvalidInput(f"{self.tag}.{name} must be an integer, not {raw!r}") from None
        if minimum is not None and value < minimum:
            raise InvalidInput(f"{self.tag}.{name} must be at least {minimum}, not {value}")
        return value

    def get_bool(self, name: str) -> bool | None:
        raw = self.get_str(name)
        if raw is None:
            return None
        lowered = raw.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise InvalidInput(f"{self.tag}.{name} must be true or false, not {raw!r}")

    def get_enum(self, name: str, kind: type[E]) -> E | None:
        raw = self.get_str(name)
        if raw is None:
            return None
        try:
            return kind(raw.strip().lower())
        except ValueError:
            allowed = ", ".join(m.value for m in kind)
            raise InvalidInput(f"{self.tag}.{name} must be one of {allowed}, not {raw!r}") from None

    def get_id(self) -> uuid.UUID | None:
        raw = self.attrs.get("id") or self.get_str("id")
        if raw is None:
            return None
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise InvalidInput(f"{self.tag} id {raw!r} is not a valid id") from None


def _from_element(element: Element, path: str = "") -> Node:
    node = Node(tag=element.tag, attrs=dict(element.attrib), path=f"{path}/{element.tag}")
    text = (element.text or "").strip()
    node.text = text if len(element) == 0 else None
    for child in element:
        if isinstance(child.tag, str):
            node.children.append(_from_element(child, node.path))
    return node


def _from_json(tag: str, value: object) -> Node:
    node = Node(tag=tag)
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("id", "href", "rel") and not isinstance(item, dict | list):
                node.attrs[key] = str(item)
                continue
            for element in item if isinstance(item, list) else [item]:
                node.children.append(_from_json(key, element))
    elif isinstance(value, bool):
        node.text = "true" if value else "false"
    elif value is not None:
        node.text = str(value)
    return node


def parse_body(body: bytes, content_type: str, expected_root: str) -> Node:
    """Parse a request body as XML or JSON (by Content-Type); check the root element."""
    if not body.strip():
        raise InvalidInput(f"the request needs a <{expected_root}> body")
    if len(body) > MAX_BODY:
        raise InvalidInput("the request body is too large")
    if "json" in content_type:
        try:
            data = json.loads(body)
        except RecursionError:
            raise _too_deep() from None
        except ValueError as exc:
            raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
        if _json_depth(data) > MAX_DEPTH:
            raise _too_deep()
        if not isinstance(data, dict):
            raise InvalidInput(f"the request body must be a JSON object (a {expected_root})")
        node = _from_json(expected_root, data)
    else:
        try:
            element = SafeET.fromstring(body)
        except (SafeET.ParseError, DefusedXmlException) as exc:
            raise InvalidInput(f"the request body is not valid XML: {exc}") from None
        if _xml_depth(element) > MAX_DEPTH:
            raise _too_deep()
        node = _from_element(element)
        if node.tag != expected_root:
            raise InvalidInput(f"expected a <{expected_root}> element, got <{node.tag}>")
    return node


def _too_deep() -> InvalidInput:
    return InvalidInput(f"the request body is nested more than {MAX_DEPTH} levels deep")


def _json_depth(value: object) -> int:
    """How deep a JSON value nests (without recursion: it may be very deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def _xml_depth(element: Element) -> int:
    deepest, stack = 0, [(element, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        stack.extend((child, depth + 1) for child in item)
    return deepest
