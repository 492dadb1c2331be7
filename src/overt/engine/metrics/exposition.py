"""The fleet's figures as Prometheus metric families, and one scrape's text.

Every status oVirt defines is exported, with 0 when nothing has it, so a series never
vanishes when its last host or VM changes status (alerts on `== 0` keep working).
Per-host and per-VM series are labelled by name and id (names can be reused, ids
not); a VM's series also name its host.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from overt.engine.metrics.figures import FleetFigures
from overt.engine.model.status import HostStatus, JobStatus, VmStatus

HOST_LABELS = ["host", "id"]
VM_LABELS = ["vm", "id", "host"]


class FleetCollector(Collector):
    """One scrape's figures (read before: collecting is synchronous, the database is not)."""

    def __init__(self, figures: FleetFigures) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        yield from _counts(self.figures)
        yield from _hosts(self.figures)
        yield from _vms(self.figures)


def _by_status(name: str, doc: str, values: Iterable[str], counts: dict[str, int]
               ) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=["status"])
    for status in sorted({*values, *counts}):
        family.add_metric([status], counts.get(status, 0))
    return family


def _counts(figures: FleetFigures) -> Iterator[Metric]:
    yield _by_status("overt_hosts", "Hosts by status (oVirt's host status values).",
                     (s.value for s in HostStatus), figures.hosts_by_status)
    yield _by_status("overt_vms", "Virtual machines by status (oVirt's VM status values).",
                     (s.value for s in VmStatus), figures.vms_by_status)
    yield _by_status("overt_jobs", "Jobs the engine keeps, by status (oVirt's job status "
                     "values).", (s.value for s in JobStatus), figures.jobs_by_status)
    yield GaugeMetricFamily("overt_jobs_queued", "Jobs waiting for a worker (new or waiting "
                            "to be retried).", value=figures.jobs_queued)


def _hosts(figures: FleetFigures) -> Iterator[Metric]:
    cpu = GaugeMetricFamily("overt_host_cpu_percent", "A host's CPU use, from its newest "
                            "stats sample.", labels=HOST_LABELS)
    total = GaugeMetricFamily("overt_host_memory_total_bytes", "A host's memory.",
                              labels=HOST_LABELS)
    used = GaugeMetricFamily("overt_host_memory_used_bytes", "A host's used memory, from its "
                             "newest stats sample.", labels=HOST_LABELS)
    free = GaugeMetricFamily("overt_host_memory_free_bytes", "A host's free memory.",
                             labels=HOST_LABELS)
    age = GaugeMetricFamily("overt_monitor_last_event_age_seconds", "Seconds since the "
                            "monitor last applied an event of a host (heartbeat, VM event or "
                            "full report): the monitor's lag behind the host. Monitored "
                            "hosts only.", labels=HOST_LABELS)
    for host in figures.hosts:
        labels = [host.name, str(host.id)]
        cpu.add_metric(labels, host.cpu_percent)
        total.add_metric(labels, host.memory_total_bytes)
        used.add_metric(labels, host.memory_used_bytes)
        free.add_metric(labels, host.memory_free_bytes)
        if host.last_event_age_s is not None:
            age.add_metric(labels, host.last_event_age_s)
    yield from (cpu, total, used, free, age)


def _vms(figures: FleetFigures) -> Iterator[Metric]:
    cpu = GaugeMetricFamily("overt_vm_cpu_percent", "A running VM's CPU use, from its newest "
                            "stats sample.", labels=VM_LABELS)
    installed = GaugeMetricFamily("overt_vm_memory_installed_bytes", "A running VM's "
                                  "configured memory.", labels=VM_LABELS)
    used = GaugeMetricFamily("overt_vm_memory_used_bytes", "A running VM's used memory, from "
                             "its newest stats sample.", labels=VM_LABELS)
    for vm in figures.running_vms:
        labels = [vm.name, str(vm.id), vm.host]
        cpu.add_metric(labels, vm.cpu_percent)
        installed.add_metric(labels, vm.memory_installed_bytes)
        used.add_metric(labels, vm.memory_used_bytes)
    yield from (cpu, installed, used)


def render(figures: FleetFigures, process_collectors: Iterable[Collector]) -> bytes:
    """The text exposition of one scrape: the fleet's figures and this process's own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(figures))
    for collector in process_collectors:
        registry.register(collector)
    return generate_latest(registry)
