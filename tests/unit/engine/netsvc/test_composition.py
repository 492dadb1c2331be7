"""The network services are an engine part: `overt engine` and `overt demo` run them when
an address plan is given, and a process running one other part does not."""

from __future__ import annotations

from pathlib import Path

from overt.allinone import AllInOne, DemoOptions
from overt.config import EngineSettings
from overt.engine.composition import EngineRuntime, Parts

PLAN = ('domain = "example"\n[[networks]]\nname = "ovirtmgmt"\nsubnet = "10.233.7.0/24"\n'
        'address = "10.233.7.1"\ndhcp_range = "10.233.7.100-10.233.7.150"\n'
        'reserved_range = "10.233.7.10-10.233.7.50"\n')


def test_engine_parts_and_the_demo_take_the_plan(tmp_path: Path) -> None:
    plan = tmp_path / "netsvc.toml"
    plan.write_text(PLAN)
    settings = EngineSettings(data_dir=tmp_path / "engine", netsvc_file=plan, gateway_port=9444)
    runtime = EngineRuntime(settings)
    assert runtime.netsvc_plan is not None
    assert runtime.netsvc_plan.networks[0].name == "ovirtmgmt"
    assert runtime.netsvc_plan.gateway_port == 9444  # the SRV record names the gateway
    assert EngineRuntime(settings, parts=Parts.only("netsvc")).netsvc_plan is not None
    assert EngineRuntime(settings, parts=Parts.only("worker")).netsvc_plan is None
    assert EngineRuntime(EngineSettings(data_dir=tmp_path / "e2")).netsvc_plan is None

    demo = AllInOne(DemoOptions(data_dir=tmp_path / "demo", port=8443, db=None, bus="direct",
                                netsvc_file=plan), say=lambda _text: None)
    assert demo.runtime.netsvc_plan is not None
    assert demo.runtime.netsvc_plan.gateway_port == 8444
