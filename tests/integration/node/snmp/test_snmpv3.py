"""A node's snmpd configured by `overt snmp snmpd-conf` with an SNMPv3 user (authPriv, SHA
and AES), on real net-snmp: an authPriv walk lists the VMs; a wrong passphrase and any v2c
community get nothing; the passphrases are only in the 0600 file."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overt.cli.main import app
from overt.node.snmp.snapshot import NodeSnapshot, VmRow, write_snapshot
from tests.integration.node.snmp.netsnmp import Snmpd

ENTRY = ".1.3.6.1.4.1.99999.1.2.1"


@pytest.fixture
def v3_snmpd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
             ) -> Iterator[tuple[Snmpd, str, str, str, str]]:
    user, auth, priv = "overt-nms", secrets.token_hex(10), secrets.token_hex(10)
    (tmp_path / "auth").write_text(auth + "\n")
    monkeypatch.setenv("OVERT_SNMP_V3_PRIV_PASSPHRASE", priv)  # one from a file, one from env
    state_file = tmp_path / "snmp-state.json"
    conf = tmp_path / "etc" / "snmpd.conf"
    printed: list[str] = []

    def config(port: int) -> str:
        done = CliRunner().invoke(app, [
            "snmp", "snmpd-conf", "--out", str(conf), "--state-file", str(state_file),
            "--listen", f"udp:127.0.0.1:{port}", "--v3-user", user,
            "--v3-auth-file", str(tmp_path / "auth")])
        assert done.exit_code == 0, done.output
        printed.append(done.output)
        return conf.read_text()
    daemon = Snmpd(tmp_path / "snmpd", "unused", state_file, config=config,
                   ready=lambda d: d.walk_v3(user, auth, priv, ".1.3.6.1.2.1.1.1")[0] == 0)
    assert "SNMPv3 user overt-nms (authPriv), v2c off" in printed[0]
    assert auth not in printed[0] and priv not in printed[0]
    assert conf.stat().st_mode & 0o777 == 0o600
    yield daemon, user, auth, priv, str(state_file)
    daemon.stop()


def test_an_authpriv_walk_lists_the_vms_and_nothing_else_gets_in(
        v3_snmpd: tuple[Snmpd, str, str, str, str]) -> None:
    daemon, user, auth, priv, state_file = v3_snmpd
    web = str(uuid.uuid4())
    write_snapshot(Path(state_file), NodeSnapshot(host_name="node-a", host_uuid="h-1", vms=(
        VmRow("web", web, "running", vcpus=1, memory_mib=256),
        VmRow("db", str(uuid.uuid4()), "shutoff"))))
    code, out = daemon.walk_v3(user, auth, priv)
    assert code == 0, out
    assert f'{ENTRY}.2.1 = STRING: "db"' in out and f'{ENTRY}.2.2 = STRING: "web"' in out
    assert f'{ENTRY}.3.2 = STRING: "{web}"' in out and f"{ENTRY}.4.2 = INTEGER: 1" in out

    for wrong_auth, wrong_priv in ((auth[::-1], priv), (auth, priv[::-1])):
        code, out = daemon.walk_v3(user, wrong_auth, wrong_priv)
        assert code != 0 and "web" not in out and ENTRY not in out, out
    code, out = daemon.walk_v3("someone-else", auth, priv)
    assert code != 0 and ENTRY not in out, out
    for community in ("public", user, auth):  # v2c is off, whatever the community
        code, out = daemon.walk(community)
        assert code != 0 and ENTRY not in out, out
    log = daemon.log.read_text(errors="replace")
    assert auth not in log and priv not in log
