"""The agent's watchdog over its lease keeper: a keeper killed outright (not stopped) is
started again at once, by the same path the agent starts it, and answers again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from pathlib import Path

from overt.node.leases.client import KeeperUnavailable, LeaseClient
from overt.node.leases.service import PID_NAME, SOCKET_NAME, ensure_keeper, watch_keeper

URI = "test:///default"  # the keeper touches libvirt only to stop a VM


async def _answering_pid(state: Path, *, other_than: int | None = None) -> int:
    """The pid of the keeper that answers on the socket (a new one, if `other_than`)."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        with contextlib.suppress(KeeperUnavailable, OSError, TimeoutError, ValueError):
            await LeaseClient(state / SOCKET_NAME, timeout_s=2).status()
            pid = int((state / PID_NAME).read_text())
            if pid != other_than:
                return pid
        assert asyncio.get_running_loop().time() < deadline, "no keeper answers"
        await asyncio.sleep(0.1)


async def test_a_killed_keeper_is_started_again_and_answers(tmp_path: Path) -> None:
    state, host = tmp_path / "data" / "leases", uuid.uuid4()
    await ensure_keeper(state, URI, host)
    first = await _answering_pid(state)
    watchdog = asyncio.create_task(watch_keeper(state, URI, host, every_s=0.2))
    second = None
    try:
        await asyncio.sleep(0.5)  # a keeper that runs is left alone
        assert int((state / PID_NAME).read_text()) == first
        os.kill(first, signal.SIGKILL)
        second = await _answering_pid(state, other_than=first)
        assert (await LeaseClient(state / SOCKET_NAME).status())["vms"] == {}
    finally:
        watchdog.cancel()
        for pid in (first, second):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
