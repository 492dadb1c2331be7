"""Whether a host's hypervisor can migrate a running guest live without losing its
writes, and the policy that keeps the guest's memory whole where it cannot.

QEMU before 9.0 running guests without KVM (TCG) loses guest writes in a live
(pre-copy) migration: when it syncs its dirty bitmap 64 pages at a time it does not reset
TCG's TLB, so a vCPU goes on writing through entries that no longer mark their pages
dirty, and those pages reach the destination stale (fixed upstream by 03bfc2188f,
"physmem: Fix migration dirty bitmap coherency with TCG memory access"). Measured here:
a guest kernel oops in 1 of 32 first migrations of an idle guest, 6 of 16 of a busy one
(docs/migration.md). A migration with the guest paused for the whole copy loses nothing
(0 of 20), so that is what such a host gets, unless the engine is told its QEMU carries
the fix (`migration_tcg_live`). KVM hosts track dirty pages in the kernel and are not
affected.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from overt.protocol.migration import MigrationPolicy

FIXED_IN = (9, 0)  # the first QEMU release with 03bfc2188f


def _version(text: object) -> tuple[int, int] | None:
    found = re.match(r"(\d+)\.(\d+)", str(text or ""))
    return (int(found[1]), int(found[2])) if found else None


def live_migration_hazard(capabilities: Mapping[str, Any] | None) -> str | None:
    """Why live migration from a host with these capabilities would lose guest writes;
    None when it would not (KVM, a fixed QEMU, or a version the host did not state)."""
    if not capabilities or capabilities.get("virt_mode") != "qemu":
        return None
    version = _version(capabilities.get("qemu_version"))
    if version is None or version >= FIXED_IN:
        return None
    return (f"its hypervisor is QEMU {capabilities.get('qemu_version')} without KVM, whose "
            "live migration loses guest writes (fixed in QEMU 9.0)")


def paused_policy(policy: MigrationPolicy) -> MigrationPolicy:
    """`policy` with the guest paused for the whole copy: what throttles or hands over a
    running guest (auto-converge, post-copy) has nothing to do then."""
    return policy.model_copy(update={"live": False, "auto_converge": False,
                                     "post_copy_after_iterations": None})
