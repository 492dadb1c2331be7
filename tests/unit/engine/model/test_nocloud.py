"""NoCloud files rendered from an initialization: their exact contents."""

from __future__ import annotations

import json
import uuid

from overt.engine.model.initialization import Initialization, NicBootProtocol, NicConfiguration
from overt.engine.model.nocloud import render_nocloud

VM_ID = uuid.UUID("11111111-2222-4333-8444-555555555555")
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP34SiWpX97gj29sZsH/6YdxLfI36Wj6vbRXY/OxvEQz "
       "alice@laptop")


def test_user_data_for_a_user_with_a_key_and_a_password() -> None:
    files = render_nocloud(Initialization(
        host_name="web1.example.com", user_name="alice", root_password="pa\"ss\nword",
        authorized_ssh_keys=KEY, timezone="Europe/Paris",
        custom_script="runcmd:\n  - [touch, /tmp/ran]"), VM_ID)
    assert files.user_data == (
        "#cloud-config\n"
        'hostname: "web1"\n'
        'fqdn: "web1.example.com"\n'
        "users:\n"
        "  - default\n"
        '  - name: "alice"\n'
        '    shell: "/bin/sh"\n'
        "    lock_passwd: false\n"
        "    ssh_authorized_keys:\n"
        f'      - "{KEY}"\n'
        "ssh_pwauth: true\n"
        "chpasswd:\n"
        "  expire: false\n"
        "  users:\n"
        '    - name: "alice"\n'
        '      password: "pa\\"ss\\nword"\n'
        '      type: "text"\n'
        'timezone: "Europe/Paris"\n'
        "runcmd:\n"
        "  - [touch, /tmp/ran]\n")
    assert files.meta_data == ('instance-id: "11111111-2222-4333-8444-555555555555"\n'
                               'local-hostname: "web1.example.com"\n')
    assert files.network_config is None  # the guest's own default: DHCP


def test_keys_without_a_user_are_roots() -> None:
    files = render_nocloud(Initialization(authorized_ssh_keys=KEY), VM_ID)
    assert files.user_data == ("#cloud-config\n"
                               "disable_root: false\n"
                               "ssh_authorized_keys:\n"
                               f'  - "{KEY}"\n')
    assert files.meta_data == 'instance-id: "11111111-2222-4333-8444-555555555555"\n'


def test_network_config_version_1() -> None:
    files = render_nocloud(Initialization(
        dns_servers="10.0.0.53 10.0.0.54", dns_search="example.com",
        nic_configurations=(
            NicConfiguration(name="eth0", boot_protocol=NicBootProtocol.STATIC,
                             address="10.0.0.10", netmask="255.255.255.0", gateway="10.0.0.1"),
            NicConfiguration(name="eth1"),
            NicConfiguration(name="eth2", boot_protocol=NicBootProtocol.NONE, on_boot=False))),
        VM_ID)
    assert files.network_config == (
        "version: 1\n"
        "config:\n"
        '  - type: "physical"\n'
        '    name: "eth0"\n'
        "    subnets:\n"
        '      - type: "static"\n'
        '        address: "10.0.0.10"\n'
        '        netmask: "255.255.255.0"\n'
        '        gateway: "10.0.0.1"\n'
        '  - type: "physical"\n'
        '    name: "eth1"\n'
        "    subnets:\n"
        '      - type: "dhcp"\n'
        '  - type: "physical"\n'
        '    name: "eth2"\n'
        "    subnets:\n"
        '      - type: "manual"\n'
        '        control: "manual"\n'
        '  - type: "nameserver"\n'
        '    address: ["10.0.0.53", "10.0.0.54"]\n'
        '    search: ["example.com"]\n')


def test_no_value_breaks_out_of_its_yaml_scalar() -> None:
    """Every value is a JSON string (a YAML double-quoted scalar): a hostile password
    stays one value on one line."""
    password = "x\"\n  - name: mallory\n#"
    user_data = render_nocloud(Initialization(root_password=password), VM_ID).user_data
    line = next(li for li in user_data.splitlines() if li.startswith("      password: "))
    assert json.loads(line.removeprefix("      password: ")) == password
    assert "mallory" not in "".join(li for li in user_data.splitlines() if li != line)
