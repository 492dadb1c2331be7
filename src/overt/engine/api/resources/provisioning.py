"""/provisioningprofiles (Overt's): which node image a machine booting from a
provisioning network gets, by MAC or by default, and the cluster it joins."""

from __future__ import annotations

from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.readers import ref_of
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import ProvisioningProfile
from overt.engine.model.errors import InvalidInput
from overt.engine.queries.lookup import Ref
from overt.engine.services import provisioning as service
from overt.engine.services.provisioning import ProfileInput

routes = ApiRoutes()


def profile_view(row: ProvisioningProfile) -> Representation:
    return {"href": href("provisioningprofiles", row.id), "id": str(row.id), "name": row.name,
            "mac": {"address": row.mac} if row.mac else None, "default": row.mac is None,
            "image": row.image, "kernel_args": row.kernel_args or None,
            "cluster": ref("clusters", row.cluster_id) if row.cluster_id else None}


def _input(node: Node) -> ProfileInput:
    mac = node.child("mac")
    cluster = _cluster(node.child("cluster"))
    return ProfileInput(name=node.get_str("name"),
                        mac=(mac.get_str("address") or "") if mac is not None else None,
                        image=node.get_str("image"), kernel_args=node.get_str("kernel_args"),
                        cluster=cluster, clear_cluster=node.has("cluster") and cluster is None)


def _cluster(node: Node | None) -> Ref | None:
    """The profile's cluster: a reference by id or name; an empty one (`<cluster/>`, JSON
    `"cluster": {}` or `null`) clears it, as an empty `<network_filter/>` does a vNIC
    profile's. Anything else in it is refused, not taken for empty."""
    found = ref_of(node)
    if node is None or found is None or found.id is not None or found.name is not None:
        return found
    if node.text or node.children or set(node.attrs) - {"href"}:
        raise InvalidInput("provisioning_profile.cluster must be a cluster's id or name, or "
                           "empty (<cluster/>) to clear it")
    return None


@routes.get("/provisioningprofiles")
async def list_profiles(ctx: ApiContext) -> Response:
    rows = await service.profiles(ctx.session)
    return ctx.render_list("provisioning_profiles", "provisioning_profile",
                           [profile_view(r) for r in rows])


@routes.post("/provisioningprofiles")
async def add_profile(ctx: ApiContext) -> Response:
    node = await ctx.body("provisioning_profile")
    row = await service.add_profile(ctx.session, ctx.services.node_images, _input(node),
                                    ctx.user)
    return ctx.render("provisioning_profile", profile_view(row), status=201)


@routes.get("/provisioningprofiles/{profile_id}")
async def get_profile(ctx: ApiContext) -> Response:
    return ctx.render("provisioning_profile", profile_view(
        await service.get_profile(ctx.session, ctx.id_param("profile_id"))))


@routes.put("/provisioningprofiles/{profile_id}")
async def update_profile(ctx: ApiContext) -> Response:
    node = await ctx.body("provisioning_profile")
    row = await service.update_profile(ctx.session, ctx.services.node_images,
                                       ctx.id_param("profile_id"), _input(node), ctx.user)
    return ctx.render("provisioning_profile", profile_view(row))


@routes.delete("/provisioningprofiles/{profile_id}")
async def remove_profile(ctx: ApiContext) -> Response:
    await service.remove_profile(ctx.session, ctx.id_param("profile_id"), ctx.user)
    return action_done(ctx)
