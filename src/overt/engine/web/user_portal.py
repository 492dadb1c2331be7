"""The VM Portal (oVirt's user portal): what a user without the SuperUser role signs in to.

They see the VMs they hold a role on, start, stop, shut down and reboot them, open
their consoles, and create VMs where a role allows it. Every request is authorized on
the server by the API's own rules (`authorization.check_route` with the API route the
request stands for), so a form posted for someone else's VM is refused as the API would
refuse it: not found when the user has no role on it, forbidden when the role lacks the
permit. Administrators may use it too (they see every VM).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

from sqlalchemy import select
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.api.authorization import check_route, require_vm_creation, vm_permits
from overt.engine.db.tables import Cluster, Template, User, Vm
from overt.engine.identity.access import Access, ancestors, load_access
from overt.engine.model.errors import InvalidInput, OvertError
from overt.engine.model.status import TemplateStatus
from overt.engine.model.vm_actions import VM_ACTIONS, VmAction
from overt.engine.queries import lookup
from overt.engine.queries.lookup import Ref
from overt.engine.services import consoles
from overt.engine.services import identity as identity_service
from overt.engine.services import vms as vm_service
from overt.engine.services.inputs import VmInput
from overt.engine.web import console
from overt.engine.web.context import WebContext, user_page

MIB = 1 << 20
# The buttons of a VM: (action, label, the state machine's action)
ACTIONS: dict[str, tuple[str, VmAction]] = {
    "start": ("Start", VmAction.START),
    "shutdown": ("Shut down", VmAction.SHUTDOWN),
    "reboot": ("Reboot", VmAction.REBOOT),
    "stop": ("Power off", VmAction.STOP),
}


def _done(what: str) -> Response:
    """Back to the list, which says what was done (post/redirect/get)."""
    return RedirectResponse(f"/user?done={quote(what, safe='')}", status_code=303)


def _access(ctx: WebContext) -> Access:
    assert ctx.access is not None  # the guard loads it for every page
    return ctx.access


async def _my_vms(ctx: WebContext) -> list[dict[str, Any]]:
    access = _access(ctx)
    rows = (await ctx.session.execute(
        select(Vm, Cluster.name).join(Cluster, Cluster.id == Vm.cluster_id)
        .where(access.visible("vm")).order_by(Vm.name))).all()
    shown = []
    for vm, cluster in rows:
        permits = await vm_permits(ctx.session, access, vm.id)
        operate = "vm_basic_operations" in permits
        shown.append({
            "vm": vm, "cluster": cluster,
            "buttons": [(name, label) for name, (label, action) in ACTIONS.items()
                        if operate and vm.status in VM_ACTIONS[action]],
            "console": "connect_to_vm" in permits and vm.host_id is not None
            and vm.status in VM_ACTIONS[VmAction.TICKET],
        })
    return shown


@user_page
async def my_vms(ctx: WebContext) -> Response:
    return ctx.render("user_vms.html", nav="myvms", rows=await _my_vms(ctx),
                      can_create=_access(ctx).anywhere("create_vm"),
                      notice=ctx.request.query_params.get("done", "")[:200])


@user_page
async def my_vms_fragment(ctx: WebContext) -> Response:
    """The table alone: the page refreshes it every few seconds (statuses change)."""
    return ctx.render("_user_vms_table.html", rows=await _my_vms(ctx),
                      can_create=_access(ctx).anywhere("create_vm"))


@user_page
async def vm_action(ctx: WebContext) -> Response:
    """A button of the list; refused unless the user holds the permit the API asks for."""
    vm_id = ctx.id_param("vm_id")
    name = str(ctx.request.path_params["action"])
    if name not in ACTIONS:
        raise InvalidInput(f"there is no VM action {name!r} here")
    await check_route(ctx.session, _access(ctx), "POST", f"/vms/{{vm_id}}/{name}",
                      {"vm_id": str(vm_id)})
    session, jobs, user = ctx.session, ctx.services.jobs, ctx.user
    if name == "start":
        await vm_service.start_vm(session, jobs, vm_id, user)
    elif name == "shutdown":
        await vm_service.shutdown_vm(session, jobs, vm_id, user)
    elif name == "reboot":
        await vm_service.reboot_vm(session, jobs, vm_id, user)
    else:
        await vm_service.stop_vm(session, jobs, vm_id, user)
    vm = await lookup.get(session, Vm, vm_id)
    label = ACTIONS[name][0]
    return _done(f"{label}: {vm.name}")


@user_page
async def console_page(ctx: WebContext) -> Response:
    vm_id = ctx.id_param("vm_id")
    await check_route(ctx.session, _access(ctx), "POST", "/vms/{vm_id}/ticket",
                      {"vm_id": str(vm_id)})
    vm = await lookup.get(ctx.session, Vm, vm_id)
    return ctx.render("console.html", nav="myvms", vm=vm, back_url="/user",
                      ticket_url=f"/user/vms/{vm.id}/console/ticket")


@user_page
async def console_ticket(ctx: WebContext) -> Response:
    """POST: a VNC ticket and a one-time proxy token, only with `connect_to_vm` on the VM."""
    vm_id = ctx.id_param("vm_id")
    ctx.on_error = console.json_error
    await check_route(ctx.session, _access(ctx), "POST", "/vms/{vm_id}/ticket",
                      {"vm_id": str(vm_id)})
    request = await consoles.request_ticket(ctx.session, ctx.services.jobs, vm_id, ctx.user,
                                            expiry_s=console.TICKET_EXPIRY_S)
    return await console.answer_with_ticket(ctx, vm_id, request)


# -- creating a VM -----------------------------------------------------------------------

async def _choices(ctx: WebContext) -> dict[str, Any]:
    """The clusters the user may create VMs in and the templates they may use."""
    access = _access(ctx)
    clusters = [c for c in (await ctx.session.execute(select(Cluster).order_by(Cluster.name))
                            ).scalars()
                if "create_vm" in access.permits_on(await ancestors(ctx.session, "cluster",
                                                                     c.id))]
    templates = list((await ctx.session.execute(select(Template).where(
        access.visible("template"), Template.status == TemplateStatus.OK)
        .order_by(Template.name))).scalars())
    return {"clusters": clusters, "templates": templates}


def _vm_input(form: dict[str, str]) -> VmInput:
    name = form.get("name", "").strip()
    if not name:
        raise InvalidInput("give the VM a name")
    refs = {}
    for key in ("cluster", "template"):
        try:
            refs[key] = Ref(id=uuid.UUID(form.get(key, "")))
        except ValueError:
            raise InvalidInput(f"choose a {key}") from None
    raw = form.get("memory_mib", "").strip()
    if not raw.isdigit() or not 16 <= int(raw) <= 64 * 1024:
        raise InvalidInput("Memory (MiB) must be a whole number between 16 and 65536")
    return VmInput(name=name, cluster=refs["cluster"], template=refs["template"],
                   memory_bytes=int(raw) * MIB, sockets=1)


@user_page
async def new_vm_form(ctx: WebContext) -> Response:
    choices = await _choices(ctx)
    form = {"name": "", "memory_mib": "256",
            "cluster": str(choices["clusters"][0].id) if choices["clusters"] else "",
            "template": str(choices["templates"][0].id) if choices["templates"] else ""}
    return ctx.render("user_vm_new.html", nav="newvm", form=form, error=None, **choices)


@user_page
async def create_vm(ctx: WebContext) -> Response:
    form = await ctx.form()

    async def show_error(exc: OvertError) -> Response:
        # The rollback expired every row read so far: read the user and grants again.
        async with ctx.request.app.state.db.transaction() as session:
            user = await lookup.get(session, User, ctx.viewer.id)
            ctx.session, ctx.user, ctx.access = session, user, await load_access(session, user)
            return ctx.render("user_vm_new.html", exc.status, nav="newvm", form=form,
                              error=f"{exc.reason}: {exc.detail}", **await _choices(ctx))

    ctx.on_error = show_error
    data = _vm_input(form)
    assert data.cluster is not None and data.cluster.id is not None
    template_id = data.template.id if data.template else None
    # Checked before anything is written: the cluster and template named in the form.
    await require_vm_creation(ctx.session, _access(ctx), data.cluster.id, template_id)
    vm = await vm_service.add_vm(ctx.session, ctx.services.jobs, data, ctx.user)
    await ctx.session.flush()
    if not _access(ctx).superuser:
        await identity_service.make_owner(ctx.session, ctx.user, vm.id)
    return _done(f"Created: {vm.name}")


ROUTES = [
    Route("/user", my_vms),
    Route("/user/fragments/vms", my_vms_fragment),
    Route("/user/vms/new", new_vm_form),
    Route("/user/vms", create_vm, methods=["POST"]),
    Route("/user/vms/{vm_id}/console", console_page),
    Route("/user/vms/{vm_id}/console/ticket", console_ticket, methods=["POST"]),
    Route("/user/vms/{vm_id}/{action}", vm_action, methods=["POST"]),
]
