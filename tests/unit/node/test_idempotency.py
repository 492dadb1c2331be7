"""Command results kept by idempotency key: a resent command never acts twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest

from overt.node.errors import NodeFailure
from overt.node.idempotency import IdempotencyStore
from overt.protocol import CommandEnvelope, ErrorCode, NodeError, Reply
from overt.protocol.commands import Empty, VmDestroy, VmPause

VM = uuid.uuid4()


def _envelope(key: str | None, command: VmDestroy | VmPause | None = None) -> CommandEnvelope:
    return CommandEnvelope(idempotency_key=key, command=command or VmDestroy(vm_id=VM))


class Action:
    """Counts how often the command really acts."""

    def __init__(self, ok: bool = True, delay: float = 0.0) -> None:
        self.calls = 0
        self.ok = ok
        self.delay = delay

    def __call__(self, envelope: CommandEnvelope):  # type: ignore[no-untyped-def]
        async def act() -> Reply:
            self.calls += 1
            await asyncio.sleep(self.delay)
            if self.ok:
                return Reply.success(envelope.request_id, Empty())
            return Reply.failure(envelope.request_id,
                                 NodeError(code=ErrorCode.TIMEOUT, message="slow"))
        return act


def test_a_repeated_key_answers_the_first_result(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path / "r.sqlite")
    action = Action()
    first, again = _envelope("job-1"), _envelope("job-1")
    reply1 = asyncio.run(store.once(first, action(first)))
    reply2 = asyncio.run(store.once(again, action(again)))
    assert action.calls == 1
    assert reply2.ok and reply2.request_id == again.request_id
    assert reply2.result == reply1.result


def test_results_survive_a_restart(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path / "r.sqlite")
    action = Action()
    first = _envelope("job-2")
    asyncio.run(store.once(first, action(first)))
    store.close()
    reopened = IdempotencyStore(tmp_path / "r.sqlite")
    again = _envelope("job-2")
    assert asyncio.run(reopened.once(again, action(again))).ok
    assert action.calls == 1


def test_failures_are_not_kept_so_a_retry_acts(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path / "r.sqlite")
    action = Action(ok=False)
    for _ in range(2):
        envelope = _envelope("job-3")
        assert not asyncio.run(store.once(envelope, action(envelope))).ok
    assert action.calls == 2


def test_without_a_key_every_command_acts(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path / "r.sqlite")
    action = Action()
    for _ in range(2):
        envelope = _envelope(None)
        asyncio.run(store.once(envelope, action(envelope)))
    assert action.calls == 2


def test_a_twin_arriving_while_the_first_runs_waits_for_its_result(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path / "r.sqlite")
    action = Action(delay=0.2)

    async def both() -> list[Reply]:
        a, b = _envelope("job-4"), _envelope("job-4")
        return list(await asyncio.gather(store.once(a, action(a)), store.once(b, action(b))))
    replies = asyncio.run(both())
    assert action.calls == 1 and all(r.ok for r in replies)


def test_a_key_reused_for_another_command_is_refused(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path / "r.sqlite")
    first = _envelope("job-5")
    asyncio.run(store.once(first, Action()(first)))
    other = _envelope("job-5", VmPause(vm_id=VM))
    with pytest.raises(NodeFailure, match="already used for another command"):
        asyncio.run(store.once(other, Action()(other)))


def test_old_results_are_pruned(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path / "r.sqlite", max_age_s=60)
    envelope = _envelope("job-6")
    asyncio.run(store.once(envelope, Action()(envelope)))
    assert store.prune(now=time.time() + 30) == 0
    assert store.prune(now=time.time() + 120) == 1
    assert store.lookup("job-6", "x") is None
