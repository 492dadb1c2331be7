"""The portal's Disks page: a paged list of every disk, and New, Remove and Move (each
through the same service functions the API's /disks uses; each a job whose progress the
list shows). Uploads from the browser: `disk_uploads`."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import Disk, DiskAttachment, Job, Step, StorageDomain, Template, Vm
from overt.engine.jobs.kinds import JobSpec
from overt.engine.model.errors import InvalidInput, OvertError
from overt.engine.model.status import DiskFormat, StorageDomainStatus
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services import devices, disk_moves
from overt.engine.services.inputs import DiskInput
from overt.engine.services.jobs import JobSubmitter
from overt.engine.web.context import WebContext, page
from overt.engine.web.listing import Column, list_view, page_of

GIB = 1 << 30

DISK_COLUMNS = [
    Column("name", "Name", Disk.name),
    Column("size", "Size", Disk.provisioned_size),
    Column("actual", "Actual size", Disk.actual_size),
    Column("format", "Format", Disk.format),
    Column("status", "Status", Disk.status),
    Column("domain", "Storage domain", StorageDomain.name),
    Column("vm", "Attached to", Vm.name),
    Column("actions", "Actions"),
]

DEFAULT_FORM = {"name": "", "size_gib": "1", "format": DiskFormat.COW.value, "sparse": "on",
                "domain": ""}


class RecordingJobs(JobSubmitter):
    """The engine's job submitter, keeping the jobs a service call submitted: the page
    shows their progress (the services that submit one do not all return it)."""

    def __init__(self, jobs: JobSubmitter) -> None:
        super().__init__(jobs.wakeup)
        self._jobs = jobs
        self.submitted: list[Job] = []

    async def submit(self, session: AsyncSession, spec: JobSpec, *, description: str,
                     owner_id: uuid.UUID | None = None, correlation_id: str | None = None,
                     max_attempts: int | None = None) -> Job:
        job = await self._jobs.submit(session, spec, description=description,
                                      owner_id=owner_id, correlation_id=correlation_id,
                                      max_attempts=max_attempts)
        self.submitted.append(job)
        return job


def _disk_select() -> Select[Disk, str, str, str]:
    """Each disk with its domain (none: a direct LUN disk), a VM it is attached to and
    the template it belongs to."""
    return (select(Disk, StorageDomain.name, Vm.name, Template.name)
            .outerjoin(StorageDomain, StorageDomain.id == Disk.storage_domain_id)
            .outerjoin(DiskAttachment, DiskAttachment.disk_id == Disk.id)
            .outerjoin(Vm, Vm.id == DiskAttachment.vm_id)
            .outerjoin(Template, Template.id == Disk.template_id))


async def active_domains(session: AsyncSession) -> list[StorageDomain]:
    """The domains a disk can be made on or moved to (the service checks the rest)."""
    return list((await session.execute(select(StorageDomain).where(
        StorageDomain.status == StorageDomainStatus.ACTIVE, StorageDomain.type == "data")
        .order_by(StorageDomain.name))).scalars())


async def _job_values(session: AsyncSession, raw: str | None) -> dict[str, Any]:
    """`?job=ID`: the job an action just submitted, shown above the list as it goes."""
    try:
        job = await session.get(Job, uuid.UUID(raw or ""))
    except ValueError:
        job = None
    if job is None:
        return {"job": None, "steps": []}
    steps = list((await session.execute(select(Step).where(Step.job_id == job.id)
                                        .order_by(Step.number))).scalars())
    return {"job": job, "steps": steps}


async def disk_list_values(ctx: WebContext) -> tuple[int, dict[str, Any]]:
    view = list_view(ctx.request, DISK_COLUMNS)
    rows = await page_of(ctx.session, _disk_select(), Disk, view)
    return (400 if view.error else 200), {"disks": rows, "view": view}


@page
async def disk_list(ctx: WebContext) -> Response:
    status, values = await disk_list_values(ctx)
    return ctx.render("disks.html", status, nav="disks", **values,
                      **await _job_values(ctx.session, ctx.request.query_params.get("job")))


@page
async def disk_list_fragment(ctx: WebContext) -> Response:
    status, values = await disk_list_values(ctx)
    return ctx.render("_disks_table.html", status, **values)


def _after(jobs: RecordingJobs) -> Response:
    """Back to the list, which shows the action's job as it goes."""
    job = jobs.submitted[-1] if jobs.submitted else None
    return RedirectResponse(f"/disks?job={job.id}" if job else "/disks", status_code=303)


# -- New ---------------------------------------------------------------------------------

def read_format_and_domain(form: dict[str, str]) -> tuple[str, Ref]:
    """A disk form's format (cow or raw) and storage domain (by id), as the New disk and
    the upload forms give them."""
    fmt = form.get("format", "")
    if fmt not in (DiskFormat.COW.value, DiskFormat.RAW.value):
        raise InvalidInput("Format must be cow (qcow2) or raw")
    try:
        return fmt, Ref(id=uuid.UUID(form.get("domain", "")))
    except ValueError:
        raise InvalidInput("choose a storage domain") from None


def read_disk_form(form: dict[str, str]) -> DiskInput:
    """The New disk form as the service's input (the service checks what it means)."""
    raw = form.get("size_gib", "").strip()
    try:
        size_gib = float(raw)
    except ValueError:
        raise InvalidInput(f"Size must be a number of GiB, not {raw!r}") from None
    if not 0 <= size_gib < 1 << 40:  # the service says which sizes a disk may have
        raise InvalidInput(f"Size must be a number of GiB, not {raw!r}")
    fmt, domain = read_format_and_domain(form)
    return DiskInput(name=form.get("name", "").strip() or None,
                     provisioned_size=int(size_gib * GIB), format=fmt,
                     sparse=form.get("sparse") == "on", storage_domain=domain)


async def _render_new(ctx: WebContext, session: AsyncSession, form: dict[str, str],
                      error: str | None = None, status: int = 200) -> Response:
    return ctx.render("disk_new.html", status, nav="disks", form=form, error=error,
                      domains=await active_domains(session))


@page
async def new_disk_form(ctx: WebContext) -> Response:
    return await _render_new(ctx, ctx.session, dict(DEFAULT_FORM))


@page
async def create_disk(ctx: WebContext) -> Response:
    form = {**DEFAULT_FORM, "sparse": "", **await ctx.form()}

    async def show(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            return await _render_new(ctx, session, form, f"{exc.reason}: {exc.detail}",
                                     exc.status)
    ctx.on_error = show
    jobs = RecordingJobs(ctx.services.jobs)
    await devices.add_disk(ctx.session, jobs, read_disk_form(form), ctx.user)
    return _after(jobs)


# -- Remove, Move ------------------------------------------------------------------------

async def _render_action(ctx: WebContext, session: AsyncSession, disk_id: uuid.UUID,
                         action: str, error: str | None = None, status: int = 200
                         ) -> Response:
    disk = await lookup.get(session, Disk, disk_id)
    domains = [d for d in await active_domains(session) if d.id != disk.storage_domain_id]
    return ctx.render("disk_action.html", status, nav="disks", disk=disk, action=action,
                      domains=domains, error=error)


def _show_action_error(ctx: WebContext, disk_id: uuid.UUID, action: str) -> Any:
    async def show(exc: OvertError) -> Response:
        async with ctx.request.app.state.db.transaction() as session:
            return await _render_action(ctx, session, disk_id, action,
                                        f"{exc.reason}: {exc.detail}", exc.status)
    return show


@page
async def remove_disk(ctx: WebContext) -> Response:
    """Removing asks first (a page); confirmed, the removal job runs."""
    disk_id = ctx.id_param("disk_id")
    form = await ctx.form()
    if form.get("confirmed") != "yes":
        return await _render_action(ctx, ctx.session, disk_id, "remove")
    ctx.on_error = _show_action_error(ctx, disk_id, "remove")
    disk = await lookup.get(ctx.session, Disk, disk_id)
    jobs = RecordingJobs(ctx.services.jobs)
    await devices.remove_disk_job(ctx.session, jobs, disk, ctx.user)
    return _after(jobs)


@page
async def move_form(ctx: WebContext) -> Response:
    return await _render_action(ctx, ctx.session, ctx.id_param("disk_id"), "move")


@page
async def move_disk(ctx: WebContext) -> Response:
    disk_id = ctx.id_param("disk_id")
    form = await ctx.form()
    ctx.on_error = _show_action_error(ctx, disk_id, "move")
    try:
        target = Ref(id=uuid.UUID(form.get("domain", "")))
    except ValueError:
        raise InvalidInput("choose the storage domain to move the disk to") from None
    jobs = RecordingJobs(ctx.services.jobs)
    await disk_moves.move_disk(ctx.session, jobs, disk_id, target, ctx.user)
    return _after(jobs)


ROUTES = [
    Route("/disks", disk_list),
    Route("/fragments/disks", disk_list_fragment),
    Route("/disks/new", new_disk_form),
    Route("/disks", create_disk, methods=["POST"]),
    Route("/disks/{disk_id}/remove", remove_disk, methods=["POST"]),
    Route("/disks/{disk_id}/move", move_form),
    Route("/disks/{disk_id}/move", move_disk, methods=["POST"]),
]
