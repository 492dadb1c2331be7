"""The VM page's snapshots: take one, preview it, commit or undo the preview, restore,
remove (through the same service as the API; each a job the page waits for). Restoring and
removing drop data: they ask first. A running VM's snapshot saves its memory when "Save
memory" is ticked (as oVirt's dialog, ticked by default); previewing or restoring a
snapshot with memory asks whether the VM resumes from it (oVirt's "restore memory")."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from overt.engine.db.tables import Vm
from overt.engine.model.errors import InvalidInput
from overt.engine.queries import lookup
from overt.engine.services import snapshots
from overt.engine.web.context import WebContext, page
from overt.engine.web.vms import back_to_vm_page, show_vm_page_error

SNAPSHOT_WAIT_S = 300.0  # a live merge of a large disk takes its time
# What each snapshot button does, and whether it drops data (asks first).
CHANGES: dict[str, tuple[str, bool]] = {
    "preview": ("Preview", False), "restore": ("Restore", True), "remove": ("Remove", True),
}


@page
async def take_snapshot(ctx: WebContext) -> Response:
    vm_id = ctx.id_param("vm_id")
    form = await ctx.form()
    ctx.on_error = show_vm_page_error(ctx, vm_id, "snapshot")
    description = form.get("description", "").strip()
    if not description:
        raise InvalidInput("give the snapshot a description")
    _snapshot, job = await snapshots.add_snapshot(
        ctx.session, ctx.services.jobs, vm_id, description, ctx.user,
        persist_memory=form.get("persist_memory") == "yes")
    return back_to_vm_page(ctx, vm_id, job, wait_s=SNAPSHOT_WAIT_S, what="taking the snapshot")


@page
async def change_snapshot(ctx: WebContext) -> Response:
    vm_id, snapshot_id = ctx.id_param("vm_id"), ctx.id_param("snapshot_id")
    change = str(ctx.request.path_params["change"])
    form = await ctx.form()
    ctx.on_error = show_vm_page_error(ctx, vm_id, "snapshot")
    if change not in CHANGES:
        raise InvalidInput(f"there is no snapshot change {change!r}")
    label, drops_data = CHANGES[change]
    snapshot = await snapshots.get_snapshot(ctx.session, vm_id, snapshot_id)
    # a snapshot with memory: the VM may resume from it, which the page asks first
    asks_memory = change != "remove" and snapshot.memory_volume is not None
    if (drops_data or asks_memory) and form.get("confirmed") != "yes":
        vm = await lookup.get(ctx.session, Vm, vm_id)
        return ctx.render("snapshot_confirm.html", nav="vms", vm=vm, snapshot=snapshot,
                          change=change, label=label, asks_memory=asks_memory,
                          drops_data=drops_data)
    session, jobs, user = ctx.session, ctx.services.jobs, ctx.user
    memory = asks_memory and form.get("restore_memory") == "yes"
    if change == "preview":
        job = await snapshots.preview_snapshot(session, jobs, vm_id, snapshot_id, user,
                                               restore_memory=memory)
    elif change == "restore":
        job = await snapshots.restore_snapshot(session, jobs, vm_id, snapshot_id, user,
                                               restore_memory=memory)
    else:
        job = await snapshots.remove_snapshot(session, jobs, vm_id, snapshot_id, user)
    return back_to_vm_page(ctx, vm_id, job, wait_s=SNAPSHOT_WAIT_S,
                           what=f"{label.lower()} of snapshot '{snapshot.description}'")


@page
async def end_preview(ctx: WebContext) -> Response:
    vm_id = ctx.id_param("vm_id")
    end = str(ctx.request.path_params["end"])
    await ctx.form()
    ctx.on_error = show_vm_page_error(ctx, vm_id, "snapshot")
    if end not in ("commit", "undo"):
        raise InvalidInput(f"a preview ends with commit or undo, not {end!r}")
    job = await snapshots.end_preview(ctx.session, ctx.services.jobs, vm_id, ctx.user,
                                      commit=end == "commit")
    return back_to_vm_page(ctx, vm_id, job, wait_s=SNAPSHOT_WAIT_S,
                           what=f"{'committing' if end == 'commit' else 'undoing'} the preview")


ROUTES = [
    Route("/vms/{vm_id}/snapshots", take_snapshot, methods=["POST"]),
    Route("/vms/{vm_id}/snapshots/{snapshot_id}/{change}", change_snapshot, methods=["POST"]),
    Route("/vms/{vm_id}/preview/{end}", end_preview, methods=["POST"]),
]
