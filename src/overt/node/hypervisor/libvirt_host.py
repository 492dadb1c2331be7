"""Facts about the host as libvirt reports them: capabilities XML, versions, counters."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import libvirt

from overt.node.hypervisor.base import HostCounters
from overt.node.hypervisor.domain_xml import parse_libvirt_xml


@dataclass(frozen=True)
class HostCpu:
    host_uuid: uuid.UUID
    model: str
    sockets: int
    cores: int  # per socket
    threads: int  # per core


def parse_capabilities(xml: str) -> HostCpu:
    """The host UUID and CPU of `virConnectGetCapabilities`' XML."""
    host = parse_libvirt_xml(xml).find("host")
    if host is None:
        raise ValueError("libvirt's capabilities have no <host> element")
    topology = host.find("cpu/topology")
    attr = topology.attrib if topology is not None else {}
    return HostCpu(
        host_uuid=uuid.UUID(host.findtext("uuid", "")),
        model=host.findtext("cpu/model") or host.findtext("cpu/arch") or "unknown",
        sockets=int(attr.get("sockets", "1")),
        cores=int(attr.get("cores", "1")),
        threads=int(attr.get("threads", "1")),
    )


def version_string(number: int) -> str:
    """libvirt's packed version (major * 1,000,000 + minor * 1,000 + micro) as text."""
    major, rest = divmod(number, 1_000_000)
    minor, micro = divmod(rest, 1_000)
    return f"{major}.{minor}.{micro}"


@dataclass(frozen=True)
class HostMemory:
    total_kib: int
    free_kib: int  # free + buffers + page cache: what guests can get


def host_memory(conn: libvirt.virConnect) -> HostMemory:
    """The host's memory total and free from one source, libvirt's node memory stats (the
    kernel's own counters). `virNodeGetInfo`'s figure is not used: in a container or under
    memory hotplug it can disagree with the counters free memory comes from. Blocking."""
    memory = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS, 0)
    free = memory.get("free", 0) + memory.get("buffers", 0) + memory.get("cached", 0)
    total = memory.get("total", 0)
    return HostMemory(total_kib=total, free_kib=min(free, total))


def host_counters(conn: libvirt.virConnect, nics: dict[str, tuple[int, int]]) -> HostCounters:
    """CPU and memory counters of the host now. Blocking."""
    cpu = conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS, 0)
    busy = cpu.get("kernel", 0) + cpu.get("user", 0)
    total = busy + cpu.get("idle", 0) + cpu.get("iowait", 0)
    memory = host_memory(conn)
    return HostCounters(cpu_busy_ns=busy, cpu_total_ns=total, memory_total_kib=memory.total_kib,
                        memory_free_kib=memory.free_kib, nics=nics)


def block_stats_skipped(stats: dict[str, int]) -> bool:
    """Whether a bulk-stats record names disks but has none of their I/O counters: libvirt
    left them out because the domain's job was held (`..._STATS_NOWAIT`)."""
    count = int(stats.get("block.count", 0))
    return count > 0 and not any(f"block.{i}.rd.bytes" in stats for i in range(count))


def sum_indexed(stats: dict[str, int], group: str, field: str) -> int:
    """Sum `group.N.field` over N < `group.count` in a bulk-stats record."""
    count = int(stats.get(f"{group}.count", 0))
    return sum(int(stats.get(f"{group}.{i}.{field}", 0)) for i in range(count))
