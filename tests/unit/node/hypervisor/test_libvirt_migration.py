"""A migration policy as libvirt's flags and parameters; libvirt's job statistics read back."""

from __future__ import annotations

import libvirt
import pytest

from overt.node.hypervisor.libvirt_migration import (
    ConvergenceSteps,
    bandwidth_mib_s,
    migration_flags,
    migration_params,
    outcome_of,
    progress_of,
)
from overt.protocol.migration import MigrationOutcome, MigrationPolicy, MigrationProgress

LIVE = libvirt.VIR_MIGRATE_LIVE


def test_a_plain_policy_is_a_live_migration_only() -> None:
    assert migration_flags(MigrationPolicy(), persistent=False) == LIVE
    assert migration_flags(MigrationPolicy(), persistent=True) == (
        LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    assert migration_params(MigrationPolicy(), migration_uri=None, destination_xml=None) == {}


@pytest.mark.parametrize(("policy", "flag"), [
    (MigrationPolicy(auto_converge=True), libvirt.VIR_MIGRATE_AUTO_CONVERGE),
    (MigrationPolicy(compressed=True), libvirt.VIR_MIGRATE_COMPRESSED),
    (MigrationPolicy(encrypted=True), libvirt.VIR_MIGRATE_TLS),
    (MigrationPolicy(post_copy_after_iterations=3), libvirt.VIR_MIGRATE_POSTCOPY),
])
def test_each_switch_of_the_policy_is_its_libvirt_flag(policy: MigrationPolicy,
                                                       flag: int) -> None:
    assert migration_flags(policy, persistent=False) == LIVE | flag


def test_every_switch_together() -> None:
    policy = MigrationPolicy(auto_converge=True, compressed=True, encrypted=True,
                             post_copy_after_iterations=2)
    assert migration_flags(policy, persistent=False) == (
        LIVE | libvirt.VIR_MIGRATE_AUTO_CONVERGE | libvirt.VIR_MIGRATE_COMPRESSED
        | libvirt.VIR_MIGRATE_TLS | libvirt.VIR_MIGRATE_POSTCOPY)


def test_a_paused_policy_leaves_out_live_and_what_steers_a_running_guest() -> None:
    policy = MigrationPolicy(live=False, auto_converge=True, compressed=True,
                             post_copy_after_iterations=2)
    assert migration_flags(policy, persistent=True) == (
        libvirt.VIR_MIGRATE_COMPRESSED | libvirt.VIR_MIGRATE_PERSIST_DEST
        | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE)
    steps = ConvergenceSteps(policy)
    assert not steps.start_post_copy(progress_of({**RUNNING, "memory_iteration": 5}))
    assert not outcome_of({}, measured_ms=10, live=False).live


@pytest.mark.parametrize(("mbps", "mib_s"), [(1, 1), (8, 1), (32, 4), (100, 12), (1000, 119),
                                             (10_000, 1192)])
def test_bandwidth_in_mbps_becomes_mib_per_second(mbps: int, mib_s: int) -> None:
    assert bandwidth_mib_s(mbps) == mib_s


def test_the_parameters_carry_the_stream_uri_the_destination_xml_and_the_bandwidth() -> None:
    params = migration_params(MigrationPolicy(bandwidth_mbps=100), migration_uri="tcp://10.0.0.2",
                              destination_xml="<domain/>")
    assert params == {libvirt.VIR_MIGRATE_PARAM_URI: "tcp://10.0.0.2",
                      libvirt.VIR_MIGRATE_PARAM_DEST_XML: "<domain/>",
                      libvirt.VIR_MIGRATE_PARAM_BANDWIDTH: 12}


RUNNING = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "operation": 5, "time_elapsed": 1500,
           "data_total": 300_000_000, "data_processed": 120_000_000, "data_remaining": 180_000_000,
           "memory_total": 268_435_456, "memory_processed": 100_000_000,
           "memory_remaining": 67_108_864, "memory_iteration": 2, "downtime": 120}


def test_a_running_job_reads_as_progress() -> None:
    progress = progress_of(RUNNING)
    assert progress == MigrationProgress(
        active=True, elapsed_ms=1500, memory_total_bytes=268_435_456,
        memory_remaining_bytes=67_108_864, memory_processed_bytes=100_000_000,
        data_processed_bytes=120_000_000, iteration=2, expected_downtime_ms=120)
    assert progress.percent == 75


def test_no_job_is_no_progress() -> None:
    assert progress_of({"type": libvirt.VIR_DOMAIN_JOB_NONE}) == MigrationProgress(active=False)
    assert progress_of({}).active is False
    assert MigrationProgress(active=True).percent == 0


def test_a_completed_job_reads_as_the_outcome() -> None:
    completed = {"type": libvirt.VIR_DOMAIN_JOB_COMPLETED, "time_elapsed": 640, "downtime": 171,
                 "data_processed": 31_457_280, "memory_processed": 30_000_000,
                 "memory_iteration": 3}
    assert outcome_of(completed, measured_ms=700) == MigrationOutcome(
        total_ms=640, downtime_ms=171, transferred_bytes=31_457_280, iterations=3)


def test_without_completed_figures_the_agents_clock_gives_the_total() -> None:
    assert outcome_of({}, measured_ms=700, post_copy=True) == MigrationOutcome(
        total_ms=700, post_copy=True)


def test_the_max_downtime_is_set_once_when_the_job_has_started() -> None:
    steps = ConvergenceSteps(MigrationPolicy(max_downtime_ms=250))
    assert steps.set_downtime(MigrationProgress(active=False)) is None
    assert steps.set_downtime(progress_of(RUNNING)) == 250
    assert steps.set_downtime(progress_of(RUNNING)) is None
    assert ConvergenceSteps(MigrationPolicy()).set_downtime(progress_of(RUNNING)) is None


def test_only_a_max_downtime_or_a_live_post_copy_is_steered_while_it_runs() -> None:
    assert not ConvergenceSteps(MigrationPolicy()).steers
    assert not ConvergenceSteps(MigrationPolicy(auto_converge=True, bandwidth_mbps=10)).steers
    assert ConvergenceSteps(MigrationPolicy(max_downtime_ms=300)).steers
    assert ConvergenceSteps(MigrationPolicy(post_copy_after_iterations=3)).steers
    assert not ConvergenceSteps(MigrationPolicy(post_copy_after_iterations=3, live=False)).steers
    steps = ConvergenceSteps(MigrationPolicy(max_downtime_ms=300))
    steps.set_downtime(progress_of(RUNNING))
    assert not steps.steers  # done: nothing left to read the job for


def test_post_copy_starts_once_after_the_policys_passes() -> None:
    steps = ConvergenceSteps(MigrationPolicy(post_copy_after_iterations=3))
    assert not steps.start_post_copy(progress_of(RUNNING))  # iteration 2
    third = progress_of({**RUNNING, "memory_iteration": 3})
    assert steps.start_post_copy(third) and steps.post_copy
    assert not steps.start_post_copy(third)
    assert not ConvergenceSteps(MigrationPolicy()).start_post_copy(third)
