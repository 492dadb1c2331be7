"""The logical units, one module per kind of object; `UNITS` maps each job kind's spec
class to how it runs and what it undoes."""

from __future__ import annotations

from typing import Any

from overt.engine.jobs.context import Unit
from overt.engine.jobs.handlers import (
    consoles,
    disk_copies,
    disk_moves,
    disks,
    fencing,
    host_iscsi,
    host_maintenance,
    host_networks,
    host_recovery,
    host_refresh,
    hosts,
    leftovers,
    snapshot_preview,
    snapshot_restore,
    snapshots,
    storage_domains,
    vm_cdroms,
    vm_migrate,
    vm_nics,
    vm_start,
    vms,
)
from overt.engine.jobs.kinds import KINDS, JobSpec

UNITS: dict[type[JobSpec], Unit[Any]] = {
    **vm_start.UNITS, **vms.UNITS, **consoles.UNITS, **disks.UNITS, **hosts.UNITS,
    **host_refresh.UNITS, **host_networks.UNITS, **storage_domains.UNITS,
    **vm_nics.UNITS, **fencing.UNITS, **vm_migrate.UNITS, **disk_copies.UNITS,
    **disk_moves.UNITS, **snapshots.UNITS, **snapshot_restore.UNITS,
    **snapshot_preview.UNITS, **host_maintenance.UNITS, **host_recovery.UNITS, **vm_cdroms.UNITS,
    **leftovers.UNITS, **host_iscsi.UNITS}

_missing = set(KINDS.values()) - set(UNITS)
if _missing:  # a kind nobody can run would fail every job of it: refuse to start instead
    raise ImportError(f"job kinds without a unit: {sorted(k.kind for k in _missing)}")
