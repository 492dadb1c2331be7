"""VM leases in the engine: set only on a shared NFS or iSCSI domain and only while the VM
is down, one slot per VM on a domain; the keeper's reports answer the HA and fencing queries."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, Host, StorageDomain, User, Vm, utcnow
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.status import HostStatus, StorageDomainStatus, VmStatus
from overt.engine.monitor.lease_reports import record_lease_report
from overt.engine.queries import (
    host_renews_storage_lease,
    vm_lease_expired,
    vm_lease_expires_in,
)
from overt.engine.queries.lookup import Ref
from overt.engine.queries.vm_spec import lease_spec
from overt.engine.services.storage_domains import remove_storage_domain
from overt.engine.services.vm_leases import set_vm_lease
from overt.node.leases.export import DomainRef
from overt.protocol.host import HostIdLease, LeaseReport, VmLease

MIB = 1 << 20


async def _world(db: Database) -> dict[str, uuid.UUID]:
    ids = {name: uuid.uuid4() for name in ("nfs", "iscsi", "local", "vm1", "vm2", "host")}
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        session.add(Host(id=ids["host"], name="h1", address="h1.example",
                         cluster_id=cluster.id, status=HostStatus.UP,
                         key_fingerprint="AB:" * 31 + "AB"))
        session.add(StorageDomain(id=ids["nfs"], name="shared", storage_type="nfs",
                                  path="/export", address="storage.example",
                                  status=StorageDomainStatus.ACTIVE))
        session.add(StorageDomain(id=ids["iscsi"], name="san", storage_type="iscsi",
                                  path="iqn.2026-11.example:lun/3", address="10.9.9.9",
                                  status=StorageDomainStatus.ACTIVE))
        session.add(StorageDomain(id=ids["local"], name="local", storage_type="localfs",
                                  path="/srv/images", status=StorageDomainStatus.ACTIVE))
        for name in ("vm1", "vm2"):
            session.add(Vm(id=ids[name], name=name, cluster_id=cluster.id,
                           template_id=BLANK_TEMPLATE_ID, memory_mib=256))
    return ids


# Plain ORM reads and writes (the queries compare times in Python): SQLite only, to keep
# the suite short.
sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@sqlite_only
async def test_a_lease_goes_on_an_nfs_domain_with_its_own_slot_and_into_the_spec(
        db: Database) -> None:
    ids = await _world(db)
    async with db.transaction() as session:
        vm1, vm2 = await session.get(Vm, ids["vm1"]), await session.get(Vm, ids["vm2"])
        assert await set_vm_lease(session, vm1, Ref(id=ids["nfs"]), unset=False)
        assert await set_vm_lease(session, vm2, Ref(id=ids["nfs"]), unset=False)
        assert (vm1.lease_slot, vm2.lease_slot) == (0, 1)
        spec = await lease_spec(session, vm2)
        assert spec is not None
        assert (spec.domain_id, spec.server, spec.export, spec.slot) == (
            ids["nfs"], "storage.example", "/export", 1)
        admin = User(id=uuid.uuid4(), user_name="lease-admin", administrator=True)
        session.add(admin)
        await session.flush()
        with pytest.raises(Conflict, match="holds the leases of 2 VM"):
            await remove_storage_domain(session, ids["nfs"], admin)
        assert await set_vm_lease(session, vm1, None, unset=True)
        assert (vm1.lease_storage_domain_id, vm1.lease_slot) == (None, None)
        assert await lease_spec(session, vm1) is None


@sqlite_only
async def test_a_lease_on_an_iscsi_domain_lies_in_its_luns_lease_area(db: Database) -> None:
    ids = await _world(db)
    async with db.transaction() as session:
        vm1, vm2 = await session.get(Vm, ids["vm1"]), await session.get(Vm, ids["vm2"])
        assert await set_vm_lease(session, vm1, Ref(id=ids["iscsi"]), unset=False)
        assert await set_vm_lease(session, vm2, Ref(name="san"), unset=False)
        assert (vm1.lease_slot, vm2.lease_slot) == (0, 1)
        spec = await lease_spec(session, vm2, 2.0)
        assert spec is not None and spec.lun is not None
        assert (spec.domain_id, spec.slot, spec.io_timeout_s) == (ids["iscsi"], 1, 2.0)
        assert (spec.lun.portal, spec.lun.target, spec.lun.lun) == (
            "10.9.9.9", "iqn.2026-11.example:lun", 3)
        # The keeper's daemon opens the LUN's two lease windows, after its metadata area.
        ref = DomainRef(spec.domain_id, spec.server, spec.export, spec.lun)
        for area, offset in (("ids", MIB), ("xleases", 2 * MIB)):
            opts = ref.blockdevs(area)
            assert "driver=iscsi" in opts[1] and "portal=10.9.9.9:3260" in opts[1]
            assert "target=iqn.2026-11.example:lun,lun=3" in opts[1]
            assert f"offset={offset},size={MIB}" in opts[3]
        assert await set_vm_lease(session, vm1, Ref(id=ids["nfs"]), unset=False)  # moved
        assert (await lease_spec(session, vm1)).lun is None  # type: ignore[union-attr]


@sqlite_only
async def test_a_lease_on_local_storage_or_on_a_running_vm_is_refused(db: Database) -> None:
    ids = await _world(db)
    async with db.transaction() as session:
        vm = await session.get(Vm, ids["vm1"])
        with pytest.raises(InvalidInput, match="shared NFS or iSCSI"):
            await set_vm_lease(session, vm, Ref(id=ids["local"]), unset=False)
        vm.status = VmStatus.UP
        with pytest.raises(Conflict, match="stop it first"):
            await set_vm_lease(session, vm, Ref(id=ids["nfs"]), unset=False)
        assert vm.lease_storage_domain_id is None


@sqlite_only
async def test_the_queries_follow_the_keepers_reports(db: Database) -> None:
    ids = await _world(db)
    now = utcnow()
    report = LeaseReport(
        domains=(HostIdLease(domain_id=ids["nfs"], renewed_age_s=2.0, lease_timeout_s=80.0),),
        vms=(VmLease(vm_id=ids["vm1"], domain_id=ids["nfs"], renewed_age_s=3.0),))
    async with db.transaction() as session:
        assert await host_renews_storage_lease(session, ids["host"]) is None
        vm = await session.get(Vm, ids["vm1"])
        await set_vm_lease(session, vm, Ref(id=ids["nfs"]), unset=False)
        assert not await vm_lease_expired(session, ids["vm1"])  # never held: no proof
        assert await vm_lease_expires_in(session, ids["vm1"]) is None  # nothing to wait for
        await record_lease_report(session, ids["host"], report, now=now)
    async with db.transaction() as session:
        later = now + dt.timedelta(seconds=60)
        assert await host_renews_storage_lease(session, ids["host"], now=later) is True
        assert not await vm_lease_expired(session, ids["vm1"], now=later)
        # renewed 3 s before `now`, lease timeout 80 s: 17 s left a minute later
        assert await vm_lease_expires_in(session, ids["vm1"], now=later) == pytest.approx(17.0)
        much_later = now + dt.timedelta(seconds=90)
        assert await host_renews_storage_lease(session, ids["host"], now=much_later) is False
        assert await vm_lease_expired(session, ids["vm1"], now=much_later)
        assert await vm_lease_expires_in(session, ids["vm1"], now=much_later) == 0.0
        assert await vm_lease_expires_in(session, ids["vm2"], now=much_later) is None
        assert not await vm_lease_expired(session, ids["vm2"], now=much_later)  # no lease
