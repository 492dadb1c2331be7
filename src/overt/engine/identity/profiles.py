"""Authentication profiles: `internal` (the engine's own users) and LDAP directories.

LDAP profiles come from a TOML file (setting `auth_profiles_file`), one `[[ldap]]` table
each; see docs/identity.md. Users sign in as `name@profile`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

INTERNAL = "internal"


class LdapAttributes(BaseModel):
    """Which LDAP attributes hold what the engine needs (OpenLDAP's inetOrgPerson defaults)."""

    model_config = ConfigDict(extra="forbid")
    login: str = "uid"
    id: str = "entryUUID"
    first_name: str = "givenName"
    last_name: str = "sn"
    email: str = "mail"
    group_name: str = "cn"
    member: str = "member"


class LdapProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    servers: list[str] = Field(min_length=1)
    start_tls: bool = False
    ca_file: Path | None = None
    bind_dn: str | None = None
    bind_password: str | None = Field(None, repr=False)
    bind_password_file: Path | None = None
    user_base: str
    group_base: str
    user_filter: str = "(objectClass=inetOrgPerson)"
    group_filter: str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"
    attributes: LdapAttributes = Field(default_factory=LdapAttributes)
    timeout_s: float = Field(5.0, gt=0)
    nesting_depth: int = Field(8, ge=0)

    @field_validator("servers")
    @classmethod
    def _ldap_urls(cls, servers: list[str]) -> list[str]:
        for url in servers:
            if not url.startswith(("ldap://", "ldaps://")):
                raise ValueError(f"{url!r} is not an ldap:// or ldaps:// URL")
        return servers

    @field_validator("name")
    @classmethod
    def _not_internal(cls, name: str) -> str:
        if name == INTERNAL:
            raise ValueError("the profile name 'internal' is the engine's own")
        return name

    def password(self) -> str | None:
        """The bind password, from the setting or its file (read when needed, never logged)."""
        if self.bind_password is not None:
            return self.bind_password
        if self.bind_password_file is not None:
            return self.bind_password_file.read_text().strip()
        return None


class ProfileError(ValueError):
    pass


def load_profiles(path: Path | None) -> list[LdapProfile]:
    """The LDAP profiles in `path` (none without a file); a bad file stops the engine."""
    if path is None:
        return []
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"cannot read the authentication profiles in {path}: {exc}") from None
    try:
        profiles = [LdapProfile.model_validate(entry) for entry in data.get("ldap", [])]
    except ValidationError as exc:
        raise ProfileError(f"bad LDAP profile in {path}: {exc}") from None
    names = [p.name for p in profiles]
    if len(set(names)) != len(names):
        raise ProfileError(f"profile names repeat in {path}: {names}")
    return profiles


def split_principal(user_name: str) -> tuple[str, str]:
    """`alice@example.com` -> ("alice", "example.com"); no profile means internal. The profile
    is what follows the last `@` (login names may hold one)."""
    login, sep, profile = user_name.rpartition("@")
    if not sep:
        return user_name, INTERNAL
    return login, profile
