"""The host state machine, every action in every status, against a grid written out here:
a change to the table must be a deliberate change to this grid too."""

import pytest

from overt.engine.model.errors import Conflict
from overt.engine.model.host_actions import (
    HOST_ACTIONS,
    MONITORED,
    HostAction,
    check_host_action,
    host_action_allowed,
    status_after,
)
from overt.engine.model.status import HostStatus

A = HostAction
# One column per action, in this order; a cell says what the action does in that status:
# "x" it may start, "=" there is nothing left to do (asking again is no error), "-" refused.
COLUMNS = (A.INSTALL, A.APPROVE, A.DEACTIVATE, A.ACTIVATE, A.REMOVE, A.REFRESH, A.ENROLL,
           A.FAIL_INSTALL, A.MONITOR, A.HEAR, A.LOSE, A.RUN_VMS, A.LACK_NETWORKS, A.RECOVER,
           A.DRAIN, A.DRAINED, A.DRAIN_FAILED, A.MISS, A.LOSE_STORAGE, A.FENCE, A.KDUMP,
           A.KDUMP_FINISHED)
GRID = {
    #                                      in ap de ac rm rf en fa mo he lo ru lk rc dr dd df mi ls fe kd kf
    HostStatus.CONNECTING:                "-  -  -  -  -  -  -  -  x  x  x  -  x  -  -  -  -  =  -  x  -  -",
    HostStatus.DOWN:                      "x  -  -  -  x  -  -  -  -  -  -  -  -  -  -  -  -  -  -  x  -  -",
    HostStatus.ERROR:                     "-  -  x  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  x  -  -",
    HostStatus.INITIALIZING:              "-  -  -  -  -  -  -  -  x  x  x  -  x  -  -  -  -  -  -  x  -  -",
    HostStatus.INSTALL_FAILED:            "x  -  -  -  x  -  -  -  -  -  -  -  -  -  -  -  -  -  -  x  -  -",
    HostStatus.INSTALLING:                "-  -  -  -  x  -  x  x  -  -  -  -  -  -  -  -  -  -  -  x  -  -",
    HostStatus.KDUMPING:                  "-  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  x  =  x",
    HostStatus.MAINTENANCE:               "x  -  =  x  x  x  -  -  -  -  -  -  -  -  -  =  -  -  -  x  -  -",
    HostStatus.NON_OPERATIONAL:           "x  -  x  x  -  x  -  -  x  -  x  -  =  x  -  -  -  x  =  x  -  -",
    HostStatus.NON_RESPONSIVE:            "-  -  x  -  x  -  -  -  x  x  =  -  -  -  -  -  -  -  -  x  x  -",
    HostStatus.PENDING_APPROVAL:          "-  x  -  -  x  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -",
    HostStatus.PREPARING_FOR_MAINTENANCE: "-  -  =  -  -  -  -  -  x  =  x  -  -  -  =  x  x  -  -  x  -  -",
    HostStatus.REBOOT:                    "-  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  x  -  -",
    HostStatus.UNASSIGNED:                "-  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -  x  -  -",
    HostStatus.UP:                        "-  -  x  =  -  x  -  -  x  =  x  x  x  =  x  -  -  x  x  x  -  -",
}
# Where each action that changes the status leads.
LEADS_TO = {
    A.INSTALL: HostStatus.INSTALLING, A.APPROVE: HostStatus.INSTALLING,
    A.DEACTIVATE: HostStatus.MAINTENANCE, A.ACTIVATE: HostStatus.CONNECTING,
    A.ENROLL: HostStatus.CONNECTING, A.FAIL_INSTALL: HostStatus.INSTALL_FAILED,
    A.HEAR: HostStatus.UP, A.LOSE: HostStatus.NON_RESPONSIVE,
    A.LACK_NETWORKS: HostStatus.NON_OPERATIONAL,
    A.LOSE_STORAGE: HostStatus.NON_OPERATIONAL, A.RECOVER: HostStatus.UP,
    A.DRAIN: HostStatus.PREPARING_FOR_MAINTENANCE, A.DRAINED: HostStatus.MAINTENANCE,
    A.DRAIN_FAILED: HostStatus.UP, A.MISS: HostStatus.CONNECTING,
    A.KDUMP: HostStatus.KDUMPING, A.KDUMP_FINISHED: HostStatus.NON_RESPONSIVE,
}


def cell(status: HostStatus, action: HostAction) -> str:
    return GRID[status].split()[COLUMNS.index(action)]


def test_the_grid_covers_every_status_and_every_action() -> None:
    assert set(GRID) == set(HostStatus)
    assert set(COLUMNS) == set(HostAction) == set(HOST_ACTIONS)
    assert all(len(row.split()) == len(COLUMNS) for row in GRID.values())


@pytest.mark.parametrize("action", list(HostAction))
@pytest.mark.parametrize("status", list(HostStatus))
def test_every_action_in_every_status(action: HostAction, status: HostStatus) -> None:
    expected = cell(status, action)
    assert host_action_allowed(action, status) is (expected == "x")
    if expected == "x":
        assert check_host_action(action, status, host_name="h1") is True
    elif expected == "=":
        assert check_host_action(action, status, host_name="h1") is False
    else:
        with pytest.raises(Conflict) as refused:
            check_host_action(action, status, host_name="h1")
        assert "h1" in str(refused.value)
        assert f" {status}" in str(refused.value)  # says what the host is now


@pytest.mark.parametrize("action", list(HostAction))
def test_each_action_leads_where_the_grid_says(action: HostAction) -> None:
    if action in LEADS_TO:
        assert status_after(action) is LEADS_TO[action]
        # Where an action leads, it has nothing left to do or may not start again.
        assert cell(LEADS_TO[action], action) in "=-"
    else:
        with pytest.raises(ValueError, match="leaves the status"):
            status_after(action)


def test_the_monitor_listens_where_it_hears_and_loses_hosts() -> None:
    assert {s for s in HostStatus if cell(s, A.MONITOR) == "x"} == MONITORED
    # A non operational host is heard, but what it lacks decides whether it is up.
    assert {s for s in HostStatus if cell(s, A.HEAR) != "-"} == \
        MONITORED - {HostStatus.NON_OPERATIONAL}
    assert {s for s in HostStatus if cell(s, A.LOSE) != "-"} == MONITORED


def test_refusals_say_what_to_do_in_oVirts_words() -> None:
    with pytest.raises(Conflict, match="Cannot install host late: it is up; it must be one "
                       "of down, install_failed, maintenance, non_operational"):
        check_host_action(A.INSTALL, HostStatus.UP, host_name="late")
    with pytest.raises(Conflict, match="Cannot remove host h: it is up; switch it to "
                       "maintenance first"):
        check_host_action(A.REMOVE, HostStatus.UP, host_name="h")
    with pytest.raises(Conflict, match="Cannot fence host h: it is pending_approval; approve "
                       "it first"):
        check_host_action(A.FENCE, HostStatus.PENDING_APPROVAL, host_name="h")
