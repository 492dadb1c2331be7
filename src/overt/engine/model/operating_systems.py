"""oVirt's operating system types (`vm.os.type` and `/operatingsystems`), each with the
defaults a VM of that type is given: machine type, disk and NIC bus, cdrom bus, memory.

Ids are oVirt's (osinfo-defaults.properties), so a VM exported from oVirt or created by
Ansible with `operating_system: rhel_9x64` keeps its type here. Overt runs every VM on
i440fx (machine type `pc`, cdrom on IDE) today: `machine` and the buses are the type's
recommendation, for the day a VM's machine type follows it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

_NS = uuid.UUID("6f76e9b2-0c1a-4d5e-9a51-5f0e7c0c5d17")


@dataclass(frozen=True)
class OperatingSystem:
    name: str  # oVirt's id, e.g. rhel_9x64
    description: str
    family: str  # Linux | Windows | Other
    machine: str = "pc"  # the machine type it boots with: pc (i440fx) or q35
    disk_interface: str = "virtio"
    nic_interface: str = "virtio"
    cdrom_bus: str = "ide"  # ide on i440fx, sata on q35
    min_memory_mib: int = 256
    recommended_memory_mib: int = 1024

    @property
    def id(self) -> uuid.UUID:
        """A stable id for the API (oVirt numbers them; the SDK reads them as strings)."""
        return uuid.uuid5(_NS, self.name)


def _linux(name: str, description: str, *, q35: bool = True,
           memory: int = 2048) -> OperatingSystem:
    return OperatingSystem(name, description, "Linux", machine="q35" if q35 else "pc",
                           cdrom_bus="sata" if q35 else "ide", recommended_memory_mib=memory)


def _windows(name: str, description: str) -> OperatingSystem:
    # Windows has no virtio drivers of its own: SATA disks and e1000 NICs until they are in.
    return OperatingSystem(name, description, "Windows", machine="q35", disk_interface="sata",
                           nic_interface="e1000", cdrom_bus="sata", min_memory_mib=2048,
                           recommended_memory_mib=4096)


OPERATING_SYSTEMS: tuple[OperatingSystem, ...] = (
    OperatingSystem("other", "Other OS", "Other"),
    OperatingSystem("other_linux", "Linux", "Linux"),
    OperatingSystem("other_linux_x64", "Linux x64", "Linux"),
    OperatingSystem("freebsd", "FreeBSD", "Other"),
    OperatingSystem("freebsdx64", "FreeBSD x64", "Other"),
    _linux("rhel_6x64", "Red Hat Enterprise Linux 6.x x64", q35=False),
    _linux("rhel_7x64", "Red Hat Enterprise Linux 7.x x64", q35=False),
    _linux("rhel_8x64", "Red Hat Enterprise Linux 8.x x64"),
    _linux("rhel_9x64", "Red Hat Enterprise Linux 9.x x64"),
    _linux("centos_stream_9x64", "CentOS Stream 9 x64"),
    _linux("debian_7", "Debian 7", q35=False),
    _linux("debian_8", "Debian 8", q35=False),
    _linux("debian_9", "Debian 9"),
    _linux("debian_10", "Debian 10"),
    _linux("debian_11", "Debian 11"),
    _linux("debian_12x64", "Debian 12 x64"),
    _linux("ubuntu_18_04", "Ubuntu 18.04 LTS"),
    _linux("ubuntu_20_04", "Ubuntu 20.04 LTS"),
    _linux("ubuntu_22_04", "Ubuntu 22.04 LTS"),
    _linux("ubuntu_24_04", "Ubuntu 24.04 LTS"),
    _linux("sles_12", "SUSE Linux Enterprise Server 12", q35=False),
    _linux("sles_15", "SUSE Linux Enterprise Server 15"),
    _windows("windows_7x64", "Windows 7 x64"),
    _windows("windows_8x64", "Windows 8 x64"),
    _windows("windows_2012R2x64", "Windows 2012R2 x64"),
    _windows("windows_2016x64", "Windows 2016 x64"),
    _windows("windows_10x64", "Windows 10 x64"),
    _windows("windows_11", "Windows 11"),
    _windows("windows_2019x64", "Windows 2019 x64"),
    _windows("windows_2022", "Windows 2022"),
)
BY_NAME = {os_.name: os_ for os_ in OPERATING_SYSTEMS}
BY_ID = {os_.id: os_ for os_ in OPERATING_SYSTEMS}


def operating_system(name: str) -> OperatingSystem | None:
    return BY_NAME.get(name)
