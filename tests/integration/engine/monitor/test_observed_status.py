"""The monitor writes a VM's status only from what its node reports, whether or not a job
holds the VM (a job waits for it instead of writing it)."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Host, Vm
from overt.engine.model.node_states import vm_status_of
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.monitor.reconcile import apply_vm_report
from overt.protocol.host import VmState, VmStatusReport

PRIOR = (VmStatus.UP, VmStatus.WAIT_FOR_LAUNCH, VmStatus.POWERING_DOWN, VmStatus.PAUSED,
         VmStatus.SAVING_STATE, VmStatus.RESTORING_STATE, VmStatus.REBOOT_IN_PROGRESS)
_ENDED = (VmState.GONE, VmState.SHUTOFF, VmState.SUSPENDED)


def _reported(prior: VmStatus, state: VmState) -> VmStatus:
    """What the node's report means for a VM that was `prior`: its own mapping, except
    that a VM saving its memory pauses on the way, and is suspended once it has ended."""
    if prior is VmStatus.SAVING_STATE and state is VmState.PAUSED:
        return prior
    if prior is VmStatus.SAVING_STATE and state in _ENDED:
        return VmStatus.SUSPENDED
    return vm_status_of(state)


@pytest.mark.parametrize("state", list(VmState))
@pytest.mark.parametrize("held", [False, True], ids=["free", "held-by-a-job"])
async def test_the_status_written_is_the_one_the_node_reported(
        db: Database, state: VmState, held: bool) -> None:
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        host = Host(name="h1", address="127.0.0.1", cluster_id=cluster.id,
                    status=HostStatus.UP.value, host_uuid=uuid.uuid4(), memory_mib=8192)
        session.add(host)
        await session.flush()
        vms = {prior: Vm(id=uuid.uuid4(), name=f"vm-{prior.value}", cluster_id=cluster.id,
                         template_id=BLANK_TEMPLATE_ID, memory_mib=64, status=prior.value,
                         host_id=host.id) for prior in PRIOR}
        session.add_all(vms.values())
        await session.flush()
        for vm in vms.values():
            await apply_vm_report(
                session, host, VmStatusReport(vm_id=vm.id, name=vm.name, state=state),
                locked={vm.id} if held else set())
        written = {prior: VmStatus(vm.status) for prior, vm in vms.items()}
    assert written == {prior: _reported(prior, state) for prior in PRIOR}
