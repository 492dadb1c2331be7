"""What a node reports of its host networks: read back from the system (a bridge's tag, MTU
and IPv4 addresses), only for the networks it made, and never a reason for its full state
report to fail."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from overt.node import networks
from overt.node.agent import Agent
from overt.node.events import EventSequencer
from overt.node.idempotency import IdempotencyStore
from overt.node.simulated.hypervisor import SimulatedHypervisor
from overt.node.storage.local import LocalVolumes
from overt.protocol.host import ReportedNetwork
from overt.protocol.networks import NetworkSetup, NetworkWiring


def _made(path: Path, *wirings: NetworkWiring) -> None:
    path.write_text(json.dumps({w.name: {**w.model_dump(mode="json"), "adopted": False}
                                for w in wirings}))


async def test_the_report_reads_each_made_bridge_back(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    sys_net = tmp_path / "sys"
    for name, mtu in (("blue", "1400"), ("plain", "9000")):
        (sys_net / name).mkdir(parents=True)
        (sys_net / name / "mtu").write_text(f"{mtu}\n")
    monkeypatch.setattr(networks, "SYS_NET", sys_net)
    monkeypatch.setattr(networks, "link_addresses", lambda: {
        "blue": ["10.0.0.9/24", "fe80::1/64"], "plain": []})

    def ovs(argv: Sequence[str], **_: object) -> subprocess.CompletedProcess[str]:
        assert list(argv[-2:]) == ["br-to-vlan", "blue"]
        return subprocess.CompletedProcess(list(argv), 0, "101\n", "")
    monkeypatch.setattr(networks, "run", ovs)
    state = tmp_path / "networks.json"
    _made(state, NetworkWiring(name="blue", bridge="blue", nic="eth1", vlan=100),
          NetworkWiring(name="plain", bridge="plain", nic="eth2"),
          NetworkWiring(name="gone", bridge="gone", nic="eth3", vlan=300))

    reported = await networks.HostNetworks(state).report()

    assert reported == (
        ReportedNetwork(name="blue", bridge="blue", nic="eth1", vlan=101, mtu=1400,
                        addresses=("10.0.0.9/24",)),
        ReportedNetwork(name="plain", bridge="plain", nic="eth2", vlan=None, mtu=9000))


class _Unreadable:
    async def setup(self, wanted: Sequence[NetworkWiring],
                    rollback_after_s: float | None,
                    bonds: Sequence[object] = ()) -> NetworkSetup:
        return NetworkSetup()

    async def commit(self) -> NetworkSetup:
        return NetworkSetup()

    async def report(self) -> tuple[ReportedNetwork, ...]:
        raise OSError("ovsdb is not running")

    async def close(self) -> None:
        return None


async def test_a_node_that_cannot_read_its_networks_back_still_reports_its_state(
        tmp_path: Path) -> None:
    host_uuid = uuid.uuid4()
    agent = Agent(hypervisor=SimulatedHypervisor(host_uuid, hostname="h1"),
                  volumes=LocalVolumes(tmp_path / "images"),
                  idempotency=IdempotencyStore(tmp_path / "results.sqlite"),
                  transport=None,  # type: ignore[arg-type]  # never used by host_state
                  networks=_Unreadable())
    agent.sequencer = EventSequencer(host_uuid)
    try:
        state = await agent.host_state()
    finally:
        agent.idempotency.close()
    assert state.networks is None and state.vms == ()
