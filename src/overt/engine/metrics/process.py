"""What one API process knows about itself: its request latency, its resources, its build.

Kept per process, as Prometheus expects: with several `api` processes, each is a
scrape target of its own (their fleet figures agree, they come from the database).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import Gauge, Histogram, Info, PlatformCollector, ProcessCollector
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from overt import __version__

# API calls range from a cached lookup (ms) to a listing of thousands of VMs (s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
UNMATCHED = "unmatched"  # any path no route serves: one series, whatever clients ask for


class ProcessMetrics:
    """The collectors of this process; `collectors` go into every scrape."""

    def __init__(self, *, instance_id: uuid.UUID, database: str) -> None:
        self.latency = Histogram(
            "overt_api_request_duration_seconds", "Time to answer an API or portal request, "
            "by route template, method and status code.", ["route", "method", "status"],
            buckets=LATENCY_BUCKETS, registry=None)
        self.fleet_read_seconds = Gauge(
            "overt_metrics_fleet_read_seconds", "Time this scrape spent reading the fleet's "
            "figures from the database.", registry=None)
        info = Info("overt_engine", "The engine process: version, instance, database kind.",
                    registry=None)
        info.info({"version": __version__, "instance": str(instance_id), "database": database})
        self.collectors: list[Collector] = [
            self.latency, self.fleet_read_seconds, info, ProcessCollector(registry=None),
            PlatformCollector(registry=None)]

    def __iter__(self) -> Iterator[Collector]:
        return iter(self.collectors)


class RequestLatency:
    """ASGI middleware timing each HTTP request under its route's template
    (`/ovirt-engine/api/vms/{vm_id}`), never its raw path, so series stay few.

    `templates` maps a route's endpoint (which the router puts in the scope) to its path,
    and a mount's path (the root path it gives its requests) to `{path}/{{path}}`."""

    def __init__(self, app: ASGIApp, *, metrics: ProcessMetrics,
                 templates: Mapping[object, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        answered = False

        def observe(status: int) -> None:
            route = self.templates.get(scope.get("root_path") or None) \
                or self.templates.get(scope.get("endpoint"), UNMATCHED)
            self.metrics.latency.labels(route, scope["method"], str(status)).observe(
                time.perf_counter() - start)

        async def timed_send(message: Message) -> None:
            # Timed to the response's start: a streamed answer (the portal's live updates)
            # counts the wait for its first byte, not how long the client keeps it open.
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            if not answered:
                observe(500)  # what the client sees when the app fails before answering


def route_templates(routes: Iterable[BaseRoute]) -> dict[object, str]:
    """What RequestLatency labels requests with, for the application's routes."""
    templates: dict[object, str] = {}
    for route in routes:
        if isinstance(route, Route):
            templates[route.endpoint] = route.path
        elif isinstance(route, Mount):
            templates[route.path] = route.path + "/{path}"
    return templates
