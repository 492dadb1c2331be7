"""A VM's `high_availability` (enabled, priority) as the oVirt SDK sends and reads it."""

from __future__ import annotations

import uuid

import ovirtsdk4.readers
import ovirtsdk4.types as types
import ovirtsdk4.writers  # noqa: F401 - registers the SDK's writers
from ovirtsdk4.reader import Reader
from ovirtsdk4.writer import Writer

from overt.engine.api import views
from overt.engine.api.readers import read_vm
from overt.engine.api.wire.parse import parse_body
from overt.engine.api.wire.render import to_xml
from overt.engine.db.tables import Vm
from overt.engine.model.status import VmStatus


def test_the_sdks_high_availability_is_read_whole() -> None:
    sent = types.Vm(high_availability=types.HighAvailability(enabled=True, priority=50))
    data = read_vm(parse_body(Writer.write(sent, root="vm").encode(), "application/xml", "vm"))
    assert (data.high_availability, data.ha_priority) == (True, 50)
    absent = read_vm(parse_body(b"<vm><name>x</name></vm>", "application/xml", "vm"))
    assert (absent.high_availability, absent.ha_priority) == (None, None)


def test_the_sdk_reads_back_the_stored_priority() -> None:
    row = Vm(id=uuid.uuid4(), name="web", cluster_id=uuid.uuid4(), template_id=uuid.uuid4(),
             memory_mib=256, status=VmStatus.DOWN, high_availability=True, ha_priority=100,
             boot_devices=["hd"], migration={}, placement_hosts=[],
             placement_affinity="migratable", cpu_sockets=1, cpu_cores=1, cpu_threads=1)
    seen = Reader.read(to_xml("vm", views.vm(row)))
    assert isinstance(seen, types.Vm)
    assert seen.high_availability.enabled is True
    assert seen.high_availability.priority == 100
