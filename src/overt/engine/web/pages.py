"""The portal's read-only pages: dashboard, data centers, clusters, hosts, storage,
networks, jobs and events. Each live part is also served alone, as a fragment that
the page fetches again when the change feed says it changed."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response
from starlette.routing import Route

from overt.engine import audit
from overt.engine.db.tables import (
    AuditEvent,
    Cluster,
    DataCenter,
    Host,
    Job,
    Network,
    Step,
    StorageDomain,
    Vm,
    VnicProfile,
    utcnow,
)
from overt.engine.model.node_states import ON_HOST
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.queries import lookup
from overt.engine.services import power_management
from overt.engine.web import host_networks
from overt.engine.web.context import WebContext, page
from overt.engine.web.hosts import fence_buttons, host_buttons
from overt.engine.web.listing import Column, ids_asked, list_view, page_of

ATTENTION_HOST_STATUSES = (HostStatus.NON_RESPONSIVE, HostStatus.KDUMPING,
                           HostStatus.NON_OPERATIONAL,
                           HostStatus.INSTALL_FAILED, HostStatus.ERROR,
                           HostStatus.PENDING_APPROVAL)
FAILED_JOBS_WINDOW = dt.timedelta(hours=24)


async def _count(session: AsyncSession, model: type[Any], *conditions: Any) -> int:
    stmt = select(func.count()).select_from(model)
    for condition in conditions:
        stmt = stmt.where(condition)
    return int((await session.execute(stmt)).scalar_one())


async def recent_events(session: AsyncSession, *, vm_id: uuid.UUID | None = None,
                        host_id: uuid.UUID | None = None, limit: int = 10) -> list[AuditEvent]:
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if vm_id is not None:
        stmt = stmt.where(AuditEvent.vm_id == vm_id)
    if host_id is not None:
        stmt = stmt.where(AuditEvent.host_id == host_id)
    return list((await session.execute(stmt)).scalars())


async def jobs_with_steps(session: AsyncSession, *, vm_id: uuid.UUID | None = None,
                          limit: int = 20) -> list[tuple[Job, list[Step]]]:
    stmt = select(Job).order_by(Job.start_time.desc()).limit(limit)
    if vm_id is not None:
        stmt = stmt.where(Job.vm_id == vm_id)
    jobs = list((await session.execute(stmt)).scalars())
    steps: dict[uuid.UUID, list[Step]] = {job.id: [] for job in jobs}
    if jobs:
        for step in (await session.execute(select(Step).where(
                Step.job_id.in_(list(steps))).order_by(Step.number))).scalars():
            steps[step.job_id].append(step)
    return [(job, steps[job.id]) for job in jobs]


CERTIFICATE_ALERT_WINDOW = dt.timedelta(days=7)


async def dashboard_values(session: AsyncSession) -> dict[str, Any]:
    hosts_by_status = dict((await session.execute(
        select(Host.status, func.count()).group_by(Host.status))).all())
    since = utcnow() - FAILED_JOBS_WINDOW
    return {
        "totals": [
            ("Data centers", await _count(session, DataCenter), "/datacenters"),
            ("Clusters", await _count(session, Cluster), "/clusters"),
            ("Hosts", sum(hosts_by_status.values()), "/hosts"),
            ("Hosts up", hosts_by_status.get(HostStatus.UP, 0), "/hosts"),
            ("VMs", await _count(session, Vm), "/vms"),
            ("VMs running", await _count(session, Vm, Vm.status.in_(
                ON_HOST)), "/vms"),
            ("Storage domains", await _count(session, StorageDomain), "/storage"),
            ("Networks", await _count(session, Network), "/networks"),
        ],
        "troubled_hosts": list((await session.execute(select(Host).where(
            Host.status.in_(ATTENTION_HOST_STATUSES)).order_by(Host.name))).scalars()),
        "troubled_vms": list((await session.execute(select(Vm).where(
            Vm.status.in_([VmStatus.UNKNOWN, VmStatus.NOT_RESPONDING]))
            .order_by(Vm.name))).scalars()),
        "failed_jobs": list((await session.execute(select(Job).where(
            Job.state == "failed", Job.end_time >= since).order_by(Job.end_time.desc())
            .limit(10))).scalars()),
        "running_jobs": await _count(session, Job, Job.state.in_(["queued", "running"])),
        "events": await recent_events(session, limit=8),
        "certificate_alerts": await certificate_alerts(session),
    }


async def certificate_alerts(session: AsyncSession) -> list[AuditEvent]:
    """The certificate alerts of the last week not followed by `overt pki recover`."""
    recovered = (await session.execute(select(func.max(AuditEvent.time)).where(
        AuditEvent.code == audit.CERTIFICATES_RECOVERED))).scalar_one_or_none()
    since = utcnow() - CERTIFICATE_ALERT_WINDOW
    if recovered is not None and recovered > since:
        since = recovered
    return list((await session.execute(select(AuditEvent).where(
        AuditEvent.code == audit.CERTIFICATE_EXPIRING, AuditEvent.time > since)
        .order_by(AuditEvent.time.desc()).limit(10))).scalars())


@page
async def dashboard(ctx: WebContext) -> Response:
    return ctx.render("dashboard.html", nav="dashboard", **await dashboard_values(ctx.session))


@page
async def dashboard_fragment(ctx: WebContext) -> Response:
    return ctx.render("_dashboard.html", **await dashboard_values(ctx.session))


@page
async def data_centers(ctx: WebContext) -> Response:
    rows = (await ctx.session.execute(select(DataCenter).order_by(DataCenter.name))).scalars()
    clusters = dict((await ctx.session.execute(select(
        Cluster.data_center_id, func.count()).group_by(Cluster.data_center_id))).all())
    return ctx.render("datacenters.html", nav="datacenters", data_centers=list(rows),
                      clusters=clusters)


@page
async def clusters(ctx: WebContext) -> Response:
    rows = (await ctx.session.execute(
        select(Cluster, DataCenter.name).join(DataCenter, DataCenter.id == Cluster.data_center_id)
        .order_by(Cluster.name))).all()
    hosts = dict((await ctx.session.execute(select(Host.cluster_id, func.count())
                                            .group_by(Host.cluster_id))).all())
    vms = dict((await ctx.session.execute(select(Vm.cluster_id, func.count())
                                          .group_by(Vm.cluster_id))).all())
    return ctx.render("clusters.html", nav="clusters", clusters=rows, hosts=hosts, vms=vms)


# How many VMs run on each host: one pass over the VMs, joined to the list for sorting by it.
_RUNNING = (select(Vm.host_id.label("host_id"), func.count().label("running"))
            .where(Vm.status.in_(ON_HOST)).group_by(Vm.host_id).subquery("running"))


HOST_COLUMNS = [
    Column("name", "Name", Host.name),
    Column("status", "Status", Host.status),
    Column("address", "Address", Host.address),
    Column("cluster", "Cluster", Cluster.name),
    Column("vms", "VMs", func.coalesce(_RUNNING.c.running, 0)),
    Column("cpu", "CPU", Host.cpu_percent),
    Column("memory", "Memory free", Host.free_memory_mib),
]


def _host_select() -> Select[Host, str]:
    return select(Host, Cluster.name).join(Cluster, Cluster.id == Host.cluster_id)


async def _with_running(session: AsyncSession, rows: list[Any]) -> list[tuple[Host, str, int]]:
    """Each host row with the number of VMs running on it (counted for these hosts only)."""
    ids = [host.id for host, _cluster in rows]
    running = dict((await session.execute(
        select(Vm.host_id, func.count()).where(Vm.status.in_(ON_HOST), Vm.host_id.in_(ids))
        .group_by(Vm.host_id))).all()) if ids else {}
    return [(host, cluster, running.get(host.id, 0)) for host, cluster in rows]


async def host_list_values(ctx: WebContext) -> tuple[int, dict[str, Any]]:
    """A page of the host list as the URL asks for it, and its status (400: a bad search)."""
    view = list_view(ctx.request, HOST_COLUMNS)
    stmt = _host_select().outerjoin(_RUNNING, _RUNNING.c.host_id == Host.id)
    rows = await page_of(ctx.session, stmt, Host, view)
    return (400 if view.error else 200), {"hosts": await _with_running(ctx.session, rows),
                                          "view": view}


@page
async def hosts(ctx: WebContext) -> Response:
    status, values = await host_list_values(ctx)
    return ctx.render("hosts.html", status, nav="hosts", **values)


@page
async def hosts_fragment(ctx: WebContext) -> Response:
    status, values = await host_list_values(ctx)
    return ctx.render("_hosts_table.html", status, **values)


@page
async def host_rows_fragment(ctx: WebContext) -> Response:
    """The rows of some hosts (those a list page shows that changed); a removed host has
    no row."""
    ids = ids_asked(ctx.request)
    rows = list(await ctx.session.execute(_host_select().where(Host.id.in_(ids)))) \
        if ids else []
    return ctx.render("_host_rows.html", hosts=await _with_running(ctx.session, rows))


async def host_values(session: AsyncSession, host_id: uuid.UUID) -> dict[str, Any]:
    host = await lookup.get(session, Host, host_id)
    cluster = await lookup.get(session, Cluster, host.cluster_id)
    vms = list((await session.execute(select(Vm).where(Vm.host_id == host.id)
                                      .order_by(Vm.name))).scalars())
    return {"host": host, "cluster": cluster, "vms": vms, "buttons": host_buttons(host),
            "pm_configured": (pm := await power_management.configured(session, host)),
            "fence_buttons": fence_buttons(host, pm),
            "events": await recent_events(session, host_id=host.id)}


@page
async def host_page(ctx: WebContext) -> Response:
    values = await host_values(ctx.session, ctx.id_param("host_id"))
    return ctx.render("host.html", nav="hosts", **values,
                      **await host_networks.network_values(ctx.session, values["host"]))


@page
async def host_fragment(ctx: WebContext) -> Response:
    return ctx.render("_host_live.html", **await host_values(ctx.session,
                                                             ctx.id_param("host_id")))


@page
async def storage(ctx: WebContext) -> Response:
    rows = (await ctx.session.execute(
        select(StorageDomain, Host.name).outerjoin(Host, Host.id == StorageDomain.host_id)
        .order_by(StorageDomain.name))).all()
    return ctx.render("storage.html", nav="storage", domains=rows)


@page
async def networks(ctx: WebContext) -> Response:
    rows = (await ctx.session.execute(
        select(Network, DataCenter.name).join(DataCenter, DataCenter.id == Network.data_center_id)
        .order_by(Network.name))).all()
    profiles = (await ctx.session.execute(select(VnicProfile).order_by(VnicProfile.name))).scalars()
    by_network: dict[uuid.UUID, list[str]] = {}
    for profile in profiles:
        by_network.setdefault(profile.network_id, []).append(profile.name)
    return ctx.render("networks.html", nav="networks", networks=rows, profiles=by_network)


@page
async def jobs(ctx: WebContext) -> Response:
    return ctx.render("jobs.html", nav="jobs", jobs=await jobs_with_steps(ctx.session, limit=50))


@page
async def jobs_fragment(ctx: WebContext) -> Response:
    return ctx.render("_jobs_table.html", jobs=await jobs_with_steps(ctx.session, limit=50))


@page
async def job_fragment(ctx: WebContext) -> Response:
    """One job and its steps: the progress shown after an action (refreshed until it ends)."""
    job = await lookup.get(ctx.session, Job, ctx.id_param("job_id"))
    steps = list((await ctx.session.execute(select(Step).where(Step.job_id == job.id)
                                            .order_by(Step.number))).scalars())
    return ctx.render("_job_progress.html", job=job, steps=steps)


@page
async def events(ctx: WebContext) -> Response:
    return ctx.render("events.html", nav="events",
                      events=await recent_events(ctx.session, limit=100))


@page
async def events_fragment(ctx: WebContext) -> Response:
    return ctx.render("_events_table.html", events=await recent_events(ctx.session, limit=100))


ROUTES = [
    Route("/", dashboard),
    Route("/fragments/dashboard", dashboard_fragment),
    Route("/datacenters", data_centers),
    Route("/clusters", clusters),
    Route("/hosts", hosts),
    Route("/fragments/hosts", hosts_fragment),
    Route("/fragments/hosts/rows", host_rows_fragment),
    Route("/hosts/{host_id}", host_page),
    Route("/fragments/hosts/{host_id}", host_fragment),
    Route("/storage", storage),
    Route("/networks", networks),
    Route("/jobs", jobs),
    Route("/fragments/jobs", jobs_fragment),
    Route("/fragments/jobs/{job_id}", job_fragment),
    Route("/events", events),
    Route("/fragments/events", events_fragment),
]
