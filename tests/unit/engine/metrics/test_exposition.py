"""The scrape's text, read back by Prometheus' own parser: names and values survive any
characters a VM name may hold, and every status is exported."""

from __future__ import annotations

import math
import uuid

from prometheus_client.parser import text_string_to_metric_families

from overt.engine.metrics.exposition import render
from overt.engine.metrics.figures import FleetFigures, HostFigures, VmFigures
from overt.engine.model.status import HostStatus, VmStatus

ODD_NAME = 'web "front" \\ 1\nnext é'


def _figures() -> FleetFigures:
    up = HostFigures(id=uuid.uuid4(), name='host "a"', status=HostStatus.UP, cpu_percent=12.5,
                     memory_total_bytes=8 << 30, memory_used_bytes=3 << 30,
                     memory_free_bytes=5 << 30, last_event_age_s=2.25)
    maintenance = HostFigures(id=uuid.uuid4(), name="host-b", status=HostStatus.MAINTENANCE,
                              cpu_percent=math.nan, memory_total_bytes=0, memory_used_bytes=0,
                              memory_free_bytes=0, last_event_age_s=None)
    vm = VmFigures(id=uuid.uuid4(), name=ODD_NAME, host=up.name, cpu_percent=33.5,
                   memory_installed_bytes=2 << 30, memory_used_bytes=1 << 30)
    return FleetFigures(hosts=[up, maintenance], vms_by_status={"up": 1, "down": 4},
                        running_vms=[vm], jobs_by_status={"finished": 7}, jobs_queued=2)


def _families(figures: FleetFigures) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = render(figures, []).decode()
    return {family.name: {tuple(sorted(s.labels.items())): s.value for s in family.samples}
            for family in text_string_to_metric_families(text)}


def test_names_with_quotes_backslashes_and_newlines_survive() -> None:
    figures = _figures()
    families = _families(figures)
    vm = figures.running_vms[0]
    labels = (("host", 'host "a"'), ("id", str(vm.id)), ("vm", ODD_NAME))
    assert families["overt_vm_cpu_percent"] == {labels: 33.5}
    assert families["overt_vm_memory_used_bytes"] == {labels: float(1 << 30)}
    assert families["overt_vm_memory_installed_bytes"] == {labels: float(2 << 30)}


def test_hosts_counts_and_the_lag_of_monitored_hosts_only() -> None:
    figures = _figures()
    families = _families(figures)
    up, maintenance = figures.hosts
    assert families["overt_monitor_last_event_age_seconds"] == {
        (("host", up.name), ("id", str(up.id))): 2.25}
    assert families["overt_host_memory_used_bytes"][(("host", up.name), ("id", str(up.id)))] \
        == 3 << 30
    assert math.isnan(families["overt_host_cpu_percent"][
        (("host", maintenance.name), ("id", str(maintenance.id)))])
    hosts = {labels[0][1]: value for labels, value in families["overt_hosts"].items()}
    assert hosts == {s.value: (1.0 if s in (HostStatus.UP, HostStatus.MAINTENANCE) else 0.0)
                     for s in HostStatus}
    vms = {labels[0][1]: value for labels, value in families["overt_vms"].items()}
    assert vms["up"] == 1 and vms["down"] == 4 and set(vms) == {s.value for s in VmStatus}
    assert families["overt_jobs"][(("status", "finished"),)] == 7
    assert families["overt_jobs_queued"] == {(): 2.0}
