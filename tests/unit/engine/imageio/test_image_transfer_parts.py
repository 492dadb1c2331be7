"""The pure parts of image transfers: the phases each action needs, the daemon's
configuration, qemu-nbd's command line, a ticket's contents and where a volume opens."""

from __future__ import annotations

import configparser
import uuid
from pathlib import Path

import pytest

from overt.engine.db.tables import Disk, StorageDomain
from overt.engine.imageio.daemon import DaemonFiles, render_config
from overt.engine.imageio.exports import NbdExport
from overt.engine.model.errors import Conflict
from overt.engine.services.image_transfers import (
    ACTION_FROM,
    Direction,
    Phase,
    Transfer,
    check_action,
    volume_source,
)


def _transfer(direction: Direction, phase: Phase) -> Transfer:
    export = NbdExport("/d/v", "qcow2", Path("/run/x.sock"),
                       read_only=direction is Direction.DOWNLOAD)
    return Transfer(id=uuid.uuid4(), disk_id=uuid.uuid4(), direction=direction, format="raw",
                    image_size=1 << 30, inactivity_timeout=60, ticket_id="t-1",
                    transfer_url="https://e:54323/images/t-1", source="/d/v", export=export,
                    phase=phase)


@pytest.mark.parametrize("action", sorted(ACTION_FROM))
@pytest.mark.parametrize("phase", list(Phase))
def test_each_action_is_allowed_in_exactly_its_phases(action: str, phase: Phase) -> None:
    transfer = _transfer(Direction.UPLOAD, phase)
    if phase in ACTION_FROM[action]:
        check_action(transfer, action)
    else:
        with pytest.raises(Conflict, match=f"Cannot {action} image transfer .*{phase.value}"):
            check_action(transfer, action)


def test_a_download_ticket_only_reads_and_an_upload_ticket_reads_and_writes() -> None:
    down = _transfer(Direction.DOWNLOAD, Phase.TRANSFERRING).ticket()
    up = _transfer(Direction.UPLOAD, Phase.TRANSFERRING).ticket()
    assert down["ops"] == ["read"] and up["ops"] == ["read", "write"]
    assert up["url"] == "nbd:unix:/run/x.sock" and up["size"] == 1 << 30
    assert up["uuid"] == "t-1" and isinstance(up["timeout"], int) and up["timeout"] > 0


def test_qemu_nbd_serves_a_download_read_only() -> None:
    argv = NbdExport("nfs://10.0.0.2/export/sd/images/i/v", "qcow2", Path("/s.sock"),
                     read_only=True).argv(direct=False)
    assert argv[0] == "qemu-nbd" and "--read-only" in argv
    assert argv[argv.index("--format") + 1] == "qcow2"
    assert argv[-1] == "nfs://10.0.0.2/export/sd/images/i/v"
    assert "--cache=writeback" in argv
    direct = NbdExport("/v", "raw", Path("/s"), read_only=False).argv(direct=True)
    assert "--read-only" not in direct and "--cache=none" in direct


def test_the_daemon_serves_tls_with_the_engines_files_and_logs_no_tickets(tmp_path: Path) -> None:
    files = DaemonFiles(tmp_path, cert_file=Path("/pki/engine.pem"),
                        key_file=Path("/pki/engine.key"), ca_file=Path("/pki/ca.pem"))
    parser = configparser.RawConfigParser()
    parser.read_string(render_config(files, address="0.0.0.0", port=54323))  # noqa: S104
    assert parser["tls"]["enable"] == "true"
    assert parser["tls"]["cert_file"] == "/pki/engine.pem"
    assert parser["remote"]["port"] == "54323"
    assert parser["local"]["enable"] == "false"
    assert parser["control"]["socket"] == str(files.control_socket)
    assert parser["logger_root"]["level"] == "WARNING"


def test_a_volume_opens_as_an_nfs_url_or_a_local_file(tmp_path: Path) -> None:
    disk = Disk(name="d", image_path="sd/images/i/v")
    nfs = StorageDomain(name="n", storage_type="nfs", address="10.0.0.2", path="/export/")
    assert volume_source(nfs, disk) == "nfs://10.0.0.2/export/sd/images/i/v"
    with pytest.raises(Conflict, match="iSCSI"):
        volume_source(StorageDomain(name="s", storage_type="iscsi", path=""), disk)
    local = StorageDomain(name="l", storage_type="localfs", path=str(tmp_path))
    with pytest.raises(Conflict, match="not on the engine's machine"):
        volume_source(local, disk)
    (tmp_path / "sd/images/i").mkdir(parents=True)
    (tmp_path / "sd/images/i/v").write_bytes(b"")
    assert volume_source(local, disk) == str(tmp_path / "sd/images/i/v")
