"""Reads that services, jobs and the monitor share (a leaf: it imports none of them)."""

from overt.engine.queries.leases import (
    host_renews_storage_lease,
    vm_lease_expired,
    vm_lease_expires_in,
)

__all__ = ["host_renews_storage_lease", "vm_lease_expired", "vm_lease_expires_in"]
