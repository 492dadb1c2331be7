"""iSCSI storage domains without LVM: a LUN whose first MiB is the domain's metadata and
whose volumes are extents (offset, size) the engine allocates.

Everything goes through QEMU's iSCSI client (libiscsi): `qemu-img` with image options
`driver=raw,offset=..,size=..,file.driver=iscsi,...` reads and writes a window of the
LUN, the same way libvirt gives QEMU an extent to run (`<slices>`). Nodes need no
kernel initiator and no device-mapper.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from overt.node.errors import NodeFailure
from overt.node.storage import chap
from overt.node.storage.local import _qemu_img
from overt.protocol import ErrorCode
from overt.protocol.storage import (
    DOMAIN_AREA,
    LEASE_AREA_SIZE,
    LEASE_AREAS,
    METADATA_AREA,
    ExtentCommit,
    ExtentFormat,
    ExtentRef,
    IscsiLunRef,
    LunCommand,
    LunContents,
    LunMetadataWrite,
    LunRead,
    SharedVolumeInfo,
)
from overt.protocol.vm import DiskFormat, IscsiSource

log = logging.getLogger(__name__)

END_MARKER = "EOF"


def lun_url(lun: IscsiLunRef | IscsiSource) -> str:
    """The LUN as a URL: for messages and for QEMU without CHAP (never credentials)."""
    return f"iscsi://{lun.portal}/{lun.target}/{lun.lun}"


def lun_options(lun: IscsiLunRef | IscsiSource) -> str:
    """Image options of the whole LUN for the iSCSI driver, CHAP included."""
    host, _, port = lun.portal.partition(":")
    options = (f"driver=iscsi,transport=tcp,portal={host}:{port or 3260},"
               f"target={lun.target},lun={lun.lun}")
    auth = chap.image_options(lun.target, lun.chap)
    return f"{options},{auth}" if auth else options


def window(lun: IscsiLunRef | IscsiSource, offset: int, size: int,
           fmt: DiskFormat | None = None) -> str:
    """Image options for `size` bytes of the LUN from `offset` (as a raw image, or as
    the `fmt` image that lies there)."""
    raw = f"driver=raw,offset={offset},size={size}," + ",".join(
        f"file.{part}" for part in lun_options(lun).split(","))
    if fmt is None or fmt is DiskFormat.RAW:
        return raw
    return f"driver={fmt.value}," + ",".join(f"file.{part}" for part in raw.split(","))


def image_json(options: str) -> str:
    """The `json:` filename of comma-separated image options (a qcow2 backing name)."""
    tree: dict[str, object] = {}
    for part in options.split(","):
        key, _, value = part.partition("=")
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            child = node.setdefault(parent, {})
            assert isinstance(child, dict)
            node = child
        node[leaf] = int(value) if value.isdigit() and leaf in ("offset", "size", "lun") \
            else value
    return "json:" + json.dumps(tree, separators=(",", ":"), sort_keys=True)


async def run_qemu_img(argv: list[str], action: str,
                       luns: Sequence[IscsiLunRef | IscsiSource]) -> str:
    """`qemu-img` over LUNs, with the secret objects their CHAP credentials need; a
    target refusing the login is said in those words (not a bare libiscsi status)."""
    credentials = [(lun.target, lun.chap) for lun in luns]
    with chap.secret_objects(credentials) as objects:
        try:
            return await _qemu_img(chap.with_objects(argv, objects), action)
        except NodeFailure as failure:
            message = failure.message
            for _target, auth in credentials:
                message = chap.scrub(message, auth)
            if chap.refused_login(message):
                said = message.rsplit("': ", 1)[-1]  # libiscsi's words, not QEMU's options
                raise NodeFailure(ErrorCode.BAD_REQUEST, f"{action} failed: the iSCSI target "
                                  "refused the login (check the CHAP user name and password "
                                  f"of the connection): {said}") from None
            raise NodeFailure(failure.code, message) from None


async def execute(command: LunCommand) -> LunContents | SharedVolumeInfo:
    match command:
        case LunRead(lun=lun):
            return await _read(lun)
        case LunMetadataWrite(lun=lun, metadata=text, clear_leases=clear):
            if clear:
                await _copy_in(lun, bytes(2 * LEASE_AREA_SIZE), LEASE_AREAS["ids"],
                               2 * LEASE_AREA_SIZE, f"clearing the lease areas of {lun_url(lun)}")
            await _write_area(lun, text)
            return await _read(lun)
        case ExtentFormat():
            return await _format(command)
        case ExtentCommit():
            return await _commit(command)
    raise NodeFailure(ErrorCode.BAD_REQUEST, f"unknown storage command {command.name}")


async def _size(lun: IscsiLunRef) -> int:
    # With CHAP the LUN is named by options (a URL would carry the password).
    image = ["--image-opts", lun_options(lun)] if lun.chap is not None else [lun_url(lun)]
    out = await run_qemu_img(["qemu-img", "info", "-U", "--output=json", *image],
                             f"reading LUN {lun_url(lun)}", [lun])
    return int(json.loads(out)["virtual-size"])


async def _read(lun: IscsiLunRef) -> LunContents:
    size = await _size(lun)
    if size <= DOMAIN_AREA:
        raise NodeFailure(ErrorCode.BAD_REQUEST, f"LUN {lun_url(lun)} is too small for a "
                          "storage domain")
    with tempfile.TemporaryDirectory(prefix="overt-lun-") as tmp:
        copy = Path(tmp) / "area"
        await run_qemu_img(["qemu-img", "convert", "-q", "--image-opts",
                            window(lun, 0, METADATA_AREA), "-O", "raw", str(copy)],
                           f"reading the metadata area of {lun_url(lun)}", [lun])
        data = copy.read_bytes()
    text = data.split(b"\0", 1)[0].decode(errors="replace")
    if f"\n{END_MARKER}\n" not in f"\n{text}":
        text = ""  # blank, or not a metadata area Overt wrote
    return LunContents(size_bytes=size, metadata=text)


async def _write_area(lun: IscsiLunRef, text: str) -> None:
    body = text.rstrip("\n") + f"\n{END_MARKER}\n"
    data = body.encode()
    if len(data) > METADATA_AREA:
        raise NodeFailure(ErrorCode.BAD_REQUEST, "the domain's metadata outgrew its area")
    await _copy_in(lun, data.ljust(METADATA_AREA, b"\0"), 0, METADATA_AREA,
                   f"writing the metadata area of {lun_url(lun)}")
    log.info("LUN metadata written", extra={"volume": lun_url(lun)})


async def _copy_in(lun: IscsiLunRef, data: bytes, offset: int, size: int, action: str) -> None:
    with tempfile.TemporaryDirectory(prefix="overt-lun-") as tmp:
        source = Path(tmp) / "data"
        source.write_bytes(data)
        await run_qemu_img(["qemu-img", "convert", "-q", "-n", "-f", "raw", str(source),
                            "--target-image-opts", window(lun, offset, size)], action, [lun])


async def _format(command: ExtentFormat) -> SharedVolumeInfo:
    lun, where = command.lun, f"{lun_url(command.lun)} at {command.offset}"
    if command.offset + command.size > await _size(lun):
        raise NodeFailure(ErrorCode.BAD_REQUEST, f"the extent {where} (+{command.size}) "
                          "ends past the LUN")
    if command.format is DiskFormat.QCOW2:
        with tempfile.TemporaryDirectory(prefix="overt-lun-") as tmp:
            header = Path(tmp) / "empty.qcow2"
            backing = []
            if command.backing is not None:
                under = command.backing
                if under.offset < command.offset + command.size and \
                        command.offset < under.offset + under.size:
                    raise NodeFailure(ErrorCode.BAD_REQUEST, f"the extent {where} overlaps "
                                      "its backing extent")
                # -u: the backing is not opened here; the header only names it.
                backing = ["-u", "-F", under.format.value, "-b", image_json(
                    window(lun, under.offset, under.size, under.format))]
            await _qemu_img(["qemu-img", "create", "-q", "-f", "qcow2", *backing, str(header),
                             str(command.virtual_size)], "making an empty qcow2 image")
            await _copy_in(lun, header.read_bytes(), command.offset, command.size,
                           f"writing a qcow2 volume on {where}")
        out = await run_qemu_img(["qemu-img", "info", "-U", "--output=json", "--image-opts",
                                  window(lun, command.offset, command.size, DiskFormat.QCOW2)],
                                 f"reading the volume on {where}", [lun])
        virtual = int(json.loads(out)["virtual-size"])
    else:
        # A raw volume is the extent itself; zeroing its start hides an old partition table.
        start = min(command.size, METADATA_AREA)
        await _copy_in(lun, bytes(start), command.offset, command.size,
                       f"clearing the start of the volume on {where}")
        virtual = command.size
    log.info("extent volume made", extra={"volume": where})
    return SharedVolumeInfo(format=command.format, virtual_size=virtual,
                            actual_size=command.size)


def _tree(lun: IscsiLunRef, extent: ExtentRef) -> dict[str, object]:
    """The image options of a volume on an extent, as a JSON tree."""
    tree = json.loads(image_json(window(lun, extent.offset, extent.size, extent.format))[5:])
    assert isinstance(tree, dict)
    return tree


def _slice(tree: object) -> tuple[object, ...] | None:
    """The LUN window a backing name opens: its target, LUN, offset and size. A name
    written by `extent_format` wraps it in its format; one QEMU wrote after a live merge
    (libvirt's `json:` for a `<slices>` source) is the window alone, its keys in another
    order."""
    while isinstance(tree, dict) and "offset" not in tree:
        tree = tree.get("file")
    if not isinstance(tree, dict) or not isinstance(tree.get("file"), dict):
        return None
    lun = tree["file"]
    return (lun.get("target"), int(lun.get("lun", -1)), int(tree["offset"]),
            int(tree.get("size", -1)))


async def _commit(command: ExtentCommit) -> SharedVolumeInfo:
    lun, top, base = command.lun, command.top, command.base
    where = f"{lun_url(lun)} at {top.offset}"
    out = await run_qemu_img(["qemu-img", "info", "-U", "--output=json", "--image-opts",
                              window(lun, top.offset, top.size, DiskFormat.QCOW2)],
                             f"reading the volume on {where}", [lun])
    named = str(json.loads(out).get("backing-filename") or "")
    try:
        backing = json.loads(named[5:]) if named.startswith("json:") else None
    except ValueError:
        backing = None
    if _slice(backing) != _slice(_tree(lun, base)):
        raise NodeFailure(ErrorCode.BAD_REQUEST, f"the volume on {where} is not over the "
                          f"extent at {base.offset} (its backing is {named or 'none'})")
    # The backing opens read-write from the start, as on NFS (no reopen of a read-only
    # image over the network client).
    spec = {"driver": "qcow2", "file": _tree(lun, top.model_copy(update={
        "format": DiskFormat.RAW})), "backing": {**_tree(lun, base), "read-only": False}}
    await run_qemu_img(["qemu-img", "commit", "-q", "-d",
                        "json:" + json.dumps(spec, separators=(",", ":"))],
                       f"merging the volume on {where} into the one at {base.offset}", [lun])
    if command.child is not None:
        child = command.child
        await run_qemu_img(["qemu-img", "rebase", "-q", "-u", "-b", image_json(window(
            lun, base.offset, base.size, base.format)), "-F", base.format.value,
            "--image-opts", window(lun, child.offset, child.size, DiskFormat.QCOW2)],
            f"rebasing the volume at {child.offset} of {lun_url(lun)} onto {base.offset}", [lun])
    log.info("extent volume merged", extra={"volume": where, "base": base.offset})
    return SharedVolumeInfo(format=base.format, virtual_size=0, actual_size=base.size)
