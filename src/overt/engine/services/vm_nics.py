"""A VM's NICs: changed freely while the VM is down; on a running VM, plugged, unplugged
and relinked live by a `vm.nic` job (oVirt's hot-plug), other changes refused.

A NIC's network must be attached to the VM's cluster. Its MAC comes from the cluster's pool.
"""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine import audit
from overt.engine.db.tables import (
    Cluster,
    Job,
    Lock,
    Network,
    User,
    Vm,
    VmNic,
    VnicProfile,
)
from overt.engine.jobs.kinds import ChangeVmNic
from overt.engine.model.errors import Conflict, InvalidInput, NotFound
from overt.engine.model.status import NicInterface, VmStatus
from overt.engine.model.vm_actions import VmAction, check_vm_action
from overt.engine.queries import lookup
from overt.engine.services import cluster_networks, macpools
from overt.engine.services.inputs import NicInput
from overt.engine.services.jobs import JobSubmitter

PLUG, UNPLUG, LINK = "plug", "unplug", "link"
_NIC_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")


def _is_down(vm: Vm) -> bool:
    return vm.status is VmStatus.DOWN


def _changeable(vm: Vm) -> None:
    """Down: any change. Running: only hot-plug changes. Anything between: none."""
    if not _is_down(vm):
        check_vm_action(VmAction.HOTPLUG_NIC, VmStatus(vm.status), vm_name=vm.name)


async def _profile_for(session: AsyncSession, vm: Vm, data: NicInput) -> VnicProfile | None:
    profile: VnicProfile | None = None
    if data.vnic_profile is not None:
        if data.vnic_profile.id is None and not data.vnic_profile.name:
            return None  # <vnic_profile/>: a NIC on no network, as oVirt allows
        profile = await lookup.resolve(session, VnicProfile, data.vnic_profile,
                                       "nic.vnic_profile")
    elif data.network is not None:
        network = await lookup.resolve(session, Network, data.network, "nic.network")
        profile = (await session.execute(select(VnicProfile).where(
            VnicProfile.network_id == network.id).order_by(VnicProfile.name))).scalars().first()
    if profile is not None:
        await _check_network_in_cluster(session, vm, profile)
    return profile


async def _check_network_in_cluster(session: AsyncSession, vm: Vm, profile: VnicProfile) -> None:
    cluster = await lookup.get(session, Cluster, vm.cluster_id)
    try:
        await cluster_networks.get_attached(session, cluster, profile.network_id)
    except NotFound:
        network = await session.get(Network, profile.network_id)
        name = network.name if network else profile.network_id
        raise InvalidInput(f"Cannot use vNIC profile {profile.name}: network {name} is not "
                           f"attached to cluster {cluster.name} of VM {vm.name}.") from None


async def _live_change(session: AsyncSession, jobs: JobSubmitter, vm: Vm, nic: VmNic, op: str,
                       user: User | None) -> Job:
    if nic.vnic_profile_id is None and op != UNPLUG:
        raise Conflict(f"Cannot {op} NIC {nic.name} of running VM {vm.name}: it is on no "
                       "network (give it a vNIC profile first).")
    await session.flush()
    return await jobs.submit(
        session, ChangeVmNic(vm_id=vm.id, nic_id=nic.id, op=op, linked=nic.linked,
                             host_id=vm.host_id),
        description=f"{op.capitalize()} NIC {nic.name} of VM {vm.name}",
        owner_id=user.id if user else None)


async def add_nic(session: AsyncSession, jobs: JobSubmitter, vm: Vm, data: NicInput,
                  user: User | None = None) -> tuple[VmNic, Job | None]:
    """The new NIC and, on a running VM where it is plugged, the job plugging it."""
    _changeable(vm)
    existing = list((await session.execute(select(VmNic).where(VmNic.vm_id == vm.id))).scalars())
    name = data.name or f"nic{len(existing) + 1}"
    if not _NIC_NAME_RE.match(name):
        raise InvalidInput(f"nic.name {name!r} is not valid")
    if any(nic.name == name for nic in existing):
        raise Conflict(f"VM {vm.name} already has a NIC named {name}")
    interface = NicInterface(data.interface) if data.interface else NicInterface.VIRTIO
    profile = await _profile_for(session, vm, data)
    mac = await macpools.claim(session, vm.cluster_id, data.mac) if data.mac \
        else await macpools.allocate(session, vm.cluster_id)
    nic = VmNic(id=uuid.uuid4(), vm_id=vm.id, name=name, mac=mac,
                vnic_profile_id=profile.id if profile else None, interface=interface.value,
                linked=True if data.linked is None else data.linked,
                plugged=True if data.plugged is None else data.plugged)
    session.add(nic)
    vm.spec_version += 1
    await session.flush()
    job = None
    if not _is_down(vm) and nic.plugged:
        job = await _live_change(session, jobs, vm, nic, PLUG, user)
    _record(session, f"Interface {nic.name} ({mac}) was added to VM {vm.name}",
            audit.NIC_ADDED, vm, user)
    return nic, job


async def get_nic(session: AsyncSession, vm_id: uuid.UUID, nic_id: uuid.UUID) -> VmNic:
    nic = await session.get(VmNic, nic_id)
    if nic is None or nic.vm_id != vm_id:
        raise NotFound(f"VM {vm_id} has no NIC {nic_id}")
    return nic


def _refuse_while_plugged(vm: Vm, nic: VmNic, data: NicInput) -> None:
    """oVirt changes a plugged NIC of a running VM only by plugging and linking."""
    changed = [field for field, asked, now in (
        ("name", data.name, nic.name), ("mac", data.mac, nic.mac),
        ("interface", data.interface, nic.interface)) if asked and asked != now]
    if data.vnic_profile is not None or data.network is not None:
        changed.append("vnic_profile")
    if changed:
        raise Conflict(f"Cannot change {', '.join(changed)} of NIC {nic.name}: VM {vm.name} is "
                       "running and the NIC is plugged; unplug it first.")


async def update_nic(session: AsyncSession, jobs: JobSubmitter, vm: Vm, nic_id: uuid.UUID,
                     data: NicInput, user: User | None = None) -> tuple[VmNic, Job | None]:
    """The changed NIC and, on a running VM, the job applying the change live."""
    _changeable(vm)
    nic = await get_nic(session, vm.id, nic_id)
    live = not _is_down(vm)
    was_plugged, was_linked = nic.plugged, nic.linked
    if live and nic.plugged and data.plugged is not False:
        _refuse_while_plugged(vm, nic, data)
    if data.name:
        if not _NIC_NAME_RE.match(data.name):
            raise InvalidInput(f"nic.name {data.name!r} is not valid")
        nic.name = data.name
    if data.mac:
        nic.mac = await macpools.claim(session, vm.cluster_id, data.mac, nic_id=nic.id)
    if data.interface:
        nic.interface = NicInterface(data.interface).value
    if data.vnic_profile is not None or data.network is not None:
        profile = await _profile_for(session, vm, data)
        nic.vnic_profile_id = profile.id if profile else None
    if data.linked is not None:
        nic.linked = data.linked
    if data.plugged is not None:
        nic.plugged = data.plugged
    vm.spec_version += 1
    job = None
    if live:
        if nic.plugged and not was_plugged:
            job = await _live_change(session, jobs, vm, nic, PLUG, user)
        elif was_plugged and not nic.plugged:
            job = await _live_change(session, jobs, vm, nic, UNPLUG, user)
        elif nic.plugged and nic.linked != was_linked:
            job = await _live_change(session, jobs, vm, nic, LINK, user)
    _record(session, f"Interface {nic.name} of VM {vm.name} was updated", audit.NIC_UPDATED,
            vm, user)
    return nic, job


async def remove_nic(session: AsyncSession, vm: Vm, nic_id: uuid.UUID,
                     user: User | None = None) -> None:
    _changeable(vm)
    nic = await get_nic(session, vm.id, nic_id)
    if not _is_down(vm) and nic.plugged:
        raise Conflict(f"Cannot remove NIC {nic.name}: VM {vm.name} is running and the NIC is "
                       "plugged; unplug it first (plugged=false).")
    if not _is_down(vm):
        busy = (await session.execute(select(Lock.job_id).where(
            Lock.resource_type == "vm", Lock.resource_id == vm.id))).scalars().first()
        if busy is not None:  # e.g. its unplug is still under way
            raise Conflict(f"Cannot remove NIC {nic.name}: VM {vm.name} is locked by job {busy}.")
    await session.delete(nic)
    vm.spec_version += 1
    _record(session, f"Interface {nic.name} was removed from VM {vm.name}", audit.NIC_REMOVED,
            vm, user)


def _record(session: AsyncSession, description: str, code: int, vm: Vm,
            user: User | None) -> None:
    by = f" by {user.user_name}" if user is not None else ""
    audit.record_vm_change(session, description + by, code=code, vm=vm, user=user)
