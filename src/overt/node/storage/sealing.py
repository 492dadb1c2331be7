"""Sealing a template's volume (oVirt's `seal=true`): `virt-sysprep` removes what makes a
Linux guest one machine (machine-id, SSH host keys, logs, cloud-init's state, ...).

libguestfs boots a small appliance of its own (QEMU, the host's kernel), which opens the
volume. A local file is opened as it is; a volume of a shared domain is exported first by
`qemu-nbd` on a private socket (QEMU's own NFS or iSCSI client reads it: hosts have no
NFS or iSCSI mount) and the appliance reads that. Where KVM does not work, the appliance
runs under TCG (`force_tcg`), as the node's VMs do.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from overt.node.errors import NodeFailure
from overt.node.storage import chap, iscsi_domain, nfs_domain
from overt.node.storage.local import LocalVolumes
from overt.protocol import ErrorCode
from overt.protocol.storage import SealProgress, SealReport, VolumeSeal
from overt.protocol.vm import FileSource, IscsiSource, NfsSource

log = logging.getLogger(__name__)

# virt-sysprep's default operations, less `customize`: in libguestfs 1.48 that one writes
# a new random machine-id (one for every VM of the template); an empty file makes systemd
# make one at each VM's first boot.
OPERATIONS = "defaults,-customize"
_PERFORMING = re.compile(r'Performing "([^"]+)"')
_NBD_READY_S = 30.0


async def seal_volume(command: VolumeSeal, volumes: LocalVolumes, *, tcg: bool
                      ) -> SealReport:
    """Run virt-sysprep on the volume; its error is the failure's message."""
    started = time.monotonic()
    volume = command.volume
    if isinstance(volume, FileSource):
        path = volumes.existing(volume.path, "the volume to seal")
        out = await run_sysprep(["--format", command.format.value, "-a", str(path)],
                                command.timeout_s, tcg=tcg, said=_said(volume))
    else:
        async with nbd_export(command) as socket:
            out = await run_sysprep(["--format", "raw", "-a", f"nbd://?socket={socket}"],
                                    command.timeout_s, tcg=tcg, said=_said(volume))
    report = SealReport(operations=_PERFORMING.findall(out),
                        seconds=round(time.monotonic() - started, 1))
    log.info("volume sealed", extra={"volume": _said(volume), "seconds": report.seconds})
    return report


def _said(volume: FileSource | NfsSource | IscsiSource) -> str:
    if isinstance(volume, NfsSource):
        return nfs_domain.image_url(volume.server, volume.path)
    if isinstance(volume, IscsiSource):
        return f"a volume of {iscsi_domain.lun_url(volume)}"
    return volume.path


def _sysprep_env(tcg: bool) -> dict[str, str]:
    env = {**os.environ, "LIBGUESTFS_BACKEND": "direct"}
    if tcg:
        env["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg"
    return env


async def run_sysprep(disk_args: list[str], timeout_s: float, *, tcg: bool, said: str) -> str:
    """virt-sysprep's output; NodeFailure with its error lines if it fails or overruns.
    Its lines are followed as they come, for `progress_of` (keyed by `said`)."""
    argv = ["virt-sysprep", "--operations", OPERATIONS, *disk_args]
    total = await _default_operations()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=_sysprep_env(tcg), start_new_session=True)
    except FileNotFoundError:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, "sealing needs virt-sysprep on the "
                          "host (Debian package guestfs-tools)") from None
    _running[said] = SealProgress(running=True, stage="starting", percent=0)
    lines: list[str] = []

    async def follow() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            _running[said] = _advanced(_running[said], line, total)
        await proc.wait()
    try:
        await asyncio.wait_for(follow(), timeout_s)
    except TimeoutError:
        _kill_group(proc.pid)
        await proc.wait()
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR, f"sealing {said} failed: virt-sysprep "
                          f"did not finish within {timeout_s:.0f} s") from None
    except asyncio.CancelledError:
        _kill_group(proc.pid)
        raise
    finally:
        _running.pop(said, None)
    out = "".join(lines)
    if proc.returncode != 0:
        raise NodeFailure(ErrorCode.HYPERVISOR_ERROR,
                          f"sealing {said} failed: {error_of(out)}")
    return out


_running: dict[str, SealProgress] = {}
_defaults: list[int] = []


def progress_of(volume: FileSource | NfsSource | IscsiSource) -> SealProgress:
    """How far the seal of `volume` running on this node is (not running: said so)."""
    return _running.get(_said(volume), SealProgress(running=False))


def _advanced(progress: SealProgress, line: str, total: int) -> SealProgress:
    """Examining the guest boots libguestfs's appliance (most of the time under TCG); then
    each operation virt-sysprep performs moves the rest of the way."""
    if "Examining the guest" in line:
        return SealProgress(running=True, stage="examining the guest", percent=10)
    performed = _PERFORMING.search(line)
    if performed is None:
        return progress
    done = progress.operations_done + 1
    return SealProgress(running=True, stage=performed.group(1), operations_done=done,
                        percent=min(99, 10 + 90 * done // max(total, 1)))


async def _default_operations() -> int:
    """How many operations virt-sysprep performs (its defaults, less customize)."""
    if not _defaults:
        try:
            proc = await asyncio.create_subprocess_exec(
                "virt-sysprep", "--list-operations", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
        except OSError:
            return 36  # libguestfs 1.48's count; the progress is an estimate then
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 5)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return 36
        listed = [line.split() for line in out.decode(errors="replace").splitlines()]
        count = sum(1 for words in listed
                    if len(words) > 1 and words[1] == "*" and words[0] != "customize")
        if not count:
            return 36
        _defaults.append(count)
    return _defaults[0]


def error_of(out: str) -> str:
    """virt-sysprep's own error line(s), else its last line."""
    errors = [line.strip() for line in out.splitlines() if ": error:" in line]
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    return "; ".join(errors) or (lines[-1] if lines else "virt-sysprep failed")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _nbd_argv(command: VolumeSeal, socket: Path, objects: list[str]) -> list[str]:
    volume = command.volume
    base = ["qemu-nbd", *objects, "--socket", str(socket), "--persistent", "--cache=none"]
    if isinstance(volume, IscsiSource):
        if volume.offset is None or volume.size is None:
            raise NodeFailure(ErrorCode.BAD_REQUEST, "sealing reads a volume of an iSCSI "
                              "domain (an extent), not a whole LUN")
        window = iscsi_domain.window(volume, volume.offset, volume.size, command.format)
        return [*base, iscsi_domain.image_json(window)]
    assert isinstance(volume, NfsSource)
    return [*base, "--format", command.format.value,
            nfs_domain.image_url(volume.server, volume.path)]


@contextlib.asynccontextmanager
async def nbd_export(command: VolumeSeal) -> AsyncIterator[Path]:
    """The volume exported raw by qemu-nbd on a private unix socket, while the block runs.
    `--fork`: qemu-nbd returns once it serves, or with its error if it cannot open the
    volume (its socket appears before that, so it says nothing)."""
    volume = command.volume
    luns = [(volume.target, volume.chap)] if isinstance(volume, IscsiSource) else []
    with tempfile.TemporaryDirectory(prefix="overt-seal-") as scratch, \
            chap.secret_objects(luns) as objects:
        socket, pid_file = Path(scratch) / "nbd.sock", Path(scratch) / "nbd.pid"
        errors = Path(scratch) / "nbd.err"
        with errors.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *_nbd_argv(command, socket, objects), "--fork", "--pid-file", str(pid_file),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=err)
            try:
                code = await asyncio.wait_for(proc.wait(), _NBD_READY_S)
            except TimeoutError:
                proc.kill()
                code = None
        if code != 0:
            message = chap.scrub(errors.read_text(errors="replace").strip(),
                                 luns[0][1] if luns else None)
            raise NodeFailure(ErrorCode.STORAGE_UNREACHABLE, f"sealing {_said(volume)} "
                              f"failed: qemu-nbd could not open it: {message or 'no answer'}")
        server = int(pid_file.read_text().strip())
        try:
            yield socket
        finally:
            await _stop(server)


async def _stop(pid: int) -> None:
    """End the export and wait for it to close the volume (a VM may open it next)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    await asyncio.to_thread(_wait_gone, pid, 10.0)


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
