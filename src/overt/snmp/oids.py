"""Overt's OID root (OVERT-MIB, docs/snmp.md).

99999 is a placeholder for Overt's private enterprise number (none is assigned yet); every
OID of the node and the engine derives from `ENTERPRISE`, so changing it is one edit here
and one in the MIB.
"""

from __future__ import annotations

ENTERPRISE: tuple[int, ...] = (1, 3, 6, 1, 4, 1, 99999)


def oid_text(oid: tuple[int, ...]) -> str:
    return "." + ".".join(map(str, oid))
