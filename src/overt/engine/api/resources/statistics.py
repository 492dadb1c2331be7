"""/vms/ID/statistics and /hosts/ID/statistics (oVirt), and their history (Overt's extension).

`GET .../statistics` gives the current values in oVirt's `statistic` shape;
`GET .../statistics/history?from=-3600&resolution=60` gives time series from the
stats the monitor keeps (raw for an hour, then 1-minute and 10-minute averages).
"""

from __future__ import annotations

import uuid

from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Host, Vm, utcnow
from overt.engine.model.errors import InvalidInput, NotFound
from overt.engine.queries import lookup
from overt.engine.services import stats
from overt.engine.services.stats import History, Statistic, Subject

routes = ApiRoutes()
_COLLECTION: dict[Subject, str] = {"vm": "vms", "host": "hosts"}


def statistic_view(subject: Subject, subject_id: uuid.UUID, stat: Statistic) -> Representation:
    stat_id = stats.statistic_id(subject_id, stat.name)
    collection = _COLLECTION[subject]
    datum = stat.value if stat.type == "decimal" else int(stat.value)
    return {
        "href": href(collection, subject_id, "statistics", stat_id), "id": str(stat_id),
        "name": stat.name, "description": stat.description, "kind": stat.kind,
        "type": stat.type, "unit": stat.unit, "values": {"value": [{"datum": datum}]},
        subject: ref(collection, subject_id),
    }


async def _current(ctx: ApiContext, subject: Subject, subject_id: uuid.UUID) -> list[Statistic]:
    if subject == "vm":
        return stats.vm_statistics(await lookup.get(ctx.session, Vm, subject_id))
    host = await lookup.get(ctx.session, Host, subject_id)
    sample = await stats.latest_sample(ctx.session, host.id)
    return stats.host_statistics(host, memory_used_mib=sample.memory_used_mib if sample else None)


async def _list(ctx: ApiContext, subject: Subject, subject_id: uuid.UUID) -> Response:
    current = await _current(ctx, subject, subject_id)
    return ctx.render_list("statistics", "statistic",
                           [statistic_view(subject, subject_id, s) for s in current])


async def _one(ctx: ApiContext, subject: Subject, subject_id: uuid.UUID) -> Response:
    wanted = ctx.id_param("statistic_id")
    for stat in await _current(ctx, subject, subject_id):
        if stats.statistic_id(subject_id, stat.name) == wanted:
            return ctx.render("statistic", statistic_view(subject, subject_id, stat))
    raise NotFound(f"there is no statistic with id {wanted}")


def history_view(found: History) -> Representation:
    return {
        "from": found.since, "to": found.until, "resolution": found.resolution_s,
        "point": [{"time": p.time, "cpu_percent": p.cpu_percent,
                   "memory_used": p.memory_used_bytes, "memory_total": p.memory_total_bytes,
                   "network_rx_bps": p.net_rx_bps, "network_tx_bps": p.net_tx_bps}
                  for p in found.points],
        found.subject_type: ref(_COLLECTION[found.subject_type], found.subject_id),
    }


async def _history(ctx: ApiContext, subject: Subject, subject_id: uuid.UUID) -> Response:
    await lookup.get(ctx.session, Vm if subject == "vm" else Host, subject_id)
    query = ctx.request.query_params
    now = utcnow()
    since = stats.parse_since(query.get("from"), now)
    until = stats.parse_since(query["to"], now) if query.get("to") else now
    raw = query.get("resolution")
    try:
        resolution = int(raw) if raw not in (None, "") else None
    except ValueError:
        raise InvalidInput(f"resolution must be a number of seconds, not {raw!r}") from None
    found = await stats.history(ctx.session, subject, subject_id, since=since, until=until,
                                resolution_s=resolution)
    return ctx.render("statistics_history", history_view(found))


@routes.get("/vms/{vm_id}/statistics")
async def vm_statistics(ctx: ApiContext) -> Response:
    return await _list(ctx, "vm", ctx.id_param("vm_id"))


@routes.get("/vms/{vm_id}/statistics/history")
async def vm_history(ctx: ApiContext) -> Response:
    return await _history(ctx, "vm", ctx.id_param("vm_id"))


@routes.get("/vms/{vm_id}/statistics/{statistic_id}")
async def vm_statistic(ctx: ApiContext) -> Response:
    return await _one(ctx, "vm", ctx.id_param("vm_id"))


@routes.get("/hosts/{host_id}/statistics")
async def host_statistics(ctx: ApiContext) -> Response:
    return await _list(ctx, "host", ctx.id_param("host_id"))


@routes.get("/hosts/{host_id}/statistics/history")
async def host_history(ctx: ApiContext) -> Response:
    return await _history(ctx, "host", ctx.id_param("host_id"))


@routes.get("/hosts/{host_id}/statistics/{statistic_id}")
async def host_statistic(ctx: ApiContext) -> Response:
    return await _one(ctx, "host", ctx.id_param("host_id"))
