"""The VM page's cdrom: put an ISO in it or eject it (through the same service as the API:
on a running VM the media changes now, by a job; on a down VM for its next run)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from overt.engine.db.tables import Vm
from overt.engine.model.errors import InvalidInput
from overt.engine.model.status import VmStatus
from overt.engine.queries import lookup
from overt.engine.services import cdroms
from overt.engine.web.context import WebContext, page
from overt.engine.web.vms import back_to_vm_page, show_vm_page_error

CDROM_WAIT_S = 60.0



@page
async def change_cdrom(ctx: WebContext) -> Response:
    vm_id = ctx.id_param("vm_id")
    form = await ctx.form()
    ctx.on_error = show_vm_page_error(ctx, vm_id, "cdrom")
    vm = await lookup.get(ctx.session, Vm, vm_id, for_update=True)
    change = str(ctx.request.path_params["change"])
    if change == "eject":
        file_id = None
    elif change == "insert":
        file_id = form.get("iso", "").strip()
        if not file_id:
            raise InvalidInput("choose an ISO image to put in the cdrom")
    else:
        raise InvalidInput(f"there is no cdrom change {change!r}")
    job = await cdroms.update_cdrom(ctx.session, ctx.services.jobs, vm, file_id, ctx.user,
                                    current=vm.status is not VmStatus.DOWN)
    return back_to_vm_page(ctx, vm_id, job, wait_s=CDROM_WAIT_S, what="changing the CD")


ROUTES = [Route("/vms/{vm_id}/cdrom/{change}", change_cdrom, methods=["POST"])]
