"""Adding, changing and removing data centers, clusters and networks (the services decide)."""

from __future__ import annotations

from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import ApiContext
from overt.engine.api.inventory_readers import read_cluster, read_data_center, read_network
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.services import clusters, datacenters, networks

routes = ApiRoutes()


@routes.post("/datacenters")
async def add_data_center(ctx: ApiContext) -> Response:
    dc = await datacenters.add_data_center(
        ctx.session, read_data_center(await ctx.body("data_center")), ctx.user)
    return ctx.render("data_center", views.data_center(dc), status=201)


@routes.put("/datacenters/{dc_id}")
async def update_data_center(ctx: ApiContext) -> Response:
    dc = await datacenters.update_data_center(
        ctx.session, ctx.id_param("dc_id"), read_data_center(await ctx.body("data_center")),
        ctx.user)
    return ctx.render("data_center", views.data_center(dc))


@routes.delete("/datacenters/{dc_id}")
async def remove_data_center(ctx: ApiContext) -> Response:
    await datacenters.remove_data_center(ctx.session, ctx.id_param("dc_id"), ctx.user)
    return action_done(ctx)


@routes.post("/clusters")
async def add_cluster(ctx: ApiContext) -> Response:
    cluster = await clusters.add_cluster(
        ctx.session, read_cluster(await ctx.body("cluster")), ctx.user)
    return ctx.render("cluster", views.cluster(cluster), status=201)


@routes.put("/clusters/{cluster_id}")
async def update_cluster(ctx: ApiContext) -> Response:
    cluster = await clusters.update_cluster(
        ctx.session, ctx.id_param("cluster_id"), read_cluster(await ctx.body("cluster")),
        ctx.user)
    return ctx.render("cluster", views.cluster(cluster))


@routes.delete("/clusters/{cluster_id}")
async def remove_cluster(ctx: ApiContext) -> Response:
    await clusters.remove_cluster(ctx.session, ctx.id_param("cluster_id"), ctx.user)
    return action_done(ctx)


@routes.post("/networks")
async def add_network(ctx: ApiContext) -> Response:
    network = await networks.add_network(
        ctx.session, read_network(await ctx.body("network")), ctx.user)
    return ctx.render("network", views.network(network), status=201)


@routes.put("/networks/{network_id}")
async def update_network(ctx: ApiContext) -> Response:
    network = await networks.update_network(
        ctx.session, ctx.id_param("network_id"), read_network(await ctx.body("network")),
        ctx.user)
    return ctx.render("network", views.network(network))


@routes.delete("/networks/{network_id}")
async def remove_network(ctx: ApiContext) -> Response:
    await networks.remove_network(ctx.session, ctx.id_param("network_id"), ctx.user)
    return action_done(ctx)
