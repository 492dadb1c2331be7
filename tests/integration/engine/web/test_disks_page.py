"""The portal's Disks page over HTTP, against an engine with no nodes: the paged, searchable
list; New disk (a creation job shown above the list; the service's refusals shown on the
form, nothing made); Remove asks first; Move's refusals; the upload endpoints' refusals
(a bad range, a qcow2 image, an unknown transfer). The data itself moves in the browser
test against the demo (tests/e2e/web/test_disks_in_the_portal.py)."""

from __future__ import annotations

import html
import re
import uuid

import httpx
import pytest
from sqlalchemy import func, select

from overt.engine.db.tables import Disk, Job, StorageDomain
from overt.engine.model.errors import InvalidInput
from overt.engine.model.status import DiskStatus, StorageDomainStatus
from overt.engine.web.disk_uploads import _range, upload_size
from tests.support.engine import RunningEngine

GIB = 1 << 30


async def _disks(engine: RunningEngine) -> list[tuple[str, int, str, str]]:
    async with engine.runtime.db.transaction() as session:
        return [(d.name, d.provisioned_size, d.format, d.status) for d in (await session.execute(
            select(Disk).order_by(Disk.name))).scalars()]


async def _job_count(engine: RunningEngine, about: str) -> int:
    """The jobs about a disk (the engine is shared with other tests, whose failing jobs
    may still submit clean-ups of their own)."""
    async with engine.runtime.db.transaction() as session:
        return int((await session.execute(select(func.count()).select_from(Job).where(
            Job.description.contains(about)))).scalar_one())


async def _add_disk(engine: RunningEngine, setup: dict[str, str], name: str) -> str:
    async with engine.runtime.db.transaction() as session:
        iso = await session.get(Disk, uuid.UUID(setup["iso"]))
        assert iso is not None
        disk = Disk(id=uuid.uuid4(), name=name, storage_domain_id=iso.storage_domain_id,
                    provisioned_size=3 << 20, actual_size=1 << 20, format="cow",
                    status=DiskStatus.OK, image_path=f"images/{name}.qcow2")
        session.add(disk)
        return str(disk.id)


def _rows(page: str) -> list[str]:
    return re.findall(r'<tr data-disk="([^"]+)"', page)


def test_the_list_shows_disks_with_sizes_format_and_domain_and_searches(
        engine: RunningEngine, portal: tuple[httpx.Client, str], setup: dict[str, str]) -> None:
    client, _csrf = portal
    engine.run(_add_disk(engine, setup, "listed-disk"))
    page = client.get("/disks")
    assert page.status_code == 200
    assert '<a href="/disks" aria-current="page">Disks</a>' in page.text
    row = re.search(r'<tr data-disk="listed-disk".*?</tr>', page.text, re.S)
    assert row is not None, page.text[-3000:]
    cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)]
    assert cells[:6] == ["listed-disk", "3.0 MiB", "1.0 MiB", "cow", "ok", "isos"], cells
    found = client.get("/disks", params={"search": "name=listed*"})
    assert _rows(found.text) == ["listed-disk"]
    bad = client.get("/disks", params={"search": "size>>"})
    assert bad.status_code == 400 and 'data-testid="list-error"' in bad.text


def test_a_new_disk_is_a_creation_job_shown_above_the_list(
        engine: RunningEngine, portal: tuple[httpx.Client, str], setup: dict[str, str]) -> None:
    client, csrf = portal
    form = client.get("/disks/new").text
    domain = re.search(r'<option value="([0-9a-f-]{36})" selected?[^>]*>isos', form) or \
        re.search(r'<option value="([0-9a-f-]{36})"\s*>isos', form)
    assert domain is not None, form
    answer = client.post("/disks", data={"csrf_token": csrf, "name": "made-here",
                                         "size_gib": "2", "format": "raw",
                                         "domain": domain.group(1)})
    assert answer.status_code == 303, answer.text[:2000]
    assert answer.headers["location"].startswith("/disks?job=")
    # Made as the service makes it (its job fails here at once: no host to act through).
    assert [d[:3] for d in engine.run(_disks(engine)) if d[0] == "made-here"] == [
        ("made-here", 2 * GIB, "raw")]
    page = client.get(answer.headers["location"]).text
    assert "Creating disk made-here" in page  # the job, above the list
    if "made-here" not in _rows(page):  # the job failed meanwhile: the disk was rolled back
        assert [d for d in engine.run(_disks(engine)) if d[0] == "made-here"] == []


@pytest.mark.parametrize(("size", "domain", "said"), [
    ("0", "isos", "disk.provisioned_size must be between 1 MiB and 64 TiB, not 0"),
    ("100000", "isos", "must be between 1 MiB and 64 TiB, not 107374182400000"),
    ("lots", "isos", "Size must be a number of GiB, not &#39;lots&#39;"),
    ("1", "", "choose a storage domain"),
    ("1", "down", "storage domain down-sd is maintenance, not active"),
])
def test_a_refused_disk_is_shown_on_the_form_and_nothing_is_made(
        engine: RunningEngine, portal: tuple[httpx.Client, str], setup: dict[str, str],
        size: str, domain: str, said: str) -> None:
    client, csrf = portal

    async def domain_id() -> str:
        async with engine.runtime.db.transaction() as session:
            if domain == "isos":
                iso = await session.get(Disk, uuid.UUID(setup["iso"]))
                assert iso is not None
                return str(iso.storage_domain_id)
            found = (await session.execute(select(StorageDomain).where(
                StorageDomain.name == "down-sd"))).scalar_one_or_none()
            if found is None:
                iso = await session.get(Disk, uuid.UUID(setup["iso"]))
                assert iso is not None
                base = await session.get(StorageDomain, iso.storage_domain_id)
                assert base is not None
                found = StorageDomain(id=uuid.uuid4(), name="down-sd", storage_type="localfs",
                                      path="/var/tmp/down", data_center_id=base.data_center_id,
                                      status=StorageDomainStatus.MAINTENANCE)
                session.add(found)
            return str(found.id)
    chosen = engine.run(domain_id()) if domain else ""
    jobs = engine.run(_job_count(engine, "refused-disk"))
    answer = client.post("/disks", data={"csrf_token": csrf, "name": "refused-disk",
                                         "size_gib": size, "format": "cow", "domain": chosen})
    assert answer.status_code in (400, 409), answer.text[:2000]
    error = re.search(r'<p class="notice error" role="alert" id="form-error">(.*?)</p>',
                      answer.text, re.S)
    assert error is not None and said in error.group(1), answer.text[-3000:]
    assert 'value="refused-disk"' in answer.text  # the form as filled
    assert [d for d in engine.run(_disks(engine)) if d[0] == "refused-disk"] == []
    assert engine.run(_job_count(engine, "refused-disk")) == jobs


def test_removing_asks_first_then_submits_the_removal(
        engine: RunningEngine, portal: tuple[httpx.Client, str], setup: dict[str, str]) -> None:
    client, csrf = portal
    disk_id = engine.run(_add_disk(engine, setup, "to-remove"))
    jobs = engine.run(_job_count(engine, "to-remove"))
    asked = client.post(f"/disks/{disk_id}/remove", data={"csrf_token": csrf})
    assert asked.status_code == 200 and "<h1>Remove disk to-remove?</h1>" in asked.text
    assert engine.run(_job_count(engine, "to-remove")) == jobs  # asking changed nothing
    done = client.post(f"/disks/{disk_id}/remove", data={"csrf_token": csrf,
                                                         "confirmed": "yes"})
    assert done.status_code == 303 and done.headers["location"].startswith("/disks?job=")
    assert "Removing disk to-remove" in client.get(done.headers["location"]).text
    refused = client.post(f"/disks/{disk_id}/remove", data={"confirmed": "yes"})
    assert refused.status_code == 403  # no CSRF token


def test_a_refused_move_is_shown_on_its_page(
        engine: RunningEngine, portal: tuple[httpx.Client, str], setup: dict[str, str]) -> None:
    client, csrf = portal
    disk_id = engine.run(_add_disk(engine, setup, "to-move"))
    page = client.get(f"/disks/{disk_id}/move").text
    assert "<h1>Move disk to-move</h1>" in page
    answer = client.post(f"/disks/{disk_id}/move", data={"csrf_token": csrf, "domain": ""})
    assert answer.status_code == 400 and "choose the storage domain" in answer.text
    assert ("to-move", 3 << 20, "cow", "ok") in engine.run(_disks(engine))


def test_the_upload_page_and_its_endpoints_refuse_what_they_cannot_carry(
        engine: RunningEngine, portal: tuple[httpx.Client, str]) -> None:
    client, csrf = portal
    page = client.get("/disks/upload").text
    assert "Convert a qcow2 image first" in page and 'src="/static/disk_upload.js"' in page
    headers = {"X-CSRF-Token": csrf}
    bad = client.post("/disks/uploads", data={"format": "vmdk", "domain": "", "size": "5"},
                      headers=headers)
    assert bad.status_code == 400 and "cow (qcow2) or raw" in bad.json()["error"]
    gone = client.put(f"/disks/transfers/{uuid.uuid4()}/data", content=b"x",
                      headers={**headers, "Content-Range": "bytes 0-0/1"})
    assert gone.status_code == 404 and "does not exist" in gone.json()["error"]
    assert client.put(f"/disks/transfers/{uuid.uuid4()}/data", content=b"x").status_code == 403


def test_chunk_ranges_and_upload_sizes() -> None:
    assert _range("bytes 0-3/10", 4, 10) == (0, 3)
    assert _range("bytes 4-9/*", 6, 10) == (4, 9)
    for header, length in (("bytes 0-3/10", 3), ("bytes 8-11/12", 4), (None, 1),
                           ("bytes=0-3", 4)):
        with pytest.raises(InvalidInput):
            _range(header, length, 10)
    assert upload_size("1") == 1 << 20 and upload_size(str(5 << 20)) == 5 << 20
    assert upload_size(str((5 << 20) + 1)) == 6 << 20
    for raw in ("0", "-1", "x"):
        with pytest.raises(InvalidInput):
            upload_size(raw)
