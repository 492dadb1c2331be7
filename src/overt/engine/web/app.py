"""The portal's routes, mounted by the engine's API process next to the API."""

from __future__ import annotations

import logging
from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from overt.engine.web import (
    auth,
    console,
    disk_uploads,
    disks,
    graphs,
    host_networks,
    hosts,
    inventory,
    live,
    notifications,
    pages,
    passwords,
    provisioning,
    user_portal,
    vm_cdrom,
    vm_nics,
    vm_snapshots,
    vms,
    vnic_profiles,
)

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def web_routes() -> list[BaseRoute]:
    """Pages under /, static files under /static; the app must hold `change_feed` in state."""
    if not (STATIC / "vendor" / "htmx" / "htmx.min.js").exists():
        log.error("the portal's front-end libraries are missing from %s/vendor: run "
                  "scripts/setup (it installs them with npm)", STATIC)
    return [
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *auth.ROUTES, *passwords.ROUTES, *user_portal.ROUTES, *live.ROUTES, *graphs.ROUTES, *console.ROUTES,
        *vm_nics.ROUTES,  # before the VM actions' /vms/{vm_id}/{action}
        *vm_cdrom.ROUTES,
        *vm_snapshots.ROUTES,
        *vms.ROUTES, *inventory.ROUTES,
        *disk_uploads.ROUTES,  # before the disk actions' /disks/{disk_id}/...
        *disks.ROUTES,
        *host_networks.ROUTES,  # before the host actions' /hosts/{host_id}/{action}
        *hosts.ROUTES,
        *vnic_profiles.ROUTES, *provisioning.ROUTES, *notifications.ROUTES,
        *pages.ROUTES,
    ]
