"""The wire contract between engine and node agent, declared once (VDSM's schema, our way).

Every transport (direct HTTPS, AMQP) carries these models unchanged as JSON.
"""

from overt.protocol.envelope import (
    PROTOCOL_VERSION,
    CommandEnvelope,
    EventEnvelope,
    ProtocolViolation,
    Reply,
    decode_command,
    decode_event,
    decode_reply,
)
from overt.protocol.errors import ErrorCode, NodeError

__all__ = [
    "PROTOCOL_VERSION",
    "CommandEnvelope",
    "ErrorCode",
    "EventEnvelope",
    "NodeError",
    "ProtocolViolation",
    "Reply",
    "decode_command",
    "decode_event",
    "decode_reply",
]
