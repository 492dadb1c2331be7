"""A node over SNMP with real net-snmp: snmpwalk through snmpd's pass_persist exporter,
and snmptrapd receiving the trap of a VM stopped behind the engine's back."""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from overt.bus.base import CommandHandler
from overt.config import NodeSettings
from overt.node.agent import Agent
from overt.node.composition import trap_credentials
from overt.node.idempotency import IdempotencyStore
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.node.snmp.reporter import SnmpReporter
from overt.node.snmp.snapshot import NodeSnapshot, VmRow, write_snapshot
from overt.node.snmp.traps import TrapError, TrapSender
from overt.node.storage.local import LocalVolumes
from overt.protocol import EventEnvelope
from overt.snmp.trap import V3, V2c
from tests.integration.node.snmp.netsnmp import Snmpd, Snmptrapd, UsmUser, wait_for

ENTRY = ".1.3.6.1.4.1.99999.1.2.1"
HOST = ".1.3.6.1.4.1.99999.1.1"


@pytest.fixture
def community() -> str:
    return secrets.token_hex(12)


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "node" / "snmp-state.json"


@pytest.fixture
def snmpd(tmp_path: Path, community: str, state_file: Path) -> Iterator[Snmpd]:
    daemon = Snmpd(tmp_path / "snmpd", community, state_file)
    yield daemon
    daemon.stop()


@pytest.fixture
def trapd(tmp_path: Path, community: str) -> Iterator[Snmptrapd]:
    daemon = Snmptrapd(tmp_path / "snmptrapd", community)
    yield daemon
    daemon.stop()


def test_a_walk_lists_the_host_and_its_vms(snmpd: Snmpd, state_file: Path) -> None:
    web, db = str(uuid.uuid4()), str(uuid.uuid4())
    write_snapshot(state_file, NodeSnapshot(host_name="node-a", host_uuid="h-1", vms=(
        VmRow("web", web, "running", vcpus=2, memory_mib=1024),
        VmRow("db", db, "shutoff", vcpus=4))))
    values = snmpd.values()
    assert values[f"{HOST}.1.0"] == 'STRING: "node-a"'
    assert values[f"{HOST}.2.0"] == 'STRING: "h-1"'
    assert values[f"{HOST}.3.0"] == "INTEGER: 1"  # up
    assert values[f"{HOST}.4.0"] == "Gauge32: 2"
    # rows in name order: db is 1, web is 2
    assert values[f"{ENTRY}.2.1"] == 'STRING: "db"' and values[f"{ENTRY}.3.1"] == f'STRING: "{db}"'
    assert values[f"{ENTRY}.4.1"] == "INTEGER: 5"  # shutoff
    assert values[f"{ENTRY}.5.1"] == "Gauge32: 4"
    assert values[f"{ENTRY}.2.2"] == 'STRING: "web"' and values[f"{ENTRY}.3.2"] == f'STRING: "{web}"'
    assert values[f"{ENTRY}.4.2"] == "INTEGER: 1"  # running
    assert values[f"{ENTRY}.5.2"] == "Gauge32: 2" and values[f"{ENTRY}.6.2"] == "Gauge32: 1024"
    assert len([k for k in values if k.startswith(ENTRY)]) == 12

    # the exporter follows the file: a new state is what the next walk sees
    write_snapshot(state_file, NodeSnapshot(host_name="node-a", host_uuid="h-1", vms=(
        VmRow("web", web, "paused", vcpus=2, memory_mib=1024),)))
    values = snmpd.values()
    assert values[f"{HOST}.4.0"] == "Gauge32: 1"
    assert values[f"{ENTRY}.2.1"] == 'STRING: "web"' and values[f"{ENTRY}.4.1"] == "INTEGER: 2"
    assert f"{ENTRY}.2.2" not in values


def test_a_wrong_community_gets_nothing(snmpd: Snmpd, state_file: Path) -> None:
    write_snapshot(state_file, NodeSnapshot(host_name="node-a", host_uuid="h-1",
                                            vms=(VmRow("web", "x", "running"),)))
    code, out = snmpd.walk("not-" + snmpd.community)
    assert code != 0 and "node-a" not in out and "web" not in out


def test_without_a_state_the_subtree_is_empty(snmpd: Snmpd) -> None:
    code, out = snmpd.walk(snmpd.community)
    assert code == 0 and "No Such Instance" in out and HOST not in out and ENTRY not in out


class _Recorder:
    """The engine side of the agent's transport: keeps what the agent publishes."""

    def __init__(self) -> None:
        self.events: list[EventEnvelope] = []

    async def start(self, handler: CommandHandler) -> None:
        pass

    async def publish(self, event: EventEnvelope) -> None:
        self.events.append(event)

    async def publish_lossy(self, event: EventEnvelope) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_vm_stopped_behind_the_engines_back_is_trapped_and_leaves_the_table(
        tmp_path: Path, snmpd: Snmpd, trapd: Snmptrapd, community: str,
        state_file: Path) -> None:
    web, db = uuid.uuid4(), uuid.uuid4()
    hypervisor = SimulatedHypervisor(uuid.uuid4(), hostname="node-b",
                                     running=[(web, "web", 512), (db, "db", 2048)])
    agent = Agent(hypervisor, LocalVolumes(tmp_path / "images"),
                  IdempotencyStore(tmp_path / "idem.sqlite"), _Recorder(),
                  snmp=SnmpReporter(state_file, TrapSender(trapd.target, V2c(community))))
    await agent.start()
    try:
        values = await asyncio.to_thread(snmpd.values)
        assert values[f"{HOST}.1.0"] == 'STRING: "node-b"'
        assert values[f"{ENTRY}.2.2"] == 'STRING: "web"'
        assert values[f"{ENTRY}.4.2"] == "INTEGER: 1"
        assert values[f"{ENTRY}.6.2"] == "Gauge32: 512"
        assert trapd.traps() == []  # the start state is no change

        await hypervisor.destroy(web)  # as `virsh destroy` would, not through the engine
        await asyncio.to_thread(wait_for, "the trap", lambda: len(trapd.traps()) == 1)
        trap = trapd.traps()[0]
        assert "= OID: .1.3.6.1.4.1.99999.1.0.1" in trap
        assert 'STRING: "web"' in trap and f'STRING: "{web}"' in trap
        assert f"{ENTRY}.4.0 = INTEGER: 8" in trap  # gone: it has left the table

        values = await asyncio.to_thread(snmpd.values)
        assert values[f"{HOST}.4.0"] == "Gauge32: 1"
        assert values[f"{ENTRY}.2.1"] == 'STRING: "db"' and f"{ENTRY}.2.2" not in values

        await hypervisor.pause(db)
        await asyncio.to_thread(wait_for, "the second trap", lambda: len(trapd.traps()) == 2)
        trap = trapd.traps()[1]
        assert f'{ENTRY}.2.1 = STRING: "db"' in trap and f"{ENTRY}.4.1 = INTEGER: 2" in trap
        values = await asyncio.to_thread(snmpd.values)
        assert values[f"{ENTRY}.4.1"] == "INTEGER: 2"  # paused
    finally:
        await agent.stop()


async def test_a_trap_with_another_community_is_not_accepted(
        trapd: Snmptrapd, community: str) -> None:
    await TrapSender(trapd.target, V2c("other-" + community)).send(
        VmRow("intruder", "x", "crashed"), 1)
    await TrapSender(trapd.target, V2c(community)).send(VmRow("web", "y", "crashed"), 1)
    await asyncio.to_thread(wait_for, "the trap", lambda: len(trapd.traps()) >= 1)
    assert len(trapd.traps()) == 1 and "intruder" not in trapd.text()
    assert 'STRING: "web"' in trapd.traps()[0]


def _v3_settings(tmp_path: Path, user: UsmUser, target: str, *, auth: str | None = None,
                 priv: str | None = None) -> NodeSettings:
    """A node's settings for v3 traps, its passphrases in files (mode 0600)."""
    files = {}
    for what, value in (("auth", auth or user.auth), ("priv", priv or user.priv)):
        path = tmp_path / f"{what}-{secrets.token_hex(4)}"
        path.write_text(value + "\n")
        path.chmod(0o600)
        files[what] = path
    return NodeSettings(data_dir=tmp_path / "data", snmp_trap_target=target,
                        snmp_trap_v3_user=user.name, snmp_trap_v3_auth_file=files["auth"],
                        snmp_trap_v3_priv_file=files["priv"], snmp_trap_engine_id=user.engine_id)


async def test_v3_traps_reach_snmptrapd_and_a_wrong_key_is_dropped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """authPriv (SHA, AES) with the user and keys of the node's settings; a trap with a wrong
    authentication key or a wrong privacy key is not accepted, and no key is ever logged."""
    user = UsmUser("overt-node", secrets.token_hex(10), secrets.token_hex(10),
                   "0x80001f8804" + b"node-v3".hex())
    trapd = Snmptrapd(tmp_path / "trapd-v3", user=user)
    try:
        caplog.set_level(logging.DEBUG)
        wrong_auth = trap_credentials(_v3_settings(tmp_path, user, trapd.target,
                                                   auth="wrong-" + user.auth))
        wrong_priv = trap_credentials(_v3_settings(tmp_path, user, trapd.target,
                                                   priv="wrong-" + user.priv))
        right = trap_credentials(_v3_settings(tmp_path, user, trapd.target))
        assert isinstance(right, V3) and right.engine_id == user.engine_id
        await TrapSender(trapd.target, wrong_auth).send(VmRow("intruder-a", "x", "crashed"), 1)
        await TrapSender(trapd.target, wrong_priv).send(VmRow("intruder-p", "x", "crashed"), 1)
        await TrapSender(trapd.target, right).send(VmRow("web", "y", "crashed"), 1)
        await asyncio.to_thread(wait_for, "the v3 trap", lambda: len(trapd.traps()) >= 1)
        (trap,) = trapd.traps()
        assert 'STRING: "web"' in trap and f"{ENTRY}.4.1 = INTEGER: 6" in trap
        assert "intruder" not in trapd.text()
        assert f"Authentication failed for {user.name}" in trapd.text()
        logged = caplog.text
        assert f"SNMPv3 user {user.name}" in logged and user.engine_id in logged
        assert user.auth not in logged and user.priv not in logged
    finally:
        trapd.stop()


async def test_a_v3_trap_without_keys_stops_with_a_message_holding_no_secret(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVERT_SNMP_V3_AUTH_PASSPHRASE", raising=False)
    monkeypatch.setenv("OVERT_SNMP_V3_PRIV_PASSPHRASE", "short")
    settings = NodeSettings(data_dir=tmp_path / "data", snmp_trap_target="127.0.0.1:1162",
                            snmp_trap_v3_user="overt-node")
    with pytest.raises(TrapError, match="authentication passphrase must have at least 8"):
        trap_credentials(settings)
    monkeypatch.setenv("OVERT_SNMP_V3_AUTH_PASSPHRASE", "long-enough-auth")
    with pytest.raises(TrapError, match="privacy passphrase") as caught:
        trap_credentials(settings)
    assert "short" not in str(caught.value) and "long-enough-auth" not in str(caught.value)
