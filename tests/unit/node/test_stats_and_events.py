"""Stats from counters, and the numbering of a node's events."""

from __future__ import annotations

import uuid

from overt.node.events import EventSequencer
from overt.node.host_nics import parse_proc_net_dev
from overt.node.hypervisor.base import HostCounters, VmCounters
from overt.node.stats import Reading, StatsSampler
from overt.protocol.events import Heartbeat, StatsSample
from overt.protocol.host import HostStats

VM = uuid.uuid4()


def _reading(at: float, busy: int, total: int, cpu_ns: int, rx: int) -> Reading:
    host = HostCounters(cpu_busy_ns=busy, cpu_total_ns=total, memory_total_kib=8 << 20,
                        memory_free_kib=6 << 20, nics={"eth0": (rx, 0)})
    vm = VmCounters(vm_id=VM, name="web", domain_uuid=VM, cpu_time_ns=cpu_ns,
                    memory_kib=262144, disk_read_bytes=10)
    return Reading(at, host, [vm])


def test_the_first_reading_only_primes_the_sampler() -> None:
    assert StatsSampler().sample(_reading(0, 0, 0, 0, 0)) is None


def test_rates_and_percentages_between_two_readings() -> None:
    sampler = StatsSampler()
    sampler.sample(_reading(10.0, 1_000, 10_000, 1_000_000_000, 1000))
    sample = sampler.sample(_reading(12.0, 3_500, 20_000, 2_000_000_000, 3000))
    assert sample is not None and sample.interval_s == 2.0
    assert sample.host.cpu_percent == 25.0
    assert sample.host.memory_total_mib == 8192 and sample.host.memory_used_mib == 2048
    assert sample.host.nics[0].rx_rate_bps == 8000.0
    vm = sample.vms[0]
    assert vm.cpu_percent == 50.0 and vm.cpu_time_ns == 2_000_000_000 and vm.memory_mib == 256


def test_a_vm_seen_for_the_first_time_has_no_cpu_rate_yet() -> None:
    sampler = StatsSampler()
    first = _reading(0.0, 0, 1, 0, 0)
    sampler.sample(Reading(first.at, first.host, []))
    sample = sampler.sample(_reading(1.0, 1, 2, 5_000_000_000, 0))
    assert sample is not None and sample.vms[0].cpu_percent == 0.0


def test_sequenced_events_count_from_one_and_stats_have_no_number() -> None:
    host = uuid.uuid4()
    sequencer = EventSequencer(host)
    beats = [sequencer.sequenced(Heartbeat(vm_count=0, free_memory_mib=1, uptime_s=i))
             for i in range(3)]
    assert [b.seq for b in beats] == [1, 2, 3] and sequencer.last_seq == 3
    assert {b.boot_id for b in beats} == {sequencer.boot_id}
    stats = sequencer.lossy(StatsSample(interval_s=1, host=HostStats(
        cpu_percent=0, memory_total_mib=1, memory_used_mib=0, memory_free_mib=1)))
    assert stats.seq is None and sequencer.last_seq == 3
    assert EventSequencer(host).boot_id != sequencer.boot_id


def test_proc_net_dev_is_parsed() -> None:
    text = ("Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n"
            "    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n"
            "  eth0: 5000 10 0 0 0 0 0 0 7000 12 0 0 0 0 0 0\n")
    assert parse_proc_net_dev(text) == {"eth0": (5000, 7000)}
