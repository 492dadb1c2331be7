"""`overt vm` and `overt host` against a running engine, as an administrator uses them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import ovirtsdk4 as sdk
import pytest
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Cluster, Disk, StorageDomain
from overt.engine.model.status import DiskStatus, StorageDomainStatus
from tests.support.engine import RunningEngine, start_engine
from tests.support.no_nodes import NoNodes

# Each command is a new Python process: seconds each, so out of the fast lane.
pytestmark = pytest.mark.slow
# A well-formed OpenSSH ed25519 public key's data (the engine checks its fields).
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    running = start_engine(tmp_path_factory.mktemp("engine"), transport=NoNodes())
    yield running
    running.stop()


def cli(engine: RunningEngine, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OVERT_URL": engine.url, "OVERT_PASSWORD": engine.password,
           "OVERT_CA_FILE": str(engine.ca_file)}
    return subprocess.run([sys.executable, "-m", "overt", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_create_list_and_remove(engine: RunningEngine) -> None:
    created = cli(engine, "vm", "create", "cli-1", "--memory", "256M", "--cpus", "2", "--json")
    assert created.returncode == 0, created.stderr
    vm = json.loads(created.stdout)
    assert vm["name"] == "cli-1" and vm["memory"] == 256 * 2**20
    listed = cli(engine, "vm", "list", "--json")
    assert [v["name"] for v in json.loads(listed.stdout)] == ["cli-1"]
    table = cli(engine, "vm", "list")
    assert "cli-1" in table.stdout and "down" in table.stdout and "256 MiB" in table.stdout
    removed = cli(engine, "vm", "remove", "cli-1")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(cli(engine, "vm", "list", "--json").stdout) == []


def test_failures_are_explained_without_a_traceback(engine: RunningEngine) -> None:
    assert cli(engine, "vm", "create", "cli-2", "--memory", "128M").returncode == 0
    started = cli(engine, "vm", "start", "cli-2")
    assert started.returncode == 1
    assert "There is no host that satisfies current scheduling constraints" in started.stderr
    assert "Traceback" not in started.stderr
    missing = cli(engine, "vm", "start", "no-such-vm")
    assert missing.returncode == 1
    assert "there is no vm named 'no-such-vm'" in missing.stderr
    twice = cli(engine, "vm", "create", "cli-2")
    assert twice.returncode == 1 and "already in use" in twice.stderr


def test_host_list_and_bad_credentials(engine: RunningEngine) -> None:
    hosts = cli(engine, "host", "list", "--json")
    assert hosts.returncode == 0 and json.loads(hosts.stdout) == []
    env = {**os.environ, "OVERT_URL": engine.url, "OVERT_PASSWORD": "wrong",
           "OVERT_CA_FILE": str(engine.ca_file)}
    denied = subprocess.run([sys.executable, "-m", "overt", "host", "list"], capture_output=True,
                            text=True, env=env, timeout=60, check=False)
    assert denied.returncode == 1 and "login failed" in denied.stderr


def test_iso_add_refuses_a_file_that_is_not_an_iso(engine: RunningEngine,
                                                   tmp_path: Path) -> None:
    not_iso = tmp_path / "disk.qcow2"
    not_iso.write_bytes(b"QFI\xfb" + b"\0" * 40000)
    refused = cli(engine, "iso", "add", str(not_iso), "--domain", "local")
    assert refused.returncode != 0
    assert "is not an ISO 9660 image" in refused.stderr + refused.stdout
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        assert conn.system_service().disks_service().list() == []
    finally:
        conn.close()


def _iso_disk(engine: RunningEngine, name: str) -> str:
    """An ISO disk on a local domain of the Default data center, as its upload leaves it."""
    async def insert() -> str:
        db = Database(engine.runtime.settings.database_url())
        try:
            async with db.transaction() as session:
                cluster = (await session.execute(select(Cluster).where(
                    Cluster.name == "Default"))).scalar_one()
                domain = StorageDomain(id=uuid.uuid4(), name=f"{name}-sd",
                                       storage_type="localfs", path=f"/var/tmp/{name}-sd",
                                       data_center_id=cluster.data_center_id,
                                       status=StorageDomainStatus.ACTIVE)
                session.add(domain)
                await session.flush()
                disk = Disk(id=uuid.uuid4(), name=name, storage_domain_id=domain.id,
                            provisioned_size=4 << 20, format="raw", sparse=False,
                            status=DiskStatus.OK, image_path=f"images/{name}",
                            content_type="iso")
                session.add(disk)
                return str(disk.id)
        finally:
            await db.dispose()
    return asyncio.run(insert())


def _cd(engine: RunningEngine, vm_id: str) -> str | None:
    """The ISO disk id in the VM's cdrom (next run), through the SDK."""
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    try:
        cdrom = conn.system_service().vms_service().vm_service(vm_id).cdroms_service().list()[0]
        return cdrom.file.id if cdrom.file is not None and cdrom.file.id else None
    finally:
        conn.close()


def test_create_with_boot_order_iso_and_cloud_init(engine: RunningEngine,
                                                   tmp_path: Path) -> None:
    iso = _iso_disk(engine, "cli-boot.iso")
    key = tmp_path / "id.pub"
    key.write_text(f"ssh-ed25519 {ED25519} me@x\n")
    password = tmp_path / "root"
    password.write_text("s3cret\n")
    script = tmp_path / "cloud.yaml"
    script.write_text("runcmd:\n  - echo hi\n")
    created = cli(engine, "vm", "create", "cli-prov", "--network", "", "--boot",
                  "network,cdrom,hd", "--iso", "cli-boot.iso", "--hostname", "prov1",
                  "--user-name", "ops", "--ssh-key", str(key), "--root-password-file",
                  str(password), "--cloud-init-script", str(script), "--json")
    assert created.returncode == 0, created.stderr
    vm = json.loads(created.stdout)
    assert vm["os"]["boot"]["devices"]["device"] == ["network", "cdrom", "hd"]
    init = vm["initialization"]
    assert (init["host_name"], init["user_name"]) == ("prov1", "ops")
    assert init["authorized_ssh_keys"].startswith("ssh-ed25519 ")
    assert init["custom_script"] == "runcmd:\n  - echo hi\n"
    assert _cd(engine, vm["id"]) == iso
    ejected = cli(engine, "vm", "cdrom", "cli-prov", "--eject")
    assert ejected.returncode == 0, ejected.stderr
    assert "CD ejected in VM cli-prov, for the VM's next start" in ejected.stdout
    assert _cd(engine, vm["id"]) is None
    inserted = cli(engine, "vm", "cdrom", "cli-prov", "--iso", "cli-boot.iso")
    assert inserted.returncode == 0, inserted.stderr
    assert "ISO cli-boot.iso inserted in VM cli-prov" in inserted.stdout
    assert _cd(engine, vm["id"]) == iso


def test_create_refuses_bad_boot_devices_and_keys(engine: RunningEngine,
                                                  tmp_path: Path) -> None:
    bad_boot = cli(engine, "vm", "create", "cli-bad", "--boot", "hd,floppy")
    assert bad_boot.returncode == 2
    assert "unknown boot device floppy" in bad_boot.stderr
    key = tmp_path / "bad.pub"
    key.write_text("not a key\n")
    bad_key = cli(engine, "vm", "create", "cli-bad", "--ssh-key", str(key))
    assert bad_key.returncode == 1 and "Traceback" not in bad_key.stderr
    assert "authorized_ssh_keys" in bad_key.stderr, bad_key.stderr
    no_iso = cli(engine, "vm", "create", "cli-bad", "--iso", "nope.iso")
    assert no_iso.returncode == 1 and "there is no ISO image named 'nope.iso'" in no_iso.stderr
    names = [v["name"] for v in json.loads(cli(engine, "vm", "list", "--json").stdout)]
    assert "cli-bad" not in names
    neither = cli(engine, "vm", "cdrom", "cli-bad")
    assert neither.returncode == 2 and "give either --iso NAME or --eject" in neither.stderr
