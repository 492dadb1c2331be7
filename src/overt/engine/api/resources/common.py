"""What every resource module needs: listing with search and max, action replies."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select
from starlette.responses import Response

from overt.engine.api import search
from overt.engine.api.context import ApiContext
from overt.engine.api.search_fields import fields_for
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import AuditEvent, Job
from overt.engine.identity.access import KINDS, Access, visible_history

T = TypeVar("T")


async def list_rows(ctx: ApiContext, stmt: Select[T], fields: dict[str, Any]) -> list[T]:
    """Rows of `stmt` filtered, sorted and paged by the `search` parameter and limited by `max`
    (`fields`: the listing's own search fields, besides its table's defaults)."""
    stmt = visible_only(ctx, stmt)
    stmt = search.apply(stmt, ctx.request.query_params.get("search"),
                        fields_for(stmt.column_descriptions[0]["entity"], fields),
                        case_sensitive=ctx.request.query_params.get(
                            "case_sensitive", "true").lower() != "false",
                        limit=ctx.max_param())
    return list((await ctx.session.execute(stmt)).scalars())


def visible_only(ctx: ApiContext, stmt: Select[T]) -> Select[T]:
    """`stmt` limited to the objects the caller has a role on (oVirt's user view)."""
    access: Access | None = getattr(ctx.request.state, "access", None)
    entity = stmt.column_descriptions[0]["entity"]
    if access is None:
        return stmt
    for kind, table in KINDS.items():
        if entity is table:
            return stmt.where(access.visible(kind))
    if entity is AuditEvent or entity is Job:
        return stmt.where(visible_history(access, entity))
    return stmt


def action_done(ctx: ApiContext, job: Job | None = None, **extra: Any) -> Response:
    """oVirt's answer to an action: `<action>` with the job that carries it out."""
    rep: Representation = {"status": "complete" if job is None else "pending"}
    if job is not None:
        rep["job"] = ref("jobs", job.id)
    rep.update(extra)
    return ctx.render("action", rep)


async def action_params(ctx: ApiContext) -> dict[str, str]:
    """The simple parameters of an `<action>` body (an empty body is allowed)."""
    body = await ctx.request.body()
    if not body.strip():
        return {}
    node = await ctx.body("action")
    return {child.tag: child.text or "" for child in node.children if child.text is not None}
