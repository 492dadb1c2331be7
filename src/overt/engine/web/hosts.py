"""The portal's host actions (approve, install, maintenance, activate, remove, and the
power management fence actions), each through the same service functions the API uses."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from overt.engine.db.tables import Host, Job
from overt.engine.enrollment.broker_accounts import revoke_after_commit
from overt.engine.model.errors import InvalidInput
from overt.engine.model.host_actions import HostAction, host_action_allowed
from overt.engine.queries import lookup
from overt.engine.services import hosts as host_service
from overt.engine.services import power_management
from overt.engine.web.context import WebContext, page


@dataclass(frozen=True)
class HostButton:
    label: str
    action: HostAction  # the button is enabled where the host state machine allows it
    done: str  # what the notice says afterwards
    destructive: bool = False
    confirm: str = ""  # asked before the action runs
    fence_type: str = ""  # a power management action (needs the host's fence agents)


ACTIONS: dict[str, HostButton] = {
    "approve": HostButton("Approve", HostAction.APPROVE,
                          "approved; it gets its certificate when it asks next"),
    "install": HostButton("Install", HostAction.INSTALL, "being installed"),
    "deactivate": HostButton("Maintenance", HostAction.DEACTIVATE, "switched to maintenance"),
    "activate": HostButton("Activate", HostAction.ACTIVATE, "activated"),
    "remove": HostButton("Remove", HostAction.REMOVE, "removed", destructive=True,
                         confirm="The engine forgets it."),
}

# Power management, oVirt's host fence actions: each runs a fence job shown as it goes.
FENCE_ACTIONS: dict[str, HostButton] = {
    "fence-status": HostButton("Power status", HostAction.FENCE, "asked", fence_type="status"),
    "fence-restart": HostButton(
        "Restart", HostAction.FENCE, "restarted", destructive=True, fence_type="restart",
        confirm="Its power is cut and restored: every VM on it stops at once."),
    "fence-stop": HostButton(
        "Power off", HostAction.FENCE, "powered off", destructive=True, fence_type="stop",
        confirm="Its power is cut: every VM on it stops at once."),
    "fence-start": HostButton("Power on", HostAction.FENCE, "powered on", fence_type="start"),
}


def host_buttons(host: Host) -> list[tuple[str, HostButton, bool]]:
    """The action buttons of a host's page: (name, button, enabled now)."""
    return [(name, button, host_action_allowed(button.action, host.status))
            for name, button in ACTIONS.items()]


def fence_buttons(host: Host, configured: bool) -> list[tuple[str, HostButton, bool]]:
    """The power management buttons: enabled where the host state machine allows fencing
    and the host has power management configured."""
    allowed = configured and host_action_allowed(HostAction.FENCE, host.status)
    return [(name, button, allowed) for name, button in FENCE_ACTIONS.items()]


@page
async def host_action(ctx: WebContext) -> Response:
    """A host button: removing needs `confirmed` (else a confirmation page)."""
    host_id = ctx.id_param("host_id")
    name = str(ctx.request.path_params["action"])
    action = ACTIONS.get(name) or FENCE_ACTIONS.get(name)
    if action is None:
        raise InvalidInput(f"there is no host action {name!r}")
    form = await ctx.form()
    host = await lookup.get(ctx.session, Host, host_id)
    host_name = host.name
    if action.destructive and form.get("confirmed") != "yes":
        return ctx.render("host_confirm.html", nav="hosts", host=host, action=name,
                          label=action.label,
                          confirm=action.confirm if action.fence_type else "")
    host_uuid = host.host_uuid
    if action.fence_type:
        fence_job = await power_management.fence(ctx.session, ctx.services.jobs, host.id,
                                                 action.fence_type, ctx.user)
        if not ctx.htmx:
            return RedirectResponse(f"/hosts/{host.id}", status_code=303)
        return ctx.render("_job_progress.html", job=fence_job, steps=[])
    job = await _run(ctx, name, host)
    answer = _answer(ctx, name, action, host_name, job)
    if name == "remove":
        revoke_after_commit(ctx, host_uuid, answer)
    return answer


def _answer(ctx: WebContext, name: str, action: HostButton, host_name: str,
            job: Job | None) -> Response:
    host_id = ctx.id_param("host_id")
    target = "/hosts" if name == "remove" else f"/hosts/{host_id}"
    if not ctx.htmx:
        return RedirectResponse(target, status_code=303)
    if name == "remove":
        return Response(status_code=204, headers={"HX-Redirect": target})
    if job is not None:
        return ctx.render("_job_progress.html", job=job, steps=[])
    return ctx.render("_notice.html", message=f"Host {host_name} was {action.done}.")


async def _run(ctx: WebContext, name: str, host: Host) -> Job | None:
    session, user = ctx.session, ctx.user
    if name == "approve":
        await host_service.approve_host(session, host.id, user)
    elif name == "install":
        return await host_service.install_host(session, ctx.services.jobs, host.id, user)
    elif name == "deactivate":
        return await host_service.deactivate_host(session, ctx.services.jobs, host.id, user)
    elif name == "activate":
        await host_service.activate_host(session, host.id, user, ctx.services.jobs)
        ctx.services.monitor_wakeup()
    else:
        await host_service.remove_host(session, host.id, user, jobs=ctx.services.jobs)
    return None


ROUTES = [Route("/hosts/{host_id}/{action}", host_action, methods=["POST"])]
