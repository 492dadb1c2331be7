"""oVirt's `<initialization>` element (cloud-init) read from and shown to clients.

Shown without the root password: oVirt never returns it, and neither do we.
"""

from __future__ import annotations

from dataclasses import replace

from overt.engine.api.wire.parse import Node
from overt.engine.api.wire.render import Representation
from overt.engine.model.errors import InvalidInput, Unavailable
from overt.engine.model.initialization import (
    Initialization,
    NicBootProtocol,
    NicConfiguration,
    check_initialization,
)
from overt.engine.secrets import Secret, SecretBox, is_sealed

_BOOT_PROTOCOLS = {"dhcp": NicBootProtocol.DHCP, "static": NicBootProtocol.STATIC,
                   "none": NicBootProtocol.NONE}


def read_initialization(node: Node) -> Initialization:
    """The `<initialization>` a client sent, checked (bad input is a 400, nothing stored)."""
    return check_initialization(Initialization(
        host_name=node.get_str("host_name") or None,
        user_name=node.get_str("user_name") or None,
        root_password=node.get_str("root_password") or None,
        authorized_ssh_keys=node.get_str("authorized_ssh_keys") or None,
        dns_servers=node.get_str("dns_servers") or None,
        dns_search=node.get_str("dns_search") or None,
        nic_configurations=tuple(_read_nic(n) for n in node.items("nic_configurations",
                                                                  "nic_configuration")),
        custom_script=node.get_str("custom_script") or None,
        timezone=node.get_str("timezone") or None,
    ))


def sealed_initialization(init: Initialization | None,
                          box: SecretBox | None) -> Initialization | None:
    """The initialization as the engine keeps it: its root password sealed with the
    engine's key, never in clear text in the database or a job."""
    if init is None or init.root_password is None or is_sealed(init.root_password):
        return init
    if box is None:
        raise Unavailable("this engine keeps no secrets store: a root password for "
                          "cloud-init cannot be kept")
    return replace(init, root_password=box.seal(Secret(init.root_password)))


def _read_nic(node: Node) -> NicConfiguration:
    raw = (node.get_str("boot_protocol") or "dhcp").strip().lower()
    if raw not in _BOOT_PROTOCOLS:
        raise InvalidInput(f"nic_configuration.boot_protocol must be one of "
                           f"{', '.join(_BOOT_PROTOCOLS)}, not {raw!r}")
    ip = node.child("ip")
    on_boot = node.get_bool("on_boot")
    return NicConfiguration(
        name=node.required_str("name"), boot_protocol=_BOOT_PROTOCOLS[raw],
        address=ip.get_str("address") if ip is not None else None,
        netmask=ip.get_str("netmask") if ip is not None else None,
        gateway=ip.get_str("gateway") if ip is not None else None,
        on_boot=True if on_boot is None else on_boot)


def initialization_view(init: Initialization) -> Representation:
    shown = init.public()
    nics = [{"name": nic.name, "boot_protocol": nic.boot_protocol.value,
             "on_boot": nic.on_boot,
             "ip": {"address": nic.address, "netmask": nic.netmask, "gateway": nic.gateway,
                    "version": "v4"} if nic.address else None}
            for nic in shown.nic_configurations]
    rep: Representation = {
        "host_name": shown.host_name, "user_name": shown.user_name,
        "authorized_ssh_keys": shown.authorized_ssh_keys, "dns_servers": shown.dns_servers,
        "dns_search": shown.dns_search, "custom_script": shown.custom_script,
        "timezone": shown.timezone,
        "nic_configurations": {"nic_configuration": nics} if nics else None,
    }
    return rep
