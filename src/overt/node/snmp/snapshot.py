"""The node's state as the SNMP exporter sees it: a JSON file the agent replaces atomically.

snmpd runs the exporter as its own process, so the agent and the exporter share only this
file; a reader never sees half a write because the agent renames a complete file into place.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class VmRow:
    name: str
    uuid: str  # Overt's VM id, or "" for a domain Overt did not create
    state: str  # a `VmState` value
    vcpus: int = 0  # 0: not known
    memory_mib: int = 0  # 0: not known (the VM is not running)


@dataclass(frozen=True)
class NodeSnapshot:
    host_name: str
    host_uuid: str
    status: str = "up"
    vms: tuple[VmRow, ...] = field(default_factory=tuple)


def write_snapshot(path: Path, snapshot: NodeSnapshot) -> None:
    """Replace `path` with `snapshot` in one rename (readers see the old or the new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(asdict(snapshot), out)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).chmod(0o644)  # snmpd's exporter may run as another user
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_snapshot(path: Path) -> NodeSnapshot | None:
    """The last snapshot written, or None if there is none (or it cannot be read)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        vms = tuple(VmRow(name=str(v["name"]), uuid=str(v["uuid"]), state=str(v["state"]),
                          vcpus=int(v.get("vcpus", 0)), memory_mib=int(v.get("memory_mib", 0)))
                    for v in data.get("vms", ()))
        return NodeSnapshot(host_name=str(data["host_name"]), host_uuid=str(data["host_uuid"]),
                            status=str(data.get("status", "up")), vms=vms)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
