"""The agent's one exception: a failure with a protocol error code and an administrator's message.

Drivers and stores raise `NodeFailure`; the agent's single entry point turns it
(and anything unexpected) into a `Reply` (see `overt.node.commands`).
"""

from __future__ import annotations

from overt.protocol import ErrorCode, NodeError


class NodeFailure(Exception):
    """A command could not be carried out; `code` tells the engine what kind of failure."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_error(self) -> NodeError:
        return NodeError(code=self.code, message=self.message)


def no_such_vm(vm_id: object) -> NodeFailure:
    return NodeFailure(ErrorCode.NO_SUCH_VM, f"no VM with id {vm_id} on this node")


def invalid_state(message: str) -> NodeFailure:
    return NodeFailure(ErrorCode.INVALID_STATE, message)


def bad_request(message: str) -> NodeFailure:
    return NodeFailure(ErrorCode.BAD_REQUEST, message)
