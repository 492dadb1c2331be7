"""Settings of fully managed mode: which buses are accepted, where the broker secret lives."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from overt.config import EngineSettings, NodeSettings, SettingsError


@pytest.mark.parametrize("bus", ["direct", "amqp", "amqps", "amqp://10.77.0.1:5672",
                                 "amqps://broker.example:5671/"])
def test_a_node_takes_direct_or_a_broker_without_credentials(bus: str) -> None:
    assert NodeSettings(bus=bus).managed is (bus != "direct")


@pytest.mark.parametrize(("bus", "why"), [
    ("amqp://user:secret@10.77.0.1:5672/overt", "without credentials"),
    ("carrier-pigeon", "is not a transport")])
def test_a_node_refuses_other_buses(bus: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        NodeSettings(bus=bus)


def test_the_engine_takes_direct_or_its_broker_account() -> None:
    assert not EngineSettings().managed
    assert EngineSettings(bus="amqp://overt-engine:pw@broker/overt",
                          broker_allow_plain=True).managed
    with pytest.raises(ValidationError, match="the engine's broker account"):
        EngineSettings(bus="amqp")


def test_the_broker_administrator_url_comes_from_a_private_file(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    secret = tmp_path / "broker-admin.url"
    secret.write_text("amqp://overt-admin:s3cret@broker:5672/overt\n")
    secret.chmod(0o600)
    settings = EngineSettings(broker_admin_file=secret, broker_allow_plain=True)
    assert settings.broker_admin() == "amqp://overt-admin:s3cret@broker:5672/overt"
    assert "s3cret" not in repr(settings)
    secret.chmod(0o644)
    settings.broker_admin()
    assert "chmod 600" in caplog.text
    secret.write_text("s3cret\n")
    with pytest.raises(SettingsError, match="does not hold an amqp"):
        settings.broker_admin()
    with pytest.raises(SettingsError, match="cannot read"):
        EngineSettings(broker_admin_file=tmp_path / "missing").broker_admin()


def test_the_metrics_token_comes_from_a_file_holding_a_real_token(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    with pytest.raises(SettingsError, match="at least 32"):
        EngineSettings(data_dir=tmp_path, metrics_token_file=token).metrics_token()
    token.write_text("two words " + "x" * 40)
    with pytest.raises(SettingsError, match="without spaces"):
        EngineSettings(data_dir=tmp_path, metrics_token_file=token).metrics_token()
    with pytest.raises(SettingsError, match="cannot read"):
        EngineSettings(data_dir=tmp_path, metrics_token_file=tmp_path / "none").metrics_token()
    token.write_text("a" * 64 + "\n")
    assert EngineSettings(data_dir=tmp_path, metrics_token_file=token).metrics_token() == "a" * 64
    assert EngineSettings(data_dir=tmp_path).metrics_token() is None
