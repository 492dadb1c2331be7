"""The node's sealing command around virt-sysprep: what it is given, and what a user reads
when it fails, overruns or is missing (a stand-in virt-sysprep on PATH; the real one runs
in tests/e2e/demo, test_a_sealed_template_loses_the_vms_identity_and_its_vms_boot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from overt.node.errors import NodeFailure
from overt.node.storage import sealing
from overt.node.storage.local import LocalVolumes
from overt.protocol.storage import VolumeSeal
from overt.protocol.vm import DiskFormat, FileSource, IscsiSource, NfsSource


def _stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> Path:
    """A `virt-sysprep` on PATH running `body`; its arguments and environment recorded."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "virt-sysprep"
    monkeypatch.setattr(sealing, "_defaults", [])
    script.write_text("#!/bin/sh\n[ \"$1\" = --list-operations ] && { echo 'machine-id * "
                      "Remove the local machine ID'; echo 'ssh-hostkeys * Remove'; exit 0; }\n"
                      "echo \"$@\" > \"$(dirname \"$0\")/args\"\n"
                      "echo \"$LIBGUESTFS_BACKEND $LIBGUESTFS_BACKEND_SETTINGS\" > "
                      "\"$(dirname \"$0\")/env\"\n" + body)
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def _replace_body(tmp_path: Path, body: str) -> None:
    script = tmp_path / "bin" / "virt-sysprep"
    text = script.read_text()
    script.write_text(text[:text.index("\n", text.index("/env")) + 1] + body)


def _volume(tmp_path: Path) -> tuple[VolumeSeal, LocalVolumes]:
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "t.qcow2").write_bytes(b"")
    return (VolumeSeal(volume=FileSource(path=str(tmp_path / "images" / "t.qcow2")),
                       timeout_s=2),
            LocalVolumes(tmp_path / "images", ()))


async def test_a_local_volume_is_sealed_as_a_file_under_tcg(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = _stand_in(tmp_path, monkeypatch, 'echo \'[  28.0] Performing "machine-id" ...\'\n'
                        'echo \'[  30.1] Performing "ssh-hostkeys" ...\'\n')
    command, volumes = _volume(tmp_path)
    report = await sealing.seal_volume(command, volumes, tcg=True)
    assert report.operations == ["machine-id", "ssh-hostkeys"]
    assert sealing._defaults == [2]  # its defaults, for the progress
    assert (bin_dir / "args").read_text().split() == [
        "--operations", "defaults,-customize", "--format", "qcow2", "-a",
        str(tmp_path / "images" / "t.qcow2")]
    assert (bin_dir / "env").read_text().split() == ["direct", "force_tcg"]


async def test_virt_sysprep_failing_or_overrunning_is_said_in_its_words(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stand_in(tmp_path, monkeypatch, "echo '[   0.0] Examining the guest ...'\n"
              "echo 'virt-sysprep: error: no operating systems were found in the guest "
              "image' >&2\nexit 1\n")
    command, volumes = _volume(tmp_path)
    with pytest.raises(NodeFailure, match=r"failed: virt-sysprep: error: no operating "
                       "systems were found in the guest image$"):
        await sealing.seal_volume(command, volumes, tcg=False)
    _replace_body(tmp_path, "sleep 30\n")
    with pytest.raises(NodeFailure, match="virt-sysprep did not finish within 2 s"):
        await sealing.seal_volume(command, volumes, tcg=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(NodeFailure, match="needs virt-sysprep on the host"):
        await sealing.seal_volume(command, volumes, tcg=False)


def test_shared_volumes_are_exported_by_qemu_nbd(tmp_path: Path) -> None:
    socket = tmp_path / "nbd.sock"
    nfs = VolumeSeal(volume=NfsSource(server="10.0.0.5", path="/export/d/images/i/v"))
    assert sealing._nbd_argv(nfs, socket, [])[-3:] == [
        "--format", "qcow2", "nfs://10.0.0.5/export/d/images/i/v"]
    iscsi = VolumeSeal(volume=IscsiSource(portal="10.0.0.6:3260", target="iqn.x:t", lun=1,
                                          offset=1 << 30, size=1 << 29),
                       format=DiskFormat.QCOW2)
    image = sealing._nbd_argv(iscsi, socket, [])[-1]
    assert image.startswith('json:{"driver":"qcow2","file":{"driver":"raw"')
    assert '"offset":1073741824' in image and '"target":"iqn.x:t"' in image


async def test_an_unreachable_shared_volume_is_said_as_such(tmp_path: Path) -> None:
    command = VolumeSeal(volume=NfsSource(server="127.0.0.1:1", path="/nowhere/v"))
    with pytest.raises(NodeFailure, match=r"sealing nfs://127\.0\.0\.1:1/nowhere/v "
                       r"failed: qemu-nbd could not open it: qemu-nbd: Failed to blk_new_open"):
        async with sealing.nbd_export(command):
            pass


def test_progress_follows_virt_sysprep_s_lines() -> None:
    progress = sealing.SealProgress(running=True, stage="starting")
    progress = sealing._advanced(progress, "[   0.0] Examining the guest ...\n", 4)
    assert (progress.stage, progress.percent) == ("examining the guest", 10)
    for line in ('[  28.0] Performing "machine-id" ...', "(a line of its own)",
                 '[  30.1] Performing "ssh-hostkeys" ...'):
        progress = sealing._advanced(progress, line, 4)
    assert (progress.stage, progress.operations_done, progress.percent) == (
        "ssh-hostkeys", 2, 55)
