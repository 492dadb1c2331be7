"""Live updates: a change feed over the database, streamed to browsers as server-sent events.

The API process may run apart from the worker and the monitor (they share only the
database), so changes are found by polling, every `interval_s` while at least one browser
listens. The first poll reads VM and host statuses and recent jobs whole; later polls read
the database's change log (`db.change_log`: rows its triggers write for every changed VM,
host, job, step and audit event) since the last one, then only the rows it names, and the
newest stats sample. Each browser gets the differences; for stats, which hosts and VMs have
new samples (their graphs fetch them).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, cast, func, or_, select, type_coerce
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from overt.engine.db import change_log
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
# More changed VMs and hosts than this in one poll: all of them are read again at once
# (one scan beats thousands of lookups).
READ_ALL_ABOVE = 5000
# Ended jobs are forgotten when the feed remembers more than this many jobs.
JOBS_KEPT = 2000


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
    """VMs and hosts as the feed last read them (by id as text; statuses in the database's
    own form), jobs, where the change log stood and the newest stats sample."""

    vms: dict[str, tuple[str, str, str | None]] = field(default_factory=dict)  # as stored
    hosts: dict[str, tuple[str, str]] = field(default_factory=dict)
    jobs: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    position: change_log.Position = field(default_factory=change_log.Position)
    last_sample_id: int = 0


def _id(value: Any) -> str | None:
    """An id as the browser gets it, from a UUID or the database's text of one."""
    if value is None:
        return None
    return str(uuid.UUID(value)) if isinstance(value, str) else str(value)


def _stored(column: Any) -> Any:
    """A column read as stored: no UUID or enum object made for each of 20,000 rows."""
    return type_coerce(column, String())


def _text(column: Any) -> Any:
    """An id as the database writes it as text (the change log's form): compared as it
    is, and turned into a UUID's text only for what changed."""
    return cast(column, String())


_VMS = Vm.__table__.c
_HOSTS = Host.__table__.c
_VM_ROW = (_text(_VMS.id), _VMS.name, _stored(_VMS.status), _text(_VMS.host_id))
_HOST_ROW = (_text(_HOSTS.id), _HOSTS.name, _stored(_HOSTS.status))


async def take_snapshot(session: AsyncSession) -> Snapshot:
    """Everything the feed compares, read whole (its first poll)."""
    snap = Snapshot(position=await change_log.position(session))
    snap.vms = await _read_vms(session, None)
    snap.hosts = await _read_hosts(session, None)
    recent = utcnow() - RECENT_JOBS
    snap.jobs = await _read_jobs(session, or_(Job.start_time >= recent,
                                              Job.state.in_(["queued", "running"])))
    snap.last_sample_id = await _last_sample_id(session)
    return snap


async def _read_vms(session: AsyncSession, ids: Collection[str] | None
                    ) -> dict[str, tuple[str, str, str | None]]:
    found: dict[str, tuple[str, str, str | None]] = {}
    for where in _id_filters(_VMS.id, ids):
        for vm_id, name, vm_status, on_host in await session.execute(
                select(*_VM_ROW).where(*where)):
            found[vm_id] = (name, vm_status, on_host)
    return found


async def _read_hosts(session: AsyncSession, ids: Collection[str] | None
                      ) -> dict[str, tuple[str, str]]:
    found: dict[str, tuple[str, str]] = {}
    for where in _id_filters(_HOSTS.id, ids):
        for host_id, name, host_status in await session.execute(
                select(*_HOST_ROW).where(*where)):
            found[host_id] = (name, host_status)
    return found


def _id_filters(column: Any, ids: Collection[str] | None) -> list[tuple[Any, ...]]:
    """No filter (every row), or `IN` lists of at most 500 ids."""
    if ids is None:
        return [()]
    return [(column.in_([uuid.UUID(x) for x in batch]),)
            for batch in change_log.chunks(sorted(ids))]


async def _read_jobs(session: AsyncSession, where: Any) -> dict[str, tuple[Any, ...]]:
    jobs = (await session.execute(select(Job.id, Job.status, Job.state, Job.vm_id, Job.host_id)
                                  .where(where))).all()
    steps: dict[uuid.UUID, list[tuple[int, str, int | None]]] = {row[0]: [] for row in jobs}
    for batch in change_log.chunks(list(steps)):  # type: ignore[arg-type]
        for job_id, number, step_status, progress in await session.execute(
                select(Step.job_id, Step.number, Step.status, Step.progress)
                .where(Step.job_id.in_(batch)).order_by(Step.number)):
            steps[job_id].append((number, step_status, progress))
    return {str(job_id): (job_status, state, _id(job_vm), _id(job_host), tuple(steps[job_id]))
            for job_id, job_status, state, job_vm, job_host in jobs}


async def _last_sample_id(session: AsyncSession) -> int:
    return int((await session.execute(
        select(func.coalesce(func.max(StatsSample.id), 0)))).scalar_one())


async def poll(session: AsyncSession, snap: Snapshot, *, with_stats: bool = True
               ) -> list[Change]:
    """What changed since `snap` was taken (or last polled), which it then tells."""
    snap.position, changed = await change_log.changed_since(session, snap.position)
    vm_ids, host_ids = changed.get("vm", set()), changed.get("host", set())
    if len(vm_ids) + len(host_ids) > READ_ALL_ABOVE:
        vms, hosts = await _read_vms(session, None), await _read_hosts(session, None)
        vm_ids, host_ids = set(vms) | set(snap.vms), set(hosts) | set(snap.hosts)
    else:
        vms, hosts = await _read_vms(session, vm_ids), await _read_hosts(session, host_ids)
    changes = _vm_changes(snap, vm_ids, vms) + _host_changes(snap, host_ids, hosts)
    job_ids = {str(_id(x)) for x in changed.get("job", ())}
    if job_ids:
        changes += _job_changes(snap, await _read_jobs(
            session, Job.id.in_([uuid.UUID(x) for x in job_ids])))
    if "audit" in changed:
        event_ids = sorted(int(x) for x in changed["audit"])[:MAX_EVENTS_PER_TICK]
        for event in (await session.execute(select(AuditEvent).where(
                AuditEvent.id.in_(event_ids)).order_by(AuditEvent.id))).scalars():
            changes.append(Change("audit", {
                "id": event.id, "severity": event.severity, "description": event.description,
                "vm_id": _id(event.vm_id), "host_id": _id(event.host_id)}))
    last_sample_id = await _last_sample_id(session)
    if with_stats and last_sample_id > snap.last_sample_id:
        changes += await _new_samples(session, snap.last_sample_id, last_sample_id)
    snap.last_sample_id = last_sample_id
    return changes


def _vm_changes(snap: Snapshot, ids: Collection[str],
                found: dict[str, tuple[str, str, str | None]]) -> list[Change]:
    # `old_host_id`: where the VM ran before (a host list shows VM counts of both hosts).
    changes = []
    for vm_id in sorted(ids):
        before, now = snap.vms.get(vm_id), found.get(vm_id)
        if now is None:
            if before is not None:
                del snap.vms[vm_id]
                changes.append(Change("vm", {"id": _id(vm_id), "name": before[0],
                                             "status": "removed", "host_id": None,
                                             "old_host_id": _id(before[2])}))
        elif before != now:
            snap.vms[vm_id] = now
            name, status, host_id = now
            changes.append(Change("vm", {"id": _id(vm_id), "name": name, "status": status,
                                         "host_id": _id(host_id),
                                         "old_host_id": _id(before[2]) if before else None,
                                         "new": before is None}))
    return changes


def _host_changes(snap: Snapshot, ids: Collection[str],
                  found: dict[str, tuple[str, str]]) -> list[Change]:
    changes = []
    for host_id in sorted(ids):
        before, now = snap.hosts.get(host_id), found.get(host_id)
        if now is None:
            if before is not None:
                del snap.hosts[host_id]
                changes.append(Change("host", {"id": _id(host_id), "name": before[0],
                                               "status": "removed", "new": False}))
        elif before != now:
            snap.hosts[host_id] = now
            changes.append(Change("host", {"id": _id(host_id), "name": now[0],
                                           "status": now[1],
                                           "new": before is None}))
    return changes


def _job_changes(snap: Snapshot, found: dict[str, tuple[Any, ...]]) -> list[Change]:
    changes = []
    for job_id, row in found.items():
        if snap.jobs.get(job_id) != row:
            snap.jobs[job_id] = row
            job_status, state, job_vm, job_host, steps = row
            changes.append(Change("job", {"id": job_id, "status": job_status,
                                          "state": state, "vm_id": job_vm, "host_id": job_host,
                                          "steps": len(steps)}))
    if len(snap.jobs) > JOBS_KEPT:
        for job_id in [key for key, row in snap.jobs.items() if row[1] in ("done", "failed")]:
            del snap.jobs[job_id]
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
        read_at = 0.0
        while self._listeners:
            started = time.monotonic()
            # A feed that has not read for long (the database was away) may have missed
            # pruned changes: it reads everything again, telling nothing of that read.
            if started - read_at > change_log.RETENTION.total_seconds() / 2:
                current = None
            try:
                async with self.db.transaction() as session:
                    if current is None:
                        current, changes = await take_snapshot(session), []
                    else:
                        # Which hosts and VMs have new samples: asked only when a page
                        # shows graphs.
                        changes = await poll(session, current,
                                             with_stats=any(self._listeners.values()))
                read_at = started
            except OperationalError as exc:
                log.warning("the portal's change feed cannot read the database (%s)", exc.orig)
                changes = []
            for change in changes:
                for queue, graphs in list(self._listeners.items()):
                    if change.kind == "stats" and change.data["id"] not in graphs:
                        continue
                    with contextlib.suppress(asyncio.QueueFull):
                        queue.put_nowait(change)
            # A poll that costs much (thousands of changes) makes the feed wait longer
            # before the next, so that it never takes more than a share of the process.
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
