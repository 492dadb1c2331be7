"""The operating system types: oVirt's ids, each once, with defaults that fit the family."""

from __future__ import annotations

from overt.engine.model.operating_systems import (
    BY_ID,
    OPERATING_SYSTEMS,
    operating_system,
)


def test_each_type_has_one_id_and_one_name() -> None:
    assert len({o.name for o in OPERATING_SYSTEMS}) == len(OPERATING_SYSTEMS) == len(BY_ID)
    assert operating_system("beos_5") is None


def test_defaults_fit_the_family() -> None:
    windows = operating_system("windows_2022")
    assert windows is not None and windows.family == "Windows"
    assert (windows.disk_interface, windows.nic_interface) == ("sata", "e1000")
    for os_ in OPERATING_SYSTEMS:
        assert os_.cdrom_bus == ("sata" if os_.machine == "q35" else "ide"), os_.name
        assert os_.min_memory_mib <= os_.recommended_memory_mib
    assert operating_system("other") is not None
    assert operating_system("rhel_7x64").machine == "pc"  # type: ignore[union-attr]
