"""Which hypervisors may migrate a guest live without losing its writes, and the paused
policy the others get."""

from __future__ import annotations

from typing import Any

import pytest

from overt.engine.model.migration_safety import live_migration_hazard, paused_policy
from overt.protocol.migration import MigrationPolicy


@pytest.mark.parametrize("capabilities", [
    {"virt_mode": "qemu", "qemu_version": "7.2.22"},
    {"virt_mode": "qemu", "qemu_version": "8.2.2"},
    {"virt_mode": "qemu", "qemu_version": "5.0.0"},
])
def test_qemu_before_9_without_kvm_loses_writes(capabilities: dict[str, Any]) -> None:
    hazard = live_migration_hazard(capabilities)
    assert hazard == (f"its hypervisor is QEMU {capabilities['qemu_version']} without KVM, "
                      "whose live migration loses guest writes (fixed in QEMU 9.0)")


@pytest.mark.parametrize("capabilities", [
    {"virt_mode": "kvm", "qemu_version": "7.2.22"},  # dirty pages tracked by the kernel
    {"virt_mode": "qemu", "qemu_version": "9.0.0"},
    {"virt_mode": "qemu", "qemu_version": "10.1.0"},
    {"virt_mode": "qemu", "qemu_version": "simulated"},  # no version stated
    {}, None,
])
def test_kvm_a_fixed_qemu_or_no_stated_version_is_no_hazard(
        capabilities: dict[str, Any] | None) -> None:
    assert live_migration_hazard(capabilities) is None


def test_the_paused_policy_keeps_bandwidth_downtime_and_stream_options() -> None:
    policy = MigrationPolicy(bandwidth_mbps=200, auto_converge=True, compressed=True,
                             encrypted=True, max_downtime_ms=450, post_copy_after_iterations=3)
    assert paused_policy(policy) == MigrationPolicy(
        bandwidth_mbps=200, compressed=True, encrypted=True, max_downtime_ms=450, live=False)
