"""Errors a node reports to the engine: a stable code plus a message for the administrator."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class ErrorCode(StrEnum):
    BAD_REQUEST = "bad_request"  # malformed or invalid command
    UNSUPPORTED_VERSION = "unsupported_version"
    UNAUTHORIZED = "unauthorized"
    NO_SUCH_VM = "no_such_vm"
    VM_EXISTS = "vm_exists"  # a domain with that name or id already exists
    INVALID_STATE = "invalid_state"  # e.g. pause a VM that is not running
    NOT_ENOUGH_MEMORY = "not_enough_memory"
    IMAGE_MISSING = "image_missing"  # a disk's image or volume does not exist
    IMAGE_EXISTS = "image_exists"
    STORAGE_UNREACHABLE = "storage_unreachable"
    NETWORK_MISSING = "network_missing"  # a NIC's bridge does not exist on the host
    TIMEOUT = "timeout"
    HYPERVISOR_ERROR = "hypervisor_error"  # any other libvirt/QEMU failure
    INTERNAL = "internal"  # a bug in the agent; never carries a traceback


# Errors worth retrying: the same command may succeed a little later.
TRANSIENT_ERRORS = frozenset({ErrorCode.TIMEOUT, ErrorCode.STORAGE_UNREACHABLE})


class NodeError(BaseModel):
    """What went wrong on the node, in words an administrator can act on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: ErrorCode
    message: str

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT_ERRORS
