"""/provisioningprofiles over HTTP (Overt's own: the official SDK has no such service): a
profile's cluster is set by reference and cleared by an empty one, in XML and in JSON; a
cluster that is neither is refused with a 400 and changes nothing."""

from __future__ import annotations

import itertools
import ssl
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from defusedxml import ElementTree

from tests.e2e.engine.conftest import engine_data
from tests.support.engine import RunningEngine

IMAGE = "node-1"
MISSING = uuid.UUID("00000000-0000-0000-0000-00000000f17f")


@pytest.fixture(scope="module")
def http(api_engine: RunningEngine) -> Iterator[httpx.Client]:
    image = engine_data(api_engine) / "node-images" / IMAGE
    image.mkdir(parents=True, exist_ok=True)
    (image / "vmlinuz").write_bytes(b"kernel")
    (image / "initrd.img").write_bytes(b"initrd")
    tls = ssl.create_default_context(cafile=str(api_engine.ca_file))
    with httpx.Client(base_url=api_engine.url, verify=tls, timeout=30,
                      auth=("admin@internal", api_engine.password),
                      headers={"Version": "4", "Accept": "application/json"}) as client:
        yield client


@pytest.fixture(scope="module")
def rack(http: httpx.Client) -> str:
    made = http.post("/clusters", json={"name": "rack1", "data_center": {"name": "Default"},
                                        "cpu": {"type": "Intel Nehalem Family"}})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


_MACS = itertools.count(1)


def _octets() -> str:
    return f"00:{next(_MACS):02x}"


def _profile(http: httpx.Client, name: str, rack: str) -> dict[str, Any]:
    made = http.post("/provisioningprofiles", json={
        "name": name, "image": IMAGE, "mac": {"address": "52:54:00:17:" + _octets()},
        "cluster": {"name": "rack1"}})
    assert made.status_code == 201, made.text
    profile: dict[str, Any] = made.json()
    assert profile["cluster"]["id"] == rack
    return profile


def _put_xml(http: httpx.Client, profile_id: str, body: str) -> httpx.Response:
    return http.put(f"/provisioningprofiles/{profile_id}", content=body,
                    headers={"Content-Type": "application/xml", "Accept": "application/xml"})


def test_an_empty_cluster_element_clears_the_cluster(http: httpx.Client, rack: str) -> None:
    profile = _profile(http, "xml-clear", rack)
    reply = _put_xml(http, profile["id"], "<provisioning_profile><kernel_args>quiet"
                     "</kernel_args><cluster/></provisioning_profile>")
    assert reply.status_code == 200, reply.text
    shown = ElementTree.fromstring(reply.content)
    assert shown.find("cluster") is None
    assert (shown.findtext("kernel_args"), shown.findtext("image")) == ("quiet", IMAGE)
    got = http.get(f"/provisioningprofiles/{profile['id']}").json()
    assert "cluster" not in got and got["mac"] == profile["mac"]

    # A reference sets it again; a PUT that does not name the cluster leaves it.
    again = _put_xml(http, profile["id"],
                     '<provisioning_profile><cluster id="' + rack + '"/></provisioning_profile>')
    assert again.status_code == 200, again.text
    kept = http.put(f"/provisioningprofiles/{profile['id']}", json={"kernel_args": "debug"})
    assert kept.status_code == 200 and kept.json()["cluster"]["id"] == rack


@pytest.mark.parametrize("empty", [{}, None], ids=["object", "null"])
def test_an_empty_json_cluster_clears_it(http: httpx.Client, rack: str,
                                         empty: dict[str, str] | None) -> None:
    profile = _profile(http, f"json-clear-{'null' if empty is None else 'obj'}", rack)
    reply = http.put(f"/provisioningprofiles/{profile['id']}", json={"cluster": empty})
    assert reply.status_code == 200, reply.text
    assert "cluster" not in reply.json()
    listed = {p["name"]: p for p in http.get("/provisioningprofiles").json()[
        "provisioning_profile"]}
    assert "cluster" not in listed[profile["name"]]


@pytest.mark.parametrize(("body", "detail"), [
    ({"cluster": "rack1"}, "must be a cluster's id or name, or empty"),
    ({"cluster": {"href": "/x", "comment": "x"}}, "must be a cluster's id or name, or empty"),
    ({"cluster": {"name": "nowhere"}, "kernel_args": "quiet"}, "'nowhere' does not exist"),
    ({"cluster": {"id": "not-an-id"}}, "not a valid id"),
    ({"cluster": {"id": str(MISSING)}, "kernel_args": "quiet"}, f"{MISSING} does not exist"),
], ids=["text", "stray-child", "unknown-name", "bad-id", "unknown-id"])
def test_a_bad_cluster_is_refused_and_changes_nothing(
        http: httpx.Client, rack: str, body: dict[str, Any], detail: str) -> None:
    profile = _profile(http, f"bad-{uuid.uuid4().hex[:8]}", rack)
    before = http.get(f"/provisioningprofiles/{profile['id']}").json()
    reply = http.put(f"/provisioningprofiles/{profile['id']}", json=body)
    assert reply.status_code == 400, reply.text
    assert detail in reply.json()["detail"]
    assert http.get(f"/provisioningprofiles/{profile['id']}").json() == before
