"""/templates: making a template from a VM, editing and removing one (reads: `inventory`)."""

from __future__ import annotations

import uuid

from starlette.responses import Response

from overt.engine.api import views
from overt.engine.api.context import ApiContext
from overt.engine.api.initialization import read_initialization, sealed_initialization
from overt.engine.api.readers import ref_of
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.wire.parse import Node
from overt.engine.db.tables import StorageDomain
from overt.engine.model.errors import InvalidInput
from overt.engine.model.initialization import Initialization
from overt.engine.model.status import DiskFormat
from overt.engine.queries import lookup
from overt.engine.services import templates
from overt.engine.services.disk_copies import CopyTarget

routes = ApiRoutes()


async def _target(ctx: ApiContext, node: Node | None, what: str) -> CopyTarget | None:
    """A `<storage_domain>` and `<format>` a disk's copy goes to (oVirt's overrides)."""
    if node is None:
        return None
    domains = node.items("storage_domains", "storage_domain")
    domain_ref = ref_of(domains[0]) if domains else ref_of(node.child("storage_domain"))
    fmt = node.get_enum("format", DiskFormat)
    domain = await lookup.resolve(ctx.session, StorageDomain, domain_ref, what) \
        if domain_ref is not None else None
    return CopyTarget(domain=domain, format=fmt) if domain or fmt else None


async def _disk_targets(ctx: ApiContext, vm: Node | None) -> dict[uuid.UUID, CopyTarget]:
    targets: dict[uuid.UUID, CopyTarget] = {}
    if vm is None:
        return targets
    for attachment in vm.items("disk_attachments", "disk_attachment"):
        disk = attachment.child("disk")
        disk_id = disk.get_id() if disk is not None else None
        if disk is None or disk_id is None:
            raise InvalidInput("template.vm.disk_attachments.disk_attachment.disk needs the id "
                               "of the VM's disk it changes")
        target = await _target(ctx, disk, "template.vm.disk_attachments.disk.storage_domains")
        if target is not None:
            targets[disk_id] = target
    return targets


@routes.post("/templates")
async def add_template(ctx: ApiContext) -> Response:
    """oVirt's `POST /templates` with `<vm>`: a template made from a down VM's disks;
    `?seal=true` seals its boot disk (virt-sysprep), as the SDK's `add(seal=True)` asks."""
    body = await ctx.body("template")
    vm = body.child("vm")
    if vm is None:
        raise InvalidInput("template.vm is required: the VM to make the template from")
    template = await templates.create_template_from_vm(
        ctx.session, ctx.services.jobs, name=body.get_str("name"), vm=ref_of(vm),
        description=body.get_str("description"), user=ctx.user,
        targets=await _disk_targets(ctx, vm),
        default_target=await _target(ctx, body, "template.storage_domain"),
        initialization=_initialization(ctx, body), bios_type=_bios(body),
        seal=ctx.strict_flag("seal"))
    return ctx.render("template", views.template(template), status=201)


@routes.put("/templates/{template_id}")
async def update_template(ctx: ApiContext) -> Response:
    """oVirt's template edit (name, description, memory, bios type, cloud-init)."""
    body = await ctx.body("template")
    memory = body.get_int("memory")
    if memory is not None and memory <= 0:
        raise InvalidInput(f"template.memory must be a positive number of bytes, not {memory}")
    template = await templates.update_template(
        ctx.session, ctx.id_param("template_id"), templates.TemplateEdit(
            name=body.get_str("name"), description=body.get_str("description"),
            memory_bytes=memory, initialization=_initialization(ctx, body),
            bios_type=_bios(body)), ctx.user)
    await ctx.session.flush()
    return ctx.render("template", views.template(template))


def _bios(body: Node) -> str | None:
    """`<bios><type>` (oVirt's Template.bios), checked by the service; None: not given."""
    bios = body.child("bios")
    return bios.get_str("type") or None if bios is not None else None


def _initialization(ctx: ApiContext, body: Node) -> Initialization | None:
    """The template's `<initialization>`, checked, its root password sealed."""
    node = body.child("initialization")
    if node is None:
        return None
    return sealed_initialization(read_initialization(node), ctx.services.secrets)


@routes.delete("/templates/{template_id}")
async def remove_template(ctx: ApiContext) -> Response:
    await templates.remove_template(ctx.session, ctx.services.jobs,
                                    ctx.id_param("template_id"), ctx.user)
    return action_done(ctx)
