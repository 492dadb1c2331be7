"""libvirt failures as `NodeFailure`s with messages an administrator can act on.

One table of libvirt error codes, then a few message patterns for the failures
libvirt reports only in words (memory, missing images or bridges).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

import libvirt

from overt.node.errors import NodeFailure
from overt.node.hypervisor.executor import BlockingCalls
from overt.protocol import ErrorCode

T = TypeVar("T")

_BY_CODE = {
    libvirt.VIR_ERR_NO_DOMAIN: ErrorCode.NO_SUCH_VM,
    libvirt.VIR_ERR_DOM_EXIST: ErrorCode.VM_EXISTS,
    libvirt.VIR_ERR_OPERATION_INVALID: ErrorCode.INVALID_STATE,
    libvirt.VIR_ERR_XML_ERROR: ErrorCode.BAD_REQUEST,
    libvirt.VIR_ERR_XML_DETAIL: ErrorCode.BAD_REQUEST,
    libvirt.VIR_ERR_XML_INVALID_SCHEMA: ErrorCode.BAD_REQUEST,
    libvirt.VIR_ERR_CONFIG_UNSUPPORTED: ErrorCode.BAD_REQUEST,
    libvirt.VIR_ERR_INVALID_ARG: ErrorCode.BAD_REQUEST,
    libvirt.VIR_ERR_OPERATION_TIMEOUT: ErrorCode.TIMEOUT,
    libvirt.VIR_ERR_AGENT_UNRESPONSIVE: ErrorCode.TIMEOUT,
}

# (pattern in libvirt's message, code, advice); the first match wins.
_BY_MESSAGE: tuple[tuple[re.Pattern[str], ErrorCode, str], ...] = (
    (re.compile(r"already exists", re.I), ErrorCode.VM_EXISTS,
     "a domain with this name or id already exists on the node"),
    (re.compile(r"cannot allocate memory|cannot set up guest memory|out of memory|"
                r"not enough memory", re.I),
     ErrorCode.NOT_ENOUGH_MEMORY,
     "the node has not enough free memory for this VM; stop other VMs or choose another host"),
    (re.compile(r"cannot (access|open) (storage )?file|no such file or directory", re.I),
     ErrorCode.IMAGE_MISSING,
     "a disk image of the VM does not exist on the node (or QEMU cannot reach it)"),
    (re.compile(r"permission denied", re.I), ErrorCode.IMAGE_MISSING,
     "QEMU (user libvirt-qemu) may not read a disk image or its directory; fix its permissions"),
    (re.compile(r"interface MTU|no such device|bridge .* does not exist|"
                r"cannot get interface", re.I),
     ErrorCode.NETWORK_MISSING,
     "a NIC's bridge does not exist on the node; set up the VM's network on this host"),
    (re.compile(r"client socket is closed|cannot recv data|end of file while reading|"
                r"no connection driver|failed to connect", re.I),
     ErrorCode.HYPERVISOR_ERROR,
     "libvirtd on the node is not answering; the agent reconnects by itself"),
)


def node_failure(exc: libvirt.libvirtError, action: str) -> NodeFailure:
    """`action` failed with `exc`: say what happened and what to do about it."""
    detail = str(exc.get_error_message() or exc).strip()
    for pattern, code, advice in _BY_MESSAGE:
        if pattern.search(detail):
            return NodeFailure(code, f"{action} failed: {advice} (libvirt: {detail})")
    code = _BY_CODE.get(exc.get_error_code(), ErrorCode.HYPERVISOR_ERROR)
    return NodeFailure(code, f"{action} failed: {detail}")


class VmCalls:
    """What the helpers of running VMs (NICs, disks, block copies) share: blocking libvirt
    calls in a worker thread, a failure said as what was done to which VM."""

    def __init__(self, calls: BlockingCalls) -> None:
        self.calls = calls

    async def _run(self, dom: libvirt.virDomain, action: str, func: Callable[..., T],
                   *args: object) -> T:
        try:
            return await self.calls.run(func, *args)
        except libvirt.libvirtError as exc:
            raise node_failure(exc, f"{action} of VM {dom.name()}") from None
