"""The domain type is chosen by booting a probe domain once, then remembered."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest

from overt.node.hypervisor.virt_mode_cache import VirtModeChoice, VirtType
from overt.protocol.host import VirtMode

pytestmark = pytest.mark.vm


def test_the_probe_picks_a_domain_type_that_boots_and_remembers_it(
        local_libvirt: libvirt.virConnect, vm_dir: Path) -> None:
    cache = vm_dir / "virt-mode.json"
    choice = VirtModeChoice(VirtType.AUTO, vm_dir / "probe", cache)
    mode = choice.resolve(local_libvirt)
    assert mode in (VirtMode.KVM, VirtMode.QEMU)
    assert mode.value in cache.read_text()
    assert not [d for d in local_libvirt.listAllDomains(0)
                if d.name().startswith("overt-kvm-probe-")]
    assert choice.resolve(local_libvirt) is mode  # from the cache, no second probe
    forced = VirtModeChoice(VirtType.QEMU, vm_dir / "probe")
    assert forced.resolve(local_libvirt) is VirtMode.QEMU
