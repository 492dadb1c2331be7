"""The host's logical networks, made real: Open vSwitch VLAN bridges and Linux bridges.

A network with a VLAN id becomes an OVS "fake bridge" named after the network's bridge on
an OVS bridge (`ob-NIC`, userspace datapath) that has the host NIC as its trunk port;
libvirt plugs a VM NIC into it as an access port with the network's tag. A network
without a VLAN is a Linux bridge with the NIC as its port. The agent removes only what it
made (a bridge that existed before, like the management bridge, is adopted, never deleted),
and can roll a change back by itself when the engine does not confirm it in time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

from overt.node.dhcp_clients import start_dhcp4, start_dhcp6, stop_dhcp4, stop_dhcp6
from overt.node.errors import NodeFailure
from overt.node.host_nics import link_addresses
from overt.node.ovs_bonds import switch_bonds
from overt.protocol.errors import ErrorCode
from overt.protocol.host import ReportedBond, ReportedNetwork
from overt.protocol.networks import (
    OVERLAY_DEFAULT_MTU,
    BondWiring,
    NetworkSetup,
    NetworkWiring,
)
from overt.system.commands import CommandFailed, ToolMissing, run

log = logging.getLogger(__name__)

SYS_NET = Path("/sys/class/net")


DEFAULT_MTU = 1500  # a network's MTU 0 means this, as in oVirt

def uplink_bridge(nic: str) -> str:
    """The OVS bridge that has `nic` as its trunk port."""
    return f"ob-{nic}"[:15]


class HostNetworks:
    """Applies the engine's wanted networks; remembers what it made in `state_file`."""

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self._lock = asyncio.Lock()
        self._rollback: asyncio.Task[None] | None = None
        self._before: list[NetworkWiring] | None = None
        self._before_bonds: list[BondWiring] = []
        self.bonds_file = state_file.with_name("bonds.json")
        self._bond_names: set[str] = set()
        # Why the last change was undone by the agent itself; a late confirmation then fails,
        # so the engine never takes a rolled-back change for a kept one.
        self._rolled_back: str | None = None

    # -- commands ---------------------------------------------------------------------

    async def setup(self, wanted: Sequence[NetworkWiring],
                    rollback_after_s: float | None,
                    bonds: Sequence[BondWiring] = ()) -> NetworkSetup:
        async with self._lock:
            self._cancel_rollback()
            self._rolled_back = None
            before = self._load()
            before_bonds = self._load_bonds()
            try:
                result = await asyncio.to_thread(self._apply, list(wanted), before, list(bonds))
            except (CommandFailed, ToolMissing) as exc:
                log.warning("setting up networks failed, restoring the previous ones: %s", exc)
                await asyncio.to_thread(self._restore, before, before_bonds)
                raise NodeFailure(ErrorCode.HYPERVISOR_ERROR,
                                  f"setting up the host's networks failed: {exc}") from None
            if rollback_after_s is not None:
                self._before_bonds = before_bonds
                self._before = [_wiring_of(old) for old in before.values()]
                self._rollback = asyncio.create_task(self._roll_back_after(rollback_after_s))
            return result

    async def commit(self) -> NetworkSetup:
        async with self._lock:
            if self._rolled_back is not None:
                raise NodeFailure(ErrorCode.INVALID_STATE, self._rolled_back)
            self._cancel_rollback()
            return NetworkSetup(carried=tuple(sorted(self._load())))

    async def report(self) -> tuple[ReportedNetwork, ...]:
        async with self._lock:
            made = self._load()
        return await asyncio.to_thread(_read_back, [_wiring_of(old) for old in made.values()])

    async def report_bonds(self) -> tuple[ReportedBond, ...]:
        return await asyncio.to_thread(switch_bonds)

    @property
    def rollback_pending(self) -> bool:
        return self._rollback is not None and not self._rollback.done()

    async def close(self) -> None:
        if self._rollback is not None:
            self._rollback.cancel()

    # -- rollback ---------------------------------------------------------------------

    def _cancel_rollback(self) -> None:
        if self._rollback is not None and not self._rollback.done():
            self._rollback.cancel()
        self._rollback = None
        self._before = None

    async def _roll_back_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        async with self._lock:
            before = self._before or []
            log.warning("the engine did not confirm the new networks within %g s: rolling "
                        "them back", delay_s)
            try:
                await asyncio.to_thread(self._apply, before, self._load(), self._before_bonds)
            except (CommandFailed, ToolMissing):
                log.exception("rolling the networks back failed")
            self._before = None
            self._rolled_back = (f"the host's network change was rolled back: the engine did "
                                 f"not confirm it within {delay_s:g} s")

    # -- applying ---------------------------------------------------------------------

    def _apply(self, wanted: list[NetworkWiring], before: dict[str, dict[str, object]],
               bonds: list[BondWiring]) -> NetworkSetup:
        old_bonds = {b.name: b for b in self._load_bonds()}
        for bond in bonds:
            _realise_bond(bond, old_bonds.get(bond.name))
        self._save_bonds(bonds)
        self._bond_names = {b.name for b in bonds}
        state: dict[str, dict[str, object]] = {}
        for wiring in wanted:
            old = before.get(wiring.name)
            adopted = bool(old and old.get("adopted"))
            # The addresses an adopted bridge had: put back when the network leaves it.
            kept = _kept(old) if old is not None else _global_addresses(wiring.bridge)
            if old is not None and not _same_but_remotes(_wiring_of(old), wiring):
                self._remove(old)
            adopted = self._realise(wiring, adopted=adopted if old else None)
            state[wiring.name] = {**wiring.model_dump(mode="json"), "adopted": adopted,
                                  "kept_addresses": kept if adopted else [],
                                  "ovs": wiring.vlan is not None or wiring.nic in self._bond_names}
        removed = []
        for name, old in before.items():
            if name not in state:
                self._remove(old)
                removed.append(name)
        self._save(state)
        for name in set(old_bonds) - self._bond_names:
            _ovs("--if-exists", "del-br", uplink_bridge(name))  # its networks went above
        return NetworkSetup(carried=tuple(sorted(state)), removed=tuple(sorted(removed)))

    def _restore(self, before: dict[str, dict[str, object]],
                 before_bonds: list[BondWiring]) -> None:
        try:
            self._apply([_wiring_of(old) for old in before.values()], self._load(),
                        before_bonds)
        except (CommandFailed, ToolMissing):
            log.exception("restoring the previous networks failed")

    def _realise(self, wiring: NetworkWiring, *, adopted: bool | None) -> bool:
        """Make `wiring` real; whether its bridge existed before (then it is never deleted)."""
        if wiring.nic not in self._bond_names and not (SYS_NET / wiring.nic).exists():
            raise CommandFailed(["ip", "link", "show", wiring.nic], 1,
                                f"the host has no NIC {wiring.nic}")
        existed = (SYS_NET / wiring.bridge).exists() if adopted is None else adopted
        if wiring.vlan is not None and _bridge_vlan(wiring.bridge) not in (None, wiring.vlan):
            _ovs("--if-exists", "del-br", wiring.bridge)  # retagged behind the agent's back
        if wiring.vxlan is None and wiring.vlan is None and wiring.nic in self._bond_names \
                and _bridge_vlan(wiring.bridge) is not None:
            _ovs("--if-exists", "del-br", wiring.bridge)
        if wiring.vxlan is not None:
            _vxlan_bridge(wiring)
        elif wiring.vlan is not None or wiring.nic in self._bond_names:
            self._ovs_vlan_bridge(wiring)
        else:
            self._linux_bridge(wiring)
        self._addresses(wiring)
        return existed

    def _ovs_vlan_bridge(self, wiring: NetworkWiring) -> None:
        parent = uplink_bridge(wiring.nic)
        bonded = wiring.nic in self._bond_names  # the bond is the bridge's trunk port
        _ovs("--may-exist", "add-br", parent, "--", "set", "bridge", parent,
             "datapath_type=netdev")
        if not bonded:
            _ovs("--may-exist", "add-port", parent, wiring.nic)
        # A bond's untagged network: a fake bridge on VLAN 0, which OVS carries untagged.
        _ovs("--may-exist", "add-br", wiring.bridge, parent, str(wiring.vlan or 0))
        _ovs("set", "interface", wiring.bridge, f"mtu_request={wiring.mtu or DEFAULT_MTU}")
        for link in ((parent, wiring.bridge) if bonded else (wiring.nic, parent,
                                                              wiring.bridge)):
            _ip("link", "set", link, "up")

    def _linux_bridge(self, wiring: NetworkWiring) -> None:
        if not (SYS_NET / wiring.bridge).exists():
            _ip("link", "add", "name", wiring.bridge, "type", "bridge")
        master = SYS_NET / wiring.nic / "master"
        if not master.exists() or master.readlink().name != wiring.bridge:
            _ip("link", "set", wiring.nic, "master", wiring.bridge)
        mtu = str(wiring.mtu or DEFAULT_MTU)
        if _read(SYS_NET / wiring.bridge / "mtu") != mtu:  # a bridge's MTU set stays fixed
            _ip("link", "set", wiring.bridge, "mtu", mtu)
        for link in (wiring.nic, wiring.bridge):
            _ip("link", "set", link, "up")

    def _addresses(self, wiring: NetworkWiring) -> None:
        """A static address is the bridge's only one of its family (as on an oVirt host),
        so a wrong one really cuts the host off: the connectivity check is there for that."""
        if wiring.boot_protocol == "static" and wiring.address:
            _ip("address", "replace", wiring.address, "dev", wiring.bridge)
            family = ":" in wiring.address
            for other in _global_addresses(wiring.bridge):
                if (":" in other) == family and other != wiring.address:
                    _ip("address", "del", other, "dev", wiring.bridge)
            if wiring.gateway:
                _ip("route", "replace", "default", "via", wiring.gateway, "dev",
                    wiring.bridge)
        elif wiring.boot_protocol == "dhcp":
            start_dhcp4(self._dhcp_dir(), wiring.bridge)
        self._ipv6(wiring)

    def _ipv6(self, wiring: NetworkWiring) -> None:
        """Static: the bridge's only global IPv6 address; autoconf: addresses (and the
        default route) from the routers' advertisements; dhcp: a leased address."""
        if wiring.ipv6_boot_protocol == "static" and wiring.ipv6_address:
            _ip("-6", "address", "replace", wiring.ipv6_address, "dev", wiring.bridge)
            for other in _global_addresses(wiring.bridge):
                if ":" in other and other != wiring.ipv6_address:
                    _ip("-6", "address", "del", other, "dev", wiring.bridge)
            if wiring.ipv6_gateway:
                _ip("-6", "route", "replace", "default", "via", wiring.ipv6_gateway, "dev",
                    wiring.bridge)
        elif wiring.ipv6_boot_protocol == "autoconf":
            _ipv6_sysctls(wiring.bridge, accept_ra="2", autoconf="1")
        elif wiring.ipv6_boot_protocol == "dhcp":
            start_dhcp6(self._dhcp_dir(), wiring.bridge)

    def _dhcp_dir(self) -> Path:
        return self.state_file.parent / "dhcp"

    def _remove(self, old: dict[str, object]) -> None:
        wiring = _wiring_of(old)
        if wiring.boot_protocol == "static" and wiring.address:
            run(["ip", "address", "del", wiring.address, "dev", wiring.bridge], check=False)
        if wiring.boot_protocol == "dhcp":
            stop_dhcp4(self._dhcp_dir(), wiring.bridge)
        if wiring.ipv6_boot_protocol == "static" and wiring.ipv6_address:
            run(["ip", "-6", "address", "del", wiring.ipv6_address, "dev", wiring.bridge],
                check=False)
        if wiring.ipv6_boot_protocol == "dhcp":
            stop_dhcp6(self._dhcp_dir(), wiring.bridge)
        if wiring.ipv6_boot_protocol == "autoconf" and (SYS_NET / wiring.bridge).exists():
            _ipv6_sysctls(wiring.bridge, accept_ra="1", autoconf="0")
        if old.get("adopted"):
            for address in _kept(old):
                run(["ip", "address", "replace", address, "dev", wiring.bridge], check=False)
            return
        if wiring.vxlan is not None and (SYS_NET / vxlan_port(wiring.bridge)).exists():
            _ip("link", "del", vxlan_port(wiring.bridge))
        if wiring.vxlan is None and (wiring.vlan is not None or old.get("ovs")):
            _ovs("--if-exists", "del-br", wiring.bridge)
        elif (SYS_NET / wiring.bridge).exists():
            _ip("link", "del", wiring.bridge)

    # -- state --------------------------------------------------------------------------

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {}
        except ValueError:
            log.warning("ignoring an unreadable %s", self.state_file)
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, dict)}

    def _load_bonds(self) -> list[BondWiring]:
        try:
            return [BondWiring.model_validate(b) for b in json.loads(self.bonds_file.read_text())]
        except FileNotFoundError:
            return []
        except ValueError:
            log.warning("ignoring an unreadable %s", self.bonds_file)
            return []

    def _save_bonds(self, bonds: list[BondWiring]) -> None:
        self.bonds_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.bonds_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([b.model_dump(mode="json") for b in bonds], indent=1))
        tmp.replace(self.bonds_file)

    def _save(self, state: dict[str, dict[str, object]]) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1, sort_keys=True))
        tmp.replace(self.state_file)


def _read_back(made: list[NetworkWiring]) -> tuple[ReportedNetwork, ...]:
    """The networks the agent made whose bridge exists, with the tag, MTU and addresses
    the system shows now."""
    if not made:
        return ()
    addresses = link_addresses()
    reported = []
    for wiring in made:
        bridge = SYS_NET / wiring.bridge
        if not bridge.exists():
            continue
        try:
            mtu: int | None = int((bridge / "mtu").read_text())
        except (OSError, ValueError):
            mtu = None
        reported.append(ReportedNetwork(
            name=wiring.name, bridge=wiring.bridge, nic=wiring.nic,
            vlan=_bridge_vlan(wiring.bridge) if wiring.vlan is not None else None, mtu=mtu,
            addresses=tuple(a for a in addresses.get(wiring.bridge, ())
                            if not a.lower().startswith("fe80:"))))
    return tuple(reported)


def _same_but_remotes(old: NetworkWiring, new: NetworkWiring) -> bool:
    """Equal, or an overlay whose remotes alone changed (set in place: no traffic lost)."""
    if old.vxlan is not None and new.vxlan is not None:
        old = old.model_copy(update={"vxlan": old.vxlan.model_copy(
            update={"remotes": new.vxlan.remotes})})
    return old == new


def vxlan_port(bridge: str) -> str:
    """The VXLAN device that is an overlay network's bridge port."""
    return f"vx-{bridge}"[:15]


def _vxlan_bridge(wiring: NetworkWiring) -> None:
    """A Linux bridge whose port is a VXLAN device (learning MACs, flooding to every
    remote: head-end replication, no multicast needed; the host's routes carry the tunnel).
    Made again when its VNI or local address changed; its remotes are set in place. Its
    MTU defaults to 1450: 1500 less the 50 bytes of VXLAN headers."""
    vxlan = wiring.vxlan
    assert vxlan is not None
    port = vxlan_port(wiring.bridge)
    if (SYS_NET / port).exists() and _vxlan_of(port) != (vxlan.vni, vxlan.local):
        _ip("link", "del", port)
    if not (SYS_NET / port).exists():
        _ip("link", "add", port, "type", "vxlan", "id", str(vxlan.vni), "local", vxlan.local,
            "dstport", "4789")
    flood = _flood_entries(port)
    for remote in sorted(set(vxlan.remotes) - flood):
        run(["bridge", "fdb", "append", "00:00:00:00:00:00", "dev", port, "dst", remote],
            timeout=20)
    for remote in sorted(flood - set(vxlan.remotes)):
        run(["bridge", "fdb", "del", "00:00:00:00:00:00", "dev", port, "dst", remote],
            timeout=20)
    mtu = str(wiring.mtu or OVERLAY_DEFAULT_MTU)
    if not (SYS_NET / wiring.bridge).exists():
        _ip("link", "add", "name", wiring.bridge, "type", "bridge")
    _ip("link", "set", port, "mtu", mtu)
    master = SYS_NET / port / "master"
    if not master.exists() or master.readlink().name != wiring.bridge:
        _ip("link", "set", port, "master", wiring.bridge)
    if _read(SYS_NET / wiring.bridge / "mtu") != mtu:
        _ip("link", "set", wiring.bridge, "mtu", mtu)
    for link in (port, wiring.bridge):
        _ip("link", "set", link, "up")


def _flood_entries(port: str) -> set[str]:
    """The remotes an overlay's VXLAN device floods unknown and broadcast frames to."""
    out = run(["bridge", "fdb", "show", "dev", port], timeout=20).stdout
    return {fields[fields.index("dst") + 1] for fields in (line.split() for line in
            out.splitlines()) if fields and fields[0] == "00:00:00:00:00:00"
            and "dst" in fields}


def _vxlan_of(port: str) -> tuple[int, str] | None:
    """(VNI, local address) of a VXLAN device, as the kernel has it."""
    try:
        info = json.loads(run(["ip", "-d", "-j", "link", "show", port], timeout=20).stdout)[0]
        data = info["linkinfo"]["info_data"]
        return int(data["id"]), str(data.get("local", ""))
    except (CommandFailed, ValueError, KeyError, IndexError):
        return None


def _realise_bond(bond: BondWiring, old: BondWiring | None) -> None:
    """The bond as the trunk port of its own OVS bridge (`ob-BOND`), made again when its
    slaves changed; its mode and LACP set in place."""
    for slave in bond.slaves:
        if not (SYS_NET / slave).exists():
            raise CommandFailed(["ip", "link", "show", slave], 1,
                                f"the host has no NIC {slave} to bond")
    parent = uplink_bridge(bond.name)
    _ovs("--may-exist", "add-br", parent, "--", "set", "bridge", parent,
         "datapath_type=netdev")
    if old is not None and set(old.slaves) != set(bond.slaves):
        _ovs("--if-exists", "del-port", parent, bond.name)
    if old is None or set(old.slaves) != set(bond.slaves) or not _port_exists(bond.name):
        _ovs("--may-exist", "add-bond", parent, bond.name, *bond.slaves)
    _ovs("set", "port", bond.name, f"bond_mode={bond.mode}", f"lacp={bond.lacp}")
    for link in (*bond.slaves, parent):
        _ip("link", "set", link, "up")


def _port_exists(port: str) -> bool:
    try:
        run(["ovs-vsctl", "--timeout=10", "port-to-br", port], timeout=20, check=True)
    except (CommandFailed, ToolMissing, subprocess.TimeoutExpired):
        return False
    return True


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _bridge_vlan(bridge: str) -> int | None:
    """The tag of an OVS fake bridge; None when OVS has no such bridge or it has no tag."""
    try:
        out = run(["ovs-vsctl", "--timeout=10", "br-to-vlan", bridge], timeout=20,
                  check=True).stdout.strip()
    except (CommandFailed, ToolMissing, subprocess.TimeoutExpired):
        return None
    return int(out) if out.isdigit() and int(out) > 0 else None


def _wiring_of(old: dict[str, object]) -> NetworkWiring:
    return NetworkWiring.model_validate({k: v for k, v in old.items()
                                         if k not in ("adopted", "kept_addresses", "ovs")})


def _ipv6_sysctls(link: str, **values: str) -> None:
    for key, value in values.items():
        path = Path("/proc/sys/net/ipv6/conf") / link / key
        try:
            path.write_text(value)
        except OSError as exc:
            raise CommandFailed(["sysctl", f"{path}={value}"], 1, str(exc)) from None


def _kept(old: dict[str, object]) -> list[str]:
    kept = old.get("kept_addresses")
    return [str(a) for a in kept] if isinstance(kept, list) else []


def _global_addresses(link: str) -> list[str]:
    """The link's addresses with their prefix, without IPv6 link-local ones."""
    if not (SYS_NET / link).exists():
        return []
    return [a for a in link_addresses().get(link, ()) if not a.lower().startswith("fe80:")]


def _ovs(*args: str) -> None:
    run(["ovs-vsctl", "--timeout=10", *args], timeout=20)


def _ip(*args: str) -> None:
    run(["ip", *args], timeout=20)
