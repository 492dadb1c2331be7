"""Full listings written straight from rows (`api.list_xml`) are the same bytes as the views
written by `to_xml`, for hosts and VMs with every field set, unset and awkward; the
official SDK reads them."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import ovirtsdk4.readers  # noqa: F401 - registers the SDK's readers
import ovirtsdk4.types as types
import pytest
from ovirtsdk4.reader import Reader

from overt.engine.api import list_xml, views
from overt.engine.api.app import api_routes
from overt.engine.api.resources import vm_devices
from overt.engine.api.resources.vms import Related, vm_reps
from overt.engine.api.wire.render import to_xml
from overt.engine.db.tables import Disk, DiskAttachment, Host, Vm, VmNic
from overt.engine.model.status import DiskStatus, HostStatus, VmStatus
from overt.protocol.host import KdumpStatus

CAPS = {"cpu_model": "Skylake-Client-IBRS", "cpu_cores": 4, "cpu_sockets": 2, "cpu_threads": 2,
        "libvirt_version": "9.0.0", "kernel": "6.1.0-13-amd64"}
FACTS = {"system_uuid": "4c4c4544-0000", "manufacturer": "Dell & Sons <EMEA>",
         "product_name": "R640", "product_version": "1", "serial_number": "S/N 7",
         "family": "Server", "cpu_model": "EPYC", "cpu_cores": 8}
AWKWARD = 'a & b < c > "d" \'e\''


def _host(n: int, **fields: Any) -> Host:
    values: dict[str, Any] = {
        "id": uuid.uuid4(), "name": f"host-{n}", "description": AWKWARD, "address": "10.0.0.1",
        "port": 54321, "status": HostStatus.UP, "status_detail": "storage <x> unreachable",
        "memory_mib": 65536, "free_memory_mib": 1024, "capabilities": CAPS, "hardware": FACTS,
        "host_uuid": uuid.uuid4(), "certificate_fingerprint": "ab" * 32,
        "key_fingerprint": "SHA256:k&y", "pm_enabled": True, "kdump_detection": False,
        "kdump_status": KdumpStatus.ENABLED, "cluster_id": uuid.uuid4()}
    values.update(fields)
    return Host(**values)


HOSTS = [
    _host(0),
    # A bare host: added by address, never announced nor certified.
    _host(1, description="", status_detail="", capabilities={}, hardware=None, host_uuid=None,
          certificate_fingerprint=None, key_fingerprint=None, pm_enabled=False,
          kdump_status=KdumpStatus.UNKNOWN, status=HostStatus.INSTALLING),
    # Pending approval: what it announced, no capabilities yet.
    _host(2, capabilities={}, description=None, status=HostStatus.PENDING_APPROVAL),
    # Capabilities without the versions; facts of nothing but the UUID.
    _host(3, capabilities={"cpu_model": ""}, hardware={}, status_detail=None),
    _host(4, capabilities={"cpu_cores": 2, "kernel": "5<6"}, hardware={"family": "x"},
          host_uuid=None, name="h&st"),
]


@pytest.mark.parametrize("all_content", [False, True])
def test_a_host_list_is_the_views_bytes(all_content: bool) -> None:
    api_routes()
    counts: dict[Any, int] = {HOSTS[0].id: 3, HOSTS[2].id: 0}
    reps = []
    for h in HOSTS:
        rep = views.host(h, vm_count=counts.get(h.id, 0))
        if all_content:
            rep["hosted_engine"] = {"configured": False}
        reps.append(rep)
    written = list_xml.hosts_xml(HOSTS, counts, all_content=all_content)
    assert written == to_xml("hosts", {"host": reps})
    assert list_xml.hosts_xml([], {}, all_content=all_content) == to_xml("hosts", {"host": []})
    read = Reader.read(written)
    assert [h.name for h in read] == [h.name for h in HOSTS]
    assert read[0].description == AWKWARD and read[0].summary.active == 3
    assert read[0].hardware_information.manufacturer == "Dell & Sons <EMEA>"
    assert read[0].status == types.HostStatus.UP and read[0].cluster.id == str(HOSTS[0].cluster_id)
    assert (read[0].hosted_engine is not None) is all_content
    assert read[0].nics.href.endswith(f"/hosts/{HOSTS[0].id}/nics")


def _vm(n: int, **fields: Any) -> Vm:
    moment = dt.datetime(2026, 12, 3, 15, 4, 5, 678000)
    values: dict[str, Any] = {
        "id": uuid.uuid4(), "name": f"vm-{n}", "description": AWKWARD, "comment": "c<1>",
        "cluster_id": uuid.uuid4(), "template_id": uuid.uuid4(), "memory_mib": 2048,
        "cpu_sockets": 2, "cpu_cores": 3, "cpu_threads": 1, "os_type": "rhel_9x64",
        "boot_devices": ["network", "hd"], "bios_type": "q35_ovmf",
        "instance_type_id": uuid.uuid4(),
        "initialization": {"host_name": "web", "user_name": "admin", "root_password": "secret",
                           "authorized_ssh_keys": "ssh-ed25519 AAAA a@b",
                           "dns_servers": "10.0.0.53", "dns_search": "example.org",
                           "nic_configurations": [{"name": "eth0", "boot_protocol": "static",
                                                   "address": "10.0.0.9",
                                                   "netmask": "255.255.255.0",
                                                   "gateway": "10.0.0.1", "on_boot": True}],
                           "custom_script": "#cloud-config\nruncmd: [a & b]",
                           "timezone": "Europe/Paris"},
        "high_availability": True, "ha_priority": 50,
        "lease_storage_domain_id": uuid.uuid4(), "lease_slot": 3,
        "placement_hosts": [str(uuid.uuid4()), str(uuid.uuid4())],
        "placement_affinity": "user_migratable",
        "migration": {"auto_converge": True, "compressed": False, "encrypted": True,
                      "bandwidth_method": "custom", "bandwidth_mbps": 500,
                      "policy_id": "80554327-0569-496b-bdeb-fcbbf52b827b"},
        "migration_downtime_ms": 250, "status": VmStatus.UP, "host_id": uuid.uuid4(),
        "origin": "external", "spec_version": 3, "running_spec_version": 2, "vnc_port": 5901,
        "start_time": moment.replace(tzinfo=dt.UTC), "stop_time": moment,
        "stop_reason": "maintenance <now>", "created_at": moment}
    values.update(fields)
    return Vm(**values)


VMS = [
    _vm(0),
    # As created and never started.
    _vm(1, description="", comment="", instance_type_id=None, initialization=None,
        high_availability=False, ha_priority=1, lease_storage_domain_id=None,
        placement_hosts=[], placement_affinity="migratable", migration={},
        migration_downtime_ms=None, status=VmStatus.DOWN, host_id=None, origin="overt",
        running_spec_version=None, vnc_port=None, start_time=None, stop_time=None,
        stop_reason="", boot_devices=["hd"]),
    # Running, its host's address unknown (no display address); nothing to boot from.
    _vm(2, boot_devices=[], migration={"encrypted": False}, initialization={},
        running_spec_version=3, description=None),
    # On a host without a console port; the same cluster and template as the first.
    _vm(3, vnc_port=None, migration=None, cluster_id=None, template_id=None,
        spec_version=1, running_spec_version=1),
]


def _related(follow: bool, all_content: bool) -> Related:
    addresses = {VMS[0].host_id: "10.9.9.9 & co", VMS[3].host_id: "10.9.9.8"}
    nics = attachments = None
    if follow:
        nics = {vm.id: [views.nic(VmNic(id=uuid.uuid4(), vm_id=vm.id, name=f"nic{k}",
                                        mac=f"02:00:00:00:0{n}:0{k}", interface="virtio",
                                        plugged=True, linked=k == 0,
                                        vnic_profile_id=uuid.uuid4()),
                                  network_id=uuid.uuid4()) for k in range(n % 3)]
                for n, vm in enumerate(VMS)}
        attachments = {}
        for vm in VMS:
            disk = Disk(id=uuid.uuid4(), name=f"{vm.name}_disk", description="d",
                        storage_domain_id=uuid.uuid4(), provisioned_size=1 << 30,
                        actual_size=1 << 20, status=DiskStatus.OK, format="cow",
                        content_type="data", shareable=False, sparse=True,
                        image_path=f"images/{uuid.uuid4()}.qcow2")
            attachment = DiskAttachment(disk_id=disk.id, vm_id=vm.id, interface="virtio_scsi",
                                        bootable=True, active=True, read_only=False)
            attachments[vm.id] = [views.disk_attachment(attachment, inline_disk=disk)]
    scsi = {VMS[0].id, VMS[2].id} if all_content else None
    return Related(addresses, nics, attachments, scsi)


@pytest.mark.parametrize("follow", [False, True])
@pytest.mark.parametrize("all_content", [False, True])
def test_a_vm_list_is_the_views_bytes(follow: bool, all_content: bool) -> None:
    api_routes()
    VMS[3].cluster_id, VMS[3].template_id = VMS[0].cluster_id, VMS[0].template_id
    related = _related(follow, all_content)
    written = list_xml.vms_xml(VMS, addresses=related.addresses, nics=related.nics,
                               disk_attachments=related.attachments,
                               virtio_scsi=related.virtio_scsi,
                               extra_links=vm_devices.LINKS)
    assert written == to_xml("vms", {"vm": vm_reps(VMS, related)})
    read = Reader.read(written)
    assert [vm.name for vm in read] == [vm.name for vm in VMS]
    assert read[0].display.address == "10.9.9.9 & co" and read[0].display.port == 5901
    assert read[2].display.port is None and read[1].host is None
    assert read[0].initialization.custom_script == "#cloud-config\nruncmd: [a & b]"
    assert len(read[0].placement_policy.hosts) == 2
    assert read[0].next_run_configuration_exists is True
    assert (read[0].console is not None) is all_content
    if follow:
        assert [len(vm.nics) for vm in read] == [0, 1, 2, 0]
        assert read[1].disk_attachments[0].disk.name == "vm-1_disk"
    else:
        assert read[1].nics.href.endswith(f"/vms/{VMS[1].id}/nics")
