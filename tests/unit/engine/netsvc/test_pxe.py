"""Network boot in the address plan: which networks serve it, what boot entry, what the
engine's dnsmasq and TFTP root then hold; bad boot entries are refused before anything runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from overt.engine.netsvc.configs import render_dnsmasq
from overt.engine.netsvc.inventory import Inventory
from overt.engine.netsvc.plan import PlanError, parse_plan
from overt.engine.netsvc.pxe import (
    DEFAULT_CMDLINE,
    BootEntry,
    dnsmasq_lines,
    ipxe_script,
    prepare_tftp_root,
)

NETWORK = {"name": "vmnet", "interface": "br-vm", "subnet": "10.233.5.0/24",
           "address": "10.233.5.1", "dhcp_range": "10.233.5.100-10.233.5.150",
           "reserved_range": "10.233.5.10-10.233.5.12"}


def _plan(boot: object = None, **network: object) -> dict[str, object]:
    """A plan with one network (`network` its settings) and `boot` as its [pxe] table."""
    raw: dict[str, object] = {"domain": "example", "networks": [{**NETWORK, **network}]}
    if boot is not None:
        raw["pxe"] = boot
    return raw


def _files(tmp_path: Path) -> tuple[Path, Path]:
    kernel, initrd = tmp_path / "vmlinuz-6", tmp_path / "initrd-6"
    kernel.write_bytes(b"kernel")
    initrd.write_bytes(b"initrd")
    return kernel, initrd


def test_a_pxe_network_serves_tftp_and_the_ipxe_script(tmp_path: Path) -> None:
    kernel, initrd = _files(tmp_path)
    plan = parse_plan(_plan({"kernel": str(kernel), "initrd": str(initrd),
                             "cmdline": "console=ttyS0 marker=1"}, pxe=True))
    assert plan.serves_pxe and plan.networks[0].pxe
    assert plan.boot == BootEntry(kernel, initrd, "console=ttyS0 marker=1", 8480)
    root = tmp_path / "tftp"
    main = render_dnsmasq(plan, plan.networks[0], Inventory((), ()), {}, tmp_path,
                          user="root", group="root", tftp_root=root).main.splitlines()
    for line in ("enable-tftp", f"tftp-root={root}", "dhcp-match=set:ipxe,175",
                 "dhcp-option=encap:175,176,1b",
                 "dhcp-boot=tag:ipxe,boot.ipxe",
                 "dhcp-match=set:efi64,option:client-arch,7",
                 "dhcp-match=set:efi64,option:client-arch,9",
                 "dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi",
                 "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe"):
        assert line in main


def test_dnsmasq_accepts_the_boot_configuration(tmp_path: Path) -> None:
    """dnsmasq's own syntax check of the whole configuration the engine writes for a PXE
    network (BIOS and UEFI clients)."""
    kernel, initrd = _files(tmp_path)
    plan = parse_plan(_plan({"kernel": str(kernel), "initrd": str(initrd)}, pxe=True))
    root = tmp_path / "tftp"
    root.mkdir()
    conf = tmp_path / "dnsmasq.conf"
    main = render_dnsmasq(plan, plan.networks[0], Inventory((), ()), {}, tmp_path,
                          user="root", group="root", tftp_root=root).main
    assert set(dnsmasq_lines(root)) <= set(main.splitlines())
    conf.write_text(main)
    checked = subprocess.run(["dnsmasq", "--test", f"--conf-file={conf}"], capture_output=True,
                             text=True, timeout=30, check=False)
    assert checked.returncode == 0, checked.stderr
    assert "syntax check OK" in checked.stderr


def test_the_tftp_root_holds_ipxe_for_bios_and_uefi_clients(tmp_path: Path) -> None:
    """Debian's ipxe (scripts/setup) gives both builds; UEFI clients chain into ipxe.efi."""
    kernel, initrd = _files(tmp_path)
    root = tmp_path / "tftp"
    prepare_tftp_root(root, kernel, initrd, BootEntry(kernel, initrd))
    efi = (root / "ipxe.efi").read_bytes()
    assert efi[:2] == b"MZ" and efi == Path("/usr/lib/ipxe/ipxe.efi").read_bytes()
    assert (root / "undionly.kpxe").read_bytes() == Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()


def test_a_network_without_pxe_serves_no_boot(tmp_path: Path) -> None:
    plan = parse_plan(_plan())
    assert not plan.serves_pxe
    assert plan.boot == BootEntry(None, None, DEFAULT_CMDLINE)
    main = render_dnsmasq(plan, plan.networks[0], Inventory((), ()), {}, tmp_path,
                          user="root", group="root", tftp_root=tmp_path / "tftp").main
    assert "tftp" not in main and "dhcp-boot" not in main


def test_the_tftp_root_holds_the_entry_and_follows_its_changes(tmp_path: Path) -> None:
    kernel, initrd = _files(tmp_path)
    root = tmp_path / "tftp"
    entry = BootEntry(kernel, initrd, "console=ttyS0 a=1", http_port=None)
    prepare_tftp_root(root, kernel, initrd, entry)
    assert (root / "vmlinuz").read_bytes() == b"kernel"
    assert (root / "initrd.img").read_bytes() == b"initrd"
    assert (root / "boot.ipxe").read_text() == ipxe_script(entry)
    assert ipxe_script(entry).splitlines() == [
        "#!ipxe", "echo Overt network boot", "kernel vmlinuz initrd=initrd.img console=ttyS0 a=1",
        "initrd initrd.img", "boot"]
    over_http = BootEntry(kernel, initrd, "console=ttyS0 a=1", http_port=8480)
    assert ipxe_script(over_http).splitlines()[2:4] == [
        "kernel http://${next-server}:8480/vmlinuz initrd=initrd.img console=ttyS0 a=1",
        "initrd http://${next-server}:8480/initrd.img"]
    kernel.write_bytes(b"kernel, version 2")
    changed = BootEntry(kernel, initrd, "console=ttyS0 a=2")
    prepare_tftp_root(root, kernel, initrd, changed)
    assert (root / "vmlinuz").read_bytes() == b"kernel, version 2"
    assert "a=2" in (root / "boot.ipxe").read_text()


@pytest.mark.parametrize(("pxe", "message"), [
    ({"kernel": "/nonexistent/vmlinuz", "initrd": "/nonexistent/initrd"}, "is not a file"),
    ({"kernel": "relative/vmlinuz"}, "is not a file"),
    ({"image": "debian"}, "unknown setting image"),
    ({"cmdline": "a\nb"}, "one line"),
    ("yes", "must be a table"),
    ({"http_port": 70000}, "http_port"),
    ({"http_port": "80"}, "http_port"),
])
def test_bad_boot_entries_are_refused(pxe: object, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        parse_plan(_plan(pxe))


def test_half_a_boot_entry_is_refused(tmp_path: Path) -> None:
    kernel, _ = _files(tmp_path)
    with pytest.raises(PlanError, match="both kernel and initrd"):
        parse_plan(_plan({"kernel": str(kernel)}))


def test_pxe_on_a_network_is_a_flag() -> None:
    with pytest.raises(PlanError, match="pxe must be true or false"):
        parse_plan(_plan(None, pxe="yes"))


def test_http_can_be_turned_off() -> None:
    assert parse_plan(_plan({"http_port": False})).boot.http_port is None
