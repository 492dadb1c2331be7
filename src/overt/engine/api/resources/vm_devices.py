"""A VM's device collections beyond NICs and disks: what oVirt's tools read after creating a
VM. Overt's VMs have no virtual NUMA nodes or watchdogs; devices the guest reports are its
NICs as the engine knows them (there is no guest agent to report addresses)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Vm, VmNic
from overt.engine.model.errors import NotFound
from overt.engine.queries import lookup
from overt.engine.services import vm_nics

routes = ApiRoutes()
# Links a VM advertises besides those of views.vm (served here and in tags).
LINKS = ("tags", "reporteddevices", "numanodes", "watchdogs")


@routes.get("/vms/{vm_id}/numanodes")
async def list_numa_nodes(ctx: ApiContext) -> Response:
    await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    return ctx.render_list("vm_numa_nodes", "vm_numa_node", [])


@routes.get("/vms/{vm_id}/watchdogs")
async def list_watchdogs(ctx: ApiContext) -> Response:
    await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    return ctx.render_list("watchdogs", "watchdog", [])


def reported_device(nic: VmNic, base: str) -> Representation:
    # oVirt names a reported device by its MAC address's hex digits.
    device_id = uuid.uuid5(nic.id, "reported")
    return {"href": f"{base}/{device_id}", "id": str(device_id), "name": nic.name,
            "description": f"network interface {nic.name}", "type": "network",
            "mac": {"address": nic.mac}, "vm": ref("vms", nic.vm_id)}


@routes.get("/vms/{vm_id}/reporteddevices")
async def list_reported_devices(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    nics = (await ctx.session.execute(
        select(VmNic).where(VmNic.vm_id == vm.id).order_by(VmNic.name))).scalars()
    base = href("vms", vm.id, "reporteddevices")
    return ctx.render_list("reported_devices", "reported_device",
                           [reported_device(nic, base) for nic in nics])


@routes.get("/vms/{vm_id}/reporteddevices/{device_id}")
async def get_reported_device(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    wanted = ctx.id_param("device_id")
    base = href("vms", vm.id, "reporteddevices")
    for nic in (await ctx.session.execute(select(VmNic).where(VmNic.vm_id == vm.id))).scalars():
        if uuid.uuid5(nic.id, "reported") == wanted:
            return ctx.render("reported_device", reported_device(nic, base))
    raise NotFound(f"VM {vm.name} has no reported device {wanted}")


@routes.get("/vms/{vm_id}/nics/{nic_id}/reporteddevices")
async def list_nic_reported_devices(ctx: ApiContext) -> Response:
    nic = await vm_nics.get_nic(ctx.session, ctx.id_param("vm_id"), ctx.id_param("nic_id"))
    base = href("vms", nic.vm_id, "reporteddevices")
    return ctx.render_list("reported_devices", "reported_device", [reported_device(nic, base)])
