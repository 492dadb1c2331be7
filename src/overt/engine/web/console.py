"""The VM console in the browser: noVNC against a websocket proxy in the engine.

The page asks for a ticket (a one-time VNC password set on the VM's host by a job,
as the API's `ticket` action does) and a one-time proxy token bound to the session
and the VM. The browser then opens /console/VM/ws?token=..., and the engine bridges
that websocket to the node's VNC port: the node's port never reaches the browser.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit

from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from overt.engine.db.tables import Host, Vm
from overt.engine.model.errors import NotFound, OvertError
from overt.engine.queries import lookup
from overt.engine.services import consoles
from overt.engine.services.jobs import wait_for_job
from overt.engine.web import sessions
from overt.engine.web.context import WebContext, page
from overt.engine.web.session_watch import until_signed_out

log = logging.getLogger(__name__)

TICKET_WAIT_S = 30.0
TICKET_EXPIRY_S = 120
CHUNK = 64 * 1024
# The ports libvirt gives VNC servers (qemu.conf remote_display_port_min/max): the proxy
# connects to nothing else, whatever port a node reports.
VNC_PORTS = range(5900, 65536)
CONNECT_TIMEOUT_S = 10.0


@page
async def console_page(ctx: WebContext) -> Response:
    vm = await lookup.get(ctx.session, Vm, ctx.id_param("vm_id"))
    return ctx.render("console.html", nav="vms", vm=vm)


@page
async def console_ticket(ctx: WebContext) -> Response:
    """POST: a VNC ticket and a proxy token for this session, as JSON for the console page."""
    vm_id = ctx.id_param("vm_id")
    ctx.on_error = json_error
    request = await consoles.request_ticket(ctx.session, ctx.services.jobs, vm_id, ctx.user,
                                            expiry_s=TICKET_EXPIRY_S)
    return await answer_with_ticket(ctx, vm_id, request)


async def answer_with_ticket(ctx: WebContext, vm_id: uuid.UUID,
                             request: consoles.TicketRequest) -> Response:
    """Issue the one-time proxy token; once committed, wait for the node to set the ticket
    and answer the console page with both (the admin portal's and the VM Portal's)."""
    token = await sessions.issue_console_token(ctx.session, ctx.web_session, vm_id)

    async def answer() -> Response:
        try:
            await wait_for_job(ctx.request.app.state.db, request.job.id, timeout_s=TICKET_WAIT_S,
                               what="setting the console ticket")
        except OvertError as exc:
            return JSONResponse({"error": f"{exc.reason}: {exc.detail}"}, exc.status)
        return JSONResponse({"password": request.password, "expiry": request.expiry_s,
                             "url": f"/console/{vm_id}/ws?token={token}"},
                            headers={"Cache-Control": "no-store"})

    ctx.then = answer
    return Response(status_code=204)


async def json_error(exc: OvertError) -> Response:
    return JSONResponse({"error": f"{exc.reason}: {exc.detail}"}, exc.status)


def _same_origin(websocket: WebSocket) -> bool:
    """Browsers send Origin on websockets; only this portal's own pages may connect."""
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host")
    return bool(origin and host and urlsplit(origin).netloc == host)


async def _console_target(websocket: WebSocket, vm_id_raw: str) -> tuple[str, int] | None:
    """The node address and VNC port behind a valid one-time token, else None."""
    try:
        async with websocket.app.state.db.transaction() as session:
            found = await sessions.find_session(session, websocket.cookies.get(sessions.COOKIE))
            if found is None:
                return None
            vm = await lookup.get(session, Vm, _uuid(vm_id_raw))
            if not await sessions.redeem_console_token(
                    session, websocket.query_params.get("token"), found[0], vm.id):
                return None
            if vm.host_id is None or vm.vnc_port is None:
                return None
            host = await lookup.get(session, Host, vm.host_id)
            return host.address, vm.vnc_port
    except NotFound:
        return None


def _uuid(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"there is no VM {raw!r}") from None


async def console_socket(websocket: WebSocket) -> None:
    """The proxy: one websocket <-> one TCP connection to the VM's VNC server."""
    if not _same_origin(websocket):
        log.warning("console websocket refused: it does not come from the portal's origin")
        await websocket.close(code=1008)
        return
    target = await _console_target(websocket, str(websocket.path_params["vm_id"]))
    if target is None:
        log.warning("console websocket refused: no valid one-time token for VM %s",
                    websocket.path_params["vm_id"])
        await websocket.close(code=1008)
        return
    address, port = target
    if port not in VNC_PORTS:
        log.warning("console of VM %s refused: its host reports VNC port %d, outside %d-%d",
                    websocket.path_params["vm_id"], port, VNC_PORTS.start, VNC_PORTS.stop - 1)
        await websocket.close(code=1008)
        return
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(address, port)
    except (OSError, TimeoutError) as exc:
        log.warning("console of VM %s: cannot reach %s:%d (%s)",
                    websocket.path_params["vm_id"], address, port, exc)
        await websocket.close(code=1011)
        return
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="binary" if "binary" in offered else None)
    log.info("console of VM %s opened", websocket.path_params["vm_id"])
    cookie = websocket.cookies.get(sessions.COOKIE, "")
    signed_out = until_signed_out(websocket.app.state.db, websocket.app.state.session_watch,
                                  cookie)
    try:
        await _bridge(websocket, reader, writer, signed_out)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()
        log.info("console of VM %s closed", websocket.path_params["vm_id"])


async def _bridge(websocket: WebSocket, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter, signed_out: Coroutine[Any, Any, None]) -> None:
    """Copy both ways until either side closes or the session ends."""
    async def browser_to_node() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None and message.get("text") is not None:
                data = message["text"].encode("latin-1")
            if data:
                writer.write(data)
                await writer.drain()

    async def node_to_browser() -> None:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                return
            await websocket.send_bytes(data)

    tasks = [asyncio.create_task(browser_to_node()), asyncio.create_task(node_to_browser()),
             asyncio.create_task(signed_out)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


ROUTES = [
    Route("/vms/{vm_id}/console", console_page),
    Route("/vms/{vm_id}/console/ticket", console_ticket, methods=["POST"]),
    WebSocketRoute("/console/{vm_id}/ws", console_socket),
]
