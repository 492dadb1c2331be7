"""Boot ids sort by the time their agent run started."""

from __future__ import annotations

import uuid

from overt.protocol.boots import boot_started_ms, is_earlier_boot, new_boot_id


def test_a_boot_id_is_a_version_7_uuid_carrying_its_start() -> None:
    boot = new_boot_id(started_at=1_800_000_000.123)
    assert boot.version == 7 and boot.variant == uuid.RFC_4122
    assert boot_started_ms(boot) == 1_800_000_000_123
    assert new_boot_id(started_at=1_800_000_000.123) != boot  # random bits


def test_an_earlier_run_is_known_only_when_both_ids_carry_time() -> None:
    early, late = new_boot_id(started_at=1000.0), new_boot_id(started_at=1000.5)
    assert is_earlier_boot(early, late) and not is_earlier_boot(late, early)
    assert not is_earlier_boot(early, early)
    assert not is_earlier_boot(uuid.uuid4(), late) and not is_earlier_boot(early, uuid.uuid4())
