"""`overt vm create` waits for the VM's disks: a disk whose creation failed is removed by
the engine, and the wait says so instead of reporting the VM ready."""

from __future__ import annotations

from typing import Any

import pytest

from overt.cli import vm
from overt.cli.client import ApiError


class _Answers:
    """The VM's disk attachments as the API lists them, one answer per poll."""

    def __init__(self, *polls: list[tuple[str, str]]) -> None:
        self.polls = list(polls)

    def get(self, path: str, **params: str) -> Any:
        disks = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
        return {"disk_attachment": [{"disk": {"id": i, "status": s}} for i, s in disks]}


def _wait(answers: _Answers) -> None:
    vm._wait_for_disks(answers, "vm-1")  # type: ignore[arg-type]


def test_the_wait_ends_when_every_disk_is_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)
    _wait(_Answers([("a", "locked"), ("b", "locked")], [("a", "ok"), ("b", "ok")]))


def test_a_disk_that_is_removed_while_waited_for_fails_the_wait(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda _s: None)
    with pytest.raises(ApiError, match="creating a disk failed"):
        _wait(_Answers([("a", "ok"), ("b", "locked")], [("a", "ok")]))

