"""GET /ovirt-engine/api: product information, special objects and a summary."""

from __future__ import annotations

from sqlalchemy import func, select
from starlette.responses import Response

from overt import __version__
from overt.engine.api import views
from overt.engine.api.context import API_PREFIX, ApiContext
from overt.engine.api.routing import ApiRoutes
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Host, StorageDomain, User, Vm, utcnow
from overt.engine.model.status import HostStatus, StorageDomainStatus, VmStatus
from overt.engine.services.tags import ROOT_TAG_ID

routes = ApiRoutes()

COLLECTIONS = ("clusters", "datacenters", "disks", "events", "hosts", "jobs", "macpools",
               "networkfilters", "networks",
               "storagedomains", "tags", "templates", "users", "vms", "vnicprofiles")
SEARCHABLE = ("clusters", "datacenters", "disks", "events", "hosts", "networks",
              "storagedomains", "tags", "templates", "users", "vms", "vnicprofiles")


async def _count(ctx: ApiContext, model: type, condition: object = None) -> int:
    stmt = select(func.count()).select_from(model)
    if condition is not None:
        stmt = stmt.where(condition)  # type: ignore[arg-type]
    return int((await ctx.session.execute(stmt)).scalar_one())


@routes.get("")
async def api_root(ctx: ApiContext) -> Response:
    links = [{"href": f"{API_PREFIX}/{name}", "rel": name} for name in COLLECTIONS]
    links += [{"href": f"{API_PREFIX}/{name}?search={{query}}", "rel": f"{name}/search"}
              for name in SEARCHABLE]
    major, minor = views.ENGINE_VERSION["major"], views.ENGINE_VERSION["minor"]
    rep = {
        "link": links,
        "authenticated_user": views.ref("users", ctx.user.id),
        "effective_user": views.ref("users", ctx.user.id),
        "product_info": {
            "instance_id": str(ctx.services.instance_id),
            "name": "oVirt Engine", "vendor": "ovirt.org",
            "version": {"build": 0, "full_version": f"{major}.{minor}.0 (Overt {__version__})",
                        "major": major, "minor": minor, "revision": 0},
        },
        "special_objects": {
            "blank_template": views.ref("templates", BLANK_TEMPLATE_ID),
            "root_tag": views.ref("tags", ROOT_TAG_ID),
        },
        "summary": {
            "hosts": {"active": await _count(ctx, Host, Host.status == HostStatus.UP),
                      "total": await _count(ctx, Host)},
            "storage_domains": {
                "active": await _count(ctx, StorageDomain,
                                       StorageDomain.status == StorageDomainStatus.ACTIVE),
                "total": await _count(ctx, StorageDomain)},
            "users": {"active": await _count(ctx, User), "total": await _count(ctx, User)},
            "vms": {"active": await _count(ctx, Vm, Vm.status == VmStatus.UP),
                    "total": await _count(ctx, Vm)},
        },
        "time": utcnow(),
    }
    return ctx.render("api", rep)
