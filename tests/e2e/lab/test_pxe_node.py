"""Node provisioning end to end, with real parts: a blank QEMU machine on the lab's
management network (no disk, network boot only, TCG) gets DHCP and its MAC's iPXE script
from the engine's dnsmasq, the node image over the engine's boot HTTP server, boots it,
finds the engine on its kernel command line and appears as `pending_approval` with its
hardware facts. Approved through the official SDK, it enrolls and goes `up`, and a VM the
engine starts on it runs there: the nested guest's own boot ROM asks the engine's dnsmasq
for an address through the node's `ovirtmgmt` bridge and fetches `boot.ipxe`, seen from
outside in dnsmasq's log.

Under emulation this is slow (minutes); the waits are generous and nothing is timed.
One lab, one engine, one test."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.lab.blank_machine import BlankMachine
from overt.lab.topology import LabSpec
from tests.conftest import require_root
from tests.support.demo import wait_until
from tests.support.pxe_site import NODE_IMAGE, PxeSite, pxe_site

pytestmark = [pytest.mark.lab, pytest.mark.vm, pytest.mark.slow, pytest.mark.timeout(2400)]

SPEC = LabSpec(nodes=1, prefix=os.environ.get("OVERT_TEST_PXE_LAB_PREFIX", "ovpxe"),
               address_block=os.environ.get("OVERT_TEST_PXE_LAB_BLOCK", "10.243.0.0/16"))
MAC = "52:54:00:43:00:01"
MIB = 2**20


@pytest.fixture(scope="module")
def site() -> Iterator[PxeSite]:
    require_root()
    with pxe_site(SPEC) as built:
        yield built


def _console_tail(machine: BlankMachine) -> str:
    return "\n".join(machine.console().splitlines()[-60:])


def _pending(hosts: sdk.services.HostsService) -> types.Host | None:
    return next((h for h in hosts.list() if h.status == types.HostStatus.PENDING_APPROVAL),
                None)


def test_a_blank_machine_boots_the_node_image_is_approved_and_runs_a_guest(
        site: PxeSite) -> None:
    profile = site.add_profile("blank1", MAC)
    assert profile["image"] == NODE_IMAGE
    wait_until(lambda: site.profile_served(MAC), 30, "the network services to serve the profile")

    machine = site.blank_machine("blank1", MAC)
    conn = site.engine.admin_connection()
    vm_id: str | None = None
    try:
        machine.power_on()
        hosts = conn.system_service().hosts_service()
        try:
            host = wait_until(lambda: _pending(hosts), 1200,
                              "the blank machine to boot the node image and ask to join",
                              every=3)
        except AssertionError:
            raise AssertionError(f"console:\n{_console_tail(machine)}\n"
                                 f"dnsmasq:\n{site.dnsmasq_log()[-3000:]}") from None
        # It booted what the engine served, by the profile of its MAC.
        console = machine.console()
        assert "Overt node provisioning: profile blank1" in console or \
            "overt.profile=blank1" in console
        log = site.dnsmasq_log()
        assert re.search(rf"DHCPACK\(\S+\) \S+ {MAC}", log), log[-3000:]
        assert "boot.ipxe" in log and "mac-52-54-00-43-00-01.ipxe" in log

        # Its name, its own: from the MAC it booted from (not one name for every node).
        facts = hosts.host_service(host.id).get()
        assert facts.name == "overt-node-" + MAC.replace(":", "")[-6:], facts.name
        assert "overt-node: host name overt-node-430001" in console
        # Its facts, as the firmware and kernel of the machine tell them.
        assert facts.hardware_information.uuid == str(machine.spec.system_uuid)
        assert facts.hardware_information.product_name  # QEMU's "Standard PC (Q35 ...)"
        assert facts.cpu.name
        assert facts.cpu.topology.cores * facts.cpu.topology.sockets * \
            facts.cpu.topology.threads == machine.spec.cpus
        assert (machine.spec.memory_mib - 256) * MIB < facts.memory <= \
            machine.spec.memory_mib * MIB
        nics = hosts.host_service(host.id).nics_service().list()
        assert MAC in {n.mac.address for n in nics if n.mac is not None}

        hosts.host_service(host.id).approve()
        try:
            wait_until(lambda: hosts.host_service(host.id).get().status == types.HostStatus.UP,
                       600, "the approved node to be up", every=2)
        except AssertionError:
            status = hosts.host_service(host.id).get().status
            raise AssertionError(f"host {status}; console:\n{_console_tail(machine)}") from None

        # A guest on it: no disk, boots from the network on ovirtmgmt (the node's bridge).
        system = conn.system_service()
        vnic = next(p for p in system.vnic_profiles_service().list() if p.name == "ovirtmgmt")
        vms = system.vms_service()
        vm = vms.add(types.Vm(
            name="pxe-nested", cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"), memory=256 * MIB,
            os=types.OperatingSystem(boot=types.Boot(devices=[types.BootDevice.NETWORK]))))
        vm_id = vm.id
        service = vms.vm_service(vm.id)
        nic = service.nics_service().add(types.Nic(
            name="nic1", vnic_profile=types.VnicProfile(id=vnic.id)))
        guest_mac = nic.mac.address
        service.start()
        try:
            running = wait_until(
                lambda: (v := service.get()).status == types.VmStatus.UP and v, 600,
                "the guest to be up on the provisioned node", every=2)
        except AssertionError:
            raise AssertionError(f"VM {service.get().status}; console:\n"
                                 f"{_console_tail(machine)}") from None
        assert running.host.id == host.id
        # Seen from outside: the nested guest's boot ROM, through the node's bridge, gets
        # its address and the boot script from the engine's dnsmasq.
        wait_until(lambda: re.search(rf"DHCPACK\(\S+\) \S+ {guest_mac}", site.dnsmasq_log()),
                   600, "the guest's DHCP request to reach the engine's dnsmasq", every=2)
        address = re.search(rf"DHCPACK\(\S+\) (\S+) {guest_mac}", site.dnsmasq_log())
        assert address is not None
        wait_until(lambda: re.search(rf"sent \S*boot\.ipxe to {re.escape(address[1])}\b",
                                     site.dnsmasq_log()),
                   300, "the guest to fetch its boot script", every=2)
    finally:
        if vm_id is not None:
            with contextlib.suppress(sdk.Error):
                conn.system_service().vms_service().vm_service(vm_id).stop()
        conn.close()  # the site powers the machine off once the engine has stopped
