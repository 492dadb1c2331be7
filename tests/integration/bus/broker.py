"""A real RabbitMQ for tests: a vhost and an administrator of this run's own, removed after."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import quote

import httpx

from overt.bus.amqp import BrokerAdmin
from overt.bus.amqp.url import broker_url
from overt.protocol.enrollment import BrokerCredentials
from overt.system.commands import run
from overt.system.daemons import RabbitNode, ensure_rabbitmq, ensure_rabbitmq_admin


@dataclass(frozen=True)
class Broker:
    node: RabbitNode
    vhost: str
    admin_user: str
    admin_password: str

    def url(self, username: str, password: str) -> str:
        return broker_url("amqp", username, password, "127.0.0.1", self.node.amqp_port,
                          self.vhost)

    @property
    def admin_url(self) -> str:
        return self.url(self.admin_user, self.admin_password)

    def admin(self) -> BrokerAdmin:
        return BrokerAdmin(f"http://127.0.0.1:{self.node.management_port}",
                           username=self.admin_user, password=self.admin_password,
                           vhost=self.vhost, node_url=f"amqp://127.0.0.1:{self.node.amqp_port}")

    async def engine_url(self) -> str:
        """The URL of an engine account (documented permissions, no administrator tag)."""
        username, password = f"overt-engine-{self.vhost}", secrets.token_urlsafe(16)
        async with self.admin() as admin:
            await admin.ensure_engine_user(username, password)
        return self.url(username, password)

    async def enroll(self, host_uuid: uuid.UUID | None = None) -> BrokerCredentials:
        async with self.admin() as admin:
            return await admin.enroll_node(host_uuid or uuid.uuid4())


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
