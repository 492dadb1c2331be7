"""How monitors share the event partitions: every member computes the same shares."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from overt.bus.amqp.topology import EVENT_PARTITIONS, event_partition
from overt.engine.monitor.partitions import share_out, spread


def _fleet(count: int) -> set[uuid.UUID]:
    return {uuid.uuid5(uuid.NAMESPACE_DNS, f"node-{n}.example") for n in range(count)}


def test_one_monitor_takes_every_partition() -> None:
    assert share_out([0] * EVENT_PARTITIONS, [3]) == {3: frozenset(range(EVENT_PARTITIONS))}


def test_an_empty_fleet_is_shared_by_partition_count() -> None:
    shares = share_out([0] * EVENT_PARTITIONS, [0, 1, 2])
    assert sorted(len(share) for share in shares.values()) == [10, 11, 11]


def test_a_second_monitor_takes_half_the_nodes_off_the_first() -> None:
    weights = spread(_fleet(1000))
    alone = share_out(weights, [0])[0]
    shares = share_out(weights, [0, 1])
    assert shares[0] | shares[1] == alone and not shares[0] & shares[1]
    loads = [sum(weights[p] for p in share) for share in shares.values()]
    assert abs(loads[0] - loads[1]) <= max(weights)


@given(weights=st.lists(st.integers(0, 50), min_size=EVENT_PARTITIONS,
                        max_size=EVENT_PARTITIONS),
       members=st.lists(st.integers(0, 255), min_size=1, max_size=8, unique=True))
def test_shares_cover_every_partition_once_and_differ_by_at_most_one_partition_weight(
        weights: list[int], members: list[int]) -> None:
    members.sort()
    shares = share_out(weights, members)
    assert share_out(weights, members) == shares  # every monitor computes the same
    taken = [p for share in shares.values() for p in share]
    assert sorted(taken) == list(range(EVENT_PARTITIONS))
    loads = [sum(weights[p] for p in share) for share in shares.values()]
    assert max(loads) - min(loads) <= max(weights)


def test_a_node_always_lands_in_the_same_partition() -> None:
    host = uuid.UUID("6f1b3c2e-0d4f-4a57-9a0e-1f2b3c4d5e6f")
    assert event_partition(host) == event_partition(uuid.UUID(str(host)))
    assert sum(spread(_fleet(320))) == 320
