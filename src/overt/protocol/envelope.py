"""Envelopes: what travels on the wire around a command, a reply or an event."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from overt.protocol.commands import Command
from overt.protocol.errors import ErrorCode, NodeError
from overt.protocol.events import Event
from overt.protocol.vm import WireModel

M = TypeVar("M", bound=BaseModel)

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})


class ProtocolViolation(ValueError):
    """A message that cannot be accepted; `error` is what to answer (if answering)."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.error = NodeError(code=code, message=message)


class CommandEnvelope(WireModel):
    version: int = PROTOCOL_VERSION
    request_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    # The engine's job (and step) id: a node that sees a key again answers with the
    # result it gave the first time instead of acting twice.
    idempotency_key: str | None = Field(None, max_length=200)
    sent_at: float = Field(default_factory=time.time)
    timeout_s: float = Field(60, gt=0, le=3600)
    command: Command


class Reply(WireModel):
    version: int = PROTOCOL_VERSION
    request_id: uuid.UUID
    ok: bool
    result: dict[str, Any] | None = None
    error: NodeError | None = None

    @classmethod
    def success(cls, request_id: uuid.UUID, result: BaseModel) -> Reply:
        return cls(request_id=request_id, ok=True, result=result.model_dump(mode="json"))

    @classmethod
    def failure(cls, request_id: uuid.UUID, error: NodeError) -> Reply:
        return cls(request_id=request_id, ok=False, error=error)


class EventEnvelope(WireModel):
    version: int = PROTOCOL_VERSION
    host_uuid: uuid.UUID
    boot_id: uuid.UUID  # one per agent run: seq starts again at 1 with a new boot_id
    seq: int | None = Field(None, ge=1)  # None for lossy events (stats)
    sent_at: float = Field(default_factory=time.time)
    event: Event


def _check_version(data: object) -> None:
    if isinstance(data, dict):
        version = data.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)
                                    or version not in SUPPORTED_VERSIONS):
            raise ProtocolViolation(
                ErrorCode.UNSUPPORTED_VERSION,
                f"protocol version {version!r} is not supported; this side speaks "
                f"{sorted(SUPPORTED_VERSIONS)}: upgrade the older of engine and node")


def _decode(model: type[M], raw: bytes | str, what: str) -> M:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST, f"{what} is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolViolation(ErrorCode.BAD_REQUEST, f"{what} is nested too deeply") from None
    _check_version(data)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or what}: {err['msg']}"
            for err in exc.errors()[:5])
        raise ProtocolViolation(ErrorCode.BAD_REQUEST, f"malformed {what}: {problems}") from None


def decode_command(raw: bytes | str) -> CommandEnvelope:
    return _decode(CommandEnvelope, raw, "command")


def decode_reply(raw: bytes | str) -> Reply:
    return _decode(Reply, raw, "reply")


def decode_event(raw: bytes | str) -> EventEnvelope:
    return _decode(EventEnvelope, raw, "event")
