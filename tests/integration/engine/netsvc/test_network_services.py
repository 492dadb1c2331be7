"""The network services on real dnsmasq and chronyd: the engine side of a veth pair in one
private network namespace, a "VM" (the other end, with the VM NIC's MAC) in another. The
VM gets its reserved address from a real DHCP client, resolves names and the engine's SRV
record through the engine's dnsmasq, reads the time from the engine's chronyd, and a node
with no engine URL finds the engine by DNS."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.seed import BLANK_TEMPLATE_ID
from overt.engine.db.tables import Cluster, DataCenter, Host, Network, Vm, VmNic, VnicProfile
from overt.engine.netsvc.daemon import alive
from overt.engine.netsvc.plan import parse_plan
from overt.engine.netsvc.service import NetworkServices
from tests.support.netns_pair import Wire, veth_pair

pytestmark = pytest.mark.slow

VM_MAC = "56:6f:00:33:00:01"
GATEWAY_PORT = 8444


@pytest.fixture
def wire() -> Iterator[Wire]:
    with veth_pair(VM_MAC) as w:
        yield w


async def _add_vm(db: Database, network: str, vm: str, mac: str) -> None:
    async with db.transaction() as session:
        net = (await session.execute(select(Network).where(Network.name == network))
               ).scalar_one()
        profile = (await session.execute(select(VnicProfile).where(
            VnicProfile.network_id == net.id))).scalar_one()
        cluster = (await session.execute(select(Cluster).where(Cluster.name == "Default"))
                   ).scalar_one()
        vm_id = uuid.uuid4()
        session.add(Vm(id=vm_id, name=vm, cluster_id=cluster.id,
                       template_id=BLANK_TEMPLATE_ID, memory_mib=256))
        await session.flush()
        session.add(VmNic(vm_id=vm_id, name="nic1", mac=mac, vnic_profile_id=profile.id))


@pytest_asyncio.fixture
async def services(db: Database, wire: Wire, tmp_path: Path) -> AsyncIterator[NetworkServices]:
    async with db.transaction() as session:
        dc = (await session.execute(select(DataCenter))).scalars().first()
        assert dc is not None
        net = Network(id=uuid.uuid4(), name="nsvnet", data_center_id=dc.id, bridge="nsvnet",
                      usages=["vm"])
        session.add(net)
        await session.flush()
        session.add(VnicProfile(name="nsvnet", network_id=net.id))
        cluster = (await session.execute(select(Cluster))).scalars().first()
        assert cluster is not None
        session.add(Host(name="node1", address=str(wire.host(2)), cluster_id=cluster.id,
                         status="up"))
    await _add_vm(db, "nsvnet", "web1", VM_MAC)
    plan = parse_plan({
        "domain": "overt.test", "upstream_dns": [], "refresh_s": 3600,
        "networks": [{"name": "nsvnet", "interface": wire.engine_if, "subnet": str(wire.subnet),
                      "address": str(wire.host(1)),
                      "dhcp_range": f"{wire.host(100)}-{wire.host(150)}",
                      "reserved_range": f"{wire.host(10)}-{wire.host(50)}"}],
    }, gateway_port=GATEWAY_PORT)
    svc = NetworkServices(db, plan, tmp_path / "netsvc", wrap=["ip", "netns", "exec",
                                                              wire.engine_ns])
    await svc.start()
    yield svc
    await svc.stop()


def _in_vm(wire: Wire, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", wire.vm_ns, *argv], capture_output=True,
                          text=True, timeout=timeout, check=False)


def _python_in_vm(wire: Wire, code: str) -> str:
    done = _in_vm(wire, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _resolve(wire: Wire, name: str, rdtype: str = "A") -> list[str]:
    code = ("import dns.resolver as r; x = r.Resolver(configure=False); "
            f"x.nameservers = ['{wire.host(1)}']; x.lifetime = 5\n"
            "try:\n"
            f"    print('\\n'.join(a.to_text() for a in x.resolve('{name}', '{rdtype}')))\n"
            "except r.NXDOMAIN:\n    pass\n")
    return _python_in_vm(wire, code).splitlines()


async def _until(check: object, timeout_s: float = 15.0) -> None:
    assert callable(check)
    for _ in range(int(timeout_s / 0.2)):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.2)
    assert await asyncio.to_thread(check)


def _dhcp_lease(wire: Wire, tmp_path: Path) -> str:
    script = tmp_path / "udhcpc.sh"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] || exit 0\n'
                      'ip addr add "$ip/$mask" dev "$interface"\n'
                      'echo "LEASE $ip $domain $dns $ntpsrv"\n')
    script.chmod(0o755)
    done = _in_vm(wire, "busybox", "udhcpc", "-i", wire.vm_if, "-f", "-q", "-n", "-t", "10",
                  "-T", "1", "-s", str(script), "-O", "ntpsrv", "-O", "search")
    lease = [line for line in done.stdout.splitlines() if line.startswith("LEASE ")]
    assert lease, f"no lease: {done.stdout} {done.stderr}"
    return lease[0]


async def test_vm_gets_its_reserved_address_and_resolves_names(
        services: NetworkServices, wire: Wire, tmp_path: Path) -> None:
    lease = await asyncio.to_thread(_dhcp_lease, wire, tmp_path)
    _, address, domain, dns, ntp = lease.split()
    assert address == str(wire.host(10))  # the first address of the reserved range
    assert (domain, dns, ntp) == ("overt.test", str(wire.host(1)), str(wire.host(1)))
    leases = (services.network_dir("nsvnet") / "leases").read_text()
    assert VM_MAC in leases and "web1" in leases

    assert await asyncio.to_thread(_resolve, wire, "web1.default.overt.test") == [address]
    assert await asyncio.to_thread(_resolve, wire, "node1.default.overt.test") == \
        [str(wire.host(2))]
    assert await asyncio.to_thread(_resolve, wire, "engine.overt.test") == [str(wire.host(1))]
    assert await asyncio.to_thread(_resolve, wire, "_overt._tcp.overt.test", "SRV") == \
        [f"0 0 {GATEWAY_PORT} engine.overt.test."]
    assert await asyncio.to_thread(_resolve, wire, "nothere.default.overt.test") == []


async def test_new_vm_is_published_without_restart_and_dead_daemon_comes_back(
        services: NetworkServices, db: Database, wire: Wire) -> None:
    daemon = services.dnsmasq["nsvnet"]
    pid = daemon.pid
    await _add_vm(db, "nsvnet", "db1", "56:6f:00:33:00:02")
    await services.refresh()
    assert daemon.pid == pid  # only its hosts files changed: reloaded, not restarted
    assert await asyncio.to_thread(_resolve, wire, "db1.default.overt.test") == \
        [str(wire.host(11))]
    assert "56:6f:00:33:00:02," in (services.network_dir("nsvnet") / "dhcp-hosts").read_text()

    assert pid is not None
    os.kill(pid, 9)
    await _until(lambda: daemon.pid not in (None, pid))
    await _until(lambda: _resolve(wire, "db1.default.overt.test") == [str(wire.host(11))])
    assert daemon.starts == 2


async def test_ntp_is_served_by_the_engines_chronyd(services: NetworkServices,
                                                     wire: Wire) -> None:
    assert services.chrony is not None and services.chrony.pid is not None
    done = await asyncio.to_thread(
        _in_vm, wire, "chronyd", "-Q", "-t", "20", f"server {wire.host(1)} iburst maxsamples 1")
    assert done.returncode == 0, done.stderr
    assert "System clock wrong by" in done.stdout + done.stderr


async def test_node_without_engine_url_finds_the_engine_by_srv(services: NetworkServices,
                                                                wire: Wire) -> None:
    code = ("from overt.config import NodeSettings\n"
            "from overt.node.composition import engine_url\n"
            f"print(engine_url(NodeSettings(discovery_domain='overt.test', "
            f"discovery_nameserver='{wire.host(1)}')))\n")
    url = await asyncio.to_thread(_python_in_vm, wire, code)
    assert url == f"https://{wire.host(1)}:{GATEWAY_PORT}"
    code = ("from overt.node.discovery import discover_engine_url\n"
            f"print(discover_engine_url(['elsewhere.test'], ['{wire.host(1)}'], timeout_s=3))")
    assert await asyncio.to_thread(_python_in_vm, wire, code) == "None"


async def test_stopping_stops_every_daemon(services: NetworkServices) -> None:
    processes = [d.process for d in (*services.dnsmasq.values(), services.chrony) if d]
    assert all(p is not None and p.returncode is None for p in processes)
    await services.stop()
    assert all(p is not None and p.returncode is not None for p in processes)
    assert all(d.pid is None for d in services.dnsmasq.values())


async def test_daemons_left_by_a_dead_engine_are_replaced(
        services: NetworkServices, db: Database, wire: Wire, tmp_path: Path) -> None:
    """An engine killed outright leaves its daemons running; the next start stops them
    (they hold the ports) and starts its own."""
    assert services.chrony is not None
    daemons = (services.dnsmasq["nsvnet"], services.chrony)
    await _until(lambda: all(daemon.ready() for daemon in daemons))
    orphans = [daemon.pid for daemon in daemons]
    for daemon in daemons:
        daemon.forget()
    successor = NetworkServices(db, services.plan, services.state_dir, wrap=services.wrap)
    await successor.start()
    try:
        assert all(pid is not None and not alive(pid) for pid in orphans)
        assert successor.dnsmasq["nsvnet"].pid not in (None, *orphans)
        await _until(lambda: _resolve(wire, "web1.default.overt.test") == [str(wire.host(10))])
        assert successor.chrony is not None and successor.chrony.pid is not None
    finally:
        await successor.stop()
