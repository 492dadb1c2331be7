"""/instancetypes: oVirt's named VM hardware (memory, CPU topology)."""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import MIB
from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import InstanceType
from overt.engine.queries import lookup
from overt.engine.services import instance_types as service

routes = ApiRoutes()


def instance_type_view(kind: InstanceType) -> Representation:
    return {
        "href": href("instancetypes", kind.id), "id": str(kind.id), "name": kind.name,
        "description": kind.description, "memory": kind.memory_mib * MIB,
        "cpu": {"architecture": "x86_64", "topology": {
            "cores": kind.cpu_cores, "sockets": kind.cpu_sockets, "threads": kind.cpu_threads}},
        "creation_time": kind.created_at,
    }


def read_instance_type(node: Node) -> service.InstanceTypeInput:
    cpu = node.child("cpu")
    topology = cpu.child("topology") if cpu is not None else None
    return service.InstanceTypeInput(
        name=node.get_str("name"), description=node.get_str("description"),
        memory_bytes=node.get_int("memory"),
        sockets=topology.get_int("sockets") if topology is not None else None,
        cores=topology.get_int("cores") if topology is not None else None,
        threads=topology.get_int("threads") if topology is not None else None)


@routes.get("/instancetypes")
async def list_instance_types(ctx: ApiContext) -> Response:
    kinds = (await ctx.session.execute(select(InstanceType).order_by(InstanceType.name)))
    return ctx.render_list("instance_types", "instance_type",
                           [instance_type_view(k) for k in kinds.scalars()])


@routes.get("/instancetypes/{kind_id}")
async def get_instance_type(ctx: ApiContext) -> Response:
    kind = await lookup.get(ctx.session, InstanceType, ctx.id_param("kind_id"))
    return ctx.render("instance_type", instance_type_view(kind))


@routes.post("/instancetypes")
async def add_instance_type(ctx: ApiContext) -> Response:
    kind = await service.add_instance_type(
        ctx.session, read_instance_type(await ctx.body("instance_type")), ctx.user)
    return ctx.render("instance_type", instance_type_view(kind), status=201)


@routes.put("/instancetypes/{kind_id}")
async def update_instance_type(ctx: ApiContext) -> Response:
    kind = await service.update_instance_type(
        ctx.session, ctx.id_param("kind_id"),
        read_instance_type(await ctx.body("instance_type")), ctx.user)
    return ctx.render("instance_type", instance_type_view(kind))


@routes.delete("/instancetypes/{kind_id}")
async def remove_instance_type(ctx: ApiContext) -> Response:
    await service.remove_instance_type(ctx.session, ctx.id_param("kind_id"), ctx.user)
    return action_done(ctx)
