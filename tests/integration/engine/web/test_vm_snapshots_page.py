"""The VM page's Snapshots section over HTTP, against an engine with no nodes: it lists a
VM's snapshots with their disks and status and offers what the VM's status allows; a
refused snapshot is shown by the section (nothing made); restoring and removing ask first
and change nothing until confirmed. The jobs themselves run in the browser test against a
real node (tests/e2e/web/test_vm_snapshots_in_the_portal.py)."""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from overt.engine.db.tables import Job, Snapshot, Vm
from overt.engine.model.errors import Conflict
from overt.engine.model.status import VmStatus
from overt.engine.services import snapshots
from tests.integration.engine.web.test_vm_new_form import _form
from tests.support.engine import RunningEngine


def _new_vm(portal: tuple[httpx.Client, str], setup: dict[str, str], name: str) -> str:
    client, csrf = portal
    answer = client.post("/vms", data={"csrf_token": csrf, **_form(setup, name)})
    assert answer.status_code == 303, answer.text[:2000]
    return answer.headers["location"].rsplit("/", 1)[1]


def _section(page: str) -> str:
    found = re.search(r'<section class="card" aria-labelledby="vm-snapshots-h">(.*?)</section>',
                      page, re.S)
    assert found is not None, page[-3000:]
    return found.group(1)


async def _snapshots(engine: RunningEngine, vm_id: str) -> list[tuple[str, str]]:
    async with engine.runtime.db.transaction() as session:
        return [(s.description, s.status) for s in (await session.execute(
            select(Snapshot).where(Snapshot.vm_id == uuid.UUID(vm_id))
            .order_by(Snapshot.created_at))).scalars()]


async def _jobs(engine: RunningEngine) -> int:
    async with engine.runtime.db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(Job))).scalar_one())


def test_a_down_vm_without_snapshots_offers_to_take_one(
        engine: RunningEngine, portal: tuple[httpx.Client, str], setup: dict[str, str]) -> None:
    vm_id = _new_vm(portal, setup, "snap-none")
    section = _section(portal[0].get(f"/vms/{vm_id}").text)
    assert "No snapshots." in section
    assert 'aria-label="Take a snapshot"' in section and "Take snapshot</button>" in section


def test_a_refused_snapshot_is_shown_by_the_section_and_nothing_is_made(
        engine: RunningEngine, portal: tuple[httpx.Client, str], setup: dict[str, str]) -> None:
    client, csrf = portal
    vm_id = _new_vm(portal, setup, "snap-nodisk")  # the form's VM has no disk
    jobs = engine.run(_jobs(engine))
    answer = client.post(f"/vms/{vm_id}/snapshots", data={"csrf_token": csrf,
                                                          "description": "before"})
    assert answer.status_code == 409
    error = re.search(r'data-testid="snapshot-error">(.*?)</div>', answer.text, re.S)
    assert error is not None, _section(answer.text)
    assert html.unescape(error.group(1)) == (
        "Operation Failed: Cannot create a snapshot of VM snap-nodisk: it has no disk to snapshot.")
    blank = client.post(f"/vms/{vm_id}/snapshots", data={"csrf_token": csrf,
                                                         "description": "  "})
    assert blank.status_code == 400 and "give the snapshot a description" in blank.text
    assert engine.run(_snapshots(engine, vm_id)) == []
    assert engine.run(_jobs(engine)) == jobs


def test_snapshots_are_listed_and_restore_and_remove_ask_first(
        engine: RunningEngine, portal: tuple[httpx.Client, str], setup: dict[str, str]) -> None:
    client, csrf = portal
    vm_id = _new_vm(portal, setup, "snap-listed")

    async def insert() -> str:
        async with engine.runtime.db.transaction() as session:
            first = Snapshot(id=uuid.uuid4(), vm_id=uuid.UUID(vm_id), description="first",
                             status="ok", created_at=dt.datetime(2026, 12, 1, 9, 30, 5, tzinfo=dt.UTC))
            session.add(first)
            session.add(Snapshot(id=uuid.uuid4(), vm_id=uuid.UUID(vm_id),
                                 description="second <b>", status="ok",
                                 created_at=dt.datetime(2026, 12, 1, 10, 0, 0, tzinfo=dt.UTC)))
            return str(first.id)
    first_id = engine.run(insert())
    section = _section(client.get(f"/vms/{vm_id}").text)
    rows = re.findall(r'<tr data-snapshot="([^"]*)"><td>[^<]*</td><td>([^<]*)</td>', section)
    assert rows == [("first", "2026-12-01 09:30:05 UTC"),
                    ("second &lt;b&gt;", "2026-12-01 10:00:00 UTC")]
    for label in ("Preview", "Restore", "Remove"):  # a down VM: all three
        assert f'aria-label="{label} snapshot first"' in section

    jobs = engine.run(_jobs(engine))
    for change, said in (("restore", "The VM's disks go back to what they held"),
                         ("remove", "The snapshot is deleted")):
        answer = client.post(f"/vms/{vm_id}/snapshots/{first_id}/{change}",
                             data={"csrf_token": csrf})
        assert answer.status_code == 200
        assert said in answer.text and 'name="confirmed" value="yes"' in answer.text
        assert f'action="/vms/{vm_id}/snapshots/{first_id}/{change}"' in answer.text
        assert f'name="csrf_token" value="{csrf}"' in answer.text
    assert engine.run(_snapshots(engine, vm_id)) == [("first", "ok"), ("second <b>", "ok")]
    assert engine.run(_jobs(engine)) == jobs  # asking changed nothing

    async def running() -> None:
        async with engine.runtime.db.transaction() as session:
            vm = await session.get(Vm, uuid.UUID(vm_id))
            assert vm is not None
            vm.status = VmStatus.UP
    engine.run(running())
    section = _section(client.get(f"/vms/{vm_id}").text)
    assert 'aria-label="Remove snapshot first"' in section  # live merge
    assert "Preview snapshot" not in section and "Restore snapshot" not in section
    assert "snapshotted live" in section


def test_memory_is_offered_for_a_running_vm_shown_and_asked_about_on_preview_and_restore(
        engine: RunningEngine, portal: tuple[httpx.Client, str], setup: dict[str, str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    client, csrf = portal
    vm_id = _new_vm(portal, setup, "snap-memory")
    section = _section(client.get(f"/vms/{vm_id}").text)
    assert 'name="persist_memory"' not in section  # a down VM: nothing to save

    async def memory_snapshot() -> str:
        async with engine.runtime.db.transaction() as session:
            vm = await session.get(Vm, uuid.UUID(vm_id))
            assert vm is not None
            vm.status = VmStatus.UP
            row = Snapshot(id=uuid.uuid4(), vm_id=vm.id, description="warm", status="ok",
                           memory_domain_id=uuid.uuid4(), memory_volume="sd/images/a/b",
                           memory_metadata_volume="sd/images/c/d")
            session.add(row)
            session.add(Snapshot(id=uuid.uuid4(), vm_id=vm.id, description="cold",
                                 status="ok"))
            return str(row.id)
    warm_id = engine.run(memory_snapshot())
    section = _section(client.get(f"/vms/{vm_id}").text)
    assert re.search(r'<input type="checkbox" name="persist_memory" value="yes" checked>'
                     r' Save memory</label>', section)  # ticked for a running VM, as oVirt
    memory = dict(re.findall(r'<tr data-snapshot="([^"]*)">.*?data-testid="snapshot-memory">'
                             r'(.*?)</td>', section, re.S))
    assert memory == {"warm": "saved", "cold": '<span class="muted">no</span>'}

    async def stopped() -> None:
        async with engine.runtime.db.transaction() as session:
            vm = await session.get(Vm, uuid.UUID(vm_id))
            assert vm is not None
            vm.status = VmStatus.DOWN
    engine.run(stopped())
    jobs = engine.run(_jobs(engine))
    for change in ("preview", "restore"):  # asks whether the VM resumes from it
        answer = client.post(f"/vms/{vm_id}/snapshots/{warm_id}/{change}",
                             data={"csrf_token": csrf})
        assert answer.status_code == 200
        assert "the VM's next start resumes the guest" in answer.text
        assert '<input type="checkbox" name="restore_memory" value="yes" checked>' \
            in answer.text
    assert engine.run(_jobs(engine)) == jobs  # asking changed nothing

    asked: list[tuple[str, bool]] = []

    async def recorded(*args: object, restore_memory: bool = False, **_: object) -> None:
        asked.append((str(args[3]), restore_memory))
        raise Conflict("recorded")
    monkeypatch.setattr(snapshots, "preview_snapshot", recorded)
    monkeypatch.setattr(snapshots, "restore_snapshot", recorded)
    for change, ticked in (("preview", "yes"), ("restore", None), ("restore", "yes")):
        data = {"csrf_token": csrf, "confirmed": "yes"}
        if ticked:
            data["restore_memory"] = ticked
        assert client.post(f"/vms/{vm_id}/snapshots/{warm_id}/{change}",
                           data=data).status_code == 409
    assert asked == [(warm_id, True), (warm_id, False), (warm_id, True)]
