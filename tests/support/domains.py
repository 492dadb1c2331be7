"""Waiting on test guests booted directly through libvirt."""

from __future__ import annotations

import time
from pathlib import Path

import libvirt

from overt.lab.guest.domain import GuestDomain

__all__ = ["GuestDomain", "wait_for_shutoff", "wait_for_text"]


def wait_for_text(path: Path, text: str, timeout: float) -> float:
    """Seconds until `text` appears in the file at `path`; AssertionError after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if path.exists() and text in path.read_text(errors="replace"):
            return time.monotonic() - start
        time.sleep(0.1)
    seen = path.read_text(errors="replace") if path.exists() else "(no output file)"
    raise AssertionError(f"{text!r} did not appear in {path} within {timeout} s; it holds:\n{seen}")


def wait_for_shutoff(domain: libvirt.virDomain, timeout: float) -> None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if not domain.isActive():
                return
        except libvirt.libvirtError:
            return  # a transient domain disappears once it is off
        time.sleep(0.1)
    raise AssertionError(f"domain {domain.name()} still runs after {timeout} s")
