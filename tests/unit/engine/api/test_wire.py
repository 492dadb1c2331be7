import contextlib
import datetime as dt
import uuid

import ovirtsdk4.readers  # noqa: F401 - registers the SDK's readers
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ovirtsdk4.reader import Reader

from overt.engine.api.wire.parse import parse_body
from overt.engine.api.wire.render import to_json, to_xml
from overt.engine.model.errors import InvalidInput
from overt.engine.model.status import VmStatus


def test_the_sdk_reads_what_we_write() -> None:
    vm_id = uuid.uuid4()
    xml = to_xml("vm", {
        "href": f"/ovirt-engine/api/vms/{vm_id}", "id": vm_id, "name": "web",
        "link": [{"href": f"/ovirt-engine/api/vms/{vm_id}/nics", "rel": "nics"}],
        "memory": 256 * 2**20, "status": VmStatus.UP, "stateless": False,
        "start_time": dt.datetime(2026, 11, 25, 12, 0, 48, 132000, tzinfo=dt.UTC),
        "cpu": {"topology": {"sockets": 2, "cores": 1, "threads": 1}},
        "cluster": {"href": "/ovirt-engine/api/clusters/c1", "id": "c1"},
        "description": None,
    })
    vm = Reader.read(xml)
    assert vm.id == str(vm_id) and vm.name == "web" and vm.memory == 256 * 2**20
    assert vm.status.value == "up" and vm.stateless is False
    assert vm.start_time.year == 2026 and vm.start_time.microsecond == 132000
    assert vm.cpu.topology.sockets == 2 and vm.cluster.id == "c1"
    assert vm.nics.href.endswith("/nics")
    assert vm.description is None


def test_collections_are_read_as_lists() -> None:
    xml = to_xml("vms", {"vm": [{"id": "a", "name": "x"}, {"id": "b", "name": "y"}]})
    assert [vm.name for vm in Reader.read(xml)] == ["x", "y"]


def test_json_mirrors_the_xml() -> None:
    data = to_json({"id": "a", "name": "x", "on": True, "gone": None, "devices": {"device": ["hd"]}})
    assert data == b'{"id":"a","name":"x","on":true,"devices":{"device":["hd"]}}'


def test_xml_and_json_bodies_read_the_same() -> None:
    xml = parse_body(b"<vm><name>a</name><memory>1024</memory><cluster id='c'/></vm>",
                     "application/xml", "vm")
    js = parse_body(b'{"name": "a", "memory": 1024, "cluster": {"id": "c"}}',
                    "application/json", "vm")
    for node in (xml, js):
        assert node.get_str("name") == "a"
        assert node.get_int("memory") == 1024
        cluster = node.child("cluster")
        assert cluster is not None and cluster.attrs["id"] == "c"


@given(st.binary(max_size=300))
def test_any_body_parses_or_is_refused_as_invalid_input(raw: bytes) -> None:
    for content_type in ("application/xml", "application/json"):
        with contextlib.suppress(InvalidInput):
            parse_body(raw, content_type, "vm")


def test_entities_are_refused() -> None:
    bomb = b'<!DOCTYPE vm [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><vm><name>&b;</name></vm>'
    with pytest.raises(InvalidInput):
        parse_body(bomb, "application/xml", "vm")


def test_text_and_attributes_that_need_escaping_read_back_as_written() -> None:
    xml = to_xml("vms", {"vm": [
        {"id": 'a"b<c>&\n\td', "href": "/ovirt-engine/api/vms/x?y=1&z=2",
         "name": "R&D <lab>", "description": "plain", "comment": "", "link": []},
        {"id": "plain", "name": "ok", "stateless": True, "memory": 0},
    ]})
    first, second = Reader.read(xml)
    assert first.id == 'a"b<c>&\n\td' and first.href.endswith("y=1&z=2")
    assert first.name == "R&D <lab>" and first.description == "plain" and first.comment == ""
    assert second.stateless is True and second.memory == 0
    assert b"<comment></comment>" in xml and b"<vm id=\"plain\">" in xml
