"""The portal's VM pages: list, create, a VM's page, and its actions (each through the
same service functions the API uses; each action shows its job's progress)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import (
    Cluster,
    Disk,
    DiskAttachment,
    Host,
    Job,
    Network,
    StorageDomain,
    Template,
    Vm,
    VmNic,
    VnicProfile,
)
from overt.engine.model.errors import InvalidInput, OvertError
from overt.engine.model.status import HostStatus, StorageDomainStatus, TemplateStatus, VmStatus
from overt.engine.model.vm_actions import VM_ACTIONS, VmAction
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services import cdroms
from overt.engine.services import vms as vm_service
from overt.engine.services.inputs import DiskAttachmentInput, DiskInput, NicInput, VmInput
from overt.engine.services.jobs import wait_for_job
from overt.engine.web import vm_new_provisioning as provisioning
from overt.engine.web.cdrom_view import cdrom_values
from overt.engine.web.context import WebContext, page
from overt.engine.web.listing import Column, ids_asked, list_view, page_of
from overt.engine.web.pages import jobs_with_steps, recent_events
from overt.engine.web.snapshot_view import snapshot_values
from overt.engine.web.vm_hardware import hardware_facts

MIB = 1 << 20
GIB = 1 << 30

# The lifecycle buttons: (action, label, service function, destructive?)
ACTIONS: dict[str, tuple[VmAction, str, bool]] = {
    "start": (VmAction.START, "Start", False),
    "shutdown": (VmAction.SHUTDOWN, "Shut down", False),
    "reboot": (VmAction.REBOOT, "Reboot", False),
    "suspend": (VmAction.SUSPEND, "Suspend", False),
    "stop": (VmAction.STOP, "Power off", True),
    "remove": (VmAction.REMOVE, "Remove", True),
}

# The restart priorities offered (oVirt's portal offers these three).
HA_PRIORITIES = ((1, "Low"), (50, "Medium"), (100, "High"))


VM_COLUMNS = [
    Column("name", "Name", Vm.name),
    Column("status", "Status", Vm.status),
    Column("host", "Host", Host.name),
    Column("cluster", "Cluster", Cluster.name),
    Column("memory", "Memory", Vm.memory_mib),
    Column("cpus", "CPUs", Vm.cpu_sockets * Vm.cpu_cores * Vm.cpu_threads),
    Column("cpu", "CPU use", Vm.cpu_percent),
]


def _vm_select() -> Select[Vm, str, str]:
    return (select(Vm, Host.name, Cluster.name).outerjoin(Host, Host.id == Vm.host_id)
            .join(Cluster, Cluster.id == Vm.cluster_id))


async def vm_list_values(ctx: WebContext) -> tuple[int, dict[str, Any]]:
    """A page of the VM list as the URL asks for it, and its status (400: a bad search)."""
    view = list_view(ctx.request, VM_COLUMNS)
    rows = await page_of(ctx.session, _vm_select(), Vm, view)
    return (400 if view.error else 200), {"vms": rows, "view": view}


@page
async def vm_list(ctx: WebContext) -> Response:
    status, values = await vm_list_values(ctx)
    return ctx.render("vms.html", status, nav="vms", **values)


@page
async def vm_list_fragment(ctx: WebContext) -> Response:
    status, values = await vm_list_values(ctx)
    return ctx.render("_vms_table.html", status, **values)


@page
async def vm_rows_fragment(ctx: WebContext) -> Response:
    """The rows of some VMs (those a list page shows that changed), in no particular order;
    a removed VM has no row."""
    ids = ids_asked(ctx.request)
    rows = list((await ctx.session.execute(_vm_select().where(Vm.id.in_(ids)))).all()) \
        if ids else []
    return ctx.render("_vm_rows.html", vms=rows)


# -- creating a VM -----------------------------------------------------------------------

async def form_choices(session: AsyncSession) -> dict[str, Any]:
    return {
        "clusters": list((await session.execute(select(Cluster).order_by(Cluster.name))
                          ).scalars()),
        "templates": list((await session.execute(select(Template).where(
            Template.id != BLANK_TEMPLATE_ID, Template.status == TemplateStatus.OK)
            .order_by(Template.name))).scalars()),
        "domains": list((await session.execute(select(StorageDomain).where(
            StorageDomain.status == StorageDomainStatus.ACTIVE)
            .order_by(StorageDomain.name))).scalars()),
        "profiles": list((await session.execute(
            select(VnicProfile, Network.name).join(Network, Network.id == VnicProfile.network_id)
            .order_by(VnicProfile.name))).all()),
        **await provisioning.iso_choices(session),
    }


DEFAULT_FORM = {"name": "", "memory_mib": "256", "cpus": "1", "disk": "image", "template": "",
                "disk_gib": "1", "domain": "", "profile": "", "cluster": "",
                "ha": "", "ha_priority": "1", **provisioning.DEFAULTS}


def _number(form: dict[str, str], key: str, label: str, low: int, high: int) -> int:
    raw = form.get(key, "").strip()
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{label} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise InvalidInput(f"{label} must be between {low} and {high}")
    return value


def _ref(raw: str | None, label: str) -> Ref:
    try:
        return Ref(id=uuid.UUID(raw or ""))
    except ValueError:
        raise InvalidInput(f"choose a {label}") from None


def vm_input(form: dict[str, str]) -> VmInput:
    """What the create form asks for, as the service layer's input."""
    data = VmInput(name=form.get("name", "").strip(), cluster=_ref(form.get("cluster"), "cluster"),
                   memory_bytes=_number(form, "memory_mib", "Memory (MiB)", 16, 4 << 20) * MIB,
                   sockets=_number(form, "cpus", "CPUs", 1, 64),
                   high_availability=form.get("ha") == "on",
                   ha_priority=_number(form, "ha_priority", "Restart priority", 0, 100))
    source = form.get("disk", "image")
    if source == "image":
        data.template = _ref(form.get("template"), "template (disk image)")
    elif source == "empty":
        size = _number(form, "disk_gib", "Disk size (GiB)", 1, 64 * 1024)
        data.disk_attachments.append(DiskAttachmentInput(
            disk=DiskInput(name=f"{data.name}_Disk1", provisioned_size=size * GIB, format="cow",
                           storage_domain=_ref(form.get("domain"), "storage domain")),
            bootable=True, interface="virtio", active=True))
    elif source != "none":
        raise InvalidInput(f"disk must be image, empty or none, not {source!r}")
    if form.get("profile"):
        data.nics.append(NicInput(name="nic1", vnic_profile=_ref(form["profile"], "network")))
    data.boot_devices = provisioning.boot_devices(form)
    data.initialization = provisioning.initialization(form)
    return data


@page
async def new_vm_form(ctx: WebContext) -> Response:
    choices = await form_choices(ctx.session)
    form = dict(DEFAULT_FORM)
    if choices["templates"]:
        form["template"] = str(choices["templates"][0].id)
    if choices["clusters"]:
        form["cluster"] = str(choices["clusters"][0].id)
    if choices["domains"]:
        form["domain"] = str(choices["domains"][0].id)
    if choices["profiles"]:
        form["profile"] = str(choices["profiles"][0][0].id)
    return ctx.render("vm_new.html", nav="vms", form=form, error=None, **choices)


@page
async def create_vm(ctx: WebContext) -> Response:
    form = {**DEFAULT_FORM, **await ctx.form()}

    async def show_error(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            return ctx.render("vm_new.html", exc.status, nav="vms", form=form,
                              error=f"{exc.reason}: {exc.detail}", **await form_choices(session))

    ctx.on_error = show_error
    vm = await vm_service.add_vm(ctx.session, ctx.services.jobs, vm_input(form), ctx.user)
    if form.get("iso"):  # for its first start; a refusal undoes the whole creation
        await cdroms.update_cdrom(ctx.session, ctx.services.jobs, vm, form["iso"], ctx.user,
                                  current=False)
    return RedirectResponse(f"/vms/{vm.id}", status_code=303)


# -- a VM's page -------------------------------------------------------------------------

async def vm_values(session: AsyncSession, vm_id: uuid.UUID) -> dict[str, Any]:
    vm = await lookup.get(session, Vm, vm_id)
    host = await session.get(Host, vm.host_id) if vm.host_id else None
    cluster = await session.get(Cluster, vm.cluster_id)
    template = await session.get(Template, vm.template_id)
    disks = (await session.execute(
        select(DiskAttachment, Disk, StorageDomain.name)
        .join(Disk, Disk.id == DiskAttachment.disk_id)
        .join(StorageDomain, StorageDomain.id == Disk.storage_domain_id)
        .where(DiskAttachment.vm_id == vm.id).order_by(DiskAttachment.pk))).all()
    nics = (await session.execute(
        select(VmNic, VnicProfile.name).outerjoin(VnicProfile, VnicProfile.id == VmNic.vnic_profile_id)
        .where(VmNic.vm_id == vm.id).order_by(VmNic.name))).all()
    profiles = (await session.execute(
        select(VnicProfile, Network.name).join(Network, Network.id == VnicProfile.network_id)
        .where(Network.data_center_id == (cluster.data_center_id if cluster else None))
        .order_by(Network.name, VnicProfile.name))).all()
    status = vm.status
    migrate_hosts = list((await session.execute(
        select(Host).where(Host.cluster_id == vm.cluster_id, Host.status == HostStatus.UP,
                           Host.id != vm.host_id).order_by(Host.name))).scalars())
    buttons = [(name, label, destructive, status in VM_ACTIONS[action])
               for name, (action, label, destructive) in ACTIONS.items()]
    cdrom = await cdrom_values(session, vm)
    snapshots = await snapshot_values(session, vm)
    return {"vm": vm, "hardware": hardware_facts(vm, cdrom["cdrom_media"]), "host": host,
            "cluster": cluster, "template": template, "disks": disks,
            "nics": nics, "profiles": profiles, "nic_error": None, "buttons": buttons,
            "nics_live": status in VM_ACTIONS[VmAction.HOTPLUG_NIC],
            "nics_changeable": status is VmStatus.DOWN
            or status in VM_ACTIONS[VmAction.HOTPLUG_NIC],
            "console_ready": vm.host_id is not None and status in VM_ACTIONS[VmAction.TICKET],
            "migrate_allowed": status in VM_ACTIONS[VmAction.MIGRATE],
            "migrate_hosts": migrate_hosts, "migrating": status is VmStatus.MIGRATING,
            "ha_priorities": HA_PRIORITIES, **cdrom, **snapshots}


async def activity_values(session: AsyncSession, vm_id: uuid.UUID) -> dict[str, Any]:
    vm = await lookup.get(session, Vm, vm_id)
    return {"vm": vm, "jobs": await jobs_with_steps(session, vm_id=vm_id, limit=8),
            "events": await recent_events(session, vm_id=vm_id, limit=10)}


def show_vm_page_error(ctx: WebContext, vm_id: uuid.UUID, where: str
                       ) -> Callable[[OvertError], Awaitable[Response]]:
    """The VM's page again, with the reason shown by the part the form was in (`where`:
    the template's `<where>_error`)."""
    async def show(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            activity = await activity_values(session, vm_id)
            values = {**await vm_values(session, vm_id),
                      **{k: v for k, v in activity.items() if k != "vm"},
                      f"{where}_error": f"{exc.reason}: {exc.detail}"}
            return ctx.render("vm.html", exc.status, nav="vms", **values)
    return show


def back_to_vm_page(ctx: WebContext, vm_id: uuid.UUID, job: Job | None, *, wait_s: float,
                    what: str) -> Response:
    """Back to the VM's page once the form's job (if any) has ended, so the page shows the
    domain as it is; a failure is shown by the part the form was in."""
    target = RedirectResponse(f"/vms/{vm_id}", status_code=303)
    if job is not None:
        job_id = job.id

        async def answer() -> Response:
            await wait_for_job(ctx.request.app.state.db, job_id, timeout_s=wait_s, what=what)
            return target
        ctx.then = answer
    return target


@page
async def vm_page(ctx: WebContext) -> Response:
    vm_id = ctx.id_param("vm_id")
    return ctx.render("vm.html", nav="vms", **await vm_values(ctx.session, vm_id),
                      **{k: v for k, v in (await activity_values(ctx.session, vm_id)).items()
                         if k != "vm"})


@page
async def vm_summary_fragment(ctx: WebContext) -> Response:
    return ctx.render("_vm_summary.html", **await vm_values(ctx.session, ctx.id_param("vm_id")))


@page
async def vm_activity_fragment(ctx: WebContext) -> Response:
    return ctx.render("_vm_activity.html",
                      **await activity_values(ctx.session, ctx.id_param("vm_id")))


@page
async def vm_action(ctx: WebContext) -> Response:
    """A lifecycle button: destructive ones need `confirmed` (else a confirmation page)."""
    vm_id = ctx.id_param("vm_id")
    name = str(ctx.request.path_params["action"])
    if name not in ACTIONS:
        raise InvalidInput(f"there is no VM action {name!r}")
    _action, label, destructive = ACTIONS[name]
    form = await ctx.form()
    vm = await lookup.get(ctx.session, Vm, vm_id)
    if destructive and form.get("confirmed") != "yes":
        return ctx.render("confirm.html", nav="vms", vm=vm, action=name, label=label)
    job = await _run_action(ctx, name, vm_id)
    if not ctx.htmx:
        return RedirectResponse(f"/vms/{vm_id}", status_code=303)
    return ctx.render("_job_progress.html", job=job, steps=[])


@page
async def migrate(ctx: WebContext) -> Response:
    """Migrate: to the chosen host, or (no host chosen) where the scheduler places it."""
    vm_id = ctx.id_param("vm_id")
    form = await ctx.form()
    target = form.get("host") or None
    job = await vm_service.migrate_vm(ctx.session, ctx.services.jobs, vm_id, ctx.user,
                                      host=_ref(target, "host") if target else None)
    return _job_answer(ctx, vm_id, job)


@page
async def cancel_migration(ctx: WebContext) -> Response:
    vm_id = ctx.id_param("vm_id")
    await ctx.form()
    job = await vm_service.cancel_migration(ctx.session, ctx.services.jobs, vm_id, ctx.user)
    return _job_answer(ctx, vm_id, job)


@page
async def high_availability(ctx: WebContext) -> Response:
    """The VM's high availability settings (enabled, restart priority)."""
    vm_id = ctx.id_param("vm_id")
    form = await ctx.form()
    vm = await vm_service.update_vm(ctx.session, vm_id, VmInput(
        high_availability=form.get("ha") == "on",
        ha_priority=_number(form, "ha_priority", "Restart priority", 0, 100)), ctx.user)
    if not ctx.htmx:
        return RedirectResponse(f"/vms/{vm_id}", status_code=303)
    said = (f"VM {vm.name} is highly available (restart priority {vm.ha_priority})"
            if vm.high_availability else f"VM {vm.name} is not highly available")
    return ctx.render("_notice.html", message=f"{said}.")


def _job_answer(ctx: WebContext, vm_id: uuid.UUID, job: Job) -> Response:
    if not ctx.htmx:
        return RedirectResponse(f"/vms/{vm_id}", status_code=303)
    return ctx.render("_job_progress.html", job=job, steps=[])


async def _run_action(ctx: WebContext, name: str, vm_id: uuid.UUID) -> Job:
    session, jobs, user = ctx.session, ctx.services.jobs, ctx.user
    if name == "start":
        return await vm_service.start_vm(session, jobs, vm_id, user)
    if name == "shutdown":
        return await vm_service.shutdown_vm(session, jobs, vm_id, user)
    if name == "reboot":
        return await vm_service.reboot_vm(session, jobs, vm_id, user)
    if name == "suspend":
        return await vm_service.suspend_vm(session, jobs, vm_id, user)
    if name == "stop":
        return await vm_service.stop_vm(session, jobs, vm_id, user)
    return await vm_service.remove_vm(session, jobs, vm_id, user)


ROUTES = [
    Route("/vms", vm_list),
    Route("/fragments/vms", vm_list_fragment),
    Route("/fragments/vms/rows", vm_rows_fragment),
    Route("/vms/new", new_vm_form),
    Route("/vms", create_vm, methods=["POST"]),
    Route("/vms/{vm_id}", vm_page),
    Route("/fragments/vms/{vm_id}/summary", vm_summary_fragment),
    Route("/fragments/vms/{vm_id}/activity", vm_activity_fragment),
    Route("/vms/{vm_id}/migrate", migrate, methods=["POST"]),
    Route("/vms/{vm_id}/cancelmigration", cancel_migration, methods=["POST"]),
    Route("/vms/{vm_id}/high-availability", high_availability, methods=["POST"]),
    Route("/vms/{vm_id}/{action}", vm_action, methods=["POST"]),
]
