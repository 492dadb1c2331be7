"""cloud-init (`initialization`) and boot order through the official SDK: stored, shown
without the root password, and bad input refused with nothing changed."""

from __future__ import annotations

import ssl
from xml.etree import ElementTree

import httpx
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.support.engine import RunningEngine

MIB = 2**20
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP34SiWpX97gj29sZsH/6YdxLfI36Wj6vbRXY/OxvEQz "
       "alice@laptop")


def _init(**changes: object) -> types.Initialization:
    fields: dict[str, object] = {
        "host_name": "web1.example.com", "user_name": "alice", "root_password": "S3cret!pw",
        "authorized_ssh_keys": KEY, "dns_servers": "10.0.0.53", "dns_search": "example.com",
        "timezone": "Europe/Paris", "custom_script": "runcmd:\n  - [touch, /tmp/ran]",
        "nic_configurations": [types.NicConfiguration(
            name="eth0", boot_protocol=types.BootProtocol.STATIC, on_boot=True,
            ip=types.Ip(address="10.0.0.10", netmask="255.255.255.0", gateway="10.0.0.1"))]}
    fields.update(changes)
    return types.Initialization(**fields)


def _add(conn: sdk.Connection, name: str, **extra: object) -> types.Vm:
    return conn.system_service().vms_service().add(types.Vm(
        name=name, cluster=types.Cluster(name="Default"), template=types.Template(name="Blank"),
        memory=256 * MIB, **extra))


def test_initialization_is_stored_and_shown_without_the_root_password(
        connection: sdk.Connection) -> None:
    vm = _add(connection, "cinit-shown", initialization=_init(),
              os=types.OperatingSystem(boot=types.Boot(devices=[
                  types.BootDevice.NETWORK, types.BootDevice.HD])))
    service = connection.system_service().vms_service().vm_service(vm.id)
    for seen in (vm, service.get()):
        init = seen.initialization
        assert (init.host_name, init.user_name, init.authorized_ssh_keys) == \
            ("web1.example.com", "alice", KEY)
        assert (init.dns_servers, init.dns_search, init.timezone) == \
            ("10.0.0.53", "example.com", "Europe/Paris")
        assert init.custom_script == "runcmd:\n  - [touch, /tmp/ran]"
        (nic,) = init.nic_configurations
        assert (nic.name, nic.boot_protocol, nic.ip.address, nic.ip.netmask, nic.ip.gateway) \
            == ("eth0", types.BootProtocol.STATIC, "10.0.0.10", "255.255.255.0", "10.0.0.1")
        assert init.root_password is None
        assert seen.os.boot.devices == [types.BootDevice.NETWORK, types.BootDevice.HD]

    updated = service.update(types.Vm(
        initialization=_init(host_name="web2", root_password=None, nic_configurations=[]),
        os=types.OperatingSystem(boot=types.Boot(devices=[types.BootDevice.CDROM,
                                                          types.BootDevice.HD]))))
    assert updated.initialization.host_name == "web2"
    assert updated.initialization.nic_configurations in (None, [])
    assert updated.os.boot.devices == [types.BootDevice.CDROM, types.BootDevice.HD]


@pytest.mark.parametrize(("init", "words"), [
    (_init(authorized_ssh_keys="ssh-rsa not-a-key"), "key 1 is not an OpenSSH public key"),
    (_init(custom_script="x" * (64 * 1024 + 1)), "the limit is 65536 bytes (64 KiB)"),
    (_init(custom_script="#!/bin/sh\n" + "y" * (1 << 20)), "the limit is 65536 bytes"),
    (_init(authorized_ssh_keys="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP34 truncated"),
     "key 1 is not an OpenSSH public key"),
    (_init(host_name="web_1.example.com"), "is not a valid host name (RFC 1123)"),
])
def test_bad_initialization_is_a_400_fault_and_changes_nothing(
        connection: sdk.Connection, init: types.Initialization, words: str) -> None:
    vms = connection.system_service().vms_service()
    before = {v.id for v in vms.list()}
    with pytest.raises(sdk.Error) as caught:
        _add(connection, "cinit-bad", initialization=init)
    assert caught.value.code == 400 and words in str(caught.value)
    assert "S3cret" not in str(caught.value)
    assert {v.id for v in vms.list()} == before

    vm = vms.list(search="name=cinit-kept") or [_add(connection, "cinit-kept",
                                                     initialization=_init(host_name="kept"))]
    service = vms.vm_service(vm[0].id)
    with pytest.raises(sdk.Error) as caught:
        service.update(types.Vm(description="changed", initialization=init))
    assert caught.value.code == 400 and words in str(caught.value)
    after = service.get()
    assert after.initialization.host_name == "kept" and after.description in (None, "")


def test_an_unknown_boot_device_is_a_400_fault_and_changes_nothing(
        connection: sdk.Connection, api_engine: RunningEngine) -> None:
    """The SDK cannot send an unknown device (its enum has none): a hand-written client can."""
    vm = _add(connection, "cinit-boot")
    service = connection.system_service().vms_service().vm_service(vm.id)
    body = ("<vm><description>changed</description><os><boot><devices>"
            "<device>hd</device><device>floppy</device></devices></boot></os></vm>")
    tls = ssl.create_default_context(cafile=str(api_engine.ca_file))
    with httpx.Client(verify=tls, timeout=30) as http:
        reply = http.put(f"{api_engine.url}/vms/{vm.id}", content=body,
                         auth=("admin@internal", api_engine.password),
                         headers={"Content-Type": "application/xml", "Version": "4"})
    assert reply.status_code == 400
    fault = ElementTree.fromstring(reply.content)
    assert fault.tag == "fault" and "boot device 'floppy'" in (fault.findtext("detail") or "")
    after = service.get()
    assert after.os.boot.devices == [types.BootDevice.HD] and after.description in (None, "")


def test_starting_with_cloud_init_on_a_vm_without_initialization_is_refused(
        connection: sdk.Connection) -> None:
    vm = _add(connection, "cinit-none")
    service = connection.system_service().vms_service().vm_service(vm.id)
    with pytest.raises(sdk.Error) as caught:
        service.start(use_cloud_init=True)
    assert caught.value.code == 400 and "has no initialization" in str(caught.value)
    assert service.get().status == types.VmStatus.DOWN
