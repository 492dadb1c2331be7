"""remote-viewer's oVirt client library (libgovirt) as remote-viewer drives it for an
ovirt:// URI: fetch the engine's CA, the API root, the VMs, and a console ticket for one VM.

Run with Debian's python3 (python3-gi, gir1.2-govirt-1.0), not the project's venv:
    python3 govirt_client.py HOST:PORT USER PASSWORD VM_NAME
Prints one JSON object with what libgovirt saw.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import gi

gi.require_version("GoVirt", "1.0")
from gi.repository import GLib, GoVirt  # noqa: E402

LOOP = GLib.MainLoop()


def call(start: Callable[..., None], finish: Callable[[Any], Any], *args: Any) -> Any:
    """libgovirt's async calls (its sync ones need a running main loop too)."""
    outcome: dict[str, Any] = {}

    def done(_source: Any, result: Any, *_: Any) -> None:
        try:
            outcome["value"] = finish(result)
        except GLib.Error as exc:
            outcome["error"] = exc
        LOOP.quit()

    start(*args, None, done)
    LOOP.run()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def main(host: str, user: str, password: str, vm_name: str) -> dict[str, Any]:
    proxy = GoVirt.Proxy.new(host)
    proxy.set_property("username", user)
    proxy.set_property("password", password)
    call(proxy.fetch_ca_certificate_async, proxy.fetch_ca_certificate_finish)
    ca = bytes(proxy.get_property("ca-cert") or b"").decode()
    api = call(proxy.fetch_api_async, proxy.fetch_api_finish)
    vms = api.get_vms()
    call(vms.fetch_async, vms.fetch_finish, proxy)
    found = vms.get_resources()
    seen: dict[str, Any] = {"ca": ca, "vms": {}}
    for name, vm in found.items():
        seen["vms"][name] = {"id": vm.get_property("guid"), "state": int(vm.get_property("state"))}
    vm = found[vm_name]
    call(vm.get_ticket_async, vm.get_ticket_finish, proxy)
    display = vm.get_property("display")
    seen["display"] = {key: display.get_property(key) for key in
                       ("address", "port", "ticket", "expiry")}
    seen["display"]["type"] = int(display.get_property("type"))
    seen["vm_up"] = int(vm.get_property("state")) == int(GoVirt.VmState.UP)
    return seen


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
