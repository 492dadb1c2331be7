"""A volume exported over NBD on a unix socket by qemu-nbd, for one transfer.

qemu-nbd opens the volume through QEMU's block layer, so the same export serves a local
file and an `nfs://` volume, and a qcow2 volume is read and written as the guest sees it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import ClassVar

START_WITHIN_S = 30.0


class NbdExport:
    """qemu-nbd over `source` in `image_format` (`raw` serves a qcow2 file's own bytes)."""

    fail: ClassVar[type[Exception]] = RuntimeError

    def __init__(self, source: str, image_format: str, socket_path: Path, *,
                 read_only: bool, objects: list[str] | None = None) -> None:
        self.source = source
        self.objects = list(objects or [])  # `--object secret,...` (CHAP of an iSCSI LUN)
        self.image_format = image_format
        self.socket_path = socket_path
        self.read_only = read_only
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nbd:unix:{self.socket_path}"

    def argv(self, *, direct: bool) -> list[str]:
        """Direct I/O (no page cache) nearly doubles upload throughput to a local file
        (docs/benchmarks.md); QEMU's NFS client and file systems such as tmpfs lack it."""
        cache = ["--cache=none", "--aio=native"] if direct else ["--cache=writeback"]
        # A `json:` source names its own drivers (an iSCSI extent: a format over a raw
        # window of the LUN), so no --format beside it.
        fmt = [] if self.source.startswith("json:") else ["--format", self.image_format]
        return ["qemu-nbd", *self.objects, "--socket", str(self.socket_path), *fmt,
                "--persistent", "--shared=8", *cache, "--discard=unmap",
                *(["--read-only"] if self.read_only else []), self.source]

    async def start(self) -> None:
        if "://" not in self.source:
            try:
                await asyncio.to_thread(self._start, direct=True)
                return
            except self.fail:  # e.g. no O_DIRECT on this file system
                pass
        await asyncio.to_thread(self._start, direct=False)

    def _start(self, *, direct: bool) -> None:
        self.socket_path.unlink(missing_ok=True)
        self._process = subprocess.Popen(self.argv(direct=direct), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         start_new_session=True)
        deadline = time.monotonic() + START_WITHIN_S
        while not self.socket_path.exists():
            if self._process.poll() is not None or time.monotonic() > deadline:
                why = self._stop_now()
                raise self.fail(f"The volume could not be opened for transfer: {why}")
            time.sleep(0.02)

    async def stop(self) -> None:
        """Stop serving; qemu-nbd flushes the volume as it exits on SIGTERM."""
        await asyncio.to_thread(self._stop_now)

    def _stop_now(self) -> str:
        process, self._process = self._process, None
        if process is None:
            return ""
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            _, err = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, err = process.communicate()
        self.socket_path.unlink(missing_ok=True)
        return err.decode(errors="replace").strip()[-300:]
