"""What `overt vm create` and `overt vm cdrom` send for a VM's boot order, its CD and
cloud-init: checked here where the API would only say less clearly what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from overt.cli.client import ApiClient, ApiError

BOOT_DEVICES = ("hd", "cdrom", "network")
# The VM's one cdrom, as the API names it (oVirt's all-zero id).
CDROM_ID = "00000000-0000-0000-0000-000000000000"


def parse_boot(value: str | None) -> list[str] | None:
    """`network,cdrom,hd` as a list kept in order; a device the API does not know is a
    usage error (exit status 2) before anything is sent."""
    if value is None:
        return None
    devices = [d.strip().lower() for d in value.split(",") if d.strip()]
    bad = [d for d in devices if d not in BOOT_DEVICES]
    if bad or not devices:
        raise typer.BadParameter(
            f"unknown boot device {', '.join(bad) or '(none given)'}; "
            f"use a comma-separated list of {', '.join(BOOT_DEVICES)}", param_hint="--boot")
    if len(set(devices)) != len(devices):
        raise typer.BadParameter("a boot device is given twice", param_hint="--boot")
    return devices


def _read(path: Path | None, option: str) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}",
                                 param_hint=option) from None


def initialization(hostname: str | None, user: str | None, ssh_key: Path | None,
                   root_password_file: Path | None, script: Path | None) -> dict[str, Any] | None:
    """The `initialization` body from the options given (None when none is); the files'
    contents are sent as they are, the password's without its final newline."""
    body: dict[str, Any] = {}
    if hostname:
        body["host_name"] = hostname
    if user:
        body["user_name"] = user
    if (keys := _read(ssh_key, "--ssh-key")) is not None:
        body["authorized_ssh_keys"] = keys.strip()
    if (password := _read(root_password_file, "--root-password-file")) is not None:
        body["root_password"] = password.rstrip("\n")
    if (custom := _read(script, "--cloud-init-script")) is not None:
        body["custom_script"] = custom
    return body or None


def iso_id(client: ApiClient, name: str) -> str:
    """The id of the ISO disk named so (disks of content type iso)."""
    isos = [d for d in client.get("/disks").get("disk", [])
            if d.get("content_type") == "iso" and (d["name"] == name or d["id"] == name)]
    if not isos:
        raise ApiError(f"there is no ISO image named {name!r} (see overt iso list)")
    return str(isos[0]["id"])
