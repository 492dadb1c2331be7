"""Fixed addresses of VM NICs: a MAC keeps its address for as long as the NIC exists.

The assignments live in a JSON file under the services' directory, so a NIC's address
survives engine restarts and does not move when other NICs come and go.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from overt.engine.netsvc.plan import NetworkPlan


class PoolExhausted(RuntimeError):
    """No free address is left in a network's reserved range; `assigned` holds the NICs
    that have one (the others get none until addresses are freed)."""

    def __init__(self, message: str, assigned: dict[str, ipaddress.IPv4Address]) -> None:
        super().__init__(message)
        self.assigned = assigned


class AddressBook:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        try:
            data = json.loads(self.path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def assign(self, plan: NetworkPlan, macs: list[str]) -> dict[str, ipaddress.IPv4Address]:
        """MAC -> address for `macs`: known ones keep theirs, new ones get the lowest free
        address of the reserved range; MACs no longer present are forgotten."""
        known = self._load()
        pool = set(plan.reserved_addresses())
        result: dict[str, ipaddress.IPv4Address] = {}
        for mac in macs:
            try:
                address = ipaddress.IPv4Address(known.get(mac, ""))
            except ValueError:  # new, or a damaged entry: it gets a free address
                continue
            if address in pool:
                result[mac] = address
        free = sorted(pool - set(result.values()))
        left_out = []
        for mac in sorted(set(macs) - set(result)):
            if free:
                result[mac] = free.pop(0)
            else:
                left_out.append(mac)
        self._store(known, result)
        if left_out:
            raise PoolExhausted(f"network {plan.name}: the reserved range "
                                f"{plan.reserved_range[0]}-{plan.reserved_range[1]} is full; "
                                f"no address for {', '.join(left_out)}", result)
        return result

    def _store(self, known: dict[str, str], result: dict[str, ipaddress.IPv4Address]) -> None:
        stored = {mac: str(ip) for mac, ip in sorted(result.items())}
        if stored != known:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(stored, indent=1) + "\n")
            tmp.replace(self.path)
