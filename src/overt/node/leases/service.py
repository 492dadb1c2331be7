"""The keeper as a daemon: its Unix socket (one JSON request, one JSON reply per line),
its adapters (qemu-storage-daemon exports, libvirt destroy) and its main loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from overt.node.leases.area import LeaseArea
from overt.node.leases.export import DomainExport, DomainRef
from overt.node.leases.keeper import DomainAreas, Keeper, LeaseRefused
from overt.protocol.vm import LeaseSpec

log = logging.getLogger(__name__)
SOCKET_NAME = "keeper.sock"
PID_NAME = "keeper.pid"
DESTROY_TIMEOUT_S = 5.0  # then the QEMU is killed without libvirt


class KeeperServer:
    """Answers the agent: `acquire` (vm_id, lease), `release` (vm_id), `status`, and a
    migration's hand-over: `offer` (vm_id, token or null) on the source, `take_over`
    (vm_id, lease, token) on the destination."""

    def __init__(self, keeper: Keeper, socket_path: Path) -> None:
        self.keeper = keeper
        self.socket_path = socket_path
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        self._server = await asyncio.start_unix_server(self._serve, path=str(self.socket_path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                reply = await self.answer(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    async def answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            op = request.get("op")
            if op == "status":
                return {"ok": True, **self.keeper.status(), "kills": self.keeper.kills()}
            vm_id = uuid.UUID(str(request.get("vm_id")))
            if op == "acquire":
                await self.keeper.acquire(vm_id, LeaseSpec.model_validate(request.get("lease")))
                return {"ok": True}
            if op == "offer":
                token = request.get("token")
                await self.keeper.offer(vm_id, uuid.UUID(str(token)) if token else None)
                return {"ok": True}
            if op == "take_over":
                await self.keeper.take_over(vm_id, LeaseSpec.model_validate(request.get("lease")),
                                            uuid.UUID(str(request.get("token"))))
                return {"ok": True}
            if op == "release":
                return {"ok": True, "released": await self.keeper.release(vm_id)}
            return {"ok": False, "error": f"unknown request {op!r}"}
        except LeaseRefused as exc:
            return {"ok": False, "error": str(exc),
                    "owner": str(exc.owner) if exc.owner else None}
        except (ValueError, ValidationError, AttributeError) as exc:
            return {"ok": False, "error": f"bad request: {exc}"}


def nfs_opener(run_dir: Path) -> Any:
    async def open_domain(ref: DomainRef) -> DomainAreas:
        export = DomainExport(ref, run_dir)
        try:
            await export.start()
        except OSError:
            await export.stop()
            raise
        async def restart() -> tuple[LeaseArea, LeaseArea]:
            await export.stop()
            await export.start()
            return export.areas["ids"], export.areas["xleases"]
        return DomainAreas(export.areas["ids"], export.areas["xleases"], export.stop,
                           alive=export.alive, restart=restart)
    return open_domain


def kill_qemu(vm_id: uuid.UUID) -> bool:
    """SIGKILL every QEMU of this VM (found by its `-uuid` argument); whether one was."""
    found = False
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu" in argv[0] and str(vm_id).encode() in argv \
                and argv.index(str(vm_id).encode()) > 0 \
                and argv[argv.index(str(vm_id).encode()) - 1] == b"-uuid":
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)
                found = True
    return found


def libvirt_stopper(uri: str) -> tuple[Any, Any]:
    """Destroy (and ask whether runs) a domain by the VM's id through libvirt."""
    import libvirt

    def _lookup(conn: Any, vm_id: uuid.UUID) -> Any:
        try:
            return conn.lookupByUUIDString(str(vm_id))
        except libvirt.libvirtError:
            return None

    def destroy(vm_id: uuid.UUID) -> None:
        conn = libvirt.open(uri)
        try:
            domain = _lookup(conn, vm_id)
            if domain is not None and domain.isActive():
                domain.destroy()
        finally:
            conn.close()

    def running(vm_id: uuid.UUID) -> bool | None:
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError:
            return None
        try:
            domain = _lookup(conn, vm_id)
            return bool(domain is not None and domain.isActive())
        finally:
            conn.close()

    async def stop_vm(vm_id: uuid.UUID) -> None:
        """libvirt's destroy; if libvirt fails or hangs, SIGKILL the VM's QEMU directly."""
        try:
            await asyncio.wait_for(asyncio.to_thread(destroy, vm_id), DESTROY_TIMEOUT_S)
        except (libvirt.libvirtError, TimeoutError) as exc:
            killed = await asyncio.to_thread(kill_qemu, vm_id)
            if not killed:
                raise
            log.warning("libvirt could not destroy VM %s (%s); killed its QEMU", vm_id, exc)

    async def vm_running(vm_id: uuid.UUID) -> bool | None:
        return await asyncio.to_thread(running, vm_id)

    return stop_vm, vm_running


def host_uuid(libvirt_uri: str) -> uuid.UUID:
    """libvirt's host UUID: the id the agent reports this host by."""
    import libvirt

    from overt.node.hypervisor.libvirt_host import parse_capabilities
    conn = libvirt.open(libvirt_uri)
    try:
        return parse_capabilities(conn.getCapabilities()).host_uuid
    finally:
        conn.close()


async def ensure_keeper(state_dir: Path, libvirt_uri: str, host_id: uuid.UUID) -> None:
    """Start a keeper in its own session unless one answers: it outlives the agent."""
    import subprocess
    import sys

    from overt.node.leases.client import KeeperUnavailable, LeaseClient
    try:
        await LeaseClient(state_dir / SOCKET_NAME, timeout_s=5).status()
        return
    except (KeeperUnavailable, OSError, TimeoutError):
        pass
    await asyncio.to_thread(state_dir.mkdir, parents=True, exist_ok=True)
    log_fd = os.open(state_dir / "keeper.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:  # `setsid -f`: in its own session, and no child of ours (init reaps it)
        await asyncio.to_thread(
            subprocess.run, ["setsid", "-f", sys.executable, "-m", "overt.node.leases",
                             "--data-dir", str(state_dir.parent), "--libvirt-uri", libvirt_uri,
                             "--host-id", str(host_id)],
            stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd, check=True)
    finally:
        os.close(log_fd)
    log.info("lease keeper started", extra={"host": libvirt_uri})


KEEPER_CHECK_S = 1.0  # how often the agent makes sure its keeper still runs
KEEPER_START_WAIT_S = 30.0  # how long a (re)started keeper may take to answer


def _pid_runs(state_dir: Path) -> bool:
    """Whether the process of `keeper.pid` still exists (a keeper that hangs is not
    replaced: two keepers on one host would renew the same slots)."""
    try:
        stat = Path(f"/proc/{int((state_dir / PID_NAME).read_text())}/stat").read_text()
    except (OSError, ValueError):
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")  # a zombie is dead


async def watch_keeper(state_dir: Path, libvirt_uri: str, host_id: uuid.UUID,
                       every_s: float = KEEPER_CHECK_S) -> None:
    """The keeper's watchdog, in the agent: a dead keeper renews nothing, and 8T after its
    last renewal another host may take the leases of VMs still running here. Checked every
    `every_s`; a keeper whose process is gone is started again at once and adopts the
    leases it held (`held.json`), so none lapses unless the agent is down too."""
    from overt.node.leases.client import KeeperUnavailable, LeaseClient
    while True:
        await asyncio.sleep(every_s)
        if await asyncio.to_thread(_pid_runs, state_dir):
            continue
        log.warning("the lease keeper is gone: starting it again", extra={"host": libvirt_uri})
        await ensure_keeper(state_dir, libvirt_uri, host_id)
        deadline = asyncio.get_running_loop().time() + KEEPER_START_WAIT_S
        while asyncio.get_running_loop().time() < deadline:  # before the next check
            with contextlib.suppress(KeeperUnavailable, OSError, TimeoutError):
                await LeaseClient(state_dir / SOCKET_NAME, timeout_s=5).status()
                if await asyncio.to_thread(_pid_runs, state_dir):
                    break
            await asyncio.sleep(0.2)


async def _until_orphaned(keeper: Keeper, state_dir: Path, stopping: asyncio.Event) -> None:
    """Stop when the node's data directory is gone (the node was wiped) and no lease is
    held: no agent can reach this keeper any more."""
    while True:
        await asyncio.sleep(2)
        if not keeper.specs and not await asyncio.to_thread(state_dir.exists):
            log.info("the node's data directory is gone: the lease keeper stops")
            stopping.set()
            return


async def run_keeper(host_id: uuid.UUID, state_dir: Path, libvirt_uri: str) -> None:
    """Run until SIGTERM; the leases stay on storage (a restarted keeper adopts them)."""
    await asyncio.to_thread(state_dir.mkdir, parents=True, exist_ok=True)
    stop_vm, vm_running = libvirt_stopper(libvirt_uri)
    keeper = Keeper(host_id, state_dir, nfs_opener(state_dir / "areas"), stop_vm, vm_running)
    await keeper.adopt()
    server = KeeperServer(keeper, state_dir / SOCKET_NAME)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await asyncio.to_thread((state_dir / PID_NAME).write_text, f"{os.getpid()}\n")
    work = asyncio.ensure_future(keeper.run())
    orphaned = asyncio.ensure_future(_until_orphaned(keeper, state_dir, stopping))
    log.info("lease keeper running", extra={"host": str(host_id)})
    await stopping.wait()
    work.cancel()
    orphaned.cancel()
    await server.stop()
    for domain in list(keeper.domains.values()):
        await domain.areas.close()
