"""The API's ASGI application: SSO, the v4 API, the CA resource, faults for everything else."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from overt.engine.api import metrics, sso
from overt.engine.api.auth import BasicAuthCache
from overt.engine.api.bodied_reads import CloseAfterBodiedReads
from overt.engine.api.faults import error_response, fault_response
from overt.engine.api.limits import BodyLimit, BodyTooLarge
from overt.engine.api.resources import (
    activity,
    affinity_groups,
    cdroms,
    consoles,
    host_networks,
    host_nics,
    host_storage,
    hosts,
    identity,
    image_transfers,
    instance_types,
    inventory,
    inventory_edits,
    networking,
    notifications,
    power_management,
    provisioning,
    root,
    snapshots,
    statistics,
    storage,
    storage_connections,
    tags,
    templates,
    vm_devices,
    vms,
)
from overt.engine.api.routing import ApiRoutes
from overt.engine.db.availability import RETRY_AFTER_S, database_unavailable
from overt.engine.db.database import Database
from overt.engine.identity.directories import Directories
from overt.engine.identity.kerberos import KerberosAcceptor
from overt.engine.identity.password_policy import PasswordPolicy
from overt.engine.identity.signin import SignInGuard, SignInPolicy
from overt.engine.metrics.process import ProcessMetrics, RequestLatency, route_templates
from overt.engine.provisioning.images import NodeImages
from overt.engine.secrets import SecretBox
from overt.engine.services.image_transfers import ImageTransfers
from overt.engine.services.jobs import JobSubmitter


@dataclass
class ApiServices:
    """What API handlers use besides their database session."""

    jobs: JobSubmitter
    ca_certificate: Path
    # The engine's secret box: seals and opens fence agents', CHAP, notifiers' and
    # cloud-init passwords.
    secrets: SecretBox
    instance_id: uuid.UUID = field(default_factory=uuid.uuid4)
    monitor_wakeup: Callable[[], None] = lambda: None
    directories: Directories = field(default_factory=Directories)
    kerberos: KerberosAcceptor | None = None
    # Fully managed mode: deletes a removed host's broker account (after the commit).
    revoke_node_account: Callable[[uuid.UUID], Awaitable[None]] | None = None
    metrics_token: str | None = None  # admits a Prometheus scrape of /metrics
    password_policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    signin_policy: SignInPolicy = field(default_factory=SignInPolicy)
    image_transfers: ImageTransfers | None = None  # disk uploads and downloads (imageio)
    node_images: NodeImages = field(default_factory=lambda: NodeImages(None))


def api_routes() -> ApiRoutes:
    routes = ApiRoutes()
    for module in (root, vms, hosts, host_nics, inventory, inventory_edits, storage, activity,
                   statistics, vm_devices, consoles, tags, networking, host_networks,
                   identity, power_management, snapshots, templates, affinity_groups,
                   notifications, image_transfers, cdroms, instance_types,
                   storage_connections, provisioning, host_storage):
        routes.include(module.routes)
    return routes


async def pki_resource(request: Request) -> Response:
    """The engine CA certificate, as oVirt serves it (no authentication needed)."""
    resource = request.query_params.get("resource")
    fmt = request.query_params.get("format", "X509-PEM-CA")
    if resource != "ca-certificate" or fmt not in ("X509-PEM-CA", "X509-PEM"):
        return Response("resource must be ca-certificate and format X509-PEM-CA or X509-PEM\n",
                        400, media_type="text/plain")
    services: ApiServices = request.app.state.services
    media = "application/x-x509-ca-cert" if fmt == "X509-PEM-CA" else "application/x-x509-cert"
    return Response(services.ca_certificate.read_bytes(), media_type=media)


async def ca_crt(request: Request) -> Response:
    """The engine CA at /ca.crt, where oVirt's engine also serves it and libgovirt (remote-viewer's
    ovirt:// client) fetches it."""
    services: ApiServices = request.app.state.services
    return Response(services.ca_certificate.read_bytes(), media_type="application/x-x509-ca-cert")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return fault_response(request, 404, "Not Found",
                              f"there is nothing at {request.url.path}")
    if exc.status_code == 405:
        return fault_response(request, 405, "Method Not Allowed",
                              f"{request.method} is not allowed on {request.url.path}")
    return fault_response(request, exc.status_code, "Bad Request", str(exc.detail))


async def _too_large(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BodyTooLarge)
    response = fault_response(request, exc.status, exc.reason, exc.detail)
    response.headers["Connection"] = "close"
    return response


async def _database_error(request: Request, exc: Exception) -> Response:
    """A database error outside the API's dispatcher (sign-in, the portal's pages); sign-in
    answers in OAuth's words (RFC 6749: temporarily_unavailable)."""
    if request.url.path.startswith("/ovirt-engine/sso/") and database_unavailable(exc):
        return Response(json.dumps({"error_code": "temporarily_unavailable",
                                    "error": "the engine's database is unavailable for the "
                                             "moment; try again in a few seconds"}),
                        503, media_type="application/json",
                        headers={"Retry-After": str(RETRY_AFTER_S)})
    return error_response(request, exc)


class CollapseSlashes:
    """`https://engine/ovirt-engine/api/` + `/vms` gives `//vms` in SDK URLs: serve it anyway
    (the SDK follows no redirects)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and "//" in scope["path"]:
            path = re.sub("/{2,}", "/", scope["path"])
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


def build_api_app(db: Database, services: ApiServices,
                  extra_routes: list[BaseRoute] | None = None) -> Starlette:
    routes: list[BaseRoute] = [*sso.ROUTES, *api_routes().starlette_routes(),
                               Route("/ovirt-engine/services/pki-resource", pki_resource),
                               Route("/ca.crt", ca_crt), *metrics.ROUTES,
                               *(extra_routes or [])]
    process_metrics = ProcessMetrics(instance_id=services.instance_id,
                                     database="sqlite" if db.is_sqlite else "postgresql")
    # RequestLatency comes last: it reads the route the router puts in its scope.
    app = Starlette(routes=routes,
                    exception_handlers={HTTPException: _http_error, BodyTooLarge: _too_large,
                                        DBAPIError: _database_error},
                    middleware=[Middleware(CollapseSlashes), Middleware(CloseAfterBodiedReads),
                                Middleware(BodyLimit),
                                Middleware(RequestLatency, metrics=process_metrics,
                                           templates=route_templates(routes))])
    app.state.process_metrics = process_metrics
    app.state.db = db
    app.state.services = services
    app.state.basic_auth_cache = BasicAuthCache()
    app.state.signin_guard = SignInGuard(services.signin_policy,
                                         passwords=services.password_policy)
    app.state.directories = services.directories
    return app
