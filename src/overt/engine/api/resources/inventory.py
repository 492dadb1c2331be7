"""Reading data centers, clusters, networks, vNIC profiles, templates and users.

Changes to data centers, clusters and networks are in `inventory_edits`."""

from __future__ import annotations

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import ApiContext
from overt.engine.api.resources.common import list_rows
from overt.engine.api.resources.storage import domain_views
from overt.engine.api.routing import ApiRoutes
from overt.engine.db.tables import (
    Cluster,
    DataCenter,
    Disk,
    DiskAttachment,
    Network,
    StorageDomain,
    Template,
    User,
    VnicProfile,
)
from overt.engine.identity.visibility import users_condition, visible_user
from overt.engine.queries import lookup
from overt.engine.services import macpools

routes = ApiRoutes()


# -- data centers ------------------------------------------------------------------

@routes.get("/datacenters")
async def list_data_centers(ctx: ApiContext) -> Response:
    stmt = select(DataCenter).outerjoin(Cluster, Cluster.data_center_id == DataCenter.id) \
        .distinct().order_by(DataCenter.name)
    rows = await list_rows(ctx, stmt, {"name": DataCenter.name, "status": DataCenter.status,
                                       "clusters.name": Cluster.name, "cluster": Cluster.name})
    return ctx.render_list("data_centers", "data_center", [views.data_center(r) for r in rows])


@routes.get("/datacenters/{dc_id}")
async def get_data_center(ctx: ApiContext) -> Response:
    dc = await lookup.get(ctx.session, DataCenter, ctx.id_param("dc_id"))
    return ctx.render("data_center", views.data_center(dc))


@routes.get("/datacenters/{dc_id}/clusters")
async def dc_clusters(ctx: ApiContext) -> Response:
    dc_id = (await lookup.get(ctx.session, DataCenter, ctx.id_param("dc_id"))).id
    rows = await list_rows(ctx, select(Cluster).where(Cluster.data_center_id == dc_id)
                           .order_by(Cluster.name), {"name": Cluster.name})
    return ctx.render_list("clusters", "cluster", [views.cluster(r) for r in rows])


@routes.get("/datacenters/{dc_id}/networks")
async def dc_networks(ctx: ApiContext) -> Response:
    dc_id = (await lookup.get(ctx.session, DataCenter, ctx.id_param("dc_id"))).id
    rows = await list_rows(ctx, select(Network).where(Network.data_center_id == dc_id)
                           .order_by(Network.name), {"name": Network.name})
    return ctx.render_list("networks", "network", [views.network(r) for r in rows])


@routes.get("/datacenters/{dc_id}/storagedomains")
async def dc_storage_domains(ctx: ApiContext) -> Response:
    dc_id = (await lookup.get(ctx.session, DataCenter, ctx.id_param("dc_id"))).id
    rows = await list_rows(ctx, select(StorageDomain).where(StorageDomain.data_center_id == dc_id)
                           .order_by(StorageDomain.name), {"name": StorageDomain.name})
    return ctx.render_list("storage_domains", "storage_domain",
                           await domain_views(ctx.session, rows))


# -- clusters ----------------------------------------------------------------------------

@routes.get("/clusters")
async def list_clusters(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(Cluster).join(
        DataCenter, DataCenter.id == Cluster.data_center_id).order_by(Cluster.name),
        {"name": Cluster.name, "datacenter": DataCenter.name, "description": Cluster.description})
    return ctx.render_list("clusters", "cluster", [views.cluster(r) for r in rows])


@routes.get("/clusters/{cluster_id}")
async def get_cluster(ctx: ApiContext) -> Response:
    cluster = await lookup.get(ctx.session, Cluster, ctx.id_param("cluster_id"))
    pool = await macpools.pool_of_cluster(ctx.session, cluster.id)
    return ctx.render("cluster", views.cluster(cluster, mac_pool_id=pool.id))


# -- networks and vNIC profiles ------------------------------------------------------------

@routes.get("/networks")
async def list_networks(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(Network).order_by(Network.name),
                           {"name": Network.name, "vlan": Network.vlan_id})
    return ctx.render_list("networks", "network", [views.network(r) for r in rows])


@routes.get("/networks/{network_id}")
async def get_network(ctx: ApiContext) -> Response:
    network = await lookup.get(ctx.session, Network, ctx.id_param("network_id"))
    return ctx.render("network", views.network(network))


@routes.get("/networks/{network_id}/vnicprofiles")
async def network_profiles(ctx: ApiContext) -> Response:
    network = await lookup.get(ctx.session, Network, ctx.id_param("network_id"))
    rows = (await ctx.session.execute(select(VnicProfile).where(
        VnicProfile.network_id == network.id).order_by(VnicProfile.name))).scalars()
    return ctx.render_list("vnic_profiles", "vnic_profile", [views.vnic_profile(r) for r in rows])


@routes.get("/vnicprofiles")
async def list_profiles(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(VnicProfile).order_by(VnicProfile.name),
                           {"name": VnicProfile.name})
    return ctx.render_list("vnic_profiles", "vnic_profile", [views.vnic_profile(r) for r in rows])


@routes.get("/vnicprofiles/{profile_id}")
async def get_profile(ctx: ApiContext) -> Response:
    profile = await lookup.get(ctx.session, VnicProfile, ctx.id_param("profile_id"))
    return ctx.render("vnic_profile", views.vnic_profile(profile))


# -- templates --------------------------------------------------------------------------------

@routes.get("/templates")
async def list_templates(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(Template).order_by(Template.name),
                           {"name": Template.name, "status": Template.status})
    return ctx.render_list("templates", "template", [views.template(r) for r in rows])


@routes.get("/templates/{template_id}")
async def get_template(ctx: ApiContext) -> Response:
    template = await lookup.get(ctx.session, Template, ctx.id_param("template_id"))
    return ctx.render("template", views.template(template))


@routes.get("/templates/{template_id}/diskattachments")
async def template_disks(ctx: ApiContext) -> Response:
    template = await lookup.get(ctx.session, Template, ctx.id_param("template_id"))
    rows = await ctx.session.execute(
        select(DiskAttachment, Disk).join(Disk, Disk.id == DiskAttachment.disk_id)
        .where(DiskAttachment.template_id == template.id))
    return ctx.render_list("disk_attachments", "disk_attachment", [
        views.disk_attachment(a, owner="templates", inline_disk=d) for a, d in rows])


# -- users ----------------------------------------------------------------------------------

@routes.get("/users")
async def list_users(ctx: ApiContext) -> Response:
    """Every user for those who give permissions; anyone else sees only themselves."""
    rows = await list_rows(ctx, select(User).where(users_condition(ctx.access))
                           .order_by(User.user_name), {"name": User.user_name,
                                                       "usrname": User.user_name})
    return ctx.render_list("users", "user", [views.user(r) for r in rows])


@routes.get("/users/{user_id}")
async def get_user(ctx: ApiContext) -> Response:
    return ctx.render("user", views.user(await visible_user(ctx.session, ctx.access,
                                                            ctx.id_param("user_id"))))

