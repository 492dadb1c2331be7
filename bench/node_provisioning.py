"""Time from PXE power-on of a blank machine to its host `pending_approval`, and from
approval to `up`, under software emulation (TCG), in the lab as the end-to-end test runs it.

Run as root on a machine set up by scripts/setup:
`PYTHONPATH=src .venv/bin/python -m bench.node_provisioning [--runs N]`.

Builds a lab (one node; the end-to-end test's prefix `ovpxe` and 10.243.0.0/16, so not
while that test runs) and the node image (`overt node-image
build`), starts an engine whose network services serve the lab's management network as
`ovirtmgmt` with `pxe = true` (tests/support/pxe_site.py), adds a provisioning profile for
each machine's MAC, and powers on blank QEMU machines (TCG, 2 vCPUs, 2 GiB, no disk, a tap
on the management bridge, `Lab.blank_machine`) one after the other. Each one's iPXE ROM
gets DHCP and `boot.ipxe` from the engine's dnsmasq, chains to its MAC's script, fetches
the node image from the engine's boot HTTP server and boots it; the agent finds the engine
on its kernel command line and announces itself. The official SDK waits for the host
pending approval, approves it and waits for it to be `up` (the engine calls the node at
its DHCP address). Figures: power-on to the machine's DHCP lease (firmware), to the
kernel's first line, to the node image's init, to libvirtd started, to the agent started
(as first seen on the serial console, polled), to `pending_approval`; approval to `up`;
power-on to `up`.
"""

from __future__ import annotations

import argparse
import os
import re
import time

import ovirtsdk4.types as types
from tests.support.demo import wait_until
from tests.support.pxe_site import pxe_site

from overt.lab.blank_machine import BlankMachine
from overt.lab.topology import LabSpec

SPEC = LabSpec(nodes=1, prefix="ovpxe", address_block="10.243.0.0/16")
# What the console shows at each step of the boot, in order.
MARKS = {"kernel": "Linux version", "init": "overt-node: starting",
         "libvirtd": "overt-node: libvirtd started", "agent": "agent started"}


class Console:
    """When each mark first appeared on a machine's console (seconds after power-on)."""

    def __init__(self, machine: BlankMachine, power_on: float) -> None:
        self.machine, self.power_on = machine, power_on
        self.seen: dict[str, float] = {}

    def poll(self) -> None:
        if len(self.seen) == len(MARKS):
            return
        text = self.machine.console()
        for name, mark in MARKS.items():
            if name not in self.seen and mark in text:
                self.seen[name] = time.monotonic() - self.power_on

    def summary(self) -> str:
        return ", ".join(f"{name} {self.seen[name]:.0f} s" for name in MARKS
                         if name in self.seen)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2, help="machines booted one after another")
    args = parser.parse_args()
    started = time.monotonic()
    with pxe_site(SPEC) as site:
        print(f"lab up, node image built ({site.image.initrd.stat().st_size >> 20} MiB "
              f"initramfs), engine started: {time.monotonic() - started:.0f} s")
        conn = site.engine.admin_connection()
        hosts = conn.system_service().hosts_service()
        try:
            for run in range(1, args.runs + 1):
                mac = f"52:54:00:44:00:{run:02x}"
                site.add_profile(f"bench{run}", mac)
                wait_until(lambda m=mac: site.profile_served(m), 30, "the profile served")
                machine = site.blank_machine(f"bench{run}", mac)
                load = os.getloadavg()[0]
                power_on = time.monotonic()
                machine.power_on()
                console = Console(machine, power_on)
                wait_until(lambda m=mac: re.search(rf"DHCPACK\(\S+\) \S+ {m}",
                                                   site.dnsmasq_log()), 300, "the DHCP lease",
                           every=0.2)
                lease = time.monotonic() - power_on

                def pending(console: Console = console) -> types.Host | None:
                    console.poll()
                    return next((h for h in hosts.list()
                                 if h.status == types.HostStatus.PENDING_APPROVAL), None)
                host = wait_until(pending, 1200, "the node pending approval", every=0.5)
                waited = time.monotonic() - power_on
                approved = time.monotonic()
                hosts.host_service(host.id).approve()
                wait_until(lambda h=host: hosts.host_service(h.id).get().status
                           == types.HostStatus.UP, 600, "the node up", every=0.5)
                up = time.monotonic()
                print(f"run {run} (load {load:.1f} at power-on): DHCP lease {lease:.0f} s, "
                      f"{console.summary()}, pending_approval {waited:.0f} s, approval to up "
                      f"{up - approved:.0f} s, power-on to up {up - power_on:.0f} s",
                      flush=True)
                machine.power_off()  # the next machine boots alone
        finally:
            conn.close()


if __name__ == "__main__":
    main()
