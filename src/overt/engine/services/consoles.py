"""Console tickets: a one-time VNC password with an expiry, set on the VM's host by a job.

The API's `ticket` action and the web portal's console both ask here; neither talks to
the node itself. The password goes to the node in the job's parameters and is wiped
from them as soon as the job ends.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from overt.engine.db.tables import Job, User, Vm
from overt.engine.jobs.kinds import SetTicket
from overt.engine.model.errors import Conflict, InvalidInput
from overt.engine.model.vm_actions import VmAction, check_vm_action
from overt.engine.queries import lookup
from overt.engine.services.jobs import JobSubmitter

DEFAULT_EXPIRY_S = 120
MAX_EXPIRY_S = 86400


@dataclass(frozen=True)
class TicketRequest:
    job: Job
    password: str
    expiry_s: int


MIN_PASSWORD = 6


def new_password() -> str:
    """VNC passwords are at most 8 characters; these are random, URL-safe ones."""
    return secrets.token_urlsafe(6)[:8]


async def request_ticket(session: AsyncSession, jobs: JobSubmitter, vm_id: uuid.UUID, user: User,
                         *, password: str | None = None, expiry_s: int | None = None
                         ) -> TicketRequest:
    """Submit the job that sets a console ticket on a running VM's host."""
    vm = await lookup.get(session, Vm, vm_id)
    if vm.host_id is None:
        raise Conflict(f"Cannot open the console of VM {vm.name}: it is {vm.status}; "
                       "start it first.")
    check_vm_action(VmAction.TICKET, vm.status, vm_name=vm.name)
    if vm.origin == "external":
        raise Conflict(f"VM {vm.name} is external (not created by Overt); its console is "
                       "not managed by the engine")
    if password is not None and not MIN_PASSWORD <= len(password) <= 8:
        raise InvalidInput(f"ticket.value must be {MIN_PASSWORD} to 8 characters (a VNC "
                           "password; shorter ones are guessed in moments)")
    expiry = DEFAULT_EXPIRY_S if expiry_s is None else expiry_s
    if not 1 <= expiry <= MAX_EXPIRY_S:
        raise InvalidInput(f"ticket.expiry must be between 1 and {MAX_EXPIRY_S} seconds, "
                           f"not {expiry}")
    value = password or new_password()
    job = await jobs.submit(session, SetTicket(vm_id=vm.id, host_id=vm.host_id, password=value,
                                               expiry_s=expiry),
                            description=f"Setting a console ticket for VM {vm.name}",
                            owner_id=user.id)
    return TicketRequest(job=job, password=value, expiry_s=expiry)


def connection_file(*, vm_id: uuid.UUID, vm_name: str, address: str, port: int, password: str,
                    expiry_s: int, engine_host: str, sso_token: str, ca_pem: str) -> str:
    """A remote-viewer connection file (.vv) as oVirt's engine writes it: the console to open
    with its one-time password, and an [ovirt] section remote-viewer uses to ask the engine
    for a fresh ticket (with the CA on one line, newlines escaped)."""
    lines = [
        "[virt-viewer]",
        "type=vnc",
        f"host={address}",
        f"port={port}",
        f"password={password}",
        f"# Password is valid for {expiry_s} seconds.",
        "delete-this-file=1",
        "fullscreen=0",
        f"title={vm_name}:%d",
        "toggle-fullscreen=shift+f11",
        "release-cursor=shift+f12",
        "secure-attention=ctrl+alt+end",
        "",
        "[ovirt]",
        f"host={engine_host}",
        f"vm-guid={vm_id}",
        f"sso-token={sso_token}",
        "admin=1",
        "ca=" + ca_pem.replace("\n", "\\n"),
    ]
    return "\n".join(lines) + "\n"
