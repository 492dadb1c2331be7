"""The iPXE script a machine booting from a provisioning network gets, chosen by its MAC."""

from __future__ import annotations

from pathlib import Path

from overt.engine.netsvc.provisioning import publish
from overt.engine.netsvc.pxe import BootEntry, ipxe_script
from overt.engine.provisioning.boot import (
    ProfileBoot,
    choose,
    kernel_args_problem,
    normalize_mac,
    scripts,
)
from overt.engine.provisioning.images import NodeImages
from overt.node import boot_args

FP = "AB:CD:" + ":".join(["01"] * 30)
URL = "https://${next-server}:8444"
BASE = "http://${next-server}:8480/"
RACK = ProfileBoot("rack1-node3", "52:54:00:ab:cd:ef", "node-2026", "intel_iommu=on")
DEFAULT = ProfileBoot("any-node", None, "node-2026")


def test_a_machine_gets_its_own_profile_else_the_default() -> None:
    assert choose([DEFAULT, RACK], "52:54:00:ab:cd:ef") == RACK
    assert choose([DEFAULT, RACK], "52:54:00:00:00:01") == DEFAULT
    assert choose([RACK], "52:54:00:00:00:01") is None


def test_each_profile_has_its_script_telling_the_node_where_the_engine_is() -> None:
    out = scripts([RACK, DEFAULT], base=BASE, engine_url=URL, ca_fingerprint=FP)
    assert set(out) == {"mac-52-54-00-ab-cd-ef.ipxe", "default.ipxe"}
    lines = out["mac-52-54-00-ab-cd-ef.ipxe"].splitlines()
    assert lines[0] == "#!ipxe"
    kernel = lines[2].split()
    assert kernel[:2] == ["kernel", BASE + "node-node-2026-vmlinuz"]
    assert f"overt.engine={URL}" in kernel and "BOOTIF=01-${netX/mac:hexhyp}" in kernel
    assert "overt.ca_fingerprint=abcd" + "01" * 30 in kernel
    assert kernel[-1] == "intel_iommu=on"  # the administrator's arguments last
    assert lines[3] == "initrd " + BASE + "node-node-2026-initrd.img"
    assert "intel_iommu" not in out["default.ipxe"]


def test_the_boot_script_chains_to_the_machines_profile_only_when_there_are_profiles() -> None:
    entry = BootEntry(http_port=8480)
    assert "chain" not in ipxe_script(entry)
    lines = ipxe_script(entry, profiles=True).splitlines()
    assert lines[2:6] == ["chain mac-${netX/mac:hexhyp}.ipxe || goto nomac", ":nomac",
                          "chain default.ipxe || goto nodefault", ":nodefault"]
    assert lines[6].startswith("kernel ")  # the plan's entry for anything else


def _image(root: Path, name: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "vmlinuz").write_bytes(b"kernel " + name.encode())
    (root / name / "initrd.img").write_bytes(b"initrd " + name.encode())


def test_the_tftp_root_follows_the_profiles(tmp_path: Path) -> None:
    images, tftp = NodeImages(tmp_path / "images"), tmp_path / "tftp"
    tftp.mkdir()
    _image(tmp_path / "images", "node-2026")
    served = publish(tftp, [RACK, DEFAULT], images, base=BASE, engine_url=URL,
                     ca_fingerprint=FP)
    assert served == {"node-node-2026-vmlinuz", "node-node-2026-initrd.img"}
    assert (tftp / "node-node-2026-vmlinuz").read_bytes() == b"kernel node-2026"
    assert (tftp / "mac-52-54-00-ab-cd-ef.ipxe").is_file() and (tftp / "default.ipxe").is_file()
    gone = ProfileBoot("other", "52:54:00:00:00:09", "missing-image")
    served = publish(tftp, [gone], images, base=BASE, engine_url=URL, ca_fingerprint=FP)
    assert served == set()  # an image that is gone is served by no one
    assert sorted(p.name for p in tftp.iterdir()) == []


def test_macs_and_kernel_arguments_are_checked() -> None:
    assert normalize_mac(" 52-54-00-AB-CD-EF ") == "52:54:00:ab:cd:ef"
    assert normalize_mac("52:54:00:ab:cd") is None and normalize_mac("zz:54:00:ab:cd:ef") is None
    assert kernel_args_problem("quiet intel_iommu=on") is None
    assert kernel_args_problem("a\nb") and kernel_args_problem("x=${root-path}")
    assert kernel_args_problem("a" * 2000)


def test_a_provisioned_node_reads_the_engine_from_its_kernel_command_line() -> None:
    found = boot_args.parse("console=ttyS0 overt.engine=https://10.9.0.1:8444 "
                            "overt.ca_fingerprint=abcd BOOTIF=01-52-54-00-ab-cd-ef")
    assert (found.engine_url, found.ca_fingerprint) == ("https://10.9.0.1:8444", "abcd")
    assert boot_args.parse("overt.engine=http://plain").engine_url is None
    assert boot_args.parse("quiet") == boot_args.BootArgs()
