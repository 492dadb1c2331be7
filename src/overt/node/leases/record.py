"""One lease slot on storage: a 512-byte sector, all zeros when free.

    0   8  magic  b"OVLEASE1"
    8  16  resource   the VM's id (xleases) or the host's id (ids)
   24  16  owner      the holding host's id
   40   8  generation bumped by every acquire
   48   8  timestamp  the owner's counter, bumped by every renewal
   56   4  io_timeout seconds, so a reader knows how long to watch
   60  16  handover   zeros, or the token of a live migration's hand-over: the
                      destination that presents it may take the lease over at once
   76   4  crc32 of bytes 0..75

Readers never compare timestamps with their own clocks: a lease is live while its
timestamp changes (sanlock's delta lease rule), so hosts need no common time.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from dataclasses import dataclass

SECTOR = 512
MAGIC = b"OVLEASE1"
_LAYOUT = struct.Struct("<8s16s16sQQI16s")
_BEFORE_HANDOVER = struct.Struct("<8s16s16sQQI")  # the layout before hand-overs: crc at 60
NO_HANDOVER = bytes(16)


class CorruptRecord(ValueError):
    """A slot holds bytes that are neither zeros nor a record with a valid checksum."""


@dataclass(frozen=True)
class LeaseRecord:
    resource: uuid.UUID
    owner: uuid.UUID
    generation: int
    timestamp: int
    io_timeout: int
    handover: uuid.UUID | None = None  # the owner offers the lease to whoever presents it

    def pack(self) -> bytes:
        body = _LAYOUT.pack(MAGIC, self.resource.bytes, self.owner.bytes, self.generation,
                            self.timestamp, self.io_timeout,
                            self.handover.bytes if self.handover else NO_HANDOVER)
        return (body + struct.pack("<I", zlib.crc32(body))).ljust(SECTOR, b"\0")


def unpack(sector: bytes) -> LeaseRecord | None:
    """The record in a slot, or None for a free (zeroed) slot."""
    if not any(sector[:_LAYOUT.size + 4]):
        return None
    body = sector[:_LAYOUT.size]
    (crc,) = struct.unpack_from("<I", sector, _LAYOUT.size)
    magic, resource, owner, generation, timestamp, io_timeout, handover = _LAYOUT.unpack(body)
    if magic == MAGIC and crc != zlib.crc32(body):
        old = sector[:_BEFORE_HANDOVER.size]
        (old_crc,) = struct.unpack_from("<I", sector, _BEFORE_HANDOVER.size)
        if old_crc == zlib.crc32(old):  # written by a keeper that knew no hand-overs
            crc, handover = zlib.crc32(body), NO_HANDOVER
    if magic != MAGIC or crc != zlib.crc32(body):
        raise CorruptRecord("the lease slot holds no valid lease record")
    return LeaseRecord(uuid.UUID(bytes=resource), uuid.UUID(bytes=owner), generation,
                       timestamp, io_timeout,
                       uuid.UUID(bytes=handover) if handover != NO_HANDOVER else None)


FREE = bytes(SECTOR)
