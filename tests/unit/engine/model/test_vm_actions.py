import pytest

from overt.engine.model.errors import Conflict
from overt.engine.model.node_states import NODE_TO_VM_STATUS
from overt.engine.model.status import VmStatus
from overt.engine.model.vm_actions import VM_ACTIONS, VmAction, check_vm_action
from overt.protocol.host import VmState


@pytest.mark.parametrize("action", list(VmAction))
@pytest.mark.parametrize("status", list(VmStatus))
def test_every_action_in_every_status_is_decided_by_the_table(action: VmAction,
                                                              status: VmStatus) -> None:
    if status in VM_ACTIONS[action]:
        check_vm_action(action, status, vm_name="v")
    else:
        with pytest.raises(Conflict, match=f"the VM is {status.value.replace('_', ' ')}"):
            check_vm_action(action, status, vm_name="v")


def test_the_table_matches_oVirt_expectations() -> None:
    assert VmStatus.DOWN in VM_ACTIONS[VmAction.START]
    assert VmStatus.UP not in VM_ACTIONS[VmAction.START]
    assert VM_ACTIONS[VmAction.REMOVE] == {VmStatus.DOWN}
    assert VmStatus.UP in VM_ACTIONS[VmAction.STOP]
    assert VmStatus.DOWN not in VM_ACTIONS[VmAction.STOP]


def test_every_node_state_maps_to_a_vm_status() -> None:
    assert set(NODE_TO_VM_STATUS) == set(VmState)
    assert NODE_TO_VM_STATUS[VmState.RUNNING] is VmStatus.UP
    assert NODE_TO_VM_STATUS[VmState.GONE] is VmStatus.DOWN
