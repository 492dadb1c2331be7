"""A manager row as net-snmp credentials: its sealed secrets opened only to send."""

from __future__ import annotations

from overt.engine.db.tables import SnmpManager
from overt.engine.secrets import SecretBox
from overt.snmp.trap import V3, Credentials, V2c


def credentials(box: SecretBox, manager: SnmpManager) -> Credentials:
    """ValueError (never the secret) when the engine key cannot open them."""
    if manager.version == "v3":
        return V3(user=manager.user_name, auth_passphrase=box.open(manager.auth_sealed).reveal(),
                  priv_passphrase=box.open(manager.priv_sealed).reveal(),
                  engine_id=manager.engine_id)
    return V2c(box.open(manager.community_sealed).reveal())
