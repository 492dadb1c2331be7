"""oVirt's notifiable events (`NotifiableEvent`) Overt raises, and their audit codes.

A subscription names an oVirt event; an audit event notifies every subscription whose
event lists its code. The table is documented in docs/snmp.md: change both together.
"""

from __future__ import annotations

from overt.engine import audit

NOTIFIABLE: dict[str, frozenset[int]] = {
    "host_failure": frozenset({audit.HOST_NON_RESPONSIVE}),
    "host_install_failed": frozenset({audit.HOST_INSTALL_FAILED}),
    "host_set_nonoperational": frozenset({audit.HOST_NETWORKS_MISSING}),
    "host_recover_failed": frozenset({audit.HOST_FENCE_FAILED}),
    "host_certification_is_about_to_expire": frozenset({audit.CERTIFICATE_EXPIRING}),
    "user_host_maintenance": frozenset({audit.HOST_MAINTENANCE}),
    "user_host_maintenance_migration_failed": frozenset({audit.HOST_MAINTENANCE_FAILED}),
    "vm_down_error": frozenset({audit.VM_DOWN, audit.VM_LOST}),
    "vm_failure": frozenset({audit.VM_START_FAILED}),
    "vm_migration_failed": frozenset({audit.VM_MIGRATION_FAILED}),
    "vm_migration_start": frozenset({audit.VM_MIGRATION_STARTED}),
    "system_deactivated_storage_domain": frozenset({audit.STORAGE_DOMAIN_DEACTIVATED}),
}

# SNMP's view of a severity (overtEventSeverity)
SEVERITIES: dict[str, int] = {"normal": 1, "warning": 2, "error": 3, "alert": 4}


def events_of(code: int) -> list[str]:
    """The notifiable events an audit code raises, in name order."""
    return sorted(name for name, codes in NOTIFIABLE.items() if code in codes)


def check_event(name: str) -> str:
    """`name` if Overt raises that event; a ValueError listing the ones it does otherwise."""
    if name not in NOTIFIABLE:
        raise ValueError(f"event {name!r} is not one this engine notifies; use one of "
                         f"{', '.join(sorted(NOTIFIABLE))}")
    return name
