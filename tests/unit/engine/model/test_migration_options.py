"""Migration options: checks, a VM's over its cluster's, the policies' defaults."""

from __future__ import annotations

import uuid

import pytest

from overt.engine.model.errors import InvalidInput
from overt.engine.model.migration_options import (
    LEGACY_ID,
    MINIMAL_DOWNTIME_ID,
    POLICIES,
    POST_COPY_ID,
    SUSPEND_WORKLOAD_ID,
    VERY_LARGE_VMS_ID,
    MigrationOptions,
    check,
    check_downtime,
    check_policy_id,
    effective_policy,
)
from overt.protocol.migration import MigrationPolicy

NOTHING = MigrationOptions()


def test_inheriting_everything_is_a_plain_live_migration() -> None:
    assert effective_policy(NOTHING, NOTHING) == MigrationPolicy()
    assert effective_policy(MigrationOptions(policy_id=LEGACY_ID), NOTHING) == MigrationPolicy()


@pytest.mark.parametrize(("policy_id", "expected"), [
    (MINIMAL_DOWNTIME_ID, MigrationPolicy(auto_converge=True, max_downtime_ms=300)),
    (SUSPEND_WORKLOAD_ID, MigrationPolicy(auto_converge=True, max_downtime_ms=5000)),
    (POST_COPY_ID, MigrationPolicy(auto_converge=True, post_copy_after_iterations=3)),
    (VERY_LARGE_VMS_ID, MigrationPolicy(auto_converge=True, compressed=True,
                                        max_downtime_ms=1000)),
])
def test_each_policy_gives_its_defaults(policy_id: uuid.UUID, expected: MigrationPolicy) -> None:
    assert effective_policy(MigrationOptions(policy_id=policy_id), NOTHING) == expected


def test_the_vm_overrides_its_cluster_field_by_field() -> None:
    cluster = MigrationOptions(policy_id=MINIMAL_DOWNTIME_ID, compressed=True,
                               bandwidth_method="custom", bandwidth_mbps=500)
    vm = MigrationOptions(policy_id=POST_COPY_ID, auto_converge=False)
    assert effective_policy(cluster, vm, vm_downtime_ms=150) == MigrationPolicy(
        auto_converge=False, compressed=True, bandwidth_mbps=500, max_downtime_ms=150,
        post_copy_after_iterations=3)
    assert effective_policy(cluster, MigrationOptions(bandwidth_method="auto")) == \
        MigrationPolicy(auto_converge=True, compressed=True, max_downtime_ms=300)


def test_inherit_clears_an_override() -> None:
    vm = MigrationOptions(compressed=True, bandwidth_method="custom", bandwidth_mbps=40)
    cleared = vm.updated(MigrationOptions(inherit=frozenset({"compressed", "bandwidth_method"})))
    assert cleared == NOTHING
    assert MigrationOptions.from_json(cleared.to_json()) == NOTHING


def test_options_round_trip_through_their_stored_form() -> None:
    options = MigrationOptions(policy_id=POST_COPY_ID, auto_converge=True, encrypted=False,
                               bandwidth_method="custom", bandwidth_mbps=32)
    assert options.to_json() == {"policy_id": str(POST_COPY_ID), "auto_converge": True,
                                 "encrypted": False, "bandwidth_method": "custom",
                                 "bandwidth_mbps": 32}
    assert MigrationOptions.from_json(options.to_json()) == options


@pytest.mark.parametrize(("options", "message"), [
    (MigrationOptions(bandwidth_method="custom", bandwidth_mbps=-5),
     "bandwidth.custom_value must be a positive number of Mbps, not -5"),
    (MigrationOptions(bandwidth_mbps=0), "not 0"),
    (MigrationOptions(bandwidth_method="custom"), "custom_value is required"),
])
def test_a_bad_bandwidth_is_refused(options: MigrationOptions, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        check(options, "cluster.migration")


def test_a_bandwidth_value_alone_is_custom_and_other_methods_drop_it() -> None:
    assert check(MigrationOptions(bandwidth_mbps=10), "x").bandwidth_method == "custom"
    assert check(MigrationOptions(bandwidth_method="auto", bandwidth_mbps=10),
                 "x").bandwidth_mbps is None


def test_only_known_policies_are_accepted() -> None:
    assert check_policy_id(str(POST_COPY_ID).upper(), "vm.migration") == POST_COPY_ID
    for bad in ("not-a-uuid", str(uuid.UUID(int=7))):
        with pytest.raises(InvalidInput, match="is not a migration policy; the policies are"):
            check_policy_id(bad, "vm.migration")
    assert {p.name for p in POLICIES.values()} == {
        "Legacy", "Minimal downtime", "Suspend workload if needed", "Post-copy migration",
        "Very large VMs"}


def test_max_downtime() -> None:
    assert check_downtime(-1, "vm") is None
    assert check_downtime(None, "vm") is None
    assert check_downtime(500, "vm") == 500
    with pytest.raises(InvalidInput, match="migration_downtime must be between 1 and"):
        check_downtime(0, "vm")
