"""A VM's snapshots as the oVirt SDK reads them: the `Active VM` one and a regular one,
with oVirt's types, statuses and dates, and their disks naming the snapshot's volume."""

from __future__ import annotations

import datetime as dt
import uuid

import ovirtsdk4.readers  # noqa: F401 - registers the SDK's readers
import ovirtsdk4.types as types
from ovirtsdk4.reader import Reader

from overt.engine.api import views
from overt.engine.api.app import api_routes
from overt.engine.api.resources.snapshots import active_view, snapshot_view
from overt.engine.api.wire.render import to_xml
from overt.engine.db.tables import Snapshot, Vm
from overt.engine.services.snapshots import active_snapshot_id


def test_the_sdk_reads_the_active_and_a_regular_snapshot() -> None:
    api_routes()  # declares the routes whose links views advertise
    created = dt.datetime(2026, 11, 30, 20, 0, tzinfo=dt.UTC)
    vm = Vm(id=uuid.uuid4(), name="web", created_at=created)
    taken = Snapshot(id=uuid.uuid4(), vm_id=vm.id, description="before upgrade",
                     status="locked", created_at=created + dt.timedelta(hours=1))
    listed = Reader.read(to_xml("snapshots", {"snapshot": [
        active_view(vm), snapshot_view(vm, taken)]}))

    active, regular = listed
    assert active.id == str(active_snapshot_id(vm.id)) == str(active_snapshot_id(vm.id))
    assert active.description == "Active VM"
    assert active.snapshot_type == types.SnapshotType.ACTIVE
    assert active.snapshot_status == types.SnapshotStatus.OK
    assert active.persist_memorystate is False and active.vm.id == str(vm.id)
    assert regular.snapshot_type == types.SnapshotType.REGULAR
    assert regular.snapshot_status == types.SnapshotStatus.LOCKED
    assert regular.date == created + dt.timedelta(hours=1)
    assert regular.href == f"/ovirt-engine/api/vms/{vm.id}/snapshots/{taken.id}"
    assert regular.disks.href == f"{regular.href}/disks"  # a link the SDK can follow


def test_a_disks_image_id_is_the_volume_it_reads() -> None:
    disk_id, volume = uuid.uuid4(), uuid.uuid4()
    assert views.volume_id(f"images/{volume}.qcow2", disk_id) == str(volume)
    assert views.volume_id(f"images/{disk_id}.raw", disk_id) == str(disk_id)
    assert views.volume_id("lun0/extent-1048576-2097152", disk_id) == str(disk_id)


def test_the_sdk_reads_a_snapshot_in_preview_and_the_preview_one() -> None:
    vm = Vm(id=uuid.uuid4(), name="web", created_at=dt.datetime(2026, 11, 30, tzinfo=dt.UTC))
    previewed = Snapshot(id=uuid.uuid4(), vm_id=vm.id, description="good", kind="regular",
                         status="in_preview", created_at=vm.created_at)
    kept = Snapshot(id=uuid.uuid4(), vm_id=vm.id, description="Active VM before the preview",
                    kind="preview", status="ok", created_at=vm.created_at)
    first, second = Reader.read(to_xml("snapshots", {"snapshot": [
        snapshot_view(vm, previewed), snapshot_view(vm, kept)]}))
    assert first.snapshot_status == types.SnapshotStatus.IN_PREVIEW
    assert second.snapshot_type == types.SnapshotType.PREVIEW
