"""/jobs, /jobs/ID/steps and /events: what the engine did and is doing."""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import ApiContext
from overt.engine.api.resources.common import action_done, action_params, list_rows
from overt.engine.api.routing import ApiRoutes
from overt.engine.db.tables import AuditEvent, Job, Step
from overt.engine.model.errors import InvalidInput, NotFound
from overt.engine.queries import lookup
from overt.engine.services import external_jobs

routes = ApiRoutes()


@routes.get("/jobs")
async def list_jobs(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(Job).order_by(Job.start_time.desc()),
                           {"status": Job.status, "description": Job.description,
                            "correlation_id": Job.correlation_id})
    return ctx.render_list("jobs", "job", [views.job(r) for r in rows])


@routes.get("/jobs/{job_id}")
async def get_job(ctx: ApiContext) -> Response:
    return ctx.render("job", views.job(await lookup.get(ctx.session, Job, ctx.id_param("job_id"))))


@routes.post("/jobs")
async def add_job(ctx: ApiContext) -> Response:
    node = await ctx.body("job")
    job = await external_jobs.add_external_job(ctx.session, node.get_str("description"),
                                               node.get_bool("auto_cleared"), ctx.user)
    return ctx.render("job", views.job(job), status=201)


@routes.post("/jobs/{job_id}/end")
async def end_job(ctx: ApiContext) -> Response:
    succeeded = (await action_params(ctx)).get("succeeded", "true").strip().lower()
    if succeeded not in ("true", "false", "1", "0"):
        raise InvalidInput(f"action.succeeded must be true or false, not {succeeded!r}")
    await external_jobs.end_job(ctx.session, ctx.id_param("job_id"), succeeded=succeeded in ("true", "1"),
                                user=ctx.user)
    return action_done(ctx)


@routes.post("/jobs/{job_id}/clear")
async def clear_job(ctx: ApiContext) -> Response:
    await action_params(ctx)
    await external_jobs.clear_job(ctx.session, ctx.id_param("job_id"), ctx.user)
    return action_done(ctx)


@routes.get("/jobs/{job_id}/steps")
async def list_steps(ctx: ApiContext) -> Response:
    job = await lookup.get(ctx.session, Job, ctx.id_param("job_id"))
    rows = (await ctx.session.execute(select(Step).where(Step.job_id == job.id)
                                      .order_by(Step.number))).scalars()
    return ctx.render_list("steps", "step", [views.step(r) for r in rows])


@routes.get("/jobs/{job_id}/steps/{step_id}")
async def get_step(ctx: ApiContext) -> Response:
    step = await ctx.session.get(Step, ctx.id_param("step_id"))
    if step is None or step.job_id != ctx.id_param("job_id"):
        raise NotFound(f"job {ctx.path_params['job_id']} has no step {ctx.path_params['step_id']}")
    return ctx.render("step", views.step(step))


@routes.get("/events")
async def list_events(ctx: ApiContext) -> Response:
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc())
    since = ctx.request.query_params.get("from")
    if since is not None:
        try:
            stmt = stmt.where(AuditEvent.id > int(since))
        except ValueError:
            raise InvalidInput(f"from must be an event id (an integer), not {since!r}") from None
    rows = await list_rows(ctx, stmt, {"severity": AuditEvent.severity,
                                       "description": AuditEvent.description,
                                       "code": AuditEvent.code,
                                       "correlation_id": AuditEvent.correlation_id})
    return ctx.render_list("events", "event", [views.event(r) for r in rows])


@routes.get("/events/{event_id}")
async def get_event(ctx: ApiContext) -> Response:
    raw = ctx.path_params["event_id"]
    event = await ctx.session.get(AuditEvent, int(raw)) if raw.isdigit() else None
    if event is None:
        raise NotFound(f"there is no event with id {raw}")
    return ctx.render("event", views.event(event))
