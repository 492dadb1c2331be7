"""The one authorization check of the API: every route's rule follows from its path and method.

`/vms/{vm_id}/...` is about that VM; a GET needs some role on it (or above it), otherwise
the VM is not found, as in oVirt's user view; a change needs the permit oVirt asks
for (`vm_basic_operations` to start it, `connect_to_vm` for a console ticket, ...).
Collections of objects are listed filtered for users without a role on the system.
Everything not about an object needs a permit on the system. `rule_for` answers for any
route, so a new route is covered the day it is declared.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.identity.access import BLANK_TEMPLATE as BLANK
from overt.engine.identity.access import SYSTEM, Access, ancestors
from overt.engine.model.errors import Forbidden, NotFound

COLLECTIONS = {
    "vms": "vm", "clusters": "cluster", "datacenters": "data_center", "hosts": "host",
    "storagedomains": "storage_domain", "networks": "network", "templates": "template",
    "disks": "disk",
}
_CREATE = {"vm": "create_vm", "cluster": "create_cluster", "data_center": "create_storage_pool",
           "host": "create_host", "storage_domain": "create_storage_domain",
           "network": "configure_storage_pool_network", "template": "create_template",
           "disk": "create_disk"}
_EDIT = {"vm": "edit_vm_properties", "cluster": "edit_cluster_configuration",
         "data_center": "edit_storage_pool_configuration", "host": "edit_host_configuration",
         "storage_domain": "edit_storage_domain_configuration",
         "network": "configure_storage_pool_network", "template": "edit_template_properties",
         "disk": "edit_disk_properties"}
_DELETE = {"vm": "delete_vm", "cluster": "delete_cluster", "data_center": "delete_storage_pool",
           "host": "delete_host", "storage_domain": "delete_storage_domain",
           "network": "configure_storage_pool_network", "template": "delete_template",
           "disk": "delete_disk"}
_ACTIONS = {"host": "manipulate_host", "storage_domain": "manipulate_storage_domain"}
_VM_VERBS = {
    **dict.fromkeys(("start", "stop", "shutdown", "reboot", "suspend", "reset"),
                    "vm_basic_operations"),
    **dict.fromkeys(("ticket", "graphicsconsoles", "proxyticket",
                     "remoteviewerconnectionfile"), "connect_to_vm"),
    **dict.fromkeys(("migrate", "cancelmigration"), "migrate_vm"),
    "nics": "configure_vm_network", "diskattachments": "configure_vm_storage",
    "cdroms": "change_vm_cd",
}
_SYSTEM_WRITES = {"users": "manipulate_users", "groups": "manipulate_users",
                  "roles": "manipulate_roles", "permissions": "manipulate_permissions"}
# System objects only those who may change them may read (trap receivers' addresses, image
# transfers' tickets).
_SYSTEM_READS = {"snmpmanagers": "configure_engine", "imagetransfers": "configure_engine",
                 "provisioningprofiles": "configure_engine"}


@dataclass(frozen=True)
class Rule:
    """`permit` None: any role on the object (a read). `kind`+`param`: the object the path
    names; `kind` without `param`: a collection listed filtered; neither: the system."""

    permit: str | None
    kind: str | None = None
    param: str | None = None
    anywhere: bool = False  # creation: the permit on any object will do


def _is_param(segment: str) -> bool:
    return segment.startswith("{") and segment.endswith("}")


def rule_for(method: str, path: str) -> Rule:
    """The rule of a route (its path as declared, e.g. `/vms/{vm_id}/start`)."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return Rule("login")
    kind = COLLECTIONS.get(parts[0])
    if kind is None:
        if method == "GET":
            return Rule(_SYSTEM_READS.get(parts[0], "login"))
        if "permissions" in parts:
            return Rule("manipulate_permissions")
        return Rule(_SYSTEM_WRITES.get(parts[0], "configure_engine"))
    if len(parts) == 1:
        if method == "GET":
            return Rule(None, kind)
        return Rule(_CREATE[kind], kind, anywhere=True)
    if not _is_param(parts[1]):  # e.g. /vms/search-like helpers: the system's
        return Rule("login" if method == "GET" else "configure_engine")
    param = parts[1][1:-1]
    if method == "GET":
        return Rule(None, kind, param)
    sub = parts[2] if len(parts) > 2 else None
    if sub is None:
        return Rule((_EDIT if method == "PUT" else _DELETE)[kind], kind, param)
    if sub == "permissions":
        return Rule("manipulate_permissions", kind, param)
    if kind == "vm":
        return Rule(_VM_VERBS.get(sub, "edit_vm_properties"), kind, param)
    return Rule(_ACTIONS.get(kind, _EDIT[kind]), kind, param)


async def authorize(session: AsyncSession, access: Access, rule: Rule,
                    path_params: dict[str, str]) -> None:
    """Raise Forbidden (or NotFound, for an object the user may not see) unless allowed."""
    if access.superuser:
        return
    if rule.kind is not None and rule.param is not None:
        raw = path_params.get(rule.param, "")
        try:
            object_id = uuid.UUID(raw)
        except ValueError:
            return  # the handler answers 404 for a malformed id
        held = access.permits_on(await ancestors(session, rule.kind, object_id))
        if not held:
            raise NotFound(f"there is no {rule.kind.replace('_', ' ')} with id {raw}, or you "
                           "have no permission on it")
        if rule.permit is not None and rule.permit not in held:
            raise Forbidden(f"User is not authorized to perform this action: it needs the "
                            f"{rule.permit} permit on this {rule.kind.replace('_', ' ')}")
        return
    permit = rule.permit or "login"  # a filtered listing needs a role somewhere
    if rule.anywhere or permit == "login":
        if access.anywhere(permit):
            return
    elif permit in access.permits_on([(SYSTEM, None)]):
        return
    raise Forbidden(f"User is not authorized to perform this action: it needs the "
                    f"{permit} permit{'' if rule.anywhere or permit == 'login' else ' on the system'}")


async def require_permit(session: AsyncSession, access: Access | None, permit: str, kind: str,
                         object_id: uuid.UUID) -> None:
    """For handlers whose target is in the body (a VM is created in the cluster it names)."""
    if access is None or access.superuser:
        return
    if permit not in access.permits_on(await ancestors(session, kind, object_id)):
        raise Forbidden(f"User is not authorized to perform this action: it needs the "
                        f"{permit} permit on that {kind.replace('_', ' ')}")


async def require_vm_creation(session: AsyncSession, access: Access | None,
                              cluster_id: uuid.UUID, template_id: uuid.UUID | None) -> None:
    """A VM is created where the user holds `create_vm` (the cluster or above), from a
    template they may use (some role on it or above it, or Blank), as oVirt checks both."""
    await require_permit(session, access, "create_vm", "cluster", cluster_id)
    if access is None or access.superuser or template_id is None or template_id == BLANK:
        return
    if not access.permits_on(await ancestors(session, "template", template_id)):
        raise Forbidden("User is not authorized to perform this action: it needs a role on "
                        "that template to create a VM from it")


async def vm_permits(session: AsyncSession, access: Access, vm_id: uuid.UUID
                     ) -> frozenset[str]:
    """What the user may do to one VM (for showing only the buttons that will work)."""
    return access.permits_on(await ancestors(session, "vm", vm_id))


async def check_route(session: AsyncSession, access: Access, method: str, path: str,
                      path_params: dict[str, str]) -> None:
    """Authorize a portal request by the API route it stands for (same rules, same place)."""
    await authorize(session, access, rule_for(method, path), path_params)
