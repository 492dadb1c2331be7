"""A VM's `bios.type` through the official SDK: stored, shown, changed, given to the node in
the VM's spec (so its domain gets OVMF under UEFI), and an unknown type refused."""

from __future__ import annotations

import asyncio
import ssl
import uuid
from xml.etree import ElementTree

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types

from overt.engine.db.database import Database
from overt.engine.db.tables import Vm
from overt.engine.queries.vm_spec import build_vm_spec
from overt.node.hypervisor.domain_xml import OvertMetadata, domain_xml
from overt.protocol.host import VirtMode
from overt.protocol.vm import BiosType
from tests.support.engine import RunningEngine

MIB = 2**20


def _add(conn: sdk.Connection, name: str, **extra: object) -> types.Vm:
    return conn.system_service().vms_service().add(types.Vm(
        name=name, cluster=types.Cluster(name="Default"), template=types.Template(name="Blank"),
        memory=256 * MIB, **extra))


async def _spec_bios(engine: RunningEngine, vm_id: uuid.UUID) -> tuple[BiosType, str]:
    """The bios type in the spec a node would be given to start the VM, and its domain XML."""
    db = Database(engine.runtime.settings.database_url())
    try:
        async with db.transaction() as session:
            vm = await session.get(Vm, vm_id)
            assert vm is not None
            spec = await build_vm_spec(session, vm, vnc_password="secret")
    finally:
        await db.dispose()
    return spec.bios, domain_xml(spec, VirtMode.QEMU, OvertMetadata(spec.id, 1))


def test_bios_type_is_stored_shown_changed_and_reaches_the_node(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    vms = connection.system_service().vms_service()
    plain = _add(connection, "bios-default")
    assert plain.bios.type == types.BiosType.I440FX_SEA_BIOS
    uefi = _add(connection, "bios-uefi", bios=types.Bios(type=types.BiosType.Q35_OVMF))
    service = vms.vm_service(uefi.id)
    assert uefi.bios.type == service.get().bios.type == types.BiosType.Q35_OVMF
    bios, xml = asyncio.run(_spec_bios(api_engine, uuid.UUID(uefi.id)))
    domain = ElementTree.fromstring(xml)
    assert bios is BiosType.Q35_OVMF
    assert domain.find("os/type").get("machine") == "q35"  # type: ignore[union-attr]
    assert (domain.findtext("os/loader") or "").endswith("OVMF_CODE_4M.fd")

    changed = service.update(types.Vm(bios=types.Bios(type=types.BiosType.Q35_SECURE_BOOT)))
    assert changed.bios.type == types.BiosType.Q35_SECURE_BOOT
    assert asyncio.run(_spec_bios(api_engine, uuid.UUID(uefi.id)))[0] is \
        BiosType.Q35_SECURE_BOOT
    assert vms.vm_service(plain.id).get().bios.type == types.BiosType.I440FX_SEA_BIOS


def test_an_unknown_bios_type_is_a_400_fault_and_changes_nothing(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    """The SDK cannot send an unknown type (its enum has none): a hand-written client can."""
    vms = connection.system_service().vms_service()
    vm = _add(connection, "bios-kept", bios=types.Bios(type=types.BiosType.Q35_OVMF))
    before = sorted(v.name for v in vms.list())
    tls = ssl.create_default_context(cafile=str(api_engine.ca_file))
    with httpx.Client(verify=tls, timeout=30) as http:
        for method, url, body in (
                ("PUT", f"{api_engine.url}/vms/{vm.id}",
                 "<vm><description>changed</description><bios><type>uefi</type></bios></vm>"),
                ("POST", f"{api_engine.url}/vms",
                 "<vm><name>bios-bad</name><cluster><name>Default</name></cluster>"
                 "<template><name>Blank</name></template><bios><type>coreboot</type></bios>"
                 "</vm>")):
            reply = http.request(method, url, content=body,
                                 auth=("admin@internal", api_engine.password),
                                 headers={"Content-Type": "application/xml", "Version": "4"})
            assert reply.status_code == 400
            fault = ElementTree.fromstring(reply.content)
            assert fault.tag == "fault" and "is not one of i440fx_sea_bios, q35_sea_bios, " \
                "q35_ovmf, q35_secure_boot" in (fault.findtext("detail") or "")
    after = vms.vm_service(vm.id).get()
    assert after.bios.type == types.BiosType.Q35_OVMF and after.description in (None, "")
    assert sorted(v.name for v in vms.list()) == before
