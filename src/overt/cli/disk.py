"""`overt disk`: list disks, and upload or download a disk's data through an image
transfer, with a progress bar (the same flow as the SDK's upload_disk.py)."""

from __future__ import annotations

import json as jsonlib
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from ovirt_imageio import client as imageio
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.objects import report, resolve
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, console, human_bytes, table

app = typer.Typer(help="Disks: list, upload and download.", no_args_is_help=True)
WAIT_S = 600.0


@app.command("list")
@reports_errors
def list_disks(url: Url = None, user: User = None, password_file: PasswordFile = None,
               ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List disks with their status, format and size."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        disks = client.get("/disks").get("disk", [])
    if json:
        as_json(disks)
        return
    table("Disks", ["name", "status", "format", "size", "id"], [
        (d.get("name", ""), d.get("status", ""), d.get("format", ""),
         human_bytes(d.get("provisioned_size")), d["id"]) for d in disks])


class _Bar:
    """ovirt_imageio's progress interface (`size`, `update`) drawn by rich."""

    def __init__(self, progress: Progress, task: Any) -> None:
        self._progress, self._task = progress, task

    @property
    def size(self) -> int | None:
        return None

    @size.setter
    def size(self, value: int) -> None:
        self._progress.update(self._task, total=value)

    def update(self, n: int) -> None:
        self._progress.advance(self._task, n)


@contextmanager
def _progress_bar(what: str) -> Iterator[_Bar]:
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
               TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield _Bar(progress, progress.add_task(what, total=None))


def _image_info(path: Path) -> dict[str, Any]:
    found = subprocess.run(["qemu-img", "info", "--output=json", str(path)],
                           capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise ApiError(f"{path} is not a disk image qemu-img can read: {found.stderr.strip()}")
    info: dict[str, Any] = jsonlib.loads(found.stdout)
    return info


def _wait(check: Any, what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while not (found := check()):
        if time.monotonic() > deadline:
            raise ApiError(f"timed out waiting for {what}")
        time.sleep(0.5)
    return found


def _disk_ok(client: ApiClient, disk_id: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        try:
            disk: dict[str, Any] = client.get(f"/disks/{disk_id}")
        except ApiError as exc:  # a disk that could not be created is removed
            raise ApiError(f"disk {disk_id} could not be created ({exc}); see the events"
                           ) from exc
        if disk.get("status") == "illegal":
            raise ApiError(f"disk {disk.get('name')} could not be created")
        return disk if disk.get("status") == "ok" else None
    found: dict[str, Any] = _wait(ready, "the disk to be ok")
    return found


def _transfer(client: ApiClient, disk_id: str, direction: str, move: Any) -> None:
    """Start a transfer, move the data with `move(url, ca)`, then finalize (or cancel)."""
    transfer = client.post("/imagetransfers", {"disk": {"id": disk_id},
                                               "direction": direction, "format": "raw"})
    base = f"/imagetransfers/{transfer['id']}"
    try:
        move(transfer["transfer_url"])
    except BaseException:
        client.post(f"{base}/cancel", {})
        raise
    client.post(f"{base}/finalize", {})
    _wait(lambda: client.get(base).get("phase") == "finished_success", "the transfer to end")


@app.command()
@reports_errors
def upload(file: Annotated[Path, typer.Argument(help="A qcow2 or raw image.", exists=True,
                                                dir_okay=False)],
           disk: Annotated[str | None, typer.Option(
               help="An existing disk (name or id) to write the image into.")] = None,
           storage_domain: Annotated[str | None, typer.Option(
               help="Make a new disk of the image's size on this domain (name or id).")] = None,
           name: Annotated[str | None, typer.Option(help="The new disk's name.")] = None,
           disk_format: Annotated[str, typer.Option(
               "--format", help="The new disk's format: cow (qcow2) or raw.")] = "cow",
           url: Url = None, user: User = None, password_file: PasswordFile = None,
           ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Upload an image into a disk (a new one with --storage-domain) through imageio."""
    if (disk is None) == (storage_domain is None):
        raise ApiError("give either --disk (an existing disk) or --storage-domain (a new one)")
    info = _image_info(file)
    with connect(url, user, password_file, ca_file, data_dir) as client:
        if storage_domain is not None:
            domain = resolve(client, "storagedomains", "storage_domain", storage_domain)
            made = client.post("/disks", {
                "name": name or file.stem, "format": disk_format, "sparse": True,
                "provisioned_size": int(info["virtual-size"]),
                "storage_domains": {"storage_domain": [{"id": domain["id"]}]}})
            found = _disk_ok(client, made["id"])
        else:
            found = resolve(client, "disks", "disk", str(disk))
        ca = str(client.ca_file)

        def move(transfer_url: str) -> None:
            with _progress_bar(f"Uploading {file.name}") as bar:
                imageio.upload(str(file), transfer_url, ca, progress=bar)
        _transfer(client, found["id"], "upload", move)
        uploaded = client.get(f"/disks/{found['id']}")
    report(uploaded, json, f"{file.name} uploaded into disk {uploaded['name']} "
           f"({human_bytes(int(info['virtual-size']))})")


@app.command()
@reports_errors
def download(disk: Annotated[str, typer.Argument(help="The disk's name or id.")],
             file: Annotated[Path, typer.Argument(help="The image file to write.")],
             image_format: Annotated[str, typer.Option(
                 "--format", help="The file's format: qcow2 or raw.")] = "qcow2",
             url: Url = None, user: User = None, password_file: PasswordFile = None,
             ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Download a disk's data into an image file through imageio."""
    if image_format not in ("qcow2", "raw"):
        raise ApiError("--format must be qcow2 or raw")
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "disks", "disk", disk)
        ca = str(client.ca_file)

        def move(transfer_url: str) -> None:
            with _progress_bar(f"Downloading {found['name']}") as bar:
                imageio.download(transfer_url, str(file), ca, fmt=image_format,
                                 progress=bar)
        _transfer(client, found["id"], "download", move)
    report({}, False, f"Disk {found['name']} downloaded into {file}")
