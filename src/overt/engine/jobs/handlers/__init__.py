"""Job handlers, one module per kind of object; `HANDLERS` maps job actions to them."""

from __future__ import annotations

from overt.engine.jobs.context import FailureHook, Handler
from overt.engine.jobs.handlers import disks, fencing, host_networks, host_refresh, hosts, vms

HANDLERS: dict[str, Handler] = {**vms.HANDLERS, **disks.HANDLERS, **hosts.HANDLERS,
                                 **host_refresh.HANDLERS, **host_networks.HANDLERS,
                                 **fencing.HANDLERS}
FAILURE_HOOKS: dict[str, FailureHook] = {**vms.FAILURE_HOOKS, **disks.FAILURE_HOOKS,
                                          **hosts.FAILURE_HOOKS}
