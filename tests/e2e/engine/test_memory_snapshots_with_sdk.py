"""A snapshot with memory as the official SDK reads it: `persist_memorystate` true on the
snapshot and in the VM's list of snapshots, and its two memory volumes as oVirt 4.4+
shows them, disks of the snapshot's domain whose `content_type` is `memory_dump_volume`
and `memory_metadata_volume` (in `/disks`, the domain's disks, and `/disks/ID`). The
API tests run no node: the snapshot row is the one a finished creation leaves (the
creation itself runs over the fast lane, tests/integration/engine/jobs/
test_memory_snapshots.py)."""

from __future__ import annotations

import asyncio
import uuid

import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from overt.engine.db.database import Database
from overt.engine.db.tables import Snapshot
from tests.e2e.engine.test_inventory_with_sdk import _host, _local_domain, _refused
from tests.support.engine import RunningEngine

MIB = 1 << 20


def _memory_snapshot(engine: RunningEngine, vm_id: str, domain_id: str
                     ) -> tuple[str, uuid.UUID, uuid.UUID, uuid.UUID]:
    """A snapshot with memory as its creation leaves it: (its id, the dump's image and
    volume, the metadata's image)."""
    dump_img, dump_vol, meta_img = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    async def insert() -> uuid.UUID:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                row = Snapshot(id=uuid.uuid4(), vm_id=uuid.UUID(vm_id), description="warm",
                               status="ok", memory_domain_id=uuid.UUID(domain_id),
                               memory_volume=f"{domain_id}/images/{dump_img}/{dump_vol}",
                               memory_metadata_volume=f"{domain_id}/images/{meta_img}/"
                               f"{uuid.uuid4()}")
                session.add(row)
                return row.id
        finally:
            await db.dispose()
    return str(asyncio.run(insert())), dump_img, dump_vol, meta_img


def test_a_snapshots_memory_volumes_are_disks_with_their_content_type(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    system = connection.system_service()
    domain = _local_domain(connection, "memory-sd", _host(api_engine, "memory-host"))
    vm = system.vms_service().add(types.Vm(
        name="memory-vm", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), memory=512 * MIB))
    snapshot_id, dump_img, dump_vol, meta_img = _memory_snapshot(api_engine, vm.id, domain.id)

    snapshots = system.vms_service().vm_service(vm.id).snapshots_service()
    listed = {s.id: s for s in snapshots.list()}
    assert listed[snapshot_id].persist_memorystate is True
    assert [s.persist_memorystate for s in listed.values()
            if s.snapshot_type == types.SnapshotType.ACTIVE] == [False]
    got = snapshots.snapshot_service(snapshot_id).get()
    assert (got.description, got.persist_memorystate) == ("warm", True)

    dump = system.disks_service().disk_service(str(dump_img)).get()
    assert dump.content_type == types.DiskContentType.MEMORY_DUMP_VOLUME
    assert (dump.image_id, dump.format, dump.status) == (
        str(dump_vol), types.DiskFormat.RAW, types.DiskStatus.OK)
    assert dump.provisioned_size == 512 * MIB + 64 * MIB + 256 * MIB  # RAM + 1/8 + 256 MiB
    assert dump.storage_domains[0].id == domain.id
    assert dump.alias == "memory-vm_warm_Memory dump"
    metadata = system.disks_service().disk_service(str(meta_img)).get()
    assert metadata.content_type == types.DiskContentType.MEMORY_METADATA_VOLUME
    assert metadata.provisioned_size == MIB

    def memory_of(disks: list[types.Disk]) -> dict[str, types.DiskContentType]:
        return {d.id: d.content_type for d in disks
                if d.id in (str(dump_img), str(meta_img))}
    expected = {str(dump_img): types.DiskContentType.MEMORY_DUMP_VOLUME,
                str(meta_img): types.DiskContentType.MEMORY_METADATA_VOLUME}
    assert memory_of(system.disks_service().list()) == expected
    domain_disks = system.storage_domains_service().storage_domain_service(domain.id) \
        .disks_service().list()
    assert memory_of(domain_disks) == expected
    _refused(404, system.disks_service().disk_service(str(uuid.uuid4())).get)
