"""The audit log (oVirt's events): one row per thing an administrator should know."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import AuditEvent
from overt.engine.model.status import LogSeverity

# Stable codes, after oVirt's AuditLogType where one exists.
VM_CREATED = 34
VM_REMOVED = 113
VM_STARTED = 32  # USER_STARTED_VM
VM_UP = 2
VM_DOWN = 61
VM_STOPPED = 33
VM_SHUTDOWN = 73
VM_REBOOT = 157
VM_SUSPENDED = 40
VM_START_FAILED = 18
VM_EXTERNAL = 9500
VM_LOST = 9501
VM_MIGRATION_STARTED = 62
VM_MIGRATED = 63  # VM_MIGRATION_DONE
VM_MIGRATION_FAILED = 65
VM_MIGRATION_CANCELLED = 9540
HOST_ADDED = 42
HOST_PENDING_APPROVAL = 9502
HOST_APPROVED = 9503
HOST_UP = 16
HOST_NON_RESPONSIVE = 12
HOST_MAINTENANCE = 17
HOST_ACTIVATED = 9504
HOST_PREPARING_FOR_MAINTENANCE = 9541
HOST_MAINTENANCE_FAILED = 602  # USER_VDS_MAINTENANCE_MIGRATION_FAILED
HOST_REMOVED = 44
HOST_INSTALL_FAILED = 505
HOST_INSTALLING = 509
JOB_FAILED = 9505
DISK_CREATED = 2021
DISK_REMOVED = 2014
# Trust chain (certificates, enrollment): 9520-9529.
HOST_ENROLLMENT_REFUSED = 9520
HOST_CONNECTION_REFUSED = 9521
CERTIFICATE_EXPIRING = 9522
CERTIFICATE_RENEWED = 9523
CERTIFICATES_RECOVERED = 9524
USER_LOGIN = 30
DATA_CENTER_ADDED = 950  # USER_ADD_STORAGE_POOL
DATA_CENTER_UPDATED = 952
DATA_CENTER_REMOVED = 954
CLUSTER_ADDED = 809  # USER_ADD_VDS_GROUP
CLUSTER_UPDATED = 811
CLUSTER_REMOVED = 813
NETWORK_ADDED = 942  # NETWORK_ADD_NETWORK
NETWORK_REMOVED = 944
NETWORK_UPDATED = 1114
VM_NIC_PLUGGED = 1012  # NETWORK_ACTIVATE_VM_INTERFACE_SUCCESS
VM_NIC_UNPLUGGED = 1014  # NETWORK_DEACTIVATE_VM_INTERFACE_SUCCESS
VM_NIC_LINK_CHANGED = 9530
STORAGE_DOMAIN_ADDED = 956  # USER_ADD_STORAGE_DOMAIN
STORAGE_DOMAIN_UPDATED = 958
STORAGE_DOMAIN_REMOVED = 960
STORAGE_DOMAIN_DEACTIVATED = 968  # USER_DEACTIVATED_STORAGE_DOMAIN
STORAGE_DOMAIN_ACTIVATED = 966
JOB_ENDED = 9506
JOB_CLEARED = 9507
HOST_REFRESHED = 9508
USER_LOGIN_FAILED = 114
USER_LOCKED_OUT = 9610
USER_NOT_AUTHORIZED = 9650
PERMISSION_ADDED = 864  # USER_ADD_PERMISSION
PERMISSION_REMOVED = 866  # USER_REMOVE_PERMISSION
USER_ADDED = 149  # USER_ADD
USER_REMOVED = 150
ROLE_ADDED = 9651
ROLE_REMOVED = 9652
NODE_REPORT_REFUSED = 9611  # a node reported a VM of another host
VM_UPDATED = 35  # USER_UPDATE_VM
NIC_ADDED = 932  # NETWORK_INTERFACE_ADDED_TO_VM
NIC_REMOVED = 933
NIC_UPDATED = 934
DISK_ATTACHED = 2016  # USER_ATTACH_DISK_TO_VM
DISK_DETACHED = 2018
# Devices and templates: 9530-9539.
DISK_ATTACHMENT_UPDATED = 9530
TEMPLATE_IMPORTED = 9531
# Power management: 9560-9569.
HOST_POWER_MANAGEMENT_UPDATED = 9560
HOST_FENCED = 9561
HOST_FENCE_FAILED = 9562

# Audit descriptions are capped: part of them may come from unauthenticated input.
MAX_DESCRIPTION = 1000


def record(
    session: AsyncSession,
    description: str,
    *,
    code: int = 0,
    severity: LogSeverity = LogSeverity.NORMAL,
    vm_id: uuid.UUID | None = None,
    host_id: uuid.UUID | None = None,
    cluster_id: uuid.UUID | None = None,
    data_center_id: uuid.UUID | None = None,
    storage_domain_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    job_id: uuid.UUID | None = None,
    correlation_id: str | None = None,
) -> AuditEvent:
    if len(description) > MAX_DESCRIPTION:
        description = description[:MAX_DESCRIPTION - 3] + "..."
    event = AuditEvent(
        description=description, code=code, severity=severity.value, vm_id=vm_id,
        host_id=host_id, cluster_id=cluster_id, data_center_id=data_center_id,
        storage_domain_id=storage_domain_id, user_id=user_id, job_id=job_id,
        correlation_id=correlation_id)
    session.add(event)
    return event
