"""Settings of Overt's processes: pydantic-settings, from flags, OVERT_* variables and defaults.

Built once at start (by the CLI) and passed down; nothing reads the environment
at import time.
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from overt.bus.amqp.url import require_tls
from overt.node.snmp.traps import parse_target
from overt.snmp.trap import check_engine_id

log = logging.getLogger(__name__)

DEFAULT_NODE_PORT = 54321
DEFAULT_API_PORT = 8443
DEFAULT_GATEWAY_PORT = 8444
BROKER_SCHEMES = ("amqp://", "amqps://")


class SettingsError(ValueError):
    """Settings that cannot work together; the message says what to set."""


MIN_METRICS_TOKEN = 32  # characters: `openssl rand -hex 32` gives 64


def is_broker_url(bus: str) -> bool:
    return bus.startswith(BROKER_SCHEMES)


class NodeSettings(BaseSettings):
    """`overt node`: the agent of a managed node. Variables OVERT_NODE_*."""

    model_config = SettingsConfigDict(env_prefix="OVERT_NODE_", extra="forbid")

    engine_url: str | None = Field(
        None, description="The engine's node gateway, e.g. https://10.77.0.1:8444; the node "
        "announces itself there when it has no certificate yet; without it the node looks "
        "the engine up by DNS (SRV `_overt._tcp.DOMAIN`).")
    discovery_domain: str | None = Field(
        None, description="Domain whose `_overt._tcp` SRV record names the engine (default: "
        "the resolver's search domains); used only without an engine URL.")
    discovery_nameserver: str | None = Field(
        None, description="DNS server to ask for that record (default: the system's).")
    bus: str = Field(
        "direct", description="`direct` (HTTPS + mutual TLS), or `amqp`/`amqps` for fully "
        "managed mode (commands and events through the broker whose account the node gets at "
        "enrollment); an amqp(s)://HOST:PORT URL, without credentials, overrides where the "
        "broker is.")
    listen_address: str = Field("0.0.0.0", description="Address of the node's RPC server.")  # noqa: S104
    port: int = Field(DEFAULT_NODE_PORT, gt=0, lt=65536)
    advertise_address: str | None = Field(
        None, description="The address the engine should use to reach this node "
        "(default: the address of the route towards the engine).")
    imageio_port: int = Field(
        54322, ge=0, lt=65536, description="Port of the node's image data server "
        "(ovirt-imageio, started at the first image transfer this node serves; oVirt's "
        "port; 0: any free port).")
    data_dir: Path = Field(Path("/var/lib/overt/node"),
                           description="Keys, certificates and the agent's own state.")
    storage_dir: Path = Field(Path("/var/lib/overt/images"),
                              description="Where local disk images live (local storage).")
    image_import_dirs: list[Path] = Field(
        [Path("/var/cache/overt")], description="Directories whose images may be copied into "
        "the storage directory (volume.create copy_from), e.g. the test guest's cache.")
    libvirt_uri: str = "qemu:///system"
    max_outgoing_migrations: int = Field(
        2, ge=1, le=64, description="Migrations this node runs out at once (VDSM's "
        "max_outgoing_migrations); more wait their turn, so a drained host's VMs do not "
        "share its CPU and network all at once, each stopping longer at its switch-over.")
    engine_ca_file: Path | None = Field(
        None, description="The engine CA to trust (the engine's pki/ca.pem, copied here).")
    engine_ca_fingerprint: str | None = Field(
        None, description="Trust the engine CA with this SHA-256 fingerprint (`overt pki "
        "status` on the engine shows it), fetched from the engine.")
    enroll_token: str | None = Field(
        None, repr=False, description="The one-time enrollment token `overt host add` "
        "printed: proves the engine adding this node by address is the one that issued it, "
        "and proves this node to that engine. Without a CA file, a CA fingerprint or a "
        "token, the node trusts no engine (it is never trusted on first use).")
    clock_offset_s: float = Field(
        0.0, description="Seconds added to the real time when checking and renewing "
        "certificates (tests run nodes years ahead).")
    cert_check_interval_s: float = Field(
        3600.0, ge=0.1, description="How often the node checks its certificate's expiry "
        "and asks the engine for a renewed one when it is due.")
    stats_interval_s: float = Field(15.0, ge=1.0, le=3600.0)
    heartbeat_interval_s: float = Field(5.0, ge=0.5, le=600.0)
    virt_type: Literal["auto", "kvm", "qemu"] = Field(
        "auto", description="Domain type: `auto` probes once by booting whether KVM works "
        "(else software emulation, `qemu`); `kvm` or `qemu` force one.")
    announce_interval_s: float = Field(
        5.0, ge=0.1, le=600.0, description="How often a node waiting for approval asks again.")
    snmp_state_file: Path | None = Field(
        None, description="Where the agent keeps the state snmpd's exporter serves "
        "(`python -m overt.node.snmp --state-file`); default DATA_DIR/snmp-state.json when "
        "a trap target is set.")
    snmp_trap_target: str | None = Field(
        None, description="HOST[:PORT] that gets an SNMP trap on each VM state change: v3 with "
        "snmp_trap_v3_user, else v2c with the community from snmp_community_file or "
        "OVERT_SNMP_COMMUNITY (no default).")
    snmp_community_file: Path | None = Field(
        None, description="File whose first line is the SNMP community for traps.")
    snmp_trap_v3_user: str | None = Field(
        None, description="Send the traps as this SNMPv3 user at authPriv (SHA, AES) instead "
        "of v2c; its passphrases come from snmp_trap_v3_auth_file / snmp_trap_v3_priv_file "
        "or OVERT_SNMP_V3_AUTH_PASSPHRASE / OVERT_SNMP_V3_PRIV_PASSPHRASE (no default).")
    snmp_trap_v3_auth_file: Path | None = Field(
        None, description="File whose first line is the SNMPv3 authentication passphrase.")
    snmp_trap_v3_priv_file: Path | None = Field(
        None, description="File whose first line is the SNMPv3 privacy passphrase.")
    snmp_trap_engine_id: str | None = Field(
        None, description="The node's SNMP engine id for v3 traps (0x + 5-32 bytes in hex), "
        "which the receiver's `createUser -e` names; default: from the host name "
        "(0x80001f8804 + its hex), logged at start.")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"
    test_start_delay_s: float = Field(
        0.0, ge=0.0, le=600.0, description="For tests only: wait this long before starting "
        "(before the first libvirt call and before binding the port), as an agent does on a "
        "fresh machine while libvirt probes QEMU. Set as OVERT_NODE_TEST_START_DELAY_S.")

    @field_validator("snmp_trap_target")
    @classmethod
    def _trap_target(cls, target: str | None) -> str | None:
        if target is not None:
            parse_target(target)  # ValueError: a readable settings error
        return target

    @field_validator("snmp_trap_engine_id")
    @classmethod
    def _trap_engine_id(cls, engine_id: str | None) -> str | None:
        return check_engine_id(engine_id) if engine_id is not None else None

    @field_validator("bus")
    @classmethod
    def _known_bus(cls, bus: str) -> str:
        if bus in ("direct", "amqp", "amqps"):
            return bus
        if is_broker_url(bus):
            if "@" in bus.split("/")[2]:
                raise ValueError("give the broker's address without credentials: the node gets "
                                 "an account of its own when it enrolls")
            return bus
        raise ValueError(f"{bus!r} is not a transport: use direct, amqp, amqps or "
                         "amqp(s)://HOST:PORT")

    @property
    def managed(self) -> bool:
        """Fully managed mode: commands and events through the broker."""
        return self.bus != "direct"


class EngineSettings(BaseSettings):
    """`overt engine` and `overt demo`. Variables OVERT_*."""

    model_config = SettingsConfigDict(env_prefix="OVERT_", extra="ignore")

    data_dir: Path = Path("/var/lib/overt/engine")
    # The I/O timeout T of VM leases given to nodes: renewed every 2T, the VM stopped
    # after 6T without renewal, the lease free for others after 8T (sanlock's default 10 s).
    lease_io_timeout_s: float = Field(10.0, gt=0, le=60)
    db: str | None = Field(None, description="SQLAlchemy URL; default SQLite in the data dir.")
    migration_destination_uri: str = Field(
        "qemu+tls://{address}/system", description="The libvirt URI a source node opens to "
        "hand a VM over to the destination host ({address}, {name}: the destination's).")
    migration_stream_uri: str = Field(
        "tcp://{address}", description="Where QEMU sends a migrating VM's memory; empty: "
        "libvirt's default. Its {address} is the destination's address on its cluster's "
        "migration network when it has one.")
    migration_progress_interval_s: float = Field(
        1.0, gt=0, description="How often a migration's job reads its progress from the "
        "source's node into its step.")
    migration_tcg_live: bool = Field(
        False, description="Migrate VMs live from hosts whose QEMU, older than 9.0, runs "
        "guests without KVM. Such a QEMU loses guest writes in a live migration unless it "
        "carries the fix 03bfc2188f: set this only for a QEMU with that backport. Otherwise "
        "those hosts' VMs migrate with the guest paused for the copy.")
    bus: str = Field("direct", repr=False, description="`direct`, or the amqp(s):// URL of the "
                     "engine's own broker account (fully managed mode).")
    broker_admin_url: SecretStr | None = Field(
        None, repr=False, description="The broker administrator's amqp(s):// URL, with which "
        "the process that enrolls nodes (api) creates their accounts; it never leaves the "
        "engine. Other processes do not need it.")
    broker_admin_file: Path | None = Field(
        None, description="A file (mode 0600) holding the broker administrator's URL, "
        "instead of broker_admin_url.")
    broker_node_url: str | None = Field(
        None, description="amqp(s)://HOST:PORT where nodes reach the broker, when it is not "
        "where the administrator URL points (e.g. the broker's address on the management "
        "network); a cluster's brokers comma-separated (amqp://HOST1:5672,HOST2:5672).")
    broker_quorum_queues: bool = Field(
        False, description="Make Overt's queues quorum queues (a RabbitMQ cluster of three or "
        "more brokers: each queue is replicated and survives losing one broker). A queue's "
        "type is fixed when it is made: set it before the engine first starts "
        "(docs/engine-ha.md).")
    broker_management_port: int | None = Field(
        None, gt=0, lt=65536, description="Port of the broker's management API (15672, or "
        "15671 for amqps).")
    broker_ca_file: Path | None = Field(
        None, description="CA that signed the broker's certificate (amqps), besides the "
        "system's and the engine's own CA.")
    broker_tls_dir: Path | None = Field(
        None, description="On the broker's machine, the directory its RabbitMQ reads its TLS "
        "files from (ca.pem, broker.pem, broker.key; `overt broker setup-local --tls`): the "
        "engine issues the broker's certificate from its server CA there, renews it like its "
        "own and makes RabbitMQ read it again. Unset: the broker's certificate is its "
        "operator's.")
    broker_tls_names: list[str] = Field(
        default_factory=list, description="Names and addresses the broker's certificate "
        "carries; default: the hosts of the broker URLs, localhost and 127.0.0.1.")
    broker_rabbitmq_node: str | None = Field(
        None, description="The RabbitMQ node (NAME@HOST) whose TLS files are in "
        "broker_tls_dir, for rabbitmqctl; default: this machine's.")
    broker_sweep_interval_s: float = Field(
        30.0, ge=0.1, description="How often the broker accounts of removed hosts are deleted.")
    cert_rotation: bool = Field(
        True, description="Renew the CA, the engine's and the nodes' certificates well "
        "before they expire. Off: nothing is renewed; alerts still fire, and `overt pki "
        "recover` renews what expired.")
    cert_check_interval_s: float = Field(
        3600.0, ge=0.1, description="How often certificates' expiry is checked.")
    clock_offset_s: float = Field(
        0.0, description="Seconds added to the real time when checking and issuing "
        "certificates (tests run the engine years ahead).")
    broker_allow_plain: bool = Field(
        False, description="Allow plain amqp:// (and the management API over http://) to a "
        "broker on another machine: passwords then cross the network unencrypted. For the "
        "lab or a network you trust; use amqps:// elsewhere.")
    api_address: str = "127.0.0.1"
    api_port: int = Field(DEFAULT_API_PORT, gt=0, lt=65536)
    gateway_address: str = "0.0.0.0"  # noqa: S104 - nodes reach the gateway over management
    gateway_port: int = Field(DEFAULT_GATEWAY_PORT, gt=0, lt=65536)
    imageio_address: str = Field(
        "0.0.0.0", description="Where the engine's image data server (ovirt-imageio) "  # noqa: S104
        "listens for disk uploads and downloads.")
    imageio_port: int = Field(
        54323, ge=0, lt=65536, description="The image data server's port (oVirt's imageio "
        "proxy port); 0: any free port, chosen at the first transfer.")
    public_address: str | None = Field(
        None, description="The address nodes use to reach the engine (in certificates and "
        "in the gateway URL given to nodes).")
    admin_password: SecretStr | None = Field(None, repr=False)
    auth_profiles_file: Path | None = Field(
        None, description="A TOML file of LDAP authentication profiles (see docs/identity.md); "
        "without it only the internal profile exists.")
    password_min_length: int = Field(
        12, ge=8, le=1024, description="Internal users: the shortest password allowed.")
    password_min_classes: int = Field(
        3, ge=1, le=4, description="Internal users: how many kinds of characters (lower case, "
        "upper case, digits, others) a password mixes.")
    password_history: int = Field(
        5, ge=1, le=50, description="Internal users: a new password is none of the last this "
        "many (the current one included).")
    password_max_age_days: int = Field(
        180, ge=0, description="Internal users: days a password stays valid; after that it "
        "signs in only to be changed (0: never expires). The installation's administrator's "
        "password, set by its operator, does not expire.")
    signin_failures: int = Field(
        10, ge=1, description="Failed sign-ins of one user within signin_window_s that lock "
        "the account for lockout_s.")
    signin_window_s: float = Field(900.0, gt=0)
    lockout_s: float = Field(900.0, gt=0)
    kerberos_keytab: Path | None = Field(
        None, description="Keytab with the key of HTTP/<engine host>: Kerberos single "
        "sign-on at /ovirt-engine/sso/oauth/token-http-auth.")
    kerberos_profile: str | None = Field(
        None, description="The LDAP profile whose users Kerberos principals name "
        "(alice@REALM is alice of this profile).")
    heartbeat_timeout_s: float = Field(30.0, ge=1.0)
    host_grace_s: float = Field(
        60.0, ge=0.0, le=3600.0, description="How long a silent host that serves VMs stays "
        "connecting before it is judged non responsive (and fenced), in clusters whose "
        "fencing policy sets no grace of its own (oVirt's TimeoutToResetVdsInSeconds).")
    host_grace_per_vm_s: float = Field(
        0.5, ge=0.0, le=3600.0, description="Added to the grace per VM the host runs, in "
        "those clusters (oVirt's DelayResetPerVmInSeconds).")
    storage_probe_interval_s: float = Field(
        10.0, gt=0.0, le=3600.0, description="How often the monitor asks each host whether "
        "it reaches the active storage domains of its data center (and reads their space); "
        "a host that misses a domain twice in a row is non operational until it reaches it.")
    host_install_timeout_s: float = Field(
        180.0, ge=0.0, description="How long adding or installing a host keeps trying to "
        "reach its agent (with backoff) before the host is install_failed: an agent's first "
        "start may take a while (libvirt probes QEMU, the agent probes the CPU).")
    fence_kdump_listener: bool = Field(
        True, description="Run the fence_kdump listener (with the monitor): hosts whose "
        "kdump kernel sends fence_kdump messages are kdumping, not power fenced.")
    fence_kdump_address: str | None = Field(
        None, description="Where the fence_kdump listener receives (UDP); default the "
        "engine's public address (oVirt's FenceKdumpDestinationAddress).")
    fence_kdump_port: int = Field(
        7410, ge=0, lt=65536, description="The fence_kdump listener's UDP port (oVirt's "
        "FenceKdumpDestinationPort); 0: any free port.")
    kdump_started_timeout_s: float = Field(
        30.0, ge=0.0, le=3600.0, description="How long a recovery waits for fence_kdump "
        "messages of a non responsive host with kdump detection before fencing it (oVirt's "
        "KdumpStartedTimeout).")
    kdump_finished_timeout_s: float = Field(
        30.0, gt=0.0, le=3600.0, description="A kdumping host whose messages stopped for "
        "this long has finished its dump (the listener's KDUMP_FINISHED_TIMEOUT).")
    notifier_interval_s: float = Field(
        2.0, gt=0.0, le=3600.0, description="How often the notifier (with the monitor) looks "
        "for new audit events to send as SNMP traps to event subscriptions' managers.")
    monitor_report_interval_s: float = Field(
        60.0, ge=0.5, description="How often a monitor logs what it applied and the lag from "
        "node to database.")
    netsvc_file: Path | None = Field(
        None, description="The address plan of the managed networks (TOML, see "
        "docs/networks.md): with it the engine runs dnsmasq (DHCP, DNS) on each and chronyd "
        "(NTP) for them.")
    metrics_token_file: Path | None = Field(
        None, description="A file (mode 0600) holding the token Prometheus sends as a bearer "
        "token to scrape /metrics (see docs/monitoring.md); without it a scrape needs the "
        "API's credentials of a user with a role on the system.")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("bus")
    @classmethod
    def _known_bus(cls, bus: str) -> str:
        if bus != "direct" and not is_broker_url(bus):
            raise ValueError("use `direct`, or the amqp(s)://USER:PASSWORD@HOST:PORT/VHOST URL "
                             "of the engine's broker account")
        return bus

    @model_validator(mode="after")
    def _broker_over_tls(self) -> EngineSettings:
        """Broker passwords leave this machine only encrypted, unless allowed otherwise."""
        admin = self.broker_admin_url.get_secret_value() if self.broker_admin_url else None
        for what, url in (("the engine's broker URL", self.bus if self.managed else None),
                          ("the broker administrator's URL", admin),
                          ("the broker address for nodes", self.broker_node_url)):
            if url is not None:
                require_tls(url, allow_plain=self.broker_allow_plain, what=what)
        return self

    def database_url(self) -> str:
        return self.db or f"sqlite:///{self.data_dir / 'engine.db'}"

    @property
    def managed(self) -> bool:
        """Fully managed mode: the engine reaches nodes through the broker."""
        return self.bus != "direct"

    def broker_admin(self) -> str | None:
        """The broker administrator's URL, from the setting or from its file."""
        if self.broker_admin_url is not None:
            return self.broker_admin_url.get_secret_value()
        path = self.broker_admin_file
        if path is None:
            return None
        try:
            mode = path.stat().st_mode
            url = path.read_text().strip()
        except OSError as exc:
            raise SettingsError(f"cannot read the broker administrator file {path}: "
                                f"{exc.strerror}") from None
        if stat.S_IMODE(mode) & 0o077:
            log.warning("%s can be read by others than its owner: chmod 600 it", path)
        if not is_broker_url(url):
            raise SettingsError(f"{path} does not hold an amqp(s)://USER:PASSWORD@HOST/VHOST URL")
        try:
            require_tls(url, allow_plain=self.broker_allow_plain,
                        what=f"the broker administrator's URL in {path}")
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        return url

    def metrics_token(self) -> str | None:
        """The token that admits a scrape of /metrics, from its file."""
        path = self.metrics_token_file
        if path is None:
            return None
        try:
            mode = path.stat().st_mode
            token = path.read_text().strip()
        except OSError as exc:
            raise SettingsError(f"cannot read the metrics token file {path}: "
                                f"{exc.strerror}") from None
        if stat.S_IMODE(mode) & 0o077:
            log.warning("%s can be read by others than its owner: chmod 600 it", path)
        if len(token) < MIN_METRICS_TOKEN or not token.isascii() or not token.isprintable() \
                or " " in token:
            raise SettingsError(f"{path} must hold one token of at least {MIN_METRICS_TOKEN} "
                                "printable characters without spaces (e.g. "
                                "`openssl rand -hex 32`)")
        return token
