"""Which actions each host status allows and where they lead: the host state machine as
one table, like `vm_actions` is the VM's.

Users act (install, approve, maintenance, activate, remove, refresh); the engine acts
too: enrollment certifies or fails an installing node, the monitor brings a host it
hears up and marks one it stopped hearing non responsive, and only an `up` host runs VMs.
A non responsive host whose crash kernel sends fence_kdump messages is kdumping until they
stop (then non responsive again, until it is heard).
A host that lacks a required network of its cluster, or cannot reach an active storage
domain of its data center, is non operational until it carries the network again (or the
network is no longer required) or reaches the domain again: then it is up again by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from overt.engine.model.errors import Conflict
from overt.engine.model.status import HostStatus as S


class HostAction(StrEnum):
    # What users ask for (oVirt's host actions).
    INSTALL = "install"
    APPROVE = "approve"
    DEACTIVATE = "deactivate"  # switch to maintenance
    ACTIVATE = "activate"
    REMOVE = "remove"
    REFRESH = "refresh"
    FENCE = "fence"  # power management: status, start, stop, restart through a fence agent
    # What the engine does on its own.
    ENROLL = "enroll"  # the installing node got its certificate: connect to it
    FAIL_INSTALL = "fail_install"
    MONITOR = "monitor"  # apply the node's events, ask it for its state
    HEAR = "hear"  # the monitor heard the node (a heartbeat or a full report)
    MISS = "miss"  # a serving host missed its heartbeats: connecting, for a grace period
    LOSE = "lose"  # the monitor stopped hearing the node
    RUN_VMS = "run_vms"  # place and start VMs on the host
    LACK_NETWORKS = "lack_networks"  # a required network of its cluster is missing
    LOSE_STORAGE = "lose_storage"  # it cannot reach an active storage domain of its DC
    RECOVER = "recover"  # it carries every required network (reaches every domain) again
    DRAIN = "drain"  # maintenance asked while VMs run: migrate them away first
    DRAINED = "drained"  # every VM has left: the host is in maintenance
    DRAIN_FAILED = "drain_failed"  # a VM could not move: the host serves as before
    KDUMP = "kdump"  # a non responsive host sends fence_kdump messages: it is dumping
    KDUMP_FINISHED = "kdump_finished"  # its messages stopped: non responsive until heard


@dataclass(frozen=True)
class HostTransition:
    """From which statuses an action may start, and the status it leads to.

    `done`: statuses in which there is nothing left to do (asking again is no error);
    `to` None: the status stays as it is (or, for remove, the host goes)."""

    allowed: frozenset[S]
    to: S | None = None
    done: frozenset[S] = frozenset()


# Where the monitor listens to a node: everything else (maintenance, pending approval,
# install failed, ...) is left alone until a user acts.
# A host preparing for maintenance is monitored too: its VMs' migrations are observed
# through it, and a host lost meanwhile is non responsive like any other.
MONITORED = frozenset({S.UP, S.CONNECTING, S.INITIALIZING, S.NON_RESPONSIVE,
                       S.NON_OPERATIONAL, S.PREPARING_FOR_MAINTENANCE})

HOST_ACTIONS: dict[HostAction, HostTransition] = {
    # oVirt's reinstall: only while the host serves no VMs.
    HostAction.INSTALL: HostTransition(
        frozenset({S.INSTALL_FAILED, S.MAINTENANCE, S.NON_OPERATIONAL, S.DOWN}), S.INSTALLING),
    HostAction.APPROVE: HostTransition(frozenset({S.PENDING_APPROVAL}), S.INSTALLING),
    HostAction.DEACTIVATE: HostTransition(
        frozenset({S.UP, S.NON_RESPONSIVE, S.NON_OPERATIONAL, S.ERROR}), S.MAINTENANCE,
        done=frozenset({S.MAINTENANCE, S.PREPARING_FOR_MAINTENANCE})),
    # The monitor checks the node at once and brings it up when it answers.
    HostAction.ACTIVATE: HostTransition(frozenset({S.MAINTENANCE, S.NON_OPERATIONAL}),
                                        S.CONNECTING,
                                        done=frozenset({S.UP})),
    HostAction.REMOVE: HostTransition(
        frozenset({S.MAINTENANCE, S.PENDING_APPROVAL, S.INSTALL_FAILED, S.NON_RESPONSIVE,
                   S.DOWN, S.INSTALLING})),
    # The engine can only ask a host it is connected to.
    HostAction.REFRESH: HostTransition(frozenset({S.UP, S.MAINTENANCE, S.NON_OPERATIONAL})),
    # Fencing is for hosts that do not answer or are stuck (an install, a refresh), so
    # every status allows it but a node that only announced itself: not approved, it is
    # not the administrator's machine yet.
    HostAction.FENCE: HostTransition(frozenset(S) - {S.PENDING_APPROVAL}),
    HostAction.ENROLL: HostTransition(frozenset({S.INSTALLING}), S.CONNECTING),
    HostAction.FAIL_INSTALL: HostTransition(frozenset({S.INSTALLING}), S.INSTALL_FAILED),
    HostAction.MONITOR: HostTransition(MONITORED),
    # Hearing a non operational host does not bring it up: what it lacks decides that.
    # Heard while it drains, a host stays preparing for maintenance (its job decides).
    HostAction.HEAR: HostTransition(MONITORED - {S.UP, S.NON_OPERATIONAL,
                                                 S.PREPARING_FOR_MAINTENANCE}, S.UP,
                                    done=frozenset({S.UP, S.PREPARING_FOR_MAINTENANCE})),
    HostAction.MISS: HostTransition(frozenset({S.UP, S.NON_OPERATIONAL}), S.CONNECTING,
                                    done=frozenset({S.CONNECTING})),
    HostAction.LOSE: HostTransition(MONITORED - {S.NON_RESPONSIVE}, S.NON_RESPONSIVE,
                                    done=frozenset({S.NON_RESPONSIVE})),
    HostAction.RUN_VMS: HostTransition(frozenset({S.UP})),
    HostAction.LACK_NETWORKS: HostTransition(frozenset({S.UP, S.CONNECTING, S.INITIALIZING}),
                                             S.NON_OPERATIONAL,
                                             done=frozenset({S.NON_OPERATIONAL})),
    HostAction.LOSE_STORAGE: HostTransition(frozenset({S.UP}), S.NON_OPERATIONAL,
                                            done=frozenset({S.NON_OPERATIONAL})),
    HostAction.RECOVER: HostTransition(frozenset({S.NON_OPERATIONAL}), S.UP,
                                       done=frozenset({S.UP})),
    HostAction.DRAIN: HostTransition(frozenset({S.UP}), S.PREPARING_FOR_MAINTENANCE,
                                     done=frozenset({S.PREPARING_FOR_MAINTENANCE})),
    HostAction.DRAINED: HostTransition(frozenset({S.PREPARING_FOR_MAINTENANCE}),
                                       S.MAINTENANCE, done=frozenset({S.MAINTENANCE})),
    HostAction.DRAIN_FAILED: HostTransition(frozenset({S.PREPARING_FOR_MAINTENANCE}), S.UP),
    # oVirt's Kdumping: not monitored (nothing answers there), not power fenced.
    HostAction.KDUMP: HostTransition(frozenset({S.NON_RESPONSIVE}), S.KDUMPING,
                                     done=frozenset({S.KDUMPING})),
    HostAction.KDUMP_FINISHED: HostTransition(frozenset({S.KDUMPING}), S.NON_RESPONSIVE),
}

_REFUSALS = {
    HostAction.INSTALL: "Cannot install host {name}: it is {status}; it must be one of "
                        "{allowed} (switch it to maintenance first).",
    HostAction.APPROVE: "Cannot approve host {name}: it is {status}, not pending approval.",
    HostAction.DEACTIVATE: "Cannot switch host {name} to maintenance: it is {status}.",
    HostAction.ACTIVATE: "Cannot activate host {name}: it is {status}, not in maintenance or "
                         "non operational.",
    HostAction.REMOVE: "Cannot remove host {name}: it is {status}; switch it to maintenance "
                       "first.",
    HostAction.REFRESH: "Cannot refresh host {name}: it is {status}; the engine can only ask "
                        "a host it is connected to.",
    HostAction.FENCE: "Cannot fence host {name}: it is {status}; approve it first.",
    HostAction.ENROLL: "Cannot enroll host {name}: it is {status}, not installing.",
    HostAction.FAIL_INSTALL: "Host {name} is {status}, not installing.",
    HostAction.MONITOR: "Host {name} is {status}: the engine does not monitor it.",
    HostAction.HEAR: "Host {name} is {status}: the engine does not monitor it.",
    HostAction.MISS: "Host {name} is {status}: it serves no VMs, so it has no grace period.",
    HostAction.LOSE: "Host {name} is {status}: the engine does not monitor it.",
    HostAction.RUN_VMS: "Cannot run VMs on host {name}: it is {status}.",
    HostAction.LACK_NETWORKS: "Host {name} is {status}: the engine does not judge its "
                              "networks there.",
    HostAction.LOSE_STORAGE: "Host {name} is {status}: the engine does not judge its "
                             "storage there.",
    HostAction.RECOVER: "Host {name} is {status}, not non operational.",
    HostAction.DRAIN: "Cannot switch host {name} to maintenance: it is {status}.",
    HostAction.DRAINED: "Cannot switch host {name} to maintenance: it is {status}, no "
                        "longer preparing for maintenance.",
    HostAction.DRAIN_FAILED: "Host {name} is {status}, not preparing for maintenance.",
    HostAction.KDUMP: "Host {name} is {status}, not non responsive: its kdump is not awaited.",
    HostAction.KDUMP_FINISHED: "Host {name} is {status}, not kdumping.",
}


def host_action_allowed(action: HostAction, status: S) -> bool:
    """Whether `action` has something to do in `status` and may start there."""
    return status in HOST_ACTIONS[action].allowed


def check_host_action(action: HostAction, status: S, *, host_name: str) -> bool:
    """Raise Conflict, in oVirt's words, when `action` is not allowed in `status`.

    Returns False when the host is where the action leads already (nothing to do)."""
    transition = HOST_ACTIONS[action]
    if status in transition.done:
        return False
    if status not in transition.allowed:
        allowed = ", ".join(sorted(transition.allowed))
        raise Conflict(_REFUSALS[action].format(name=host_name, status=status,
                                                allowed=allowed))
    return True


def status_after(action: HostAction) -> S:
    """The status `action` leads to; only for the actions that change it."""
    status = HOST_ACTIONS[action].to
    if status is None:
        raise ValueError(f"host action {action} leaves the status as it is")
    return status
