"""oVirt's iSCSI discovery, login and LUN list on a simulated host whose SAN is simulated:
the jobs the API waits for, what the host remembers of a login, LUNs marked used by this
engine's domains, a SCSI id resolved to its LUN number, and the refusals."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from overt.engine.db.tables import Disk, DiskAttachment, Host, StorageDomain, Vm
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import HostStatus, StorageDomainStatus, StorageType
from overt.engine.queries.vm_spec import build_vm_spec, chap_luns
from overt.engine.secrets import SecretBox
from overt.engine.services import host_iscsi, lun_disks
from overt.engine.services.host_iscsi import IscsiDetailsInput
from overt.engine.services.inputs import DiskInput, LogicalUnitInput
from overt.node.simulated.san import SimulatedTarget
from overt.protocol.storage import IscsiLunInfo, IscsiLunList
from overt.protocol.vm import ChapAuth, IscsiSource
from tests.support.loopback import LoopbackEngine

PORTAL = "10.77.1.2"
TARGET = "iqn.2026-11.org.overt.test:san"
CHAP_TARGET = "iqn.2026-11.org.overt.test:san.chap"
SECRET = "chap-S3cret-xyz"
GIB = 2**30


def _san(engine: LoopbackEngine) -> None:
    engine.san.add(PORTAL, SimulatedTarget(TARGET, luns=[
        IscsiLunInfo(lun=1, scsi_id="360000000000000000e00000000010001", size_bytes=2 * GIB,
                     serial="beaf11", vendor="IET", product="VIRTUAL-DISK"),
        IscsiLunInfo(lun=2, scsi_id="360000000000000000e00000000010002", size_bytes=GIB,
                     serial="beaf12", vendor="IET", product="VIRTUAL-DISK")]))
    engine.san.add(PORTAL, SimulatedTarget(CHAP_TARGET, chap=ChapAuth(
        username="init1", password=SECRET), luns=[IscsiLunInfo(
            lun=1, scsi_id="360000000000000000e00000000020001", size_bytes=GIB)]))


async def _run(engine: LoopbackEngine, host_id: uuid.UUID, op: str,
               details: IscsiDetailsInput | None) -> tuple[str, dict[str, Any], str]:
    box = SecretBox(engine.settings.data_dir)

    async def submit(session: Any, jobs: Any, user: Any) -> Any:
        return await host_iscsi.submit(session, jobs, box, host_id, op, details, user)
    job = await engine.act(submit)
    ended = await engine.job(job.id)
    return ended.state, dict(ended.result or {}), ended.error or ""


async def test_discovery_login_and_the_lun_list_of_a_host(engine: LoopbackEngine) -> None:
    _san(engine)
    node = await engine.add_host("h1")
    host_id = node.host_id
    state, result, _ = await _run(engine, host_id, "discover", IscsiDetailsInput(address=PORTAL))
    assert state == "done"
    assert {(t["target"], t["address"], t["port"]) for t in result["targets"]} == {
        (TARGET, PORTAL, 3260), (CHAP_TARGET, PORTAL, 3260)}

    # A wrong password is refused plainly, and nothing is remembered.
    state, _, error = await _run(engine, host_id, "login", IscsiDetailsInput(
        address=PORTAL, target=CHAP_TARGET, username="init1", password="wrong-one"))
    assert state == "failed" and "refused the login" in error and SECRET not in error
    async with engine.session() as session:
        assert (await session.get(Host, host_id)).iscsi_logins is None  # type: ignore[union-attr]

    for target, chap in ((TARGET, {}), (CHAP_TARGET, {"username": "init1",
                                                      "password": SECRET})):
        state, _, error = await _run(engine, host_id, "login", IscsiDetailsInput(
            address=PORTAL, port=3260, target=target, **chap))
        assert state == "done", error
    async with engine.session() as session:
        host = await session.get(Host, host_id)
        assert host is not None and host.iscsi_logins is not None
        assert [(e["target"], e["username"]) for e in host.iscsi_logins] == [
            (TARGET, None), (CHAP_TARGET, "init1")]
        assert SECRET not in str(host.iscsi_logins)  # sealed
        # LUN 2 of the first target holds a domain of this engine.
        session.add(StorageDomain(name="san2", storage_type=StorageType.ISCSI.value,
                                  address=f"{PORTAL}:3260", path=f"{TARGET}/2",
                                  host_id=host_id, status=StorageDomainStatus.UNATTACHED))

    # The LUN list of every login: the CHAP target's with its opened password.
    engine.san.asked.clear()
    state, result, error = await _run(engine, host_id, "luns", None)
    assert state == "done", error
    asked = [c for c in engine.san.asked if isinstance(c, IscsiLunList)]
    assert [(c.target, c.chap) for c in asked] == [
        (TARGET, None), (CHAP_TARGET, ChapAuth(username="init1", password=SECRET))]
    async with engine.session() as session:
        listed = await host_iscsi.listed_luns(session, result)
    assert [(lun.target, lun.lun, lun.scsi_id, lun.size_bytes, lun.used_by) for lun in listed] == [
        (TARGET, 1, "360000000000000000e00000000010001", 2 * GIB, None),
        (TARGET, 2, "360000000000000000e00000000010002", GIB, "san2"),
        (CHAP_TARGET, 1, "360000000000000000e00000000020001", GIB, None)]
    assert listed[0].serial == "beaf11" and listed[0].vendor == "IET"

    # A SCSI id names its LUN; one the target has not is refused.
    state, result, _ = await _run(engine, host_id, "luns", IscsiDetailsInput(
        address=PORTAL, target=TARGET))
    assert host_iscsi.lun_number(result, "360000000000000000e00000000010002", PORTAL, 3260,
                                 TARGET) == 2
    with pytest.raises(InvalidInput, match="neither a LUN number nor the SCSI id"):
        host_iscsi.lun_number(result, "36000000000000000deadbeef", PORTAL, 3260, TARGET)
    # A direct LUN disk named by SCSI id: the LUN as the host's login listed it.
    async def lun_disk(session: Any, _jobs: Any, user: Any, scsi_id: str) -> Any:
        return await lun_disks.add_lun_disk(session, DiskInput(name="db", lun=LogicalUnitInput(
            id=scsi_id, address=PORTAL, port=3260, target=TARGET)), user)
    disk = await engine.act(lun_disk, scsi_id="360000000000000000e00000000010001")
    assert (disk.lun_portal, disk.lun_path) == (f"{PORTAL}:3260", f"{TARGET}/1")
    with pytest.raises(InvalidInput, match="iscsilogin first"):
        await engine.act(lun_disk, scsi_id="360000000000000000e0000000001ffff")
    assert host_iscsi.needs_resolving("360000000000000000e00000000010002", None)
    assert not host_iscsi.needs_resolving("2", None)
    assert not host_iscsi.needs_resolving("360000000000000000e00000000010002", 2)


async def test_refusals_change_nothing(engine: LoopbackEngine) -> None:
    _san(engine)
    node = await engine.add_host("h1")
    # A portal that does not answer fails the job with the host's words.
    state, _, error = await _run(engine, node.host_id, "discover",
                                 IscsiDetailsInput(address="10.77.9.9"))
    assert state == "failed" and "no iSCSI portal answers at 10.77.9.9:3260" in error
    box = SecretBox(engine.settings.data_dir)
    for details, refused in (
            (IscsiDetailsInput(address="not an address"), InvalidInput),
            (IscsiDetailsInput(address=PORTAL, target="not-an-iqn"), InvalidInput),
            (IscsiDetailsInput(address=PORTAL, target=TARGET, password="alone"), InvalidInput)):
        async def submit(session: Any, jobs: Any, user: Any,
                         d: IscsiDetailsInput = details) -> Any:
            return await host_iscsi.submit(session, jobs, box, node.host_id, "login", d, user)
        with pytest.raises(refused):
            await engine.act(submit)
    async with engine.session() as session:
        host = (await session.execute(select(Host).where(Host.id == node.host_id))).scalar_one()
        host.status = HostStatus.MAINTENANCE

    async def on_maintenance(session: Any, jobs: Any, user: Any) -> Any:
        return await host_iscsi.submit(session, jobs, box, node.host_id, "discover",
                                       IscsiDetailsInput(address=PORTAL), user)
    with pytest.raises(Conflict, match="it is maintenance, not up"):
        await engine.act(on_maintenance)


async def test_a_direct_lun_disk_on_a_chap_target_keeps_the_logins_credentials(
        engine: LoopbackEngine) -> None:
    """A direct LUN disk of the CHAP target: refused (400, nothing made) with a wrong
    password or with no login to check one against; with the login's credentials (given,
    or left out and taken from the login) it keeps them sealed, and its VM's spec opens the
    LUN with them, as a migration's destination gets them."""
    _san(engine)
    node = await engine.add_host("h1")
    box = SecretBox(engine.settings.data_dir)
    chap_lun = "360000000000000000e00000000020001"

    async def lun_disk(session: Any, _jobs: Any, name: str, user: Any, **chap: str) -> Any:
        return await lun_disks.add_lun_disk(session, DiskInput(name=name, lun=LogicalUnitInput(
            id=chap_lun, address=PORTAL, port=3260, target=CHAP_TARGET, **chap)), user, box)

    async def numbered(session: Any, _jobs: Any, user: Any) -> Any:
        return await lun_disks.add_lun_disk(session, DiskInput(
            name="no-login", lun=LogicalUnitInput(id="1", address=PORTAL, port=3260,
                                                  target=CHAP_TARGET, username="init1",
                                                  password=SECRET)), user, box)
    with pytest.raises(InvalidInput, match="no host is logged in to"):
        await engine.act(numbered)
    state, _, error = await _run(engine, node.host_id, "login", IscsiDetailsInput(
        address=PORTAL, target=CHAP_TARGET, username="init1", password=SECRET))
    assert state == "done", error
    for wrong in ({"username": "init1", "password": "not-" + SECRET},
                  {"username": "init2", "password": SECRET}):
        with pytest.raises(InvalidInput, match="is not the one the hosts logged in") as refused:
            await engine.act(lun_disk, "wrong", **wrong)
        assert SECRET not in str(refused.value)
    with pytest.raises(InvalidInput, match=r"needs logical_unit\.username"):
        await engine.act(lun_disk, "alone", password=SECRET)
    async with engine.session() as session:
        assert (await session.execute(select(Disk).where(Disk.lun_path.is_not(None)))
                ).first() is None

    disk = await engine.act(lun_disk, "chap-lun", username="init1", password=SECRET)
    assert (disk.lun_path, disk.lun_chap_username) == (f"{CHAP_TARGET}/1", "init1")
    assert SECRET not in (disk.lun_chap_password_sealed or "")
    # Left out, the credentials are the login's (the disk above is removed first).
    async with engine.session() as session:
        await session.delete(await session.get(Disk, disk.id))
    disk = await engine.act(lun_disk, "chap-lun")
    assert disk.lun_chap_username == "init1"

    vm_id = await engine.add_vm("db")
    async with engine.session() as session:
        session.add(DiskAttachment(disk_id=disk.id, vm_id=vm_id, active=True))
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        spec = await build_vm_spec(session, vm, vnc_password="x", box=box)
        luns = await chap_luns(session, vm, box)
    [source] = [d.source for d in spec.disks if d.id == disk.id]
    assert isinstance(source, IscsiSource)
    assert (source.target, source.lun, source.offset, source.chap) == (
        CHAP_TARGET, 1, None, ChapAuth(username="init1", password=SECRET))
    assert [(lun.target, lun.chap) for lun in luns] == [
        (CHAP_TARGET, ChapAuth(username="init1", password=SECRET))]
