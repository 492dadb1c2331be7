"""/vms/{id}/snapshots: a VM's snapshots as oVirt lists them, the `Active VM` one first
(the VM as it runs: its disks' active volumes), then each regular snapshot, oldest first."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import ApiContext, href
from overt.engine.api.resources.common import action_done, action_params
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Disk, Snapshot, SnapshotVolume, Vm
from overt.engine.model.errors import InvalidInput, NotFound
from overt.engine.queries import lookup
from overt.engine.queries.vm_spec import vm_disks
from overt.engine.services import snapshots as snapshot_service

routes = ApiRoutes()
ACTIVE_DESCRIPTION = "Active VM"


def _view(vm: Vm, snapshot_id: uuid.UUID, *, description: str, kind: str, status: str,
          date: object, memory: bool = False) -> Representation:
    base = href("vms", vm.id, "snapshots", snapshot_id)
    return {
        "href": base, "id": str(snapshot_id),
        "actions": views.actions(base, "restore") if kind == "regular" else None,
        "description": description,
        "link": views.links(base, "disks"),
        "vm": ref("vms", vm.id), "date": date, "persist_memorystate": memory,
        "snapshot_status": status, "snapshot_type": kind,
    }


def active_view(vm: Vm) -> Representation:
    return _view(vm, snapshot_service.active_snapshot_id(vm.id),
                 description=ACTIVE_DESCRIPTION, kind="active", status="ok", date=vm.created_at)


def snapshot_view(vm: Vm, snapshot: Snapshot) -> Representation:
    status = snapshot.status if snapshot.status in ("ok", "in_preview") else "locked"
    return _view(vm, snapshot.id, description=snapshot.description,
                 kind=snapshot.kind or "regular",
                 status=status, date=snapshot.created_at,
                 memory=snapshot.memory_volume is not None)


@routes.get("/vms/{vm_id}/snapshots")
async def list_snapshots(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    rows = (await ctx.session.execute(select(Snapshot).where(Snapshot.vm_id == vm.id)
                                      .order_by(Snapshot.created_at))).scalars()
    return ctx.render_list("snapshots", "snapshot",
                           [active_view(vm), *(snapshot_view(vm, s) for s in rows)])


@routes.post("/vms/{vm_id}/snapshots")
async def add_snapshot(ctx: ApiContext) -> Response:
    node = await ctx.body("snapshot")
    snapshot, _job = await snapshot_service.add_snapshot(
        ctx.session, ctx.services.jobs, ctx.id_param("vm_id"), node.get_str("description") or "",
        ctx.user, persist_memory=bool(node.get_bool("persist_memorystate")))
    vm = await lookup.get(ctx.session, Vm, snapshot.vm_id)
    return ctx.render("snapshot", snapshot_view(vm, snapshot), status=201)


@routes.get("/vms/{vm_id}/snapshots/{snapshot_id}")
async def get_snapshot(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    wanted = ctx.id_param("snapshot_id")
    if wanted == snapshot_service.active_snapshot_id(vm.id):
        return ctx.render("snapshot", active_view(vm))
    return ctx.render("snapshot", snapshot_view(
        vm, await snapshot_service.get_snapshot(ctx.session, vm.id, wanted)))


@routes.delete("/vms/{vm_id}/snapshots/{snapshot_id}")
async def remove_snapshot(ctx: ApiContext) -> Response:
    job = await snapshot_service.remove_snapshot(
        ctx.session, ctx.services.jobs, ctx.id_param("vm_id"), ctx.id_param("snapshot_id"),
        ctx.user)
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/snapshots/{snapshot_id}/restore")
async def restore_snapshot(ctx: ApiContext) -> Response:
    params = await action_params(ctx)
    job = await snapshot_service.restore_snapshot(
        ctx.session, ctx.services.jobs, ctx.id_param("vm_id"), ctx.id_param("snapshot_id"),
        ctx.user, restore_memory=params.get("restore_memory", "").strip().lower() == "true")
    return action_done(ctx, job)


@routes.get("/vms/{vm_id}/snapshots/{snapshot_id}/disks")
async def list_snapshot_disks(ctx: ApiContext) -> Response:
    """Each disk as the snapshot holds it: `image_id` names the snapshot's volume."""
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    wanted = ctx.id_param("snapshot_id")
    disks: list[tuple[Disk, str]]
    if wanted == snapshot_service.active_snapshot_id(vm.id):
        disks = [(d, d.image_path) for _a, d, _sd in await vm_disks(ctx.session, vm.id)]
    else:
        snapshot = await snapshot_service.get_snapshot(ctx.session, vm.id, wanted)
        disks = [(d, v.image_path) for v, d in await ctx.session.execute(
            select(SnapshotVolume, Disk).join(Disk, Disk.id == SnapshotVolume.disk_id)
            .where(SnapshotVolume.snapshot_id == snapshot.id).order_by(SnapshotVolume.pk))]
    reps = []
    for disk, image_path in disks:
        rep = views.disk(disk)
        rep.pop("actions", None)
        rep.pop("link", None)
        rep["href"] = href("vms", vm.id, "snapshots", wanted, "disks", disk.id)
        rep["image_id"] = views.volume_id(image_path, disk.id)
        rep["snapshot"] = {"href": href("vms", vm.id, "snapshots", wanted), "id": str(wanted)}
        reps.append(rep)
    return ctx.render_list("disks", "disk", reps)


# -- preview (actions on the VM, as in oVirt) ------------------------------------------------

@routes.post("/vms/{vm_id}/previewsnapshot")
async def preview_snapshot(ctx: ApiContext) -> Response:
    action = await ctx.body("action")
    snapshot = action.child("snapshot")
    raw = snapshot.get_str("id") if snapshot is not None else None
    if not raw:
        raise InvalidInput("action.snapshot.id is required: name the snapshot to preview")
    try:
        snapshot_id = uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"there is no snapshot with id {raw}") from None
    job = await snapshot_service.preview_snapshot(
        ctx.session, ctx.services.jobs, ctx.id_param("vm_id"), snapshot_id, ctx.user,
        restore_memory=bool(action.get_bool("restore_memory")))
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/commitsnapshot")
async def commit_snapshot(ctx: ApiContext) -> Response:
    await action_params(ctx)
    job = await snapshot_service.end_preview(ctx.session, ctx.services.jobs,
                                             ctx.id_param("vm_id"), ctx.user, commit=True)
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/undosnapshot")
async def undo_snapshot(ctx: ApiContext) -> Response:
    await action_params(ctx)
    job = await snapshot_service.end_preview(ctx.session, ctx.services.jobs,
                                             ctx.id_param("vm_id"), ctx.user, commit=False)
    return action_done(ctx, job)
