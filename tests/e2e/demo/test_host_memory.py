"""The host's memory as users and the scheduler see it: total and free agree with each other
and with the machine's kernel, in the API and in the host's statistics."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.demo import Demo, wait_until

pytestmark = [pytest.mark.slow]
MIB = 2**20


def meminfo_mib(field: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0]) // 1024
    raise AssertionError(f"/proc/meminfo has no {field}")


def test_the_hosts_total_and_free_memory_agree_with_the_machine(demo: Demo) -> None:
    conn = demo.connect()
    try:
        [host] = conn.system_service().hosts_service().list()
        stats_service = conn.system_service().hosts_service().host_service(host.id) \
            .statistics_service()

        def sampled() -> dict[str, int] | None:
            values = {s.name: int(s.values[0].datum) for s in stats_service.list()}
            return values if values.get("memory.total") else None

        stats = wait_until(sampled, 60, "a stats sample of the host")
        host = conn.system_service().hosts_service().host_service(host.id).get()
        assert abs(host.memory // MIB - meminfo_mib("MemTotal")) <= 1
        assert stats["memory.total"] == host.memory
        assert 0 < host.max_scheduling_memory <= host.memory
        assert stats["memory.free"] <= stats["memory.total"]
    finally:
        conn.close()
