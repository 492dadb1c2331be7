"""MAC pools, network filters, vNIC profile edits and the networks of a cluster."""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import ApiContext, href
from overt.engine.api.network_readers import read_mac_pool, read_vnic_profile
from overt.engine.api.readers import ref_of
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.wire.render import Representation
from overt.engine.db.seed import ensure_default_mac_pool
from overt.engine.db.tables import Cluster, MacPool, Network
from overt.engine.model.errors import NotFound
from overt.engine.queries import lookup
from overt.engine.services import cluster_networks, macpools, vnic_profiles

routes = ApiRoutes()


def mac_pool_view(pool: MacPool) -> Representation:
    base = href("macpools", pool.id)
    return {
        "href": base, "id": str(pool.id), "name": pool.name, "description": pool.description,
        "link": views.links(base, "permissions"),
        "allow_duplicates": pool.allow_duplicates, "default_pool": pool.default_pool,
        "ranges": {"range": [{"from": lo, "to": hi} for lo, hi in pool.ranges]},
    }


def network_filter_view(name: str) -> Representation:
    fid = vnic_profiles.filter_id(name)
    return {"href": href("networkfilters", fid), "id": str(fid), "name": name,
            "version": {"major": 4, "minor": 0, "build": -1, "revision": -1}}


# -- MAC pools ---------------------------------------------------------------------------

@routes.get("/macpools")
async def list_mac_pools(ctx: ApiContext) -> Response:
    await ensure_default_mac_pool(ctx.session)
    rows = (await ctx.session.execute(select(MacPool).order_by(MacPool.name))).scalars()
    return ctx.render_list("mac_pools", "mac_pool", [mac_pool_view(p) for p in rows])


@routes.get("/macpools/{pool_id}")
async def get_mac_pool(ctx: ApiContext) -> Response:
    await ensure_default_mac_pool(ctx.session)
    pool = await lookup.get(ctx.session, MacPool, ctx.id_param("pool_id"))
    return ctx.render("mac_pool", mac_pool_view(pool))


@routes.post("/macpools")
async def add_mac_pool(ctx: ApiContext) -> Response:
    pool = await macpools.add_pool(ctx.session, read_mac_pool(await ctx.body("mac_pool")),
                                   ctx.user)
    return ctx.render("mac_pool", mac_pool_view(pool), status=201)


@routes.put("/macpools/{pool_id}")
async def update_mac_pool(ctx: ApiContext) -> Response:
    pool = await macpools.update_pool(ctx.session, ctx.id_param("pool_id"),
                                      read_mac_pool(await ctx.body("mac_pool")), ctx.user)
    return ctx.render("mac_pool", mac_pool_view(pool))


@routes.delete("/macpools/{pool_id}")
async def remove_mac_pool(ctx: ApiContext) -> Response:
    await macpools.remove_pool(ctx.session, ctx.id_param("pool_id"), ctx.user)
    return action_done(ctx)


# -- network filters ---------------------------------------------------------------------

@routes.get("/networkfilters")
async def list_network_filters(ctx: ApiContext) -> Response:
    return ctx.render_list("network_filters", "network_filter",
                           [network_filter_view(n) for n in vnic_profiles.NETWORK_FILTERS])


@routes.get("/networkfilters/{filter_id}")
async def get_network_filter(ctx: ApiContext) -> Response:
    fid = ctx.id_param("filter_id")
    for name in vnic_profiles.NETWORK_FILTERS:
        if vnic_profiles.filter_id(name) == fid:
            return ctx.render("network_filter", network_filter_view(name))
    raise NotFound(f"there is no network filter with id {fid}")


# -- vNIC profiles -----------------------------------------------------------------------

@routes.post("/vnicprofiles")
async def add_profile(ctx: ApiContext) -> Response:
    profile = await vnic_profiles.add_profile(
        ctx.session, read_vnic_profile(await ctx.body("vnic_profile")), ctx.user)
    return ctx.render("vnic_profile", views.vnic_profile(profile), status=201)


@routes.post("/networks/{network_id}/vnicprofiles")
async def add_network_profile(ctx: ApiContext) -> Response:
    network = await lookup.get(ctx.session, Network, ctx.id_param("network_id"))
    profile = await vnic_profiles.add_profile(
        ctx.session, read_vnic_profile(await ctx.body("vnic_profile")), ctx.user,
        network=network)
    return ctx.render("vnic_profile", views.vnic_profile(profile), status=201)


@routes.put("/vnicprofiles/{profile_id}")
async def update_profile(ctx: ApiContext) -> Response:
    profile = await vnic_profiles.update_profile(
        ctx.session, ctx.id_param("profile_id"),
        read_vnic_profile(await ctx.body("vnic_profile")), ctx.user)
    return ctx.render("vnic_profile", views.vnic_profile(profile))


@routes.delete("/vnicprofiles/{profile_id}")
async def remove_profile(ctx: ApiContext) -> Response:
    await vnic_profiles.remove_profile(ctx.session, ctx.id_param("profile_id"), ctx.user)
    return action_done(ctx)


# -- networks of a cluster ---------------------------------------------------------------

def _cluster_network(cluster: Cluster, item: cluster_networks.Attached) -> Representation:
    return views.network(item.network, cluster_id=cluster.id, required=item.required)


@routes.get("/clusters/{cluster_id}/networks")
async def list_cluster_networks(ctx: ApiContext) -> Response:
    cluster = await lookup.get(ctx.session, Cluster, ctx.id_param("cluster_id"))
    return ctx.render_list("networks", "network", [
        _cluster_network(cluster, item)
        for item in await cluster_networks.list_attached(ctx.session, cluster)])


@routes.get("/clusters/{cluster_id}/networks/{network_id}")
async def get_cluster_network(ctx: ApiContext) -> Response:
    cluster = await lookup.get(ctx.session, Cluster, ctx.id_param("cluster_id"))
    item = await cluster_networks.get_attached(ctx.session, cluster, ctx.id_param("network_id"))
    return ctx.render("network", _cluster_network(cluster, item))


@routes.post("/clusters/{cluster_id}/networks")
async def attach_cluster_network(ctx: ApiContext) -> Response:
    cluster = await lookup.get(ctx.session, Cluster, ctx.id_param("cluster_id"))
    body = await ctx.body("network")
    item = await cluster_networks.attach(ctx.session, cluster, ref_of(body),
                                         body.get_bool("required"), ctx.user)
    return ctx.render("network", _cluster_network(cluster, item), status=201)


@routes.put("/clusters/{cluster_id}/networks/{network_id}")
async def update_cluster_network(ctx: ApiContext) -> Response:
    cluster = await lookup.get(ctx.session, Cluster, ctx.id_param("cluster_id"))
    body = await ctx.body("network")
    item = await cluster_networks.update(ctx.session, cluster, ctx.id_param("network_id"),
                                         body.get_bool("required"))
    return ctx.render("network", _cluster_network(cluster, item))


@routes.delete("/clusters/{cluster_id}/networks/{network_id}")
async def detach_cluster_network(ctx: ApiContext) -> Response:
    cluster = await lookup.get(ctx.session, Cluster, ctx.id_param("cluster_id"))
    await cluster_networks.detach(ctx.session, cluster, ctx.id_param("network_id"), ctx.user)
    return action_done(ctx)
