"""Hosts and VMs written straight into an engine's database, for listings at scale
(`bench/api_list.py`) and the tests of listing parameters: no node, no job."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import (
    Cluster,
    Disk,
    DiskAttachment,
    Host,
    StorageDomain,
    Vm,
    VmNic,
    VnicProfile,
)
from overt.engine.model.status import DiskStatus, HostStatus, StorageDomainStatus, VmStatus

CAPABILITIES = {"cpu_model": "Skylake-Client-IBRS", "cpu_cores": 4, "cpu_sockets": 1,
                "cpu_threads": 1, "libvirt_version": "9.0.0", "kernel": "6.1.0-13-amd64"}


async def fill(url: str, count: int, prefix: str = "", first: int = 0) -> None:
    """`count` hosts and `count` VMs (named PREFIXhost-00000.., PREFIXvm-00000.., numbered
    from `first`: a second fill numbers on, its NICs' MACs apart); every other VM runs on a
    host and has a console; each VM has a NIC and a disk (every fourth from the second on
    virtio-scsi)."""
    db = Database(url)
    async with db.transaction() as session:
        cluster = (await session.execute(select(Cluster).order_by(Cluster.created_at))
                   ).scalars().first()
        assert cluster is not None
        profile = (await session.execute(select(VnicProfile))).scalars().first()
        domain = StorageDomain(id=uuid.uuid4(), name=f"{prefix}bench-data",
                               storage_type="localfs", path="/srv/bench",
                               status=StorageDomainStatus.ACTIVE)
        session.add(domain)
        hosts = [Host(id=uuid.uuid4(), name=f"{prefix}host-{n:05d}",
                      address=f"10.1.{n // 250}.{n % 250}",
                      cluster_id=cluster.id, status=HostStatus.UP, host_uuid=uuid.uuid4(),
                      certificate_fingerprint="ab" * 32, key_fingerprint="SHA256:bench",
                      capabilities=CAPABILITIES, memory_mib=65536, free_memory_mib=32768)
                 for n in range(first, first + count)]
        session.add_all(hosts)
        await session.flush()
        children: list[object] = []
        for n in range(first, first + count):
            running = n % 2 == 0
            vm = Vm(id=uuid.uuid4(), name=f"{prefix}vm-{n:05d}", cluster_id=cluster.id,
                    template_id=BLANK_TEMPLATE_ID, memory_mib=1024,
                    status=VmStatus.UP if running else VmStatus.DOWN,
                    host_id=hosts[n - first].id if running else None,
                    vnc_port=5900 + n if running else None)
            disk = Disk(id=uuid.uuid4(), name=f"{prefix}vm-{n:05d}_disk",
                        storage_domain_id=domain.id,
                        provisioned_size=10 << 30, status=DiskStatus.OK,
                        image_path=f"images/{uuid.uuid4()}.qcow2")
            session.add_all([vm, disk])
            children.append(VmNic(
                id=uuid.uuid4(), vm_id=vm.id, name="nic1",
                mac=f"02:bc:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}:01",
                vnic_profile_id=profile.id if profile else None))
            children.append(DiskAttachment(disk_id=disk.id, vm_id=vm.id, bootable=True,
                                           interface="virtio_scsi" if n % 4 == 1 else "virtio"))
        await session.flush()  # parents first: the tables have no ORM relationships
        session.add_all(children)
    await db.dispose()
