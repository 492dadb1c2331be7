"""Disk upload and download through oVirt's `imagetransfers` with the official SDK and the
real `ovirt_imageio.client` (what the SDK's upload_disk.py and download_disk.py run),
against the engine's ovirt-imageio daemon over qemu-nbd; tickets and their refusals.

The engine here has no node, so each disk is made as a node would (a `qemu-img` volume in
a local domain's directory, on this machine, and its row); all the rest is the product's.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest
from ovirt_imageio import client
from sqlalchemy import select
from typer.testing import CliRunner

from overt.cli.main import app
from overt.engine.db.tables import Disk, Job, StorageDomain, User
from overt.engine.model.status import DiskStatus, JobStatus, StorageDomainStatus, StorageType
from overt.engine.services.image_transfers import JOB_ACTION, JOB_STATE
from overt.engine.services.jobs import JobSubmitter
from tests.support.boot_iso import build_boot_iso
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

# ovirt_imageio.client leaves the socket of its local qemu-nbd helper to the collector.
# Real qemu-nbd and imageio transfers: seconds, so not in the fast lane.
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]
MIB = 1 << 20
SIZE = 64 * MIB
UPLOAD, DOWNLOAD = types.ImageTransferDirection.UPLOAD, types.ImageTransferDirection.DOWNLOAD


def _run(engine: RunningEngine, coro_fn: Callable[..., object]) -> object:
    async def go() -> object:
        async with engine.runtime.db.transaction() as session:
            return await coro_fn(session)  # type: ignore[misc]
    return asyncio.run_coroutine_threadsafe(go(), engine.loop).result(timeout=30)


@pytest.fixture(scope="module")
def api_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    """One engine (SQLite) for this module: the transfers' data path is the same on any
    database, and PostgreSQL's run doubles the time (passes too: `-k postgresql` on the
    conftest's fixture)."""
    engine = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
    yield engine
    engine.stop()


@pytest.fixture(scope="module")
def domain(api_engine: RunningEngine, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[uuid.UUID, Path]:
    """A local domain whose directory is on the engine's machine (as in `overt demo`)."""
    path = tmp_path_factory.mktemp("xfer-domain")
    (path / "images").mkdir()
    sd_id = uuid.uuid4()

    async def add(session: object) -> None:
        session.add(StorageDomain(  # type: ignore[attr-defined]
            id=sd_id, name=f"xfer-{sd_id.hex[:6]}", storage_type=StorageType.LOCALFS.value,
            path=str(path), status=StorageDomainStatus.ACTIVE, available_bytes=10 << 30))
    _run(api_engine, add)
    return sd_id, path


def _disk(engine: RunningEngine, domain: tuple[uuid.UUID, Path], fmt: str,
          content_type: str = "data") -> uuid.UUID:
    """A new empty disk, its volume made as a node's `disk.create` makes it."""
    sd_id, path = domain
    disk_id = uuid.uuid4()
    image = f"images/{disk_id}.{'qcow2' if fmt == 'cow' else 'img'}"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2" if fmt == "cow" else "raw",
                    str(path / image), str(SIZE)], check=True)

    async def add(session: object) -> None:
        session.add(Disk(id=disk_id, name=f"up-{disk_id.hex[:6]}",  # type: ignore[attr-defined]
                         storage_domain_id=sd_id, provisioned_size=SIZE, format=fmt,
                         sparse=True, status=DiskStatus.OK, image_path=image,
                         content_type=content_type))
    _run(engine, add)
    return disk_id


def _source(tmp: Path, pattern: int, fmt: str = "qcow2") -> Path:
    """An image with data at a few places and holes between them."""
    image = tmp / f"source-{pattern:x}.{fmt}"
    subprocess.run(["qemu-img", "create", "-q", "-f", fmt, str(image), str(SIZE)], check=True)
    subprocess.run(["qemu-io", "-f", fmt, "-c", f"write -P {pattern} 1M 3M",
                    "-c", f"write -P {pattern + 1} 40M 512k", "-c", "write -z 50M 1M",
                    str(image)], check=True, capture_output=True)
    return image


def _digest(image: Path, fmt: str) -> str:
    """The guest's view of an image, as a checksum."""
    raw = image.with_suffix(".check")
    subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", str(image), str(raw)],
                   check=True)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    raw.unlink()
    return digest


def _transfers(connection: sdk.Connection) -> sdk.services.ImageTransfersService:
    return connection.system_service().image_transfers_service()


def _start(connection: sdk.Connection, disk_id: uuid.UUID, direction: types.ImageTransferDirection
           ) -> types.ImageTransfer:
    """upload_disk.py's create_transfer: add, then wait out `initializing`."""
    service = _transfers(connection)
    transfer = service.add(types.ImageTransfer(disk=types.Disk(id=str(disk_id)),
                                               direction=direction,
                                               format=types.DiskFormat.RAW))
    deadline = time.monotonic() + 30
    while transfer.phase == types.ImageTransferPhase.INITIALIZING:
        assert time.monotonic() < deadline
        time.sleep(0.1)
        transfer = service.image_transfer_service(transfer.id).get()
    return transfer


def _finalize(connection: sdk.Connection, transfer: types.ImageTransfer) -> None:
    service = _transfers(connection).image_transfer_service(transfer.id)
    service.finalize()
    deadline = time.monotonic() + 60
    while (phase := service.get().phase) != types.ImageTransferPhase.FINISHED_SUCCESS:
        assert phase != types.ImageTransferPhase.FINISHED_FAILURE
        assert time.monotonic() < deadline, phase
        time.sleep(0.1)


def _status(connection: sdk.Connection, disk_id: uuid.UUID) -> types.DiskStatus:
    disk = connection.system_service().disks_service().disk_service(str(disk_id)).get()
    return disk.status


def _http(method: str, url: str, ca_file: Path, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca_file))
    with httpx.Client(verify=context, timeout=30) as http:
        reply = http.request(method, url, content=data, headers=headers or {})
    return reply.status_code, reply.content


@pytest.mark.parametrize("disk_format", ["cow", "raw"])
def test_an_image_uploaded_with_ovirt_imageio_downloads_back_identical(
        api_engine: RunningEngine, connection: sdk.Connection, domain: tuple[uuid.UUID, Path],
        tmp_path: Path, disk_format: str) -> None:
    source = _source(tmp_path, 0xA0)
    disk_id = _disk(api_engine, domain, disk_format)
    transfer = _start(connection, disk_id, UPLOAD)
    assert transfer.phase == types.ImageTransferPhase.TRANSFERRING
    assert transfer.transfer_url.startswith("https://127.0.0.1:")
    assert transfer.proxy_url == transfer.transfer_url
    assert _status(connection, disk_id) == types.DiskStatus.LOCKED
    client.upload(str(source), transfer.transfer_url, str(api_engine.ca_file))
    # A live ticket is a bearer secret: not in the daemon's log.
    log = api_engine.runtime.settings.data_dir / "imageio" / "daemon.log"
    assert transfer.transfer_url.rsplit("/", 1)[1] not in (
        log.read_text() if log.exists() else "")
    _finalize(connection, transfer)
    assert _status(connection, disk_id) == types.DiskStatus.OK
    # The ticket died with the transfer.
    assert _http("GET", transfer.transfer_url, api_engine.ca_file)[0] == 403

    volume = domain[1] / f"images/{disk_id}.{'qcow2' if disk_format == 'cow' else 'img'}"
    qemu_format = "qcow2" if disk_format == "cow" else "raw"
    if disk_format == "cow":
        subprocess.run(["qemu-img", "check", "-q", str(volume)], check=True)
    assert _digest(volume, qemu_format) == _digest(source, "qcow2")
    # The holes stayed holes: far less is allocated than the disk's size.
    info = subprocess.run(["qemu-img", "map", "--output=json", "-f", qemu_format, str(volume)],
                          check=True, capture_output=True, text=True).stdout
    assert '"data": true' in info and '"data": false' in info

    back = _start(connection, disk_id, DOWNLOAD)
    out = tmp_path / "downloaded.qcow2"
    client.download(back.transfer_url, str(out), str(api_engine.ca_file), fmt="qcow2")
    _finalize(connection, back)
    assert _digest(out, "qcow2") == _digest(source, "qcow2")
    assert _status(connection, disk_id) == types.DiskStatus.OK


def test_a_ticket_reaches_only_its_own_disk_and_direction(
        api_engine: RunningEngine, connection: sdk.Connection, domain: tuple[uuid.UUID, Path],
        tmp_path: Path) -> None:
    ca = api_engine.ca_file
    mine, theirs = _disk(api_engine, domain, "raw"), _disk(api_engine, domain, "raw")
    up = _start(connection, theirs, UPLOAD)
    client.upload(str(_source(tmp_path, 0x5A)), up.transfer_url, str(ca))
    _finalize(connection, up)

    down = _start(connection, mine, DOWNLOAD)
    base = down.transfer_url.rsplit("/", 1)[0]
    # Only this disk's (empty) data comes back with this ticket, at the offsets the other
    # disk has data.
    status, body = _http("GET", down.transfer_url, ca, headers={"Range": "bytes=1048576-1052671"})
    assert status == 206 and body == bytes(4096)
    # A download ticket cannot write; a guessed, a malformed or an absent ticket reads nothing.
    assert _http("PUT", down.transfer_url, ca, data=b"x" * 512)[0] == 403
    for guessed in (str(uuid.uuid4()), up.transfer_url.rsplit("/", 1)[1], "..%2Fetc", ""):
        status, body = _http("GET", f"{base}/{guessed}", ca, headers={"Range": "bytes=0-511"})
        assert status in (400, 403, 404) and bytes([0x5A]) * 16 not in body, guessed
    # Paused, the ticket reads nothing; resumed, it reads again; extended, it still does.
    service = _transfers(connection).image_transfer_service(down.id)
    service.pause()
    assert service.get().phase == types.ImageTransferPhase.PAUSED_USER
    assert _http("GET", down.transfer_url, ca, headers={"Range": "bytes=0-511"})[0] == 403
    service.resume()
    service.extend()
    assert service.get().phase == types.ImageTransferPhase.TRANSFERRING
    assert _http("GET", down.transfer_url, ca, headers={"Range": "bytes=0-511"})[0] == 206
    _finalize(connection, down)
    # Nothing was written to this disk.
    volume = domain[1] / f"images/{mine}.img"
    assert volume.read_bytes() == bytes(SIZE)


def test_a_cancelled_upload_hands_its_disk_to_removal_and_a_download_unlocks(
        api_engine: RunningEngine, connection: sdk.Connection, domain: tuple[uuid.UUID, Path]
        ) -> None:
    ca = api_engine.ca_file
    disk_id = _disk(api_engine, domain, "cow")
    transfer = _start(connection, disk_id, UPLOAD)
    assert _http("PUT", transfer.transfer_url, ca, data=b"\x7f" * MIB,
                 headers={"Content-Range": f"bytes 0-{MIB - 1}/*"})[0] == 200
    service = _transfers(connection).image_transfer_service(transfer.id)
    service.cancel()
    assert service.get().phase == types.ImageTransferPhase.FINISHED_FAILURE
    assert _http("PUT", transfer.transfer_url, ca, data=b"x" * 512)[0] == 403

    async def removal(session: object) -> list[str]:
        return list((await session.execute(  # type: ignore[attr-defined]
            select(Job.description))).scalars())
    assert any(str(d).startswith("Removing disk up-") and disk_id.hex[:6] in str(d)
               for d in _run(api_engine, removal))  # type: ignore[union-attr]

    other = _disk(api_engine, domain, "raw")
    down = _start(connection, other, DOWNLOAD)
    _transfers(connection).image_transfer_service(down.id).cancel()
    assert _status(connection, other) == types.DiskStatus.OK

    # A client idle past the inactivity timeout: the engine cancels the transfer.
    idle = _transfers(connection).add(types.ImageTransfer(
        disk=types.Disk(id=str(other)), direction=DOWNLOAD, inactivity_timeout=1))
    service = _transfers(connection).image_transfer_service(idle.id)
    deadline = time.monotonic() + 30
    while service.get().phase != types.ImageTransferPhase.FINISHED_FAILURE:
        assert time.monotonic() < deadline, service.get().phase
        time.sleep(0.2)
    assert _status(connection, other) == types.DiskStatus.OK
    assert _http("GET", idle.transfer_url, ca, headers={"Range": "bytes=0-511"})[0] == 403


def test_bad_transfers_are_4xx_faults_that_change_nothing(
        api_engine: RunningEngine, connection: sdk.Connection, domain: tuple[uuid.UUID, Path]
        ) -> None:
    disk_id = _disk(api_engine, domain, "cow")
    service = _transfers(connection)
    busy = _start(connection, disk_id, DOWNLOAD)
    before = sorted(t.id for t in service.list())
    for transfer, code, words in (
            (types.ImageTransfer(direction=UPLOAD), 400, "image_transfer.disk is required"),
            (types.ImageTransfer(disk=types.Disk(id=str(uuid.uuid4())), direction=UPLOAD),
             404, "there is no disk"),
            (types.ImageTransfer(disk=types.Disk(id=str(disk_id)), direction=UPLOAD,
                                 format=types.DiskFormat.RAW), 409, "it is locked"),
            (types.ImageTransfer(disk=types.Disk(id=str(disk_id)), direction=UPLOAD,
                                 format=types.DiskFormat.COW), 400, "format raw"),
            (types.ImageTransfer(disk=types.Disk(id=str(disk_id)), direction=UPLOAD,
                                 inactivity_timeout=10**9), 400, "inactivity_timeout")):
        with pytest.raises(sdk.Error) as caught:
            service.add(transfer)
        assert caught.value.code == code and words in str(caught.value), str(caught.value)
    assert sorted(t.id for t in service.list()) == before
    _finalize(connection, busy)
    with pytest.raises(sdk.Error) as caught:
        service.image_transfer_service(busy.id).finalize()
    assert caught.value.code == 409 and "finished_success" in str(caught.value)
    with pytest.raises(sdk.NotFoundError):
        service.image_transfer_service(str(uuid.uuid4())).get()
    assert _status(connection, disk_id) == types.DiskStatus.OK


def test_transfers_cut_short_by_a_crash_end_when_the_api_starts_again(
        api_engine: RunningEngine, connection: sdk.Connection, domain: tuple[uuid.UUID, Path]
        ) -> None:
    """What a killed API process leaves (locked disks, started transfer jobs of its name)
    is ended by its next start: no disk stays locked, an upload's disk is removed."""
    transfers = api_engine.runtime.image_transfers
    assert transfers is not None
    uploaded, downloaded = _disk(api_engine, domain, "cow"), _disk(api_engine, domain, "raw")
    jobs = {uploaded: uuid.uuid4(), downloaded: uuid.uuid4()}

    async def crashed(session: object) -> uuid.UUID:
        admin = (await session.execute(select(User.id).where(  # type: ignore[attr-defined]
            User.user_name.like("admin%")))).scalars().first()
        for disk_id, direction in ((uploaded, "upload"), (downloaded, "download")):
            disk = await session.get(Disk, disk_id)  # type: ignore[attr-defined]
            disk.status = DiskStatus.LOCKED
            session.add(Job(id=jobs[disk_id], action=JOB_ACTION,  # type: ignore[attr-defined]
                            description=f"Transfer of {disk.name}", state=JOB_STATE,
                            params={"disk_id": str(disk_id), "direction": direction},
                            status=JobStatus.STARTED, claimed_by=transfers.server_name,
                            owner_id=admin))
        return admin
    assert _run(api_engine, crashed) is not None
    ended = asyncio.run_coroutine_threadsafe(
        transfers.recover(api_engine.runtime.db, JobSubmitter(asyncio.Event())),
        api_engine.loop).result(timeout=30)
    assert ended == 2
    assert _status(connection, downloaded) == types.DiskStatus.OK
    assert _status(connection, uploaded) == types.DiskStatus.OK

    async def after(session: object) -> tuple[list[str], list[JobStatus]]:
        descriptions = list((await session.execute(  # type: ignore[attr-defined]
            select(Job.description))).scalars())
        statuses = [(await session.get(Job, j)).status for j in jobs.values()]  # type: ignore
        return descriptions, statuses
    descriptions, statuses = _run(api_engine, after)  # type: ignore[misc]
    assert statuses == [JobStatus.FAILED, JobStatus.FAILED]
    assert any(d.startswith("Removing disk") and uploaded.hex[:6] in d for d in descriptions)
    assert not any(d.startswith("Removing disk") and downloaded.hex[:6] in d
                   for d in descriptions)


def test_overt_disk_upload_and_download_move_an_image_with_a_progress_bar(
        api_engine: RunningEngine, domain: tuple[uuid.UUID, Path], tmp_path: Path) -> None:
    source = _source(tmp_path, 0x3C)
    disk_id = _disk(api_engine, domain, "cow")
    (tmp_path / "pw").write_text(api_engine.password)

    def overt(*args: str) -> tuple[int, str]:
        """The `overt` command in this process (a child's start costs seconds of CPU)."""
        result = CliRunner().invoke(app, list(args))
        return result.exit_code, result.stdout + result.stderr

    where = ["--url", api_engine.url, "--ca-file", str(api_engine.ca_file),
             "--password-file", str(tmp_path / "pw")]
    code, said = overt("disk", "upload", str(source), "--disk", str(disk_id), *where)
    assert code == 0 and f"{source.name} uploaded into disk up-{disk_id.hex[:6]}" in said, said
    out = tmp_path / "back.qcow2"
    code, said = overt("disk", "download", str(disk_id), str(out), *where)
    assert code == 0, said
    assert _digest(out, "qcow2") == _digest(source, "qcow2")
    code, said = overt("disk", "list", "--json", *where)
    assert code == 0 and any(d["id"] == str(disk_id) and d["status"] == "ok"
                             for d in json.loads(said))
    code, said = overt("disk", "upload", str(source), "--disk", str(disk_id), "--storage-domain",
                       "x", *where)
    assert code != 0 and "either --disk" in said


def test_an_iso_disk_takes_only_an_iso_image(
        api_engine: RunningEngine, connection: sdk.Connection, domain: tuple[uuid.UUID, Path],
        tmp_path: Path) -> None:
    """Bytes that are not ISO 9660, uploaded into an ISO disk with ovirt_imageio.client:
    finalize is a 400 saying why, the transfer ends in failure and the disk goes to removal
    (its removal job); a real ISO image then uploads into another ISO disk and is ok."""
    disks = connection.system_service().disks_service()
    not_iso = tmp_path / "installer.iso"
    not_iso.write_bytes(b"MZ this is a Windows program, not a disc image\n" * 4096)
    disk_id = _disk(api_engine, domain, "raw", content_type="iso")
    before = sorted(d.id for d in disks.list() if d.id != str(disk_id))
    transfer = _start(connection, disk_id, UPLOAD)
    client.upload(str(not_iso), transfer.transfer_url, str(api_engine.ca_file))
    service = _transfers(connection).image_transfer_service(transfer.id)
    with pytest.raises(sdk.Error) as caught:
        service.finalize()
    assert caught.value.code == 400, caught.value
    assert "not an ISO 9660 image" in str(caught.value), caught.value
    assert service.get().phase == types.ImageTransferPhase.FINISHED_FAILURE
    assert _http("GET", transfer.transfer_url, api_engine.ca_file)[0] == 403  # ticket gone

    async def jobs(session: object) -> list[tuple[str, str]]:
        return [(str(d), str(s)) for d, s in (await session.execute(  # type: ignore[attr-defined]
            select(Job.description, Job.status))).all()]
    recorded = _run(api_engine, jobs)
    assert any(d == f"Removing disk up-{disk_id.hex[:6]}"
               for d, _ in recorded)  # type: ignore[union-attr]
    assert any(d == f"Uploading disk up-{disk_id.hex[:6]}" and s == JobStatus.FAILED.value
               for d, s in recorded)  # type: ignore[union-attr]
    events = [e.description for e in connection.system_service().events_service().list()]
    assert any(f"Image upload of disk up-{disk_id.hex[:6]} failed: the uploaded data is not "
               "an ISO 9660 image" in str(e) for e in events)
    assert sorted(d.id for d in disks.list() if d.id != str(disk_id)) == before

    iso = build_boot_iso(tmp_path / "boot.iso")
    good = _disk(api_engine, domain, "raw", content_type="iso")
    transfer = _start(connection, good, UPLOAD)
    client.upload(str(iso), transfer.transfer_url, str(api_engine.ca_file))
    _finalize(connection, transfer)
    assert _status(connection, good) == types.DiskStatus.OK
    volume = domain[1] / f"images/{good}.img"
    assert volume.read_bytes()[:iso.stat().st_size] == iso.read_bytes()
