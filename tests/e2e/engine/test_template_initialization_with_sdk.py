"""Templates' cloud-init (`initialization`) through the official SDK: given when the template
is made or edited, shown without the root password, taken by the VMs made from it unless
they bring their own, and bad input refused with nothing changed."""

from __future__ import annotations

import time
from collections.abc import Callable

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

MIB = 2**20
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP34SiWpX97gj29sZsH/6YdxLfI36Wj6vbRXY/OxvEQz "
       "alice@laptop")


def _init(**changes: object) -> types.Initialization:
    fields: dict[str, object] = {
        "host_name": "tpl-guest.example.com", "root_password": "S3cret!pw",
        "user_name": "alice", "authorized_ssh_keys": KEY,
        "custom_script": "runcmd:\n  - [touch, /tmp/from-template]",
        "nic_configurations": [types.NicConfiguration(
            name="eth0", boot_protocol=types.BootProtocol.STATIC, on_boot=True,
            ip=types.Ip(address="10.0.0.20", netmask="255.255.255.0", gateway="10.0.0.1"))]}
    fields.update(changes)
    return types.Initialization(**fields)


def _until(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _vm(conn: sdk.Connection, name: str, template: str = "Blank", **extra: object) -> types.Vm:
    return conn.system_service().vms_service().add(types.Vm(
        name=name, cluster=types.Cluster(name="Default"), template=types.Template(name=template),
        memory=256 * MIB, **extra))


def _template(conn: sdk.Connection, name: str, **extra: object) -> types.Template:
    """A template (ok) made from a new VM without disks or cloud-init of its own."""
    templates = conn.system_service().templates_service()
    source = _vm(conn, f"{name}-src")
    made = templates.add(types.Template(name=name, vm=types.Vm(id=source.id), **extra))
    _until(lambda: templates.template_service(made.id).get().status == types.TemplateStatus.OK,
           f"template {name} to be ok")
    return made


def _shown(init: types.Initialization) -> tuple[object, ...]:
    (nic,) = init.nic_configurations
    return (init.host_name, init.user_name, init.authorized_ssh_keys, init.custom_script,
            nic.name, nic.boot_protocol, nic.ip.address, init.root_password)


EXPECTED = ("tpl-guest.example.com", "alice", KEY, "runcmd:\n  - [touch, /tmp/from-template]",
            "eth0", types.BootProtocol.STATIC, "10.0.0.20", None)


def test_a_template_keeps_the_initialization_given_and_its_vms_inherit_it(
        connection: sdk.Connection) -> None:
    made = _template(connection, "tcinit-1", initialization=_init())
    service = connection.system_service().templates_service().template_service(made.id)
    assert _shown(made.initialization) == EXPECTED
    assert _shown(service.get().initialization) == EXPECTED

    inherited = _vm(connection, "tcinit-vm-1", template="tcinit-1")
    assert _shown(inherited.initialization) == EXPECTED
    vms = connection.system_service().vms_service()
    assert _shown(vms.vm_service(inherited.id).get().initialization) == EXPECTED

    own = _vm(connection, "tcinit-vm-2", template="tcinit-1",
              initialization=types.Initialization(host_name="own.example.com"))
    shown = vms.vm_service(own.id).get().initialization
    assert (shown.host_name, shown.user_name, shown.custom_script) == \
        ("own.example.com", None, None)


def test_editing_a_template_s_initialization_reaches_the_vms_made_afterwards(
        connection: sdk.Connection) -> None:
    made = _template(connection, "tcinit-2")
    service = connection.system_service().templates_service().template_service(made.id)
    assert made.initialization is None
    before = _vm(connection, "tcinit-before", template="tcinit-2")

    updated = service.update(types.Template(initialization=_init(), description="with init"))
    assert _shown(updated.initialization) == EXPECTED and updated.description == "with init"
    updated = service.update(types.Template(initialization=_init(
        host_name="renamed", root_password=None, nic_configurations=[])))
    assert (updated.initialization.host_name, updated.initialization.user_name) == \
        ("renamed", "alice")
    assert updated.initialization.nic_configurations in (None, [])

    after = _vm(connection, "tcinit-after", template="tcinit-2")
    assert after.initialization.host_name == "renamed"
    vms = connection.system_service().vms_service()
    assert vms.vm_service(before.id).get().initialization is None  # made before: unchanged

    cleared = service.update(types.Template(initialization=types.Initialization()))
    assert cleared.initialization is None and service.get().initialization is None


def test_a_template_made_without_initialization_takes_its_vm_s(
        connection: sdk.Connection) -> None:
    templates = connection.system_service().templates_service()
    source = _vm(connection, "tcinit-3-src", initialization=_init(host_name="from-vm"))
    made = templates.add(types.Template(name="tcinit-3", vm=types.Vm(id=source.id)))
    assert made.initialization.host_name == "from-vm"
    _until(lambda: templates.template_service(made.id).get().status == types.TemplateStatus.OK,
           "template tcinit-3 to be ok")
    given = templates.add(types.Template(name="tcinit-4", vm=types.Vm(id=source.id),
                                         initialization=_init()))
    assert _shown(given.initialization) == EXPECTED


@pytest.mark.parametrize(("init", "words"), [
    (_init(authorized_ssh_keys="ssh-rsa not-a-key"), "key 1 is not an OpenSSH public key"),
    (_init(custom_script="#!/bin/sh\n" + "y" * (1 << 20)), "the limit is 65536 bytes"),
    (_init(host_name="web_1.example.com"), "is not a valid host name (RFC 1123)"),
    (_init(user_name="Root Admin"), "user_name"),
])
def test_bad_template_initialization_is_a_400_fault_and_changes_nothing(
        connection: sdk.Connection, init: types.Initialization, words: str) -> None:
    templates = connection.system_service().templates_service()
    found = templates.list(search="name=tcinit-kept")
    kept = found[0] if found else _template(connection, "tcinit-kept",
                                            initialization=_init(host_name="kept"))
    before = sorted(t.name for t in templates.list())
    with pytest.raises(sdk.Error) as caught:
        templates.add(types.Template(name="tcinit-bad", vm=types.Vm(name="tcinit-kept-src"),
                                     initialization=init))
    assert caught.value.code == 400 and words in str(caught.value)
    assert "S3cret" not in str(caught.value)
    assert sorted(t.name for t in templates.list()) == before

    service = templates.template_service(kept.id)
    with pytest.raises(sdk.Error) as caught:
        service.update(types.Template(description="changed", initialization=init))
    assert caught.value.code == 400 and words in str(caught.value)
    after = service.get()
    assert after.initialization.host_name == "kept" and after.description in (None, "")
