"""Talking AMQP by hand, as a misbehaving or malicious peer would."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
from aio_pika.abc import AbstractChannel

from overt.bus.amqp.topology import EVENTS_EXCHANGE, event_routing_key
from overt.protocol import EventEnvelope


@asynccontextmanager
async def raw_channel(url: str) -> AsyncIterator[AbstractChannel]:
    """A channel with publisher confirms on a connection of its own."""
    connection = await aio_pika.connect(url)
    try:
        yield await connection.channel(publisher_confirms=True)
    finally:
        await connection.close()


async def publish_raw(url: str, exchange: str, routing_key: str, body: bytes, *,
                      user_id: str | None = None, correlation_id: str | None = None,
                      reply_to: str | None = None) -> None:
    async with raw_channel(url) as channel:
        target = await channel.get_exchange(exchange, ensure=False)
        await target.publish(aio_pika.Message(body, user_id=user_id,
                                              correlation_id=correlation_id, reply_to=reply_to,
                                              delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                             routing_key, mandatory=False)


async def publish_event_as(url: str, user: str, event: EventEnvelope, *,
                           host_uuid: uuid.UUID | None = None) -> None:
    """Publish `event` with the given user_id, under the routing key of `host_uuid`
    (default: the event's own host)."""
    routing_key = event_routing_key(host_uuid or event.host_uuid, event.event.type)
    await publish_raw(url, EVENTS_EXCHANGE, routing_key, event.model_dump_json().encode(),
                      user_id=user)
