"""The engine's hand on the broker's accounts: one user per node, least privilege.

Works through RabbitMQ's management HTTP API with administrator credentials that
only the engine holds; a node only ever receives its own account
(`BrokerCredentials`), which can read its own command queue and publish its own
events, replies and stats, and nothing else.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import uuid
from typing import Any
from urllib.parse import quote

import httpx

from overt.bus.amqp.topology import (
    ENGINE_PERMISSION,
    EVENTS_EXCHANGE,
    SHARED_EXCHANGES,
    SHARED_POLICIES,
    STATS_EXCHANGE,
    ExchangeSpec,
    QueueSpec,
    command_queue,
    host_of_username,
    node_events_binding,
    node_permissions,
    node_username,
    queue_arguments,
)
from overt.bus.amqp.url import BrokerUrl, broker_addresses, broker_url, require_tls
from overt.protocol.enrollment import BrokerCredentials

log = logging.getLogger(__name__)

DEFAULT_MANAGEMENT_PORT = 15672
_CLOSE_ATTEMPTS = 5


class BrokerAdminError(RuntimeError):
    """The broker's management API could not be reached or refused a change."""


class BrokerAdmin:
    """Creates, rotates and removes nodes' broker accounts in one vhost.

    `management_url` is the management API (http://HOST:15672); `node_url` is the
    broker as the nodes reach it (amqp://HOST:5672 or amqps://HOST:5671, without
    credentials: each node gets its own).
    """

    def __init__(
        self,
        management_url: str,
        *,
        username: str,
        password: str,
        vhost: str,
        node_url: str,
        timeout: float = 10.0,
        verify: ssl.SSLContext | bool = True,
        allow_plain: bool = False,
        quorum_queues: bool = False,
    ) -> None:
        scheme = node_url.partition("://")[0]
        try:
            addresses = broker_addresses(node_url)
        except ValueError:
            addresses = []
        if scheme not in ("amqp", "amqps") or not addresses or "@" in node_url:
            raise ValueError(f"{node_url!r} is not a broker address for nodes: expected "
                             "amqp://HOST:PORT or amqps://HOST:PORT (several, comma-separated, "
                             "for a cluster), without credentials")
        require_tls(management_url, allow_plain=allow_plain,
                    what="the broker's management API")
        require_tls(node_url, allow_plain=allow_plain, what="the broker address for nodes")
        self.vhost = vhost
        self._node_scheme = scheme
        self._node_addresses = addresses
        self._quorum = quorum_queues
        self.management_url = management_url.rstrip("/")
        self._exchanges_ready = False
        self._client = httpx.AsyncClient(
            base_url=f"{self.management_url}/api", auth=(username, password),
            timeout=timeout, verify=verify)

    @classmethod
    def for_broker(cls, url: str, *, management_port: int | None = None,
                   node_url: str | None = None,
                   verify: ssl.SSLContext | bool = True,
                   allow_plain: bool = False, quorum_queues: bool = False) -> BrokerAdmin:
        """The admin for the broker and vhost of `url`, an administrator's amqp(s) URL (its
        management API over https for amqps); nodes reach the same host unless `node_url`
        says otherwise."""
        admin = BrokerUrl.parse(url)
        tls = url.startswith("amqps:")
        scheme, default_port = ("https", 15671) if tls else ("http", DEFAULT_MANAGEMENT_PORT)
        return cls(f"{scheme}://{admin.host}:{management_port or default_port}",
                   username=admin.username, password=admin.password, vhost=admin.vhost,
                   node_url=node_url or f"{'amqps' if tls else 'amqp'}://{admin.host}:{admin.port}",
                   verify=verify, allow_plain=allow_plain, quorum_queues=quorum_queues)

    async def __aenter__(self) -> BrokerAdmin:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def ensure_engine_user(self, username: str, password: str) -> None:
        """An account for engine processes: everything named overt.* in the vhost, no admin."""
        await self._put_user(username, password)
        await self._request("PUT", f"/permissions/{_q(self.vhost)}/{_q(username)}", {
            "configure": ENGINE_PERMISSION, "write": ENGINE_PERMISSION,
            "read": ENGINE_PERMISSION})

    async def enroll_node(self, host_uuid: uuid.UUID) -> BrokerCredentials:
        """Create the node's account and command queue, or give the account a new password
        (connections already open with the old one stay open until they close)."""
        username = node_username(host_uuid)
        password = secrets.token_urlsafe(32)
        await self._put_user(username, password)
        allowed = node_permissions(host_uuid)
        await self._request("PUT", f"/permissions/{_q(self.vhost)}/{_q(username)}", {
            "configure": allowed.configure, "write": allowed.write, "read": allowed.read})
        for exchange in (EVENTS_EXCHANGE, STATS_EXCHANGE):
            await self._request("PUT", f"/topic-permissions/{_q(self.vhost)}/{_q(username)}", {
                "exchange": exchange, "write": allowed.topic_write, "read": "^$"})
        await self.ensure_shared()
        queue = command_queue(host_uuid)
        await self._put_queue(queue)
        await self._route_events(host_uuid)
        log.info("broker account %s ready for node %s", username, host_uuid)
        return BrokerCredentials(
            url=broker_url(self._node_scheme, username, password, *self._node_addresses[0],
                           self.vhost, others=tuple(self._node_addresses[1:])),
            username=username, command_queue=queue.name, events_exchange=EVENTS_EXCHANGE,
            stats_exchange=STATS_EXCHANGE)

    async def _route_events(self, host_uuid: uuid.UUID) -> None:
        """Bind the node's events to its partition queue, so that its first event already
        has a monitor to go to (monitors also bind every host they know of)."""
        exchange, pattern, queue = node_events_binding(host_uuid)
        await self._put_queue(queue)
        await self._request(
            "POST", f"/bindings/{_q(self.vhost)}/e/{_q(exchange)}/q/{_q(queue.name)}",
            {"routing_key": pattern, "arguments": {}})

    async def ensure_shared(self) -> None:
        """The shared exchanges, and the policies that bound the shared queues (policies
        apply to queues that exist already, unlike arguments); durable: once per admin."""
        if self._exchanges_ready:
            return
        for spec in SHARED_EXCHANGES:
            await self._put_exchange(spec)
        for policy in SHARED_POLICIES:
            await self._request("PUT", f"/policies/{_q(self.vhost)}/{_q(policy.name)}", {
                "pattern": policy.pattern, "apply-to": "queues", "priority": 10,
                "definition": policy.definition})
        self._exchanges_ready = True

    async def revoke_node(self, host_uuid: uuid.UUID) -> None:
        """Remove the node's account, its connections and its command queue."""
        username = node_username(host_uuid)
        # RabbitMQ closes a deleted user's connections; closing them again covers a
        # connection that was being opened meanwhile.
        await self._request("DELETE", f"/users/{_q(username)}", missing_ok=True)
        await self._close_connections(username)
        queue = command_queue(host_uuid).name
        await self._request("DELETE", f"/queues/{_q(self.vhost)}/{_q(queue)}", missing_ok=True)
        log.info("broker account %s of node %s removed", username, host_uuid)

    async def node_accounts(self) -> set[uuid.UUID]:
        """The hosts whose node account has rights in this vhost."""
        grants = await self._request("GET", f"/vhosts/{_q(self.vhost)}/permissions") or []
        hosts = (host_of_username(str(grant.get("user", ""))) for grant in grants)
        return {host for host in hosts if host is not None}

    async def _put_user(self, username: str, password: str) -> None:
        await self._request("PUT", f"/users/{_q(username)}", {"password": password, "tags": ""})

    async def _put_exchange(self, spec: ExchangeSpec) -> None:
        await self._request("PUT", f"/exchanges/{_q(self.vhost)}/{_q(spec.name)}", {
            "type": spec.type, "durable": True, "auto_delete": False, "internal": False,
            "arguments": {}})

    async def _put_queue(self, spec: QueueSpec) -> None:
        await self._request("PUT", f"/queues/{_q(self.vhost)}/{_q(spec.name)}", {
            "durable": True, "auto_delete": False,
            "arguments": queue_arguments(spec, quorum=self._quorum)})
        for exchange, routing_key in spec.bindings:
            await self._request(
                "POST", f"/bindings/{_q(self.vhost)}/e/{_q(exchange)}/q/{_q(spec.name)}",
                {"routing_key": routing_key, "arguments": {}})

    async def _close_connections(self, username: str) -> None:
        """Close the user's connections until none is left.

        RabbitMQ answers 500 when a connection it lists dies while it closes it (the
        user's deletion closes them too); asking again settles that race.
        """
        path = f"/connections/username/{_q(username)}"
        for attempt in range(_CLOSE_ATTEMPTS):
            try:
                await self._request("DELETE", path, missing_ok=True,
                                    headers={"X-Reason": "the node's broker account was removed"})
                return
            except BrokerAdminError:
                if attempt == _CLOSE_ATTEMPTS - 1:
                    raise
                if not await self._connections_of(username):
                    return
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _connections_of(self, username: str) -> list[str]:
        listed = await self._request("GET", "/connections?columns=name,user") or []
        return [str(item.get("name")) for item in listed if item.get("user") == username]

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None, *,
                       missing_ok: bool = False, headers: dict[str, str] | None = None) -> Any:
        try:
            response = await self._client.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BrokerAdminError(
                f"cannot reach the broker's management API at {self.management_url} "
                f"({type(exc).__name__}: {exc}); is RabbitMQ running with the "
                "rabbitmq_management plugin enabled?") from None
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code == 401:
            raise BrokerAdminError("the broker's management API refused the engine's "
                                   "administrator credentials")
        if response.is_error:
            raise BrokerAdminError(
                f"the broker's management API refused {method} {path}: "
                f"{response.status_code} {_reason(response)}")
        return response.json() if response.content else None


def _q(name: str) -> str:
    return quote(name, safe="")


def _reason(response: httpx.Response) -> str:
    try:
        return str(response.json().get("reason", response.text))
    except ValueError:
        return response.text
