"""oVirt's iSCSI discovery and LUN list, through libiscsi (the library QEMU's iSCSI
driver uses): hosts have no kernel initiator, so there is no session to log in to and
no /dev/sdX to read; the node asks the target directly.

libiscsi's own tools print a binary NAA designator (VPD page 0x83) as text, which loses
it, so the library is bound here with ctypes, as libnfs is (`libiscsi7` comes with
`qemu-block-extra`). Each request runs in a child process (`python -m
overt.node.storage.iscsi_scan`) given the request, CHAP password included, as JSON on its
stdin: the password is on no command line and in no environment, and a portal that does
not answer costs a killed child, not a stuck agent thread.

The SCSI id is written as udev's `scsi_id --whitelisted` (and so vdsm and oVirt) writes
a WWID: the designator type digit, then the designator in hex (`3` + NAA, e.g.
`360000000000000000e00000000010001` for tgt's LUN 1 of target 1); without an NAA
designator, `1` + the T10 vendor id text, or `8` + an SCSI name string.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import sys
from typing import Any

from overt.node.errors import NodeFailure
from overt.node.storage import chap
from overt.protocol import ErrorCode
from overt.protocol.storage import (
    DiscoveredTarget,
    DiscoveredTargets,
    IscsiCommand,
    IscsiDiscover,
    IscsiLunInfo,
    IscsiLunList,
    IscsiLuns,
)
from overt.protocol.vm import ChapAuth

log = logging.getLogger(__name__)

TIMEOUT_S = 20.0
INITIATOR = "iqn.2026-12.org.overt:node"
_DIRECT_ACCESS = 0  # SCSI peripheral device type of a disk


async def execute(command: IscsiCommand) -> DiscoveredTargets | IscsiLuns:
    match command:
        case IscsiDiscover(portal=portal, chap=auth):
            found = await _run({"op": "discover", "portal": _portal(portal)}, auth,
                               f"discovering the targets of {portal}")
            return DiscoveredTargets(targets=[DiscoveredTarget(**t) for t in found])
        case IscsiLunList(portal=portal, target=target, chap=auth):
            found = await _run({"op": "luns", "portal": _portal(portal), "target": target},
                               auth, f"listing the LUNs of {target} on {portal}")
            return IscsiLuns(luns=[IscsiLunInfo(**lun) for lun in found])
    raise NodeFailure(ErrorCode.BAD_REQUEST, f"unknown iSCSI command {command.name}")


def _portal(portal: str) -> str:
    return portal if ":" in portal else f"{portal}:3260"


async def _run(request: dict[str, Any], auth: ChapAuth | None, action: str) -> Any:
    if auth is not None:
        request = {**request, "username": auth.username, "password": auth.password}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "overt.node.storage.iscsi_scan", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(json.dumps(request).encode()),
                                          TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise NodeFailure(ErrorCode.BAD_REQUEST, f"{action} failed: the portal did not "
                          f"answer within {TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        said = chap.scrub((err.decode(errors="replace").strip().splitlines() or ["?"])[-1],
                          auth)
        if "authentication failure" in said.lower() or "authorization failure" in said.lower():
            raise NodeFailure(ErrorCode.BAD_REQUEST, f"{action} failed: the iSCSI target "
                              "refused the login (check the CHAP user name and password): "
                              f"{said}")
        raise NodeFailure(ErrorCode.BAD_REQUEST, f"{action} failed: {said}")
    return json.loads(out)


# -- the child: libiscsi through ctypes ---------------------------------------------------


class _Designator(ctypes.Structure):
    pass


_Designator._fields_ = [
    ("next", ctypes.POINTER(_Designator)), ("protocol_identifier", ctypes.c_int),
    ("code_set", ctypes.c_int), ("piv", ctypes.c_int), ("association", ctypes.c_int),
    ("designator_type", ctypes.c_int), ("designator_length", ctypes.c_int),
    ("designator", ctypes.POINTER(ctypes.c_ubyte))]


class _DeviceIdentification(ctypes.Structure):
    _fields_ = [("qualifier", ctypes.c_int), ("device_type", ctypes.c_int),
                ("pagecode", ctypes.c_int), ("designators", ctypes.POINTER(_Designator))]


class _SerialNumber(ctypes.Structure):
    _fields_ = [("qualifier", ctypes.c_int), ("device_type", ctypes.c_int),
                ("pagecode", ctypes.c_int), ("usn", ctypes.c_char_p)]


class _Standard(ctypes.Structure):
    # 22 ints (qualifier .. ius), then the identification strings, NUL-terminated.
    _fields_ = [("ints", ctypes.c_int * 22), ("vendor", ctypes.c_char * 9),
                ("product", ctypes.c_char * 17), ("revision", ctypes.c_char * 5)]


class _Capacity16(ctypes.Structure):
    _fields_ = [("returned_lba", ctypes.c_uint64), ("block_length", ctypes.c_uint32)]


class _ReportLuns(ctypes.Structure):
    _fields_ = [("num", ctypes.c_uint32), ("luns", ctypes.c_uint16 * 1024)]


class _Portal(ctypes.Structure):
    pass


_Portal._fields_ = [("next", ctypes.POINTER(_Portal)), ("portal", ctypes.c_char_p)]


class _Discovered(ctypes.Structure):
    pass


_Discovered._fields_ = [("next", ctypes.POINTER(_Discovered)), ("target_name", ctypes.c_char_p),
                        ("portals", ctypes.POINTER(_Portal))]


def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL("libiscsi.so.7")
    vp, cp, i = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for name, args, res in (
            ("iscsi_create_context", [cp], vp), ("iscsi_destroy_context", [vp], i),
            ("iscsi_set_targetname", [vp, cp], i), ("iscsi_set_session_type", [vp, i], i),
            ("iscsi_set_header_digest", [vp, i], i),
            ("iscsi_set_initiator_username_pwd", [vp, cp, cp], i),
            ("iscsi_connect_sync", [vp, cp], i), ("iscsi_login_sync", [vp], i),
            ("iscsi_full_connect_sync", [vp, cp, i], i), ("iscsi_get_error", [vp], cp),
            ("iscsi_discovery_sync", [vp], vp), ("iscsi_free_discovery_data", [vp, vp], None),
            ("iscsi_logout_sync", [vp], i),
            ("iscsi_inquiry_sync", [vp, i, i, i, i], vp),
            ("iscsi_readcapacity16_sync", [vp, i], vp),
            ("iscsi_reportluns_sync", [vp, i, i], vp),
            ("scsi_datain_unmarshall", [vp], vp), ("scsi_free_scsi_task", [vp], None)):
        function = getattr(lib, name)
        function.argtypes, function.restype = args, res
    return lib


class _Failed(Exception):
    pass


def _context(lib: ctypes.CDLL, request: dict[str, Any], session_type: int) -> Any:
    ctx = lib.iscsi_create_context(INITIATOR.encode())
    if not ctx:
        raise _Failed("libiscsi could not make a context")
    lib.iscsi_set_session_type(ctx, session_type)
    lib.iscsi_set_header_digest(ctx, 0)  # none (tgt and most targets offer it)
    if request.get("username"):
        lib.iscsi_set_initiator_username_pwd(ctx, request["username"].encode(),
                                             request["password"].encode())
    return ctx


def _discover(lib: ctypes.CDLL, request: dict[str, Any]) -> list[dict[str, Any]]:
    ctx = _context(lib, request, 1)  # ISCSI_SESSION_DISCOVERY
    if lib.iscsi_connect_sync(ctx, request["portal"].encode()) != 0:
        raise _Failed(f"no iSCSI portal answers at {request['portal']}")
    if lib.iscsi_login_sync(ctx) != 0:
        raise _Failed(lib.iscsi_get_error(ctx).decode(errors="replace"))
    head = lib.iscsi_discovery_sync(ctx)
    if not head:
        raise _Failed(lib.iscsi_get_error(ctx).decode(errors="replace"))
    found: list[dict[str, Any]] = []
    entry = ctypes.cast(head, ctypes.POINTER(_Discovered))
    while entry:
        name = (entry.contents.target_name or b"").decode()
        portal = entry.contents.portals
        while portal:
            said = (portal.contents.portal or b"").decode()
            where = said.split(",", 1)[0]
            address, _, port = where.rpartition(":")
            found.append({"target": name, "address": address.strip("[]"),
                          "port": int(port or 3260), "portal": said})
            portal = portal.contents.next
        entry = entry.contents.next
    lib.iscsi_free_discovery_data(ctx, head)
    lib.iscsi_logout_sync(ctx)
    lib.iscsi_destroy_context(ctx)
    return found


def _task(lib: ctypes.CDLL, ctx: Any, call: str, *args: int) -> Any:
    """A SCSI command's task, asked again while the target answers with a check condition
    (a unit attention after the login); None when it never succeeds."""
    for _attempt in range(3):
        task = getattr(lib, call)(ctx, *args)
        if task and ctypes.cast(task, ctypes.POINTER(ctypes.c_int)).contents.value == 0:
            return task  # SCSI status GOOD (the task's first field)
        if task:
            lib.scsi_free_scsi_task(task)
    return None


def _unmarshalled(lib: ctypes.CDLL, ctx: Any, task: Any, what: str) -> Any:
    if not task:
        raise _Failed(f"{what}: {lib.iscsi_get_error(ctx).decode(errors='replace')}")
    data = lib.scsi_datain_unmarshall(task)
    if not data:
        raise _Failed(f"{what}: the target's answer could not be read")
    return data


def _scsi_id(designators: Any) -> str:
    """udev scsi_id's WWID: NAA first, then T10 vendor id, then SCSI name string."""
    ids: dict[int, str] = {}
    while designators:
        d = designators.contents
        if d.association == 0:  # of the logical unit
            raw = bytes(d.designator[:d.designator_length])
            if d.designator_type == 3 and 3 not in ids:
                ids[3] = "3" + raw.hex()
            elif d.designator_type == 1 and 1 not in ids:
                ids[1] = "1" + raw.decode(errors="replace").strip("\0").replace(" ", "_")
            elif d.designator_type == 8 and 8 not in ids:
                ids[8] = "8" + raw.decode(errors="replace").strip("\0")
        designators = d.next
    return ids.get(3) or ids.get(1) or ids.get(8) or ""


def _luns(lib: ctypes.CDLL, request: dict[str, Any]) -> list[dict[str, Any]]:
    ctx = _context(lib, request, 2)  # ISCSI_SESSION_NORMAL
    lib.iscsi_set_targetname(ctx, request["target"].encode())
    if lib.iscsi_full_connect_sync(ctx, request["portal"].encode(), 0) != 0:
        raise _Failed(lib.iscsi_get_error(ctx).decode(errors="replace"))
    task = _task(lib, ctx, "iscsi_reportluns_sync", 0, 16384)
    reported = ctypes.cast(_unmarshalled(lib, ctx, task, "REPORT LUNS"),
                           ctypes.POINTER(_ReportLuns)).contents
    numbers = sorted(reported.luns[i] & 0x3FFF for i in range(min(reported.num, 1024)))
    lib.scsi_free_scsi_task(task)
    found = []
    for number in numbers:
        task = _task(lib, ctx, "iscsi_inquiry_sync", number, 0, 0, 255)
        standard = ctypes.cast(_unmarshalled(lib, ctx, task, f"INQUIRY of LUN {number}"),
                               ctypes.POINTER(_Standard)).contents
        device_type = standard.ints[1]
        vendor = standard.vendor.decode(errors="replace").strip()
        product = standard.product.decode(errors="replace").strip()
        lib.scsi_free_scsi_task(task)
        if device_type != _DIRECT_ACCESS:
            continue
        task = _task(lib, ctx, "iscsi_inquiry_sync", number, 1, 0x83, 255)
        ident = ctypes.cast(_unmarshalled(lib, ctx, task, f"VPD 0x83 of LUN {number}"),
                            ctypes.POINTER(_DeviceIdentification)).contents
        scsi_id = _scsi_id(ident.designators)
        lib.scsi_free_scsi_task(task)
        serial = ""
        task = _task(lib, ctx, "iscsi_inquiry_sync", number, 1, 0x80, 255)
        if task:  # page 0x80 is optional
            data = lib.scsi_datain_unmarshall(task)
            if data:
                usn = ctypes.cast(data, ctypes.POINTER(_SerialNumber)).contents.usn
                serial = (usn or b"").decode(errors="replace").strip()
            lib.scsi_free_scsi_task(task)
        task = _task(lib, ctx, "iscsi_readcapacity16_sync", number)
        capacity = ctypes.cast(_unmarshalled(lib, ctx, task, f"READ CAPACITY of LUN {number}"),
                               ctypes.POINTER(_Capacity16)).contents
        size = (capacity.returned_lba + 1) * capacity.block_length
        lib.scsi_free_scsi_task(task)
        found.append({"lun": number, "scsi_id": scsi_id, "size_bytes": size,
                      "serial": serial, "vendor": vendor, "product": product})
    lib.iscsi_logout_sync(ctx)
    lib.iscsi_destroy_context(ctx)
    return found


def main() -> int:
    request = json.loads(sys.stdin.read())
    try:
        lib = _library()
        found = _discover(lib, request) if request["op"] == "discover" else _luns(lib, request)
    except (_Failed, OSError) as failure:
        print(str(failure), file=sys.stderr)
        return 1
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
