"""A virtual BMC: an IPMI-over-LAN server whose chassis power drives a `PowerBackend`.

Built on pyghmi's `Bmc` (RMCP+, what `fence_ipmilan --lanplus` speaks), so the engine's
power management is exercised with the real fence agent and the real protocol. pyghmi keeps
its sessions in process-wide state, so each BMC runs as its own process:

    python -m overt.lab.bmc --port 6230 --user admin --password-file FILE -- COMMAND...

runs COMMAND while the power is on (power off kills its whole process group, as a power
loss would; power on starts it again); with `--lab-node node1` it powers that lab node
(`overt.lab.node_power`)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Protocol

from pyghmi.ipmi import bmc  # type: ignore[import-untyped]

from overt.lab.lab import Lab
from overt.lab.node_power import LabNodePower

log = logging.getLogger(__name__)

IPMI_OK = 0


class PowerBackend(Protocol):
    """What a BMC switches: a node's hypervisor, a process, a guest."""

    def is_on(self) -> bool: ...

    def power_on(self) -> None: ...

    def power_off(self) -> None: ...


class ProcessPower:
    """Power is a command running in its own process group."""

    def __init__(self, command: list[str], *, on: bool = True) -> None:
        self.command = command
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        if on:
            self.power_on()

    def is_on(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def power_on(self) -> None:
        with self._lock:
            if not self.is_on():
                self._proc = subprocess.Popen(self.command, start_new_session=True,
                                              stdin=subprocess.DEVNULL)
                log.info("power on: started %s (pid %s)", self.command[0], self._proc.pid)

    def power_off(self) -> None:
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # a power loss: no clean shutdown
            proc.wait()
            log.info("power off: killed process group %s", proc.pid)


class VirtualBmc(bmc.Bmc):  # type: ignore[misc]
    """pyghmi's BMC with one user, answering chassis power from `backend`."""

    def __init__(self, backend: PowerBackend, *, user: str, password: str, port: int,
                 address: str = "127.0.0.1") -> None:
        super().__init__({user: password}, port=port, address=address)
        self.backend = backend

    def get_power_state(self) -> str:
        return "on" if self.backend.is_on() else "off"

    def power_off(self) -> int:
        self.backend.power_off()
        return IPMI_OK

    def power_on(self) -> int:
        self.backend.power_on()
        return IPMI_OK

    def power_shutdown(self) -> int:
        return self.power_off()

    def power_cycle(self) -> int:
        self.backend.power_off()
        self.backend.power_on()
        return IPMI_OK

    power_reset = power_cycle

    def serve_forever(self) -> None:
        self.listen(timeout=30)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m overt.lab.bmc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=623)
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password-file", type=Path, required=True,
                        help="a file holding the password (never on the command line)")
    parser.add_argument("--off", action="store_true", help="start with the power off")
    parser.add_argument("--lab-node", help="power this lab node (node1, ...): its libvirtd, "
                        "QEMUs and agent; COMMAND, if given, is the agent to start on power on")
    parser.add_argument("--lab-prefix", default=os.environ.get("OVERT_LAB_PREFIX", "overt"))
    parser.add_argument("--agent-log", type=Path,
                        help="with --lab-node: where the agent started on power on writes")
    parser.add_argument("command", nargs="*", help="what runs while the power is on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bmc %(message)s")
    power: PowerBackend
    if args.lab_node:
        power = LabNodePower(Lab.find(args.lab_prefix), args.lab_node,
                             agent_argv=args.command or None, agent_log=args.agent_log)
        if not args.off:
            power.power_on()
    elif args.command:
        power = ProcessPower(args.command, on=not args.off)
    else:
        parser.error("give a COMMAND to power, or --lab-node")
    server = VirtualBmc(power, user=args.user, password=args.password_file.read_text().strip(),
                        port=args.port, address=args.address)

    def stop(_signum: int, _frame: object) -> None:
        power.power_off()
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)
    log.info("virtual BMC listening on %s:%s", args.address, args.port)
    server.serve_forever()


if __name__ == "__main__":
    main()
