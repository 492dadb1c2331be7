"""Data centers, clusters, networks and storage domains through the official SDK: create,
update, delete, and oVirt's refusals (the fault's code, and that nothing changed)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import (
    Cluster,
    Disk,
    DiskAttachment,
    Host,
    StorageConnection,
    StorageDomain,
    Vm,
)
from overt.engine.model.status import DiskStatus, HostStatus, StorageDomainStatus
from overt.engine.queries.vm_spec import build_vm_spec
from overt.engine.secrets import SecretBox
from overt.protocol.vm import IscsiSource
from tests.support.engine import RunningEngine

MIB = 2**20


def _refused(code: int, call: object, *args: object, **kwargs: object) -> sdk.Error:
    with pytest.raises(sdk.Error) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    assert caught.value.code == code, caught.value
    return caught.value


def _wait_gone(service: object, timeout_s: float = 30.0) -> None:
    """Wait for an object removed by a job (a VM) to be gone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            service.get()  # type: ignore[attr-defined]
        except sdk.NotFoundError:
            return
        time.sleep(0.1)
    raise AssertionError(f"still there after {timeout_s} s")


def _events(conn: sdk.Connection) -> list[str]:
    return [e.description for e in conn.system_service().events_service().list(max=50)]


def test_data_center_create_update_delete(connection: sdk.Connection) -> None:
    dcs = connection.system_service().data_centers_service()
    dc = dcs.add(types.DataCenter(name="dc-east", description="east wing", local=False))
    assert dc.name == "dc-east" and dc.description == "east wing"
    networks = dcs.data_center_service(dc.id).networks_service().list()
    assert [n.name for n in networks] == ["ovirtmgmt"]  # every data center has one
    updated = dcs.data_center_service(dc.id).update(types.DataCenter(
        name="dc-east-2", description="the east wing"))
    assert (updated.name, updated.description) == ("dc-east-2", "the east wing")
    assert dcs.data_center_service(dc.id).get().name == "dc-east-2"
    dcs.data_center_service(dc.id).remove()
    assert "dc-east-2" not in [d.name for d in dcs.list()]
    assert not [n for n in connection.system_service().networks_service().list()
                if n.data_center.id == dc.id]
    _refused(404, dcs.data_center_service(dc.id).get)
    events = _events(connection)
    assert any("Data Center dc-east-2 was removed by admin@internal" in e for e in events)
    assert any("Data Center dc-east was added" in e for e in events)


def test_data_center_refusals_change_nothing(connection: sdk.Connection) -> None:
    dcs = connection.system_service().data_centers_service()
    dc = dcs.add(types.DataCenter(name="dc-west"))
    error = _refused(409, dcs.add, types.DataCenter(name="dc-west"))
    assert "already in use" in str(error)
    error = _refused(409, dcs.data_center_service(dc.id).update, types.DataCenter(name="Default"))
    assert "already in use" in str(error)
    _refused(400, dcs.data_center_service(dc.id).update, types.DataCenter(name="no spaces"))
    _refused(400, dcs.add, types.DataCenter(name=""))
    connection.system_service().clusters_service().add(types.Cluster(
        name="west-1", data_center=types.DataCenter(id=dc.id)))
    error = _refused(409, dcs.data_center_service(dc.id).remove)
    assert "cluster" in str(error)
    assert dcs.data_center_service(dc.id).get().name == "dc-west"
    assert [c.name for c in dcs.data_center_service(dc.id).clusters_service().list()] == ["west-1"]
    assert [d.name for d in dcs.list(search="name=dc-west*")] == ["dc-west"]


def test_cluster_create_update_delete(connection: sdk.Connection) -> None:
    clusters = connection.system_service().clusters_service()
    cluster = clusters.add(types.Cluster(
        name="batch", description="batch jobs", data_center=types.DataCenter(name="Default"),
        memory_policy=types.MemoryPolicy(over_commit=types.MemoryOverCommit(percent=150))))
    assert cluster.memory_policy.over_commit.percent == 150
    service = clusters.cluster_service(cluster.id)
    updated = service.update(types.Cluster(
        name="batch-2", description="nightly batch",
        memory_policy=types.MemoryPolicy(over_commit=types.MemoryOverCommit(percent=200))))
    assert (updated.name, updated.description) == ("batch-2", "nightly batch")
    assert service.get().memory_policy.over_commit.percent == 200
    # An object read back and sent again is no change.
    again = service.update(service.get())
    assert (again.name, again.memory_policy.over_commit.percent) == ("batch-2", 200)
    service.remove()
    _refused(404, service.get)
    assert any("Cluster batch-2 was removed" in e for e in _events(connection))


def test_cluster_refusals_change_nothing(connection: sdk.Connection) -> None:
    system = connection.system_service()
    clusters = system.clusters_service()
    cluster = clusters.add(types.Cluster(name="web", data_center=types.DataCenter(name="Default")))
    service = clusters.cluster_service(cluster.id)
    _refused(409, clusters.add, types.Cluster(name="web",
                                             data_center=types.DataCenter(name="Default")))
    _refused(400, clusters.add, types.Cluster(name="nowhere",
                                             data_center=types.DataCenter(name="no-such-dc")))
    _refused(400, service.update, types.Cluster(
        memory_policy=types.MemoryPolicy(over_commit=types.MemoryOverCommit(percent=0))))
    vm = system.vms_service().add(types.Vm(
        name="web-vm", cluster=types.Cluster(id=cluster.id),
        template=types.Template(name="Blank"), memory=128 * MIB))
    error = _refused(409, service.remove)
    assert "VM" in str(error)
    assert service.get().memory_policy.over_commit.percent == 100
    system.vms_service().vm_service(vm.id).remove()
    _wait_gone(system.vms_service().vm_service(vm.id))
    service.remove()
    assert "web" not in [c.name for c in clusters.list()]


def test_network_create_update_delete(connection: sdk.Connection) -> None:
    networks = connection.system_service().networks_service()
    network = networks.add(types.Network(
        name="storage", description="iSCSI", data_center=types.DataCenter(name="Default"),
        vlan=types.Vlan(id=20), mtu=9000,
        usages=[types.NetworkUsage.VM, types.NetworkUsage.MIGRATION]))
    assert (network.vlan.id, network.mtu) == (20, 9000)
    service = networks.network_service(network.id)
    assert [p.name for p in service.vnic_profiles_service().list()] == ["storage"]
    updated = service.update(types.Network(name="storage2", vlan=types.Vlan(id=30), mtu=1500,
                                           description="iSCSI, second fabric"))
    assert (updated.name, updated.vlan.id, updated.mtu) == ("storage2", 30, 1500)
    assert [p.name for p in service.vnic_profiles_service().list()] == ["storage2"]
    service.remove()
    _refused(404, service.get)
    assert "storage2" not in [p.name for p in
                              connection.system_service().vnic_profiles_service().list()]
    assert any("Network storage2 was removed" in e for e in _events(connection))


def test_network_refusals_change_nothing(connection: sdk.Connection) -> None:
    system = connection.system_service()
    networks = system.networks_service()
    mgmt = networks.list(search="name=ovirtmgmt")[0]
    error = _refused(409, networks.network_service(mgmt.id).remove)
    assert "management network" in str(error)
    _refused(409, networks.network_service(mgmt.id).update, types.Network(name="mgmt"))
    network = networks.add(types.Network(name="guests", data_center=types.DataCenter(
        name="Default"), vlan=types.Vlan(id=100)))
    service = networks.network_service(network.id)
    _refused(409, networks.add, types.Network(name="guests",
                                             data_center=types.DataCenter(name="Default")))
    _refused(400, networks.add, types.Network(name="a-name-far-too-long",
                                             data_center=types.DataCenter(name="Default")))
    _refused(400, service.update, types.Network(vlan=types.Vlan(id=5000)))
    _refused(400, service.update, types.Network(mtu=10))
    vm = system.vms_service().add(types.Vm(
        name="guest-vm", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), memory=128 * MIB))
    profile = service.vnic_profiles_service().list()[0]
    nics = system.vms_service().vm_service(vm.id).nics_service()
    error = _refused(400, nics.add, types.Nic(name="nic1",
                                              vnic_profile=types.VnicProfile(id=profile.id)))
    assert "network guests is not attached to cluster Default" in str(error)
    assert nics.list() == []
    cluster = system.clusters_service().list(search="name=Default")[0]
    system.clusters_service().cluster_service(cluster.id).networks_service().add(
        types.Network(id=network.id, required=False))
    nics.add(types.Nic(name="nic1", vnic_profile=types.VnicProfile(id=profile.id)))
    error = _refused(409, service.remove)
    assert "VM NIC" in str(error)
    _refused(409, service.update, types.Network(vlan=types.Vlan(id=101)))
    assert service.update(types.Network(description="guests' LAN")).description == "guests' LAN"
    after = service.get()
    assert (after.name, after.vlan.id) == ("guests", 100)


def _host(engine: RunningEngine, name: str, status: HostStatus = HostStatus.UP,
          cluster: str = "Default") -> str:
    """A host row as enrollment leaves it (the API tests run no nodes)."""
    async def insert() -> uuid.UUID:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                found = (await session.execute(select(Cluster).where(
                    Cluster.name == cluster))).scalar_one()
                host = Host(id=uuid.uuid4(), name=name, address=f"{name}.example",
                            cluster_id=found.id, status=status.value)
                session.add(host)
                return host.id
        finally:
            await db.dispose()
    return str(asyncio.run(insert()))


def _made_disk(engine: RunningEngine, name: str, domain_id: str, vm_id: str) -> None:
    """A VM's disk on the domain as a finished creation leaves it (no node runs here: a
    disk asked of the API fails to be made, and is removed)."""
    async def insert() -> None:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                disk = Disk(id=uuid.uuid4(), name=name, storage_domain_id=uuid.UUID(domain_id),
                            provisioned_size=MIB, status=DiskStatus.OK,
                            image_path=f"images/{name}.qcow2")
                session.add(disk)
                await session.flush()
                session.add(DiskAttachment(disk_id=disk.id, vm_id=uuid.UUID(vm_id)))
        finally:
            await db.dispose()
    asyncio.run(insert())


def _local_domain(conn: sdk.Connection, name: str, host_id: str) -> types.StorageDomain:
    return conn.system_service().storage_domains_service().add(types.StorageDomain(
        name=name, type=types.StorageDomainType.DATA, host=types.Host(id=host_id),
        storage=types.HostStorage(type=types.StorageType.LOCALFS, path=f"/var/tmp/{name}")))


def test_storage_domain_create_update_delete(connection: sdk.Connection,
                                             api_engine: RunningEngine) -> None:
    system = connection.system_service()
    domain = _local_domain(connection, "images", _host(api_engine, "sd-host-1"))
    assert domain.status == types.StorageDomainStatus.ACTIVE
    service = system.storage_domains_service().storage_domain_service(domain.id)
    updated = service.update(types.StorageDomain(name="images-2", description="VM images"))
    assert (updated.name, updated.description) == ("images-2", "VM images")
    assert service.is_attached() is True
    attached = system.data_centers_service().data_center_service(domain.data_centers[0].id) \
        .storage_domains_service().storage_domain_service(domain.id)
    attached.deactivate()
    assert service.get().status == types.StorageDomainStatus.MAINTENANCE
    attached.activate()
    assert service.get().status == types.StorageDomainStatus.ACTIVE
    attached.deactivate()
    service.remove()
    _refused(404, service.get)
    assert any("Storage Domain images-2 was removed" in e for e in _events(connection))


def test_storage_domain_refusals_change_nothing(connection: sdk.Connection,
                                                api_engine: RunningEngine) -> None:
    system = connection.system_service()
    domains = system.storage_domains_service()
    host_id = _host(api_engine, "sd-host-2")
    domain = _local_domain(connection, "vault", host_id)
    service = domains.storage_domain_service(domain.id)
    _refused(409, _local_domain, connection, "vault", host_id)
    _refused(400, domains.add, types.StorageDomain(
        name="relative", type=types.StorageDomainType.DATA, host=types.Host(id=host_id),
        storage=types.HostStorage(type=types.StorageType.LOCALFS, path="var/tmp/x")))
    _refused(409, service.update, types.StorageDomain(
        storage=types.HostStorage(type=types.StorageType.LOCALFS, path="/elsewhere")))
    error = _refused(409, service.remove)
    assert "maintenance" in str(error)
    vm = system.vms_service().add(types.Vm(
        name="vault-vm", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), memory=128 * MIB))
    _made_disk(api_engine, "vault-disk", domain.id, vm.id)
    system.data_centers_service().data_center_service(domain.data_centers[0].id) \
        .storage_domains_service().storage_domain_service(domain.id).deactivate()
    error = _refused(409, service.remove)
    assert "disk" in str(error)
    after = service.get()
    assert (after.name, after.storage.path) == ("vault", "/var/tmp/vault")
    assert [d.name for d in service.disks_service().list()] == ["vault-disk"]


def _nfs_domain(conn: sdk.Connection, name: str, host_id: str, address: str,
                path: str = "/export") -> types.StorageDomain:
    return conn.system_service().storage_domains_service().add(types.StorageDomain(
        name=name, type=types.StorageDomainType.DATA, host=types.Host(id=host_id),
        storage=types.HostStorage(type=types.StorageType.NFS, address=address, path=path)))


def test_nfs_storage_domain_refusals_change_nothing(connection: sdk.Connection,
                                                    api_engine: RunningEngine) -> None:
    """An NFS domain waits `locked` for a host to lay it out (this one is in maintenance);
    what is wrong with a request is refused before anything is recorded."""
    system = connection.system_service()
    domains = system.storage_domains_service()
    host_id = _host(api_engine, "sd-host-3", HostStatus.MAINTENANCE)
    before = {d.name for d in domains.list()}
    domain = _nfs_domain(connection, "shared", host_id, "nfs.example")
    assert domain.status == types.StorageDomainStatus.LOCKED
    assert (domain.storage.type, domain.storage.address, domain.storage.path) == (
        types.StorageType.NFS, "nfs.example", "/export")
    error = _refused(409, _nfs_domain, connection, "shared-2", host_id, "nfs.example")
    assert "already used by storage domain shared" in str(error)
    _refused(409, _nfs_domain, connection, "shared", host_id, "nfs.example", "/other")
    _refused(400, _nfs_domain, connection, "bad-address", host_id, "nfs://x/y")
    _refused(400, _nfs_domain, connection, "bad-path", host_id, "nfs.example", "/a/../b")
    _refused(400, domains.add, types.StorageDomain(
        name="no-address", type=types.StorageDomainType.DATA, host=types.Host(id=host_id),
        storage=types.HostStorage(type=types.StorageType.NFS, path="/export")))
    dc = system.data_centers_service().list(search="name=Default")[0]
    attached = system.data_centers_service().data_center_service(dc.id).storage_domains_service()
    error = _refused(409, attached.add, types.StorageDomain(id=domain.id))
    assert "only an unattached domain can be attached" in str(error)
    local = _local_domain(connection, "local-only", host_id)
    _refused(409, attached.add, types.StorageDomain(id=local.id))
    _refused(400, attached.add, types.StorageDomain(id=str(uuid.uuid4())))
    # "shared" waits for a host (or is gone once its add gave up); nothing else was made.
    assert {d.name for d in domains.list()} - {"shared"} == before | {"local-only"}


def test_iscsi_storage_domain_refusals_change_nothing(connection: sdk.Connection,
                                                      api_engine: RunningEngine) -> None:
    domains = connection.system_service().storage_domains_service()
    host_id = _host(api_engine, "sd-host-4", HostStatus.MAINTENANCE)
    before = sorted(d.name for d in domains.list())

    def add(name: str, *units: types.LogicalUnit) -> types.StorageDomain:
        return domains.add(types.StorageDomain(
            name=name, type=types.StorageDomainType.DATA, host=types.Host(id=host_id),
            storage=types.HostStorage(type=types.StorageType.ISCSI, logical_units=list(units))))

    iqn = "iqn.2026-11.org.example:disks"
    _refused(400, add, "no-lun")
    _refused(400, add, "bad-iqn", types.LogicalUnit(id="1", address="san.example",
                                                    port=3260, target="disks"))
    _refused(400, add, "bad-lun", types.LogicalUnit(id="16384", address="san.example",
                                                    port=3260, target=iqn))
    _refused(400, add, "bad-iqn-by-id", types.LogicalUnit(
        id="36001405abc", address="san.example", port=3260, target="disks"))
    # A SCSI id is looked up in the host's LUN list, which a host in maintenance cannot give.
    error = _refused(409, add, "by-scsi-id", types.LogicalUnit(
        id="36001405abc", address="san.example", port=3260, target=iqn))
    assert "Cannot use iSCSI on host sd-host-4: it is maintenance, not up." in str(error)
    _refused(400, add, "bad-portal", types.LogicalUnit(id="1", address="san example",
                                                       port=3260, target=iqn))
    domain = add("san", types.LogicalUnit(id="1", address="san.example", port=3260, target=iqn))
    assert domain.status == types.StorageDomainStatus.LOCKED
    error = _refused(409, add, "san-2", types.LogicalUnit(id="1", address="san.example",
                                                          port=3260, target=iqn))
    assert "already used by storage domain san" in str(error)
    assert {d.name for d in domains.list()} - {"san"} == set(before)


def _iscsi_domain_row(engine: RunningEngine, name: str, portal: str, target: str,
                      lun: int) -> str:
    """An iSCSI domain row as its add job leaves it (the API tests run no nodes)."""
    async def insert() -> uuid.UUID:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                domain = StorageDomain(id=uuid.uuid4(), name=name, address=portal,
                                       path=f"{target}/{lun}", storage_type="iscsi",
                                       status=StorageDomainStatus.UNATTACHED.value)
                session.add(domain)
                return domain.id
        finally:
            await db.dispose()
    return str(asyncio.run(insert()))


def test_storage_connections_are_those_of_the_shared_domains(connection: sdk.Connection,
                                                             api_engine: RunningEngine) -> None:
    system = connection.system_service()
    host_id = _host(api_engine, "sd-host-conn", HostStatus.MAINTENANCE)
    nfs = _nfs_domain(connection, "conn-nfs", host_id, "filer.example", "/exports/conn")
    local = _local_domain(connection, "conn-local", host_id)
    iqn = "iqn.2003-01.org.example:conn"
    iscsi_id = _iscsi_domain_row(api_engine, "conn-iscsi", "san.example:3261", iqn, 2)
    domains = system.storage_domains_service()

    [nfs_conn] = domains.storage_domain_service(nfs.id).storage_connections_service().list()
    assert (nfs_conn.type, nfs_conn.address, nfs_conn.path) == (
        types.StorageType.NFS, "filer.example", "/exports/conn")
    [iscsi_conn] = domains.storage_domain_service(
        iscsi_id).storage_connections_service().list()
    assert (iscsi_conn.type, iscsi_conn.address, iscsi_conn.port, iscsi_conn.target) == (
        types.StorageType.ISCSI, "san.example", 3261, iqn)
    assert domains.storage_domain_service(local.id).storage_connections_service().list() == []

    connections = system.storage_connections_service()
    listed = {c.id: c for c in connections.list()}
    assert {nfs_conn.id, iscsi_conn.id} <= set(listed)
    fetched = connections.storage_connection_service(nfs_conn.id).get()
    assert (fetched.address, fetched.path) == ("filer.example", "/exports/conn")
    _refused(404, connections.storage_connection_service(str(uuid.uuid4())).get)


def _domain_row(engine: RunningEngine, name: str, storage_type: str, address: str, path: str,
                status: StorageDomainStatus) -> str:
    """A shared domain row in `status` (the API tests run no nodes to lay one out)."""
    async def insert() -> uuid.UUID:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                domain = StorageDomain(id=uuid.uuid4(), name=name, address=address, path=path,
                                       storage_type=storage_type, status=status.value)
                session.add(domain)
                return domain.id
        finally:
            await db.dispose()
    return str(asyncio.run(insert()))


def _domain_set(engine: RunningEngine, sd_id: str, status: StorageDomainStatus | None = None
                ) -> tuple[str | None, str]:
    """The domain's address and path as recorded (after setting its status, if given)."""
    async def update() -> tuple[str | None, str]:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                domain = await session.get(StorageDomain, uuid.UUID(sd_id))
                assert domain is not None
                if status is not None:
                    domain.status = status
                return domain.address, domain.path
        finally:
            await db.dispose()
    return asyncio.run(update())


def test_storage_connections_are_added_edited_and_removed(connection: sdk.Connection,
                                                         api_engine: RunningEngine) -> None:
    """Connections added on their own, edited and removed; bad ones refused with nothing
    changed."""
    conns = connection.system_service().storage_connections_service()
    before = sorted(c.id for c in conns.list())
    spare = conns.add(types.StorageConnection(
        type=types.StorageType.NFS, address="filer2.example", path="/exports/spare/",
        nfs_version=types.NfsVersion.V4_2))
    assert (spare.type, spare.address, spare.path, spare.nfs_version) == (
        types.StorageType.NFS, "filer2.example", "/exports/spare", types.NfsVersion.V4_2)
    assert conns.storage_connection_service(spare.id).get().path == "/exports/spare"
    listed = sorted(c.id for c in conns.list())
    error = _refused(409, conns.add_nfs, types.StorageConnection(
        type=types.StorageType.NFS, address="filer2.example", path="/exports/spare"))
    assert "already exists" in str(error)
    iqn = "iqn.2003-01.org.example:spare"
    for bad in (types.StorageConnection(type=types.StorageType.NFS, address="filer2.example"),
                types.StorageConnection(type=types.StorageType.NFS, address="a b", path="/x"),
                types.StorageConnection(type=types.StorageType.NFS, address="f", path="/a/../b"),
                types.StorageConnection(address="filer3.example", path="/x"),
                types.StorageConnection(type=types.StorageType.LOCALFS, path="/var/tmp"),
                types.StorageConnection(type=types.StorageType.ISCSI, address="san.example",
                                        port=3260, target="not-an-iqn"),
                types.StorageConnection(type=types.StorageType.ISCSI, address="san.example",
                                        port=70000, target=iqn),
                types.StorageConnection(type=types.StorageType.NFS, address="filer3.example",
                                        path="/y", username="u", password="secret-chap"),
                types.StorageConnection(type=types.StorageType.ISCSI, address="san.example",
                                        target=iqn, password="secret-chap"),
                types.StorageConnection(type=types.StorageType.ISCSI, address="san.example",
                                        target=iqn, username="u"),
                types.StorageConnection(type=types.StorageType.ISCSI, address="san.example",
                                        target=iqn, username="u", password="secret chap"),
                types.StorageConnection(type=types.StorageType.NFS, address="filer3.example",
                                        path="/x", host=types.Host(name="no-such-host"))):
        error = _refused(400, conns.add, bad)
        assert "secret-chap" not in str(error)
    assert sorted(c.id for c in conns.list()) == listed

    service = conns.storage_connection_service(spare.id)
    edited = service.update(types.StorageConnection(path="/exports/spare2"))
    assert (edited.address, edited.path) == ("filer2.example", "/exports/spare2")
    _refused(400, service.update, types.StorageConnection(path="/exports/../etc"))
    _refused(409, service.update, types.StorageConnection(type=types.StorageType.ISCSI))
    assert service.get().path == "/exports/spare2"
    service.remove()
    _refused(404, service.get)
    _refused(404, conns.storage_connection_service(str(uuid.uuid4())).remove)
    assert sorted(c.id for c in conns.list()) == before
    assert any("Storage connection filer2.example:/exports/spare2 was removed by "
               "admin@internal" in e for e in _events(connection))


def test_a_domains_connection_moves_it_only_in_maintenance(connection: sdk.Connection,
                                                         api_engine: RunningEngine) -> None:
    """Editing the connection a domain was made on moves the domain to another server or
    portal: refused (409) while the domain is active, done in maintenance; further portals
    are added to and taken from an iSCSI domain; a used connection is not removed."""
    system = connection.system_service()
    conns = system.storage_connections_service()
    domains = system.storage_domains_service()
    iqn = "iqn.2003-01.org.example:move"
    sd_id = _domain_row(api_engine, "move-san", "iscsi", "san1.example:3260", f"{iqn}/3",
                        StorageDomainStatus.ACTIVE)
    sd_conns = domains.storage_domain_service(sd_id).storage_connections_service()
    [own] = sd_conns.list()
    service = conns.storage_connection_service(own.id)
    error = _refused(409, service.update, types.StorageConnection(address="san2.example"))
    assert "switch it to maintenance first" in str(error)
    assert _domain_set(api_engine, sd_id) == ("san1.example:3260", f"{iqn}/3")

    _domain_set(api_engine, sd_id, StorageDomainStatus.MAINTENANCE)
    moved = service.update(types.StorageConnection(address="san2.example", port=3261))
    assert (moved.id, moved.address, moved.port, moved.target) == (
        own.id, "san2.example", 3261, iqn)
    assert _domain_set(api_engine, sd_id) == ("san2.example:3261", f"{iqn}/3")  # same LUN
    error = _refused(409, service.remove)
    assert "move-san" in str(error)
    _refused(409, sd_conns.connection_service(own.id).remove)

    portal = conns.add_iscsi(types.StorageConnection(
        type=types.StorageType.ISCSI, address="san3.example", port=3260, target=iqn))
    sd_conns.add(types.StorageConnection(id=portal.id))
    assert sorted(c.id for c in sd_conns.list()) == sorted([own.id, portal.id])
    assert sd_conns.connection_service(portal.id).get().address == "san3.example"
    _refused(409, sd_conns.add, types.StorageConnection(id=portal.id))  # already there
    _refused(400, sd_conns.add, types.StorageConnection(id=str(uuid.uuid4())))
    elsewhere = conns.add_iscsi(types.StorageConnection(
        type=types.StorageType.ISCSI, address="san3.example", port=3260,
        target="iqn.2003-01.org.example:other"))
    error = _refused(409, sd_conns.add, types.StorageConnection(id=elsewhere.id))
    assert "target" in str(error)
    error = _refused(409, conns.storage_connection_service(portal.id).remove)
    assert "move-san" in str(error)
    _refused(409, conns.storage_connection_service(portal.id).update,
             types.StorageConnection(target="iqn.2003-01.org.example:third"))
    sd_conns.connection_service(portal.id).remove()
    assert [c.id for c in sd_conns.list()] == [own.id]
    sd_conns.add(types.StorageConnection(id=portal.id))
    domains.storage_domain_service(sd_id).remove()  # its own connection goes with it
    _refused(404, conns.storage_connection_service(own.id).get)
    conns.storage_connection_service(portal.id).remove()  # no longer used
    conns.storage_connection_service(elsewhere.id).remove()

    nfs_id = _domain_row(api_engine, "move-nfs", "nfs", "filer.example", "/exports/a",
                         StorageDomainStatus.ACTIVE)
    _domain_row(api_engine, "stay-nfs", "nfs", "filer.example", "/exports/b",
                StorageDomainStatus.MAINTENANCE)
    [nfs_own] = domains.storage_domain_service(nfs_id).storage_connections_service().list()
    _refused(409, domains.storage_domain_service(nfs_id).storage_connections_service().add,
             types.StorageConnection(id=portal.id))  # only iSCSI domains take more
    nfs_service = conns.storage_connection_service(nfs_own.id)
    error = _refused(409, nfs_service.update, types.StorageConnection(path="/exports/b"),
                     force=True)
    assert "already exists" in str(error)
    moved = nfs_service.update(types.StorageConnection(address="filer9.example"), force=True)
    assert (moved.address, moved.path) == ("filer9.example", "/exports/a")
    assert _domain_set(api_engine, nfs_id) == ("filer9.example", "/exports/a")
    assert any("Storage connection of Storage Domain move-san was changed from "
               f"san1.example:3260 {iqn} to san2.example:3261 {iqn}" in e
               for e in _events(connection))
def _chap_rows(engine: RunningEngine, sd_name: str, conn_id: str
               ) -> tuple[tuple[str | None, str | None], tuple[str | None, str | None]]:
    """The CHAP user and sealed password of a domain and of a connection, as stored."""
    async def read() -> tuple[tuple[str | None, str | None], tuple[str | None, str | None]]:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                domain = (await session.execute(select(StorageDomain).where(
                    StorageDomain.name == sd_name))).scalar_one()
                row = await session.get(StorageConnection, uuid.UUID(conn_id))
                assert row is not None
                return ((domain.chap_username, domain.chap_password_sealed),
                        (row.username, row.password_sealed))
        finally:
            await db.dispose()
    return asyncio.run(read())


def test_chap_credentials_are_sealed_and_never_shown(connection: sdk.Connection,
                                                     api_engine: RunningEngine,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """CHAP on an iSCSI domain's LUN and on a connection: the user name shows, the password
    is stored sealed (the engine's key opens it) and is in no answer, event or log line."""
    caplog.set_level(logging.DEBUG)
    secret, other = "Chap-Secret-0451", "Chap-Other-7788"
    system = connection.system_service()
    domains, conns = system.storage_domains_service(), system.storage_connections_service()
    host_id = _host(api_engine, "sd-host-chap", HostStatus.MAINTENANCE)
    iqn = "iqn.2026-12.org.example:chap"
    domain = domains.add(types.StorageDomain(
        name="chap-san", type=types.StorageDomainType.DATA, host=types.Host(id=host_id),
        storage=types.HostStorage(type=types.StorageType.ISCSI, logical_units=[
            types.LogicalUnit(id="1", address="chapsan.example", port=3260, target=iqn,
                              username="overt-init", password=secret)])))
    [own] = domains.storage_domain_service(domain.id).storage_connections_service().list()
    assert (own.username, own.password) == ("overt-init", None)
    spare = conns.add(types.StorageConnection(
        type=types.StorageType.ISCSI, address="chapsan2.example", port=3260, target=iqn,
        username="spare-user", password=other))
    assert (spare.username, spare.password) == ("spare-user", None)
    listed = {c.id: c for c in conns.list()}
    assert (listed[spare.id].username, listed[own.id].username) == ("spare-user", "overt-init")

    box = SecretBox(api_engine.runtime.settings.data_dir)
    (sd_user, sd_sealed), (conn_user, conn_sealed) = _chap_rows(api_engine, "chap-san", spare.id)
    assert (sd_user, conn_user) == ("overt-init", "spare-user")
    assert sd_sealed is not None and conn_sealed is not None
    assert secret not in sd_sealed and other not in conn_sealed
    assert (box.open(sd_sealed).reveal(), box.open(conn_sealed).reveal()) == (secret, other)

    service = conns.storage_connection_service(spare.id)
    error = _refused(400, service.update, types.StorageConnection(username="new-user"))
    assert "password is required" in str(error)
    error = _refused(400, service.update, types.StorageConnection(password="has space"))
    assert "has space" not in str(error)
    moved = service.update(types.StorageConnection(address="chapsan3.example"))
    assert (moved.address, moved.username) == ("chapsan3.example", "spare-user")
    assert box.open(_chap_rows(api_engine, "chap-san", spare.id)[1][1] or "").reveal() == other
    service.update(types.StorageConnection(username="", password=""))  # CHAP off
    assert _chap_rows(api_engine, "chap-san", spare.id)[1] == (None, None)
    assert service.get().username is None
    service.remove()

    shown = [repr(vars(c)) for c in conns.list()]
    for text in (*shown, *_events(connection), caplog.text):
        assert secret not in text and other not in text


def test_direct_lun_disks_are_added_attached_and_removed_with_the_sdk(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    """A direct LUN disk (oVirt's `lun_storage`) is a whole LUN given to a VM: added with
    no job, listed and read back with its LUN, attached to a VM whose spec opens it as an
    iSCSI network disk (no slice of it), removed once detached. Refused, changing nothing:
    a LUN that holds a storage domain or another direct LUN disk (409), a bad LUN (400),
    a storage domain as well as a LUN (400), the removal of an attached one (409)."""
    system = connection.system_service()
    disks = system.disks_service()
    iqn = "iqn.2026-11.org.example:luns"
    _iscsi_domain_row(api_engine, "lun-domain", "san.example:3260", iqn, 4)

    def lun_disk(name: str, lun: int | str, target: str = iqn,
                 kind: types.StorageType = types.StorageType.ISCSI, **extra: object
                 ) -> types.Disk:
        return types.Disk(alias=name, lun_storage=types.HostStorage(type=kind, logical_units=[
            types.LogicalUnit(address="san.example", port=3260, target=target,
                              **({"lun_mapping": lun} if isinstance(lun, int) else {"id": lun}))]),
            **extra)  # type: ignore[arg-type]

    before = sorted(d.name for d in disks.list())
    assert "storage domain lun-domain" in str(_refused(409, disks.add, lun_disk("taken", 4)))
    _refused(400, disks.add, lun_disk("bad-iqn", 5, target="luns"))
    _refused(400, disks.add, lun_disk("bad-lun", "36001405abc"))
    _refused(400, disks.add, lun_disk("nfs-lun", 5, kind=types.StorageType.NFS))
    _refused(400, disks.add, lun_disk("both", 5, storage_domains=[
        types.StorageDomain(name="lun-domain")]))
    assert sorted(d.name for d in disks.list()) == before

    added = disks.add(lun_disk("db-lun", 5, provisioned_size=7 * MIB))
    assert added.status == types.DiskStatus.OK and added.storage_type == types.DiskStorageType.LUN
    assert added.provisioned_size == 0  # the LUN's, once a host reads it; not the client's
    [unit] = disks.disk_service(added.id).get().lun_storage.logical_units
    assert (unit.address, unit.port, unit.target, unit.lun_mapping) == (
        "san.example", 3260, iqn, 5)
    assert "direct LUN disk db-lun" in str(_refused(409, disks.add, lun_disk("again", "5")))
    assert [d.id for d in disks.list(search="name=db-lun")] == [added.id]
    host_id = _host(api_engine, "lun-host", HostStatus.MAINTENANCE)
    domain_on_it = types.StorageDomain(
        name="on-the-lun", type=types.StorageDomainType.DATA, host=types.Host(id=host_id),
        storage=types.HostStorage(type=types.StorageType.ISCSI, logical_units=[
            types.LogicalUnit(id="5", address="san.example", port=3260, target=iqn)]))
    error = _refused(409, system.storage_domains_service().add, domain_on_it)
    assert "direct LUN disk db-lun" in str(error)

    vm = system.vms_service().add(types.Vm(
        name="lun-vm", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), memory=128 * MIB))
    attachments = system.vms_service().vm_service(vm.id).disk_attachments_service()
    attachments.add(types.DiskAttachment(disk=types.Disk(id=added.id), bootable=False,
                                         interface=types.DiskInterface.VIRTIO, active=True))
    assert [a.disk.id for a in attachments.list()] == [added.id]
    source = asyncio.run(_spec_disk_source(api_engine, uuid.UUID(vm.id)))
    assert isinstance(source, IscsiSource)
    assert (source.portal, source.target, source.lun, source.offset) == (
        "san.example:3260", iqn, 5, None)
    assert "attached" in str(_refused(409, disks.disk_service(added.id).remove))

    attachments.attachment_service(added.id).remove()
    disks.disk_service(added.id).remove()
    assert sorted(d.name for d in disks.list()) == before
    _refused(404, disks.disk_service(added.id).get)


async def _spec_disk_source(engine: RunningEngine, vm_id: uuid.UUID) -> object:
    """The source of the VM's one disk in the spec a node would be given to start it."""
    db = Database(engine.runtime.settings.database_url())
    try:
        async with db.transaction() as session:
            vm = await session.get(Vm, vm_id)
            assert vm is not None
            spec = await build_vm_spec(session, vm, vnc_password="secret")
            [disk] = spec.disks
            return disk.source
    finally:
        await db.dispose()
