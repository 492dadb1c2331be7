"""What oVirt's own tools send, beyond the SDK's basics: libsoup clients' Basic challenge, the
CA at /ca.crt, GETs that declare a body, and the search language (and/or, wildcards, quoted
values, sortby, page, other objects' fields)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.support.engine import RunningEngine

MIB = 2**20


@pytest.fixture
def http(api_engine: RunningEngine) -> Iterator[httpx.Client]:
    base = api_engine.url.removesuffix("/ovirt-engine/api")
    tls = ssl.create_default_context(cafile=str(api_engine.ca_file))
    with httpx.Client(base_url=base, verify=tls, timeout=30) as client:
        yield client


def test_a_401_challenges_for_basic_as_ovirt_does(http: httpx.Client,
                                                  api_engine: RunningEngine) -> None:
    reply = http.get("/ovirt-engine/api")
    assert reply.status_code == 401
    challenges = reply.headers.get_list("www-authenticate")
    assert 'Basic realm="RESTAPI"' in challenges
    assert any(c.startswith("Bearer") for c in challenges)
    answered = http.get("/ovirt-engine/api", auth=("admin@internal", api_engine.password))
    assert answered.status_code == 200 and b"<api" in answered.content


def test_the_ca_is_served_at_ca_crt_without_authentication(
        http: httpx.Client, api_engine: RunningEngine) -> None:
    reply = http.get("/ca.crt")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("application/x-x509-ca-cert")
    assert reply.text == api_engine.ca_file.read_text()


def test_a_get_that_declares_a_body_is_answered_then_the_connection_closed(
        http: httpx.Client, api_engine: RunningEngine) -> None:
    reply = http.request("GET", "/ovirt-engine/api", content=b"<action></action>",
                         auth=("admin@internal", api_engine.password))
    assert reply.status_code == 200
    assert reply.headers["connection"] == "close"
    plain = http.get("/ovirt-engine/api", auth=("admin@internal", api_engine.password))
    assert plain.headers.get("connection") != "close"


@pytest.fixture
def vms(connection: sdk.Connection) -> Iterator[sdk.services.VmsService]:
    service = connection.system_service().vms_service()
    made = [service.add(types.Vm(name=name, cluster=types.Cluster(name="Default"),
                                 template=types.Template(name="Blank"), memory=memory * MIB))
            for name, memory in (("search-web1", 256), ("search-web2", 512),
                                 ("search-db", 1024))]
    yield service
    for vm in made:
        service.vm_service(vm.id).remove()


def names(items: list[types.Vm]) -> list[str]:
    return [item.name for item in items]


def test_searches_the_tools_send(vms: sdk.services.VmsService,
                                 connection: sdk.Connection) -> None:
    system = connection.system_service()
    assert names(vms.list(search="name=search-web*")) == ["search-web1", "search-web2"]
    assert names(vms.list(search='name="search-db"')) == ["search-db"]
    assert names(vms.list(search="name=search-web1 or name=search-web2")) == [
        "search-web1", "search-web2"]
    assert names(vms.list(search="name=search* and cluster=Default and datacenter=Default "
                                 "sortby memory desc")) == [
        "search-db", "search-web2", "search-web1"]
    assert names(vms.list(search="name=search* sortby name desc page 2", max=2)) == [
        "search-db"]
    assert names(vms.list(search="name=search* page 1", max=2)) == ["search-db", "search-web1"]
    assert vms.list(search="datacenter=Elsewhere") == []
    assert names(vms.list(search="cluster!=Default and name=search*")) == []
    assert names(vms.list(search="Vms: memory > 300 and name=search*")) == [
        "search-db", "search-web2"]
    [web1] = vms.list(search="name=search-web1")
    assert names(vms.list(search=f"id={web1.id}")) == ["search-web1"]
    assert names(system.templates_service().list(search="name=Blank and datacenter=Default")) \
        == ["Blank"]
    assert names(system.templates_service().list(search="vm.name=search-web1")) == ["Blank"]
    assert names(system.networks_service().list(search="datacenter=Default")) == ["ovirtmgmt"]
    assert system.networks_service().list(search="datacenter=Elsewhere") == []
    assert len(system.data_centers_service().list(search="page 1")) >= 1
    assert names(system.clusters_service().list(search="datacenter=Default")) == ["Default"]


@pytest.mark.parametrize(("query", "words"), [
    ("colour=blue", "cannot search by 'colour'; searchable fields are "),
    ("name=", "needs a value"),
    ("page zero", "page needs a page number"),
    ("sortby colour", "cannot sort by 'colour'"),
])
def test_bad_searches_are_400_faults_that_say_what_exists(
        connection: sdk.Connection, query: str, words: str) -> None:
    with pytest.raises(sdk.Error) as caught:
        connection.system_service().vms_service().list(search=query)
    assert caught.value.code == 400
    assert words in str(caught.value)
    if "searchable" in words:
        assert "datacenter" in str(caught.value) and "cluster" in str(caught.value)
