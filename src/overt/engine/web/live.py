"""Live updates: a change feed over the database, streamed to browsers as server-sent events.

The API process may run apart from the worker and the monitor (they share only the
database), so changes are found by polling: one cheap snapshot of VM and host
statuses, recent jobs with their steps, the newest audit event and the newest stats
sample, every `interval_s` while at least one browser listens. Each browser gets the
differences; for stats, which hosts and VMs have new samples (their graphs fetch them).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, func, or_, select, type_coerce
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from overt.engine.db.database import Database
from overt.engine.db.tables import AuditEvent, Host, Job, StatsSample, Step, Vm, utcnow
from overt.engine.identity.access import load_access
from overt.engine.web import sessions
from overt.engine.web.context import signin_redirect
from overt.engine.web.session_watch import SessionWatch, until_signed_out

log = logging.getLogger(__name__)

RECENT_JOBS = dt.timedelta(minutes=15)
KEEPALIVE_S = 15.0
MAX_EVENTS_PER_TICK = 50
MAX_STATS_SUBJECTS_PER_TICK = 5000
MAX_GRAPHS_PER_PAGE = 10
# The feed sleeps at least this many times as long as its last tick took.
BUSY_FACTOR = 3.0


@dataclass(frozen=True)
class Change:
    """One thing that changed: `kind` is vm, host, job, audit or stats; `data` says what it
    is now (for stats: whose graphs have new samples)."""

    kind: str
    data: dict[str, Any]

    def sse(self) -> str:
        return f"event: {self.kind}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


@dataclass
class Snapshot:
    """VMs and hosts as stored (ids and statuses in the database's own form, compared as
    they are and turned into text only for what changed: tens of thousands of rows are
    read every tick), jobs and the newest event and sample."""

    vms: dict[Any, tuple[str, str, Any]] = field(default_factory=dict)
    hosts: dict[Any, tuple[str, str]] = field(default_factory=dict)
    jobs: dict[uuid.UUID, tuple[Any, ...]] = field(default_factory=dict)
    last_event_id: int = 0
    last_sample_id: int = 0


def _id(value: Any) -> str | None:
    """An id as the browser gets it, from a UUID or the database's text of one."""
    if value is None:
        return None
    return str(uuid.UUID(value)) if isinstance(value, str) else str(value)


def _stored(column: Any) -> Any:
    """A column read as stored: no UUID or enum object made for each of 20,000 rows."""
    return type_coerce(column, String())


_VMS = Vm.__table__.c
_HOSTS = Host.__table__.c


async def take_snapshot(session: AsyncSession) -> Snapshot:
    snap = Snapshot()
    rows = await session.execute(select(_stored(_VMS.id), _VMS.name, _stored(_VMS.status),
                                        _stored(_VMS.host_id)))
    snap.vms = {vm_id: (name, vm_status, on_host) for vm_id, name, vm_status, on_host in rows}
    rows = await session.execute(select(_stored(_HOSTS.id), _HOSTS.name,
                                        _stored(_HOSTS.status)))
    snap.hosts = {host_id: (name, host_status) for host_id, name, host_status in rows}
    recent = utcnow() - RECENT_JOBS
    jobs = (await session.execute(select(Job.id, Job.status, Job.state, Job.vm_id, Job.host_id)
                                  .where(or_(Job.start_time >= recent,
                                             Job.state.in_(["queued", "running"]))))).all()
    steps: dict[uuid.UUID, list[tuple[int, str, int | None]]] = {row[0]: [] for row in jobs}
    if jobs:
        for job_id, number, step_status, progress in await session.execute(
                select(Step.job_id, Step.number, Step.status, Step.progress)
                .where(Step.job_id.in_(list(steps))).order_by(Step.number)):
            steps[job_id].append((number, step_status, progress))
    for job_id, job_status, state, job_vm, job_host in jobs:
        snap.jobs[job_id] = (job_status, state, _id(job_vm), _id(job_host), tuple(steps[job_id]))
    snap.last_event_id = int((await session.execute(
        select(func.coalesce(func.max(AuditEvent.id), 0)))).scalar_one())
    snap.last_sample_id = int((await session.execute(
        select(func.coalesce(func.max(StatsSample.id), 0)))).scalar_one())
    return snap


async def changes_between(session: AsyncSession, old: Snapshot, new: Snapshot, *,
                          with_stats: bool = True) -> list[Change]:
    changes = []
    # `old_host_id`: where the VM ran before (a host list shows VM counts of both hosts).
    for vm_id, (name, status, host_id) in new.vms.items():
        before = old.vms.get(vm_id)
        if before != (name, status, host_id):
            changes.append(Change("vm", {"id": _id(vm_id), "name": name, "status": status,
                                         "host_id": _id(host_id),
                                         "old_host_id": _id(before[2]) if before else None,
                                         "new": before is None}))
    for vm_id, (name, _status, was_on) in old.vms.items():
        if vm_id not in new.vms:
            changes.append(Change("vm", {"id": _id(vm_id), "name": name, "status": "removed",
                                         "host_id": None, "old_host_id": _id(was_on)}))
    for host_key, (host_name, host_status) in new.hosts.items():
        seen = old.hosts.get(host_key)
        if seen != (host_name, host_status):
            changes.append(Change("host", {"id": _id(host_key), "name": host_name,
                                           "status": host_status, "new": seen is None}))
    for host_key, (host_name, _status) in old.hosts.items():
        if host_key not in new.hosts:
            changes.append(Change("host", {"id": _id(host_key), "name": host_name,
                                           "status": "removed", "new": False}))
    for job_id, row in new.jobs.items():
        if old.jobs.get(job_id) != row:
            job_status, state, job_vm, job_host, steps = row
            changes.append(Change("job", {"id": str(job_id), "status": job_status,
                                          "state": state, "vm_id": job_vm, "host_id": job_host,
                                          "steps": len(steps)}))
    if new.last_event_id > old.last_event_id:
        rows = (await session.execute(
            select(AuditEvent).where(AuditEvent.id > old.last_event_id)
            .order_by(AuditEvent.id).limit(MAX_EVENTS_PER_TICK))).scalars()
        for event in rows:
            changes.append(Change("audit", {
                "id": event.id, "severity": event.severity, "description": event.description,
                "vm_id": _id(event.vm_id), "host_id": _id(event.host_id)}))
    if with_stats and new.last_sample_id > old.last_sample_id:
        changes += await _new_samples(session, old.last_sample_id, new.last_sample_id)
    return changes


async def _new_samples(session: AsyncSession, after: int, upto: int) -> list[Change]:
    """One change per host or VM with new raw samples (roll-ups of old ones are not news)."""
    subjects = await session.execute(
        select(StatsSample.subject_type, StatsSample.subject_id).distinct()
        .where(StatsSample.id > after, StatsSample.id <= upto, StatsSample.resolution_s == 0)
        .limit(MAX_STATS_SUBJECTS_PER_TICK))
    return [Change("stats", {"subject": subject_type, "id": str(subject_id)})
            for subject_type, subject_id in subjects]


class ChangeFeed:
    """Polls the database while anyone listens and hands each listener the changes.

    Every listener gets every status, job and audit change, but stats changes only for
    the hosts and VMs whose graphs it shows (`graphs`): a large fleet reports thousands
    of samples a minute, which no page needs all of.
    """

    def __init__(self, db: Database, *, interval_s: float = 0.4) -> None:
        self.db = db
        self.interval_s = interval_s
        self._listeners: dict[asyncio.Queue[Change], frozenset[str]] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def listen(self, graphs: frozenset[str] = frozenset()
                     ) -> AsyncIterator[asyncio.Queue[Change]]:
        queue: asyncio.Queue[Change] = asyncio.Queue(maxsize=1000)
        self._listeners[queue] = graphs
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="web change feed")
        try:
            yield queue
        finally:
            self._listeners.pop(queue, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        current: Snapshot | None = None
        while self._listeners:
            started = time.monotonic()
            try:
                async with self.db.transaction() as session:
                    fresh = await take_snapshot(session)
                    # Which hosts and VMs have new samples: asked only when a page shows graphs.
                    with_stats = any(self._listeners.values())
                    changes = await changes_between(session, current, fresh,
                                                    with_stats=with_stats) \
                        if current is not None else []
                current = fresh
            except OperationalError as exc:
                log.warning("the portal's change feed cannot read the database (%s)", exc.orig)
                changes = []
            for change in changes:
                for queue, graphs in list(self._listeners.items()):
                    if change.kind == "stats" and change.data["id"] not in graphs:
                        continue
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(change)
            # A large fleet makes a tick cost more: the feed then waits longer between
            # ticks, so that it never takes more than a share of the process from pages.
            spent = time.monotonic() - started
            await asyncio.sleep(max(self.interval_s, spent * BUSY_FACTOR))


def graphs_asked(request: Request) -> frozenset[str]:
    """`?graphs=ID,ID`: the hosts and VMs whose new samples this page wants (a few at most)."""
    raw = request.query_params.get("graphs", "")
    asked = set()
    for part in raw.split(",")[:MAX_GRAPHS_PER_PAGE]:
        with contextlib.suppress(ValueError):
            asked.add(str(uuid.UUID(part)))
    return frozenset(asked)


async def stream(request: Request) -> Response:
    """GET /events/stream: the change feed as server-sent events, for a signed-in browser;
    it ends with the session (sign-out, expiry)."""
    db: Database = request.app.state.db
    cookie = request.cookies.get(sessions.COOKIE)
    if not cookie:
        return signin_redirect(request)
    async with db.transaction() as session:
        found = await sessions.find_session(session, cookie, touch=False)
        if found is None:
            return signin_redirect(request)
        # The feed tells of every object: the admin portal's, not the VM Portal's users'.
        if not (await load_access(session, found[1])).superuser:
            return Response("the live feed is for administrators", 403,
                            media_type="text/plain")
    feed: ChangeFeed = request.app.state.change_feed
    watch: SessionWatch = request.app.state.session_watch
    graphs = graphs_asked(request)

    async def events() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        signed_out = asyncio.create_task(until_signed_out(db, watch, cookie))
        # One read of the queue at a time, kept across keepalives: a read cancelled at every
        # keepalive could be left pending when the stream ends with its event loop.
        change: asyncio.Task[Change] | None = None
        try:
            async with feed.listen(graphs) as queue:
                while True:
                    if change is None:
                        change = asyncio.create_task(queue.get())
                    done, _ = await asyncio.wait({change, signed_out}, timeout=KEEPALIVE_S,
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if signed_out in done:
                        yield "event: signedout\ndata: {}\n\n"
                        return
                    if change in done:
                        ready, change = change, None
                        yield ready.result().sse()
                    else:
                        yield ": keepalive\n\n"
        finally:
            await _end_tasks(change, signed_out)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _end_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel a stream's helper tasks and let them finish, so none outlives the stream."""
    running = [task for task in tasks if task is not None]
    for task in running:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*running, return_exceptions=True)


ROUTES = [Route("/events/stream", stream)]
