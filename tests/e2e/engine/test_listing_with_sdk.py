"""Listing VMs and hosts as the oVirt SDK reads them: `max`, `search`, `follow` and
`all_content`, and a listed object written exactly as it is alone."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Iterator

import httpx
import ovirtsdk4 as sdk
import pytest
from defusedxml import ElementTree

from overt.engine.api.resources import hosts as host_resources
from overt.engine.api.resources import vms as vm_resources
from overt.engine.composition import Parts
from tests.conftest import postgres_database
from tests.support.engine import RunningEngine, start_engine
from tests.support.listing_rows import fill
from tests.support.no_nodes import NoNodes

COUNT = 12
PREFIX = "lst-"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def listed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[RunningEngine]:
    """An engine (its API and worker: no monitor to find the written hosts silent) with
    COUNT hosts and COUNT VMs, every other one running, on SQLite and on PostgreSQL."""
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(postgres_database()) if request.param == "postgresql" else None
        engine = start_engine(tmp_path_factory.mktemp("engine"), db=db, transport=NoNodes(),
                              parts=Parts(monitor=False))
        stack.callback(engine.stop)
        asyncio.run(fill(engine.runtime.settings.database_url(), COUNT, prefix=PREFIX))
        yield engine


@pytest.fixture
def system(listed: RunningEngine) -> Iterator[sdk.services.SystemService]:
    conn = sdk.Connection(url=listed.url, username="admin@internal",
                          password=listed.password, ca_file=str(listed.ca_file))
    yield conn.system_service()
    conn.close()


@pytest.fixture
def http(listed: RunningEngine) -> Iterator[httpx.Client]:
    tls = ssl.create_default_context(cafile=str(listed.ca_file))
    with httpx.Client(base_url=listed.url, verify=tls, timeout=30) as client:
        token = client.post(
            listed.url.replace("/api", "/sso/oauth/token"),
            data={"grant_type": "password", "scope": "ovirt-app-api",
                  "username": "admin@internal", "password": listed.password},
            headers={"Accept": "application/json"}).json()["access_token"]
        client.headers.update({"Authorization": f"Bearer {token}", "Version": "4",
                               "Accept": "application/xml"})
        yield client


def _ours(items: list[sdk.types.Vm] | list[sdk.types.Host]) -> list[str]:
    return [item.name for item in items if item.name.startswith(PREFIX)]


def test_the_sdk_reads_every_vm_with_its_console_and_links(
        system: sdk.services.SystemService) -> None:
    vms = {vm.name: vm for vm in system.vms_service().list(search=f"name={PREFIX}vm-*")}
    assert sorted(vms) == [f"{PREFIX}vm-{n:05d}" for n in range(COUNT)]
    hosts = {h.id: h for h in system.hosts_service().list(search=f"name={PREFIX}host-*")}
    running = vms[f"{PREFIX}vm-00002"]
    assert running.status == sdk.types.VmStatus.UP
    assert running.display.port == 5902
    assert running.display.address == hosts[running.host.id].address == "10.1.0.2"
    stopped = vms[f"{PREFIX}vm-00003"]
    assert stopped.status == sdk.types.VmStatus.DOWN and stopped.display.port is None
    assert stopped.nics.href.endswith(f"/vms/{stopped.id}/nics")
    assert stopped.cluster.id and stopped.template.id
    # Attributes oVirt leaves out unless asked for all content.
    assert stopped.console is None and stopped.virtio_scsi is None


def test_a_listed_vm_is_written_as_it_is_alone(http: httpx.Client) -> None:
    listed = ElementTree.fromstring(http.get("/vms", params={
        "search": f"name={PREFIX}vm-*", "follow": "nics,disk_attachments"}).content)
    assert [vm.findtext("name") for vm in listed] == [f"{PREFIX}vm-{n:05d}"
                                                      for n in range(COUNT)]
    for vm in listed:
        alone = http.get(f"/vms/{vm.get('id')}", params={"follow": "nics,disk_attachments"})
        assert alone.status_code == 200
        assert ElementTree.tostring(vm) == ElementTree.tostring(
            ElementTree.fromstring(alone.content))


@pytest.mark.parametrize("params", [{}, {"all_content": "true"}])
def test_a_listed_host_is_written_as_it_is_alone(http: httpx.Client,
                                                 params: dict[str, str]) -> None:
    listed = ElementTree.fromstring(http.get("/hosts", params={
        "search": f"name={PREFIX}host-*", **params}).content)
    assert [h.findtext("name") for h in listed] == [f"{PREFIX}host-{n:05d}"
                                                    for n in range(COUNT)]
    for host in listed:
        alone = http.get(f"/hosts/{host.get('id')}", params=params)
        assert alone.status_code == 200
        assert (host.find("hosted_engine") is not None) is bool(params)
        assert ElementTree.tostring(host) == ElementTree.tostring(
            ElementTree.fromstring(alone.content))


@pytest.mark.parametrize(("path", "more"), [("/hosts", {}), ("/vms", {}),
                                            ("/vms", {"all_content": "true"})])
def test_a_long_list_reads_related_rows_of_all_with_the_same_answer(
        http: httpx.Client, monkeypatch: pytest.MonkeyPatch, path: str,
        more: dict[str, str]) -> None:
    """Over `MANY` objects, VM counts, console addresses and VMs on virtio-scsi are read
    for all, not by the listed ids (this engine runs in the test's process: its threshold
    is lowered)."""
    params = {"search": f"name={PREFIX}*", **more}
    by_ids = http.get(path, params=params)
    for module in (host_resources, vm_resources):
        monkeypatch.setattr(module, "MANY", 1)
    for_all = http.get(path, params=params)
    assert for_all.status_code == by_ids.status_code == 200
    assert for_all.content == by_ids.content
    assert b"<port>5902</port>" in for_all.content or b"<active>1</active>" in for_all.content
    if more:
        assert b"<virtio_scsi><enabled>true</enabled></virtio_scsi>" in for_all.content


def test_max_limits_the_list_to_the_first_by_name(system: sdk.services.SystemService) -> None:
    vms = system.vms_service().list(search=f"name={PREFIX}vm-*", max=5)
    assert [vm.name for vm in vms] == [f"{PREFIX}vm-{n:05d}" for n in range(5)]
    hosts = system.hosts_service().list(search=f"name={PREFIX}host-*", max=3)
    assert [h.name for h in hosts] == [f"{PREFIX}host-{n:05d}" for n in range(3)]
    assert system.vms_service().list(max=0) == []


def test_search_selects_by_status_and_host(system: sdk.services.SystemService) -> None:
    up = system.vms_service().list(search=f"name={PREFIX}vm-* and status=up")
    assert [vm.name for vm in up] == [f"{PREFIX}vm-{n:05d}" for n in range(0, COUNT, 2)]
    on_host = system.vms_service().list(search=f"host={PREFIX}host-00004")
    assert [vm.name for vm in on_host] == [f"{PREFIX}vm-00004"]
    hosts = system.hosts_service().list(search=f"name={PREFIX}host-0000* and status=up")
    assert _ours(hosts) == [f"{PREFIX}host-{n:05d}" for n in range(10)]


def test_host_list_counts_the_vms_each_host_runs(system: sdk.services.SystemService) -> None:
    hosts = {h.name: h for h in system.hosts_service().list(search=f"name={PREFIX}host-*")}
    assert hosts[f"{PREFIX}host-00006"].summary.active == 1
    assert hosts[f"{PREFIX}host-00007"].summary.total == 0


def test_follow_inlines_each_vms_nics_and_disks(system: sdk.services.SystemService) -> None:
    service = system.vms_service()
    vms = service.list(search=f"name={PREFIX}vm-*", follow="nics,disk_attachments.disk")
    assert len(vms) == COUNT
    for n, vm in enumerate(vms):
        own = service.vm_service(vm.id)
        assert [nic.mac.address for nic in vm.nics] == [
            nic.mac.address for nic in own.nics_service().list()]
        assert [a.disk.name for a in vm.disk_attachments] == [f"{PREFIX}vm-{n:05d}_disk"]
        assert vm.disk_attachments[0].disk.provisioned_size == 10 << 30
    plain = service.list(search=f"name={PREFIX}vm-00001", follow="disk_attachments")
    attachment = plain[0].disk_attachments[0]
    assert attachment.disk.id and attachment.disk.name is None  # a reference only


def test_all_content_adds_what_ovirt_leaves_out(system: sdk.services.SystemService) -> None:
    vms = system.vms_service().list(search=f"name={PREFIX}vm-*", all_content=True)
    assert all(vm.console.enabled is True and vm.soundcard_enabled is False for vm in vms)
    assert [vm.name for vm in vms if vm.virtio_scsi.enabled] == [
        f"{PREFIX}vm-{n:05d}" for n in range(1, COUNT, 4)]
    hosts = system.hosts_service().list(search=f"name={PREFIX}host-*", all_content=True)
    assert hosts and all(h.hosted_engine.configured is False for h in hosts)
    assert system.hosts_service().list(search=f"name={PREFIX}host-*")[0].hosted_engine is None


@pytest.mark.parametrize("query", [{"max": "ten"}, {"all_content": "yes"},
                                   {"search": "nosuchfield=1"}])
@pytest.mark.parametrize("path", ["/vms", "/hosts"])
def test_bad_listing_parameters_are_faults(http: httpx.Client, path: str,
                                           query: dict[str, str]) -> None:
    reply = http.get(path, params=query)
    assert reply.status_code == 400
    fault = ElementTree.fromstring(reply.content)
    assert fault.tag == "fault" and fault.findtext("detail")
