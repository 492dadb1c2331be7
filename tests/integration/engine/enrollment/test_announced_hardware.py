"""A node's announced hardware facts: kept on the pending host, shown by the API (oVirt's
`hardware_information`, `cpu`, `memory`, NICs) and on the portal's host page."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from overt.engine.api import views
from overt.engine.db.database import Database
from overt.engine.db.tables import Host
from overt.engine.enrollment.registry import Registry
from overt.engine.pki.authority import EnginePki
from overt.engine.services import host_facts
from overt.engine.web.context import TEMPLATE_ENV
from overt.engine.web.pages import host_values
from overt.protocol.enrollment import EnrollmentStatus
from overt.protocol.hardware import DiskFact, HardwareFacts, NicFact
from overt.protocol.host import KdumpStatus, NicInfo
from tests.security.conftest import FakeNode

FACTS = HardwareFacts(
    cpu_model="AMD EPYC 7302 16-Core Processor", cpu_sockets=2, cpu_cores=16, cpu_threads=2,
    cpu_flags=("svm", "aes", "avx2"), memory_bytes=64 << 30,
    disks=(DiskFact(name="sda", size_bytes=960 << 30, model="SAMSUNG MZ7LH960"),),
    nics=(NicFact(name="eno1", mac="52:54:00:ab:cd:ef", link_up=True, speed_mbps=10000),
          NicFact(name="eno2", mac="52:54:00:00:00:02", link_up=False)),
    manufacturer="Supermicro", product_name="SYS-1029P-WTR", serial_number="S12345678",
    system_uuid="4c4c4544-0042-3510-8052-b4c04f333232", boot_mac="52:54:00:ab:cd:ef")


def _registry(db: Database, tmp_path: Path) -> Registry:
    pki = EnginePki(tmp_path / "pki", addresses=["127.0.0.1"])
    pki.ensure()
    return Registry(db, pki, gateway_url="https://127.0.0.1:1")


async def _pending(db: Database, node: FakeNode) -> Host:
    async with db.transaction() as session:
        return (await session.execute(select(Host).where(
            Host.host_uuid == node.host_uuid))).scalar_one()


async def test_a_pending_host_shows_the_facts_it_announced(db: Database, tmp_path: Path) -> None:
    registry, node = _registry(db, tmp_path), FakeNode()
    caps = node.request().capabilities.model_copy(update={"nics": (
        NicInfo(name="eno1", mac="52:54:00:ab:cd:ef"), NicInfo(name="eno2", mac="52:54:00:00:00:02"))})
    request = node.request().model_copy(update={"hardware": FACTS, "capabilities": caps})
    grant = await registry.announce(request)
    assert grant.status is EnrollmentStatus.PENDING_APPROVAL

    host = await _pending(db, node)
    shown = views.host(host)
    assert shown["status"] == "pending_approval"
    assert shown["hardware_information"] == {
        "uuid": "4c4c4544-0042-3510-8052-b4c04f333232", "manufacturer": "Supermicro",
        "product_name": "SYS-1029P-WTR", "version": None, "serial_number": "S12345678",
        "family": None}
    assert shown["cpu"]["topology"] == {"cores": 2, "sockets": 1, "threads": 1}  # capabilities
    assert [(n.name, n.mac) for n in host_facts.host_nics(host)] == [
        ("eno1", "52:54:00:ab:cd:ef"), ("eno2", "52:54:00:00:00:02")]

    async with db.transaction() as session:
        html = TEMPLATE_ENV.get_template("_host_live.html").render(
            request=None, csrf_token="", user=None, nav="", **await host_values(session, host.id))
    section = html.split('data-testid="host-hardware"')[1].split("</dl>")[0]
    for text in ("Supermicro SYS-1029P-WTR", "S12345678", "AMD EPYC 7302", "2 socket(s)",
                 "svm aes avx2", "64 GiB", "sda 960 GiB (SAMSUNG MZ7LH960)",
                 "eno1 <code>52:54:00:ab:cd:ef</code> link up",
                 "eno2 <code>52:54:00:00:00:02</code> no link", "Booted from"):
        assert text in section, text


async def test_announcing_again_while_pending_keeps_the_latest_facts(
        db: Database, tmp_path: Path) -> None:
    registry, node = _registry(db, tmp_path), FakeNode()
    await registry.announce(node.request().model_copy(update={"hardware": FACTS}))
    bigger = FACTS.model_copy(update={"memory_bytes": 128 << 30})
    await registry.announce(node.request().model_copy(update={"hardware": bigger}))
    assert (await _pending(db, node)).hardware["memory_bytes"] == 128 << 30  # type: ignore[index]


async def test_a_node_that_announces_no_facts_shows_only_its_identity(
        db: Database, tmp_path: Path) -> None:
    registry, node = _registry(db, tmp_path), FakeNode()
    await registry.announce(node.request())
    host = await _pending(db, node)
    assert host.hardware is None
    assert views.host(host)["hardware_information"] == {
        "uuid": str(node.host_uuid), "manufacturer": None, "product_name": None,
        "version": None, "serial_number": None, "family": None}
    async with db.transaction() as session:
        html = TEMPLATE_ENV.get_template("_host_live.html").render(
            request=None, csrf_token="", user=None, nav="", **await host_values(session, host.id))
    assert 'data-testid="host-hardware"' not in html


async def test_the_kdump_status_a_node_announces_is_kept_on_its_host(
        db: Database, tmp_path: Path) -> None:
    """What a recovery reads before waiting for fence_kdump messages (oVirt's kdump_status)."""
    registry, node = _registry(db, tmp_path), FakeNode()
    request = node.request()
    assert request.capabilities.kdump_status is KdumpStatus.UNKNOWN
    await registry.announce(request.model_copy(update={
        "capabilities": request.capabilities.model_copy(
            update={"kdump_status": KdumpStatus.DISABLED})}))
    host = await _pending(db, node)
    assert host.kdump_status is KdumpStatus.DISABLED
    assert views.host(host)["kdump_status"] == "disabled"

    await registry.announce(request.model_copy(update={  # configured meanwhile
        "capabilities": request.capabilities.model_copy(
            update={"kdump_status": KdumpStatus.ENABLED})}))
    assert (await _pending(db, node)).kdump_status is KdumpStatus.ENABLED
