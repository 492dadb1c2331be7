"""What a resource handler gets: the request, a database session, the user, the format."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from overt.engine.api.wire.parse import Node, parse_body
from overt.engine.api.wire.render import Representation, to_json, to_xml
from overt.engine.db.tables import User
from overt.engine.identity.access import Access
from overt.engine.model.errors import InvalidInput, NotFound

API_PREFIX = "/ovirt-engine/api"


def href(*parts: object) -> str:
    """The absolute path of an API object, e.g. href("vms", vm_id, "nics")."""
    return "/".join([API_PREFIX, *(str(p) for p in parts)])


@dataclass
class ApiContext:
    request: Request
    session: AsyncSession
    user: User
    services: Any  # overt.engine.services.Services (typed loosely to avoid an import cycle)
    path_params: dict[str, str] = field(default_factory=dict)
    # Runs after the handler's transaction committed and answers instead of the handler
    # (for the few actions that wait for their job, e.g. console tickets).
    then: Callable[[], Awaitable[Response]] | None = None

    @property
    def access(self) -> Access:
        """What the caller may do (loaded by the dispatcher before the handler runs)."""
        access: Access = self.request.state.access
        return access

    @property
    def wants_json(self) -> bool:
        accept = self.request.headers.get("accept", "")
        return "json" in accept and "xml" not in accept

    @property
    def query(self) -> dict[str, str]:
        return dict(self.request.query_params)

    def follow(self) -> set[str]:
        """The `follow` parameter: linked objects to inline (e.g. nics, disk_attachments.disk)."""
        raw = self.request.query_params.get("follow", "")
        return {part.strip() for part in raw.split(",") if part.strip()}

    def id_param(self, name: str) -> uuid.UUID:
        raw = self.path_params[name]
        try:
            return uuid.UUID(raw)
        except ValueError:
            raise NotFound(f"there is no object with id {raw!r}") from None

    def max_param(self) -> int | None:
        raw = self.request.query_params.get("max")
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise InvalidInput(f"max must be an integer, not {raw!r}") from None
        return None if value < 0 else min(value, 2**31 - 1)

    def flag(self, name: str) -> bool:
        return self.request.query_params.get(name, "false").lower() == "true"

    def strict_flag(self, name: str) -> bool:
        """A boolean parameter that must say true or false (e.g. `all_content`): anything
        else is a fault rather than a silent false."""
        raw = self.request.query_params.get(name, "false")
        if raw.strip().lower() not in ("true", "false"):
            raise InvalidInput(f"{name} must be true or false, not {raw!r}")
        return raw.strip().lower() == "true"

    async def body(self, root: str) -> Node:
        data = await self.request.body()
        return parse_body(data, self.request.headers.get("content-type", ""), root)

    def render(self, root: str, rep: Representation, status: int = 200) -> Response:
        if self.wants_json:
            return Response(to_json(rep), status, media_type="application/json")
        return Response(to_xml(root, rep), status, media_type="application/xml")

    def render_list(self, root: str, item: str, reps: list[Representation]) -> Response:
        if self.wants_json:
            return Response(to_json({item: reps}), media_type="application/json")
        return Response(to_xml(root, {item: reps}), media_type="application/xml")
