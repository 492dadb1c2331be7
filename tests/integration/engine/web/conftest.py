"""The portal's pages over HTTP against one engine per test module, with no nodes: the
engine, a signed-in client with its CSRF token, the SDK, and an ISO on a local domain."""

from __future__ import annotations

import re
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import ovirtsdk4 as sdk
import pytest
from sqlalchemy import select

from overt.engine.db.tables import Cluster, Disk, StorageDomain
from overt.engine.model.status import DiskStatus, StorageDomainStatus
from tests.support.engine import RunningEngine
from tests.support.no_nodes import engine_with_admin


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    with engine_with_admin(Path(tmp_path_factory.mktemp("engine"))) as (engine, _admin):
        yield engine


@pytest.fixture(scope="module")
def setup(engine: RunningEngine) -> dict[str, str]:
    """The Default cluster's id and an ISO disk on a local domain of its data center."""
    async def insert() -> dict[str, str]:
        async with engine.runtime.db.transaction() as session:
            cluster = (await session.execute(select(Cluster).where(
                Cluster.name == "Default"))).scalar_one()
            domain = StorageDomain(id=uuid.uuid4(), name="isos", storage_type="localfs",
                                   path="/var/tmp/isos", data_center_id=cluster.data_center_id,
                                   status=StorageDomainStatus.ACTIVE)
            session.add(domain)
            await session.flush()
            disk = Disk(id=uuid.uuid4(), name="installer.iso", storage_domain_id=domain.id,
                        provisioned_size=4 << 20, format="raw", sparse=False,
                        status=DiskStatus.OK, image_path="images/installer.iso",
                        content_type="iso")
            session.add(disk)
            return {"cluster": str(cluster.id), "iso": str(disk.id)}
    return engine.run(insert())


@pytest.fixture(scope="module")
def portal(engine: RunningEngine) -> Iterator[tuple[httpx.Client, str]]:
    client = httpx.Client(base_url=engine.url.removesuffix("/ovirt-engine/api"), timeout=30,
                          verify=ssl.create_default_context(cafile=str(engine.ca_file)))
    client.get("/signin")
    answer = client.post("/signin", data={"csrf_token": client.cookies["overt_signin"],
                                          "username": "admin@internal",
                                          "password": engine.password, "next": "/"})
    assert answer.status_code == 303, answer.text[:500]
    form = client.get("/vms/new")
    found = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert found is not None, form.text[:500]
    yield client, found.group(1)
    client.close()


@pytest.fixture(scope="module")
def api(engine: RunningEngine) -> Iterator[sdk.Connection]:
    conn = sdk.Connection(url=engine.url, username="admin@internal", password=engine.password,
                          ca_file=str(engine.ca_file))
    yield conn
    conn.close()
