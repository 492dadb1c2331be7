"""net-snmp's pass_persist protocol: snmpd asks on our stdin, we answer on stdout.

snmpd.conf: `pass_persist .1.3.6.1.4.1.99999 /usr/bin/python3 -m overt.node.snmp
--state-file /var/lib/overt/node/snmp-state.json`. Each request reads the state file anew
(it is small), so answers follow the agent without any other channel. Read-only: sets are
refused as not writable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from overt.node.snmp.mib import ENTERPRISE, get, get_next, oid_text, parse_oid, varbinds
from overt.node.snmp.snapshot import read_snapshot


def _answer(command: str, oid_line: str, state_file: Path) -> str:
    oid = parse_oid(oid_line)
    snapshot = read_snapshot(state_file)
    if oid is None or snapshot is None:
        return "NONE\n"
    binds = varbinds(snapshot)
    bind = get(binds, oid) if command == "get" else get_next(binds, oid)
    if bind is None or bind.oid[:len(ENTERPRISE)] != ENTERPRISE:
        return "NONE\n"
    value = bind.value.replace("\n", " ")
    return f"{oid_text(bind.oid)}\n{bind.type}\n{value}\n"


def serve(state_file: Path, stdin: TextIO, stdout: TextIO) -> None:
    """Answer snmpd until it closes our stdin (or sends an empty line)."""
    while True:
        line = stdin.readline()
        if not line or not line.strip():
            return
        command = line.strip().lower()
        if command == "ping":
            stdout.write("PONG\n")
        elif command in ("get", "getnext"):
            stdout.write(_answer(command, stdin.readline(), state_file))
        elif command == "set":
            stdin.readline()
            stdin.readline()
            stdout.write("not-writable\n")
        else:
            stdout.write("NONE\n")
        stdout.flush()
