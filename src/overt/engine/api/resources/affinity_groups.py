"""/clusters/{id}/affinitygroups: oVirt's affinity groups, their VMs and their hosts."""

from __future__ import annotations

import uuid

from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.readers import ref_of
from overt.engine.api.resources.common import action_done
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import links, ref
from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import AffinityGroup, Host, Vm
from overt.engine.model.errors import InvalidInput
from overt.engine.queries.lookup import Ref
from overt.engine.services import affinity_groups as service
from overt.engine.services.affinity_groups import AffinityGroupInput, RuleInput

routes = ApiRoutes()
_GROUPS = "/clusters/{cluster_id}/affinitygroups"
_GROUP = _GROUPS + "/{group_id}"


def _base(group: AffinityGroup) -> str:
    return href("clusters", group.cluster_id, "affinitygroups", group.id)


def _rule(enabled: bool, positive: bool, enforcing: bool) -> Representation:
    return {"enabled": enabled, "positive": positive, "enforcing": enforcing}


def group_view(group: AffinityGroup, vms: list[Vm], hosts: list[Host]) -> Representation:
    base = _base(group)
    return {
        "href": base, "id": str(group.id), "name": group.name,
        "description": group.description, "priority": group.priority,
        "cluster": ref("clusters", group.cluster_id),
        # oVirt 4.0's fields: the VMs rule's polarity (none while it is disabled).
        "positive": group.vms_rule_positive if group.vms_rule_enabled else None,
        "enforcing": group.vms_rule_enforcing,
        "vms_rule": _rule(group.vms_rule_enabled, group.vms_rule_positive,
                          group.vms_rule_enforcing),
        "hosts_rule": _rule(group.hosts_rule_enabled, group.hosts_rule_positive,
                            group.hosts_rule_enforcing),
        "vms": {"vm": [ref("vms", vm.id) for vm in vms]},
        "hosts": {"host": [ref("hosts", host.id) for host in hosts]},
        "link": links(base, "vms", "hosts"),
    }


def _read_rule(node: Node | None) -> RuleInput | None:
    if node is None:
        return None
    return RuleInput(enabled=node.get_bool("enabled"), positive=node.get_bool("positive"),
                     enforcing=node.get_bool("enforcing"))


def _refs(node: Node, container: str, item: str) -> list[Ref] | None:
    if node.child(container) is None:
        return None
    return [ref_of(child) or Ref() for child in node.items(container, item)]


def read_group(node: Node) -> AffinityGroupInput:
    raw_priority = node.get_str("priority")
    try:
        priority = float(raw_priority) if raw_priority is not None else None
    except ValueError:
        raise InvalidInput(f"affinity_group.priority must be a number, not {raw_priority!r}"
                           ) from None
    return AffinityGroupInput(
        name=node.get_str("name"), description=node.get_str("description"),
        priority=priority, vms_rule=_read_rule(node.child("vms_rule")),
        hosts_rule=_read_rule(node.child("hosts_rule")), positive=node.get_bool("positive"),
        enforcing=node.get_bool("enforcing"), vms=_refs(node, "vms", "vm"),
        hosts=_refs(node, "hosts", "host"))


async def _view(ctx: ApiContext, group: AffinityGroup) -> Representation:
    return group_view(group, await service.group_vms(ctx.session, group),
                      await service.group_hosts(ctx.session, group))


@routes.get(_GROUPS)
async def list_groups(ctx: ApiContext) -> Response:
    groups = await service.list_groups(ctx.session, ctx.id_param("cluster_id"))
    return ctx.render_list("affinity_groups", "affinity_group",
                           [await _view(ctx, g) for g in groups])


@routes.post(_GROUPS)
async def add_group(ctx: ApiContext) -> Response:
    group = await service.add_group(ctx.session, ctx.id_param("cluster_id"),
                                    read_group(await ctx.body("affinity_group")), ctx.user)
    return ctx.render("affinity_group", await _view(ctx, group), status=201)


@routes.get(_GROUP)
async def get_group(ctx: ApiContext) -> Response:
    group = await service.get_group(ctx.session, ctx.id_param("cluster_id"),
                                    ctx.id_param("group_id"))
    return ctx.render("affinity_group", await _view(ctx, group))


@routes.put(_GROUP)
async def update_group(ctx: ApiContext) -> Response:
    group = await service.update_group(ctx.session, ctx.id_param("cluster_id"),
                                       ctx.id_param("group_id"),
                                       read_group(await ctx.body("affinity_group")), ctx.user)
    return ctx.render("affinity_group", await _view(ctx, group))


@routes.delete(_GROUP)
async def remove_group(ctx: ApiContext) -> Response:
    await service.remove_group(ctx.session, ctx.id_param("cluster_id"),
                               ctx.id_param("group_id"), ctx.user)
    return action_done(ctx)


# -- members ------------------------------------------------------------------------------

def _member_view(kind: str, object_id: uuid.UUID, name: str, group_base: str
                 ) -> Representation:
    return {"href": f"{group_base}/{kind}/{object_id}", "id": str(object_id), "name": name}


@routes.get(_GROUP + "/vms")
async def list_group_vms(ctx: ApiContext) -> Response:
    group = await service.get_group(ctx.session, ctx.id_param("cluster_id"),
                                    ctx.id_param("group_id"))
    return ctx.render_list("vms", "vm", [_member_view("vms", vm.id, vm.name, _base(group))
                                         for vm in await service.group_vms(ctx.session, group)])


@routes.post(_GROUP + "/vms")
async def add_group_vm(ctx: ApiContext) -> Response:
    cluster_id, group_id = ctx.id_param("cluster_id"), ctx.id_param("group_id")
    vm = await service.add_vm(ctx.session, cluster_id, group_id,
                              ref_of(await ctx.body("vm")) or Ref(), ctx.user)
    base = href("clusters", cluster_id, "affinitygroups", group_id)
    return ctx.render("vm", _member_view("vms", vm.id, vm.name, base), status=201)


@routes.delete(_GROUP + "/vms/{vm_id}")
async def remove_group_vm(ctx: ApiContext) -> Response:
    await service.remove_vm(ctx.session, ctx.id_param("cluster_id"), ctx.id_param("group_id"),
                            ctx.id_param("vm_id"), ctx.user)
    return action_done(ctx)


@routes.get(_GROUP + "/hosts")
async def list_group_hosts(ctx: ApiContext) -> Response:
    group = await service.get_group(ctx.session, ctx.id_param("cluster_id"),
                                    ctx.id_param("group_id"))
    return ctx.render_list("hosts", "host", [
        _member_view("hosts", host.id, host.name, _base(group))
        for host in await service.group_hosts(ctx.session, group)])


@routes.post(_GROUP + "/hosts")
async def add_group_host(ctx: ApiContext) -> Response:
    cluster_id, group_id = ctx.id_param("cluster_id"), ctx.id_param("group_id")
    host = await service.add_host(ctx.session, cluster_id, group_id,
                                  ref_of(await ctx.body("host")) or Ref(), ctx.user)
    base = href("clusters", cluster_id, "affinitygroups", group_id)
    return ctx.render("host", _member_view("hosts", host.id, host.name, base), status=201)


@routes.delete(_GROUP + "/hosts/{host_id}")
async def remove_group_host(ctx: ApiContext) -> Response:
    await service.remove_host(ctx.session, ctx.id_param("cluster_id"),
                              ctx.id_param("group_id"), ctx.id_param("host_id"), ctx.user)
    return action_done(ctx)
