"""/vms: VMs, their actions, NICs and disk attachments."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api import list_xml, views
from overt.engine.api.authorization import require_permit, require_vm_creation
from overt.engine.api.context import ApiContext, href
from overt.engine.api.initialization import read_initialization, sealed_initialization
from overt.engine.api.readers import (
    read_disk_attachment,
    read_nic,
    read_run_once,
    read_vm,
    ref_of,
)
from overt.engine.api.resources import consoles as console_resources
from overt.engine.api.resources import vm_devices
from overt.engine.api.resources.common import (
    MANY,
    action_done,
    action_params,
    list_records,
)
from overt.engine.api.resources.storage_connections import secret_box
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import (
    Cluster,
    Disk,
    DiskAttachment,
    Host,
    Job,
    Vm,
    VmNic,
    VnicProfile,
)
from overt.engine.model.errors import NotFound
from overt.engine.model.status import DiskInterface
from overt.engine.queries import lookup
from overt.engine.services import consoles, devices, vm_nics
from overt.engine.services import identity as identity_service
from overt.engine.services import vms as vm_service
from overt.engine.services.inputs import RunOnce, VmInput
from overt.engine.services.jobs import wait_for_job

routes = ApiRoutes()

SEARCH_FIELDS = {"name": Vm.name, "status": Vm.status, "id": Vm.id, "description": Vm.description,
                 "comment": Vm.comment, "origin": Vm.origin}


# Ids per IN (...) of a listing's batched lookups: well under SQLite's and PostgreSQL's
# limits on bound parameters, whatever the number of VMs listed.
_BATCH = 5000


def _batches(ids: Sequence[uuid.UUID]) -> Iterator[list[uuid.UUID]]:
    for start in range(0, len(ids), _BATCH):
        yield list(ids[start:start + _BATCH])


async def _nic_views(ctx: ApiContext, vm_ids: Sequence[uuid.UUID]
                     ) -> dict[uuid.UUID, list[Representation]]:
    """The NICs of each of `vm_ids`, in one query per batch (never one per VM)."""
    found: dict[uuid.UUID, list[Representation]] = {vm_id: [] for vm_id in vm_ids}
    for batch in _batches(vm_ids):
        rows = await ctx.session.execute(
            select(VmNic, VnicProfile.network_id)
            .outerjoin(VnicProfile, VnicProfile.id == VmNic.vnic_profile_id)
            .where(VmNic.vm_id.in_(batch)).order_by(VmNic.vm_id, VmNic.name))
        for nic, network_id in rows:
            found[nic.vm_id].append(views.nic(nic, network_id=network_id))
    return found


async def _attachment_views(ctx: ApiContext, vm_ids: Sequence[uuid.UUID], *, with_disks: bool
                            ) -> dict[uuid.UUID, list[Representation]]:
    """The disk attachments of each of `vm_ids` (with their disks inline: `with_disks`)."""
    found: dict[uuid.UUID, list[Representation]] = {vm_id: [] for vm_id in vm_ids}
    for batch in _batches(vm_ids):
        rows = await ctx.session.execute(
            select(DiskAttachment, Disk).join(Disk, Disk.id == DiskAttachment.disk_id)
            .where(DiskAttachment.vm_id.in_(batch)).order_by(DiskAttachment.pk))
        for a, d in rows:
            assert a.vm_id is not None  # selected by vm_id
            found[a.vm_id].append(views.disk_attachment(a, inline_disk=d if with_disks else None))
    return found


async def _host_addresses(ctx: ApiContext, vms: Sequence[Vm]) -> dict[uuid.UUID, str]:
    """The address of each host that runs one of `vms` with a console (their `display`)."""
    host_ids = sorted({vm.host_id for vm in vms
                       if console_resources.listens(vm) and vm.host_id is not None})
    found: dict[uuid.UUID, str] = {}
    if len(host_ids) > MANY:  # every host where a console listens
        rows = await ctx.session.execute(select(Host.id, Host.address).where(Host.id.in_(
            select(Vm.host_id).where(Vm.vnc_port.is_not(None)))))
        return {host_id: address for host_id, address in rows}
    for batch in _batches(host_ids):
        rows = await ctx.session.execute(
            select(Host.id, Host.address).where(Host.id.in_(batch)))
        found.update({host_id: address for host_id, address in rows})
    return found


async def _virtio_scsi(ctx: ApiContext, vm_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `vm_ids` with a disk on virtio-scsi (their node gives them the controller;
    for many, all VMs with one)."""
    found: set[uuid.UUID] = set()
    if len(vm_ids) > MANY:
        rows = await ctx.session.execute(
            select(DiskAttachment.vm_id).distinct().where(
                DiskAttachment.vm_id.is_not(None),
                DiskAttachment.interface == DiskInterface.VIRTIO_SCSI.value))
        return {vm_id for vm_id in rows.scalars() if vm_id is not None}
    for batch in _batches(vm_ids):
        rows = await ctx.session.execute(
            select(DiskAttachment.vm_id).distinct().where(
                DiskAttachment.vm_id.in_(batch), DiskAttachment.interface == DiskInterface.VIRTIO_SCSI.value))
        found.update(vm_id for vm_id in rows.scalars() if vm_id is not None)
    return found


@dataclass(frozen=True)
class Related:
    """What a listing of VMs shows besides their rows, read in a few queries for all."""
    addresses: dict[uuid.UUID, str]  # of the hosts where their consoles listen
    nics: dict[uuid.UUID, list[Representation]] | None  # followed
    attachments: dict[uuid.UUID, list[Representation]] | None  # followed
    virtio_scsi: set[uuid.UUID] | None  # those with a disk on it, with all_content


async def related_of(ctx: ApiContext, vms: Sequence[Vm]) -> Related:
    follow = ctx.follow()
    all_content = ctx.strict_flag("all_content")
    ids = [vm.id for vm in vms]
    scsi = await _virtio_scsi(ctx, ids) if all_content else None
    nics = await _nic_views(ctx, ids) if "nics" in follow else None
    attachments = None
    if "disk_attachments" in follow or "disk_attachments.disk" in follow:
        attachments = await _attachment_views(ctx, ids,
                                              with_disks="disk_attachments.disk" in follow)
    return Related(await _host_addresses(ctx, vms), nics, attachments, scsi)


async def vm_views(ctx: ApiContext, vms: Sequence[Vm]) -> list[Representation]:
    """Views of `vms` with what `follow` inlines; related rows in a few queries in all.

    `all_content=true` adds what oVirt leaves out by default because it costs more queries:
    `console` (every Overt VM has a serial console), `soundcard_enabled` (never: no sound
    device) and `virtio_scsi` (whether a disk is on it)."""
    return vm_reps(vms, await related_of(ctx, vms))


def vm_reps(vms: Sequence[Vm], related: Related) -> list[Representation]:
    """The views of `vms` given what else they show (`vm_views` without the queries)."""
    scsi, nics, attachments = related.virtio_scsi or set(), related.nics, related.attachments
    addresses = related.addresses
    devices_links = vm_devices.LINKS
    all_content = related.virtio_scsi is not None
    reps = []
    for vm in vms:
        rep = views.vm(vm, nics=nics[vm.id] if nics is not None else None,
                       disk_attachments=attachments[vm.id] if attachments is not None else None)
        listening = console_resources.listens(vm) and vm.host_id in addresses
        rep["display"] = console_resources.display_at(
            addresses.get(vm.host_id) if vm.host_id is not None else None,
            vm.vnc_port if listening else None)
        rep["link"] = [*rep["link"], *views.links(href("vms", vm.id), *devices_links)]
        if all_content:
            rep.update({"console": {"enabled": True}, "soundcard_enabled": False,
                        "virtio_scsi": {"enabled": vm.id in scsi}})
        reps.append(rep)
    return reps


async def vm_view(ctx: ApiContext, vm: Vm) -> Representation:
    return (await vm_views(ctx, [vm]))[0]


SEARCH_FIELDS["cluster"] = Cluster.name
SEARCH_FIELDS["host"] = Host.name


@routes.get("/vms")
async def list_vms(ctx: ApiContext) -> Response:
    stmt = (select(Vm).join(Cluster, Cluster.id == Vm.cluster_id)
            .outerjoin(Host, Host.id == Vm.host_id).order_by(Vm.name))
    rows = await list_records(ctx, stmt, SEARCH_FIELDS, columns=list_xml.VM_COLUMNS)
    if ctx.wants_json:
        return ctx.render_list("vms", "vm", await vm_views(ctx, rows))
    # XML (what the SDK asks for) straight from the rows: the same bytes as the views.
    related = await related_of(ctx, rows)
    return Response(list_xml.vms_xml(rows, addresses=related.addresses, nics=related.nics,
                                     disk_attachments=related.attachments,
                                     virtio_scsi=related.virtio_scsi,
                                     extra_links=vm_devices.LINKS),
                    media_type="application/xml")


@routes.post("/vms")
async def add_vm(ctx: ApiContext) -> Response:
    data = _sealed(ctx, read_vm(await ctx.body("vm")))
    vm = await vm_service.add_vm(ctx.session, ctx.services.jobs, data, ctx.user,
                                 clone=ctx.flag("clone"))
    await ctx.session.flush()
    access = getattr(ctx.request.state, "access", None)
    await require_vm_creation(ctx.session, access, vm.cluster_id, vm.template_id)
    if access is not None and not access.superuser:
        await identity_service.make_owner(ctx.session, ctx.user, vm.id)
    return ctx.render("vm", await vm_view(ctx, vm), status=201)


@routes.get("/vms/{vm_id}")
async def get_vm(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    return ctx.render("vm", await vm_view(ctx, vm))


@routes.put("/vms/{vm_id}")
async def update_vm(ctx: ApiContext) -> Response:
    data = _sealed(ctx, read_vm(await ctx.body("vm")))
    before = (await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))).cluster_id
    vm = await vm_service.update_vm(ctx.session, ctx.id_param("vm_id"), data, ctx.user)
    await ctx.session.flush()
    if vm.cluster_id != before:  # moving a VM is creating it there
        await require_permit(ctx.session, getattr(ctx.request.state, "access", None),
                             "create_vm", "cluster", vm.cluster_id)
    return ctx.render("vm", await vm_view(ctx, vm))


@routes.delete("/vms/{vm_id}")
async def remove_vm(ctx: ApiContext) -> Response:
    job = await vm_service.remove_vm(ctx.session, ctx.services.jobs, ctx.id_param("vm_id"),
                                     ctx.user, detach_only=ctx.flag("detach_only"),
                                     correlation_id=ctx.request.query_params.get("correlation_id"))
    return action_done(ctx, job)


def _sealed(ctx: ApiContext, data: VmInput) -> VmInput:
    return replace(data, initialization=sealed_initialization(data.initialization,
                                                              ctx.services.secrets))


def _correlation(ctx: ApiContext) -> str | None:
    return ctx.request.headers.get("correlation-id") or ctx.request.query_params.get(
        "correlation_id")


@routes.post("/vms/{vm_id}/start")
async def start(ctx: ApiContext) -> Response:
    """oVirt's start; with `use_cloud_init` and a `vm.initialization`, its run once."""
    use_cloud_init, initialization, run_once = None, None, RunOnce()
    if (await ctx.request.body()).strip():
        action = await ctx.body("action")
        use_cloud_init = action.get_bool("use_cloud_init")
        vm_node = action.child("vm")
        init_node = vm_node.child("initialization") if vm_node is not None else None
        if init_node is not None:
            initialization = sealed_initialization(read_initialization(init_node),
                                                   ctx.services.secrets)
        if vm_node is not None:
            run_once = read_run_once(vm_node)
    job = await vm_service.start_vm(ctx.session, ctx.services.jobs, ctx.id_param("vm_id"),
                                    ctx.user, correlation_id=_correlation(ctx),
                                    use_cloud_init=use_cloud_init, initialization=initialization,
                                    run_once=run_once)
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/stop")
async def stop(ctx: ApiContext) -> Response:
    params = await action_params(ctx)
    job = await vm_service.stop_vm(ctx.session, ctx.services.jobs, ctx.id_param("vm_id"),
                                   ctx.user, reason=params.get("reason", ""),
                                   correlation_id=_correlation(ctx))
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/shutdown")
async def shutdown(ctx: ApiContext) -> Response:
    params = await action_params(ctx)
    job = await vm_service.shutdown_vm(ctx.session, ctx.services.jobs, ctx.id_param("vm_id"),
                                       ctx.user, reason=params.get("reason", ""),
                                       correlation_id=_correlation(ctx))
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/reboot")
async def reboot(ctx: ApiContext) -> Response:
    await action_params(ctx)
    job = await vm_service.reboot_vm(ctx.session, ctx.services.jobs, ctx.id_param("vm_id"),
                                     ctx.user, correlation_id=_correlation(ctx))
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/suspend")
async def suspend(ctx: ApiContext) -> Response:
    await action_params(ctx)
    job = await vm_service.suspend_vm(ctx.session, ctx.services.jobs, ctx.id_param("vm_id"),
                                      ctx.user, correlation_id=_correlation(ctx))
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/migrate")
async def migrate(ctx: ApiContext) -> Response:
    """oVirt's migrate: to the `<host>` given (by id or name), else the scheduler's choice."""
    body = await ctx.request.body()
    host = None
    if body.strip():
        action = await ctx.body("action")
        host = ref_of(action.child("host"))
    job = await vm_service.migrate_vm(ctx.session, ctx.services.jobs, ctx.id_param("vm_id"),
                                      ctx.user, host=host, correlation_id=_correlation(ctx))
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/cancelmigration")
async def cancel_migration(ctx: ApiContext) -> Response:
    await action_params(ctx)
    job = await vm_service.cancel_migration(ctx.session, ctx.services.jobs,
                                            ctx.id_param("vm_id"), ctx.user,
                                            correlation_id=_correlation(ctx))
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/clone")
async def clone(ctx: ApiContext) -> Response:
    """oVirt's clone: `<action><vm><name>NEW</name></vm></action>`, a down VM's full copy."""
    action = await ctx.body("action")
    vm = action.child("vm")
    job = await vm_service.clone_vm(ctx.session, ctx.services.jobs, ctx.id_param("vm_id"),
                                    vm.get_str("name") if vm is not None else None, ctx.user,
                                    correlation_id=_correlation(ctx))
    return action_done(ctx, job)


@routes.post("/vms/{vm_id}/ticket")
async def ticket(ctx: ApiContext) -> Response:
    """oVirt's console ticket: a one-time VNC password, set by a job this call waits for."""
    password, expiry = await console_resources.ticket_params(ctx)
    request = await consoles.request_ticket(ctx.session, ctx.services.jobs, ctx.id_param("vm_id"),
                                            ctx.user, password=password, expiry_s=expiry)
    ctx.then = console_resources.ticket_answer(ctx, request)
    return action_done(ctx, request.job)


# -- NICs ----------------------------------------------------------------------------

@routes.get("/vms/{vm_id}/nics")
async def list_nics(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    return ctx.render_list("nics", "nic", (await _nic_views(ctx, [vm.id]))[vm.id])


async def _nic_view(ctx: ApiContext, nic: VmNic) -> Representation:
    network_id = None
    if nic.vnic_profile_id is not None:
        profile = await ctx.session.get(VnicProfile, nic.vnic_profile_id)
        network_id = profile.network_id if profile else None
    return views.nic(nic, network_id=network_id)


NIC_WAIT_S = 60.0


def _nic_answer(ctx: ApiContext, nic_id: uuid.UUID, job: Job | None, *, status: int = 200,
                what: str) -> Response:
    """Answer with the NIC as it is once its hot-plug job (if any) has ended."""
    async def answer() -> Response:
        db = ctx.request.app.state.db
        if job is not None:
            await wait_for_job(db, job.id, timeout_s=NIC_WAIT_S, what=what)
        async with db.transaction() as session:
            nic = await session.get(VmNic, nic_id)
            if nic is None:
                raise NotFound(f"NIC {nic_id} is gone")
            profile = await session.get(VnicProfile, nic.vnic_profile_id) \
                if nic.vnic_profile_id else None
            return ctx.render("nic", views.nic(nic, network_id=profile.network_id
                                                if profile else None), status=status)

    ctx.then = answer
    return Response(status_code=204)  # replaced by answer() once the transaction committed


@routes.post("/vms/{vm_id}/nics")
async def add_nic(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"), for_update=True)
    nic, job = await vm_nics.add_nic(ctx.session, ctx.services.jobs, vm,
                                     read_nic(await ctx.body("nic")), ctx.user)
    return _nic_answer(ctx, nic.id, job, status=201, what=f"plugging NIC {nic.name}")


@routes.get("/vms/{vm_id}/nics/{nic_id}")
async def get_nic(ctx: ApiContext) -> Response:
    nic = await vm_nics.get_nic(ctx.session, ctx.id_param("vm_id"), ctx.id_param("nic_id"))
    return ctx.render("nic", await _nic_view(ctx, nic))


@routes.put("/vms/{vm_id}/nics/{nic_id}")
async def update_nic(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"), for_update=True)
    nic, job = await vm_nics.update_nic(ctx.session, ctx.services.jobs, vm,
                                        ctx.id_param("nic_id"), read_nic(await ctx.body("nic")),
                                        ctx.user)
    await ctx.session.flush()
    return _nic_answer(ctx, nic.id, job, what=f"changing NIC {nic.name}")


@routes.delete("/vms/{vm_id}/nics/{nic_id}")
async def remove_nic(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"), for_update=True)
    await vm_nics.remove_nic(ctx.session, vm, ctx.id_param("nic_id"), ctx.user)
    return action_done(ctx)


# -- disk attachments ----------------------------------------------------------------------

@routes.get("/vms/{vm_id}/diskattachments")
async def list_attachments(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    return ctx.render_list("disk_attachments", "disk_attachment",
                           (await _attachment_views(ctx, [vm.id],
                                                    with_disks="disk" in ctx.follow()))[vm.id])


@routes.post("/vms/{vm_id}/diskattachments")
async def add_attachment(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"), for_update=True)
    data = read_disk_attachment(await ctx.body("disk_attachment"))
    attachment = await devices.add_disk_attachment(ctx.session, ctx.services.jobs, vm, data,
                                                   ctx.user, secret_box(ctx))
    if data.disk_ref is not None:  # an existing disk: the caller must be allowed to attach it
        await require_permit(ctx.session, getattr(ctx.request.state, "access", None),
                             "attach_disk", "disk", attachment.disk_id)
    disk = await lookup.get(ctx.session, Disk, attachment.disk_id)
    return ctx.render("disk_attachment", views.disk_attachment(attachment, inline_disk=disk),
                      status=201)


@routes.get("/vms/{vm_id}/diskattachments/{disk_id}")
async def get_attachment(ctx: ApiContext) -> Response:
    attachment = await devices.get_attachment(ctx.session, ctx.id_param("vm_id"),
                                              ctx.id_param("disk_id"))
    return ctx.render("disk_attachment", views.disk_attachment(attachment))


@routes.put("/vms/{vm_id}/diskattachments/{disk_id}")
async def update_attachment(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"), for_update=True)
    attachment = await devices.update_disk_attachment(
        ctx.session, vm, ctx.id_param("disk_id"),
        read_disk_attachment(await ctx.body("disk_attachment")), ctx.user)
    return ctx.render("disk_attachment", views.disk_attachment(attachment))


@routes.delete("/vms/{vm_id}/diskattachments/{disk_id}")
async def remove_attachment(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"), for_update=True)
    await devices.remove_disk_attachment(ctx.session, ctx.services.jobs, vm,
                                         ctx.id_param("disk_id"), ctx.user,
                                         detach_only=ctx.request.query_params.get(
                                             "detach_only", "true").lower() != "false")
    return action_done(ctx)


