"""libvirt errors become protocol errors with messages an administrator can act on."""

from __future__ import annotations

import libvirt
import pytest

from overt.node.hypervisor.libvirt_errors import node_failure
from overt.protocol import ErrorCode


def _error(code: int, message: str) -> libvirt.libvirtError:
    exc = libvirt.libvirtError(message)
    exc.err = (code, 0, message, 2, None, None, None, 0, 0)
    return exc


@pytest.mark.parametrize(("code", "message", "expected", "advice"), [
    (libvirt.VIR_ERR_NO_DOMAIN, "Domain not found: no domain with matching uuid 'x'",
     ErrorCode.NO_SUCH_VM, "Domain not found"),
    (libvirt.VIR_ERR_OPERATION_FAILED, "domain 'web-1' already exists with uuid 1234",
     ErrorCode.VM_EXISTS, "already exists"),
    (libvirt.VIR_ERR_INTERNAL_ERROR, "process exited while connecting to monitor: "
     "cannot set up guest memory 'pc.ram': Cannot allocate memory",
     ErrorCode.NOT_ENOUGH_MEMORY, "not enough free memory"),
    (libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot access storage file '/images/a.qcow2': "
     "No such file or directory", ErrorCode.IMAGE_MISSING, "does not exist"),
    (libvirt.VIR_ERR_SYSTEM_ERROR, "Cannot get interface MTU on 'br9': No such device",
     ErrorCode.NETWORK_MISSING, "bridge does not exist"),
    (libvirt.VIR_ERR_OPERATION_INVALID, "Requested operation is not valid: domain is not running",
     ErrorCode.INVALID_STATE, "not running"),
    (libvirt.VIR_ERR_XML_ERROR, "XML error: bad", ErrorCode.BAD_REQUEST, "XML error"),
    (libvirt.VIR_ERR_OPERATION_TIMEOUT, "timed out", ErrorCode.TIMEOUT, "timed out"),
    (libvirt.VIR_ERR_INTERNAL_ERROR, "client socket is closed", ErrorCode.HYPERVISOR_ERROR,
     "reconnects by itself"),
    (libvirt.VIR_ERR_INTERNAL_ERROR, "something odd", ErrorCode.HYPERVISOR_ERROR, "odd"),
])
def test_libvirt_errors_are_mapped(code: int, message: str, expected: ErrorCode,
                                   advice: str) -> None:
    failure = node_failure(_error(code, message), "starting VM web-1")
    assert failure.code is expected
    assert failure.message.startswith("starting VM web-1 failed: ")
    assert advice in failure.message
