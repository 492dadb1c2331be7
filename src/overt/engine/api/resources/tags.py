"""/tags and /vms/{id}/tags: oVirt's tags, their tree under the root tag, and VM assignment."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.readers import ref_of
from overt.engine.api.resources.common import action_done, list_rows
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import ref
from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Tag
from overt.engine.model.errors import NotFound
from overt.engine.services import tags as tag_service
from overt.engine.services.tags import ROOT_TAG_ID, ROOT_TAG_NAME, TagInput

routes = ApiRoutes()


def tag_view(tag: Tag, *, base: str | None = None) -> Representation:
    own = base or href("tags", tag.id)
    return {"href": own, "id": str(tag.id), "name": tag.name, "description": tag.description,
            "parent": ref("tags", tag.parent_id or ROOT_TAG_ID)}


def root_tag_view() -> Representation:
    return {"href": href("tags", ROOT_TAG_ID), "id": str(ROOT_TAG_ID), "name": ROOT_TAG_NAME,
            "description": "root"}


def read_tag(node: Node) -> TagInput:
    return TagInput(name=node.get_str("name"), description=node.get_str("description"),
                    parent=ref_of(node.child("parent")))


@routes.get("/tags")
async def list_tags(ctx: ApiContext) -> Response:
    rows = await list_rows(ctx, select(Tag).order_by(Tag.name), {})
    return ctx.render_list("tags", "tag", [root_tag_view(), *(tag_view(t) for t in rows)])


@routes.post("/tags")
async def add_tag(ctx: ApiContext) -> Response:
    tag = await tag_service.add_tag(ctx.session, read_tag(await ctx.body("tag")), ctx.user)
    return ctx.render("tag", tag_view(tag), status=201)


@routes.get("/tags/{tag_id}")
async def get_tag(ctx: ApiContext) -> Response:
    tag_id = ctx.id_param("tag_id")
    if tag_id == ROOT_TAG_ID:
        return ctx.render("tag", root_tag_view())
    return ctx.render("tag", tag_view(await tag_service.get_tag(ctx.session, tag_id)))


@routes.put("/tags/{tag_id}")
async def update_tag(ctx: ApiContext) -> Response:
    tag = await tag_service.update_tag(ctx.session, _user_tag_id(ctx),
                                       read_tag(await ctx.body("tag")), ctx.user)
    return ctx.render("tag", tag_view(tag))


@routes.delete("/tags/{tag_id}")
async def remove_tag(ctx: ApiContext) -> Response:
    await tag_service.remove_tag(ctx.session, _user_tag_id(ctx), ctx.user)
    return action_done(ctx)


def _user_tag_id(ctx: ApiContext) -> uuid.UUID:
    tag_id = ctx.id_param("tag_id")
    if tag_id == ROOT_TAG_ID:
        raise NotFound("the root tag cannot be changed or removed")
    return tag_id


# -- VM assignments ------------------------------------------------------------------

def _vm_tag_view(ctx: ApiContext, tag: Tag) -> Representation:
    vm_id = ctx.path_params["vm_id"]
    rep = tag_view(tag, base=href("vms", vm_id, "tags", tag.id))
    rep["vm"] = ref("vms", ctx.id_param("vm_id"))
    return rep


@routes.get("/vms/{vm_id}/tags")
async def list_vm_tags(ctx: ApiContext) -> Response:
    tags = await tag_service.vm_tags(ctx.session, ctx.id_param("vm_id"))
    return ctx.render_list("tags", "tag", [_vm_tag_view(ctx, t) for t in tags])


@routes.post("/vms/{vm_id}/tags")
async def assign_vm_tag(ctx: ApiContext) -> Response:
    node = await ctx.body("tag")
    tag = await tag_service.assign_tag(ctx.session, ctx.id_param("vm_id"), ref_of(node),
                                       ctx.user)
    return ctx.render("tag", _vm_tag_view(ctx, tag), status=201)


@routes.get("/vms/{vm_id}/tags/{tag_id}")
async def get_vm_tag(ctx: ApiContext) -> Response:
    tag = await tag_service.vm_tag(ctx.session, ctx.id_param("vm_id"), ctx.id_param("tag_id"))
    return ctx.render("tag", _vm_tag_view(ctx, tag))


@routes.delete("/vms/{vm_id}/tags/{tag_id}")
async def unassign_vm_tag(ctx: ApiContext) -> Response:
    await tag_service.unassign_tag(ctx.session, ctx.id_param("vm_id"), ctx.id_param("tag_id"),
                                   ctx.user)
    return action_done(ctx)
