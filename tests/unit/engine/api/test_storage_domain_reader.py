"""The storage domain an oVirt SDK sends for an iSCSI import (its LUNs inside
`storage.volume_group`, `import`) read as the service takes it, in XML and in JSON."""

from __future__ import annotations

import json

import ovirtsdk4.types as types
from ovirtsdk4.writers import StorageDomainWriter
from ovirtsdk4.xml import XmlWriter

from overt.engine.api.inventory_readers import read_storage_domain
from overt.engine.api.wire.parse import parse_body
from overt.engine.model.status import StorageType
from overt.engine.services.inputs import LogicalUnitInput

TARGET = "iqn.2026-11.org.overt.lab:ovlab.storage"


def _sdk_xml() -> bytes:
    writer = XmlWriter(None, True)
    StorageDomainWriter.write_one(types.StorageDomain(
        name="san-imported", type=types.StorageDomainType.DATA, import_=True,
        host=types.Host(name="node1"),
        storage=types.HostStorage(type=types.StorageType.ISCSI,
                                  volume_group=types.VolumeGroup(logical_units=[
                                      types.LogicalUnit(id="360000000000000000e00000000010001",
                                                        address="10.77.1.2", port=3260,
                                                        target=TARGET)]))), writer)
    text = writer.string()
    writer.close()
    return text.encode()


def test_an_sdk_import_of_an_iscsi_domain_names_its_lun_in_the_volume_group() -> None:
    unit = LogicalUnitInput(id="360000000000000000e00000000010001", address="10.77.1.2",
                            port=3260, target=TARGET)
    data = read_storage_domain(parse_body(_sdk_xml(), "application/xml", "storage_domain"))
    assert (data.import_, data.storage_type, data.logical_units) == (
        True, StorageType.ISCSI, [unit])
    body = json.dumps({"name": "x", "import": True, "storage": {
        "type": "iscsi", "volume_group": {"logical_units": {"logical_unit": [
            {"address": "10.77.1.2", "port": 3260, "target": TARGET, "lun_mapping": 1}]}}}})
    data = read_storage_domain(parse_body(body.encode(), "application/json", "storage_domain"))
    assert data.logical_units == [LogicalUnitInput(address="10.77.1.2", port=3260,
                                                   target=TARGET, lun_mapping=1)]
