"""Request latency is labelled by route template, never by the raw path a client sends."""

from __future__ import annotations

import uuid

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from overt.engine.metrics.process import ProcessMetrics, RequestLatency, route_templates


async def item(request: Request) -> Response:
    return PlainTextResponse(request.path_params["item_id"])


async def boom(request: Request) -> Response:
    raise RuntimeError("the handler failed")


async def _counts() -> dict[tuple[str, str, str], float]:
    files = PlainTextResponse("a static file")  # an ASGI app of its own, as StaticFiles
    routes: list[BaseRoute] = [Route("/items/{item_id}", item), Route("/boom", boom),
                               Mount("/static", app=files)]
    metrics = ProcessMetrics(instance_id=uuid.uuid4(), database="sqlite")
    app = Starlette(routes=routes, middleware=[
        Middleware(RequestLatency, metrics=metrics, templates=route_templates(routes))])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://engine") as client:
        for path in ("/items/1", "/items/2", "/static/app.js", "/nothing/here", "/boom"):
            await client.get(path)
        await client.post("/items/3")
    counts = {(s.labels["route"], s.labels["method"], s.labels["status"]): s.value
              for family in metrics.latency.collect() for s in family.samples
              if s.name.endswith("_count")}
    return counts


async def test_requests_are_counted_under_their_route_template() -> None:
    assert await _counts() == {("/items/{item_id}", "GET", "200"): 2,
                      ("/items/{item_id}", "POST", "405"): 1,
                      ("/static/{path}", "GET", "200"): 1,
                      ("unmatched", "GET", "404"): 1,
                      ("/boom", "GET", "500"): 1}
