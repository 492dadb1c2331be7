"""Config drives: an ISO 9660 image labelled cidata, private to QEMU, gone with its run."""

from __future__ import annotations

import io
import os
import uuid
from pathlib import Path

import pycdlib

from overt.node.hypervisor.config_drive import ConfigDrives, iso_image
from overt.protocol.vm import ConfigDriveSpec

DRIVE = ConfigDriveSpec(user_data="#cloud-config\nhostname: \"web1\"\n",
                        meta_data="instance-id: \"i-1\"\n", network_config="version: 1\n")


def _read(image: bytes) -> tuple[str, dict[str, bytes]]:
    iso = pycdlib.PyCdlib()
    iso.open_fp(io.BytesIO(image))
    try:
        label = iso.pvd.volume_identifier.decode().strip()
        files = {}
        for name in ("user-data", "meta-data", "network-config"):
            out = io.BytesIO()
            try:
                iso.get_file_from_iso_fp(out, rr_path=f"/{name}")
            except pycdlib.pycdlibexception.PyCdlibInvalidInput:
                continue
            files[name] = out.getvalue()
        return label, files
    finally:
        iso.close()


def test_the_image_is_labelled_cidata_and_holds_the_nocloud_files() -> None:
    label, files = _read(iso_image(DRIVE))
    assert label == "cidata"
    assert files == {"user-data": DRIVE.user_data.encode(), "meta-data": DRIVE.meta_data.encode(),
                     "network-config": b"version: 1\n"}


def test_without_network_config_the_file_is_absent() -> None:
    _label, files = _read(iso_image(DRIVE.model_copy(update={"network_config": None})))
    assert set(files) == {"user-data", "meta-data"}


def test_a_drive_is_private_and_removed(tmp_path: Path) -> None:
    drives = ConfigDrives(tmp_path / "drives")
    vm_id = uuid.uuid4()
    path = drives.write(vm_id, DRIVE)
    assert path == tmp_path / "drives" / f"{vm_id}.iso"
    assert path.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "drives").stat().st_mode & 0o777 == 0o711
    if os.geteuid() == 0:  # root gives it to the user QEMU runs as
        import pwd
        assert pwd.getpwuid(path.stat().st_uid).pw_name in ("libvirt-qemu", "qemu")
    assert _read(path.read_bytes())[1]["user-data"] == DRIVE.user_data.encode()
    drives.remove(vm_id)
    assert not path.exists()
    drives.remove(vm_id)  # removing twice is fine: a stop may be seen twice


def test_the_user_data_is_not_in_the_specs_repr() -> None:
    secret = DRIVE.model_copy(update={"user_data": "password: \"hunter2\""})
    assert "hunter2" not in repr(secret)
