"""A node's event delivery to the engine gateway: in order, at least once, with backoff.

Sequenced events wait in a bounded buffer and go in batches; a batch leaves the
buffer only once the gateway has accepted it. Stats are lossy: sent at once when
the gateway is known and no other stats sample is on its way, dropped otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections import deque
from itertools import islice

import aiohttp

from overt.bus.direct.http import EVENTS_PATH
from overt.bus.direct.tls import ENGINE_SERVER_NAME
from overt.protocol import EventEnvelope

log = logging.getLogger(__name__)

BATCH_SIZE = 100
MAX_BUFFERED = 10_000
BACKOFF_S = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0)
REQUEST_TIMEOUT_S = 30.0
LOSSY_TIMEOUT_S = 5.0


class DeliveryRefused(RuntimeError):
    """The gateway answered but did not take (all of) a batch."""

    def __init__(self, status: int, accepted: int, message: str) -> None:
        super().__init__(f"gateway answered {status}: {message}")
        self.accepted = accepted


class EventDelivery:
    """Delivers one node's events to `{gateway_url}/v1/events` once a target is set."""

    def __init__(self, max_buffered: int = MAX_BUFFERED) -> None:
        self._buffer: deque[EventEnvelope] = deque()
        self._max_buffered = max_buffered
        self._wake = asyncio.Event()
        self._emptied = asyncio.Event()
        self._url: str | None = None
        self._ssl: ssl.SSLContext | None = None
        self._session: aiohttp.ClientSession | None = None
        self._sender: asyncio.Task[None] | None = None
        self._lossy: asyncio.Task[None] | None = None
        self.dropped = 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._session = aiohttp.ClientSession()
        self._sender = asyncio.create_task(self._send_forever(), name="event-delivery")

    def target(self, gateway_url: str, ssl_context: ssl.SSLContext) -> None:
        """Deliver to this gateway with this client identity from now on (the context
        checks the server's name: it must be the engine's, ENGINE_SERVER_NAME)."""
        self._url = gateway_url.rstrip("/") + EVENTS_PATH
        self._ssl = ssl_context
        self._wake.set()
        log.info("delivering events to %s", self._url)

    async def close(self, flush_timeout_s: float = 2.0) -> None:
        if self._sender is not None:
            if self._url is not None and self._buffer:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained(), flush_timeout_s)
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        if self._lossy is not None:
            self._lossy.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lossy
        if self._session is not None:
            await self._session.close()

    async def _drained(self) -> None:
        while self._buffer:
            self._emptied.clear()
            await self._emptied.wait()

    def publish(self, event: EventEnvelope) -> None:
        if len(self._buffer) >= self._max_buffered:
            self._buffer.popleft()
            self.dropped += 1
            log.warning("event buffer full (%d): dropped the oldest event; the engine will "
                        "see a sequence gap and resync", self._max_buffered)
        self._buffer.append(event)
        self._wake.set()

    def publish_lossy(self, event: EventEnvelope) -> None:
        if self._url is None or self._session is None:
            return
        if self._lossy is not None and not self._lossy.done():
            log.debug("previous stats sample still in flight; dropping this one")
            return
        self._lossy = asyncio.create_task(self._send_lossy(event), name="stats-delivery")

    async def _send_lossy(self, event: EventEnvelope) -> None:
        try:
            await self._post([event], LOSSY_TIMEOUT_S)
        except (aiohttp.ClientError, TimeoutError, DeliveryRefused) as exc:
            log.debug("stats sample dropped: %s", exc)

    async def _send_forever(self) -> None:
        failures = 0
        while True:
            if self._url is None or not self._buffer:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = list(islice(self._buffer, 0, BATCH_SIZE))
            try:
                accepted = await self._post(batch, REQUEST_TIMEOUT_S)
            except DeliveryRefused as exc:
                accepted = exc.accepted
                failures = self._note_failure(failures, exc)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                accepted = 0
                failures = self._note_failure(failures, exc)
            else:
                if failures:
                    log.info("event delivery works again after %d failed attempt(s)", failures)
                failures = 0
            for _ in range(min(accepted, len(batch))):
                self._buffer.popleft()
            if not self._buffer:
                self._emptied.set()
            if failures:
                await asyncio.sleep(BACKOFF_S[min(failures, len(BACKOFF_S)) - 1])

    def _note_failure(self, failures: int, exc: Exception) -> int:
        level = logging.WARNING if failures == 0 else logging.DEBUG
        log.log(level, "cannot deliver events to %s (%s); retrying, %d waiting", self._url,
                exc or type(exc).__name__, len(self._buffer))
        return failures + 1

    async def _post(self, events: list[EventEnvelope], timeout_s: float) -> int:
        if self._session is None or self._url is None or self._ssl is None:
            raise DeliveryRefused(0, 0, "no gateway yet")
        body = "[" + ",".join(event.model_dump_json() for event in events) + "]"
        async with self._session.post(
                self._url, data=body, ssl=self._ssl, server_hostname=ENGINE_SERVER_NAME,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
            text = await response.text()
            accepted = _accepted(text)
            if response.status != 200:
                raise DeliveryRefused(response.status, accepted or 0, text[:300])
            return len(events) if accepted is None else accepted


def _accepted(text: str) -> int | None:
    try:
        value = json.loads(text).get("accepted")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None
