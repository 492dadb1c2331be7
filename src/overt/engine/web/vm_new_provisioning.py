"""The create form's boot order, CD and cloud-init fields: read from the form into what
the VM service takes, and the ISOs offered (refusals are the same as the API's)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Disk, StorageDomain
from overt.engine.model.errors import InvalidInput
from overt.engine.model.initialization import Initialization, check_initialization
from overt.engine.model.status import DiskStatus
from overt.engine.services import cdroms

BOOT_CHOICES = (("hd", "Hard disk"), ("cdrom", "CD-ROM"), ("network", "Network"))
BOOT_FIELDS = ("boot1", "boot2", "boot3")
CLOUD_INIT_FIELDS = ("ci_host_name", "ci_user_name", "ci_ssh_keys", "ci_custom_script")
DEFAULTS = {"boot1": "hd", "boot2": "", "boot3": "", "iso": "",
            **dict.fromkeys(CLOUD_INIT_FIELDS, "")}


async def iso_choices(session: AsyncSession) -> dict[str, Any]:
    """The ISO disks ready to go in a CD, with their domain's name."""
    rows = (await session.execute(
        select(Disk, StorageDomain.name).join(StorageDomain,
                                              StorageDomain.id == Disk.storage_domain_id)
        .where(Disk.content_type == cdroms.ISO, Disk.status == DiskStatus.OK)
        .order_by(Disk.name))).all()
    return {"isos": rows, "boot_choices": BOOT_CHOICES}


def boot_devices(form: dict[str, str]) -> list[str]:
    """The devices chosen, in order, empty choices skipped; each at most once."""
    allowed = {value for value, _ in BOOT_CHOICES}
    devices = [d for field in BOOT_FIELDS if (d := form.get(field, "").strip())]
    for device in devices:
        if device not in allowed:
            raise InvalidInput(f"boot device {device!r} is not one of hd, cdrom, network")
    if len(set(devices)) != len(devices):
        raise InvalidInput("the boot order names a device twice")
    return devices or ["hd"]


def initialization(form: dict[str, str]) -> Initialization | None:
    """The cloud-init fieldset, checked as the API checks `<initialization>` (None when
    every field is empty)."""
    def value(key: str) -> str | None:
        return form.get(key, "").strip() or None

    script = form.get("ci_custom_script", "").replace("\r\n", "\n")
    init = Initialization(host_name=value("ci_host_name"), user_name=value("ci_user_name"),
                          authorized_ssh_keys=value("ci_ssh_keys"),
                          custom_script=script if script.strip() else None)
    if init == Initialization():
        return None
    return check_initialization(init)
