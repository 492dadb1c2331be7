"""The provisioning profiles in the TFTP root: one iPXE script per MAC with a profile (and
`default.ipxe` for the default profile), and the node images they name."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import ProvisioningProfile
from overt.engine.netsvc.pxe import copy_if_changed, write_if_changed
from overt.engine.provisioning.boot import ProfileBoot, image_file, scripts
from overt.engine.provisioning.images import NodeImages


async def read_profiles(db: Database) -> list[ProfileBoot]:
    async with db.transaction() as session:
        rows = (await session.execute(select(ProvisioningProfile).order_by(
            ProvisioningProfile.name))).scalars()
        return [ProfileBoot(r.name, r.mac, r.image, r.kernel_args) for r in rows]


def publish(root: Path, profiles: list[ProfileBoot], images: NodeImages, *, base: str,
            engine_url: str, ca_fingerprint: str | None) -> set[str]:
    """Write the profiles' scripts and images; remove those of profiles gone. Returns the
    names of the boot files now served (for the HTTP server)."""
    usable = [p for p in profiles if images.get(p.image) is not None]
    wanted = scripts(usable, base=base, engine_url=engine_url, ca_fingerprint=ca_fingerprint)
    served: set[str] = set()
    for profile in usable:
        image = images.get(profile.image)
        assert image is not None
        for which, source in (("vmlinuz", image.kernel), ("initrd.img", image.initrd)):
            name = image_file(image.name, which)
            copy_if_changed(source, root / name)
            served.add(name)
    for name, text in wanted.items():
        write_if_changed(root / name, text)
    for stale in [*root.glob("mac-*.ipxe"), *root.glob("default.ipxe"), *root.glob("node-*")]:
        if stale.name not in wanted and stale.name not in served:
            stale.unlink(missing_ok=True)
    return served
