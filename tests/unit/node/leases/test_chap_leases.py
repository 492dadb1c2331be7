"""Leases on an iSCSI domain with CHAP: the keeper's qemu-storage-daemon gets the password
as a secret object read from a 0600 file (never on its command line), and a restarted
keeper opens the areas again with the credentials it kept (0600)."""

from __future__ import annotations

import json
import os
import stat
import sys
import uuid
from pathlib import Path

import pytest

from overt.node.leases.export import AREA_SIZE, DomainExport, DomainRef
from overt.node.leases.keeper import DomainAreas, Keeper
from overt.node.storage.chap import secret_id
from overt.protocol.vm import ChapAuth, IscsiSource, LeaseSpec
from tests.unit.node.leases.test_keeper import Node, storage  # noqa: F401 - a fixture

TARGET = "iqn.2024-01.dev.overt:chap"
PASSWORD = "Chap-Secret-0451"
LUN = IscsiSource(portal="10.77.1.10", target=TARGET, lun=1,
                  chap=ChapAuth(username="init1", password=PASSWORD))

# A stand-in for qemu-storage-daemon: records its arguments and what each secret file it
# is given holds (and its mode) as it starts, then serves the areas as plain files.
FAKE_DAEMON = f"""#!{sys.executable}
import json, os, stat, sys, time
args = sys.argv[1:]
secrets = {{}}
for arg in args:
    if arg.startswith("secret,"):
        fields = dict(f.split("=", 1) for f in arg.split(",")[1:])
        path = fields["file"]
        secrets[fields["id"]] = [open(path).read(), stat.S_IMODE(os.stat(path).st_mode)]
    if arg.startswith("type=fuse,"):
        fields = dict(f.split("=", 1) for f in arg.split(","))
        with open(fields["mountpoint"], "wb") as area:
            area.truncate({AREA_SIZE})
with open(os.environ["FAKE_DAEMON_RECORD"], "w") as out:
    json.dump({{"argv": args, "secrets": secrets}}, out)
time.sleep(60)
"""


def test_an_iscsi_areas_blockdev_names_the_user_and_secret_never_the_password() -> None:
    ref = DomainRef(uuid.UUID(int=7), LUN.portal, "/", LUN)
    line = " ".join(ref.blockdevs("xleases"))
    assert f"user=init1,password-secret={secret_id(TARGET)}" in line
    assert PASSWORD not in line
    plain = DomainRef(uuid.UUID(int=7), LUN.portal, "/", LUN.model_copy(update={"chap": None}))
    assert "user=" not in " ".join(plain.blockdevs("ids"))


async def test_the_storage_daemon_reads_the_password_from_a_0600_file_gone_afterwards(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    daemon = bin_dir / "qemu-storage-daemon"
    daemon.write_text(FAKE_DAEMON)
    daemon.chmod(0o755)
    record = tmp_path / "record.json"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DAEMON_RECORD", str(record))
    export = DomainExport(DomainRef(uuid.UUID(int=7), LUN.portal, "/", LUN), tmp_path / "run")
    try:
        await export.start()
        seen = json.loads(record.read_text())
    finally:
        await export.stop()
    assert seen["secrets"] == {secret_id(TARGET): [PASSWORD, 0o600]}
    assert PASSWORD not in " ".join(seen["argv"])
    assert seen["argv"][:2] == ["--object", seen["argv"][1]]  # objects before the blockdevs
    files = [arg.split("file=")[1].split(",")[0] for arg in seen["argv"]
             if arg.startswith("secret,")]
    assert files and not any(os.path.exists(f) for f in files)  # noqa: ASYNC240, PTH110


async def test_a_restarted_keeper_opens_a_chap_domain_again_with_its_credentials(
        storage: Path) -> None:  # noqa: F811 - the fixture
    a = Node(storage, storage / "a")
    seen: list[DomainRef] = []

    async def open_domain(ref: DomainRef) -> DomainAreas:
        seen.append(ref)
        return await a.open_domain(ref)
    spec = LeaseSpec(domain_id=uuid.UUID(int=7), server=LUN.portal, lun=LUN, slot=5,
                     io_timeout_s=0.2)
    vm = uuid.uuid4()
    first = Keeper(a.keeper.host_id, storage / "a", open_domain, a.stop_vm)
    await first.acquire(vm, spec)
    held = storage / "a" / "held.json"
    assert stat.S_IMODE(held.stat().st_mode) == 0o600
    again = Keeper(a.keeper.host_id, storage / "a", open_domain, a.stop_vm)
    await again.adopt()
    assert list(again.status()["vms"]) == [str(vm)] and a.stopped == []
    assert [ref.lun.chap for ref in seen if ref.lun] == [LUN.chap, LUN.chap]
    assert PASSWORD not in repr(seen[-1])
