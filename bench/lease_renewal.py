"""Cost of one lease renewal (read + write of a 512-byte slot) through QEMU's block layer:
a long-lived qemu-storage-daemon FUSE export (what the keeper uses) against one
`qemu-io` run per renewal.

    .venv/bin/python bench/lease_renewal.py [IMAGE]   # IMAGE: a raw file or nfs://HOST/path

Without IMAGE it makes a 1 MiB raw file in a temporary directory.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from overt.node.leases import delta
from overt.node.leases.area import FileArea
from overt.node.leases.delta import LeaseTimings

ROUNDS = 500


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="overt-lease-bench-") as tmp:
        image = sys.argv[1] if len(sys.argv) > 1 else str(Path(tmp) / "xleases")
        if len(sys.argv) == 1:
            Path(image).write_bytes(bytes(1 << 20))
        driver = "nfs" if image.startswith("nfs://") else "file"
        if driver == "file":
            node = f"driver=file,filename={image}"
        else:  # the keeper's way: QEMU's NFS driver (libnfs), as export.py opens areas
            server, _, path = image.removeprefix("nfs://").partition("/")
            node = f"driver=nfs,server.type=inet,server.host={server},path=/{path}"
        mountpoint = Path(tmp) / "area"
        mountpoint.touch()
        daemon = subprocess.Popen(
            ["qemu-storage-daemon", "--blockdev", f"{node},node-name=f",
             "--blockdev", "driver=raw,node-name=a,file=f,cache.direct=on",
             "--export", f"type=fuse,id=e,node-name=a,mountpoint={mountpoint},writable=on"])
        try:
            deadline = time.monotonic() + 10
            while mountpoint.stat().st_size == 0:
                assert time.monotonic() < deadline, "the FUSE export did not come up"
                time.sleep(0.05)
            area = FileArea(mountpoint)
            held = delta.acquire(area, 0, uuid.uuid4(), uuid.uuid4(), LeaseTimings(0.001))
            samples = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                delta.renew(held)
                samples.append((time.perf_counter() - started) * 1000)
            area.close()
        finally:
            daemon.terminate()
            daemon.wait()
        runs = []
        for _ in range(20):
            started = time.perf_counter()
            subprocess.run(["qemu-io", "-f", "raw", "-c", "read 0 512", "-c", "write 0 512",
                            image], check=True, capture_output=True)
            runs.append((time.perf_counter() - started) * 1000)
    print(f"image: {image} (cpus: {os.cpu_count()})")
    print(f"keeper renewal via qemu-storage-daemon FUSE, O_DIRECT: median "
          f"{statistics.median(samples):.3f} ms, p99 {sorted(samples)[int(ROUNDS * .99)]:.3f} ms"
          f" ({ROUNDS} renewals)")
    print(f"qemu-io per renewal: median {statistics.median(runs):.1f} ms (20 runs)")


if __name__ == "__main__":
    main()
