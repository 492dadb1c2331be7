"""oVirt's on-storage metadata: KEY=VALUE lines, the domain's SHA-1 checksum, the volume's
EOF line; and where the engine puts a volume on a shared domain."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest

from overt.engine.db.tables import StorageDomain
from overt.engine.jobs.handlers.storage_domains import is_image_leaf
from overt.engine.queries.shared_storage import (
    extent_of,
    extent_path,
    extent_size,
    lun_of,
    split_volume_path,
    volume_path,
)
from overt.engine.secrets import Secret, SecretBox
from overt.node.storage import iscsi_domain
from overt.protocol.ovirt_metadata import parse_metadata, render_metadata
from overt.protocol.storage import IscsiLunRef, StoredVolume
from overt.protocol.vm import DiskFormat


def test_domain_metadata_carries_ovirts_checksum_of_its_lines() -> None:
    text = render_metadata({"SDUUID": "abc", "CLASS": "Data", "POOL_UUID": ""},
                           checksum=True, eof=False).decode()
    lines = text.splitlines()
    assert lines[:3] == ["CLASS=Data", "POOL_UUID=", "SDUUID=abc"]
    expected = hashlib.sha1(b"CLASS=DataPOOL_UUID=SDUUID=abc", usedforsecurity=False)
    assert lines[3] == f"_SHA_CKSUM={expected.hexdigest()}"
    assert parse_metadata(text)["POOL_UUID"] == ""


def test_rewritten_metadata_gets_a_fresh_checksum() -> None:
    first = parse_metadata(render_metadata({"A": "1"}, checksum=True, eof=False).decode())
    again = render_metadata({**first, "A": "2"}, checksum=True, eof=False).decode()
    assert again.count("_SHA_CKSUM=") == 1
    assert first["_SHA_CKSUM"] not in again


def test_volume_metadata_ends_at_eof() -> None:
    text = render_metadata({"FORMAT": "COW", "CAP": "1024"}, checksum=False, eof=True).decode()
    assert text.splitlines()[-1] == "EOF"
    assert parse_metadata(text + "JUNK=1\n") == {"CAP": "1024", "FORMAT": "COW"}


def test_values_keep_their_equal_signs() -> None:
    assert parse_metadata('DESCRIPTION={"a":"b=c"}\nnot a line\n') == {
        "DESCRIPTION": '{"a":"b=c"}'}


def test_a_volume_lies_under_the_domains_id_on_storage() -> None:
    sd, on_storage, image, volume = (uuid.uuid4() for _ in range(4))
    imported = StorageDomain(id=sd, storage_uuid=on_storage)
    path = volume_path(imported, image, volume)
    assert path == f"{on_storage}/images/{image}/{volume}"
    assert split_volume_path(path) == (image, volume)
    with pytest.raises(ValueError, match="not a volume"):
        split_volume_path(f"images/{image}.qcow2")


def test_an_iscsi_volume_is_an_extent_with_room_for_its_qcow2_tables() -> None:
    sd, image, volume = (uuid.uuid4() for _ in range(3))
    domain = StorageDomain(id=sd, storage_uuid=sd, path="iqn.2026-11.org.example:t/3",
                           address="10.0.0.2:3260")
    path = extent_path(domain, 1 << 20, 8 << 20, image, volume)
    assert extent_of(path) == (1 << 20, 8 << 20)
    assert split_volume_path(path) == (image, volume)
    assert extent_of(f"{sd}/images/{image}/{volume}") is None
    assert extent_size("raw", 5 << 20) == 5 << 20
    assert extent_size("cow", 1 << 30) >= (1 << 30) + (1 << 30) // 8192 + (1 << 20)
    assert extent_size("cow", 1 << 30) % (1 << 20) == 0
    lun = lun_of(domain, None)  # no CHAP: nothing to open
    assert (lun.portal, lun.target, lun.lun) == ("10.0.0.2:3260", "iqn.2026-11.org.example:t", 3)


def test_a_luns_chap_password_is_opened_with_the_box_it_is_given(tmp_path: Path) -> None:
    box = SecretBox(tmp_path)
    domain = StorageDomain(id=uuid.uuid4(), name="san", path="iqn.2026-11.org.example:t/3",
                           address="10.0.0.2:3260", chap_username="init1",
                           chap_password_sealed=box.seal(Secret("chap-secret")))
    chap = lun_of(domain, box).chap
    assert chap is not None and (chap.username, chap.password) == ("init1", "chap-secret")
    with pytest.raises(RuntimeError, match="without the engine's secret box"):
        lun_of(domain, None)  # no process-wide box to fall back on
    with pytest.raises(ValueError, match="another engine key"):
        lun_of(domain, SecretBox(tmp_path / "other"))


def test_an_import_adopts_each_images_leaf_over_its_snapshot_volumes() -> None:
    top = "00000000-0000-0000-0000-000000000000"
    image, other = uuid.uuid4(), uuid.uuid4()
    base, middle, leaf, thin = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def volume(image_id: uuid.UUID, volume_id: uuid.UUID, parent: str, kind: str
               ) -> StoredVolume:
        return StoredVolume(image_id=image_id, volume_id=volume_id,
                            metadata={"PUUID": parent, "VOLTYPE": kind, "LEGALITY": "LEGAL"},
                            format=DiskFormat.QCOW2, virtual_size=1, actual_size=1)
    volumes = [volume(image, base, top, "INTERNAL"), volume(image, middle, str(base), "INTERNAL"),
               volume(image, leaf, str(middle), "LEAF"),
               volume(other, thin, str(base), "LEAF")]  # a thin disk over another image
    assert [v.volume_id for v in volumes if is_image_leaf(v, volumes)] == [leaf]
    broken = [v for v in volumes if v.volume_id != middle]  # a hole in the chain
    assert [v.volume_id for v in broken if is_image_leaf(v, broken)] == []


def test_a_backing_name_qemu_wrote_after_a_live_merge_names_the_same_extent() -> None:
    """libvirt gives QEMU a `<slices>` volume's backing name as the window alone (keys in
    its own order, the format apart); `extent_format` writes the window in its format:
    both name the same extent, and another extent is told apart."""
    mib = 1 << 20
    lun = IscsiLunRef(portal="10.9.9.9", target="iqn.2026-11.dev.overt:lun", lun=1)
    ours = json.loads(iscsi_domain.image_json(iscsi_domain.window(
        lun, 3 * mib, 13 * mib, DiskFormat.QCOW2))[5:])
    libvirts = {"driver": "raw", "offset": 3 * mib, "size": 13 * mib, "file": {
        "lun": 1, "portal": "10.9.9.9:3260", "driver": "iscsi", "transport": "tcp",
        "target": "iqn.2026-11.dev.overt:lun"}}
    assert iscsi_domain._slice(ours) == iscsi_domain._slice(libvirts) == (
        "iqn.2026-11.dev.overt:lun", 1, 3 * mib, 13 * mib)
    assert iscsi_domain._slice({**libvirts, "offset": 16 * mib}) != iscsi_domain._slice(ours)
    assert iscsi_domain._slice({"driver": "file", "filename": "/x"}) is None
