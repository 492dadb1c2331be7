"""One supervised connection to the broker: connect, set up, reconnect with backoff.

Our own loop rather than aio-pika's robust connection: after every (re)connection
the owner's `on_connect` declares what it needs and starts its consumers from
scratch, and in-flight work learns of the loss through `on_disconnect`, so that
nothing is re-declared, re-consumed or re-published behind the owner's back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import random
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection
from aiormq.exceptions import (
    AMQPConnectionError,
    AMQPError,
    ChannelAccessRefused,
    ChannelInvalidStateError,
    ChannelNotFoundEntity,
    ConnectionClosed,
    ProbableAuthenticationError,
    ProtocolSyntaxError,
)

from overt.bus.amqp.url import BrokerUrl

log = logging.getLogger(__name__)

OnConnect = Callable[[AbstractConnection], Awaitable[None]]
# Called (in a task of its own) each time the link is up again: a place to resync.
ConnectedHook = Callable[[], Coroutine[Any, Any, None]]

# What publishing, acknowledging or consuming raises once the channel or the
# connection has gone away (aio-pika raises RuntimeError for a closed transport).
LINK_ERRORS = (AMQPError, ChannelInvalidStateError, ConnectionError, RuntimeError)

# Loggers of the AMQP library, which reports a broker going away as errors with
# tracebacks; the link says the same once, in an administrator's words.
_LIBRARY_LOGGERS = ("aiormq.connection", "aiormq.channel", "aio_pika")


class _LibraryNoise(logging.Filter):
    """Turns the AMQP library's warnings and errors into debug lines without tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.DEBUG:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_library_logs() -> None:
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _LibraryNoise) for f in logger.filters):
            logger.addFilter(_LibraryNoise())


@dataclass(frozen=True)
class Backoff:
    """Exponential delays between attempts, with +-20 % jitter."""

    initial: float = 0.5
    maximum: float = 10.0
    factor: float = 2.0

    def delays(self) -> Iterator[float]:
        delay = self.initial
        while True:
            yield delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret
            delay = min(delay * self.factor, self.maximum)


RECONNECT = Backoff()
FAILURE_LOG_INTERVAL_S = 60.0


class BrokerLink:
    """Keeps one connection to the broker up for its owner, for as long as it is open."""

    def __init__(
        self,
        url: BrokerUrl,
        *,
        name: str,
        on_connect: OnConnect,
        on_disconnect: Callable[[], None],
        backoff: Backoff,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        on_connected: ConnectedHook | None = None,
    ) -> None:
        _quiet_library_logs()
        self._members = url.members()
        self._current = 0
        self._name = name
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._backoff = backoff
        self._connect_timeout = connect_timeout
        self._ssl_context = ssl_context
        self._on_connected = on_connected
        self._hooks: set[asyncio.Task[None]] = set()
        self._connection: AbstractConnection | None = None
        self._ready = asyncio.Event()
        self._tried = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lost: asyncio.Future[BaseException | None] | None = None
        self._warned_at = 0.0
        self._closing = False
        self._elsewhere = False  # the next connection goes to the cluster's next broker

    @property
    def url(self) -> BrokerUrl:
        """The broker this link uses (or tries next), one of the cluster's members."""
        return self._members[self._current]

    def _next_member(self) -> None:
        """Try the cluster's next broker: the current one failed or went away."""
        self._current = (self._current + 1) % len(self._members)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    async def start(self) -> None:
        """Start connecting; return after the first attempt, whether it worked or not."""
        if self._task is not None:
            raise RuntimeError(f"{self._name} is already started")
        self._task = asyncio.create_task(self._run(), name=f"broker link {self._name}")
        await self._tried.wait()

    async def wait_connected(self) -> None:
        """Wait until connected and set up (callers bound the wait with asyncio.timeout)."""
        await self._ready.wait()

    def watch(self, channel: AbstractChannel) -> None:
        """A channel of this connection closing (a broker error) makes the link reconnect,
        so that its owner sets everything up again on a fresh connection."""
        channel.close_callbacks.add(self._on_channel_closed)

    def unwatch(self, channel: AbstractChannel) -> None:
        """Before closing a channel on purpose."""
        channel.close_callbacks.discard(self._on_channel_closed)

    async def _on_channel_closed(self, _channel: AbstractChannel | None,
                                 exc: BaseException | None) -> None:
        await self.reconnect(f"a channel closed: {describe(exc, self.url)}")

    async def reconnect(self, reason: str, *, elsewhere: bool = False) -> None:
        """Drop the current connection (a channel failed); the loop connects again, to the
        cluster's next broker when `elsewhere` (this one refuses what it should take)."""
        if self._lost is not None and not self._lost.done():
            self._elsewhere = self._elsewhere or elsewhere
            self._lost.set_result(LinkReset(reason))

    async def close(self) -> None:
        self._closing = True
        for task in (self._task, *self._hooks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._drop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delays = self._backoff.delays()
        failures = 0
        while not self._closing:
            connection = await self._connect(failures)
            if connection is None:
                failures += 1
                self._next_member()
                self._tried.set()
                await asyncio.sleep(next(delays))
                continue
            log.info("%s: connected to the broker at %s%s", self._name, self.url,
                     f" after {failures} failed attempt(s)" if failures else "")
            failures, since = 0, loop.time()
            self._ready.set()
            self._tried.set()
            self._run_hook()
            lost = self._lost = loop.create_future()
            connection.close_callbacks.add(functools.partial(_resolve, lost))
            if not connection.connected.is_set():  # lost before the callback was there
                _resolve(lost, None, LinkReset("the connection closed during set-up"))
            reason = await lost
            await self._drop()
            if self._closing:
                return
            log.warning("%s: lost the connection to the broker at %s (%s); reconnecting",
                        self._name, self.url, describe(reason, self.url))
            if self._elsewhere or not isinstance(reason, LinkReset):
                self._next_member()
            self._elsewhere = False
            # A connection that keeps failing right after set-up must not spin.
            if loop.time() - since > self._backoff.maximum:
                delays = self._backoff.delays()
            else:
                await asyncio.sleep(next(delays))

    def _run_hook(self) -> None:
        """Tell the transport's user, in a task of its own, that the link is (back) up."""
        if self._on_connected is None:
            return
        task = asyncio.create_task(self._on_connected(), name=f"{self._name} connected")
        self._hooks.add(task)
        task.add_done_callback(self._hook_done)

    def _hook_done(self, task: asyncio.Task[None]) -> None:
        self._hooks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: the on-connected hook failed", self._name,
                      exc_info=task.exception())

    async def _connect(self, failures: int) -> AbstractConnection | None:
        """One attempt: connect and run the owner's set-up. None (logged) when it failed.

        The first failure is an error; while the broker stays away, a warning says
        so once a minute (each attempt is logged at debug level)."""
        connection: AbstractConnection | None = None
        try:
            connection = await aio_pika.connect(
                self.url.url, timeout=self._connect_timeout, ssl_context=self._ssl_context,
                client_properties={"connection_name": self._name})
            self._connection = connection
            await self._on_connect(connection)
        except (*LINK_ERRORS, OSError, TimeoutError) as exc:
            now = asyncio.get_running_loop().time()
            if failures == 0:
                level, self._warned_at = logging.ERROR, now
            elif now - self._warned_at >= FAILURE_LOG_INTERVAL_S:
                level, self._warned_at = logging.WARNING, now
            else:
                level = logging.DEBUG
            log.log(level, "%s: cannot use the broker at %s: %s; trying again%s", self._name,
                    self.url, describe(exc, self.url),
                    f" (attempt {failures + 1})" if failures else "")
        except Exception:
            log.exception("%s: setting up the broker connection failed", self._name)
        else:
            return connection
        await self._drop()
        return None

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        self._ready.clear()
        self._on_disconnect()
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(Exception):
                await connection.close()


class LinkReset(RuntimeError):
    """The link dropped its connection on purpose, to set everything up again."""


def _resolve(lost: asyncio.Future[BaseException | None], _sender: object,
             exc: BaseException | None) -> None:
    if not lost.done():
        lost.set_result(exc)


def describe(exc: BaseException | None, url: BrokerUrl) -> str:
    """A broker failure in words an administrator can act on, without secrets."""
    user, vhost = url.username, url.vhost
    if exc is None:
        return "the connection was closed"
    if isinstance(exc, LinkReset):
        return str(exc)
    if isinstance(exc, ProbableAuthenticationError):
        return (f"the broker refused user {user!r} (wrong password or unknown user): check "
                "the credentials, or enroll the node again")
    if isinstance(exc, ConnectionClosed):
        text = exc.args[1] if len(exc.args) > 1 else exc
        return url.scrub(f"the broker closed it: {text}")
    if isinstance(exc, ProtocolSyntaxError) and "Connection.Close" in str(exc):
        return (f"the broker closed the connection while opening vhost {vhost!r}: it does "
                f"not exist or user {user!r} has no permissions there")
    if isinstance(exc, ChannelAccessRefused):
        return f"user {user!r} is not allowed to do this: {url.scrub(str(exc))}"
    if isinstance(exc, ChannelNotFoundEntity):
        return f"missing on the broker: {url.scrub(str(exc))}"
    code, text = None, ""
    if isinstance(exc, AMQPConnectionError) and exc.args:
        code, text = exc.args[0], str(exc.args[1]) if len(exc.args) > 1 else ""
    elif isinstance(exc, OSError):
        code, text = exc.errno, exc.strerror or ""
    if code == errno.ECONNREFUSED:
        return f"nothing answers at {url.host}:{url.port} (is RabbitMQ running?)"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (f"the certificate of {url.host}:{url.port} is not trusted ({text}): give "
                "this side the CA that signed the broker's certificate")
    if "SSL" in text:
        return url.scrub(f"TLS with {url.host}:{url.port} failed: {text}")
    if isinstance(code, int):
        return url.scrub(f"cannot reach {url.host}:{url.port}: {os.strerror(code)}"
                         + (f" ({text})" if text else ""))
    if isinstance(exc, TimeoutError):
        return f"no answer from {url.host}:{url.port} in time"
    return url.scrub(f"{type(exc).__name__}: {exc}")
