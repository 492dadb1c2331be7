"""One connection to libvirtd, kept alive: event loop integration, callbacks, reconnection.

libvirt's asyncio event implementation is registered once per process, before
the first connection. Callbacks only enqueue; a close callback plus keepalive
notice a dead libvirtd, and the connection is reopened with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import libvirt
import libvirtaio

from overt.node.errors import NodeFailure
from overt.node.hypervisor.executor import BlockingCalls
from overt.node.hypervisor.libvirt_states import REBOOTED
from overt.protocol import ErrorCode

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class RawDomainEvent:
    """A libvirt domain event as its callback saw it (no RPC made in the callback)."""

    domain_uuid: str
    name: str
    event: int
    detail: int


@dataclass(frozen=True)
class Reconnected:
    """libvirtd answered again after the connection was lost."""


def _ignore_error(_ctx: object, _err: object) -> None:
    """libvirt prints every error on stderr by default; the agent reports them itself."""


def register_event_loop() -> None:
    """Make libvirt dispatch its events on the running asyncio loop (once per process)."""
    loop = asyncio.get_running_loop()
    current = libvirtaio.getCurrentImpl()
    if current is None:
        libvirt.registerErrorHandler(_ignore_error, None)
        libvirtaio.virEventRegisterAsyncIOImpl(loop=loop)
    elif current.loop is not loop:
        raise RuntimeError("libvirt's events are already bound to another asyncio loop; "
                           "run one agent loop per process")


class LibvirtConnection:
    """The agent's connection to one libvirtd, reopened whenever it drops."""

    def __init__(self, uri: str, calls: BlockingCalls) -> None:
        self.uri = uri
        self.calls = calls
        self.events: asyncio.Queue[RawDomainEvent | Reconnected] = asyncio.Queue()
        self._conn: libvirt.virConnect | None = None
        self._callback_ids: list[int] = []
        self._reconnecting: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def get(self) -> libvirt.virConnect:
        """The live connection, or a failure an administrator understands."""
        if self._conn is None:
            raise NodeFailure(ErrorCode.HYPERVISOR_ERROR,
                              f"libvirtd at {self.uri} is not answering; the agent reconnects "
                              "by itself (check that libvirtd runs on the node)")
        return self._conn

    async def open(self) -> libvirt.virConnect:
        register_event_loop()
        conn = await self.calls.run(libvirt.open, self.uri)
        await self.calls.run(self._subscribe, conn)
        self._conn = conn
        log.info("connected to libvirtd at %s", self.uri)
        return conn

    def _subscribe(self, conn: libvirt.virConnect) -> None:
        conn.setKeepAlive(KEEPALIVE_INTERVAL_S, KEEPALIVE_COUNT)
        conn.registerCloseCallback(self._on_close, None)
        self._callback_ids = [
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                        self._on_lifecycle, None),
            conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_REBOOT,
                                        self._on_reboot, None),
        ]

    async def close(self) -> None:
        self._closing = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.calls.run(self._unsubscribe_and_close, conn, list(self._callback_ids))

    @staticmethod
    def _unsubscribe_and_close(conn: libvirt.virConnect, callback_ids: list[int]) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            for callback_id in callback_ids:
                conn.domainEventDeregisterAny(callback_id)
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    # -- callbacks: run on the event loop, only enqueue ------------------------------

    def _on_lifecycle(self, _conn: libvirt.virConnect, dom: libvirt.virDomain, event: int,
                      detail: int, _opaque: object) -> None:
        self.events.put_nowait(RawDomainEvent(dom.UUIDString(), dom.name(), event, detail))

    def _on_reboot(self, _conn: libvirt.virConnect, dom: libvirt.virDomain,
                   _opaque: object) -> None:
        self.events.put_nowait(RawDomainEvent(dom.UUIDString(), dom.name(), REBOOTED, 0))

    def _on_close(self, _conn: libvirt.virConnect, reason: int, _opaque: object) -> None:
        if self._closing:
            return
        log.warning("lost the connection to libvirtd at %s (reason %d); reconnecting",
                    self.uri, reason)
        self._conn = None
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        while not self._closing:
            await asyncio.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
            attempt += 1
            try:
                await self.open()
            except libvirt.libvirtError as exc:
                log.debug("libvirtd still not answering: %s", exc.get_error_message())
                continue
            self.events.put_nowait(Reconnected())
            return
