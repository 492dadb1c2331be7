"""oVirt's disk `copy` and `move` through the official SDK, with no node: the refusals
(the fault's code and reason, and that nothing changed). Copies and moves themselves
are made over the fast lane (tests/integration/engine/jobs/test_disk_moves.py)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from overt.engine.db.database import Database
from overt.engine.db.tables import Disk, StorageDomain, Vm
from overt.engine.model.status import DiskStatus, StorageDomainStatus, VmStatus
from tests.e2e.engine.test_inventory_with_sdk import (
    _host,
    _local_domain,
    _made_disk,
    _refused,
)
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine


def _change(engine: RunningEngine, model: Any, row_id: str, **values: Any) -> None:
    """Set a row's columns (the API tests run no nodes to bring a row there)."""
    async def update() -> None:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                row = await session.get(model, uuid.UUID(row_id))
                assert row is not None
                for name, value in values.items():
                    setattr(row, name, value)
        finally:
            await db.dispose()
    asyncio.run(update())


def _disks(conn: sdk.Connection) -> list[tuple[str, str, str, str]]:
    """This test's disks (the engine is shared with other tests, whose jobs may still be
    ending theirs)."""
    return sorted((d.id, d.name, str(d.status), d.storage_domains[0].id)
                  for d in conn.system_service().disks_service().list(search="name=mover-*"))


def _vm_disk_move(conn: sdk.Connection, vm_id: str, disk_id: str, domain_id: str
                  ) -> tuple[int, str]:
    """POST /vms/ID/disks/ID/move with a target domain: the HTTP status and body."""
    request = sdk.http.Request(method="POST", path=f"/vms/{vm_id}/disks/{disk_id}/move",
                               body=f'<action><storage_domain id="{domain_id}"/></action>')
    response = conn.wait(conn.send(request))
    return int(response.code), response.body.decode() if response.body else ""


def test_disk_copies_and_moves_that_cannot_be_made_are_refused(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    system = connection.system_service()
    host_id = _host(api_engine, "mover-host")
    source = _local_domain(connection, "mover-a", host_id)
    target = _local_domain(connection, "mover-b", host_id)
    vm = system.vms_service().add(types.Vm(
        name="mover-vm", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), memory=128 * 2**20))
    _made_disk(api_engine, "mover-disk", source.id, vm.id)
    [disk] = system.disks_service().list(search="name=mover-disk")
    service = system.disks_service().disk_service(disk.id)
    to_target = types.StorageDomain(id=target.id)
    before = _disks(connection)
    assert [name for _id, name, _status, _domain in before] == ["mover-disk"]

    # The target domain has no free space recorded (no node reported it).
    error = _refused(409, service.move, storage_domain=to_target)
    assert "bytes free" in str(error) and "mover-b" in str(error)
    _change(api_engine, StorageDomain, target.id, available_bytes=2**30)
    error = _refused(409, service.move, storage_domain=types.StorageDomain(id=source.id))
    assert "already on storage domain mover-a" in str(error)
    _refused(400, service.copy, disk=types.Disk(name="nowhere"))
    assert "does not exist" in str(_refused(
        400, service.copy, storage_domain=types.StorageDomain(id=str(uuid.uuid4()))))

    _change(api_engine, StorageDomain, target.id, status=StorageDomainStatus.MAINTENANCE)
    assert "not active" in str(_refused(409, service.move, storage_domain=to_target))
    assert "not active" in str(_refused(409, service.copy, storage_domain=to_target,
                                        disk=types.Disk(name="mover-copy")))
    _change(api_engine, StorageDomain, target.id, status=StorageDomainStatus.ACTIVE)

    _change(api_engine, Vm, vm.id, status=VmStatus.UP)
    error = _refused(409, service.move, storage_domain=to_target)
    assert "moved live between NFS and iSCSI domains only" in str(error)
    error = _refused(409, service.copy, storage_domain=to_target)
    assert "copies disks of down VMs only" in str(error)
    # The VM's own disk move (oVirt's VmDiskService.move) says the same.
    code, said = _vm_disk_move(connection, vm.id, disk.id, target.id)
    assert code == 409 and "moved live between NFS and iSCSI domains only" in said
    assert _vm_disk_move(connection, vm.id, str(uuid.uuid4()), target.id)[0] == 404
    _change(api_engine, Vm, vm.id, status=VmStatus.DOWN)

    _change(api_engine, Disk, disk.id, status=DiskStatus.LOCKED)
    assert "not ok" in str(_refused(409, service.copy, storage_domain=to_target))
    _change(api_engine, Disk, disk.id, status=DiskStatus.OK, shareable=True)
    assert "shareable" in str(_refused(409, service.move, storage_domain=to_target))
    _change(api_engine, Disk, disk.id, shareable=False)

    assert _disks(connection) == before
    assert [j for j in system.jobs_service().list() if "mover-disk" in j.description] == []

    # Accepted: the copy is a new disk, `locked` on the target like its source until the
    # job ends. The job needs a node and none runs here, so it soon fails: then the copy
    # is gone and the source `ok` again. What is seen depends on whether it has failed yet.
    service.copy(storage_domain=types.StorageDomain(name="mover-b"),
                 disk=types.Disk(name="mover-copy"))
    [job] = [j for j in system.jobs_service().list()
             if j.description == "Copying disk mover-disk to storage domain mover-b"]
    job_service = system.jobs_service().job_service(job.id)
    copies = system.disks_service().list(search="name=mover-copy")
    source_status = service.get().status
    if job_service.get().status == types.JobStatus.STARTED:  # it ran while we looked
        [copy] = copies
        assert (copy.status, copy.storage_domains[0].id) == (types.DiskStatus.LOCKED, target.id)
        assert source_status == types.DiskStatus.LOCKED
    ended = wait_until(lambda: (g := job_service.get()).status != types.JobStatus.STARTED
                       and g, 30, "the copy job to end")
    assert ended.status == types.JobStatus.FAILED
    wait_until(lambda: service.get().status == types.DiskStatus.OK, 30, "the source ok again")
    wait_until(lambda: not system.disks_service().list(search="name=mover-copy"), 30,
               "the failed copy to go")
