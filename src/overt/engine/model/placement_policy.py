"""Which moves a VM's placement policy affinity allows: pure, for the service layer (a
user's migration) and the jobs (a maintenance's drain) alike."""

from __future__ import annotations

from overt.engine.model.status import VmAffinity


def migration_refusal(vm_name: str, affinity: str | None, *, by_engine: bool) -> str | None:
    """Why the VM's affinity keeps it on its host, or None when it may move.

    `by_engine`: the engine moves it on its own (balancing); a user's migration and a
    maintenance the administrator asked for move `user_migratable` VMs too."""
    found = VmAffinity(affinity or VmAffinity.MIGRATABLE)
    if found is VmAffinity.PINNED:
        return f"VM {vm_name} is pinned to its host (placement policy affinity pinned)"
    if by_engine and found is VmAffinity.USER_MIGRATABLE:
        return (f"VM {vm_name} may only be migrated by a user (placement policy affinity "
                "user_migratable)")
    return None
