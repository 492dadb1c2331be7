"""An iSCSI domain's `storage` as oVirt shows it; a host's iSCSI logout through the
official SDK (`POST /hosts/ID/iscsilogout`, the `iscsi` element an `Action` carries, as
iscsilogin takes it): the login is forgotten at once; refused with nothing changed while
an active domain or a direct LUN disk of a VM running on the host uses the target, or for
a target the host is not logged in to."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from typing import Any

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Disk, DiskAttachment, Host, StorageDomain, Vm
from overt.engine.model.status import (
    DiskStatus,
    HostStatus,
    StorageDomainStatus,
    StorageType,
    VmStatus,
)
from overt.protocol.storage import DOMAIN_AREA
from tests.support.engine import RunningEngine

SAN = "san.example"
DOMAIN_TARGET = "iqn.2026-12.org.example:domains"
DISK_TARGET = "iqn.2026-12.org.example:vmdisks"
SPARE_TARGET = "iqn.2026-12.org.example:spare"


def _login(target: str, port: int = 3260) -> dict[str, Any]:
    return {"address": SAN, "port": port, "target": target, "username": None,
            "password_sealed": None, "luns": [{"lun": 1, "scsi_id": "36001405aa"}]}


def _db(engine: RunningEngine, work: Any) -> Any:
    async def run() -> Any:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                return await work(session)
        finally:
            await db.dispose()
    return asyncio.run(run())


def _site(engine: RunningEngine, name: str) -> tuple[str, uuid.UUID, uuid.UUID]:
    """A host logged in to three targets (one on two ports), an active domain on the
    first, a direct LUN disk of a VM running on the host on the second. Returns the host's
    id, the domain's and the VM's."""
    async def insert(session: Any) -> tuple[str, uuid.UUID, uuid.UUID]:
        cluster = (await session.execute(select(Cluster).where(
            Cluster.name == "Default"))).scalar_one()
        host = Host(id=uuid.uuid4(), name=name, address=f"{name}.example",
                    cluster_id=cluster.id, status=HostStatus.UP.value,
                    iscsi_logins=[_login(DOMAIN_TARGET), _login(DISK_TARGET),
                                  _login(SPARE_TARGET), _login(SPARE_TARGET, 3261)])
        session.add(host)
        domain = StorageDomain(id=uuid.uuid4(), name=f"{name}-sd", address=f"{SAN}:3260",
                               path=f"{DOMAIN_TARGET}/1", storage_type=StorageType.ISCSI.value,
                               data_center_id=cluster.data_center_id,
                               status=StorageDomainStatus.ACTIVE.value)
        session.add(domain)
        vm = Vm(id=uuid.uuid4(), name=f"{name}-vm", cluster_id=cluster.id,
                template_id=BLANK_TEMPLATE_ID, memory_mib=256, status=VmStatus.UP,
                host_id=host.id)
        disk = Disk(id=uuid.uuid4(), name=f"{name}-lun", storage_domain_id=None,
                    lun_portal=f"{SAN}:3260", lun_path=f"{DISK_TARGET}/1",
                    provisioned_size=2**30, actual_size=2**30, format="raw", sparse=False,
                    status=DiskStatus.OK, image_path="", shareable=False, content_type="data")
        session.add_all([vm, disk])
        await session.flush()
        session.add(DiskAttachment(disk_id=disk.id, vm_id=vm.id))
        return str(host.id), domain.id, vm.id
    result: tuple[str, uuid.UUID, uuid.UUID] = _db(engine, insert)
    return result


def _logins(engine: RunningEngine, host_id: str) -> list[tuple[str, int]]:
    async def read(session: Any) -> list[tuple[str, int]]:
        host = await session.get(Host, uuid.UUID(host_id))
        return [(e["target"], e["port"]) for e in host.iscsi_logins or []]
    result: list[tuple[str, int]] = _db(engine, read)
    return result


def _logout(host: Any, target: str, address: str = SAN, port: int | None = None) -> Any:
    """What the SDK's generated `iscsi_logout` would send (its model has none)."""
    return host._internal_action(
        types.Action(iscsi=types.IscsiDetails(address=address, port=port, target=target)),
        "iscsilogout", None, None, None, True)


def _refused(code: int, call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(sdk.Error) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code, caught.value
    return str(caught.value)


def _set(engine: RunningEngine, model: Any, object_id: uuid.UUID, **values: Any) -> None:
    async def update(session: Any) -> None:
        row = await session.get(model, object_id)
        for key, value in values.items():
            setattr(row, key, value)
    _db(engine, update)


def test_iscsi_logout_forgets_a_login_unless_the_target_is_in_use(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    host_id, domain_id, vm_id = _site(api_engine, "logout-host")
    host = connection.system_service().hosts_service().host_service(host_id)
    everything = [(DOMAIN_TARGET, 3260), (DISK_TARGET, 3260), (SPARE_TARGET, 3260),
                  (SPARE_TARGET, 3261)]

    # In use: refused, nothing changed.
    error = _refused(409, _logout, host, DOMAIN_TARGET)
    assert f"Cannot log host logout-host out of iSCSI target {DOMAIN_TARGET}: active " \
           "storage domain logout-host-sd uses it." in error
    error = _refused(409, _logout, host, DISK_TARGET, port=3260)
    assert "direct LUN disk logout-host-lun of running VM logout-host-vm uses it" in error
    # Not logged in, or not an address / an iSCSI name: refused, nothing changed.
    error = _refused(404, _logout, host, "iqn.2026-12.org.example:never")
    assert "Host logout-host is not logged in to iSCSI target" in error
    _refused(404, _logout, host, SPARE_TARGET, address="other.example")
    _refused(404, _logout, host, SPARE_TARGET, port=3262)
    _refused(400, _logout, host, "not-an-iqn")
    _refused(400, _logout, host, SPARE_TARGET, address="san example")
    _refused(400, host._internal_action, types.Action(), "iscsilogout", None, None, None, True)
    _refused(404, _logout, connection.system_service().hosts_service().host_service(
        str(uuid.uuid4())), SPARE_TARGET)
    assert _logins(api_engine, host_id) == everything

    # One port's login, then (no port) every port's.
    _logout(host, SPARE_TARGET, port=3261)
    assert _logins(api_engine, host_id) == everything[:3]
    _logout(host, SPARE_TARGET)
    assert _logins(api_engine, host_id) == everything[:2]

    # Once the domain is in maintenance and the VM down, their targets log out.
    _set(api_engine, StorageDomain, domain_id, status=StorageDomainStatus.MAINTENANCE)
    _set(api_engine, Vm, vm_id, status=VmStatus.DOWN, host_id=None)
    _logout(host, DOMAIN_TARGET)
    _logout(host, DISK_TARGET)
    assert _logins(api_engine, host_id) == []
    _refused(404, _logout, host, DISK_TARGET)


def test_an_iscsi_domains_storage_is_a_volume_group_of_its_lun(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    """oVirt's `storage` of an iSCSI domain: `volume_group` with the LUN as a
    `logical_unit`, its id the SCSI id a host's LUN list saw (else its number)."""
    scsi_id = "360000000000000000e00000000030001"
    listed = {"lun": 1, "scsi_id": scsi_id, "size_bytes": 5 * 2**30, "serial": "beaf31",
              "vendor": "IET", "product": "VIRTUAL-DISK"}

    async def insert(session: Any) -> tuple[uuid.UUID, uuid.UUID]:
        cluster = (await session.execute(select(Cluster).where(
            Cluster.name == "Default"))).scalar_one()
        session.add(Host(id=uuid.uuid4(), name="vg-host", address="vg-host.example",
                         cluster_id=cluster.id, status=HostStatus.UP.value,
                         iscsi_logins=[{**_login(DOMAIN_TARGET, 3261), "luns": [listed]}]))
        seen, unseen = (StorageDomain(
            id=uuid.uuid4(), name=name, address=f"{SAN}:3261", path=f"{DOMAIN_TARGET}/{lun}",
            storage_type=StorageType.ISCSI.value, chap_username=user, used_bytes=2**30,
            available_bytes=2 * 2**30, status=StorageDomainStatus.UNATTACHED.value)
            for name, lun, user in (("vg-seen", 1, None), ("vg-unseen", 2, "init1")))
        session.add_all([seen, unseen])
        return seen.id, unseen.id
    seen_id, _unseen_id = _db(api_engine, insert)
    domains = connection.system_service().storage_domains_service()

    domain = domains.storage_domain_service(str(seen_id)).get()
    storage = domain.storage
    assert storage.type == types.StorageType.ISCSI
    assert storage.path is None and storage.address is None
    assert storage.volume_group.id == str(seen_id)
    [unit] = storage.volume_group.logical_units
    assert (unit.id, unit.address, unit.port, unit.target, unit.lun_mapping, unit.size) == (
        scsi_id, SAN, 3261, DOMAIN_TARGET, 1, 5 * 2**30)
    assert (unit.serial, unit.vendor_id, unit.product_id, unit.storage_domain_id,
            unit.volume_group_id, unit.status, unit.username) == (
        "beaf31", "IET", "VIRTUAL-DISK", str(seen_id), str(seen_id),
        types.LunStatus.USED, None)
    # No host listed LUN 2: its number is its id, its size the domain's (and its area).
    by_name = {d.name: d for d in domains.list()}
    [other] = by_name["vg-unseen"].storage.volume_group.logical_units
    assert (other.id, other.lun_mapping, other.username, other.serial) == ("2", 2, "init1", None)
    assert other.size == 3 * 2**30 + DOMAIN_AREA
    [listed_unit] = by_name["vg-seen"].storage.volume_group.logical_units
    assert listed_unit.id == scsi_id

    # The same in JSON.
    reply = httpx.get(f"{api_engine.url}/storagedomains/{seen_id}",
                      auth=("admin@internal", api_engine.password),
                      headers={"Accept": "application/json", "Version": "4"},
                      verify=ssl.create_default_context(cafile=str(api_engine.ca_file)))
    assert reply.status_code == 200, reply.text
    group = reply.json()["storage"]["volume_group"]
    [as_json] = group["logical_units"]["logical_unit"]
    assert (group["id"], as_json["id"], as_json["size"], as_json["lun_mapping"]) == (
        str(seen_id), scsi_id, 5 * 2**30, 1)
