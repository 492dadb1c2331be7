"""Choosing the domain type once: forced by settings, or probed and remembered on disk.

The probe costs seconds when KVM does not work, so its answer is kept in the
agent's data directory, keyed by what could change it (kernel, libvirt, QEMU, host).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import libvirt

from overt.node.hypervisor.libvirt_host import parse_capabilities
from overt.node.hypervisor.virt_probe import probe_virt_mode
from overt.protocol.host import VirtMode

log = logging.getLogger(__name__)


class VirtType(StrEnum):
    AUTO = "auto"  # probe by booting, once
    KVM = "kvm"
    QEMU = "qemu"


@dataclass(frozen=True)
class VirtModeChoice:
    """How the driver picks its domain type."""

    wanted: VirtType
    scratch_dir: Path  # QEMU-visible directory for the probe's console log
    cache_file: Path | None = None

    def resolve(self, conn: libvirt.virConnect) -> VirtMode:
        """The domain type to use on `conn`'s host. Blocking (may boot a probe domain)."""
        if self.wanted is not VirtType.AUTO:
            log.info("domain type %s (set by configuration)", self.wanted.value)
            return VirtMode(self.wanted.value)
        key = _cache_key(conn)
        cached = self._read_cache(key)
        if cached is not None:
            log.info("domain type %s (probed earlier on this host)", cached.value)
            return cached
        mode = probe_virt_mode(conn, self.scratch_dir)
        self._write_cache(key, mode)
        return mode

    def _read_cache(self, key: str) -> VirtMode | None:
        if self.cache_file is None:
            return None
        try:
            data = json.loads(self.cache_file.read_text())
            return VirtMode(data["mode"]) if data.get("key") == key else None
        except (OSError, ValueError, KeyError):
            return None

    def _write_cache(self, key: str, mode: VirtMode) -> None:
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        self.cache_file.write_text(json.dumps({"key": key, "mode": mode.value}))


def _cache_key(conn: libvirt.virConnect) -> str:
    host = parse_capabilities(conn.getCapabilities()).host_uuid
    return f"{os.uname().release}|{conn.getLibVersion()}|{conn.getVersion()}|{host}"
