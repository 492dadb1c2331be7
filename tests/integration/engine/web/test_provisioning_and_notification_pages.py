"""The portal's provisioning profiles and notifications pages over HTTP, against an engine
with no nodes: what each form changes (through the API's services), what a refused one
shows and leaves unchanged, and who may post at all (CSRF, the SuperUser role)."""

from __future__ import annotations

import asyncio
import html
import re
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from overt.engine.db.tables import Cluster, EventSubscription, ProvisioningProfile, SnmpManager
from overt.engine.secrets import SecretBox
from tests.support.engine import RunningEngine
from tests.support.internal_users import add_internal_user
from tests.support.no_nodes import engine_with_admin

IMAGE = "node-1"
COMMUNITY = "s3cret-community"
AUTH, PRIV = "auth-pass-0001", "priv-pass-0001"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    with engine_with_admin(Path(tmp_path_factory.mktemp("engine"))) as (engine, _admin):
        image = engine.runtime.settings.data_dir / "node-images" / IMAGE
        image.mkdir(parents=True)
        (image / "vmlinuz").write_bytes(b"kernel")
        (image / "initrd.img").write_bytes(b"initrd")
        yield engine


class Portal:
    def __init__(self, engine: RunningEngine) -> None:
        self.http = httpx.Client(base_url=engine.url.removesuffix("/ovirt-engine/api"),
                                 timeout=30, verify=ssl.create_default_context(
                                     cafile=str(engine.ca_file)))
        self.csrf = ""

    def sign_in(self, user: str, password: str) -> str:
        self.http.get("/signin")
        answer = self.http.post("/signin", data={
            "csrf_token": self.http.cookies["overt_signin"], "username": user,
            "password": password, "next": "/"})
        assert answer.status_code == 303, answer.text[:500]
        page = self.http.get(answer.headers["location"])
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found is not None, page.text[:500]
        self.csrf = found.group(1)
        return str(answer.headers["location"])

    def post(self, path: str, **form: str) -> httpx.Response:
        return self.http.post(path, data={"csrf_token": self.csrf, **form})


@pytest.fixture(scope="module")
def admin(engine: RunningEngine) -> Iterator[Portal]:
    portal = Portal(engine)
    portal.sign_in("admin@internal", engine.password)
    yield portal
    portal.http.close()


def _rows(engine: RunningEngine, model: type[Any]) -> list[Any]:
    async def read() -> list[Any]:
        async with engine.runtime.db.transaction() as session:
            return list((await session.execute(select(model))).scalars())
    return list(asyncio.run_coroutine_threadsafe(read(), engine.loop).result(timeout=30))


def _alert(page: str) -> str:
    found = re.search(r'role="alert"[^>]*>([^<]*)<', page)
    assert found is not None, page[:2000]
    return html.unescape(found.group(1))


def test_provisioning_profiles_added_refused_changed_and_removed(
        engine: RunningEngine, admin: Portal) -> None:
    listed = admin.http.get("/provisioningprofiles")
    assert listed.status_code == 200 and "No provisioning profiles" in listed.text
    assert 'href="/provisioningprofiles" aria-current="page"' in listed.text

    refused = admin.post("/provisioningprofiles", name="rack1", mac="", image="no-such-image",
                         kernel_args="console=ttyS0", cluster="")
    assert refused.status_code == 400
    assert "'no-such-image' is not a node image this engine serves (it has: node-1)" \
        in _alert(refused.text)
    assert 'value="console=ttyS0"' in refused.text  # what was typed stays
    assert _rows(engine, ProvisioningProfile) == []

    made = admin.post("/provisioningprofiles", name="rack1", mac="", image=IMAGE,
                      kernel_args="console=ttyS0", cluster="")
    assert made.status_code == 303, made.text[:2000]
    [row] = _rows(engine, ProvisioningProfile)
    assert (row.name, row.mac, row.image, row.kernel_args, row.cluster_id) == (
        "rack1", None, IMAGE, "console=ttyS0", None)
    assert 'data-profile="rack1"' in admin.http.get("/provisioningprofiles").text

    form = admin.http.get(f"/provisioningprofiles/{row.id}/edit")
    assert form.status_code == 200 and 'value="rack1"' in form.text
    [default] = [c for c in _rows(engine, Cluster) if c.name == "Default"]
    bad_mac = admin.post(f"/provisioningprofiles/{row.id}", name="rack1", mac="52:54:zz",
                         image=IMAGE, kernel_args="", cluster=str(default.id))
    assert bad_mac.status_code == 400
    assert "'52:54:zz' is not a MAC address" in _alert(bad_mac.text)
    [unchanged] = _rows(engine, ProvisioningProfile)
    assert (unchanged.mac, unchanged.kernel_args) == (None, "console=ttyS0")

    changed = admin.post(f"/provisioningprofiles/{row.id}", name="rack1",
                         mac="52-54-00-AA-BB-CC", image=IMAGE, kernel_args="",
                         cluster=str(default.id))
    assert changed.status_code == 303, changed.text[:2000]
    [row] = _rows(engine, ProvisioningProfile)
    assert (row.mac, row.kernel_args, row.cluster_id) == ("52:54:00:aa:bb:cc", "", default.id)
    # Back to the default profile, with no cluster of its own.
    admin.post(f"/provisioningprofiles/{row.id}", name="rack1", mac="", image=IMAGE,
               kernel_args="", cluster="")
    [row] = _rows(engine, ProvisioningProfile)
    assert (row.mac, row.cluster_id) == (None, None)

    asked = admin.post(f"/provisioningprofiles/{row.id}/remove")
    assert asked.status_code == 200 and "Remove provisioning profile rack1?" in asked.text
    assert len(_rows(engine, ProvisioningProfile)) == 1
    removed = admin.post(f"/provisioningprofiles/{row.id}/remove", confirmed="yes")
    assert removed.status_code == 303
    assert _rows(engine, ProvisioningProfile) == []


def test_snmp_managers_and_subscriptions_added_refused_and_removed(
        engine: RunningEngine, admin: Portal) -> None:
    page = admin.http.get("/notifications")
    assert page.status_code == 200 and "No SNMP managers" in page.text

    bad = admin.post("/notifications/managers", name="noc", address="10.0.0.300", port="162",
                     version="v2c", community=COMMUNITY)
    assert bad.status_code == 400
    assert "'10.0.0.300' is not an address or name" in _alert(bad.text)
    assert 'value="10.0.0.300"' in bad.text and COMMUNITY not in bad.text
    short = admin.post("/notifications/managers", name="noc3", address="192.0.2.9",
                       version="v3", user="trapper", auth_passphrase="short",
                       priv_passphrase=PRIV)
    assert short.status_code == 400 and "auth_passphrase" in _alert(short.text)
    assert PRIV not in short.text
    assert _rows(engine, SnmpManager) == []

    for form in ({"name": "noc", "address": "192.0.2.8", "port": "1162", "version": "v2c",
                  "community": COMMUNITY},
                 {"name": "noc3", "address": "noc3.example", "version": "v3",
                  "user": "trapper", "auth_passphrase": AUTH, "priv_passphrase": PRIV}):
        made = admin.post("/notifications/managers", **form)
        assert made.status_code == 303, made.text[:2000]
    managers = {m.name: m for m in _rows(engine, SnmpManager)}
    assert (managers["noc"].host, managers["noc"].port, managers["noc"].version) == (
        "192.0.2.8", 1162, "v2c")
    assert managers["noc3"].user_name == "trapper" and managers["noc3"].engine_id
    assert COMMUNITY not in managers["noc"].community_sealed  # sealed at rest
    page = admin.http.get("/notifications")
    assert 'data-manager="noc"' in page.text and 'data-manager="noc3"' in page.text
    for secret in (COMMUNITY, AUTH, PRIV):
        assert secret not in page.text

    admin_id = re.search(r'<option value="([^"]+)" selected>admin@internal', page.text)
    assert admin_id is not None, page.text
    unknown = admin.post("/notifications/subscriptions", user=admin_id.group(1),
                         event="host_exploded", manager="")
    assert unknown.status_code == 400
    assert "event 'host_exploded' is not one this engine notifies" in _alert(unknown.text)
    made = admin.post("/notifications/subscriptions", user=admin_id.group(1),
                      event="host_failure", manager="noc")
    assert made.status_code == 303, made.text[:2000]
    [sub] = _rows(engine, EventSubscription)
    assert (sub.event, sub.notification_method, sub.address) == ("host_failure", "snmp", "noc")
    again = admin.post("/notifications/subscriptions", user=admin_id.group(1),
                       event="host_failure", manager="")
    assert again.status_code == 409 and "already subscribed" in _alert(again.text)

    # Edited: what is left empty (its secrets) stays; a new name is followed by the
    # subscriptions naming it; a bad address or a switch to v3 without passphrases is
    # refused on the edit form and changes nothing.
    noc = managers["noc"]
    form = admin.http.get(f"/notifications/managers/{noc.id}/edit")
    assert form.status_code == 200 and 'value="192.0.2.8"' in form.text
    assert COMMUNITY not in form.text
    for bad, reason in (({"address": "192.0.2.300"}, "'192.0.2.300' is not an address"),
                        ({"version": "v3", "user": "trapper"},
                         "the snmp_manager.auth_passphrase must have at least 8 characters")):
        refused = admin.post(f"/notifications/managers/{noc.id}", **{
            "name": "noc", "address": "192.0.2.8", "port": "1162", "version": "v2c",
            "community": "", "user": "", "engine_id": "", **bad})
        assert refused.status_code == 400 and reason in _alert(refused.text), refused.text
        assert "Edit SNMP manager noc" in refused.text
    [same] = [m for m in _rows(engine, SnmpManager) if m.id == noc.id]
    assert (same.name, same.host, same.version, same.community_sealed) == (
        "noc", "192.0.2.8", "v2c", noc.community_sealed)
    saved = admin.post(f"/notifications/managers/{noc.id}", name="noc-east",
                       address="noc.example", port="162", version="v2c", community="",
                       user="", engine_id="")
    assert saved.status_code == 303, saved.text[:2000]
    [renamed] = [m for m in _rows(engine, SnmpManager) if m.id == noc.id]
    assert (renamed.name, renamed.host, renamed.port) == ("noc-east", "noc.example", 162)
    box = SecretBox(engine.runtime.settings.data_dir)
    assert box.open(renamed.community_sealed).reveal() == COMMUNITY
    [sub] = _rows(engine, EventSubscription)
    assert sub.address == "noc-east"
    managers["noc"] = renamed

    # A manager a subscription names stays until the subscription goes.
    in_use = admin.post(f"/notifications/managers/{managers['noc'].id}/remove")
    assert in_use.status_code == 409
    assert "noc-east is named by subscriptions to host_failure" in _alert(in_use.text)
    assert len(_rows(engine, SnmpManager)) == 2
    gone = admin.post(f"/notifications/subscriptions/{sub.user_id}/host_failure/remove")
    assert gone.status_code == 303
    assert _rows(engine, EventSubscription) == []
    for manager in managers.values():
        assert admin.post(f"/notifications/managers/{manager.id}/remove").status_code == 303
    assert _rows(engine, SnmpManager) == []


def test_forms_without_the_token_or_the_superuser_role_are_refused(
        engine: RunningEngine, admin: Portal) -> None:
    forged = admin.http.post("/provisioningprofiles", data={"name": "forged", "image": IMAGE})
    assert forged.status_code == 403
    forged = admin.http.post("/notifications/managers", data={
        "name": "forged", "address": "192.0.2.1", "community": COMMUNITY},
        headers={"X-CSRF-Token": "not-the-token"})
    assert forged.status_code == 403

    add_internal_user(engine, "uma", "Uma-Pass-2026-x")
    uma = Portal(engine)
    try:
        assert uma.sign_in("uma@internal", "Uma-Pass-2026-x") == "/user"
        for path in ("/provisioningprofiles", "/notifications"):
            answer = uma.http.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/user"
        assert uma.post("/provisioningprofiles", name="hers", image=IMAGE,
                        mac="").status_code == 403
        assert uma.post("/notifications/managers", name="hers", address="192.0.2.1",
                        community=COMMUNITY).status_code == 403
        assert uma.post("/notifications/subscriptions", user=str(uuid.uuid4()),
                        event="host_failure").status_code == 403
    finally:
        uma.http.close()
    assert _rows(engine, ProvisioningProfile) == [] and _rows(engine, SnmpManager) == []


def test_an_snmp_manager_changed_through_the_api(engine: RunningEngine) -> None:
    """PUT /snmpmanagers/{id}, the service the portal's edit form uses: what is not given
    stays (its passphrases too); a switch to v2c without a community is a 400."""
    with httpx.Client(base_url=engine.url, auth=("admin@internal", engine.password),
                      verify=ssl.create_default_context(cafile=str(engine.ca_file)),
                      headers={"Accept": "application/json"}, timeout=30) as api:
        made = api.post("/snmpmanagers", json={
            "name": "api-nms", "address": "192.0.2.20", "version": "v3", "user": "ops",
            "auth_passphrase": AUTH, "priv_passphrase": PRIV})
        assert made.status_code == 201, made.text
        manager_id = made.json()["id"]
        [before] = _rows(engine, SnmpManager)
        moved = api.put(f"/snmpmanagers/{manager_id}", json={"address": "192.0.2.21",
                                                            "port": "10162"})
        assert moved.status_code == 200, moved.text
        shown = moved.json()
        assert (shown["address"], shown["port"], shown["version"], shown["user"],
                shown["engine_id"]) == ("192.0.2.21", "10162", "v3", "ops", before.engine_id)
        assert AUTH not in moved.text and PRIV not in moved.text
        [after] = _rows(engine, SnmpManager)
        box = SecretBox(engine.runtime.settings.data_dir)
        assert box.open(after.auth_sealed).reveal() == AUTH
        assert box.open(after.priv_sealed).reveal() == PRIV

        refused = api.put(f"/snmpmanagers/{manager_id}", json={"version": "v2c"})
        assert refused.status_code == 400 and "community" in refused.text
        [still] = _rows(engine, SnmpManager)
        assert (still.version, still.host, still.user_name) == ("v3", "192.0.2.21", "ops")
        assert api.delete(f"/snmpmanagers/{manager_id}").status_code == 200
