"""Does QEMU's live migration lose guest writes under TCG? (issue 16)

Two plain QEMU processes on loopback (no libvirt, no lab): the test guest boots in the
source (TCG, 128 MiB, disk opened with snapshot=on), the destination waits with
`-incoming defer -S`; the source migrates with the chosen capabilities and parameters
(QMP), and once the migration has completed both are stopped: the source in
`postmigrate`, the destination never started. Their guest memory must then be equal.
Both are dumped (`pmemsave`) and compared page by page: a page that differs is a write
the guest made on the source that the migration never carried (the destination would
run with the stale page). The kernel oops of `tests/e2e/lab/test_live_migration.py` is
one visible effect of such a page.

    PYTHONPATH=$PWD/src /work/main/.venv/bin/python -m bench.migration_memcheck \\
      --runs 10 [--auto-converge] [--bandwidth-mib 24] [--downtime-ms 450] [--busy] \\
      [--paused]

`--paused` stops the guest before the migration starts (a non-live migration): the
control, which must show no difference. `--memory-kib` with a size that is not a multiple
of 256 KiB makes QEMU sync its dirty bitmap page by page (the path that resets TCG's TLB):
the test of QEMU 7.2's lost writes (upstream fix 03bfc2188f, QEMU 9.0). Figures and
conclusions: docs/migration.md (the lab's acceptance test, "Known, cause found").
Needs root (the guest image cache).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from overt.lab.guest import BOOT_MARKER, build_guest_image

PAGE = 4096
MEMORY_MIB = 128
SKIP = range(0xA0000 // PAGE, 0x100000 // PAGE)  # VGA window and ROMs: not plain RAM


class Qmp:
    def __init__(self, path: Path) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.file = self.sock.makefile("rw")
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self) -> dict[str, object]:
        while True:
            reply: dict[str, object] = json.loads(self.file.readline())
            if "event" not in reply:
                return reply

    def cmd(self, name: str, **args: object) -> object:
        self.file.write(json.dumps({"execute": name, "arguments": args}) + "\n")
        self.file.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"{name}: {reply['error']}")
        return reply.get("return")


def _qemu(workdir: Path, tag: str, disk: Path, incoming: bool,
          memory_kib: int) -> tuple[subprocess.Popen[bytes], Qmp, Path]:
    qmp_path = workdir / f"{tag}.qmp"
    serial = workdir / f"{tag}.serial"
    argv = ["qemu-system-x86_64", "-machine", "pc,accel=tcg", "-m", f"{memory_kib}K",
            "-smp", "1", "-display", "none", "-vga", "std", "-nodefaults",
            "-drive", f"file={disk},if=virtio,format=qcow2,snapshot=on,cache=none",
            "-device", "virtio-balloon-pci", "-serial", f"file:{serial}",
            "-qmp", f"unix:{qmp_path},server=on,wait=off", "-no-user-config"]
    if incoming:
        argv += ["-incoming", "defer", "-S"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, Qmp(qmp_path), serial


def _pages(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [data[i:i + PAGE] for i in range(0, len(data), PAGE)]


def one_run(args: argparse.Namespace, image_disk: Path, port: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="ovmo-memcheck-") as tmp:
        workdir = Path(tmp)
        src, sq, serial = _qemu(workdir, "src", image_disk, False, args.memory_kib)
        dst, dq, _ = _qemu(workdir, "dst", image_disk, True, args.memory_kib)
        try:
            deadline = time.monotonic() + 120
            while not (serial.exists() and BOOT_MARKER in serial.read_text(errors="replace")):
                if time.monotonic() > deadline:
                    raise TimeoutError("boot")
                time.sleep(0.2)
            if args.busy:  # the guest rewrites 32 MiB in a loop (its keyboard's "busy")
                deadline = time.monotonic() + 60
                while "overt-test-guest: busy" not in serial.read_text(errors="replace"):
                    if time.monotonic() > deadline:
                        raise TimeoutError("busy")
                    for key in ("b", "u", "s", "y", "ret"):
                        sq.cmd("send-key", keys=[{"type": "qcode", "data": key}])
                    time.sleep(2)
            time.sleep(args.settle)
            caps = [{"capability": "auto-converge", "state": args.auto_converge},
                    {"capability": "xbzrle", "state": args.xbzrle}]
            sq.cmd("migrate-set-capabilities", capabilities=caps)
            dq.cmd("migrate-set-capabilities", capabilities=caps)
            params: dict[str, object] = {"downtime-limit": args.downtime_ms}
            params["max-bandwidth"] = (args.bandwidth_mib * 1024 * 1024
                                       if args.bandwidth_mib else 2**40)
            sq.cmd("migrate-set-parameters", **params)
            dq.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
            if args.paused:
                sq.cmd("stop")
            sq.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
            while True:
                info = sq.cmd("query-migrate")
                assert isinstance(info, dict)
                if info.get("status") in ("completed", "failed", "cancelled"):
                    break
                time.sleep(0.05)
            if info["status"] != "completed":
                raise RuntimeError(f"migration {info['status']}")
            deadline = time.monotonic() + 30
            while True:  # the destination has loaded everything once it is 'completed'
                dinfo = dq.cmd("query-migrate")
                if isinstance(dinfo, dict) and dinfo.get("status") == "completed":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"destination {dinfo}")
                time.sleep(0.05)
            size = args.memory_kib // 4 * 4 * 1024 - 1024 * 1024  # RAM below the top MiB
            sq.cmd("pmemsave", val=0, size=size, filename=str(workdir / "src.mem"))
            dq.cmd("pmemsave", val=0, size=size, filename=str(workdir / "dst.mem"))
            a, b = _pages(workdir / "src.mem"), _pages(workdir / "dst.mem")
            differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True))
                      if x != y and i not in SKIP]
            ram = info.get("ram", {})
            assert isinstance(ram, dict)
            return {"differing_pages": len(differ),
                    "first": [hex(i * PAGE) for i in differ[:8]],
                    "downtime_ms": info.get("downtime"), "total_ms": info.get("total-time"),
                    "iterations": ram.get("dirty-sync-count"),
                    "throttle": info.get("cpu-throttle-percentage")}
        finally:
            for proc in (src, dst):
                proc.kill()
                proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--auto-converge", action="store_true")
    parser.add_argument("--xbzrle", action="store_true")
    parser.add_argument("--bandwidth-mib", type=int, default=0, help="0: unlimited")
    parser.add_argument("--downtime-ms", type=int, default=300)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--paused", action="store_true")
    parser.add_argument("--busy", action="store_true", help="the guest rewrites 32 MiB")
    parser.add_argument("--memory-kib", type=int, default=MEMORY_MIB * 1024,
                        help="not a multiple of 256 KiB: QEMU syncs the dirty bitmap page by "
                        "page (its slow path, which resets TCG's TLB) instead of 64 pages at once")
    args = parser.parse_args()
    image = build_guest_image()
    hits = 0
    for run in range(args.runs):
        result = one_run(args, image.qcow2_disk, 47000 + (os.getpid() + run) % 2000)
        hits += bool(result["differing_pages"])
        print(json.dumps({"run": run, **result}), flush=True)
    print(json.dumps({"runs": args.runs, "runs_with_lost_writes": hits, "settings": vars(args)}))


if __name__ == "__main__":
    main()
