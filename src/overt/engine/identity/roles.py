"""oVirt's permits (action groups) and predefined roles, as data.

Permit ids and names are oVirt's (`PermitType` in its API model), so clients that name
permits by id or by name see the same values. Predefined roles live here, not in the
database: they cannot change, and every engine version agrees on them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Permit:
    id: int
    name: str
    administrative: bool


_PERMITS = [
    (1, "create_vm", False), (2, "delete_vm", False), (3, "edit_vm_properties", False),
    (4, "vm_basic_operations", False), (5, "change_vm_cd", False), (6, "migrate_vm", False),
    (7, "connect_to_vm", False), (8, "import_export_vm", True),
    (9, "configure_vm_network", False), (10, "configure_vm_storage", False),
    (11, "move_vm", False), (12, "manipulate_vm_snapshots", False),
    (13, "reconnect_to_vm", True),
    (100, "create_host", True), (101, "edit_host_configuration", True),
    (102, "delete_host", True), (103, "manipulate_host", True),
    (104, "configure_host_network", True),
    (200, "create_template", False), (201, "edit_template_properties", False),
    (202, "delete_template", False), (203, "copy_template", False),
    (204, "configure_template_network", False),
    (400, "create_cluster", True), (401, "edit_cluster_configuration", True),
    (402, "delete_cluster", True), (403, "configure_cluster_network", True),
    (500, "manipulate_users", True), (501, "manipulate_roles", True),
    (502, "manipulate_permissions", False),
    (600, "create_storage_domain", True), (601, "edit_storage_domain_configuration", True),
    (602, "delete_storage_domain", True), (603, "manipulate_storage_domain", True),
    (700, "create_storage_pool", True), (701, "delete_storage_pool", True),
    (702, "edit_storage_pool_configuration", True),
    (703, "configure_storage_pool_network", True),
    (800, "configure_engine", True),
    (1100, "create_disk", False), (1101, "attach_disk", False),
    (1102, "edit_disk_properties", False), (1103, "configure_disk_storage", False),
    (1104, "delete_disk", False),
    (1300, "login", False),
]
PERMITS: dict[int, Permit] = {i: Permit(i, name, admin) for i, name, admin in _PERMITS}
PERMITS_BY_NAME: dict[str, Permit] = {p.name: p for p in PERMITS.values()}


@dataclass(frozen=True)
class RoleDef:
    id: uuid.UUID
    name: str
    description: str
    administrative: bool
    permits: frozenset[str]
    mutable: bool = False


def _ids(*names: str) -> frozenset[str]:
    unknown = [n for n in names if n not in PERMITS_BY_NAME]
    assert not unknown, unknown
    return frozenset(names)


_VM_USER = ("login", "vm_basic_operations", "change_vm_cd", "connect_to_vm")
_VM_MANAGER = (*_VM_USER, "delete_vm", "edit_vm_properties", "configure_vm_network",
               "configure_vm_storage", "manipulate_vm_snapshots", "manipulate_permissions",
               "create_disk", "attach_disk", "edit_disk_properties", "delete_disk")
_CLUSTER = ("edit_cluster_configuration", "configure_cluster_network", "delete_cluster",
            "create_host", "edit_host_configuration", "delete_host", "manipulate_host",
            "configure_host_network", "create_vm", "migrate_vm", "move_vm",
            "import_export_vm", "reconnect_to_vm", *_VM_MANAGER, "create_template",
            "edit_template_properties", "delete_template", "copy_template")
_STORAGE = ("create_storage_domain", "edit_storage_domain_configuration",
            "delete_storage_domain", "manipulate_storage_domain", "configure_disk_storage",
            "login", "manipulate_permissions")


def _role(number: str, name: str, description: str, administrative: bool,
          permits: frozenset[str]) -> RoleDef:
    return RoleDef(uuid.UUID(number), name, description, administrative, permits)


SUPER_USER = _role("00000000-0000-0000-0000-000000000001", "SuperUser",
                   "Roles management administrator", True, frozenset(PERMITS_BY_NAME))
USER_ROLE = _role("00000000-0000-0000-0001-000000000001", "UserRole",
                  "Standard User Role", False, _ids(*_VM_USER))
USER_VM_MANAGER = _role("def00006-0000-0000-0000-def000000006", "UserVmManager",
                        "User Role, with permission for any operation on VMs", False,
                        _ids(*_VM_MANAGER))
POWER_USER = _role("00000000-0000-0000-0001-000000000002", "PowerUserRole",
                   "User Role, allowed to create VMs, templates and disks", False,
                   _ids("login", "create_vm", "create_template", "create_disk"))
CLUSTER_ADMIN = _role("def00001-0000-0000-0000-def000000001", "ClusterAdmin",
                      "Administrator Role, permission for all the objects underneath a "
                      "specific cluster", True, _ids(*_CLUSTER))
DATA_CENTER_ADMIN = _role("def00002-0000-0000-0000-def000000002", "DataCenterAdmin",
                          "Administrator Role, permission for all the objects underneath a "
                          "specific data center", True,
                          _ids(*_CLUSTER, *_STORAGE, "create_cluster",
                               "edit_storage_pool_configuration",
                               "configure_storage_pool_network", "delete_storage_pool"))
HOST_ADMIN = _role("def00003-0000-0000-0000-def000000003", "HostAdmin",
                   "Administrator Role, permission for all the objects underneath a specific "
                   "host", True, _ids("login", "create_host", "edit_host_configuration",
                                      "delete_host", "manipulate_host",
                                      "configure_host_network", "manipulate_permissions"))
STORAGE_ADMIN = _role("def00004-0000-0000-0000-def000000004", "StorageAdmin",
                      "Administrator Role, permission for all operations on a specific "
                      "storage domain", True, _ids(*_STORAGE))
NETWORK_ADMIN = _role("def00005-0000-0000-0000-def000000005", "NetworkAdmin",
                      "Administrator Role, permission for all operations on a specific "
                      "logical network", True,
                      _ids("login", "configure_storage_pool_network", "configure_host_network",
                           "configure_cluster_network", "configure_vm_network",
                           "manipulate_permissions"))
TEMPLATE_ADMIN = _role("def00008-0000-0000-0000-def000000008", "TemplateAdmin",
                       "Administrator Role, permission for all operations on a specific "
                       "template", True,
                       _ids("login", "create_template", "edit_template_properties",
                            "delete_template", "copy_template", "configure_template_network",
                            "manipulate_permissions"))

PREDEFINED: dict[uuid.UUID, RoleDef] = {r.id: r for r in (
    SUPER_USER, USER_ROLE, USER_VM_MANAGER, POWER_USER, CLUSTER_ADMIN, DATA_CENTER_ADMIN,
    HOST_ADMIN, STORAGE_ADMIN, NETWORK_ADMIN, TEMPLATE_ADMIN)}
