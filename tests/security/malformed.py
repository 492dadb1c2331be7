"""Hypothesis strategies for malformed wire messages: every command and event type of the
protocol, with fields missing, of the wrong type, out of range, or unknown."""

from __future__ import annotations

import json
import typing
import uuid
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from overt.protocol import ProtocolViolation, decode_command, decode_event
from overt.protocol.commands import Command
from overt.protocol.events import Event


def _members(union: Any) -> list[type[BaseModel]]:
    inner = typing.get_args(union)[0]
    return list(typing.get_args(inner))


COMMAND_TYPES = {model.model_fields["name"].default: model for model in _members(Command)}
EVENT_TYPES = {model.model_fields["type"].default: model for model in _members(Event)}

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "0", "-1", str(uuid.uuid4()), "running", "x" * 300]))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)


def _fields(model: type[BaseModel], discriminator: str) -> st.SearchStrategy[dict[str, Any]]:
    names = [n for n in model.model_fields if n != discriminator] + ["unknown", "", "__class__"]
    return st.dictionaries(st.sampled_from(names), json_values, max_size=len(names))


def _rejected(decode: Any, body: str) -> bool:
    """Whether the protocol does not accept `body` (by refusing it, or failing on it: what
    the system under test then does is for the test to see)."""
    try:
        decode(body)
    except (ProtocolViolation, ValidationError, ValueError):
        return True
    except Exception:
        return True
    return False


@st.composite
def malformed_command(draw: st.DrawFn) -> tuple[str, str]:
    """(command name, a command envelope of that name the protocol refuses), as JSON."""
    name = draw(st.sampled_from(sorted(COMMAND_TYPES)))
    command = {"name": name, **draw(_fields(COMMAND_TYPES[name], "name"))}
    envelope: dict[str, Any] = {"version": 1, "request_id": str(uuid.uuid4()),
                                "command": command}
    if draw(st.booleans()):
        envelope[draw(st.sampled_from(["version", "request_id", "timeout_s",
                                       "idempotency_key"]))] = draw(json_values)
    body = json.dumps(envelope)
    if not _rejected(decode_command, body):  # valid by chance: spoil it for sure
        envelope["command"]["name"] = name + ".malformed"
        body = json.dumps(envelope)
    return name, body


@st.composite
def malformed_event(draw: st.DrawFn, host_uuid: uuid.UUID, boot_id: uuid.UUID
                    ) -> tuple[str, dict[str, Any]]:
    """(event type, an event envelope of that type the protocol refuses), as a dict."""
    kind = draw(st.sampled_from(sorted(EVENT_TYPES)))
    event = {"type": kind, **draw(_fields(EVENT_TYPES[kind], "type"))}
    envelope: dict[str, Any] = {"version": 1, "host_uuid": str(host_uuid),
                                "boot_id": str(boot_id), "seq": draw(st.integers(1, 10**6)),
                                "event": event}
    if draw(st.booleans()):
        envelope[draw(st.sampled_from(["version", "seq", "sent_at", "boot_id"]))] = \
            draw(json_values)
    if not _rejected(decode_event, json.dumps(envelope)):
        envelope["event"]["type"] = kind + ".malformed"
    return kind, envelope
