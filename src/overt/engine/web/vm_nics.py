"""The VM page's network interfaces: add one, link it up or down, plug, unplug, remove
(through the same service functions as the API; on a running VM the change is a job)."""

from __future__ import annotations

import uuid

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import Vm
from overt.engine.model.errors import InvalidInput
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services import vm_nics
from overt.engine.services.inputs import NicInput
from overt.engine.web.context import WebContext, page
from overt.engine.web.vms import back_to_vm_page, show_vm_page_error

NIC_WAIT_S = 60.0
# What each NIC button asks the service for.
CHANGES: dict[str, NicInput] = {
    "link": NicInput(linked=True), "unlink": NicInput(linked=False),
    "plug": NicInput(plugged=True), "unplug": NicInput(plugged=False),
}



@page
async def add_nic(ctx: WebContext) -> Response:
    vm_id = ctx.id_param("vm_id")
    form = await ctx.form()
    ctx.on_error = show_vm_page_error(ctx, vm_id, "nic")
    vm = await lookup.get(ctx.session, Vm, vm_id, for_update=True)
    try:
        profile = Ref(id=uuid.UUID(form.get("profile", "")))
    except ValueError:
        raise InvalidInput("choose a vNIC profile for the new network interface") from None
    _nic, job = await vm_nics.add_nic(ctx.session, ctx.services.jobs, vm,
                                      NicInput(name=form.get("name", "").strip() or None,
                                               vnic_profile=profile), ctx.user)
    return back_to_vm_page(ctx, vm_id, job, wait_s=NIC_WAIT_S,
                           what="changing the network interface")


@page
async def change_nic(ctx: WebContext) -> Response:
    vm_id, nic_id = ctx.id_param("vm_id"), ctx.id_param("nic_id")
    change = str(ctx.request.path_params["change"])
    ctx.on_error = show_vm_page_error(ctx, vm_id, "nic")
    vm = await lookup.get(ctx.session, Vm, vm_id, for_update=True)
    if change == "remove":
        await vm_nics.remove_nic(ctx.session, vm, nic_id, ctx.user)
    elif change in CHANGES:
        _nic, job = await vm_nics.update_nic(ctx.session, ctx.services.jobs, vm, nic_id,
                                             CHANGES[change], ctx.user)
        return back_to_vm_page(ctx, vm_id, job, wait_s=NIC_WAIT_S,
                           what="changing the network interface")
    else:
        raise InvalidInput(f"there is no network interface change {change!r}")
    return RedirectResponse(f"/vms/{vm_id}", status_code=303)



ROUTES = [
    Route("/vms/{vm_id}/nics", add_nic, methods=["POST"]),
    Route("/vms/{vm_id}/nics/{nic_id}/{change}", change_nic, methods=["POST"]),
]
