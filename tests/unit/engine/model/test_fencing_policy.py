"""The rules a lost host is judged by: its grace period and whether it may be fenced."""

from __future__ import annotations

from overt.engine.model.fencing_policy import (
    FencingPolicy,
    Liveness,
    fence_verdict,
    grace_period_s,
)


def _verdict(policy: FencingPolicy, *, pm: bool = True, hosts: int = 4, lost: int = 1,
             storage: Liveness = Liveness.UNKNOWN) -> tuple[bool, str]:
    found = fence_verdict(policy, host_name="h1", power_management=pm, cluster_hosts=hosts,
                          unreachable_hosts=lost, storage=storage)
    return found.fence, found.reason


def test_the_grace_is_ovirts_and_grows_with_the_vms() -> None:
    assert grace_period_s(FencingPolicy(), 0) == 60.0
    assert grace_period_s(FencingPolicy(), 10) == 65.0
    assert grace_period_s(FencingPolicy(grace_s=5, grace_per_vm_s=1), 3) == 8.0


def test_a_lost_host_with_power_management_is_fenced_by_default() -> None:
    assert _verdict(FencingPolicy()) == (True, "host h1 is non responsive")


def test_the_policy_and_power_management_can_hold_a_fence_back() -> None:
    assert _verdict(FencingPolicy(enabled=False))[0] is False
    assert _verdict(FencingPolicy(), pm=False) == (
        False, "host h1 has no power management configured")


def test_a_cluster_wide_outage_skips_fencing_only_at_the_threshold() -> None:
    policy = FencingPolicy(skip_if_connectivity_broken=True, connectivity_threshold=50)
    assert _verdict(policy, hosts=4, lost=1)[0] is True
    assert _verdict(policy, hosts=4, lost=2)[0] is False
    assert _verdict(FencingPolicy(), hosts=4, lost=4)[0] is True  # the skip is off


def test_storage_activity_skips_only_when_known_active() -> None:
    policy = FencingPolicy(skip_if_sd_active=True)
    assert _verdict(policy, storage=Liveness.ACTIVE) == (
        False, "host h1 still renews its storage leases")
    assert _verdict(policy, storage=Liveness.INACTIVE) == (True, "host h1 is non responsive")
    fence, reason = _verdict(policy, storage=Liveness.UNKNOWN)
    assert fence and "unknown" in reason


def test_the_stored_form_round_trips_and_ignores_unknown_keys() -> None:
    policy = FencingPolicy(enabled=False, connectivity_threshold=20, grace_s=9)
    assert FencingPolicy.from_json({**policy.to_json(), "old": 1}) == policy
    assert FencingPolicy.from_json({}) == FencingPolicy()
