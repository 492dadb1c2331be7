"""cloud-init's NoCloud files (user-data, meta-data, network-config) for an initialization.

Every value is written as a JSON string, which YAML reads as a double-quoted scalar:
no value can break out of its place in the document. As in oVirt, the custom script
is appended to the generated user-data as it is.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

from overt.engine.model.initialization import Initialization, NicBootProtocol


@dataclass(frozen=True)
class NoCloudFiles:
    user_data: str
    meta_data: str
    network_config: str | None  # None: the guest's own default (DHCP on its first NIC)


def _q(value: str) -> str:
    return json.dumps(value)


def render_nocloud(init: Initialization, vm_id: uuid.UUID) -> NoCloudFiles:
    return NoCloudFiles(user_data=_user_data(init), meta_data=_meta_data(init, vm_id),
                        network_config=_network_config(init))


def _meta_data(init: Initialization, vm_id: uuid.UUID) -> str:
    lines = [f"instance-id: {_q(str(vm_id))}"]
    if init.host_name:
        lines.append(f"local-hostname: {_q(init.host_name)}")
    return "\n".join(lines) + "\n"


def _user_data(init: Initialization) -> str:
    lines = ["#cloud-config"]
    if init.host_name:
        lines.append(f"hostname: {_q(init.host_name.split('.')[0])}")
        if "." in init.host_name:
            lines.append(f"fqdn: {_q(init.host_name)}")
    keys = init.ssh_keys()
    if init.user_name and init.user_name != "root":
        lines += ["users:", "  - default", f"  - name: {_q(init.user_name)}",
                  "    shell: \"/bin/sh\"", "    lock_passwd: false"]
        if keys:
            lines.append("    ssh_authorized_keys:")
            lines += [f"      - {_q(key)}" for key in keys]
    elif keys:
        lines += ["disable_root: false", "ssh_authorized_keys:"]
        lines += [f"  - {_q(key)}" for key in keys]
    if init.root_password is not None:
        lines += ["ssh_pwauth: true", "chpasswd:", "  expire: false", "  users:",
                  f"    - name: {_q(init.login)}", f"      password: {_q(init.root_password)}",
                  "      type: \"text\""]
    if init.timezone:
        lines.append(f"timezone: {_q(init.timezone)}")
    text = "\n".join(lines) + "\n"
    if init.custom_script:
        text += init.custom_script if init.custom_script.endswith("\n") \
            else init.custom_script + "\n"
    return text


def _network_config(init: Initialization) -> str | None:
    """Network config version 1; None when the initialization says nothing of the network."""
    servers, search = (init.dns_servers or "").split(), (init.dns_search or "").split()
    if not init.nic_configurations and not servers and not search:
        return None
    lines = ["version: 1", "config:"]
    for nic in init.nic_configurations:
        lines += ["  - type: \"physical\"", f"    name: {_q(nic.name)}", "    subnets:"]
        if nic.boot_protocol is NicBootProtocol.DHCP:
            lines.append("      - type: \"dhcp\"")
        elif nic.boot_protocol is NicBootProtocol.STATIC:
            lines += ["      - type: \"static\"", f"        address: {_q(nic.address or '')}",
                      f"        netmask: {_q(nic.netmask or '')}"]
            if nic.gateway:
                lines.append(f"        gateway: {_q(nic.gateway)}")
        else:
            lines.append("      - type: \"manual\"")
        if not nic.on_boot:
            lines.append("        control: \"manual\"")
    if servers or search:
        lines.append("  - type: \"nameserver\"")
        if servers:
            lines.append("    address: [" + ", ".join(_q(s) for s in servers) + "]")
        if search:
            lines.append("    search: [" + ", ".join(_q(s) for s in search) + "]")
    return "\n".join(lines) + "\n"
