"""Reading this machine's hardware facts from /proc and /sys (no tool needed: a node
booted from the network has only what its image holds).

`root` is "/" on a node; tests point it at a directory laid out the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from overt.protocol.hardware import MAX_DEVICES, DiskFact, HardwareFacts, NicFact

# The flags an administrator checks before putting a machine in a cluster.
NOTABLE_FLAGS = ("vmx", "svm", "hypervisor", "aes", "avx", "avx2", "avx512f", "sse4_2",
                 "x2apic", "nx", "lm", "pdpe1gb", "ept", "npt", "rdrand", "sha_ni")
_SKIPPED_NICS = ("lo",)
_SKIPPED_DISKS = re.compile(r"^(loop|ram|zram|dm-|sr|md|nbd)")
_BOOT_MAC = re.compile(r"(?:^|\s)(?:BOOTIF=01-|overt\.boot_mac=)([0-9A-Fa-f:-]{17})(?:\s|$)")


class _Cpu(NamedTuple):
    model: str = ""
    sockets: int = 1
    cores: int = 1
    threads: int = 1
    flags: tuple[str, ...] = ()


def read_facts(root: Path = Path("/")) -> HardwareFacts:
    """Everything readable; a fact the machine does not expose stays empty."""
    cpu = _cpu(_read(root / "proc/cpuinfo"))
    return HardwareFacts(
        cpu_model=cpu.model, cpu_sockets=cpu.sockets, cpu_cores=cpu.cores,
        cpu_threads=cpu.threads, cpu_flags=cpu.flags,
        memory_bytes=_memory(_read(root / "proc/meminfo")),
        disks=_disks(root / "sys/block"), nics=_nics(root / "sys/class/net"),
        manufacturer=_dmi(root, "sys_vendor"), product_name=_dmi(root, "product_name"),
        product_version=_dmi(root, "product_version"),
        serial_number=_dmi(root, "product_serial"), system_uuid=_dmi(root, "product_uuid"),
        family=_dmi(root, "product_family"),
        boot_mac=boot_mac(_read(root / "proc/cmdline")))


def boot_mac(cmdline: str) -> str | None:
    """The MAC the machine booted from: iPXE's `BOOTIF=01-aa-bb-...` or ours."""
    found = _BOOT_MAC.search(cmdline)
    return found.group(1).replace("-", ":").lower() if found else None


def _cpu(text: str) -> _Cpu:
    processors: list[dict[str, str]] = []
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" in fields:
            processors.append(fields)
    if not processors:
        return _Cpu()
    first = processors[0]
    sockets = len({p.get("physical id", "0") for p in processors}) or 1
    cores = _int(first.get("cpu cores")) or max(len(processors) // sockets, 1)
    siblings = _int(first.get("siblings")) or cores
    flags = set(first.get("flags", "").split())
    return _Cpu(first.get("model name", "")[:255], sockets, cores, max(siblings // cores, 1),
                tuple(f for f in NOTABLE_FLAGS if f in flags))


def _memory(text: str) -> int:
    found = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else 0


def _disks(block: Path) -> tuple[DiskFact, ...]:
    disks = []
    for path in sorted(block.iterdir()) if block.is_dir() else []:
        if _SKIPPED_DISKS.match(path.name):
            continue
        sectors = _int(_read(path / "size"))  # always in 512-byte sectors
        if not sectors:
            continue
        rotational = _read(path / "queue/rotational")
        disks.append(DiskFact(name=path.name[:64], size_bytes=sectors * 512,
                              model=_read(path / "device/model")[:128],
                              rotational=rotational == "1" if rotational else None))
    return tuple(disks[:MAX_DEVICES])


def _nics(net: Path) -> tuple[NicFact, ...]:
    nics = []
    for path in sorted(net.iterdir()) if net.is_dir() else []:
        # Physical NICs only: a bridge, a bond or a tap has no `device`.
        if path.name in _SKIPPED_NICS or not (path / "device").exists():
            continue
        carrier = _read(path / "carrier")
        speed = _int(_read(path / "speed"))
        nics.append(NicFact(name=path.name[:64], mac=_read(path / "address") or None,
                            link_up=carrier == "1" if carrier else None,
                            speed_mbps=speed if speed and speed > 0 else None))
    return tuple(nics[:MAX_DEVICES])


def _dmi(root: Path, name: str) -> str:
    """A DMI field; the serial and UUID are root-only on most machines (then empty)."""
    value = _read(root / "sys/class/dmi/id" / name)
    return "" if value.lower() in ("", "none", "not specified", "to be filled by o.e.m.",
                                   "default string") else value[:255]


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return ""


def _int(text: str | None) -> int:
    try:
        return int(text or "")
    except ValueError:
        return 0
