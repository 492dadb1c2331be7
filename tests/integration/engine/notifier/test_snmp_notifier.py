"""The engine's notifier with real net-snmp: a VM stopped behind the engine's back (the fast
lane's engine, simulated node) reaches a private `snmptrapd` as `overtEngineEvent`, over
SNMPv2c and SNMPv3 authPriv; a wrong v3 passphrase gets nothing; a restarted notifier sends
what it had not sent and nothing twice."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from overt.engine.db.tables import User
from overt.engine.notifier.service import Notifier
from overt.engine.secrets import Secret, SecretBox
from overt.engine.services import notifications, vms
from overt.engine.services.notifications import ManagerInput
from overt.snmp.trap import TrapError
from tests.integration.node.snmp.netsnmp import Snmptrapd, UsmUser
from tests.support.loopback import LoopbackEngine

pytestmark = pytest.mark.slow  # real snmptrapd and snmptrap processes

OBJ = ".1.3.6.1.4.1.99999.2.1"
ENGINE_EVENT = ".1.3.6.1.4.1.99999.2.0.1"
ENGINE_ID = "0x80001f8804" + "0a1b2c3d4e5f6071"


@pytest.fixture
def community() -> str:
    return secrets.token_hex(12)


@pytest.fixture
def usm_user() -> UsmUser:
    return UsmUser("overt-nms", secrets.token_hex(10), secrets.token_hex(10), ENGINE_ID)


@pytest.fixture
def trapd_v2c(tmp_path: Path, community: str) -> Iterator[Snmptrapd]:
    daemon = Snmptrapd(tmp_path / "trapd-v2c", community)
    yield daemon
    daemon.stop()


@pytest.fixture
def trapd_v3(tmp_path: Path, usm_user: UsmUser) -> Iterator[Snmptrapd]:
    daemon = Snmptrapd(tmp_path / "trapd-v3", user=usm_user)
    yield daemon
    daemon.stop()


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    return SecretBox(tmp_path / "engine-data")


async def _manager(engine: LoopbackEngine, box: SecretBox, data: ManagerInput) -> None:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await notifications.add_manager(session, box, data, user)


async def _subscribe(engine: LoopbackEngine, event: str, address: str = "") -> None:
    async with engine.session() as session:
        user = await session.get(User, engine.user_id)
        assert user is not None
        await notifications.subscribe(session, engine.user_id, event=event, method="snmp",
                                      address=address, by=user)


async def _vm_stopped_behind_the_engines_back(engine: LoopbackEngine, vm_id: uuid.UUID) -> None:
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    node = next(iter(engine.hosts.values()))
    await node.hypervisor.destroy(vm_id)
    await engine.eventually(lambda: _down(engine, vm_id), what="the VM to be down")


async def _down(engine: LoopbackEngine, vm_id: uuid.UUID) -> bool:
    return (await engine.vm(vm_id)).status == "down"


def _varbinds(line: str) -> dict[str, str]:
    """{OID: value} of one trap line logged by snmptrapd -On."""
    out: dict[str, str] = {}
    for part in line.split("\t"):
        if " = " in part:
            oid, value = part.split(" = ", 1)
            out[oid.strip()] = value.strip()
    return out


async def _traps(engine: LoopbackEngine, trapd: Snmptrapd, count: int) -> list[dict[str, str]]:
    async def arrived() -> list[str] | None:
        lines = trapd.traps()
        return lines if len(lines) >= count else None
    lines = await engine.eventually(arrived, what=f"{count} trap(s) at snmptrapd")
    return [_varbinds(line) for line in lines]


async def test_a_vm_down_unexpectedly_reaches_v2c_and_v3_managers(
        engine: LoopbackEngine, box: SecretBox, community: str, usm_user: UsmUser,
        trapd_v2c: Snmptrapd, trapd_v3: Snmptrapd, tmp_path: Path) -> None:
    await engine.add_host("notify-n1")
    vm_id = await engine.add_vm("web-1")
    wrong = Snmptrapd(tmp_path / "trapd-wrong", user=usm_user)
    try:
        await _manager(engine, box, ManagerInput(
            name="nms-v2c", address="127.0.0.1", port=trapd_v2c.port, community=Secret(community)))
        await _manager(engine, box, ManagerInput(
            name="nms-v3", address="127.0.0.1", port=trapd_v3.port, version="v3",
            user=usm_user.name, auth_passphrase=Secret(usm_user.auth),
            priv_passphrase=Secret(usm_user.priv), engine_id=ENGINE_ID))
        # to the third receiver: first with a wrong passphrase, then (a control) the right one
        await _manager(engine, box, ManagerInput(
            name="a-wrong", address="127.0.0.1", port=wrong.port, version="v3",
            user=usm_user.name, auth_passphrase=Secret("not-" + usm_user.auth),
            priv_passphrase=Secret(usm_user.priv), engine_id=ENGINE_ID))
        await _manager(engine, box, ManagerInput(
            name="z-control", address="127.0.0.1", port=wrong.port, version="v3",
            user=usm_user.name, auth_passphrase=Secret(usm_user.auth),
            priv_passphrase=Secret(usm_user.priv), engine_id=ENGINE_ID))
        await _subscribe(engine, "vm_down_error")
        notifier = Notifier(engine.db, box)
        assert await notifier.notify_pending() == 0  # the cursor starts at the log's end

        await _vm_stopped_behind_the_engines_back(engine, vm_id)
        assert await notifier.notify_pending() >= 1

        for trapd in (trapd_v2c, trapd_v3):
            [trap] = await _traps(engine, trapd, 1)
            assert trap[".1.3.6.1.6.3.1.1.4.1.0"] == f"OID: {ENGINE_EVENT}"
            assert trap[f"{OBJ}.2.0"] == 'STRING: "vm_down_error"'
            assert trap[f"{OBJ}.3.0"] == "INTEGER: 61"  # VM_DOWN
            assert trap[f"{OBJ}.4.0"] == "INTEGER: 1"  # normal
            assert "web-1" in trap[f"{OBJ}.5.0"] and "notify-n1" in trap[f"{OBJ}.5.0"]
            assert trap[f"{OBJ}.7.0"] == f'STRING: "{vm_id}"'
            assert trap[f"{OBJ}.8.0"] == 'STRING: "web-1"'
            assert trap[f"{OBJ}.10.0"] == 'STRING: "notify-n1"'
            assert trap[f"{OBJ}.6.0"].startswith('STRING: "20')
        # the trap with the wrong passphrase, sent before the control, was not accepted
        [control] = await _traps(engine, wrong, 1)
        assert control[f"{OBJ}.2.0"] == 'STRING: "vm_down_error"'
        assert len(wrong.traps()) == 1
        assert f"Authentication failed for {usm_user.name}" in wrong.text()
        assert community not in (tmp_path / "trapd-v2c" / "snmptrapd.log").read_text()
    finally:
        wrong.stop()


async def test_a_restarted_notifier_sends_nothing_twice_and_misses_nothing(
        engine: LoopbackEngine, box: SecretBox, community: str, trapd_v2c: Snmptrapd) -> None:
    await engine.add_host("notify-n2")
    vm_id = await engine.add_vm("db-1")
    await _manager(engine, box, ManagerInput(
        name="nms", address="127.0.0.1", port=trapd_v2c.port, community=Secret(community)))
    await _subscribe(engine, "vm_down_error", address="nms")
    first = Notifier(engine.db, box)
    await first.notify_pending()
    await _vm_stopped_behind_the_engines_back(engine, vm_id)
    await first.notify_pending()
    [before] = await _traps(engine, trapd_v2c, 1)

    # the notifier stops; the VM goes down again meanwhile; a new notifier starts
    await _vm_stopped_behind_the_engines_back(engine, vm_id)
    second = Notifier(engine.db, box)
    assert await second.notify_pending() >= 1
    traps = await _traps(engine, trapd_v2c, 2)
    assert len(trapd_v2c.traps()) == 2
    assert traps[0] == before
    ids = [int(t[f"{OBJ}.1.0"].split()[-1]) for t in traps]
    assert ids[1] > ids[0]
    assert await second.notify_pending() == 0 and await first.notify_pending() == 0
    assert len(trapd_v2c.traps()) == 2


async def test_a_trap_that_cannot_be_sent_does_not_stop_the_others(
        engine: LoopbackEngine, box: SecretBox, community: str, trapd_v2c: Snmptrapd) -> None:
    sent: list[str] = []

    async def send(host: str, port: int, creds: object, oid: tuple[int, ...],
                   binds: list[tuple[tuple[int, ...], str, str]]) -> None:
        if port == 9:
            raise TrapError("snmptrap to 127.0.0.1:9 failed: refused")
        sent.append(f"{host}:{port}")

    await engine.add_host("notify-n3")
    vm_id = await engine.add_vm("app-1")
    await _manager(engine, box, ManagerInput(name="a-broken", address="127.0.0.1", port=9,
                                             community=Secret(community)))
    await _manager(engine, box, ManagerInput(name="b-good", address="127.0.0.1",
                                             port=trapd_v2c.port, community=Secret(community)))
    await _subscribe(engine, "vm_down_error")
    notifier = Notifier(engine.db, box, send=send)
    await notifier.notify_pending()
    await _vm_stopped_behind_the_engines_back(engine, vm_id)
    await notifier.notify_pending()
    assert sent == [f"127.0.0.1:{trapd_v2c.port}"]
