"""The monitors' notifications of changed VMs: ids in payloads under PostgreSQL's size
limit, and back."""

from __future__ import annotations

import uuid

from overt.engine.db.observed_news import EVERY_VM, parse, payloads


def test_ids_go_comma_separated_and_come_back() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    [payload] = payloads(ids)
    assert sorted(parse(payload) or []) == sorted(ids)


def test_many_ids_are_split_under_the_limit_and_none_is_lost() -> None:
    ids = {uuid.uuid4() for _ in range(1000)}
    said = payloads(ids)
    assert len(said) > 1 and all(len(p.encode()) < 8000 for p in said)
    assert {i for p in said for i in parse(p) or []} == ids


def test_every_vm_and_nothing() -> None:
    assert payloads(None) == [EVERY_VM] and parse(EVERY_VM) is None
    assert payloads([]) == []
    assert parse("not-an-id," + str(uuid.UUID(int=7))) == [uuid.UUID(int=7)]
