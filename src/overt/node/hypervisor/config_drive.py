"""cloud-init config drives: a VM's NoCloud files as an ISO 9660 image labelled `cidata`.

The image may hold a password, so it is readable by QEMU alone (mode 0600, owned by the
user QEMU runs as) in a directory nobody may list, and it lives only while its VM runs:
written at start, removed when the VM stops.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import pwd
import uuid
from pathlib import Path

import pycdlib

from overt.protocol.vm import ConfigDriveSpec

log = logging.getLogger(__name__)

DEFAULT_DIR = Path("/var/lib/overt/config-drives")
VOLUME_LABEL = "cidata"  # what cloud-init's NoCloud data source looks for
QEMU_USERS = ("libvirt-qemu", "qemu")


def iso_image(drive: ConfigDriveSpec) -> bytes:
    """The ISO 9660 image (Rock Ridge and Joliet names) of the drive's files."""
    files = {"meta-data": drive.meta_data, "user-data": drive.user_data}
    if drive.network_config is not None:
        files["network-config"] = drive.network_config
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_LABEL)
    for name, text in files.items():
        data = text.encode()
        short = name.replace("-", "").upper()[:8]
        iso.add_fp(io.BytesIO(data), len(data), f"/{short}.;1", rr_name=name,
                   joliet_path=f"/{name}")
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


class ConfigDrives:
    """The config drives of the VMs running on this node, one file per VM id."""

    def __init__(self, directory: Path = DEFAULT_DIR) -> None:
        self.directory = directory

    def path(self, vm_id: uuid.UUID) -> Path:
        return self.directory / f"{vm_id}.iso"

    def write(self, vm_id: uuid.UUID, drive: ConfigDriveSpec) -> Path:
        """Write the VM's drive (replacing an older one) and give it to QEMU's user."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.directory.chmod(0o711)  # QEMU may open a file it knows the name of, not list
        path = self.path(vm_id)
        partial = path.with_suffix(".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(iso_image(drive))
        partial.chmod(0o600)
        owner = _qemu_user()
        if owner is not None and os.geteuid() == 0:
            os.chown(partial, owner.pw_uid, owner.pw_gid)
        partial.replace(path)
        log.info("config drive written", extra={"vm_id": str(vm_id)})
        return path

    def remove(self, vm_id: uuid.UUID) -> None:
        path = self.path(vm_id)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            log.info("config drive removed", extra={"vm_id": str(vm_id)})


def _qemu_user() -> pwd.struct_passwd | None:
    for name in QEMU_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None
