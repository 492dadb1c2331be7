"""Every link and action an object advertises answers: the SDK follows links, clients post
actions, and a 404 behind either is a dead end for them (Ansible's modules follow links)."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from defusedxml import ElementTree

from overt.engine.db.database import Database
from overt.engine.db.tables import Disk, DiskAttachment, Host, Step
from overt.engine.model.status import DiskStatus, HostStatus
from tests.support.engine import RunningEngine

MIB = 2**20
PREFIX = "/ovirt-engine/api"
# oVirt rels this walk must meet, with the links and actions each object type must offer.
EXPECTED_TYPES = {"data_center", "cluster", "host", "host_nic", "vm", "nic", "disk_attachment",
                  "disk", "storage_domain", "network", "vnic_profile", "template", "job",
                  "step", "event", "user"}
MUST_ADVERTISE = {
    "host": {"nics", "statistics", "refresh", "activate", "deactivate", "approve",
             "permissions"},
    "vm": {"permissions"},
    "data_center": {"clusters", "networks", "storagedomains", "permissions"},
    "job": {"steps", "clear", "end"},
    "storage_domain": {"disks", "isattached"},
    "disk": {"copy", "move"},
    "network": {"vnicprofiles"},
}


@dataclass
class Walk:
    """What the walk met: objects by type, and what each type advertised."""

    types: set[str] = field(default_factory=set)
    advertised: dict[str, set[str]] = field(default_factory=dict)
    dead: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


@pytest.fixture
def http(api_engine: RunningEngine) -> Iterator[httpx.Client]:
    base = api_engine.url.removesuffix(PREFIX)
    tls = ssl.create_default_context(cafile=str(api_engine.ca_file))
    with httpx.Client(base_url=base, verify=tls, timeout=30) as client:
        reply = client.post("/ovirt-engine/sso/oauth/token", data={
            "grant_type": "password", "scope": "ovirt-app-api", "username": "admin@internal",
            "password": api_engine.password}, headers={"Accept": "application/json"})
        client.headers.update({"Authorization": f"Bearer {reply.json()['access_token']}",
                               "Version": "4", "Content-Type": "application/xml"})
        yield client


def _in_db(engine: RunningEngine, *rows: object) -> None:
    async def insert() -> None:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                session.add_all(rows)
        finally:
            await db.dispose()
    asyncio.run(insert())


def _fleet(conn: sdk.Connection, engine: RunningEngine) -> None:
    """One object of every type: a host that reported two NICs, storage, a VM with a disk
    and a NIC, a network, an external job with a step (events and users come along)."""
    system = conn.system_service()
    cluster = system.clusters_service().list(search="name=Default")[0]
    host_id = uuid.uuid4()
    _in_db(engine, Host(
        id=host_id, name="walker-host", address="192.0.2.10", cluster_id=uuid.UUID(cluster.id),
        status=HostStatus.UP.value, host_uuid=uuid.uuid4(), memory_mib=4096,
        capabilities={"nics": [{"name": "eth0", "mac": "52:54:00:00:00:01",
                                "addresses": ["192.0.2.10/24"], "speed_mbps": 1000},
                               {"name": "ovirtmgmt", "bridge": True}]}))
    domain = system.storage_domains_service().add(types.StorageDomain(
        name="walker-data", type=types.StorageDomainType.DATA, host=types.Host(id=str(host_id)),
        storage=types.HostStorage(type=types.StorageType.LOCALFS, path="/var/tmp/walker")))
    network = system.networks_service().add(types.Network(
        name="walker-net", data_center=types.DataCenter(name="Default")))
    cluster = system.clusters_service().list(search="name=Default")[0]
    system.clusters_service().cluster_service(cluster.id).networks_service().add(
        types.Network(id=network.id, required=False))  # a VM NIC's network is its cluster's
    vm = system.vms_service().add(types.Vm(
        name="walker-vm", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), memory=256 * MIB))
    vm_service = system.vms_service().vm_service(vm.id)
    profile = system.networks_service().network_service(network.id) \
        .vnic_profiles_service().list()[0]
    vm_service.nics_service().add(types.Nic(name="nic1",
                                            vnic_profile=types.VnicProfile(id=profile.id)))
    # A disk as a finished creation leaves it (no node runs here: a disk asked of the API
    # fails to be made, and is removed).
    disk_id = uuid.uuid4()
    _in_db(engine, Disk(id=disk_id, name="walker-disk", storage_domain_id=uuid.UUID(domain.id),
                        provisioned_size=MIB, status=DiskStatus.OK,
                        image_path=f"images/{disk_id}.qcow2"))
    _in_db(engine, DiskAttachment(disk_id=disk_id, vm_id=uuid.UUID(vm.id), bootable=True))
    job = system.jobs_service().add(types.Job(description="walker's own work"))
    _in_db(engine, Step(id=uuid.uuid4(), job_id=uuid.UUID(job.id), number=1,
                        description="a step of the walker's work"))


def _rels(element: Any) -> list[tuple[str, str]]:
    return [(link.get("rel"), link.get("href")) for link in element.findall("link")]


def _visit(conn: sdk.Connection, http: httpx.Client, walk: Walk, element: Any) -> None:
    """Follow every link of one object (by the SDK), post every action, and go on into the
    objects the links lead to."""
    own = element.get("href")
    if own is None or own in walk.seen:
        return
    walk.seen.add(own)
    walk.types.add(element.tag)
    advertised = walk.advertised.setdefault(element.tag, set())
    for rel, href in _rels(element):
        advertised.add(rel)
        try:
            conn.follow_link(sdk.List(href=href))
        except sdk.NotFoundError:
            walk.dead.append(f"{element.tag} link {rel}: GET {href} is 404")
            continue
        reply = http.get(href)
        assert reply.status_code == 200, f"GET {href}: {reply.status_code} {reply.text}"
        for item in ElementTree.fromstring(reply.content):
            _visit(conn, http, walk, item)
    actions = element.find("actions")
    for rel, href in _rels(actions) if actions is not None else []:
        advertised.add(rel)
        reply = http.post(href, content=b"<action/>")
        if reply.status_code in (404, 405) or reply.status_code >= 500:
            walk.dead.append(f"{element.tag} action {rel}: POST {href} is {reply.status_code}")
        else:
            assert ElementTree.fromstring(reply.content).tag in ("action", "fault")


def test_every_advertised_link_and_action_answers(
        connection: sdk.Connection, http: httpx.Client, api_engine: RunningEngine) -> None:
    _fleet(connection, api_engine)
    walk = Walk()
    root = ElementTree.fromstring(http.get(PREFIX).content)
    collections = [href for rel, href in _rels(root) if "/" not in rel]
    assert len(collections) >= 12
    for href in collections:
        reply = http.get(href)
        assert reply.status_code == 200, href
        for element in ElementTree.fromstring(reply.content):
            _visit(connection, http, walk, element)
    assert walk.dead == []
    assert walk.types >= EXPECTED_TYPES
    for kind, needed in MUST_ADVERTISE.items():
        assert needed <= walk.advertised[kind], (kind, walk.advertised[kind])
    # Not there yet, so not advertised (they come back when their routes exist).
    assert "export" not in walk.advertised["disk"]
    assert "quotas" not in walk.advertised["data_center"]
