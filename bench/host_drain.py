"""Maintenance of a host running ten VMs: the engine's own time to drain it.

Runs the fast lane's in-process engine (worker, monitor, SQLite in memory) with three
simulated nodes: the first runs the ten VMs (256 MiB each), the other two receive them.
Times `deactivate` until the drain job has ended and the host is in maintenance (ten
migration jobs, each reserved, run and observed), then activates the host and moves the
VMs back for the next run. The simulated hypervisor migrates at once: this is the
engine's share of a drain (jobs, reservations, the monitor's handovers), not QEMU's.
Usage: .venv/bin/python -m bench.host_drain [--runs 5] [--vms 10]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from tests.support import schema
from tests.support.loopback import LoopbackEngine

from overt.engine.db.database import Database
from overt.engine.db.seed import seed
from overt.engine.db.tables import Host, User
from overt.engine.model.status import HostStatus, VmStatus
from overt.engine.queries.lookup import Ref
from overt.engine.services import hosts, vms


async def _drain(engine: LoopbackEngine, host_id: uuid.UUID) -> float:
    start = time.perf_counter()
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        job = await hosts.deactivate_host(session, engine.jobs, host_id, user)
    assert job is not None
    ended = await engine.job(job.id)
    elapsed = time.perf_counter() - start
    async with engine.session() as session:
        host = await session.get(Host, host_id)
        assert ended.state == "done" and host is not None \
            and host.status == HostStatus.MAINTENANCE, ended.error
    return elapsed


async def _bring_back(engine: LoopbackEngine, host_id: uuid.UUID,
                      vm_ids: list[uuid.UUID]) -> None:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await hosts.activate_host(session, host_id, user)
    await engine.settled()
    jobs = [await engine.act(vms.migrate_vm, vm_id, host=Ref(name="h1")) for vm_id in vm_ids]
    for job in jobs:
        assert (await engine.job(job.id)).state == "done"
    for vm_id in vm_ids:
        await engine.vm_reaches(vm_id, [VmStatus.UP])


async def run(runs: int, count: int) -> list[float]:
    scratch = Path(tempfile.mkdtemp(prefix="overt-bench-drain-"))
    try:
        shutil.copyfile(schema.migrated_sqlite(), scratch / "engine.db")
        database = Database(f"sqlite:///{scratch}/engine.db")
        await seed(database)
        engine = LoopbackEngine(database, scratch / "nodes")
        await engine.start()
        try:
            source = await engine.add_host("h1", memory_mib=64 * 1024)
            await engine.add_host("h2", memory_mib=16 * 1024)
            await engine.add_host("h3", memory_mib=16 * 1024)
            vm_ids = [await engine.add_vm(f"vm{n}") for n in range(count)]
            for vm_id in vm_ids:
                assert (await engine.job((await engine.act(vms.start_vm, vm_id)).id)
                        ).state == "done"
            times = []
            for _ in range(runs):
                times.append(await _drain(engine, source.host_id))
                await _bring_back(engine, source.host_id, vm_ids)
            return times
        finally:
            await engine.stop()
            await database.dispose()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--vms", type=int, default=10)
    args = parser.parse_args()
    times = asyncio.run(run(args.runs, args.vms))
    print(f"drain of a host running {args.vms} VMs (simulated nodes), {args.runs} runs: "
          f"median {statistics.median(times):.2f} s, min {min(times):.2f} s, "
          f"max {max(times):.2f} s")


if __name__ == "__main__":
    main()
