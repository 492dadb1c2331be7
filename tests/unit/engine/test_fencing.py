"""The fence agent's input and output: options one per line on stdin, the password masked in
whatever the agent says."""

from __future__ import annotations

from overt.engine import fencing
from overt.engine.secrets import Secret


def _agent(**options: str) -> fencing.AgentSpec:
    return fencing.AgentSpec(type="ipmilan", address="10.0.0.5", port=6230, username="root",
                             password=Secret("Pw-9"), options=options)


def test_agent_input_defaults_to_lanplus_and_honours_options() -> None:
    lines = fencing._stdin(_agent(), "off").decode().splitlines()
    assert lines == ["action=off", "ip=10.0.0.5", "username=root", "password=Pw-9",
                     "ipport=6230", "lanplus=1"]
    assert "lanplus=0" in fencing._stdin(_agent(lanplus="0"), "status").decode().splitlines()


def test_agent_complaint_is_scrubbed() -> None:
    said = ("/usr/sbin/fence_ipmilan:5: DeprecationWarning: 'pipes' is deprecated\n"
            "2026-11-30 17:58:16,086 ERROR: Failed: bad password Pw-9 for root\n")
    assert fencing._scrub(said, _agent()) == "Failed: bad password *** for root"
