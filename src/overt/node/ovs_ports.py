"""Which of the host's bridges are Open vSwitch ones, for a VM NIC's port.

A network with a VLAN tag is always an OVS fake bridge, but an untagged one is a Linux
bridge on a single NIC and an OVS fake bridge on VLAN 0 when a bond carries it (the bond is
an OVS bond). libvirt joins a tap to a Linux bridge with `ip link set master`, which an OVS
bridge refuses: the NIC's port must then be an OVS port (`virtualport type='openvswitch'`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from overt.system.commands import CommandFailed, ToolMissing, run

log = logging.getLogger(__name__)


def ovs_bridges(untagged: Iterable[str]) -> frozenset[str]:
    """The bridges among `untagged` that are OVS bridges here (none without a switch)."""
    wanted = set(untagged)
    if not wanted:
        return frozenset()  # tagged NICs alone: no need to ask the switch
    try:
        listed = run(["ovs-vsctl", "--timeout=10", "list-br"], timeout=20).stdout
    except (ToolMissing, CommandFailed) as exc:
        log.debug("no Open vSwitch to ask for its bridges: %s", exc)
        return frozenset()
    return frozenset(wanted & set(listed.split()))
