"""The affinity rules as `place()` applies them: enforcing rules filter with the group's
name in the reason, soft rules outweigh free memory, weighted by priority."""

import uuid

import pytest

from overt.engine.model.errors import NoHostAvailable
from overt.engine.model.status import HostStatus
from overt.engine.scheduler.affinity import AffinityConstraint, RuleKind
from overt.engine.scheduler.placement import HostLoad, PlacementRequest, place


def _id(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_DNS, name)


def host(name: str, committed: int = 0) -> HostLoad:
    return HostLoad(_id(name), name, HostStatus.UP, 4096, committed, 0)


HOSTS = [host("a"), host("b", committed=1000), host("c", committed=2000)]  # a is roomiest


def vms_rule(positive: bool, enforcing: bool, peers: dict[str, tuple[str, ...]],
             group: str = "g", priority: float = 1.0) -> AffinityConstraint:
    return AffinityConstraint(group, RuleKind.VMS, positive, enforcing, priority,
                              {_id(h): names for h, names in peers.items()})


def hosts_rule(positive: bool, enforcing: bool, hosts: list[str], group: str = "g",
               priority: float = 1.0) -> AffinityConstraint:
    return AffinityConstraint(group, RuleKind.HOSTS, positive, enforcing, priority,
                              {_id(h): () for h in hosts})


def chosen(*rules: AffinityConstraint) -> str:
    return place(PlacementRequest("vm", 512, affinity=rules), HOSTS).name


def test_enforcing_vm_rules_filter() -> None:
    assert chosen(vms_rule(True, True, {"c": ("db",)})) == "c"
    assert chosen(vms_rule(False, True, {"a": ("db",)})) == "b"
    assert chosen(vms_rule(True, True, {})) == "a"  # no peer running: no constraint


def test_enforcing_host_rules_filter() -> None:
    assert chosen(hosts_rule(True, True, ["b", "c"])) == "b"
    assert chosen(hosts_rule(False, True, ["a", "b"])) == "c"
    assert chosen(hosts_rule(True, True, [])) == "a"  # a group without hosts says nothing


def test_soft_rules_outweigh_memory_and_priority_decides_between_them() -> None:
    assert chosen(vms_rule(True, False, {"c": ("db",)})) == "c"
    assert chosen(hosts_rule(False, False, ["a"])) == "b"
    # Two soft rules pulling apart: the higher priority wins.
    assert chosen(hosts_rule(True, False, ["c"], priority=1.0),
                  hosts_rule(True, False, ["b"], priority=3.0)) == "b"


def test_peers_on_two_hosts_leave_no_host_for_a_positive_enforcing_rule() -> None:
    with pytest.raises(NoHostAvailable) as refused:
        chosen(vms_rule(True, True, {"a": ("x",), "b": ("y",)}, group="pair"))
    message = str(refused.value)
    assert "a: positive enforcing affinity group pair keeps the VM with VM(s) y" in message
    assert "b: positive enforcing affinity group pair keeps the VM with VM(s) x" in message
    assert "c: positive enforcing affinity group pair keeps the VM with VM(s) x, y" in message
