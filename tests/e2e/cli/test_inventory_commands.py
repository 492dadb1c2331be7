"""`overt datacenter|cluster|network|storage` against a running engine, as an administrator
uses them: create, change, refuse and remove, with what the tables and messages say."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, Host
from overt.engine.model.status import HostStatus
from tests.e2e.cli.test_vm_commands import cli
from tests.support.demo import wait_until
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

pytestmark = pytest.mark.slow  # the CLI in child processes against an engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
    yield running
    running.stop()


def _ok(engine: RunningEngine, *args: str) -> str:
    done = cli(engine, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _refused(engine: RunningEngine, *args: str) -> str:
    done = cli(engine, *args)
    assert done.returncode == 1, done.stdout
    assert "Traceback" not in done.stderr
    return " ".join(done.stderr.split())


def test_data_centers_and_clusters(engine: RunningEngine) -> None:
    dc = json.loads(_ok(engine, "datacenter", "add", "lab-dc", "--description", "the lab",
                        "--json"))
    assert dc["name"] == "lab-dc" and dc["description"] == "the lab"
    assert "lab-dc" in _ok(engine, "datacenter", "list")
    assert "already in use" in _refused(engine, "datacenter", "add", "lab-dc")
    assert "Data center lab-dc2 updated" in _ok(engine, "datacenter", "update", "lab-dc",
                                                 "--name", "lab-dc2")
    _ok(engine, "cluster", "add", "lab-cl", "--datacenter", "lab-dc2", "--memory-overcommit",
        "150")
    table = _ok(engine, "cluster", "list")
    assert "lab-cl" in table and "lab-dc2" in table and "150 %" in table
    assert "cluster" in _refused(engine, "datacenter", "remove", "lab-dc2")
    assert "must be between 1 and 1000" in _refused(
        engine, "cluster", "update", "lab-cl", "--memory-overcommit", "0")
    updated = json.loads(_ok(engine, "cluster", "update", "lab-cl", "--description", "racks",
                             "--json"))
    assert updated["description"] == "racks"
    assert updated["memory_policy"]["over_commit"]["percent"] == 150
    assert "Cluster lab-cl removed" in _ok(engine, "cluster", "remove", "lab-cl")
    assert "Data center lab-dc2 removed" in _ok(engine, "datacenter", "remove", "lab-dc2")
    names = [d["name"] for d in json.loads(_ok(engine, "datacenter", "list", "--json"))]
    assert names == ["Default"]
    assert "there is no data center named 'lab-dc2'" in _refused(
        engine, "datacenter", "remove", "lab-dc2")


def test_networks(engine: RunningEngine) -> None:
    _ok(engine, "network", "add", "backup", "--vlan", "40", "--mtu", "9000",
        "--usage", "vm", "--usage", "migration")
    table = _ok(engine, "network", "list")
    assert "backup" in table and "40" in table and "9000" in table and "migration" in table
    assert "between 0 and 4094" in _refused(engine, "network", "update", "backup",
                                            "--vlan", "5000")
    network = json.loads(_ok(engine, "network", "update", "backup", "--vlan", "41", "--json"))
    assert network["vlan"]["id"] == 41
    assert "management network" in _refused(engine, "network", "remove", "ovirtmgmt")
    assert "Network backup removed" in _ok(engine, "network", "remove", "backup")
    assert "backup" not in _ok(engine, "network", "list")


def _host(engine: RunningEngine, name: str) -> None:
    async def insert() -> None:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                cluster = (await session.execute(select(Cluster).where(
                    Cluster.name == "Default"))).scalar_one()
                session.add(Host(id=uuid.uuid4(), name=name, address=f"{name}.example",
                                 cluster_id=cluster.id, status=HostStatus.UP.value))
        finally:
            await db.dispose()
    asyncio.run(insert())


def test_storage_domains(engine: RunningEngine) -> None:
    _host(engine, "cli-host")
    _ok(engine, "storage", "add", "local-images", "--host", "cli-host", "--path",
        "/var/tmp/local-images")
    table = _ok(engine, "storage", "list")
    assert "local-images" in table and "active" in table
    assert "must be absolute" in _refused(engine, "storage", "add", "bad", "--host", "cli-host",
                                          "--path", "relative/dir")
    assert "maintenance first" in _refused(engine, "storage", "remove", "local-images")
    _ok(engine, "storage", "update", "local-images", "--description", "scratch")
    assert "is in maintenance" in _ok(engine, "storage", "maintenance", "local-images")
    assert "maintenance" in _ok(engine, "storage", "list")
    assert "Storage domain local-images removed" in _ok(engine, "storage", "remove",
                                                        "local-images")
    assert json.loads(_ok(engine, "storage", "list", "--json")) == []


def test_nfs_storage_domains(engine: RunningEngine) -> None:
    """With no node to lay it out, an NFS domain's add gives up and leaves nothing;
    local domains cannot be attached or detached."""
    _host(engine, "cli-nfs-host")
    assert "not a host name" in _refused(engine, "storage", "add", "cli-nfs-bad", "--host",
                                         "cli-nfs-host", "--nfs", "a b", "--path", "/export")
    out = _ok(engine, "storage", "add", "cli-nfs", "--host", "cli-nfs-host", "--nfs",
              "nfs.example", "--path", "/export")
    assert "added on nfs.example:/export (status locked)" in out
    _ok(engine, "storage", "add", "cli-local", "--host", "cli-nfs-host", "--path",
        "/var/tmp/cli-local")
    assert "belongs to its host's data center" in _refused(
        engine, "storage", "attach", "cli-local", "--data-center", "Default")
    assert "cannot be detached" in _refused(engine, "storage", "detach", "cli-local")
    wait_until(lambda: "cli-nfs" not in {
        d["name"] for d in json.loads(_ok(engine, "storage", "list", "--json"))}, 180,
        "the add that no host could carry out to give up")


def test_host_nics_show_the_networks_on_each(engine: RunningEngine) -> None:
    """`overt host nics` lists what the node reported, with the networks set up on each."""
    async def insert() -> None:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                cluster = (await session.execute(select(Cluster).where(
                    Cluster.name == "Default"))).scalar_one()
                session.add(Host(id=uuid.uuid4(), name="nic-host", address="nic-host.example",
                                 cluster_id=cluster.id, status=HostStatus.UP.value,
                                 capabilities={"nics": [
                                     {"name": "eth0", "mac": "52:54:00:00:00:01",
                                      "addresses": ["192.0.2.10/24"], "speed_mbps": 1000,
                                      "mtu": 1500},
                                     {"name": "guest0", "mac": "52:54:00:00:00:02",
                                      "addresses": [], "speed_mbps": 10000, "mtu": 9000}]}))
        finally:
            await db.dispose()
    asyncio.run(insert())
    _ok(engine, "network", "add", "cli-vlan", "--vlan", "50")
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        system = conn.system_service()
        cluster = system.clusters_service().list(search="name=Default")[0]
        network = system.networks_service().list(search="name=cli-vlan")[0]
        system.clusters_service().cluster_service(cluster.id).networks_service().add(
            types.Network(id=network.id, required=False))
        host = system.hosts_service().list(search="name=nic-host")[0]
        system.hosts_service().host_service(host.id).setup_networks(
            modified_network_attachments=[types.NetworkAttachment(
                network=types.Network(name="cli-vlan"), host_nic=types.HostNic(name="guest0"))])
    finally:
        conn.close()
    lines = _ok(engine, "host", "nics", "nic-host").splitlines()
    eth0 = next(line for line in lines if " eth0 " in line)
    guest0 = next(line for line in lines if " guest0 " in line)
    assert "192.0.2.10" in eth0 and "cli-vlan" not in eth0
    assert "cli-vlan" in guest0 and "10000" in guest0
    listed = {n["name"]: n for n in json.loads(_ok(engine, "host", "nics", "nic-host", "--json"))}
    assert listed["guest0"]["networks"][0].startswith("cli-vlan")
    assert listed["eth0"]["networks"] == []
    assert "no host named 'nowhere'" in _refused(engine, "host", "nics", "nowhere")


def connection_nics(engine: RunningEngine, host_name: str) -> set[str]:
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        hosts = conn.system_service().hosts_service()
        host = hosts.list(search=f"name={host_name}")[0]
        return {n.name for n in hosts.host_service(host.id).nics_service().list()}
    finally:
        conn.close()


def test_host_bonds_and_network_addressing(engine: RunningEngine) -> None:
    """`overt host bond add|remove`, `overt network attach --ipv4/--ipv6|detach`, and
    `overt host nics` showing the bond the node reports with its active slave."""
    async def insert() -> None:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                cluster = (await session.execute(select(Cluster).where(
                    Cluster.name == "Default"))).scalar_one()
                session.add(Host(
                    id=uuid.uuid4(), name="bond-host", address="bond-host.example",
                    cluster_id=cluster.id, status=HostStatus.UP.value,
                    capabilities={"nics": [{"name": n, "mtu": 1500} for n in (
                        "eth0", "eth1", "eth2", "eth3", "eth4")]},
                    reported_bonds=[{"name": "bond0", "mode": "active-backup",
                                     "active_slave": "eth2",
                                     "slaves": [{"name": "eth1", "link_up": False},
                                                {"name": "eth2", "link_up": True}]}]))
        finally:
            await db.dispose()
    asyncio.run(insert())
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        system = conn.system_service()
        cluster = system.clusters_service().list(search="name=Default")[0]
        network = system.networks_service().add(types.Network(
            name="cli-flat", data_center=types.DataCenter(name="Default")))
        system.clusters_service().cluster_service(cluster.id).networks_service().add(
            types.Network(id=network.id, required=False))
        host = system.hosts_service().host_service(
            system.hosts_service().list(search="name=bond-host")[0].id)

        assert "Bond bond1 of host bond-host set up" in _ok(
            engine, "host", "bond", "add", "bond-host", "bond1", "--slave", "eth3",
            "--slave", "eth4", "--mode", "4")
        bond1 = next(n for n in host.nics_service().list() if n.name == "bond1")
        assert {o.name: o.value for o in bond1.bonding.options} == {"mode": "4"}

        assert "static:ADDRESS/PREFIX" in _refused(
            engine, "network", "attach", "cli-flat", "--host", "bond-host", "--nic", "bond1",
            "--ipv6", "static:2001:db8::1")
        _ok(engine, "network", "attach", "cli-flat", "--host", "bond-host", "--nic", "bond1",
            "--ipv4", "static:10.8.0.1/255.255.255.0", "--ipv6", "dhcp")
        [attachment] = host.network_attachments_service().list()
        assert attachment.host_nic.name == "bond1"
        assert [(a.assignment_method, a.ip.address if a.ip else None)
                for a in attachment.ip_address_assignments] == [
            (types.BootProtocol.STATIC, "10.8.0.1"), (types.BootProtocol.DHCP, None)]
    finally:
        conn.close()

    lines = _ok(engine, "host", "nics", "bond-host").splitlines()
    bond0 = " ".join(next(line for line in lines if " bond0 " in line).split())
    assert "eth1 (down)" in bond0 and "│ eth2 │" in bond0  # the active slave
    bond1 = " ".join(next(line for line in lines if " bond1 " in line).split())
    assert "│ 4 │" in bond1 and "cli-flat" in bond1

    assert "Network cli-flat detached from host bond-host" in _ok(
        engine, "network", "detach", "cli-flat", "--host", "bond-host")
    assert "Bond bond1 of host bond-host removed" in _ok(
        engine, "host", "bond", "remove", "bond-host", "bond1")
    nics = connection_nics(engine, "bond-host")
    assert "bond1" not in nics and "bond0" in nics  # the node still reports its own


def test_host_maintenance_and_activation(engine: RunningEngine) -> None:
    _host(engine, "cli-mnt")
    assert "host cli-mnt is maintenance" in _ok(engine, "host", "maintenance", "cli-mnt")
    # Activated, the host waits for its node, which this engine cannot reach.
    assert "host cli-mnt is connecting, not up" in _refused(
        engine, "host", "activate", "cli-mnt", "--timeout", "1")


def test_cluster_affinity_groups(engine: RunningEngine) -> None:
    _host(engine, "cli-aff-h")
    for vm in ("cli-aff-a", "cli-aff-b"):
        _vm(engine, vm)
    added = json.loads(_ok(engine, "cluster", "affinity", "add", "Default", "apart",
                           "--vms-rule", "negative", "--vms-enforcing", "--hosts-rule",
                           "positive", "--vm", "cli-aff-a", "--vm", "cli-aff-b", "--host",
                           "cli-aff-h", "--priority", "2", "--json"))
    assert added["vms_rule"] == {"enabled": True, "positive": False, "enforcing": True}
    assert added["hosts_rule"] == {"enabled": True, "positive": True, "enforcing": False}
    assert len(added["vms"]["vm"]) == 2 and len(added["hosts"]["host"]) == 1
    listed = " ".join(_ok(engine, "cluster", "affinity", "list", "Default").split())
    for words in ("apart", "negative,", "enforcing", "positive,", "soft", "cli-aff-a,",
                  "cli-aff-b", "cli-aff-h"):
        assert words in listed
    updated = json.loads(_ok(engine, "cluster", "affinity", "update", "Default", "apart",
                             "--name", "together", "--vms-rule", "positive", "--vms-soft",
                             "--json"))
    assert updated["name"] == "together"
    assert updated["vms_rule"] == {"enabled": True, "positive": True, "enforcing": False}
    assert len(updated["vms"]["vm"]) == 2  # what was not given stays
    assert "Affinity group together removed" in _ok(engine, "cluster", "affinity", "remove",
                                                    "Default", "together")


def _vm(engine: RunningEngine, name: str) -> None:
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        conn.system_service().vms_service().add(types.Vm(
            name=name, cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"), memory=256 * 2**20))
    finally:
        conn.close()
