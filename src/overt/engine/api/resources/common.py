"""What every resource module needs: listing with search and max, action replies."""

from __future__ import annotations

import collections
import functools
from collections.abc import Sequence
from typing import Any, TypeVar, cast

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
# Above this many objects, a listing's related rows are read for all objects that have
# them rather than by an IN of the listed ids: compiling and binding a thousand ids costs
# several times more than reading the rows of the few the listing leaves out.
MANY = 100


async def list_rows(ctx: ApiContext, stmt: Select[T], fields: dict[str, Any]) -> list[T]:
    """Rows of `stmt` filtered, sorted and paged by the `search` parameter and limited by `max`
    (`fields`: the listing's own search fields, besides its table's defaults)."""
    return list((await ctx.session.execute(_searched(ctx, stmt, fields))).scalars())


async def list_records(ctx: ApiContext, stmt: Select[T], fields: dict[str, Any],
                       columns: Sequence[str] | None = None) -> list[T]:
    """As `list_rows`, read as plain rows of the entity's columns rather than ORM objects:
    for the listings a view only reads (a thousand VMs or hosts), whose objects the session
    would otherwise build and track one by one. Each row has the entity's column attributes
    (those named in `columns`, else all) and nothing else: no relationship, no method.
    They are named tuples, whose attributes read about thirty times faster than those of
    SQLAlchemy's rows (a listing reads some 30,000)."""
    stmt = _searched(ctx, stmt, fields)
    table = stmt.column_descriptions[0]["entity"].__table__
    names = tuple(table.columns.keys()) if columns is None else tuple(columns)
    rows = await ctx.session.execute(stmt.with_only_columns(*(table.columns[n] for n in names)))
    make = _record_type(table.name, names)._make
    return cast(list[T], [make(row) for row in rows])


@functools.lru_cache(maxsize=64)
def _record_type(table: str, names: tuple[str, ...]) -> Any:
    """A named tuple class for the rows of `table` with the columns `names`."""
    return collections.namedtuple(f"{table}_record", names)


def _searched(ctx: ApiContext, stmt: Select[T], fields: dict[str, Any]) -> Select[T]:
    stmt = visible_only(ctx, stmt)
    return search.apply(stmt, ctx.request.query_params.get("search"),
                        fields_for(stmt.column_descriptions[0]["entity"], fields),
                        case_sensitive=ctx.request.query_params.get(
                            "case_sensitive", "true").lower() != "false",
                        limit=ctx.max_param())


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
