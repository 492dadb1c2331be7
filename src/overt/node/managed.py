"""The node's transport in fully managed mode: enrollment over HTTPS, then the broker.

The node enrolls as in standalone mode (it announces itself to the engine's
gateway, or the engine adds it by address) and its grant carries the node's own
broker account, which it keeps in its data directory. From then on commands,
events and stats go through the broker with that account; the HTTPS server only
answers enrollment. A grant without an account (the node was added by a worker
process, which holds no broker rights) makes the node ask the gateway again, with
its enrolled key, until it gets one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections import deque
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from overt.bus.amqp.agent import AmqpAgentTransport
from overt.bus.base import CommandHandler
from overt.bus.direct.agent import AgentServerSettings, DirectAgentTransport
from overt.node.enrollment.announce import EnrollmentClient
from overt.node.identity import IdentityError, NodeIdentity
from overt.protocol import EventEnvelope
from overt.protocol.enrollment import BrokerCredentials, EnrollmentGrant

log = logging.getLogger(__name__)

# Events of the agent's run kept while the node has no broker account yet.
MAX_EARLY_EVENTS = 10_000
NO_ACCOUNT_RETRY_S = 60.0


class ManagedAgentTransport:
    """`AgentTransport` of fully managed mode. `broker` is `amqp` or `amqps` (the broker the
    engine names in the grant) or amqp(s)://HOST:PORT (another address of that broker)."""

    def __init__(self, identity: NodeIdentity, server: AgentServerSettings, *,
                 broker: str = "amqp") -> None:
        self.identity = identity
        self.enrollment = DirectAgentTransport(
            identity, AgentServerSettings(**{**server.__dict__, "commands_and_events": False}),
            on_enrolled=self._enrolled)
        self._broker = broker
        self._announce_interval_s = server.announce_interval_s
        self._handler: CommandHandler | None = None
        self._bus: AmqpAgentTransport | None = None
        self._early: deque[EventEnvelope] = deque()
        self._dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def bus(self) -> AmqpAgentTransport | None:
        """The broker end, once the node has its account."""
        return self._bus

    async def start(self, handler: CommandHandler) -> None:
        self._handler = handler
        await self.enrollment.start(handler)
        if self.enrollment.enrolled:
            self._use_account(self.identity.broker_credentials())

    async def publish(self, event: EventEnvelope) -> None:
        if self._bus is not None:
            await self._bus.publish(event)
            return
        if len(self._early) >= MAX_EARLY_EVENTS:
            self._early.popleft()
            self._dropped += 1
            if self._dropped == 1:
                log.warning("not enrolled yet: keeping the last %d events only (the engine "
                            "resyncs this node once it is enrolled)", MAX_EARLY_EVENTS)
        self._early.append(event)

    async def publish_lossy(self, event: EventEnvelope) -> None:
        if self._bus is not None:
            await self._bus.publish_lossy(event)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._bus is not None:
            await self._bus.close()
        await self.enrollment.close()

    # -- the broker account -------------------------------------------------------------

    def _enrolled(self, grant: EnrollmentGrant) -> None:
        self._use_account(grant.broker)

    def _use_account(self, credentials: BrokerCredentials | None) -> None:
        if self._bus is not None:
            return
        if credentials is None:
            self._spawn(self._ask_for_account(), "broker account")
        else:
            self._spawn(self._connect(credentials), "broker")

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("fully managed mode: %s failed", task.get_name(),
                      exc_info=task.exception())

    async def _connect(self, credentials: BrokerCredentials) -> None:
        assert self._handler is not None
        host_uuid = self.enrollment.host_uuid
        credentials = self._aimed(credentials)
        try:
            bus = AmqpAgentTransport(credentials, host_uuid, ssl_context=self._tls(credentials))
        except ValueError as exc:  # the stored account is for another node
            log.error("the stored broker account cannot be used (%s); asking the engine "
                      "for a new one", exc)
            await self._ask_for_account()
            return
        while self._early:
            await bus.publish(self._early.popleft())
        self._bus = bus
        log.info("fully managed mode: commands and events through the broker as %s",
                 credentials.username)
        await bus.start(self._handler)

    async def _ask_for_account(self) -> None:
        """Announce this enrolled node to the engine's gateway until a grant carries an account."""
        gateway = self.identity.gateway_url()
        if gateway is None:
            log.error("enrolled without a broker account and without a gateway to ask for "
                      "one: remove %s and enroll this node again", self.identity.data_dir)
            return
        client = EnrollmentClient(gateway, self.identity, self._announce_interval_s)
        while True:
            log.info("asking the engine at %s for this node's broker account", gateway)
            grant = await client.enroll(self.enrollment.enrollment_request)
            if grant.broker is not None:
                try:
                    self.identity.accept_grant(grant, self.enrollment.host_uuid, gateway)
                except IdentityError as exc:
                    log.error("the engine's grant is not acceptable: %s", exc)
                else:
                    await self._connect(grant.broker)
                    return
            else:
                log.error("the engine at %s gives this node no broker account: it runs in "
                          "standalone mode; start this node with --bus direct", gateway)
            await asyncio.sleep(NO_ACCOUNT_RETRY_S)

    def _aimed(self, credentials: BrokerCredentials) -> BrokerCredentials:
        """The account, at the broker address this node was told to use (if any)."""
        if "://" not in self._broker:
            return credentials
        wanted, granted = urlsplit(self._broker), urlsplit(credentials.url)
        userinfo = granted.netloc.rsplit("@", 1)[0]
        netloc = f"{userinfo}@{wanted.hostname}"
        if wanted.port:
            netloc += f":{wanted.port}"
        url = urlunsplit(granted._replace(scheme=wanted.scheme, netloc=netloc))
        return credentials.model_copy(update={"url": url})

    def _tls(self, credentials: BrokerCredentials) -> ssl.SSLContext | None:
        """For amqps: the system's CAs and the engine CA (which may sign the broker's)."""
        if not credentials.url.startswith("amqps:"):
            return None
        context = ssl.create_default_context()
        ca = self.identity.trusted_ca_file()
        if ca is not None:
            with contextlib.suppress(OSError, ssl.SSLError):
                context.load_verify_locations(cafile=ca)
        return context
