"""The host's memory as the agent reports it: total and free agree with each other and with
the kernel, in the capabilities (what the scheduler plans with) and in the stats."""

from __future__ import annotations

import asyncio
from pathlib import Path

import libvirt

from overt.node.hypervisor.libvirt_driver import LibvirtHypervisor
from overt.node.hypervisor.libvirt_host import host_memory
from overt.node.hypervisor.virt_mode_cache import VirtModeChoice, VirtType
from overt.system.daemons import LOCAL_LIBVIRT_URI


def meminfo_kib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    raise AssertionError(f"/proc/meminfo has no {field}")


def test_total_and_free_come_from_the_kernel_and_free_never_exceeds_total(
        local_libvirt: libvirt.virConnect) -> None:
    memory = host_memory(local_libvirt)
    assert abs(memory.total_kib - meminfo_kib("MemTotal")) <= 1024
    assert 0 < memory.free_kib <= memory.total_kib
    assert abs(memory.free_kib - meminfo_kib("MemAvailable")) < memory.total_kib // 4


def test_capabilities_and_stats_report_the_same_total(local_libvirt: libvirt.virConnect,
                                                      tmp_path: Path) -> None:
    async def facts() -> tuple[int, int, int]:
        hypervisor = LibvirtHypervisor(LOCAL_LIBVIRT_URI,
                                       VirtModeChoice(VirtType.QEMU, scratch_dir=tmp_path))
        await hypervisor.connect()
        try:
            capabilities = await hypervisor.capabilities()
            host, _ = await hypervisor.counters()
            return capabilities.memory_mib, host.memory_total_kib, host.memory_free_kib
        finally:
            await hypervisor.close()

    total_mib, stats_total_kib, stats_free_kib = asyncio.run(facts())
    assert total_mib == stats_total_kib // 1024
    assert abs(total_mib - meminfo_kib("MemTotal") // 1024) <= 1
    assert stats_free_kib <= stats_total_kib
