"""`transport_pair`: every contract test runs once per registered transport."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.integration.bus.contract import transports  # noqa: F401 - registers the transports
from tests.integration.bus.contract.harness import TRANSPORTS, TransportPair, transport_pair_for


@pytest_asyncio.fixture(params=[pytest.param(name, marks=registered.marks)
                                for name, registered in TRANSPORTS.items()])
async def transport_pair(request: pytest.FixtureRequest) -> AsyncIterator[TransportPair]:
    async with transport_pair_for(request.param, request) as pair:
        yield pair
