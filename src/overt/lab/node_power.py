"""A lab node's power, for its virtual BMC (`overt.lab.bmc`): power off kills the node's
hypervisor (libvirtd, virtlogd, every QEMU) and its agent at once, as a power loss would;
power on starts libvirtd again and the agent at once, if the BMC was told how."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path

from overt.lab.lab import Lab
from overt.system.waiting import unix_socket_answers

# What runs "on" a lab node: all share its anchor's mount namespace. The anchor itself
# survives (it is the node's namespace, not a process of the node's machine).
HYPERVISOR_COMMANDS = ("libvirtd", "virtlogd", "qemu-system-x86", "qemu-system-x86_64",
                       "ovsdb-server", "ovs-vswitchd")


def _namespace(pid: int | str, kind: str) -> str:
    return str(Path(f"/proc/{pid}/ns/{kind}").readlink())


def node_processes(anchor: int) -> list[int]:
    """Processes on `anchor`'s node, the anchor and this process apart: those in its mount
    namespace, and those in its network namespace (libvirtd gives each QEMU a mount
    namespace of its own, so only the network namespace says which node a QEMU runs on)."""
    mount, net = _namespace(anchor, "mnt"), _namespace(anchor, "net")
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (anchor, os.getpid()):
            continue
        with contextlib.suppress(OSError):
            if _namespace(entry.name, "mnt") == mount or _namespace(entry.name, "net") == net:
                found.append(int(entry.name))
    return found


def _is_node_machine_process(pid: int) -> bool:
    with contextlib.suppress(OSError):
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if comm in HYPERVISOR_COMMANDS or comm.startswith("qemu-"):
            return True
        # the agent: `python -m overt node ...`; its lease keeper: `-m overt.node.leases`
        return (b"overt" in argv and b"node" in argv) or b"overt.node.leases" in argv
    return False


def _unblock_signals() -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, set())


class LabNodePower:
    """The power of lab node `node` (a `PowerBackend`)."""

    def __init__(self, lab: Lab, node: str, *, agent_argv: list[str] | None = None,
                 agent_log: Path | None = None) -> None:
        self.lab, self.node = lab, node
        self.hypervisor = lab.hypervisor(node)
        self.agent_argv, self.agent_log = agent_argv, agent_log
        self._agent: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def is_on(self) -> bool:
        return unix_socket_answers(str(self.hypervisor.socket))

    def power_off(self) -> None:
        with self._lock:
            anchor = self.hypervisor.anchor()
            if anchor is None:
                return
            for pid in node_processes(anchor):
                if _is_node_machine_process(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if self._agent is not None:
                self._agent.wait()
                self._agent = None
            # Dead daemons leave their sockets: remove them so power on starts fresh ones.
            for sock in (self.hypervisor.socket,
                         self.hypervisor.host_dir / "run-libvirt" / "virtlogd-sock"):
                sock.unlink(missing_ok=True)

    def _agent_runs(self) -> bool:
        """Whether the agent this BMC starts (the same command) runs on the node already,
        whoever started it."""
        anchor = self.hypervisor.anchor()
        wanted = [arg.encode() for arg in self.agent_argv or []]
        for pid in node_processes(anchor) if anchor is not None else []:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1] == wanted:
                    return True
        return False

    def power_on(self) -> None:
        """Start the node's hypervisor and, at once, its agent (if told how) unless one
        already runs there (a node that was on keeps what runs on it)."""
        with self._lock:
            self.hypervisor.ensure_running()
            if self.agent_argv and not self._agent_runs():
                argv = self.lab.exec_argv(self.node, self.agent_argv)
                log = self.agent_log.open("ab") if self.agent_log else subprocess.DEVNULL
                try:
                    # from the BMC's request thread: the agent must not inherit its
                    # blocked signals, or it would never hear SIGTERM
                    self._agent = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        preexec_fn=_unblock_signals)
                finally:
                    if not isinstance(log, int):
                        log.close()
