"""A copy of the engine's database (a backup, a dump handed to support) does not give away
the root password a VM's cloud-init sets: the engine keeps it sealed with its own key, and
only the start that renders the config drive opens it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from sqlalchemy import select

from overt.engine.db.tables import Template, Vm
from tests.support.engine import RunningEngine, start_engine

PASSWORD = "Root-pw-4-cloud-init-7f3a"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path / "engine")
    yield running
    running.stop()


def _stored_initialization(engine: RunningEngine, name: str) -> dict[str, object]:
    async def read() -> dict[str, object]:
        async with engine.runtime.db.transaction() as session:
            vm = (await session.execute(select(Vm).where(Vm.name == name))).scalar_one()
            return dict(vm.initialization or {})
    return asyncio.run_coroutine_threadsafe(read(), engine.loop).result(timeout=30)


def _database_bytes(data_dir: Path) -> bytes:
    """Every file of the embedded database (the main file, its journal and WAL)."""
    return b"".join(path.read_bytes() for path in sorted(data_dir.glob("engine.db*")))


def test_the_root_password_is_not_in_the_database_in_clear_text(
        engine: RunningEngine) -> None:
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        vms = conn.system_service().vms_service()
        vm = vms.add(types.Vm(
            name="sealed-init", cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"), memory=256 * 2**20,
            initialization=types.Initialization(host_name="web1", root_password=PASSWORD)))
        # A client sending back what it read (no password: never shown) keeps the sealed one.
        vms.vm_service(vm.id).update(types.Vm(
            initialization=types.Initialization(host_name="web2")))
    finally:
        conn.close()

    stored = _stored_initialization(engine, "sealed-init")
    assert stored["host_name"] == "web2"
    sealed = str(stored["root_password"])
    assert sealed.startswith("v1:") and PASSWORD not in sealed
    assert PASSWORD.encode() not in _database_bytes(engine.runtime.settings.data_dir)


def test_a_template_s_root_password_is_sealed_and_kept_across_edits(
        engine: RunningEngine) -> None:
    """Given on a template (made or edited), sealed the same way; an edit without a password
    keeps it, and a VM made from the template takes the sealed one."""
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        system = conn.system_service()
        source = system.vms_service().add(types.Vm(
            name="sealed-tpl-src", cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"), memory=256 * 2**20))
        templates = system.templates_service()
        made = templates.add(types.Template(
            name="sealed-tpl", vm=types.Vm(id=source.id),
            initialization=types.Initialization(host_name="tpl1", root_password=PASSWORD)))
        service = templates.template_service(made.id)
        deadline = time.monotonic() + 30
        while service.get().status != types.TemplateStatus.OK:
            assert time.monotonic() < deadline, "the template did not become ok"
            time.sleep(0.1)
        edited = service.update(types.Template(
            initialization=types.Initialization(host_name="tpl2")))
        assert edited.initialization.root_password is None
        system.vms_service().add(types.Vm(
            name="sealed-from-tpl", cluster=types.Cluster(name="Default"),
            template=types.Template(name="sealed-tpl")))
    finally:
        conn.close()

    async def read() -> dict[str, object]:
        async with engine.runtime.db.transaction() as session:
            template = (await session.execute(
                select(Template).where(Template.name == "sealed-tpl"))).scalar_one()
            return dict(template.initialization or {})
    stored = asyncio.run_coroutine_threadsafe(read(), engine.loop).result(timeout=30)
    assert stored["host_name"] == "tpl2"
    sealed = str(stored["root_password"])
    assert sealed.startswith("v1:") and PASSWORD not in sealed
    inherited = _stored_initialization(engine, "sealed-from-tpl")
    assert inherited["host_name"] == "tpl2" and inherited["root_password"] == sealed
    assert PASSWORD.encode() not in _database_bytes(engine.runtime.settings.data_dir)
