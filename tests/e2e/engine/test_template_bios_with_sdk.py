"""Templates' `bios.type` through the official SDK (oVirt's Template.bios): a template made
from a VM takes the VM's (or the one given), an edit changes it, VMs made from it inherit
it unless they ask for their own, and an unknown type is refused with nothing changed."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from tests.support.engine import RunningEngine

MIB = 2**20
Bios = types.BiosType


def _until(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _vm(conn: sdk.Connection, name: str, template: str = "Blank", **extra: object) -> types.Vm:
    return conn.system_service().vms_service().add(types.Vm(
        name=name, cluster=types.Cluster(name="Default"), template=types.Template(name=template),
        memory=256 * MIB, **extra))


def _template(conn: sdk.Connection, name: str, source: types.Vm,
              **extra: object) -> types.Template:
    templates = conn.system_service().templates_service()
    made = templates.add(types.Template(name=name, vm=types.Vm(id=source.id), **extra))
    _until(lambda: templates.template_service(made.id).get().status == types.TemplateStatus.OK,
           f"template {name} to be ok")
    return made


def _bios_of_vm(conn: sdk.Connection, vm_id: str) -> Bios:
    return conn.system_service().vms_service().vm_service(vm_id).get().bios.type


def test_blank_is_legacy_bios(connection: sdk.Connection) -> None:
    blank = next(t for t in connection.system_service().templates_service().list()
                 if t.name == "Blank")
    assert blank.bios.type == Bios.I440FX_SEA_BIOS
    assert _vm(connection, "tbios-blank").bios.type == Bios.I440FX_SEA_BIOS


def test_a_template_takes_its_vms_bios_and_passes_it_on(connection: sdk.Connection) -> None:
    templates = connection.system_service().templates_service()
    source = _vm(connection, "tbios-src", bios=types.Bios(type=Bios.Q35_OVMF))
    made = _template(connection, "tbios-uefi", source)
    assert made.bios.type == Bios.Q35_OVMF
    assert templates.template_service(made.id).get().bios.type == Bios.Q35_OVMF
    listed = {t.name: t for t in templates.list()}
    assert listed["tbios-uefi"].bios.type == Bios.Q35_OVMF

    # A VM made from it inherits it; one that asks for its own keeps that.
    inherited = _vm(connection, "tbios-vm-inherits", template="tbios-uefi")
    assert inherited.bios.type == _bios_of_vm(connection, inherited.id) == Bios.Q35_OVMF
    own = _vm(connection, "tbios-vm-own", template="tbios-uefi",
              bios=types.Bios(type=Bios.Q35_SEA_BIOS))
    assert _bios_of_vm(connection, own.id) == Bios.Q35_SEA_BIOS

    # Given when the template is made, it wins over the VM's.
    given = _template(connection, "tbios-given", source,
                      bios=types.Bios(type=Bios.Q35_SECURE_BOOT))
    assert given.bios.type == Bios.Q35_SECURE_BOOT
    assert _bios_of_vm(connection, source.id) == Bios.Q35_OVMF


def test_an_edit_changes_what_new_vms_get_not_the_old_ones(connection: sdk.Connection) -> None:
    templates = connection.system_service().templates_service()
    made = _template(connection, "tbios-edit", _vm(connection, "tbios-edit-src"))
    assert made.bios.type == Bios.I440FX_SEA_BIOS
    before = _vm(connection, "tbios-edit-before", template="tbios-edit")
    service = templates.template_service(made.id)
    changed = service.update(types.Template(bios=types.Bios(type=Bios.Q35_SECURE_BOOT)))
    assert changed.bios.type == service.get().bios.type == Bios.Q35_SECURE_BOOT
    # An edit of something else leaves it.
    assert service.update(types.Template(description="kept")).bios.type == \
        Bios.Q35_SECURE_BOOT
    after = _vm(connection, "tbios-edit-after", template="tbios-edit")
    assert _bios_of_vm(connection, after.id) == Bios.Q35_SECURE_BOOT
    assert _bios_of_vm(connection, before.id) == Bios.I440FX_SEA_BIOS


def test_an_unknown_bios_type_is_refused_and_changes_nothing(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    """The SDK cannot send an unknown type (its enum has none): a hand-written client can."""
    templates = connection.system_service().templates_service()
    source = _vm(connection, "tbios-bad-src", bios=types.Bios(type=Bios.Q35_OVMF))
    made = _template(connection, "tbios-kept", source)
    names = sorted(t.name for t in templates.list())
    tls = ssl.create_default_context(cafile=str(api_engine.ca_file))
    with httpx.Client(verify=tls, timeout=30, auth=("admin@internal", api_engine.password),
                      headers={"Version": "4", "Content-Type": "application/xml"}) as http:
        for method, url, body in (
                ("PUT", f"{api_engine.url}/templates/{made.id}",
                 "<template><description>changed</description>"
                 "<bios><type>uefi</type></bios></template>"),
                ("POST", f"{api_engine.url}/templates",
                 f'<template><name>tbios-bad</name><vm id="{source.id}"/>'
                 "<bios><type>coreboot</type></bios></template>")):
            reply = http.request(method, url, content=body)
            assert reply.status_code == 400, reply.text
            assert "template.bios.type" in reply.text and "is not one of" in reply.text
    kept = templates.template_service(made.id).get()
    assert (kept.bios.type, kept.description) == (Bios.Q35_OVMF, made.description)
    assert sorted(t.name for t in templates.list()) == names
