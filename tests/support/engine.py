"""Running a real engine for tests: in a thread of the test process, on a free port."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import ovirtsdk4 as sdk

from overt.bus.base import EngineTransport
from overt.config import EngineSettings
from overt.engine.composition import EngineRuntime, Parts
from tests.support.ports import free_port
from tests.support.schema import TEST_PASSWORD, copy_migrated_sqlite

__all__ = ["RunningEngine", "free_port", "start_engine"]
T = TypeVar("T")


@dataclass
class RunningEngine:
    runtime: EngineRuntime
    thread: threading.Thread
    loop: asyncio.AbstractEventLoop
    password: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.runtime.settings.api_port}/ovirt-engine/api"

    @property
    def ca_file(self) -> Path:
        return self.runtime.pki.ca_file

    @property
    def gateway_url(self) -> str:
        """Where nodes announce themselves and enroll."""
        return f"https://127.0.0.1:{self.runtime.settings.gateway_port}"

    def admin_connection(self) -> sdk.Connection:
        """The official SDK signed in as admin@internal (close it after use)."""
        return sdk.Connection(url=self.url, username="admin@internal", password=self.password,
                              ca_file=str(self.ca_file))

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the engine's own loop (its database) and return its result."""
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=30)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.runtime.stop)
        self.thread.join(timeout=30)


def start_engine(data_dir: Path, *, db: str | None = None, password: str = TEST_PASSWORD,
                 transport: EngineTransport | None = None, bus: str = "direct",
                 parts: Parts | None = None, **settings: Any) -> RunningEngine:
    """An engine (all parts, or `parts`) in a thread; `settings` are more EngineSettings."""
    config = EngineSettings(**{
        "data_dir": data_dir, "db": db, "api_port": free_port(), "gateway_port": free_port(),
        "admin_password": password, "bus": bus, "public_address": "127.0.0.1",
        "imageio_port": 0, "fence_kdump_port": 0,
        # A silent host is judged at once (the grace has its own fast tests): tests that
        # stop an agent expect it non responsive within their wait.
        "host_grace_s": 0.0, **settings})
    embedded = data_dir / "engine.db"
    if db is None and not embedded.exists():
        # The schema is migrated once per run, not per engine.
        copy_migrated_sqlite(embedded, with_admin=password == TEST_PASSWORD)
    runtime = EngineRuntime(config, parts=parts or Parts(), transport=transport)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    failure: list[BaseException] = []

    async def main() -> None:
        started = asyncio.Event()
        await runtime.prepare()
        task = asyncio.create_task(runtime.run(ready=started))
        await started.wait()
        ready.set()
        await task

    def target() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            failure.append(exc)
            ready.set()
        finally:
            loop.close()

    thread = threading.Thread(target=target, name="engine", daemon=True)
    thread.start()
    if not ready.wait(timeout=60) or failure:
        raise RuntimeError(f"the engine did not start: {failure[0] if failure else 'timeout'}")
    return RunningEngine(runtime, thread, loop, password)
