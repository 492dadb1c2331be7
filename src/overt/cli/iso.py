"""`overt iso`: ISO images on data domains (disks of content type iso), as oVirt 4.4 keeps
them: list them, and add one from a file on this machine into a local domain here."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.objects import report, resolve
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, human_bytes, progress, table
from overt.engine.model.iso_image import HEADER_BYTES, is_iso9660

app = typer.Typer(help="ISO images for VMs' cdroms.", no_args_is_help=True)
MIB = 1 << 20
CREATE_TIMEOUT_S = 300.0


@app.command("list")
@reports_errors
def list_isos(url: Url = None, user: User = None, password_file: PasswordFile = None,
              ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List the ISO images of every storage domain."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        isos = [d for d in client.get("/disks").get("disk", [])
                if d.get("content_type") == "iso"]
    if json:
        as_json(isos)
        return
    table("ISO images", ["name", "status", "size", "storage domain", "id"], [
        (d["name"], d.get("status", ""), human_bytes(d.get("provisioned_size")),
         d.get("storage_domains", {}).get("storage_domain", [{}])[0].get("id", ""), d["id"])
        for d in isos])


def _wait_ok(client: ApiClient, disk_id: str) -> None:
    deadline = time.monotonic() + CREATE_TIMEOUT_S
    with progress("Creating the ISO disk") as on_step:
        while True:
            try:
                status = client.get(f"/disks/{disk_id}").get("status")
            except ApiError as exc:  # a disk that could not be created is removed
                raise ApiError(f"the ISO disk was not created ({exc}); see the events"
                               ) from exc
            if status == "ok":
                return
            if status == "illegal" or time.monotonic() > deadline:
                raise ApiError(f"the ISO disk was not created (it is {status}); see the events")
            on_step(str(status))
            time.sleep(0.3)


@app.command()
@reports_errors
def add(file: Annotated[Path, typer.Argument(help="An ISO 9660 image on this machine.",
                                             exists=True, dir_okay=False, readable=True)],
        domain: Annotated[str, typer.Option(help="A local storage domain on this machine "
                                                 "(name or id).")],
        name: Annotated[str | None, typer.Option(help="The ISO's name (default: the file's "
                                                      "name).")] = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Add an ISO image from a file: a raw disk of content type iso on DOMAIN, filled with
    the file (shared domains take ISOs through an upload, the image transfer service)."""
    with file.open("rb") as image:
        if not is_iso9660(image.read(HEADER_BYTES)):
            raise ApiError(f"{file} is not an ISO 9660 image")
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = resolve(client, "storagedomains", "storage_domain", domain)
        storage: dict[str, Any] = found.get("storage", {})
        directory = Path(str(storage.get("path", "")))
        if storage.get("type") != "localfs" or not directory.is_dir():
            raise ApiError(f"storage domain {found['name']} is not a local domain on this "
                           "machine; upload the ISO with an image transfer instead")
        disk = client.post("/disks", {
            "name": name or file.name, "content_type": "iso", "format": "raw",
            "provisioned_size": max(MIB, file.stat().st_size),
            "storage_domains": {"storage_domain": [{"id": found["id"]}]}})
        _wait_ok(client, disk["id"])
        volumes = list(directory.glob(f"images/{disk['id']}.*"))
        if len(volumes) != 1:
            raise ApiError(f"the volume of ISO disk {disk['id']} is not in {directory}/images")
        with file.open("rb") as source, volumes[0].open("r+b") as target:
            target.truncate(0)
            shutil.copyfileobj(source, target, 4 * MIB)
        disk = client.get(f"/disks/{disk['id']}")
    report(disk, json, f"ISO {disk['name']} added to storage domain {found['name']} "
           f"({disk['id']})")
