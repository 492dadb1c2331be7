"""A node's hardware facts, as it announces them: what an administrator looks at before
approving a machine that booted from the network (the engine's host browser)."""

from __future__ import annotations

from pydantic import Field

from overt.protocol.vm import WireModel

# Facts are what the node says of itself: bounded so an announce stays small.
MAX_FLAGS = 64
MAX_DEVICES = 64


class DiskFact(WireModel):
    name: str = Field(max_length=64)  # "vda", "nvme0n1"
    size_bytes: int = Field(ge=0)
    model: str = Field("", max_length=128)
    rotational: bool | None = None


class NicFact(WireModel):
    name: str = Field(max_length=64)
    mac: str | None = Field(None, max_length=64)
    link_up: bool | None = None  # carrier; None where the kernel does not tell
    speed_mbps: int | None = None


class HardwareFacts(WireModel):
    """CPU, memory, disks, NICs and the machine's DMI identity (when readable)."""

    cpu_model: str = Field("", max_length=255)
    cpu_sockets: int = Field(1, ge=0)
    cpu_cores: int = Field(1, ge=0)  # per socket
    cpu_threads: int = Field(1, ge=0)  # per core
    # The virtualization-relevant flags present (vmx/svm, aes, avx2...), not all of them.
    cpu_flags: tuple[str, ...] = Field((), max_length=MAX_FLAGS)
    memory_bytes: int = Field(0, ge=0)
    disks: tuple[DiskFact, ...] = Field((), max_length=MAX_DEVICES)
    nics: tuple[NicFact, ...] = Field((), max_length=MAX_DEVICES)
    manufacturer: str = Field("", max_length=255)
    product_name: str = Field("", max_length=255)
    product_version: str = Field("", max_length=255)
    serial_number: str = Field("", max_length=255)
    system_uuid: str = Field("", max_length=64)
    family: str = Field("", max_length=255)
    # The NIC the machine booted from (the PXE boot MAC, from the kernel command line).
    boot_mac: str | None = Field(None, max_length=64)
