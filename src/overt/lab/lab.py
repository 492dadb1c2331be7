"""Building, inspecting and removing a lab (`overt lab up|status|down|exec`)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from overt.lab import netns
from overt.lab.anchor import enter
from overt.lab.blank_machine import DEFAULT_MEMORY_MIB, BlankMachine, BlankMachineSpec
from overt.lab.guest_dhcp import GuestDhcp
from overt.lab.node_host import NodeHypervisor
from overt.lab.storage_host import ISCSI_PORT, NFS_PORT, StorageServer
from overt.lab.topology import STATE_ROOT, Host, LabError, LabSpec, Net, Role, Topology
from overt.system.commands import run
from overt.system.daemons import fix_kvm_permissions
from overt.system.processes import pids_mentioning, stop_processes
from overt.system.waiting import unix_socket_answers

log = logging.getLogger(__name__)

NODE_MGMT_BRIDGE = "ovirtmgmt"


@dataclass(frozen=True)
class HostStatus:
    name: str
    role: Role
    addresses: dict[str, str]
    namespace: bool
    anchor: int | None
    services: dict[str, bool]

    @property
    def healthy(self) -> bool:
        return self.namespace and self.anchor is not None and all(self.services.values())


class Lab:
    """One lab, named by its prefix; its state lives in /var/lib/overt-lab/PREFIX."""

    def __init__(self, topology: Topology, on_step: Callable[[str], None] | None = None) -> None:
        self.topology = topology
        self.state_file = topology.state_dir / "lab.json"
        self.on_step = on_step or (lambda step: log.info("lab: %s", step))

    @classmethod
    def find(cls, prefix: str) -> Lab:
        """The lab that is up under `prefix`, as it was built."""
        state_file = STATE_ROOT / prefix / "lab.json"
        try:
            state = json.loads(state_file.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab {prefix!r} is up; start one with `overt lab up`") from None
        spec = LabSpec(**state["spec"])
        return cls(Topology(spec))

    # -- building -----------------------------------------------------------------

    def up(self) -> None:
        """Build the lab, or repair it when it exists with the same settings."""
        spec = self.topology.spec
        with self._locked():
            existing = self._read_state()
            if existing is not None and existing["spec"] != spec.to_json():
                have = existing["spec"]
                raise LabError(
                    f"lab {spec.prefix!r} is already up with {have['nodes']} node(s) and "
                    f"addresses {have['address_block']}; run `overt lab down` first, or ask "
                    "for the same settings")
            fresh = existing is None
            if fresh:
                self._teardown()  # leftovers of a lab whose state was lost
                self._check_addresses_free()
            self._write_state("building")
            try:
                self._build()
            except BaseException:
                if fresh:
                    log.error("building lab %s failed; removing what was built", spec.prefix)
                    self._teardown()
                raise
            self._write_state("up")

    def _build(self) -> None:
        topo = self.topology
        fix_kvm_permissions()
        self.on_step("bridges for the management, storage and guest networks")
        for net in Net:
            netns.ensure_bridge(topo.bridge(net))
        netns.ensure_address(topo.bridge(Net.MANAGEMENT), topo.gateway(Net.MANAGEMENT))
        netns.ensure_address(topo.bridge(Net.GUEST), topo.gateway(Net.GUEST))
        for host in topo.hosts:
            self.on_step(f"{host.name}: namespace and network ports")
            self._plumb(host)
        self.on_step("storage: NFS (nfs-ganesha) and iSCSI (tgt) servers")
        self.storage_server().ensure_running()
        for node in topo.nodes:
            self.on_step(f"{node.name}: libvirtd and virtlogd")
            self.hypervisor(node.name).ensure_running()
        self.on_step("guest network: DHCP")
        self.guest_dhcp().ensure_running()

    def _plumb(self, host: Host) -> None:
        netns.ensure_namespace(host.namespace)
        for iface in host.interfaces:
            netns.ensure_veth(iface.outer, iface.inner, host.namespace,
                              self.topology.bridge(iface.net))
            if host.role is Role.NODE and iface.net is Net.MANAGEMENT:
                # As on a deployed oVirt host, the management address sits on `ovirtmgmt`.
                netns.ensure_bridge(NODE_MGMT_BRIDGE, host.namespace)
                netns.enslave(iface.inner, NODE_MGMT_BRIDGE, host.namespace)
                dev = NODE_MGMT_BRIDGE
            else:
                dev = iface.inner
            if iface.address is not None:
                netns.ensure_address(dev, iface.address, host.namespace)

    def _check_addresses_free(self) -> None:
        ours = {self.topology.bridge(net) for net in Net}
        clashes = netns.routes_overlapping(self.topology.block, ignore_devs=ours)
        if clashes:
            raise LabError(
                f"the lab's addresses {self.topology.block} overlap this machine's routes "
                f"({'; '.join(clashes)}); choose others with --address-block")

    # -- the parts ----------------------------------------------------------------

    def hypervisor(self, node: str) -> NodeHypervisor:
        host = self.topology.host(node)
        if host.role is not Role.NODE:
            raise LabError(f"{node} is the storage host, not a node")
        return NodeHypervisor(self.topology.host_dir(host), host.namespace, host.host_uuid)

    def storage_server(self) -> StorageServer:
        host = self.topology.storage
        return StorageServer(self.topology.host_dir(host), host.namespace,
                             host.address(Net.STORAGE), self.topology.nfs_export_dir(),
                             self.topology.iscsi_target())

    def guest_dhcp(self) -> GuestDhcp:
        return GuestDhcp(self.topology.state_dir, self.topology.bridge(Net.GUEST),
                         self.topology.guest_dhcp_range())

    def blank_machine(self, name: str, mac: str, *, index: int = 1,
                      memory_mib: int = DEFAULT_MEMORY_MIB, cpus: int = 2) -> BlankMachine:
        """A diskless machine booting from the management network (powered off until
        `power_on`); the lab's teardown powers it off."""
        return BlankMachine(BlankMachineSpec(
            name=name, mac=mac, tap=self.topology.blank_tap(index),
            bridge=self.topology.bridge(Net.MANAGEMENT),
            directory=self.topology.blank_machine_dir(name),
            system_uuid=self.topology.blank_uuid(name), memory_mib=memory_mib, cpus=cpus))

    def _anchor(self, host: Host) -> int | None:
        if host.role is Role.NODE:
            return self.hypervisor(host.name).anchor()
        return self.storage_server().anchor()

    def exec_argv(self, host_name: str, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` on a lab host (its network and mount namespaces)."""
        host = self.topology.host(host_name)
        anchor = self._anchor(host)
        if anchor is None:
            raise LabError(f"{host_name} is not running; run `overt lab up` to repair the lab")
        return enter(anchor, argv, workdir=str(Path.cwd()))

    def set_link(self, host_name: str, net: Net, *, up: bool) -> None:
        """Plug or unplug a host's cable to `net`: its port on the network's bridge goes
        down (the host sees no carrier, nothing reaches it) or up again, as a pulled and
        replaced cable would. Its processes and addresses stay as they are."""
        host = self.topology.host(host_name)
        iface = next((i for i in host.interfaces if i.net is net), None)
        if iface is None:
            raise LabError(f"{host_name} has no port on the {net.value} network")
        netns.ip("link", "set", iface.outer, "up" if up else "down")

    # -- status ---------------------------------------------------------------------

    def status(self) -> list[HostStatus]:
        present = set(netns.namespaces())
        result = []
        for host in self.topology.hosts:
            anchor = self._anchor(host)
            if host.role is Role.NODE:
                hyp = self.hypervisor(host.name)
                services = {"libvirtd": unix_socket_answers(str(hyp.socket))}
            else:
                storage = self.storage_server()
                services = {
                    "nfs": anchor is not None and storage._answers_inside(anchor, NFS_PORT),
                    "iscsi": anchor is not None and storage._answers_inside(anchor, ISCSI_PORT),
                }
            addresses = {i.net.value: str(i.address) for i in host.interfaces if i.address}
            result.append(HostStatus(host.name, host.role, addresses,
                                     host.namespace in present, anchor, services))
        return result

    # -- removing ---------------------------------------------------------------------

    def down(self) -> None:
        self.on_step("stopping the lab's processes and removing its namespaces")
        with self._locked():
            self._teardown()

    def _teardown(self) -> None:
        prefix = self.topology.spec.prefix
        ours = [ns for ns in netns.namespaces() if ns.startswith(f"{prefix}-")]
        pids = {pid for ns in ours for pid in netns.pids_in(ns)}
        pids |= pids_mentioning(self.topology.state_dir)
        stuck = stop_processes(pids)
        if stuck:
            raise LabError(f"processes {sorted(stuck)} would not stop; the lab is not fully down")
        for ns in ours:
            netns.delete_namespace(ns)
        link_re = re.compile(rf"^{prefix}(-(mgmt|stor|guest)|(st|n\d+)[msg]x?|b\d+)$")
        netns.delete_links([name for name in netns.links() if link_re.match(name)])
        _unmount_below(self.topology.state_dir)
        if self.topology.state_dir.exists():
            shutil.rmtree(self.topology.state_dir)
        with contextlib.suppress(OSError):
            STATE_ROOT.rmdir()  # only when no other lab is left

    # -- state --------------------------------------------------------------------------

    def _read_state(self) -> dict[str, dict[str, object]] | None:
        try:
            state: dict[str, dict[str, object]] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        return state

    def _write_state(self, phase: str) -> None:
        self.topology.state_dir.mkdir(parents=True, exist_ok=True)
        state = {"spec": self.topology.spec.to_json(), "phase": phase, "updated": time.time()}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise lab changes on this machine (a lock on the state root directory)."""
        STATE_ROOT.mkdir(parents=True, exist_ok=True)
        fd = os.open(STATE_ROOT, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _unmount_below(path: Path) -> None:
    """Unmount what a crashed build may have left mounted below `path` in this namespace."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(str(path) + "/")), reverse=True):
        run(["umount", "-l", target], check=False)
