"""The hardware facts a node announces, read from a /proc and /sys laid out as a machine's."""

from __future__ import annotations

from pathlib import Path

from overt.node.hardware import boot_mac, read_facts

CPUINFO = "".join(
    f"processor\t: {n}\nphysical id\t: {n // 4}\nsiblings\t: 4\ncpu cores\t: 2\n"
    "model name\t: AMD EPYC 7302 16-Core Processor\n"
    "flags\t\t: fpu vme svm aes avx avx2 lm nx sse4_2 npt x2apic\n\n" for n in range(8))


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _machine(root: Path) -> Path:
    _write(root, "proc/cpuinfo", CPUINFO)
    _write(root, "proc/meminfo", "MemTotal:       16384000 kB\nMemFree:  1 kB")
    _write(root, "proc/cmdline", "console=ttyS0 BOOTIF=01-52-54-00-AB-CD-EF overt.engine=x")
    _write(root, "sys/block/sda/size", "1953525168")
    _write(root, "sys/block/sda/queue/rotational", "1")
    _write(root, "sys/block/sda/device/model", "WDC WD10EZEX")
    _write(root, "sys/block/nvme0n1/size", "1000215216")
    _write(root, "sys/block/nvme0n1/queue/rotational", "0")
    _write(root, "sys/block/loop0/size", "100")  # not a disk
    _write(root, "sys/block/sr0/size", "0")
    for name, mac, carrier in (("eno1", "52:54:00:ab:cd:ef", "1"), ("eno2", "52:54:00:00:00:02",
                                                                      "0")):
        _write(root, f"sys/class/net/{name}/address", mac)
        _write(root, f"sys/class/net/{name}/carrier", carrier)
        _write(root, f"sys/class/net/{name}/speed", "1000" if carrier == "1" else "-1")
        (root / f"sys/class/net/{name}/device").mkdir()
    _write(root, "sys/class/net/ovirtmgmt/address", "52:54:00:ab:cd:ef")  # a bridge
    _write(root, "sys/class/dmi/id/sys_vendor", "Supermicro")
    _write(root, "sys/class/dmi/id/product_name", "SYS-1029P-WTR")
    _write(root, "sys/class/dmi/id/product_serial", "S12345678")
    _write(root, "sys/class/dmi/id/product_version", "To Be Filled By O.E.M.")
    return root


def test_a_machine_is_described_from_proc_and_sys(tmp_path: Path) -> None:
    facts = read_facts(_machine(tmp_path))
    assert facts.cpu_model == "AMD EPYC 7302 16-Core Processor"
    assert (facts.cpu_sockets, facts.cpu_cores, facts.cpu_threads) == (2, 2, 2)
    assert facts.cpu_flags == ("svm", "aes", "avx", "avx2", "sse4_2", "x2apic", "nx", "lm", "npt")
    assert facts.memory_bytes == 16384000 * 1024
    assert [(d.name, d.size_bytes, d.model, d.rotational) for d in facts.disks] == [
        ("nvme0n1", 1000215216 * 512, "", False),
        ("sda", 1953525168 * 512, "WDC WD10EZEX", True)]
    assert [(n.name, n.mac, n.link_up, n.speed_mbps) for n in facts.nics] == [
        ("eno1", "52:54:00:ab:cd:ef", True, 1000), ("eno2", "52:54:00:00:00:02", False, None)]
    assert (facts.manufacturer, facts.product_name, facts.serial_number) == (
        "Supermicro", "SYS-1029P-WTR", "S12345678")
    assert facts.product_version == ""  # a vendor's placeholder is no fact
    assert facts.boot_mac == "52:54:00:ab:cd:ef"


def test_an_unreadable_machine_gives_empty_facts(tmp_path: Path) -> None:
    facts = read_facts(tmp_path)
    assert facts.cpu_model == "" and facts.disks == () and facts.nics == ()
    assert facts.serial_number == "" and facts.boot_mac is None


def test_the_boot_mac_from_either_kernel_argument() -> None:
    assert boot_mac("quiet overt.boot_mac=52:54:00:12:34:56") == "52:54:00:12:34:56"
    assert boot_mac("BOOTIF=01-52-54-00-12-34-56 quiet") == "52:54:00:12:34:56"
    assert boot_mac("BOOTIF=52-54") is None
