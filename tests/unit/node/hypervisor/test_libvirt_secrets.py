"""libvirt's iSCSI secrets: defined before a VM (or a VM on its way here), removed once no
VM of this libvirtd names them. libvirt's test driver has no secrets: a small fake."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import libvirt

from overt.node.hypervisor import libvirt_secrets
from overt.node.hypervisor.libvirt_connection import RawDomainEvent
from overt.node.hypervisor.libvirt_driver import INCOMING_KEEP_S, LibvirtHypervisor
from overt.node.hypervisor.virt_mode_cache import VirtModeChoice, VirtType
from overt.node.storage.chap import secret_id
from overt.protocol.host import VirtMode, VmState
from overt.protocol.vm import ChapAuth, DiskSpec, IscsiSource, VmSpec

CHAP = ChapAuth(username="init1", password="Chap-Secret-0451")
A, B = secret_id("iqn.2024-01.dev.overt:a"), secret_id("iqn.2024-01.dev.overt:b")


def _gone() -> libvirt.libvirtError:
    error = libvirt.libvirtError("no domain")
    error.err = (libvirt.VIR_ERR_NO_DOMAIN, 0, "no domain", 0, "", None, None, 0, 0)
    return error


class FakeSecret:
    def __init__(self, conn: FakeConn, usage: str, kind: int) -> None:
        self.conn, self.usage, self.kind, self.value = conn, usage, kind, b""

    def usageType(self) -> int:
        return self.kind

    def usageID(self) -> str:
        return self.usage

    def setValue(self, value: bytes, flags: int) -> None:
        self.value = value

    def undefine(self) -> None:
        del self.conn.secrets[self.usage]


class FakeDomain:
    def __init__(self, usages: list[str], gone: bool = False) -> None:
        self.usages, self.gone = usages, gone

    def XMLDesc(self, flags: int) -> str:
        if self.gone:
            raise _gone()
        disks = "".join(f"<disk><source><auth username='u'><secret type='iscsi' usage='{u}'/>"
                        "</auth></source></disk>" for u in self.usages)
        return f"<domain><devices>{disks}</devices></domain>"


class FakeConn:
    def __init__(self) -> None:
        self.secrets: dict[str, FakeSecret] = {}
        self.domains: list[FakeDomain] = []

    def add(self, usage: str, kind: int = libvirt.VIR_SECRET_USAGE_TYPE_ISCSI) -> None:
        self.secrets[usage] = FakeSecret(self, usage, kind)

    def listAllSecrets(self, flags: int) -> list[FakeSecret]:
        return list(self.secrets.values())

    def listAllDomains(self, flags: int) -> list[FakeDomain]:
        return list(self.domains)

    def secretLookupByUsage(self, kind: int, usage: str) -> FakeSecret:
        if usage not in self.secrets:
            raise libvirt.libvirtError("no secret")
        return self.secrets[usage]

    def secretDefineXML(self, xml: str, flags: int) -> FakeSecret:
        assert "ephemeral='yes'" in xml and "private='yes'" in xml and CHAP.password not in xml
        usage = xml.split("<target>")[1].split("</target>")[0]
        self.add(usage)
        return self.secrets[usage]


def test_ensure_defines_a_private_secret_and_refreshes_its_value() -> None:
    conn = FakeConn()
    libvirt_secrets.ensure(conn, {A: CHAP})  # type: ignore[arg-type]
    assert conn.secrets[A].value == CHAP.password.encode()
    libvirt_secrets.ensure(conn, {A: CHAP.model_copy(update={"password": "new"})})  # type: ignore[arg-type]
    assert list(conn.secrets) == [A] and conn.secrets[A].value == b"new"


def test_prune_removes_only_overts_secrets_that_no_domain_names() -> None:
    conn = FakeConn()
    for usage in (A, B, secret_id("iqn.2024-01.dev.overt:c")):
        conn.add(usage)
    conn.add("someone-elses", libvirt.VIR_SECRET_USAGE_TYPE_ISCSI)
    conn.add(secret_id("iqn.2024-01.dev.overt:ceph"), libvirt.VIR_SECRET_USAGE_TYPE_CEPH)
    conn.domains = [FakeDomain([A]), FakeDomain([], gone=True)]
    kept = secret_id("iqn.2024-01.dev.overt:c")
    removed = libvirt_secrets.prune(conn, frozenset({kept}))  # type: ignore[arg-type]
    assert removed == [B]
    assert set(conn.secrets) == {A, kept, "someone-elses",
                                 secret_id("iqn.2024-01.dev.overt:ceph")}


def test_prune_without_secrets_of_ours_reads_no_domain() -> None:
    conn = FakeConn()
    conn.domains = [FakeDomain([], gone=True)]  # would raise if read
    assert libvirt_secrets.prune(conn) == []  # type: ignore[arg-type]


async def test_an_incoming_vms_secrets_stay_until_it_is_abandoned(tmp_path: Path) -> None:
    """prepare_incoming defines them; a VM stopping meanwhile does not take them; abandon
    removes those no domain names (another VM's stay)."""
    hyp = LibvirtHypervisor("test:///default", VirtModeChoice(VirtType.QEMU, tmp_path))
    conn = FakeConn()
    hyp.connection._conn = conn  # type: ignore[assignment]
    vm_id = uuid.uuid4()
    try:
        await hyp.prepare_incoming(vm_id, {A: CHAP, B: CHAP})
        assert set(conn.secrets) == {A, B} and conn.secrets[A].value == CHAP.password.encode()
        await hyp._prune_secrets()  # another VM stopped here meanwhile
        assert set(conn.secrets) == {A, B}
        conn.domains = [FakeDomain([B])]  # a VM here runs on B's target
        await hyp.abandon_incoming(vm_id)
        assert set(conn.secrets) == {B}
    finally:
        hyp.calls.shutdown()


async def test_a_preparation_whose_vm_never_comes_lapses(tmp_path: Path) -> None:
    """The engine that prepared a migration died before `abandon_incoming`: past
    INCOMING_KEEP_S the next prune (here: another preparation) removes its secrets."""
    hyp = LibvirtHypervisor("test:///default", VirtModeChoice(VirtType.QEMU, tmp_path))
    conn = FakeConn()
    hyp.connection._conn = conn  # type: ignore[assignment]
    now = [1000.0]
    hyp.monotonic = lambda: now[0]
    try:
        await hyp.prepare_incoming(uuid.uuid4(), {A: CHAP})
        now[0] += INCOMING_KEEP_S - 1
        await hyp._prune_secrets()
        assert set(conn.secrets) == {A}  # still on its way
        now[0] += 2
        await hyp.prepare_incoming(uuid.uuid4(), {B: CHAP})
        assert set(conn.secrets) == {B}
    finally:
        hyp.calls.shutdown()


class RestoringConn(FakeConn):
    """A libvirtd that restores a saved VM, noting the secrets it had as it did."""

    def __init__(self, vm_id: uuid.UUID) -> None:
        super().__init__()
        self.vm_id, self.restored_with = vm_id, None
        self.restored: FakeDomain | None = None

    def lookupByUUIDString(self, vm_id: str) -> FakeDomain:
        if self.restored is None:
            raise _gone()
        return self.restored

    def restoreFlags(self, path: str, xml: None, flags: int) -> None:
        self.restored_with = {u: s.value for u, s in self.secrets.items()}
        self.restored = RunningDomain([A], self.vm_id)


class RunningDomain(FakeDomain):
    def __init__(self, usages: list[str], vm_id: uuid.UUID) -> None:
        super().__init__(usages)
        self.vm_id = vm_id

    def state(self) -> tuple[int, int]:
        return libvirt.VIR_DOMAIN_RUNNING, 1

    def name(self) -> str:
        return "saved"

    def UUIDString(self) -> str:
        return str(self.vm_id)


async def test_a_vm_resumed_from_disk_has_its_secrets_defined_before_the_restore(
        tmp_path: Path) -> None:
    """Its secrets went when it stopped (saved): the restore, given the VM's spec, defines
    them again before libvirt opens its disks."""
    hyp = LibvirtHypervisor("test:///default", VirtModeChoice(VirtType.QEMU, tmp_path))
    vm_id = uuid.uuid4()
    conn = RestoringConn(vm_id)
    hyp.connection._conn = conn  # type: ignore[assignment]
    image = tmp_path / "saved.memory"
    image.write_bytes(b"memory")
    lun = IscsiSource(portal="10.77.1.10", target="iqn.2024-01.dev.overt:a", lun=1, chap=CHAP)
    spec = VmSpec(id=vm_id, name="saved", memory_mib=256, graphics=None,
                  disks=(DiskSpec(id=uuid.uuid4(), source=lun),))
    try:
        await hyp.start(vm_id, spec, paused=False, job=None, restore_from=image)
    finally:
        hyp.calls.shutdown()
    assert conn.restored_with == {A: CHAP.password.encode()}


class GoneConn(FakeConn):
    """A libvirtd whose domain is gone: stopped, or migrated away."""

    def lookupByUUIDString(self, vm_id: str) -> FakeDomain:
        raise _gone()


async def test_a_vm_migrated_away_leaves_its_cloud_init_drive_and_a_stopped_one_not(
        tmp_path: Path) -> None:
    """The drive is the running copy's: after `stopped/migrated` the VM runs on, elsewhere
    (in the lab on the same file system), after `stopped/shutdown` its run is over."""
    hyp = LibvirtHypervisor("test:///default", VirtModeChoice(VirtType.QEMU, tmp_path))
    hyp.connection._conn = GoneConn()  # type: ignore[assignment]
    removed: list[uuid.UUID] = []
    hyp.config_drives.remove = removed.append  # type: ignore[method-assign]
    migrated, stopped = uuid.uuid4(), uuid.uuid4()
    try:
        for vm_id, detail in ((migrated, libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED),
                              (stopped, libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN)):
            report = await hyp._report_for_event(RawDomainEvent(
                domain_uuid=str(vm_id), name="web", event=libvirt.VIR_DOMAIN_EVENT_STOPPED,
                detail=detail))
            assert report.state is VmState.GONE
    finally:
        hyp.calls.shutdown()
    assert removed == [stopped]


class CreatingConn(FakeConn):
    """A libvirtd whose `createXML` waits until `together` starts have come in at once
    (a start made under a node-wide lock never lets the next one in: the barrier breaks),
    then asks the node to prune its secrets, as a VM stopping meanwhile would."""

    def __init__(self, hyp: LibvirtHypervisor, loop: asyncio.AbstractEventLoop,
                 together: int) -> None:
        super().__init__()
        self.hyp, self.loop = hyp, loop
        self.barrier = threading.Barrier(together, timeout=10)
        self.pruned_during: list[set[str]] = []

    def lookupByUUIDString(self, vm_id: str) -> FakeDomain:
        raise _gone()

    def createXML(self, xml: str, flags: int) -> RunningDomain:
        self.barrier.wait()
        asyncio.run_coroutine_threadsafe(self.hyp._prune_secrets(), self.loop).result(10)
        self.pruned_during.append(set(self.secrets))
        vm_id = uuid.UUID(xml.split("<uuid>")[1].split("</uuid>")[0])
        made = RunningDomain(list(libvirt_secrets.named_secrets(xml)), vm_id)
        self.domains.append(made)  # made: from now on its XML names its secrets
        return made


async def test_vms_start_side_by_side_and_a_prune_meanwhile_keeps_their_secrets(
        tmp_path: Path) -> None:
    """Three starts on one node at once, two of them on CHAP targets: all three are in
    libvirt's `createXML` together (a start used to hold the node's secrets lock, so a
    node's starts took turns), and a prune while their domains are being made leaves the
    secrets they name."""
    hyp = LibvirtHypervisor("test:///default", VirtModeChoice(VirtType.QEMU, tmp_path))
    hyp._virt_mode = VirtMode.QEMU
    conn = CreatingConn(hyp, asyncio.get_running_loop(), together=3)
    hyp.connection._conn = conn  # type: ignore[assignment]
    specs = [VmSpec(id=uuid.uuid4(), name=f"vm{n}", memory_mib=256, graphics=None,
                    disks=(DiskSpec(id=uuid.uuid4(), source=IscsiSource(
                        portal="10.77.1.10", target=target, lun=1,
                        chap=CHAP if target else None)),))
             for n, target in enumerate(("iqn.2024-01.dev.overt:a", "iqn.2024-01.dev.overt:b",
                                         ""))]
    specs[2] = specs[2].model_copy(update={"disks": ()})
    try:
        reports = await asyncio.gather(*(hyp.start(spec.id, spec, paused=False, job=None)
                                         for spec in specs))
    finally:
        hyp.calls.shutdown()
    assert [r.state for r in reports] == [VmState.RUNNING] * 3
    assert conn.pruned_during and all(seen >= {A, B} for seen in conn.pruned_during)
