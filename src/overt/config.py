"""Settings of Overt's processes: pydantic-settings, from flags, OVERT_* variables and defaults.

Built once at start (by the CLI) and passed down; nothing reads the environment
at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_NODE_PORT = 54321
DEFAULT_API_PORT = 8443
DEFAULT_GATEWAY_PORT = 8444


class NodeSettings(BaseSettings):
    """`overt node`: the agent of a managed node. Variables OVERT_NODE_*."""

    model_config = SettingsConfigDict(env_prefix="OVERT_NODE_", extra="forbid")

    engine_url: str | None = Field(
        None, description="The engine's node gateway, e.g. https://10.77.0.1:8444; the node "
        "announces itself there when it has no certificate yet.")
    bus: str = Field("direct", description="`direct` (HTTPS + mutual TLS) or an amqp:// URL.")
    listen_address: str = Field("0.0.0.0", description="Address of the node's RPC server.")  # noqa: S104
    port: int = Field(DEFAULT_NODE_PORT, gt=0, lt=65536)
    advertise_address: str | None = Field(
        None, description="The address the engine should use to reach this node "
        "(default: the address of the route towards the engine).")
    data_dir: Path = Field(Path("/var/lib/overt/node"),
                           description="Keys, certificates and the agent's own state.")
    storage_dir: Path = Field(Path("/var/lib/overt/images"),
                              description="Where local disk images live (local storage).")
    image_import_dirs: list[Path] = Field(
        [Path("/var/cache/overt")], description="Directories whose images may be copied into "
        "the storage directory (volume.create copy_from), e.g. the test guest's cache.")
    libvirt_uri: str = "qemu:///system"
    engine_ca_file: Path | None = Field(
        None, description="The engine CA to trust; without it the first engine to enroll "
        "the node is trusted (and pinned).")
    stats_interval_s: float = Field(15.0, ge=1.0, le=3600.0)
    heartbeat_interval_s: float = Field(5.0, ge=0.5, le=600.0)
    virt_type: Literal["auto", "kvm", "qemu"] = Field(
        "auto", description="Domain type: `auto` probes once by booting whether KVM works "
        "(else software emulation, `qemu`); `kvm` or `qemu` force one.")
    announce_interval_s: float = Field(
        5.0, ge=0.1, le=600.0, description="How often a node waiting for approval asks again.")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"


class EngineSettings(BaseSettings):
    """`overt engine` and `overt demo`. Variables OVERT_*."""

    model_config = SettingsConfigDict(env_prefix="OVERT_", extra="ignore")

    data_dir: Path = Path("/var/lib/overt/engine")
    db: str | None = Field(None, description="SQLAlchemy URL; default SQLite in the data dir.")
    bus: str = Field("direct", description="`direct` or an amqp:// URL of the broker.")
    api_address: str = "127.0.0.1"
    api_port: int = Field(DEFAULT_API_PORT, gt=0, lt=65536)
    gateway_address: str = "0.0.0.0"  # noqa: S104 - nodes reach the gateway over management
    gateway_port: int = Field(DEFAULT_GATEWAY_PORT, gt=0, lt=65536)
    public_address: str | None = Field(
        None, description="The address nodes use to reach the engine (in certificates and "
        "in the gateway URL given to nodes).")
    admin_password: SecretStr | None = Field(None, repr=False)
    heartbeat_timeout_s: float = Field(30.0, ge=1.0)
    log_level: str = "INFO"

    def database_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'engine.db'}"
