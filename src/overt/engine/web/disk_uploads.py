"""Uploading a disk image from the browser, through the engine's imageio proxy.

The page's script (static/disk_upload.js) asks for a new disk and an upload transfer (the
same service calls the API's /disks and /imagetransfers make), then sends the file in
chunks (`PUT` with `Content-Range`) to the portal, which forwards each one to the
transfer's `proxy_url` (the engine's own imageio daemon, trusted with the engine CA), so
the browser never needs to reach a host nor trust its certificate. A chunk is
acknowledged once the daemon wrote it: that is the page's progress. Then it finalizes, or
cancels (the disk goes, as the API's cancel removes it).

The transfer carries guest data (`format=raw`, as the SDK's upload_disk.py sends): a
browser cannot turn a qcow2 file into guest data, so the page refuses qcow2 files (by
their magic) and says to convert them first; the disk it makes may still be qcow2.
"""

from __future__ import annotations

import logging
import re
import ssl
import uuid

import httpx
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from overt.engine.api.limits import API_BODY_LIMIT
from overt.engine.db.tables import Disk, User
from overt.engine.model.errors import Conflict, InvalidInput, OvertError, Unavailable
from overt.engine.services import devices
from overt.engine.services.image_transfers import (
    Direction,
    ImageTransfers,
    Phase,
    Transfer,
    TransferRequest,
)
from overt.engine.services.inputs import DiskInput
from overt.engine.services.jobs import wait_for_job
from overt.engine.web.context import WebContext, page
from overt.engine.web.disks import RecordingJobs, active_domains, read_format_and_domain

log = logging.getLogger(__name__)

MIB = 1 << 20
CHUNK_BYTES = API_BODY_LIMIT  # the most one request's body may hold (api.limits)
CREATE_WAIT_S = 300.0
# The portal reads a whole chunk from the browser before the daemon sees it: a slow link
# must not look idle to the engine's inactivity check (an abandoned page's transfer is
# still cancelled, its disk removed, after this long).
INACTIVITY_S = 300
EXTEND_EVERY = 64  # chunks (256 MiB): the ticket's hour of life is renewed as data comes
QCOW2_MAGIC = b"QFI\xfb"
RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


async def _json_errors(exc: OvertError) -> Response:
    """The page's script shows a refusal's reason (and cancels what it started)."""
    return JSONResponse({"error": f"{exc.reason}: {exc.detail}"}, exc.status)


def _transfers(ctx: WebContext) -> ImageTransfers:
    found: ImageTransfers | None = ctx.services.image_transfers
    if found is None:
        raise Unavailable("This engine process serves no image transfers")
    return found


def _upload(ctx: WebContext) -> Transfer:
    transfer = _transfers(ctx).get(ctx.id_param("transfer_id"))
    if transfer.direction is not Direction.UPLOAD:
        raise InvalidInput(f"image transfer {transfer.id} is a download")
    return transfer


def upload_size(raw: str) -> int:
    """The new disk's size for a file of `raw` bytes: whole MiB, at least one (the
    service's smallest disk)."""
    try:
        size = int(raw)
    except ValueError:
        raise InvalidInput(f"the file's size must be a number of bytes, not {raw!r}") from None
    if size <= 0:
        raise InvalidInput("the file is empty: choose an image file")
    return max(1, -(-size // MIB)) * MIB


@page
async def upload_page(ctx: WebContext) -> Response:
    return ctx.render("disk_upload.html", nav="disks", domains=await active_domains(ctx.session),
                      chunk=CHUNK_BYTES)


@page
async def start_upload(ctx: WebContext) -> Response:
    """A new disk of the file's size, then (once its creation job ended) an upload
    transfer into it; answers the transfer's id for the page's script."""
    ctx.on_error = _json_errors
    form = await ctx.form()
    fmt, domain = read_format_and_domain(form)
    transfers = _transfers(ctx)
    jobs = RecordingJobs(ctx.services.jobs)
    disk = await devices.add_disk(ctx.session, jobs, DiskInput(
        name=form.get("name", "").strip() or None, provisioned_size=upload_size(
            form.get("size", "")), format=fmt, sparse=True, storage_domain=domain), ctx.user)
    disk_id, name, user_id, job_id = disk.id, disk.name, ctx.user.id, jobs.submitted[-1].id
    db = ctx.request.app.state.db

    async def open_transfer() -> Response:
        try:
            await wait_for_job(db, job_id, timeout_s=CREATE_WAIT_S,
                               what=f"creating disk {name}")
            async with db.transaction() as session:
                user = await session.get(User, user_id)
                assert user is not None
                transfer = await transfers.start(session, TransferRequest(
                    disk_id=disk_id, direction=Direction.UPLOAD, format="raw",
                    inactivity_timeout=INACTIVITY_S), user)
                return JSONResponse({"transfer": str(transfer.id), "disk": str(disk_id),
                                     "size": transfer.image_size})
        except OvertError:
            await _remove_quietly(ctx, disk_id, user_id)  # no empty disk left behind
            raise
    ctx.then = open_transfer
    return Response(status_code=204)


async def _remove_quietly(ctx: WebContext, disk_id: uuid.UUID, user_id: uuid.UUID) -> None:
    """The new disk goes when its upload cannot start (the reason is what the page says;
    a disk that cannot go yet, e.g. still being made, stays, and the log says so)."""
    try:
        async with ctx.request.app.state.db.transaction() as session:
            disk, user = await session.get(Disk, disk_id), await session.get(User, user_id)
            if disk is not None and user is not None:
                await devices.remove_disk_job(session, ctx.services.jobs, disk, user)
    except OvertError as exc:
        log.warning("could not remove disk %s after its upload failed to start: %s",
                    disk_id, exc)


def _range(header: str | None, length: int, size: int) -> tuple[int, int]:
    """The first and last byte of a chunk (`Content-Range: bytes FIRST-LAST/TOTAL`)."""
    found = RANGE.fullmatch((header or "").strip())
    if found is None:
        raise InvalidInput("a chunk needs Content-Range: bytes FIRST-LAST/TOTAL")
    first, last = int(found.group(1)), int(found.group(2))
    if last < first or last - first + 1 != length:
        raise InvalidInput(f"the chunk has {length} bytes, not those of its range "
                           f"{first}-{last}")
    if last >= size:
        raise InvalidInput(f"the chunk ends at byte {last}, past the disk's {size} bytes")
    return first, last


@page
async def upload_chunk(ctx: WebContext) -> Response:
    """One chunk of the file, written through the engine's imageio daemon."""
    ctx.on_error = _json_errors
    transfer = _upload(ctx)
    if transfer.phase is not Phase.TRANSFERRING:
        raise Conflict(f"image transfer {transfer.id} is {transfer.phase.value}")
    body = await ctx.request.body()
    first, last = _range(ctx.request.headers.get("content-range"), len(body),
                         transfer.image_size)
    if first == 0 and body.startswith(QCOW2_MAGIC):
        raise InvalidInput("this is a qcow2 image; the portal sends guest data only: convert "
                           "it first (qemu-img convert -O raw IMAGE.qcow2 IMAGE.raw)")
    url = transfer.proxy_url or transfer.transfer_url
    tls = ssl.create_default_context(cafile=str(_transfers(ctx).daemon.files.ca_file))
    async with httpx.AsyncClient(verify=tls, timeout=120) as client:
        try:
            answer = await client.put(url, content=body, params={"flush": "n"}, headers={
                "Content-Range": f"bytes {first}-{last}/*",
                "Content-Type": "application/octet-stream"})
        except httpx.HTTPError as exc:
            raise Unavailable(f"the engine's image server cannot be reached: {exc}") from None
    if answer.status_code >= 300:
        raise Conflict(f"the image server refused the chunk at byte {first}: "
                       f"{answer.status_code} {answer.text.strip()[:300]}")
    transfer.transferred = max(transfer.transferred, last + 1)
    if first and first // CHUNK_BYTES % EXTEND_EVERY == 0:
        await _transfers(ctx).extend(transfer)
    return JSONResponse({"acknowledged": last + 1, "size": transfer.image_size})


@page
async def finalize_upload(ctx: WebContext) -> Response:
    """The disk is ready (its transfer job ends); the page goes to the list."""
    ctx.on_error = _json_errors
    transfer = _upload(ctx)
    await ctx.form()
    refusal = await _transfers(ctx).finalize(ctx.session, ctx.services.jobs, transfer,
                                             ctx.user)
    if refusal is not None:
        async def refuse() -> Response:  # the transfer ended and its disk goes: say why
            return JSONResponse({"error": f"Upload refused: {refusal}"}, 400)
        ctx.then = refuse
    return JSONResponse({"job": str(transfer.id), "disk": str(transfer.disk_id)})


@page
async def cancel_upload(ctx: WebContext) -> Response:
    """Stop the upload: its disk is removed (a job the list shows)."""
    ctx.on_error = _json_errors
    transfer = _upload(ctx)
    await ctx.form()
    jobs = RecordingJobs(ctx.services.jobs)
    await _transfers(ctx).cancel(ctx.session, jobs, transfer, ctx.user)
    removal = jobs.submitted[-1].id if jobs.submitted else transfer.id
    return JSONResponse({"job": str(removal), "disk": str(transfer.disk_id)})


ROUTES = [
    Route("/disks/upload", upload_page),
    Route("/disks/uploads", start_upload, methods=["POST"]),
    Route("/disks/transfers/{transfer_id}/data", upload_chunk, methods=["PUT"]),
    Route("/disks/transfers/{transfer_id}/finalize", finalize_upload, methods=["POST"]),
    Route("/disks/transfers/{transfer_id}/cancel", cancel_upload, methods=["POST"]),
]
