"""A node's probe of its storage domains, with the real qemu-img: a server that refuses
and one that accepts the connection but never answers are both unreachable, the second
within the probe's timeout (its qemu-img killed), and the reason says which."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from overt.node.storage.reach import probe_domains
from overt.protocol.storage import IscsiLunRef, NfsExportRef
from overt.protocol.storage_reach import ProbeTarget, StorageDomainsProbe

IQN = "iqn.2003-01.org.example:target0"


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def accept(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


async def _closed_port() -> int:
    server = await asyncio.start_server(lambda _r, _w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port


async def test_a_refused_and_a_silent_server_are_unreachable_with_the_reason(
        silent_port: int) -> None:
    refused, silent, bare = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    closed = await _closed_port()
    reach = await probe_domains(StorageDomainsProbe(timeout_s=1.5, domains=[
        ProbeTarget(domain_id=refused, iscsi=IscsiLunRef(portal=f"127.0.0.1:{closed}",
                                                         target=IQN, lun=1)),
        ProbeTarget(domain_id=silent, iscsi=IscsiLunRef(portal=f"127.0.0.1:{silent_port}",
                                                        target=IQN, lun=1)),
        ProbeTarget(domain_id=bare),
    ]))
    found = {d.domain_id: d for d in reach.domains}
    assert [d.domain_id for d in reach.domains] == [refused, silent, bare]
    assert not any(d.reachable for d in reach.domains)
    assert found[refused].error and "within" not in found[refused].error
    assert found[silent].error == f"no answer from 127.0.0.1:{silent_port} within 1.5 s"
    assert "neither an NFS export nor a LUN" in found[bare].error
    assert all(d.total_bytes is None and d.free_bytes is None for d in reach.domains)


async def test_an_address_without_an_nfs_server_is_unreachable() -> None:
    sd = uuid.uuid4()  # the lab's nfs-ganesha serves in its own namespace, not on loopback
    reach = await probe_domains(StorageDomainsProbe(timeout_s=1.0, domains=[ProbeTarget(
        domain_id=sd, nfs=NfsExportRef(server="127.0.0.1", export="/export"))]))
    [seen] = reach.domains
    assert (seen.domain_id, seen.reachable) == (sd, False)
    assert seen.error
