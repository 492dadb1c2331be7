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


V = VmAction
# The VM state machine written out, one column per action in this order ("x": allowed):
# a change to the table must be a deliberate change to this grid too.
VM_COLUMNS = (V.START, V.STOP, V.SHUTDOWN, V.REBOOT, V.SUSPEND, V.REMOVE, V.TICKET,
              V.UPDATE_DEVICES, V.HOTPLUG_NIC, V.MIGRATE, V.SNAPSHOT)
VM_GRID = {
    #                              start stop shut rebt susp rmv  tckt devs nics migr snap
    VmStatus.DOWN:                "x     -    -    -    -    x    -    x    -    -    x",
    VmStatus.IMAGE_LOCKED:        "-     -    -    -    -    -    -    -    -    -    -",
    VmStatus.MIGRATING:           "-     x    -    -    -    -    -    -    -    -    -",
    VmStatus.NOT_RESPONDING:      "-     x    -    -    -    -    -    -    -    -    -",
    VmStatus.PAUSED:              "x     x    x    -    -    -    x    -    x    -    -",
    VmStatus.POWERING_DOWN:       "-     x    -    -    -    -    x    -    -    -    -",
    VmStatus.POWERING_UP:         "-     x    x    -    -    -    x    -    x    -    -",
    VmStatus.REBOOT_IN_PROGRESS:  "-     x    x    -    -    -    x    -    -    -    -",
    VmStatus.RESTORING_STATE:     "-     -    -    -    -    -    -    -    -    -    -",
    VmStatus.SAVING_STATE:        "-     -    -    -    -    -    -    -    -    -    -",
    VmStatus.SUSPENDED:           "x     x    -    -    -    -    -    -    -    -    -",
    VmStatus.UNASSIGNED:          "-     -    -    -    -    -    -    -    -    -    -",
    VmStatus.UNKNOWN:             "-     x    -    -    -    -    -    -    -    -    -",
    VmStatus.UP:                  "-     x    x    x    x    -    x    -    x    x    x",
    VmStatus.WAIT_FOR_LAUNCH:     "-     x    -    -    -    -    -    -    -    -    -",
}


def test_the_grid_covers_every_status_and_every_action() -> None:
    assert set(VM_GRID) == set(VmStatus)
    assert set(VM_COLUMNS) == set(VmAction) == set(VM_ACTIONS)
    assert all(len(row.split()) == len(VM_COLUMNS) for row in VM_GRID.values())


@pytest.mark.parametrize("action", list(VmAction))
@pytest.mark.parametrize("status", list(VmStatus))
def test_every_action_in_every_status_is_as_the_grid_says(action: VmAction,
                                                          status: VmStatus) -> None:
    allowed = VM_GRID[status].split()[VM_COLUMNS.index(action)] == "x"
    assert (status in VM_ACTIONS[action]) is allowed
