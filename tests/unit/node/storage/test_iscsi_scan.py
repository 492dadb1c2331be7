"""The SCSI id of a LUN from its VPD 0x83 designators, as udev's scsi_id writes a WWID."""

from __future__ import annotations

import ctypes
from typing import Any

from overt.node.storage import iscsi_scan
from overt.node.storage.iscsi_scan import _Designator


def _chain(*designators: tuple[int, int, bytes]) -> Any:
    """(association, designator type, bytes) as libiscsi's linked list; kept alive."""
    head: Any = ctypes.POINTER(_Designator)()
    keep = []
    for association, kind, raw in reversed(designators):
        buffer = (ctypes.c_ubyte * len(raw)).from_buffer_copy(raw)
        node = _Designator(next=head, association=association, designator_type=kind,
                           designator_length=len(raw),
                           designator=ctypes.cast(buffer, ctypes.POINTER(ctypes.c_ubyte)))
        keep += [buffer, node]
        head = ctypes.pointer(node)
    return head, keep


def test_naa_comes_first_then_the_vendor_id_then_the_name_string() -> None:
    # tgt's LUN 1 of target 1: NAA 6 (16 bytes), a short NAA, and a T10 vendor id.
    naa = bytes.fromhex("60000000000000000e00000000010001")
    chain, _keep = _chain((0, 3, naa), (0, 3, bytes.fromhex("3000000100000001")),
                          (0, 1, b"IET     00010001"))
    assert iscsi_scan._scsi_id(chain) == "360000000000000000e00000000010001"
    chain, _keep = _chain((1, 3, naa), (0, 1, b"IET     00010001"))  # NAA of the port
    assert iscsi_scan._scsi_id(chain) == "1IET_____00010001"
    chain, _keep = _chain((0, 8, b"iqn.2026-11.org.example:lun1\0"))
    assert iscsi_scan._scsi_id(chain) == "8iqn.2026-11.org.example:lun1"
    assert iscsi_scan._scsi_id(ctypes.POINTER(_Designator)()) == ""
