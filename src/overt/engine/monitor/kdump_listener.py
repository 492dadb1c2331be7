"""The engine's fence_kdump listener (oVirt's ovirt-fence-kdump-listener): a host that
crashed into its kdump kernel runs `fence_kdump_send`, which sends a small UDP message to
the engine every few seconds while the memory dump lasts. The listener matches each message
to a host by its source address and records when it came (`hosts.kdump_message_at`); the
recovery of a non responsive host reads that (`jobs.handlers.kdump_detection`).

A message is 8 bytes: the magic number 0x1B302A40 and the version 1, each 32 bits. The
fence-agents sources say network order, but `fence_kdump_send` writes them in the host's
order (x86: little endian, the bytes oVirt's listener compares with), so both orders are
accepted. A sender that is no host's address, or the address of several hosts, is ignored
(logged once): a kdump message leads to VM restarts without a power fence, so it is trusted
only from the one host it names.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import struct

from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import Host, utcnow

log = logging.getLogger(__name__)

MAGIC = 0x1B302A40
VERSION_1 = 1
MESSAGE_SIZE = 8


def is_kdump_message(data: bytes) -> bool:
    """A fence_kdump version 1 message, in either byte order."""
    if len(data) < MESSAGE_SIZE:
        return False
    return any(struct.unpack(order + "II", data[:MESSAGE_SIZE]) == (MAGIC, VERSION_1)
               for order in ("<", ">"))


def sender_address(address: str) -> str:
    """The sender's address as hosts are recorded (an IPv4-mapped IPv6 as IPv4)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, listener: KdumpListener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.listener.received(data, str(addr[0]))


class KdumpListener:
    """Receives fence_kdump messages on (address, port) and records them on their host."""

    def __init__(self, db: Database, *, address: str, port: int = 7410) -> None:
        self.db = db
        self.address = address
        self.port = port
        self._transport: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[bool]] = set()
        self._warned: set[str] = set()  # senders already logged as unknown or invalid

    async def start(self) -> tuple[str, int]:
        """Bind; returns the address and port bound (port 0 picks a free one)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self.address, self.port))
        self._transport = transport
        bound = transport.get_extra_info("sockname")
        self.port = int(bound[1])
        log.info("fence_kdump listener on %s:%d (UDP)", self.address, self.port)
        return str(bound[0]), self.port

    async def run(self) -> None:
        """Start and receive until cancelled. An address it cannot bind (in use by another
        engine process on this machine, not this machine's) is logged and the engine runs on:
        recoveries then find no message and fence as without kdump detection."""
        try:
            await self.start()
        except OSError as exc:
            log.error("the fence_kdump listener cannot receive on %s:%d (%s): kdump is not "
                      "detected by this engine process", self.address, self.port, exc)
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def received(self, data: bytes, address: str) -> None:
        sender = sender_address(address)
        if not is_kdump_message(data):
            self._warn_once(sender, "discarding a message from %s that is no fence_kdump "
                            "message (%s)", sender, data[:16].hex())
            return
        task = asyncio.get_running_loop().create_task(self.record(sender))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def record(self, sender: str) -> bool:
        """Record a message of `sender` on its host; False when it is no single host's."""
        async with self.db.transaction() as session:
            hosts = list((await session.execute(select(Host).where(
                Host.address == sender).with_for_update())).scalars())
            if len(hosts) != 1:
                self._warn_once(sender, "ignoring fence_kdump messages from %s: %s", sender,
                                "it is the address of no host" if not hosts else
                                "several hosts have this address")
                return False
            host = hosts[0]
            host.kdump_message_at, host.kdump_sender = utcnow(), sender
        log.debug("fence_kdump message from host %s (%s)", host.name, sender,
                  extra={"host": host.name})
        return True

    def _warn_once(self, sender: str, message: str, *args: object) -> None:
        if sender not in self._warned:
            self._warned.add(sender)
            log.warning(message, *args)
