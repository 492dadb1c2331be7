"""Provisioning profiles: checked before anything is written, and a node that booted from
one lands, once approved, in the profile's cluster."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from overt.engine.db.database import Database
from overt.engine.db.tables import AuditEvent, Cluster, Host, ProvisioningProfile
from overt.engine.enrollment.registry import Registry
from overt.engine.model.errors import Conflict, InvalidInput, OvertError
from overt.engine.model.status import HostStatus
from overt.engine.pki.authority import EnginePki
from overt.engine.provisioning.images import NodeImages
from overt.engine.queries.lookup import Ref
from overt.engine.services import hosts
from overt.engine.services import provisioning as service
from overt.engine.services.provisioning import ProfileInput
from overt.protocol.enrollment import EnrollmentStatus
from overt.protocol.hardware import HardwareFacts, NicFact
from tests.integration.engine.enrollment.users import administrator
from tests.security.conftest import FakeNode

MAC = "52:54:00:ab:cd:ef"


def _images(tmp_path: Path) -> NodeImages:
    (tmp_path / "images" / "node-2026").mkdir(parents=True)
    for name in ("vmlinuz", "initrd.img"):
        (tmp_path / "images" / "node-2026" / name).write_bytes(b"x")
    return NodeImages(tmp_path / "images")


async def _add(db: Database, images: NodeImages, data: ProfileInput) -> ProvisioningProfile:
    admin = await administrator(db)
    async with db.transaction() as session:
        return await service.add_profile(session, images, data, admin)


async def _counts(db: Database) -> tuple[int, int]:
    async with db.transaction() as session:
        profiles = (await session.execute(select(func.count()).select_from(
            ProvisioningProfile))).scalar_one()
        events = (await session.execute(select(func.count()).select_from(AuditEvent))
                  ).scalar_one()
    return profiles, events


@pytest.mark.parametrize(("data", "error", "message"), [
    (ProfileInput(name="p", image="no-such-image"), InvalidInput, "is not a node image"),
    (ProfileInput(name="p", image="../node-2026"), InvalidInput, "is not a node image"),
    (ProfileInput(name="p", image="node-2026", mac="52:54:00"), InvalidInput, "not a MAC"),
    (ProfileInput(name="p", image="node-2026", kernel_args="a\nreboot"), InvalidInput,
     "one line"),
    (ProfileInput(name="bad name", image="node-2026"), InvalidInput, "name is required"),
    (ProfileInput(name="p", image="node-2026", cluster=Ref(name="nowhere")), InvalidInput,
     "nowhere"),
    (ProfileInput(name="p", image="node-2026", mac=MAC.upper()), Conflict, "already the profile"),
    (ProfileInput(name="taken", image="node-2026", mac="52:54:00:00:00:01"), Conflict,
     "already exists"),
])
async def test_a_bad_profile_is_refused_and_changes_nothing(
        db: Database, tmp_path: Path, data: ProfileInput, error: type[OvertError],
        message: str) -> None:
    images = _images(tmp_path)
    await _add(db, images, ProfileInput(name="taken", image="node-2026", mac=MAC))
    before = await _counts(db)
    with pytest.raises(error, match=message):
        await _add(db, images, data)
    assert await _counts(db) == before


async def test_there_is_one_default_profile(db: Database, tmp_path: Path) -> None:
    images = _images(tmp_path)
    await _add(db, images, ProfileInput(name="any", image="node-2026"))
    with pytest.raises(Conflict, match="default profile"):
        await _add(db, images, ProfileInput(name="any2", image="node-2026"))


async def test_a_node_booted_from_a_profile_joins_its_cluster_once_approved(
        db: Database, tmp_path: Path) -> None:
    images = _images(tmp_path)
    async with db.transaction() as session:
        default = (await session.execute(select(Cluster))).scalars().first()
        assert default is not None
        rack = Cluster(id=uuid.uuid4(), name="rack1", data_center_id=default.data_center_id)
        session.add(rack)
    await _add(db, images, ProfileInput(name="rack1-node3", image="node-2026", mac=MAC,
                                        cluster=Ref(name="rack1")))
    pki = EnginePki(tmp_path / "pki", addresses=["127.0.0.1"])
    pki.ensure()
    registry = Registry(db, pki, gateway_url="https://127.0.0.1:1")
    node, stranger = FakeNode(), FakeNode()
    facts = HardwareFacts(boot_mac=MAC, nics=(NicFact(name="eno1", mac=MAC),))
    request = node.request().model_copy(update={"hardware": facts})
    assert (await registry.announce(request)).status is EnrollmentStatus.PENDING_APPROVAL
    await registry.announce(stranger.request())

    async with db.transaction() as session:
        pending = (await session.execute(select(Host).where(
            Host.host_uuid == node.host_uuid))).scalar_one()
        other = (await session.execute(select(Host).where(
            Host.host_uuid == stranger.host_uuid))).scalar_one()
        assert (pending.cluster_id, other.cluster_id) == (rack.id, default.id)
        await hosts.approve_host(session, pending.id, await administrator(db))
    grant = await registry.announce(request)
    assert grant.status is EnrollmentStatus.APPROVED and grant.certificate_pem
    async with db.transaction() as session:
        host = await session.get(Host, pending.id)
        assert host is not None
        assert (host.status, host.cluster_id) == (HostStatus.CONNECTING, rack.id)
        events = [e.description for e in (await session.execute(select(AuditEvent))).scalars()]
    assert any("(provisioning profile rack1-node3)" in e and "into cluster rack1" in e
               for e in events)


async def test_a_profile_changes_and_goes(db: Database, tmp_path: Path) -> None:
    images, admin = _images(tmp_path), await administrator(db)
    row = await _add(db, images, ProfileInput(name="p", image="node-2026", mac=MAC))
    async with db.transaction() as session:
        changed = await service.update_profile(session, images, row.id, ProfileInput(
            mac="", kernel_args="quiet"), admin)
        assert (changed.mac, changed.kernel_args) == (None, "quiet")  # now the default
    async with db.transaction() as session:
        with pytest.raises(InvalidInput, match="is not a node image"):
            await service.update_profile(session, images, row.id,
                                         ProfileInput(image="gone"), admin)
    async with db.transaction() as session:
        assert (await service.get_profile(session, row.id)).image == "node-2026"
        await service.remove_profile(session, row.id, admin)
    assert (await _counts(db))[0] == 0
