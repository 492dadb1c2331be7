"""Running a host's fence agent (oVirt's power management): the real `fence_ipmilan`.

The agent gets its options on standard input (the fence-agents convention), so the BMC's
password is never on a command line (`ps`) nor in the engine's log; whatever the agent
prints is scrubbed of it before it becomes a job's error."""

from __future__ import annotations

import asyncio
import logging
import shutil
from dataclasses import dataclass, field

from overt.engine.secrets import Secret

log = logging.getLogger(__name__)

# oVirt's agent types Overt runs, and the program for each.
AGENT_PROGRAMS = {"ipmilan": "fence_ipmilan"}
# fence_ipmilan's exit codes for `status`: 0 on, 2 off, anything else a failure.
STATUS_ON, STATUS_OFF = 0, 2
# Options an administrator may pass to the agent; those that name programs or scripts
# (`password_script`, `ipmitool_path`, `sudo_path`...) would run anything as the engine.
ALLOWED_OPTIONS = frozenset({"lanplus", "cipher", "privlvl", "method", "auth", "power_wait",
                             "power_timeout", "login_timeout", "shell_timeout", "delay",
                             "retry_on", "hexadecimal_kg"})
# Sent unless the agent's options say otherwise: IPMI 2.0 (RMCP+), what BMCs speak today.
DEFAULT_OPTIONS = {"ipmilan": {"lanplus": "1"}}
# oVirt's fence_type -> the agent's action.
ACTIONS = {"status": "status", "start": "on", "stop": "off", "restart": "reboot"}
AGENT_TIMEOUT_S = 120.0


class FenceError(Exception):
    """The agent could not do what was asked; the message is safe to show (no password)."""


@dataclass
class AgentSpec:
    """One agent as the engine runs it (built from a `FenceAgent` row and its opened secret)."""

    type: str
    address: str
    port: int | None
    username: str
    password: Secret
    options: dict[str, str] = field(default_factory=dict)


def program_for(agent_type: str) -> str:
    program = AGENT_PROGRAMS.get(agent_type)
    if program is None:
        raise FenceError(f"fence agent type {agent_type!r} is not supported "
                         f"(supported: {', '.join(sorted(AGENT_PROGRAMS))})")
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        raise FenceError(f"{program} is not installed on the engine (Debian package "
                         "fence-agents)")
    return path


def _stdin(agent: AgentSpec, action: str) -> bytes:
    lines = [f"action={action}", f"ip={agent.address}", f"username={agent.username}",
             f"password={agent.password.reveal()}"]
    if agent.port:
        lines.append(f"ipport={agent.port}")
    options = {**DEFAULT_OPTIONS.get(agent.type, {}), **agent.options}
    lines += [f"{name}={value}" for name, value in sorted(options.items())]
    return ("\n".join(lines) + "\n").encode()


def _scrub(text: str, agent: AgentSpec) -> str:
    """The agent's own complaint (its `ERROR:`/`Failed:` lines, without timestamps or Python
    warnings), with the password masked should it ever appear."""
    lines = [line.split("ERROR: ", 1)[-1].strip() for line in text.splitlines()
             if "ERROR" in line or "Failed" in line]
    said = " ".join(lines or text.split())
    secret = agent.password.reveal()
    return said.replace(secret, "***") if secret else said


async def run(agent: AgentSpec, action: str, *, timeout_s: float = AGENT_TIMEOUT_S) -> str:
    """Run the agent's `action` (status, on, off, reboot); the power status it reports
    (`on` or `off`) for status, else `ok`. Raises `FenceError` with the agent's reason."""
    program = program_for(agent.type)
    proc = await asyncio.create_subprocess_exec(
        program, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(_stdin(agent, action)), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise FenceError(f"{program} {action} at {agent.address} did not answer within "
                         f"{timeout_s:.0f} s") from None
    said = _scrub((err or out).decode(errors="replace"), agent)
    log.info("%s %s at %s: exit %s", program, action, agent.address, proc.returncode)
    if action == "status" and proc.returncode in (STATUS_ON, STATUS_OFF):
        return "on" if proc.returncode == STATUS_ON else "off"
    if proc.returncode != 0:
        raise FenceError(f"{program} {action} at {agent.address} failed: "
                         f"{said or f'exit status {proc.returncode}'}")
    return "ok"
