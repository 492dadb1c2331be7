"""What a new engine database starts with: the Default data center and cluster, the Blank
template, the ovirtmgmt network and the admin@internal user."""

from __future__ import annotations

import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.database import Database
from overt.engine.db.tables import (
    Cluster,
    DataCenter,
    MacPool,
    Network,
    Template,
    User,
    VnicProfile,
)
from overt.engine.identity.passwords import generate_password, hash_password, verify_password
from overt.engine.model.status import DataCenterStatus, NetworkUsage
from overt.pki.certs import write_private

BLANK_TEMPLATE_ID = uuid.UUID(int=0)
ADMIN = "admin@internal"
MANAGEMENT_NETWORK = "ovirtmgmt"


async def seed(db: Database) -> None:
    """Create the default objects that are missing (idempotent)."""
    async with db.transaction() as session:
        dc = (await session.execute(select(DataCenter).where(DataCenter.name == "Default"))
              ).scalar_one_or_none()
        if dc is None:
            dc = DataCenter(id=uuid.uuid4(), name="Default", description="The default Data Center",
                            status=DataCenterStatus.UP)
            session.add(dc)
            await session.flush()
        if (await session.execute(select(Cluster).where(Cluster.name == "Default"))).first() is None:
            session.add(Cluster(id=uuid.uuid4(), name="Default", description="The default cluster",
                                data_center_id=dc.id))
        if await session.get(Template, BLANK_TEMPLATE_ID) is None:
            session.add(Template(id=BLANK_TEMPLATE_ID, name="Blank",
                                 description="Blank template", memory_mib=1024))
        network = (await session.execute(select(Network).where(
            Network.name == MANAGEMENT_NETWORK, Network.data_center_id == dc.id))).scalar_one_or_none()
        if network is None:
            network = Network(id=uuid.uuid4(), name=MANAGEMENT_NETWORK,
                              description="Management Network", data_center_id=dc.id,
                              usages=[NetworkUsage.VM.value, NetworkUsage.MANAGEMENT.value,
                                      NetworkUsage.DISPLAY.value, NetworkUsage.MIGRATION.value,
                                      NetworkUsage.DEFAULT_ROUTE.value],
                              bridge=MANAGEMENT_NETWORK)
            session.add(network)
            await session.flush()
            session.add(VnicProfile(id=uuid.uuid4(), name=MANAGEMENT_NETWORK, network_id=network.id))
        await ensure_default_mac_pool(session)


async def ensure_admin(db: Database, *, password: str | None, password_file: Path) -> str | None:
    """Make sure admin@internal exists; return its password when one was just generated.

    A password given in the settings (OVERT_ADMIN_PASSWORD) always wins; otherwise the
    first start generates one and writes it to `password_file` (owner-only).
    """
    async with db.transaction() as session:
        admin = (await session.execute(select(User).where(User.user_name == ADMIN))
                 ).scalar_one_or_none()
        if admin is None:
            admin = User(id=uuid.uuid4(), user_name=ADMIN, domain="internal", administrator=True)
            session.add(admin)
        generated = None
        if password is not None:
            if not verify_password(password, admin.password_hash):
                admin.password_hash = hash_password(password)
        elif admin.password_hash is None:
            generated = generate_password()
            admin.password_hash = hash_password(generated)
    if generated is not None:
        write_private(password_file, (generated + "\n").encode())
    elif password is not None:
        write_private(password_file, (password + "\n").encode())
    return generated


DEFAULT_MAC_POOL_ID = uuid.UUID("58ca604b-017d-0374-0220-00000000025b")
DEFAULT_MAC_RANGE = ("56:6f:00:00:00:00", "56:6f:ff:ff:ff:ff")


async def ensure_default_mac_pool(session: AsyncSession) -> MacPool:
    pool = await session.get(MacPool, DEFAULT_MAC_POOL_ID)
    if pool is None:
        pool = MacPool(id=DEFAULT_MAC_POOL_ID, name="Default",
                       description="Default MAC pool", default_pool=True,
                       ranges=[list(DEFAULT_MAC_RANGE)])
        session.add(pool)
        await session.flush()
    return pool
