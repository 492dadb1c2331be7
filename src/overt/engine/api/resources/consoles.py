"""/vms/{id}/graphicsconsoles: a VM's VNC console as oVirt presents it, with a one-time ticket
and a remote-viewer connection file (.vv), and the `display` facts of a running VM.

oVirt names a console by its protocol in hex ("vnc" -> 766e63); Overt's VMs have one VNC
console each. The .vv file follows oVirt's ConsoleDescriptorGenerator, so remote-viewer
opens it as it opens oVirt's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response

from overt.engine.api.context import ApiContext, href
from overt.engine.api.resources.common import action_params
from overt.engine.api.routing import ApiRoutes
from overt.engine.api.views import actions, ref
from overt.engine.api.wire.render import Representation
from overt.engine.db.tables import Host, Vm
from overt.engine.model.errors import NotFound
from overt.engine.queries import lookup
from overt.engine.services import consoles
from overt.engine.services.jobs import wait_for_job

routes = ApiRoutes()

PROTOCOL = "vnc"
CONSOLE_ID = PROTOCOL.encode().hex()
TICKET_WAIT_S = 30.0
FILE_TICKET_EXPIRY_S = 120  # oVirt's ConsoleOptions.TICKET_VALIDITY_SECONDS


async def display(ctx: ApiContext, vm: Vm) -> Representation:
    """A VM's `display`: where its console listens while it runs (what libgovirt reads)."""
    address, port = await _listening(ctx, vm)
    return display_at(address, port)


def display_at(address: str | None, port: int | None) -> Representation:
    """`display` of a VM whose console listens on `address`:`port` (None: it does not);
    listings look the addresses of all their VMs' hosts up at once."""
    rep: Representation = {"type": PROTOCOL, "monitors": 1, "single_qxl_pci": False,
                           "allow_override": False, "smartcard_enabled": False}
    if port is not None:
        rep.update({"address": address, "port": port})
    return rep


def listens(vm: Vm) -> bool:
    """Whether `vm`'s console listens somewhere (on its host) now."""
    return vm.host_id is not None and vm.vnc_port is not None


async def _listening(ctx: ApiContext, vm: Vm) -> tuple[str | None, int | None]:
    if not listens(vm) or vm.host_id is None:
        return None, None
    host = await ctx.session.get(Host, vm.host_id)
    return (host.address, vm.vnc_port) if host is not None else (None, None)


async def _console_view(ctx: ApiContext, vm: Vm) -> Representation:
    base = href("vms", vm.id, "graphicsconsoles", CONSOLE_ID)
    address, port = await _listening(ctx, vm)
    return {"href": base, "id": CONSOLE_ID,
            "actions": actions(base, "ticket", "remoteviewerconnectionfile"),
            "protocol": PROTOCOL, "address": address, "port": port,
            "vm": ref("vms", vm.id)}


async def _console_vm(ctx: ApiContext) -> Vm:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    if ctx.path_params["console_id"] != CONSOLE_ID:
        raise NotFound(f"VM {vm.name} has no graphics console {ctx.path_params['console_id']}; "
                       f"its console is {CONSOLE_ID} ({PROTOCOL})")
    return vm


@routes.get("/vms/{vm_id}/graphicsconsoles")
async def list_consoles(ctx: ApiContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    return ctx.render_list("graphics_consoles", "graphics_console", [await _console_view(ctx, vm)])


@routes.get("/vms/{vm_id}/graphicsconsoles/{console_id}")
async def get_console(ctx: ApiContext) -> Response:
    return ctx.render("graphics_console", await _console_view(ctx, await _console_vm(ctx)))


async def ticket_params(ctx: ApiContext) -> tuple[str | None, int | None]:
    """The password and expiry an `<action><ticket>` asks for (none: the engine picks)."""
    if not (await ctx.request.body()).strip():
        return None, None
    given = (await ctx.body("action")).child("ticket")
    if given is None:
        return None, None
    return given.get_str("value") or None, given.get_int("expiry", minimum=1)


@routes.post("/vms/{vm_id}/graphicsconsoles/{console_id}/ticket")
async def ticket(ctx: ApiContext) -> Response:
    vm = await _console_vm(ctx)
    password, expiry = await ticket_params(ctx)
    request = await consoles.request_ticket(ctx.session, ctx.services.jobs, vm.id, ctx.user,
                                            password=password, expiry_s=expiry)
    ctx.then = ticket_answer(ctx, request)
    return ctx.render("action", {"status": "pending"})


def ticket_answer(ctx: ApiContext, request: consoles.TicketRequest
                  ) -> Callable[[], Awaitable[Response]]:
    """The answer once the ticket's job has set it on the host (after the commit)."""
    async def answer() -> Response:
        await wait_for_job(ctx.request.app.state.db, request.job.id, timeout_s=TICKET_WAIT_S,
                           what="setting the console ticket")
        return ctx.render("action", {"ticket": {"value": request.password,
                                                "expiry": request.expiry_s},
                                     "status": "complete"})
    return answer


@routes.post("/vms/{vm_id}/graphicsconsoles/{console_id}/remoteviewerconnectionfile")
async def remote_viewer_connection_file(ctx: ApiContext) -> Response:
    vm = await _console_vm(ctx)
    await action_params(ctx)
    request = await consoles.request_ticket(ctx.session, ctx.services.jobs, vm.id, ctx.user,
                                            expiry_s=FILE_TICKET_EXPIRY_S)
    vm_id, vm_name = vm.id, vm.name

    async def answer() -> Response:
        await wait_for_job(ctx.request.app.state.db, request.job.id, timeout_s=TICKET_WAIT_S,
                           what="setting the console ticket")
        async with ctx.request.app.state.db.transaction() as session:
            row = await session.get(Vm, vm_id)
            host = await session.get(Host, row.host_id) if row and row.host_id else None
            if row is None or host is None or row.vnc_port is None:
                raise NotFound(f"VM {vm_name} stopped before its console could be described")
            address, port = host.address, row.vnc_port
        text = consoles.connection_file(
            vm_id=vm_id, vm_name=vm_name, address=address, port=port,
            password=request.password, expiry_s=request.expiry_s,
            engine_host=ctx.request.headers.get("host", ""),
            sso_token=_bearer_token(ctx),
            ca_pem=ctx.services.ca_certificate.read_text())
        return ctx.render("action", {"remote_viewer_connection_file": text,
                                     "status": "complete"})

    ctx.then = answer
    return ctx.render("action", {"status": "pending"})


def _bearer_token(ctx: ApiContext) -> str:
    """The caller's own SSO token (remote-viewer uses it to ask for fresh tickets); callers
    with Basic credentials have none."""
    scheme, _, token = ctx.request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
