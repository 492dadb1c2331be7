"""Stats samples: rates and percentages from two readings of cumulative counters."""

from __future__ import annotations

from dataclasses import dataclass

from overt.node.hypervisor.base import HostCounters, VmCounters
from overt.protocol.events import StatsSample
from overt.protocol.host import HostStats, NicStats, VmStats


@dataclass(frozen=True)
class Reading:
    """Counters read at one moment (`at`: monotonic seconds)."""

    at: float
    host: HostCounters
    vms: list[VmCounters]


class StatsSampler:
    """Turns successive readings into `StatsSample`s; the first reading only primes it."""

    def __init__(self) -> None:
        self._last: Reading | None = None

    def sample(self, reading: Reading) -> StatsSample | None:
        last, self._last = self._last, reading
        if last is None or reading.at <= last.at:
            return None
        return stats_between(last, reading)


def stats_between(before: Reading, after: Reading) -> StatsSample:
    interval = after.at - before.at
    return StatsSample(interval_s=round(interval, 3), host=_host_stats(before.host, after.host,
                                                                       interval),
                       vms=tuple(_vm_stats(before.vms, after.vms, interval)))


def _host_stats(before: HostCounters, after: HostCounters, interval: float) -> HostStats:
    total = after.cpu_total_ns - before.cpu_total_ns
    busy = after.cpu_busy_ns - before.cpu_busy_ns
    cpu = 100.0 * busy / total if total > 0 else 0.0
    nics = []
    for name, (rx, tx) in sorted(after.nics.items()):
        old_rx, old_tx = before.nics.get(name, (rx, tx))
        nics.append(NicStats(name=name, rx_bytes=rx, tx_bytes=tx,
                             rx_rate_bps=max(0.0, (rx - old_rx) * 8 / interval),
                             tx_rate_bps=max(0.0, (tx - old_tx) * 8 / interval)))
    total_mib = after.memory_total_kib // 1024
    free_mib = after.memory_free_kib // 1024
    return HostStats(cpu_percent=round(min(max(cpu, 0.0), 100.0), 2), memory_total_mib=total_mib,
                     memory_used_mib=max(total_mib - free_mib, 0), memory_free_mib=free_mib,
                     nics=tuple(nics))


def _vm_stats(before: list[VmCounters], after: list[VmCounters],
              interval: float) -> list[VmStats]:
    previous = {vm.domain_uuid: vm for vm in before}
    result = []
    for vm in after:
        old = previous.get(vm.domain_uuid)
        used_ns = vm.cpu_time_ns - old.cpu_time_ns if old is not None else 0
        cpu = max(0.0, 100.0 * used_ns / (interval * 1e9))
        result.append(VmStats(vm_id=vm.vm_id, name=vm.name, cpu_percent=round(cpu, 2),
                              cpu_time_ns=vm.cpu_time_ns, memory_mib=vm.memory_kib // 1024,
                              disk_read_bytes=vm.disk_read_bytes,
                              disk_write_bytes=vm.disk_write_bytes,
                              net_rx_bytes=vm.net_rx_bytes, net_tx_bytes=vm.net_tx_bytes))
    return result
