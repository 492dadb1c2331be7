"""The `netsvc` engine part: one dnsmasq per managed network and one chronyd, configured
from the address plan and the database, refreshed as VMs and hosts come and go."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import ipaddress
import logging
import os
import pwd
import shutil
from collections.abc import Sequence
from pathlib import Path

from overt.engine.db.database import Database
from overt.engine.netsvc.addresses import AddressBook, PoolExhausted
from overt.engine.netsvc.boot_http import BootFileServer
from overt.engine.netsvc.configs import DnsmasqFiles, render_chrony, render_dnsmasq
from overt.engine.netsvc.daemon import ChildDaemon, reap_stale
from overt.engine.netsvc.inventory import Inventory, read_inventory
from overt.engine.netsvc.plan import PlanError, ServicesPlan
from overt.engine.netsvc.provisioning import publish, read_profiles
from overt.engine.netsvc.pxe import INITRD, KERNEL, BootEntry, boot_base, prepare_tftp_root
from overt.engine.provisioning.images import NodeImages
from overt.lab.guest import build_guest_image

log = logging.getLogger(__name__)


def _write_if_changed(path: Path, text: str) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True


def _program(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise PlanError(f"the network services need `{name}`, which is not installed "
                        "(scripts/setup installs it)")
    return found


class NetworkServices:
    """Runs until cancelled; stops its daemons on the way out."""

    def __init__(self, db: Database, plan: ServicesPlan, state_dir: Path, *,
                 wrap: Sequence[str] = (), node_images: NodeImages | None = None,
                 ca_fingerprint: str | None = None) -> None:
        """`wrap` prefixes the daemons' command lines (tests: `ip netns exec NS`);
        `node_images` and `ca_fingerprint` serve the provisioning profiles' nodes."""
        self.db = db
        self.node_images = node_images or NodeImages(None)
        self.ca_fingerprint = ca_fingerprint
        self._entry: BootEntry | None = None
        self._boot_source: tuple[Path, Path] | None = None
        self.wrap = list(wrap)
        self.plan = plan
        self.state_dir = state_dir
        self.dnsmasq: dict[str, ChildDaemon] = {}
        self.chrony: ChildDaemon | None = None
        self.refreshed = asyncio.Event()
        self.wakeup = asyncio.Event()
        self._user = pwd.getpwuid(os.geteuid()).pw_name
        self._group = grp.getgrgid(os.getegid()).gr_name
        self._missing: set[str] = set()
        self.boot_files: BootFileServer | None = None

    def network_dir(self, name: str) -> Path:
        return self.state_dir / name

    @property
    def tftp_root(self) -> Path:
        return self.state_dir / "tftp"

    async def _start_network_boot(self) -> None:
        """The HTTP server of the boot files, then the TFTP root; an HTTP port that cannot
        be had leaves TFTP alone serving them (slower, but every machine still boots)."""
        entry = self.plan.boot
        if entry.http_port is not None:
            server = BootFileServer(self.tftp_root, (KERNEL, INITRD))
            try:
                await server.start([str(net.address) for net in self.plan.networks if net.pxe],
                                   entry.http_port)
                self.boot_files = server
            except OSError as exc:
                await server.stop()
                log.error("network boot: cannot serve the boot files over HTTP on port %d "
                          "(%s); serving them over TFTP only", entry.http_port, exc.strerror)
                entry = dataclasses.replace(entry, http_port=None)
        self._entry = entry
        await asyncio.to_thread(self._prepare_network_boot, entry)

    def _prepare_network_boot(self, entry: BootEntry) -> None:
        """The boot entry's files in the TFTP root; the test guest's unless the plan names
        others (built from Debian packages once, then cached)."""
        if entry.kernel is not None and entry.initrd is not None:
            kernel, initrd = entry.kernel, entry.initrd
        else:
            image = build_guest_image()
            kernel, initrd = image.kernel, image.initrd
        self._boot_source = (kernel, initrd)
        prepare_tftp_root(self.tftp_root, kernel, initrd, entry)
        log.info("network boot: serving %s with %s (%s)", kernel, initrd, self.tftp_root)

    async def start(self) -> None:
        """Write every file and start the daemons."""
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        dnsmasq = _program("dnsmasq")
        if self.plan.serves_pxe:
            await self._start_network_boot()
        await self.refresh(start=False)
        for net in self.plan.networks:
            directory = self.network_dir(net.name)
            await asyncio.to_thread(reap_stale, directory / "dnsmasq.pid",
                                    str(directory / "dnsmasq.conf"))
            daemon = ChildDaemon(f"dnsmasq ({net.name})",
                                 [*self.wrap, dnsmasq, "--keep-in-foreground",
                                  f"--conf-file={directory / 'dnsmasq.conf'}"],
                                 directory / "dnsmasq.out", pidfile=directory / "dnsmasq.pid")
            await daemon.start()
            self.dnsmasq[net.name] = daemon
        if self.plan.ntp:
            conf = self.state_dir / "chrony.conf"
            await asyncio.to_thread(reap_stale, self.state_dir / "chronyd.pid", str(conf))
            _write_if_changed(conf, render_chrony(self.plan, self.state_dir))
            argv = [*self.wrap, _program("chronyd"), "-d", "-x", "-f", str(conf),
                    "-u", self._user]
            self.chrony = ChildDaemon("chronyd", argv, self.state_dir / "chronyd.out",
                                      pidfile=self.state_dir / "chronyd.pid")
            await self.chrony.start()

    async def _refresh_profiles(self) -> None:
        """The provisioning profiles' scripts and images, and the boot script chaining to
        them; the booted node is told to announce itself on the engine's gateway on the
        address that served it."""
        entry, source = self._entry, self._boot_source
        if entry is None or source is None:
            return
        profiles = await read_profiles(self.db)
        served = await asyncio.to_thread(
            publish, self.tftp_root, profiles, self.node_images, base=boot_base(entry),
            engine_url=f"https://${{next-server}}:{self.plan.gateway_port}",
            ca_fingerprint=self.ca_fingerprint)
        await asyncio.to_thread(prepare_tftp_root, self.tftp_root, *source, entry,
                                profiles=bool(profiles))
        if self.boot_files is not None:
            self.boot_files.names = frozenset({KERNEL, INITRD, *served})

    async def refresh(self, *, start: bool = True) -> None:
        """Re-read the database; rewrite what changed; reload (hosts) or restart (main file)."""
        await self._refresh_profiles()
        subnets = {net.name: net.subnet for net in self.plan.networks}
        inventory = await read_inventory(
            self.db, {net.name: net.data_center for net in self.plan.networks}, subnets)
        missing = {net.name for net in self.plan.networks} - inventory.networks
        if missing != self._missing:
            if missing:
                log.warning("the address plan names networks the engine does not have: %s "
                            "(served, but with no VM NIC or host on them)",
                            ", ".join(sorted(missing)))
            self._missing = missing
        addresses: dict[str, dict[str, ipaddress.IPv4Address]] = {}
        for net in self.plan.networks:
            macs = [nic.mac for nic in inventory.nics if nic.network == net.name]
            try:
                addresses[net.name] = AddressBook(
                    self.network_dir(net.name) / "addresses.json").assign(net, macs)
            except PoolExhausted as exc:
                log.error("%s", exc)
                addresses[net.name] = exc.assigned
        for net in self.plan.networks:
            files = self._files(net.name, inventory, addresses)
            directory = self.network_dir(net.name)
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            (directory / "leases").touch()
            main_changed = _write_if_changed(directory / "dnsmasq.conf", files.main)
            hosts_changed = _write_if_changed(directory / "hosts", files.hosts)
            hosts_changed |= _write_if_changed(directory / "dhcp-hosts", files.dhcp_hosts)
            daemon = self.dnsmasq.get(net.name)
            if start and daemon is not None:
                if main_changed:
                    await daemon.restart()
                elif hosts_changed:
                    await daemon.reload()
        self.refreshed.set()

    def _files(self, name: str, inventory: Inventory,
               addresses: dict[str, dict[str, ipaddress.IPv4Address]]) -> DnsmasqFiles:
        net = self.plan.network(name)
        assert net is not None
        return render_dnsmasq(self.plan, net, inventory, addresses, self.network_dir(name),
                              user=self._user, group=self._group, tftp_root=self.tftp_root)

    async def run(self) -> None:
        await self.start()
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), self.plan.refresh_s)
                self.wakeup.clear()
                try:
                    await self.refresh()
                except Exception:  # keep serving what was last written
                    log.exception("network services: refresh failed")
        finally:
            await self.stop()

    async def stop(self) -> None:
        if self.boot_files is not None:
            await self.boot_files.stop()
        for daemon in self.dnsmasq.values():
            await daemon.stop()
        if self.chrony is not None:
            await self.chrony.stop()
