"""oVirt's iSCSI discovery, login and LUN list on a host (`IscsiOnHost`); the API waits
for the job and answers with its result. A host has no kernel session: a login is a LUN
list that worked (the target let the host in with these credentials), remembered on the
host's row (`hosts.iscsi_logins`, the password sealed) for its later LUN lists."""

from __future__ import annotations

from typing import Any

from overt.engine.db.tables import Host
from overt.engine.jobs.context import JobContext, Unit
from overt.engine.jobs.errors import JobFailed
from overt.engine.jobs.kinds import IscsiOnHost, JobSpec
from overt.engine.model.status import HostStatus
from overt.engine.model.volume_labels import area_problem
from overt.engine.nodes import NodeCommandFailed
from overt.engine.queries import lookup
from overt.protocol.ovirt_metadata import parse_metadata
from overt.protocol.storage import DOMAIN_AREA, IscsiDiscover, IscsiLunList, IscsiLunRef, LunRead
from overt.protocol.vm import ChapAuth

ISCSI_TIMEOUT_S = 45.0  # the node gives a portal 20 s per request


def _chap(ctx: JobContext, username: str | None, sealed: str | None) -> ChapAuth | None:
    if not username:
        return None
    password = ctx.services.secret_box().open(sealed or "").reveal()
    return ChapAuth(username=username, password=password)


def login_key(address: str, port: int, target: str) -> str:
    return f"{address}:{port}/{target}"


async def iscsi_on_host(ctx: JobContext, spec: IscsiOnHost) -> dict[str, Any]:
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, spec.host_id)
    if host.status != HostStatus.UP:
        raise JobFailed(f"host {host.name} is {host.status}, not up")
    try:
        if spec.op == "discover":
            async with ctx.step(f"Discovering the iSCSI targets of {spec.address}:{spec.port} "
                                f"from host {host.name}", host_id=host.id):
                found = await ctx.nodes.call(host, IscsiDiscover(
                    portal=f"{spec.address}:{spec.port}",
                    chap=_chap(ctx, spec.chap_username, spec.chap_password_sealed)),
                    timeout_s=ISCSI_TIMEOUT_S)
            return {"targets": [t.model_dump(mode="json") for t in found.targets]}
        if spec.op == "read":
            return await _read_area(ctx, spec, host)
        logins: list[dict[str, Any]] = [{"address": spec.address, "port": spec.port, "target": spec.target,
                   "username": spec.chap_username,
                   "password_sealed": spec.chap_password_sealed}] if spec.target else \
            list(host.iscsi_logins or [])
        listed = []
        for login in logins:
            async with ctx.step(f"Listing the LUNs of {login['target']} on "
                                f"{login['address']}:{login['port']} from host {host.name}",
                                host_id=host.id):
                luns = await ctx.nodes.call(host, IscsiLunList(
                    portal=f"{login['address']}:{login['port']}", target=login["target"],
                    chap=_chap(ctx, login.get("username"), login.get("password_sealed"))),
                    timeout_s=ISCSI_TIMEOUT_S)
            listed.append({"address": login["address"], "port": login["port"],
                           "target": login["target"], "username": login.get("username"),
                           "luns": [lun.model_dump(mode="json") for lun in luns.luns]})
    except NodeCommandFailed as failed:
        raise JobFailed(failed.error.message) from None
    # A login is remembered; every login the list saw keeps its LUNs (number, SCSI id,
    # size, serial, vendor, product): what a direct LUN disk named by SCSI id is resolved
    # with, and what an iSCSI domain's `logical_unit` shows.
    seen = {login_key(e["address"], e["port"], e["target"]): e["luns"] for e in listed}
    async with ctx.transaction() as session:
        host = await lookup.get(session, Host, spec.host_id, for_update=True)
        entries = [dict(entry) for entry in host.iscsi_logins or []]
        if spec.op == "login":
            assert spec.address is not None and spec.target is not None
            key = login_key(spec.address, spec.port, spec.target)
            entries = [entry for entry in entries
                       if login_key(entry["address"], entry["port"], entry["target"]) != key]
            entries.append(dict(logins[0]))
        for entry in entries:
            found_luns = seen.get(login_key(entry["address"], entry["port"], entry["target"]))
            if found_luns is not None:
                entry["luns"] = found_luns
        if entries != (host.iscsi_logins or []):
            host.iscsi_logins = entries
    return {"logins": listed}


async def _read_area(ctx: JobContext, spec: IscsiOnHost, host: Host) -> dict[str, Any]:
    """What an import checks before it records anything: the LUN's number (found by its
    SCSI id in the target's LUN list when named so; None when no LUN has that id), size,
    and the keys of its metadata area, without its volume lines."""
    assert spec.address is not None and spec.target is not None
    portal = f"{spec.address}:{spec.port}"
    chap = _chap(ctx, spec.chap_username, spec.chap_password_sealed)
    number = spec.lun
    if number is None:
        async with ctx.step(f"Listing the LUNs of {spec.target} on {portal} from host "
                            f"{host.name}", host_id=host.id):
            luns = await ctx.nodes.call(host, IscsiLunList(portal=portal, target=spec.target,
                                                           chap=chap),
                                        timeout_s=ISCSI_TIMEOUT_S)
        number = next((lun.lun for lun in luns.luns if lun.scsi_id == spec.scsi_id), None)
        if number is None:
            return {"lun": None}
    async with ctx.step(f"Reading the metadata area of LUN {spec.target}/{number} of "
                        f"{portal} from host {host.name}", host_id=host.id):
        found = await ctx.nodes.call(host, LunRead(lun=IscsiLunRef(
            portal=portal, target=spec.target, lun=number, chap=chap)),
            timeout_s=ISCSI_TIMEOUT_S)
    area = parse_metadata(found.metadata)
    return {"lun": number, "size_bytes": found.size_bytes,
            "problem": area_problem(area, lun_size=found.size_bytes, first_extent=DOMAIN_AREA),
            "area": {k: v for k, v in area.items() if not k.startswith("VOL_")}}


UNITS: dict[type[JobSpec], Unit[Any]] = {IscsiOnHost: Unit(iscsi_on_host)}
