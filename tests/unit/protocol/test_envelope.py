import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overt.protocol import (
    CommandEnvelope,
    ErrorCode,
    EventEnvelope,
    ProtocolViolation,
    Reply,
    decode_command,
    decode_event,
    decode_reply,
)
from overt.protocol.commands import VmShutdown, VmStart
from overt.protocol.events import Heartbeat
from overt.protocol.host import VmState, VmStatusReport
from overt.protocol.vm import DiskSpec, FileSource, NicSpec, VmSpec

VM_ID = uuid.UUID("6b2f4f0e-8d1c-4c5e-9f0a-1a2b3c4d5e6f")


def _spec() -> VmSpec:
    return VmSpec(
        id=VM_ID, name="web-1", memory_mib=256,
        disks=(DiskSpec(id=uuid.uuid4(), source=FileSource(path="/var/lib/overt/images/a.qcow2"),
                        bootable=True),),
        nics=(NicSpec(id=uuid.uuid4(), mac="56:6F:1A:00:00:01", bridge="ovirtmgmt"),),
    )


def test_a_command_survives_the_wire() -> None:
    sent = CommandEnvelope(idempotency_key="job-1", command=VmStart(vm_id=VM_ID, spec=_spec()))
    received = decode_command(sent.model_dump_json())
    assert received == sent
    assert isinstance(received.command, VmStart)
    assert received.command.spec is not None
    assert received.command.spec.nics[0].mac == "56:6f:1a:00:00:01"


def test_replies_carry_results_or_errors() -> None:
    report = VmStatusReport(vm_id=VM_ID, name="web-1", state=VmState.RUNNING)
    ok = decode_reply(Reply.success(uuid.uuid4(), report).model_dump_json())
    assert ok.ok and VmStatusReport.model_validate(ok.result) == report
    assert VmStart.result is VmStatusReport


def test_events_survive_the_wire() -> None:
    sent = EventEnvelope(host_uuid=uuid.uuid4(), boot_id=uuid.uuid4(), seq=7,
                         event=Heartbeat(vm_count=2, free_memory_mib=1000, uptime_s=3.5))
    assert decode_event(sent.model_dump_json()) == sent


def test_unknown_versions_are_refused_with_a_clear_error() -> None:
    data = json.loads(CommandEnvelope(command=VmShutdown(vm_id=VM_ID)).model_dump_json())
    data["version"] = 99
    with pytest.raises(ProtocolViolation) as caught:
        decode_command(json.dumps(data))
    assert caught.value.error.code is ErrorCode.UNSUPPORTED_VERSION
    assert "protocol version 99 is not supported" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("not json", "command is not JSON"),
        ('{"command": {"name": "vm.explode"}}', "malformed command"),
        ('{"command": {"name": "vm.shutdown", "vm_id": "x"}}', "vm_id"),
        (json.dumps({"command": {"name": "vm.shutdown", "vm_id": str(VM_ID), "extra": 1}}),
         "extra"),
    ],
)
def test_malformed_commands_are_refused(raw: str, words: str) -> None:
    with pytest.raises(ProtocolViolation, match=words) as caught:
        decode_command(raw)
    assert caught.value.error.code is ErrorCode.BAD_REQUEST


@pytest.mark.parametrize("name", ["", "-x", "a b", "x" * 65, "é"])
def test_bad_vm_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid VM name"):
        VmSpec(id=VM_ID, name=name, memory_mib=256)


def test_duplicate_macs_are_refused() -> None:
    nic = NicSpec(id=uuid.uuid4(), mac="56:6f:1a:00:00:01", bridge="ovirtmgmt")
    with pytest.raises(ValueError, match="same MAC"):
        twin = nic.model_copy(update={"id": uuid.uuid4()})
        VmSpec(id=VM_ID, name="a", memory_mib=256, nics=(nic, twin))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash_the_decoder(raw: bytes) -> None:
    try:
        decode_event(raw)
    except ProtocolViolation as exc:
        assert exc.error.code in (ErrorCode.BAD_REQUEST, ErrorCode.UNSUPPORTED_VERSION)
