"""Graph data for the portal: a host's or VM's stats history as columns for uPlot.

The same service function serves the API's statistics/history extension.
"""

from __future__ import annotations

import datetime as dt

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import Host, Vm, utcnow
from overt.engine.queries import lookup
from overt.engine.services import stats
from overt.engine.services.stats import Subject
from overt.engine.web.context import WebContext, page

RANGES = {"3600": dt.timedelta(hours=1), "86400": dt.timedelta(days=1),
          "604800": dt.timedelta(days=7)}


async def _history(ctx: WebContext, subject: Subject) -> Response:
    subject_id = ctx.id_param("subject_id")
    await lookup.get(ctx.session, Vm if subject == "vm" else Host, subject_id)
    span = RANGES.get(ctx.request.query_params.get("range", "3600"), RANGES["3600"])
    now = utcnow()
    # The last hour as sampled (each new sample a new point); longer ranges averaged.
    found = await stats.history(ctx.session, subject, subject_id, since=now - span, until=now)
    points = found.points
    return JSONResponse({
        "resolution": found.resolution_s,
        "time": [p.time.timestamp() for p in points],
        "cpu": [p.cpu_percent for p in points],
        "memory_used_mib": [p.memory_used_bytes // stats.MIB for p in points],
        "memory_total_mib": [p.memory_total_bytes // stats.MIB for p in points],
        "rx": [p.net_rx_bps for p in points],
        "tx": [p.net_tx_bps for p in points],
    }, headers={"Cache-Control": "no-store"})


@page
async def vm_history(ctx: WebContext) -> Response:
    return await _history(ctx, "vm")


@page
async def host_history(ctx: WebContext) -> Response:
    return await _history(ctx, "host")


ROUTES = [
    Route("/graphs/vms/{subject_id}", vm_history),
    Route("/graphs/hosts/{subject_id}", host_history),
]
