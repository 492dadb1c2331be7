"""What storage says of a volume beyond its bytes: the disk's alias and description (an
NFS volume's `.meta` DESCRIPTION, the alias field of an iSCSI domain's `VOL_` line), the
names of a snapshot's memory volumes, and the `VOL_` lines of an iSCSI domain's metadata
area read back by an import. One writer and one reader of each, so what an engine shows
of a disk is what another engine that imports its domain shows."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass

TOP_OF_CHAIN = "00000000-0000-0000-0000-000000000000"
CHECKSUM_KEY = "_SHA_CKSUM"
# vdsm's DISKTYPE of a snapshot's memory volumes -> oVirt's disk content type
MEMORY_CONTENT = {"MEMD": "memory_dump_volume", "MEMM": "memory_metadata_volume"}
_WHAT = {"MEMD": "Memory dump", "MEMM": "Memory metadata"}
METADATA_BYTES = 1 << 20  # a snapshot's memory metadata volume: the domain's XML


def memory_disk_names(vm_name: str, vm_id: uuid.UUID, snapshot_description: str,
                      disk_type: str) -> tuple[str, str]:
    """The alias and description of a snapshot's memory volume (`MEMD` or `MEMM`), as
    oVirt names the disk: the API shows them, and storage keeps them for an import."""
    what = _WHAT[disk_type]
    return (f"{vm_name}_{snapshot_description}_{what}",
            f"{what} of snapshot '{snapshot_description}' of VM '{vm_name}' "
            f"(VM ID: '{vm_id}')")


def nfs_description(alias: str, description: str = "") -> str:
    """A `.meta` DESCRIPTION: oVirt's JSON of the disk's alias and description."""
    return json.dumps({"DiskAlias": alias, "DiskDescription": description})


def lun_description(alias: str, description: str = "", *, illegal: bool = False) -> str:
    """The alias field of a `VOL_` line: the same JSON, without a bare comma (the line's
    separator) or semicolon: keys are separated by `;`, and a comma or semicolon inside a
    value is a JSON escape (`\\u002c`, `\\u003b`), which `read_description` decodes."""
    fields = {"DiskAlias": alias}
    if description:
        fields["DiskDescription"] = description
    if illegal:
        fields["Legality"] = "ILLEGAL"
    parts = [f"{json.dumps(key)}:{_escaped(json.dumps(value))}" for key, value in fields.items()]
    return "{" + ";".join(parts) + "}"


def _escaped(literal: str) -> str:
    return literal.replace(",", "\\u002c").replace(";", "\\u003b")


def read_description(text: str | None) -> dict[str, str]:
    """The alias, description (and legality) of a DESCRIPTION or alias field; {} when it
    holds no JSON object (older volumes: a plain text)."""
    if not text:
        return {}
    for candidate in (text, text.replace(";", ",")):
        try:
            found = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(found, dict):
            return {str(k): str(v) for k, v in found.items() if v is not None}
    return {}


@dataclass(frozen=True)
class LunVolume:
    """One `VOL_` line of an iSCSI domain's metadata area."""

    key: str  # VOL_<volume id>
    line: str  # as written, kept verbatim when the volume is not adopted
    volume_id: uuid.UUID
    image_id: uuid.UUID
    offset: int
    size: int
    format: str  # COW or RAW
    virtual_size: int
    alias: str
    description: str
    legal: bool
    parent: str  # a volume id, or TOP_OF_CHAIN
    leaf: bool
    disk_type: str  # DATA, or MEMD / MEMM for a snapshot's memory
    snapshot_id: str  # the snapshot of a memory volume, else ""


class AreaDamaged(ValueError):
    """A metadata area whose lines do not describe a domain Overt can take over."""


def volume_lines(area: dict[str, str]) -> list[LunVolume]:
    """The volumes an area lists, in the order of their offsets; `AreaDamaged` for a line
    that cannot be read."""
    found = []
    for key, line in area.items():
        if not key.startswith("VOL_"):
            continue
        fields = line.split(",")
        try:
            if len(fields) not in (8, 10) or fields[7] not in ("LEAF", "INTERNAL"):
                raise ValueError(f"{len(fields)} fields")
            labels = read_description(fields[5])
            found.append(LunVolume(
                key=key, line=line, volume_id=uuid.UUID(key.removeprefix("VOL_")),
                image_id=uuid.UUID(fields[0]), offset=int(fields[1]), size=int(fields[2]),
                format=fields[3], virtual_size=int(fields[4]),
                alias=labels.get("DiskAlias", ""),
                description=labels.get("DiskDescription", ""),
                legal=labels.get("Legality", "LEGAL") == "LEGAL",
                parent=str(uuid.UUID(fields[6])), leaf=fields[7] == "LEAF",
                disk_type=fields[8] if len(fields) == 10 else "DATA",
                snapshot_id=fields[9] if len(fields) == 10 else ""))
        except ValueError as exc:
            raise AreaDamaged(f"its line {key} cannot be read ({exc})") from None
    return sorted(found, key=lambda v: v.offset)


def area_problem(area: dict[str, str], *, lun_size: int, first_extent: int) -> str | None:
    """Why a LUN's metadata area is no Overt iSCSI data domain that an engine may import,
    or None: no area, another kind of domain, a checksum that does not match its lines,
    a domain still attached to a data center, or extents outside the LUN or overlapping."""
    if not area.get("SDUUID"):
        return "it holds no Overt storage domain (no metadata area)"
    try:
        uuid.UUID(area["SDUUID"])
    except ValueError:
        return f"its metadata area names no domain id ({area['SDUUID']!r})"
    if area.get("TYPE") != "ISCSI" or area.get("CLASS") != "Data":
        return (f"it holds a {area.get('CLASS', '?')} domain of type {area.get('TYPE', '?')}, "
                "not an iSCSI data domain")
    if CHECKSUM_KEY in area and area[CHECKSUM_KEY] != _checksum(area):
        return "its metadata area is damaged (its checksum does not match its lines)"
    if area.get("POOL_UUID"):
        return (f"storage domain {area['SDUUID']} is still attached to data center "
                f"{area['POOL_UUID']}: put it in maintenance and detach it from its engine "
                "first")
    try:
        volumes = volume_lines(area)
    except AreaDamaged as exc:
        return f"its metadata area is damaged: {exc}"
    end = first_extent
    for volume in volumes:
        if volume.offset < end or volume.size <= 0 or volume.offset + volume.size > lun_size:
            return (f"its metadata area is damaged: volume {volume.volume_id} lies at "
                    f"{volume.offset}+{volume.size}, outside the LUN or over another volume")
        end = volume.offset + volume.size
    return None


def _checksum(area: dict[str, str]) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    for key, value in sorted(area.items()):
        if key != CHECKSUM_KEY:
            digest.update(f"{key}={value}".encode())
    return digest.hexdigest()
