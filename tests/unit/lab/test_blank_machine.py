import tomllib
import uuid
from pathlib import Path

import pytest

from overt.engine.netsvc.plan import parse_plan
from overt.lab.blank_machine import BlankMachine, BlankMachineSpec, qemu_argv
from overt.lab.lab import Lab
from overt.lab.topology import LabError, LabSpec, Topology

SPEC = BlankMachineSpec(name="blank1", mac="52:54:00:43:00:01", tap="ovpxeb1",
                        bridge="ovpxe-mgmt", directory=Path("/var/lib/overt-lab/ovpxe/blank/b"),
                        system_uuid=uuid.UUID("9b1b4a44-3c35-4f2c-8b0e-0d7f3c1e2a10"))


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_a_blank_machine_is_diskless_tcg_and_boots_from_its_nic_only() -> None:
    argv = qemu_argv(SPEC)
    assert argv[0] == "qemu-system-x86_64"
    assert _option(argv, "-machine") == ["q35,accel=tcg"]  # never KVM on this machine kind
    assert not {"-drive", "-hda", "-cdrom", "-kernel", "-blockdev"} & set(argv)
    assert _option(argv, "-boot") == ["order=n"]
    assert _option(argv, "-netdev") == ["tap,id=net0,ifname=ovpxeb1,script=no,downscript=no"]
    assert _option(argv, "-device") == [
        "virtio-net-pci,netdev=net0,mac=52:54:00:43:00:01,bootindex=1"]
    assert _option(argv, "-m") == ["2048"] and _option(argv, "-smp") == ["2"]
    assert _option(argv, "-uuid") == [str(SPEC.system_uuid)]
    assert _option(argv, "-serial") == [f"file:{SPEC.directory}/console.log"]
    assert _option(argv, "-pidfile") == [f"{SPEC.directory}/qemu.pid"]
    assert "-daemonize" in argv and "-no-reboot" in argv


@pytest.mark.parametrize(("field", "value", "says"), [
    ("mac", "52:54:00:43:00", "is not a MAC"),
    ("mac", "52:54:00:43:00:0G", "is not a MAC"),
    ("mac", "01:54:00:43:00:01", "multicast"),
    ("memory_mib", 512, "at least 1024 MiB"),
    ("cpus", 0, "1 to 8 CPUs"),
    ("name", "Blank 1", "lowercase"),
])
def test_a_blank_machine_refuses_what_cannot_boot(field: str, value: object, says: str) -> None:
    spec = BlankMachineSpec(**{**SPEC.__dict__, field: value})
    with pytest.raises(LabError, match=says):
        BlankMachine(spec)


def test_the_lab_places_its_blank_machines_on_the_management_bridge() -> None:
    lab = Lab(Topology(LabSpec(nodes=1, prefix="ovpxe", address_block="10.243.0.0/16")))
    machine = lab.blank_machine("blank1", "52:54:00:43:00:01", index=2)
    spec = machine.spec
    assert (spec.tap, spec.bridge) == ("ovpxeb2", "ovpxe-mgmt")
    assert spec.directory == Path("/var/lib/overt-lab/ovpxe/blank/blank1")
    assert not machine.running
    # stable per name, distinct between labs
    assert spec.system_uuid == lab.topology.blank_uuid("blank1")
    other = Topology(LabSpec(nodes=1, prefix="other"))
    assert other.blank_uuid("blank1") != spec.system_uuid
    with pytest.raises(LabError, match="1 to 99"):
        lab.topology.blank_tap(100)
    assert len(lab.topology.blank_tap(99)) <= 15


def test_the_labs_address_plan_serves_pxe_on_its_management_network() -> None:
    topo = Topology(LabSpec(nodes=2, prefix="ovpxe", address_block="10.243.0.0/16"))
    plan = parse_plan(tomllib.loads(topo.netsvc_plan(boot_http_port=8481)))
    [net] = plan.networks
    assert (net.name, net.interface, net.pxe) == ("ovirtmgmt", "ovpxe-mgmt", True)
    assert str(net.address) == "10.243.0.1"
    assert plan.boot.http_port == 8481 and plan.boot.kernel is None  # the test guest's entry
    assert not plan.ntp
    fixed = {topo.storage.address(n) for n in [i.net for i in topo.storage.interfaces]}
    fixed |= {h.address(i.net) for h in topo.nodes for i in h.interfaces if i.address}
    low, high = net.dhcp_range
    assert not any(low <= a <= high for a in fixed)  # leases never take a lab host's address
    tftp_only = parse_plan(tomllib.loads(topo.netsvc_plan(pxe=True)))
    assert tftp_only.boot.http_port is None
    assert not parse_plan(tomllib.loads(topo.netsvc_plan(pxe=False))).networks[0].pxe
