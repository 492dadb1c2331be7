"""The portal's New VM form over HTTP, against an engine with no nodes: the boot order,
the ISO in the CD and the cloud-init fields reach the VM (read back through the API), and
a refused key or script is shown by the form with what was typed kept, nothing created."""

from __future__ import annotations

import base64
import html
import re
import struct

import httpx
import ovirtsdk4 as sdk
import pytest

from overt.engine.model.initialization import MAX_CUSTOM_SCRIPT_BYTES


def _ed25519_key() -> str:
    """A well-formed OpenSSH ed25519 public key line (the engine checks its fields)."""
    def field(data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + data
    blob = field(b"ssh-ed25519") + field(bytes(range(32)))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} ops@laptop"


def _form(setup: dict[str, str], name: str, **extra: str) -> dict[str, str]:
    return {"name": name, "cluster": setup["cluster"], "memory_mib": "256", "cpus": "1",
            "disk": "none", "profile": "", "ha_priority": "1", **extra}


def test_the_form_offers_boot_devices_isos_and_cloud_init(
        portal: tuple[httpx.Client, str], setup: dict[str, str]) -> None:
    page = portal[0].get("/vms/new").text
    assert "<legend>Boot order</legend>" in page and "<legend>Cloud-init</legend>" in page
    assert f'<option value="{setup["iso"]}" >installer.iso (domain isos)</option>' in page
    assert '<option value="hd" selected>Hard disk</option>' in page


def test_a_vm_created_with_boot_order_cd_and_cloud_init(
        portal: tuple[httpx.Client, str], setup: dict[str, str], api: sdk.Connection) -> None:
    client, csrf = portal
    key = _ed25519_key()
    answer = client.post("/vms", data={"csrf_token": csrf, **_form(
        setup, "form-prov", boot1="network", boot2="cdrom", boot3="hd", iso=setup["iso"],
        ci_host_name="prov1", ci_user_name="ops", ci_ssh_keys=key + "\r\n",
        ci_custom_script="runcmd:\r\n  - echo hi\r\n")})
    assert answer.status_code == 303, answer.text[:2000]
    vm_id = answer.headers["location"].rsplit("/", 1)[1]
    vm = api.system_service().vms_service().vm_service(vm_id)
    got = vm.get()
    assert [str(d) for d in got.os.boot.devices] == ["network", "cdrom", "hd"]
    init = got.initialization
    assert (init.host_name, init.user_name) == ("prov1", "ops")
    assert init.authorized_ssh_keys == key
    assert init.custom_script == "runcmd:\n  - echo hi\n"
    assert vm.cdroms_service().list()[0].file.id == setup["iso"]


def test_a_plain_vm_boots_from_its_disk_with_no_cd(
        portal: tuple[httpx.Client, str], setup: dict[str, str], api: sdk.Connection) -> None:
    client, csrf = portal
    answer = client.post("/vms", data={"csrf_token": csrf, **_form(setup, "form-plain")})
    assert answer.status_code == 303, answer.text[:2000]
    vm = api.system_service().vms_service().vm_service(answer.headers["location"].rsplit(
        "/", 1)[1])
    got = vm.get()
    assert [str(d) for d in got.os.boot.devices] == ["hd"]
    assert got.initialization is None or not got.initialization.host_name
    assert vm.cdroms_service().list()[0].file is None


@pytest.mark.parametrize(("fields", "reason"), [
    ({"ci_ssh_keys": "ssh-ed25519 not-base64!"}, "key 1 is not an OpenSSH public key"),
    ({"ci_custom_script": "x" * (MAX_CUSTOM_SCRIPT_BYTES + 1)}, "custom_script"),
    ({"boot1": "hd", "boot2": "hd"}, "the boot order names a device twice"),
    ({"boot1": "floppy"}, "boot device 'floppy' is not one of"),
])
def test_refusals_are_shown_with_what_was_typed_and_nothing_created(
        portal: tuple[httpx.Client, str], setup: dict[str, str], api: sdk.Connection,
        fields: dict[str, str], reason: str) -> None:
    client, csrf = portal
    answer = client.post("/vms", data={"csrf_token": csrf, **_form(
        setup, "form-refused", ci_host_name="kept-host", iso=setup["iso"], **fields)})
    assert answer.status_code == 400, answer.text[:2000]
    alert = re.search(r'role="alert"[^>]*>([^<]*)<', answer.text)
    assert alert is not None and reason in html.unescape(alert.group(1)), answer.text[:2000]
    assert 'value="kept-host"' in answer.text
    assert f'<option value="{setup["iso"]}" selected>' in answer.text
    if "ci_ssh_keys" in fields:
        assert html.escape(fields["ci_ssh_keys"]) in answer.text
    names = [v.name for v in api.system_service().vms_service().list()]
    assert "form-refused" not in names
