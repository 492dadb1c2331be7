import uuid

import pytest

from overt.engine.model.errors import NoHostAvailable
from overt.engine.model.status import HostStatus
from overt.engine.scheduler.placement import HostLoad, PlacementRequest, place


def host(name: str, memory: int = 4096, committed: int = 0, status: HostStatus = HostStatus.UP,
         vms: int = 0) -> HostLoad:
    return HostLoad(uuid.uuid5(uuid.NAMESPACE_DNS, name), name, status, memory, committed, vms)


def test_spreads_to_the_host_with_most_free_memory() -> None:
    hosts = [host("a", committed=3000), host("b", committed=1000), host("c", committed=2000)]
    assert place(PlacementRequest("vm", 512), hosts).name == "b"


def test_ties_go_to_the_host_with_fewer_vms() -> None:
    hosts = [host("a", vms=3), host("b", vms=1)]
    assert place(PlacementRequest("vm", 512), hosts).name == "b"


def test_overcommit_lets_more_fit() -> None:
    hosts = [host("a", memory=1000, committed=900)]
    with pytest.raises(NoHostAvailable):
        place(PlacementRequest("vm", 200, overcommit_percent=100), hosts)
    assert place(PlacementRequest("vm", 200, overcommit_percent=150), hosts).name == "a"


def test_a_required_host_wins_or_fails_with_its_reason() -> None:
    hosts = [host("a"), host("b", committed=3000)]
    required = hosts[1].host_id
    request = PlacementRequest("vm", 512, required_host=required, required_reason="local disk")
    assert place(request, hosts).name == "b"
    too_big = PlacementRequest("vm", 2048, required_host=required, required_reason="local disk")
    with pytest.raises(NoHostAvailable, match="a: local disk; b: not enough memory"):
        place(too_big, hosts)


def test_no_host_lists_every_reason() -> None:
    hosts = [host("a", status=HostStatus.MAINTENANCE), host("b", memory=256),
             host("c", status=HostStatus.NON_RESPONSIVE)]
    with pytest.raises(NoHostAvailable) as caught:
        place(PlacementRequest("web", 512), hosts)
    message = str(caught.value)
    assert "Cannot run VM web" in message
    assert "a: the host is maintenance" in message
    assert "b: not enough memory (256 MiB free of 256 MiB" in message
    assert "c: the host is non responsive" in message


def test_an_empty_cluster_says_so() -> None:
    with pytest.raises(NoHostAvailable, match="the cluster has no hosts"):
        place(PlacementRequest("vm", 1), [])


def test_placement_policy_hosts_bound_the_choice_and_a_migration_leaves_its_source() -> None:
    hosts = [host("a"), host("b", committed=3000), host("c", committed=2000)]
    allowed = frozenset({hosts[1].host_id, hosts[2].host_id})
    assert place(PlacementRequest("vm", 512, allowed_hosts=allowed), hosts).name == "c"
    leaving = PlacementRequest("vm", 512, allowed_hosts=allowed, leaving_host=hosts[2].host_id)
    assert place(leaving, hosts).name == "b"
    too_big = PlacementRequest("vm", 2048, allowed_hosts=allowed,
                               leaving_host=hosts[2].host_id)
    with pytest.raises(NoHostAvailable, match="a: not one of the VM's placement policy hosts; "
                       r"b: not enough memory .*; c: the VM is leaving this host"):
        place(too_big, hosts)
