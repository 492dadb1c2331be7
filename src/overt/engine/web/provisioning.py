"""The portal's provisioning profiles: which node image a machine booting from a
provisioning network gets (by its MAC, or the default profile), with what kernel
arguments, and the cluster it joins. New, Edit and Remove go through the same service
functions as the API's /provisioningprofiles, by the portal's one form mechanism
(`inventory.Kind`); a refusal is shown on the form."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import Response
from starlette.routing import Route

from overt.engine.db.tables import Cluster, ProvisioningProfile
from overt.engine.model.errors import InvalidInput
from overt.engine.provisioning.images import NodeImages
from overt.engine.queries.lookup import Ref
from overt.engine.services import provisioning as service
from overt.engine.services.provisioning import ProfileInput
from overt.engine.web.context import WebContext, page
from overt.engine.web.inventory import FormScope, Kind, Values, form_routes, text
from overt.engine.web.inventory_fields import FormField

PATH = "/provisioningprofiles"
NAV = "provisioning"
EMPTY: Values = {"name": "", "mac": "", "image": "", "kernel_args": "", "cluster": ""}


def fields(clusters: list[Cluster], images: list[str]) -> list[FormField]:
    return [
        FormField("name", "Name", required=True,
                  help="1-64 letters, digits, '.', '_' or '-'.",
                  attrs={"maxlength": "64", "pattern": r"[A-Za-z0-9][A-Za-z0-9._\-]*"}),
        FormField("mac", "MAC address",
                  help="The machine's boot MAC (aa:bb:cc:dd:ee:ff); empty: the default "
                  "profile, for every machine without a profile of its own.",
                  attrs={"maxlength": "17"}),
        FormField("image", "Node image", required=True,
                  help="A node image this engine serves (`overt node-image build`): "
                  + (", ".join(images) if images else "it has none yet") + ".",
                  options=[(name, name) for name in images]),
        FormField("kernel_args", "Kernel arguments", help="Added to the image's own; one line.",
                  attrs={"maxlength": "1024"}),
        FormField("cluster", "Cluster", kind="select",
                  options=[("", "Default (chosen by the engine)"),
                           *((str(c.id), c.name) for c in clusters)]),
    ]


async def _fields(scope: FormScope) -> list[FormField]:
    """The form's fields: the clusters to choose from, the node images the engine serves."""
    clusters = list((await scope.session.execute(select(Cluster).order_by(Cluster.name))
                     ).scalars())
    images: NodeImages = scope.services.node_images
    return fields(clusters, images.names())


def values_of(row: ProvisioningProfile) -> Values:
    return {"name": row.name, "mac": row.mac or "", "image": row.image,
            "kernel_args": row.kernel_args or "",
            "cluster": str(row.cluster_id) if row.cluster_id else ""}


def read_form(form: Values) -> ProfileInput:
    """The service's input from a submitted form: every field given (an empty MAC makes
    it the default profile; no cluster, none of its own)."""
    raw_cluster = text(form, "cluster").strip()
    cluster = None
    if raw_cluster:
        try:
            cluster = Ref(id=uuid.UUID(raw_cluster))
        except ValueError:
            raise InvalidInput(f"cluster {raw_cluster[:40]!r} is not a cluster's id") from None
    return ProfileInput(name=text(form, "name").strip(), mac=text(form, "mac").strip(),
                        image=text(form, "image").strip(),
                        kernel_args=text(form, "kernel_args"), cluster=cluster,
                        clear_cluster=cluster is None)


async def _add(session: AsyncSession, services: Any, values: Values, user: Any
               ) -> ProvisioningProfile:
    return await service.add_profile(session, services.node_images, read_form(values), user)


async def _update(session: AsyncSession, services: Any, profile_id: uuid.UUID, values: Values,
                  user: Any) -> ProvisioningProfile:
    return await service.update_profile(session, services.node_images, profile_id,
                                        read_form(values), user)


# Removing asks first (its machines then get the default profile). An unsent field is
# empty: the form sends them all, a hand-made post that leaves one out clears it.
KIND = Kind(PATH, NAV, "provisioning profile", ProvisioningProfile, _fields, values_of,
            _add, _update, service.remove_profile, EMPTY, unsent=EMPTY)


async def _list_values(session: AsyncSession) -> dict[str, Any]:
    clusters = dict((await session.execute(select(Cluster.id, Cluster.name))).all())
    return {"profiles": await service.profiles(session), "clusters": clusters}


@page
async def profiles_page(ctx: WebContext) -> Response:
    images: NodeImages = ctx.services.node_images
    return ctx.render("provisioning_profiles.html", nav=NAV, images=images.names(),
                      **await _list_values(ctx.session))


ROUTES = [Route(PATH, profiles_page), *form_routes(KIND)]
