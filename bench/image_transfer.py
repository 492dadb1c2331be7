"""Disk upload throughput: the SDK's upload flow (`ovirt_imageio.client.upload` to a
transfer's URL, the engine's imageio daemon, qemu-nbd over the volume) against
`qemu-img convert` of the same image into the same kind of volume in the same directory.

Runs a real engine (SQLite, no node) in this process; the image is a qcow2 with
`--data-mib` of random data spread over a `--size-mib` disk. Prints the median of
`--runs` alternating runs of each. Usage:
    .venv/bin/python -m bench.image_transfer [--size-mib 2048] [--data-mib 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
from ovirt_imageio import client
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

from overt.engine.db.tables import Disk, StorageDomain
from overt.engine.model.status import DiskStatus, StorageDomainStatus, StorageType

MIB = 1 << 20


def make_source(path: Path, size_mib: int, data_mib: int) -> None:
    """A qcow2 image with `data_mib` of random data in 8 MiB runs, holes between."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), f"{size_mib}M"],
                   check=True)
    runs, step = data_mib // 8, size_mib // max(1, data_mib // 8)
    noise = path.with_suffix(".noise")
    subprocess.run(["dd", "if=/dev/urandom", f"of={noise}", "bs=1M", "count=8", "status=none"],
                   check=True)
    commands: list[str] = []
    for n in range(runs):
        commands += ["-c", f"write -s {noise} {n * step}M 8M"]
    subprocess.run(["qemu-io", "-f", "qcow2", *commands, str(path)], check=True,
                   capture_output=True)
    noise.unlink()


def add_disk(engine: RunningEngine, sd_id: uuid.UUID, directory: Path, size_mib: int) -> uuid.UUID:
    disk_id = uuid.uuid4()
    image = f"images/{disk_id}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(directory / image),
                    f"{size_mib}M"], check=True)

    async def go() -> None:
        async with engine.runtime.db.transaction() as session:
            session.add(Disk(id=disk_id, name=f"bench-{disk_id.hex[:6]}", storage_domain_id=sd_id,
                             provisioned_size=size_mib * MIB, format="cow", sparse=True,
                             status=DiskStatus.OK, image_path=image))
    asyncio.run_coroutine_threadsafe(go(), engine.loop).result(timeout=30)
    return disk_id


def add_domain(engine: RunningEngine, directory: Path) -> uuid.UUID:
    sd_id = uuid.uuid4()
    (directory / "images").mkdir(parents=True)

    async def go() -> None:
        async with engine.runtime.db.transaction() as session:
            session.add(StorageDomain(id=sd_id, name="bench", path=str(directory),
                                      storage_type=StorageType.LOCALFS.value,
                                      status=StorageDomainStatus.ACTIVE))
    asyncio.run_coroutine_threadsafe(go(), engine.loop).result(timeout=30)
    return sd_id


def upload(connection: sdk.Connection, engine: RunningEngine, disk_id: uuid.UUID,
           source: Path) -> float:
    """upload_disk.py's steps: add the transfer, upload, finalize and wait for success."""
    start = time.perf_counter()
    transfers = connection.system_service().image_transfers_service()
    transfer = transfers.add(types.ImageTransfer(
        disk=types.Disk(id=str(disk_id)), direction=types.ImageTransferDirection.UPLOAD,
        format=types.DiskFormat.RAW))
    client.upload(str(source), transfer.transfer_url, str(engine.ca_file))
    service = transfers.image_transfer_service(transfer.id)
    service.finalize()
    while service.get().phase != types.ImageTransferPhase.FINISHED_SUCCESS:
        time.sleep(0.05)
    return time.perf_counter() - start


def convert(source: Path, target: Path, size_mib: int) -> float:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(target), f"{size_mib}M"],
                   check=True)
    start = time.perf_counter()
    subprocess.run(["qemu-img", "convert", "-n", "-f", "qcow2", "-O", "qcow2", "-t", "writeback",
                    str(source), str(target)], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=2048)
    parser.add_argument("--data-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        work = Path(tmp)
        source = work / "source.qcow2"
        make_source(source, args.size_mib, args.data_mib)
        engine = start_engine(work / "engine", transport=NoNodes())
        try:
            sd_id = add_domain(engine, work / "domain")
            connection = sdk.Connection(url=engine.url, username="admin@internal",
                                        password=engine.password, ca_file=str(engine.ca_file))
            imageio, qemu = [], []
            for n in range(args.runs):
                disk_id = add_disk(engine, sd_id, work / "domain", args.size_mib)
                imageio.append(upload(connection, engine, disk_id, source))
                qemu.append(convert(source, work / "domain" / "images" / f"convert-{n}.qcow2",
                                    args.size_mib))
            connection.close()
        finally:
            engine.stop()
    up, qi = statistics.median(imageio), statistics.median(qemu)
    print(f"image: {args.size_mib} MiB virtual, {args.data_mib} MiB data, {args.runs} runs")
    print(f"qemu-img convert   median {qi:.2f} s  {args.data_mib / qi:.0f} MiB/s of data")
    print(f"SDK upload flow    median {up:.2f} s  {args.data_mib / up:.0f} MiB/s of data")
    print(f"ratio (convert time / upload time): {qi / up:.2f}")


if __name__ == "__main__":
    main()
