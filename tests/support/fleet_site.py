"""An engine with a simulated fleet on a loop thread of its own and the admin's SDK
connection, in a temporary directory: the set-up of tests about the nodes' certificates."""

from __future__ import annotations

import shutil
from pathlib import Path

import ovirtsdk4 as sdk

from overt.node.simulated.fleet import SimulatedFleet
from tests.integration.node.harness import LoopThread
from tests.security.conftest import close_loop
from tests.support.engine import RunningEngine


class FleetSite:
    """What a subclass builds in its `__init__`; `close` takes it all down."""

    base: Path
    engine: RunningEngine
    loop: LoopThread
    fleet: SimulatedFleet
    connection: sdk.Connection

    def events(self) -> list[str]:
        return [e.description for e in
                self.connection.system_service().events_service().list(max=500)]

    def close(self) -> None:
        self.connection.close()
        self.loop.run(self.fleet.stop())
        close_loop(self.loop)
        self.engine.stop()
        shutil.rmtree(self.base, ignore_errors=True)
