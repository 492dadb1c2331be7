"""A lab host's anchor: a sleeping process that holds the host's private mount namespace.

Each lab host runs inside its network namespace *and* a mount namespace of its
own, where private directories are bound over /run/libvirt, /etc/libvirt, ...
The anchor keeps that mount namespace alive whatever its daemons do, and
`nsenter` into the anchor is how daemons are started and commands are run
"on" the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from overt.system.commands import run
from overt.system.processes import alive, command_name, spawn_detached
from overt.system.waiting import wait_until


def _mount_ns(pid: int | str) -> str:
    return str(Path(f"/proc/{pid}/ns/mnt").readlink())


def read_anchor(pidfile: Path) -> int | None:
    """The anchor's pid if it is alive and still in a mount namespace of its own."""
    try:
        pid = int(pidfile.read_text())
    except (FileNotFoundError, ValueError):
        return None
    try:
        if alive(pid) and command_name(pid) == "sleep" and _mount_ns(pid) != _mount_ns("self"):
            return pid
    except OSError:
        return None
    return None


def start_anchor(namespace: str, pidfile: Path, *, binds: dict[Path, str],
                 tmpfs: Sequence[str] = ()) -> int:
    """Start an anchor in `namespace`, bind `binds` (source -> target) and mount `tmpfs`."""
    pid = spawn_detached(["ip", "netns", "exec", namespace, "unshare", "--mount",
                          "--propagation", "private", "sleep", "infinity"])
    # unshare execs sleep in the same process once the namespace exists.
    wait_until(lambda: command_name(pid) == "sleep" or not alive(pid), timeout=10,
               what=f"the mount namespace of {namespace}")
    if not alive(pid):
        raise RuntimeError(f"could not make a mount namespace for {namespace}")
    for target in tmpfs:
        run(enter(pid, ["mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", target]))
    for source, target in binds.items():
        source.mkdir(parents=True, exist_ok=True)
        run(enter(pid, ["mkdir", "-p", target]))
        run(enter(pid, ["mount", "--bind", str(source), target]))
    pidfile.write_text(str(pid))
    return pid


def enter(pid: int, argv: Sequence[str], *, workdir: str | None = None) -> list[str]:
    """The argv that runs `argv` in the anchor's network and mount namespaces."""
    wd = [f"--wd={workdir}"] if workdir else []
    return ["nsenter", "-t", str(pid), "--net", "--mount", *wd, "--", *argv]
