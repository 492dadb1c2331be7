"""Reading `<initialization>`: any body is an Initialization or a 400, never a crash; and
the SDK reads back what we show (without the root password)."""

from __future__ import annotations

import uuid

import ovirtsdk4.readers  # noqa: F401 - registers the SDK's readers
import ovirtsdk4.types as types
from hypothesis import given, settings
from hypothesis import strategies as st
from ovirtsdk4.reader import Reader

from overt.engine.api.initialization import initialization_view, read_initialization
from overt.engine.api.wire.parse import parse_body
from overt.engine.api.wire.render import to_xml
from overt.engine.model.errors import InvalidInput
from overt.engine.model.nocloud import render_nocloud

FIELDS = ["host_name", "user_name", "root_password", "authorized_ssh_keys", "dns_servers",
          "dns_search", "custom_script", "timezone"]
VALUES = st.one_of(st.text(max_size=40), st.sampled_from([
    "", "web1", "web1.example.com", "-bad", "alice", "10.0.0.1", "::1", "x.example.com",
    "Europe/Paris", "ssh-ed25519 AAAA", "dhcp", "static", "none", "true", "255.255.255.0"]))
NIC_FIELDS = ["name", "boot_protocol", "on_boot", "x"]
IP_FIELDS = ["address", "netmask", "gateway", "version"]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


@st.composite
def bodies(draw: st.DrawFn) -> str:
    parts = [f"<{f}>{_escape(draw(VALUES))}</{f}>" for f in draw(st.lists(st.sampled_from(FIELDS)))]
    for _ in range(draw(st.integers(0, 3))):
        nic = "".join(f"<{f}>{_escape(draw(VALUES))}</{f}>"
                      for f in draw(st.lists(st.sampled_from(NIC_FIELDS), max_size=4)))
        if draw(st.booleans()):
            nic += "<ip>" + "".join(f"<{f}>{_escape(draw(VALUES))}</{f}>" for f in
                                    draw(st.lists(st.sampled_from(IP_FIELDS), max_size=4))) + "</ip>"
        parts.append(f"<nic_configurations><nic_configuration>{nic}</nic_configuration>"
                     "</nic_configurations>")
    return "<initialization>" + "".join(parts) + "</initialization>"


@settings(max_examples=150, deadline=None)
@given(bodies())
def test_any_body_is_read_or_refused_and_what_is_read_renders(body: str) -> None:
    try:
        node = parse_body(body.encode(), "application/xml", "initialization")
        init = read_initialization(node)
    except InvalidInput:
        return
    files = render_nocloud(init, uuid.uuid4())
    assert files.user_data.startswith("#cloud-config\n")
    Reader.read(to_xml("initialization", initialization_view(init)))


def test_the_sdk_reads_the_view_and_finds_no_password() -> None:
    node = parse_body(
        b"<initialization><host_name>web1</host_name><user_name>alice</user_name>"
        b"<root_password>S3cret</root_password><nic_configurations><nic_configuration>"
        b"<name>eth0</name><boot_protocol>static</boot_protocol><on_boot>false</on_boot>"
        b"<ip><address>10.0.0.10</address><netmask>255.255.255.0</netmask></ip>"
        b"</nic_configuration></nic_configurations></initialization>",
        "application/xml", "initialization")
    init = read_initialization(node)
    assert init.root_password == "S3cret"
    xml = to_xml("initialization", initialization_view(init))
    assert b"S3cret" not in xml
    seen = Reader.read(xml)
    assert isinstance(seen, types.Initialization)
    assert (seen.host_name, seen.user_name, seen.root_password) == ("web1", "alice", None)
    (nic,) = seen.nic_configurations
    assert (nic.name, nic.boot_protocol, nic.on_boot, nic.ip.address) == \
        ("eth0", types.BootProtocol.STATIC, False, "10.0.0.10")
