"""A real RabbitMQ for tests: a vhost and an administrator of this run's own, removed after."""

from __future__ import annotations

import asyncio
import random
import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from overt.bus.amqp.admin import BrokerAdmin
from overt.bus.amqp.url import broker_url
from overt.protocol.enrollment import BrokerCredentials
from overt.system.commands import run
from overt.system.daemons import (
    RabbitNode,
    ensure_rabbitmq,
    ensure_rabbitmq_admin,
    stop_rabbitmq,
)
from overt.system.waiting import tcp_port_answers


@dataclass(frozen=True)
class Broker:
    node: RabbitNode
    vhost: str
    admin_user: str
    admin_password: str
    engine_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    def url(self, username: str, password: str, *, scheme: str = "amqp",
            port: int | None = None) -> str:
        return broker_url(scheme, username, password, "127.0.0.1", port or self.node.amqp_port,
                          self.vhost)

    @property
    def admin_url(self) -> str:
        return self.url(self.admin_user, self.admin_password)

    def admin(self, *, node_url: str | None = None) -> BrokerAdmin:
        """The engine's BrokerAdmin; nodes reach the broker at `node_url` (default: plain)."""
        return BrokerAdmin(f"http://127.0.0.1:{self.node.management_port}",
                           username=self.admin_user, password=self.admin_password,
                           vhost=self.vhost,
                           node_url=node_url or f"amqp://127.0.0.1:{self.node.amqp_port}")

    async def engine_url(self, *, scheme: str = "amqp", port: int | None = None) -> str:
        """The URL of this run's engine account (documented permissions, no admin tag)."""
        username = f"overt-engine-{self.vhost}"
        async with self.admin() as admin:
            await admin.ensure_engine_user(username, self.engine_password)
        return self.url(username, self.engine_password, scheme=scheme, port=port)

    def engine_url_now(self) -> str:
        """`engine_url()` for code outside an event loop."""
        return asyncio.run(self.engine_url())

    async def enroll(self, host_uuid: uuid.UUID | None = None, *,
                     node_url: str | None = None) -> BrokerCredentials:
        async with self.admin(node_url=node_url) as admin:
            return await admin.enroll_node(host_uuid or uuid.uuid4())


def private_node(*config: str) -> RabbitNode:
    """A RabbitMQ node of the caller's own: free ports, data under /var/tmp (not started)."""
    return RabbitNode(
        name=f"overt-test-{secrets.token_hex(3)}",
        amqp_port=_free_port(5700, 9999, also_free=20000),  # + 20000: Erlang distribution
        management_port=_free_port(15700, 19999),
        base_dir=Path(tempfile.mkdtemp(prefix="overt-rabbitmq-", dir="/var/tmp")),
        config=config)


def remove_private_node(node: RabbitNode) -> None:
    if tcp_port_answers("127.0.0.1", node.amqp_port):
        stop_rabbitmq(node)
    if node.base_dir is not None:
        shutil.rmtree(node.base_dir, ignore_errors=True)


def _free_port(low: int, high: int, *, also_free: int = 0) -> int:
    for _ in range(200):
        port = random.randint(low, high)  # noqa: S311
        if not tcp_port_answers("127.0.0.1", port) and not (
                also_free and tcp_port_answers("127.0.0.1", port + also_free)):
            return port
    raise RuntimeError(f"no free port between {low} and {high}")


def open_broker(node: RabbitNode) -> Broker:
    """Start RabbitMQ if needed, then make this run's vhost and administrator."""
    ensure_rabbitmq(node)
    tag = secrets.token_hex(4)
    broker = Broker(node, vhost=f"overt-test-{tag}", admin_user=f"overt-test-admin-{tag}",
                    admin_password=secrets.token_urlsafe(24))
    ensure_rabbitmq_admin(broker.admin_user, broker.admin_password, vhost=broker.vhost,
                          node=node)
    return broker


def close_broker(broker: Broker) -> None:
    """Remove the vhost (with every queue in it) and every user that had rights in it."""
    with httpx.Client(base_url=f"http://127.0.0.1:{broker.node.management_port}/api",
                      auth=(broker.admin_user, broker.admin_password), timeout=30) as http:
        vhost = quote(broker.vhost, safe="")
        users = {grant["user"] for grant in http.get(f"/vhosts/{vhost}/permissions").json()}
        for user in users - {broker.admin_user}:
            http.delete(f"/users/{quote(user, safe='')}")
        http.delete(f"/vhosts/{vhost}")
    run([*broker.node.tool("rabbitmqctl"), "delete_user", broker.admin_user],
        env=broker.node.environment(), check=False)


@contextmanager
def private_broker() -> Iterator[Broker]:
    """A RabbitMQ node of its own (that a test may stop and start) with this run's vhost;
    started again if a test left it stopped, then removed with everything in it."""
    node = private_node()
    try:
        broker = open_broker(node)
        yield broker
        ensure_rabbitmq(node)
        close_broker(broker)
    finally:
        remove_private_node(node)
