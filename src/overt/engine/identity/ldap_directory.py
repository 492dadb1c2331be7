"""One LDAP directory (an LDAP profile) through ldap3: find users and groups, check passwords.

Blocking (ldap3 is synchronous); `directories.Directories` runs these calls off the event
loop. Every value that goes into a search filter is escaped (RFC 4515), so a user name
like `*)(uid=*` matches nothing instead of everything. Servers are tried in order; the
one that answered last is tried first next time, so a dead first server costs one
connect timeout once, not on every sign-in.
"""

from __future__ import annotations

import contextlib
import logging
import math
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from overt.engine.identity.profiles import LdapProfile
from overt.engine.model.errors import Unavailable

with warnings.catch_warnings():
    # ldap3 2.9 imports pyasn1 names that pyasn1 0.6.1 deprecates; harmless, and not ours.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ldap3 import NONE, SUBTREE, Connection, Server, Tls
    from ldap3.core.exceptions import LDAPCommunicationError, LDAPException, LDAPStartTLSError
    from ldap3.utils.conv import escape_filter_chars

log = logging.getLogger(__name__)

MAX_RESULTS = 100
POOL_SIZE = 4  # idle service connections kept per profile (the directory pool has 4 threads)
T = TypeVar("T")


class DirectoryUnavailable(Unavailable):
    """No server of the profile answered (or TLS failed): sign-ins through it cannot work."""


@dataclass(frozen=True)
class DirectoryGroup:
    id: str
    name: str
    dn: str


@dataclass(frozen=True)
class DirectoryUser:
    id: str
    login: str
    dn: str
    first_name: str = ""
    last_name: str = ""
    email: str = ""
    groups: tuple[DirectoryGroup, ...] = field(default=())


class _CheckedTls(Tls):  # type: ignore[misc]
    """ldap3's TLS with the standard library's checks of the certificate and the server's
    name (ldap3 2.9 turns the context's name check off and uses a deprecated one)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self._context = context

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket, server_side=False, do_handshake_on_connect=do_handshake,
            server_hostname=connection.server.host)


def _first(attributes: dict[str, Any], name: str) -> str:
    value = attributes.get(name)
    if isinstance(value, list):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def _close(conn: Connection) -> None:
    """Drop a connection, also one that failed half-way (ldap3 then leaves its socket open)."""
    with contextlib.suppress(LDAPException, OSError):
        conn.unbind()
    sock = getattr(conn, "socket", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()


def wildcard_filter(pattern: str) -> str:
    """A search value where `*` stays a wildcard and everything else is literal."""
    return "*".join(escape_filter_chars(part) for part in pattern.split("*"))


class LdapDirectory:
    def __init__(self, profile: LdapProfile) -> None:
        self.profile = profile
        self._preferred = 0  # the server that answered last (threads may race: harmless)
        self._idle: list[Connection] = []  # bound service connections kept for reuse

    # -- connections -----------------------------------------------------------------

    def _server(self, url: str) -> Server:
        p = self.profile
        tls = None
        if url.startswith("ldaps://") or p.start_tls:
            context = ssl.create_default_context(cafile=str(p.ca_file) if p.ca_file else None)
            tls = _CheckedTls(context)
        return Server(url, tls=tls, connect_timeout=p.timeout_s, get_info=NONE)

    def _connect(self, user: str | None, password: str | None) -> Connection:
        """An open, bound connection to the first server that answers (bind failure is
        the caller's to judge: see `bound`)."""
        servers = self.profile.servers
        order = [*range(self._preferred, len(servers)), *range(self._preferred)]
        failures = []
        for index in order:
            url = servers[index]
            conn = Connection(self._server(url), user=user, password=password,
                              read_only=True,
                              receive_timeout=math.ceil(self.profile.timeout_s),
                              raise_exceptions=False, auto_referrals=False)
            try:
                conn.open()
                if self.profile.start_tls and not url.startswith("ldaps://"):
                    conn.start_tls()
            except (LDAPCommunicationError, LDAPStartTLSError, OSError) as exc:
                _close(conn)
                failures.append(f"{url}: {exc}")
                log.warning("LDAP profile %s: server %s failed: %s", self.profile.name, url, exc)
                continue
            except LDAPException as exc:
                _close(conn)
                failures.append(f"{url}: {exc}")
                continue
            self._preferred = index
            return conn
        raise DirectoryUnavailable(
            f"the directory of profile {self.profile.name} cannot be reached "
            f"({'; '.join(failures)}); internal users can still sign in")

    def _service(self) -> Connection:
        """A connection bound as the profile's service account (or anonymous)."""
        conn = self._connect(self.profile.bind_dn, self.profile.password())
        try:
            ok = conn.bind()
        except LDAPException as exc:
            _close(conn)
            raise DirectoryUnavailable(f"the directory of profile {self.profile.name} "
                                       f"failed: {exc}") from None
        if not ok:
            _close(conn)
            raise DirectoryUnavailable(
                f"the engine cannot bind to the directory of profile {self.profile.name} "
                f"({conn.result.get('description')}); check bind_dn and its password")
        return conn

    def _with_service(self, use: Callable[[Connection], T]) -> T:
        """Run `use` on a pooled service connection (a search costs no connect, TLS
        handshake and bind); one the server dropped (idle timeout, restart) is replaced
        once. Connections are not shared between threads: each is taken from the pool."""
        for attempt in (1, 2):
            try:
                conn = self._idle.pop()
                fresh = False
            except IndexError:
                conn, fresh = self._service(), True
            try:
                result = use(conn)
            except DirectoryUnavailable:
                _close(conn)
                if fresh or attempt == 2:
                    raise
                continue
            except BaseException:
                _close(conn)
                raise
            if len(self._idle) < POOL_SIZE:
                self._idle.append(conn)
            else:
                _close(conn)
            return result
        raise AssertionError("unreachable")

    def close(self) -> None:
        while self._idle:
            _close(self._idle.pop())

    # -- searches --------------------------------------------------------------------

    def _search(self, conn: Connection, base: str, query: str, attributes: list[str],
                limit: int = MAX_RESULTS) -> list[tuple[str, dict[str, Any]]]:
        try:
            conn.search(base, query, SUBTREE, attributes=attributes, size_limit=limit)
        except LDAPException as exc:
            raise DirectoryUnavailable(f"the directory of profile {self.profile.name} "
                                       f"failed a search: {exc}") from None
        return [(entry["dn"], dict(entry["attributes"])) for entry in conn.response or []
                if entry.get("type") == "searchResEntry"]

    def _user_attributes(self) -> list[str]:
        a = self.profile.attributes
        return [a.login, a.id, a.first_name, a.last_name, a.email]

    def _user(self, dn: str, attrs: dict[str, Any],
              groups: tuple[DirectoryGroup, ...] = ()) -> DirectoryUser:
        a = self.profile.attributes
        return DirectoryUser(id=_first(attrs, a.id) or dn, login=_first(attrs, a.login), dn=dn,
                             first_name=_first(attrs, a.first_name),
                             last_name=_first(attrs, a.last_name),
                             email=_first(attrs, a.email), groups=groups)

    def _group(self, dn: str, attrs: dict[str, Any]) -> DirectoryGroup:
        a = self.profile.attributes
        return DirectoryGroup(id=_first(attrs, a.id) or dn, name=_first(attrs, a.group_name),
                              dn=dn)

    def _groups_of(self, conn: Connection, dn: str) -> tuple[DirectoryGroup, ...]:
        """Every group `dn` belongs to, directly or through groups in groups."""
        a, p = self.profile.attributes, self.profile
        found: dict[str, DirectoryGroup] = {}
        frontier, depth = [dn], 0
        while frontier and depth <= p.nesting_depth:
            members = "".join(f"({a.member}={escape_filter_chars(m)})" for m in frontier)
            query = f"(&{p.group_filter}(|{members}))"
            frontier = []
            for group_dn, attrs in self._search(conn, p.group_base, query,
                                                [a.group_name, a.id], limit=0):
                if group_dn not in found:
                    found[group_dn] = self._group(group_dn, attrs)
                    frontier.append(group_dn)
            depth += 1
        return tuple(sorted(found.values(), key=lambda g: g.name))

    def find_user(self, login: str) -> DirectoryUser | None:
        return self._with_service(lambda conn: self._find_user(conn, login))

    def _find_user(self, conn: Connection, login: str) -> DirectoryUser | None:
        p = self.profile
        query = f"(&{p.user_filter}({p.attributes.login}={escape_filter_chars(login)}))"
        found = self._search(conn, p.user_base, query, self._user_attributes(), limit=2)
        if len(found) != 1:
            return None
        dn, attrs = found[0]
        return self._user(dn, attrs, self._groups_of(conn, dn))

    def authenticate(self, login: str, password: str) -> DirectoryUser | None:
        """The user when `password` is theirs (a bind as them succeeds), else None. An empty
        password is refused here: LDAP takes it as an anonymous bind, which succeeds."""
        if not password or not login:
            return None
        user = self.find_user(login)
        if user is None:
            return None
        conn = self._connect(user.dn, password)
        try:
            ok = conn.bind()
        except LDAPException:
            ok = False
        finally:
            _close(conn)
        return user if ok else None

    def search_users(self, pattern: str) -> list[DirectoryUser]:
        p, a = self.profile, self.profile.attributes
        query = f"(&{p.user_filter}({a.login}={wildcard_filter(pattern)}))"
        found = self._with_service(lambda conn: [
            self._user(dn, attrs)
            for dn, attrs in self._search(conn, p.user_base, query, self._user_attributes())])
        return sorted(found, key=lambda u: u.login)

    def search_groups(self, pattern: str) -> list[DirectoryGroup]:
        p, a = self.profile, self.profile.attributes
        query = f"(&{p.group_filter}({a.group_name}={wildcard_filter(pattern)}))"
        found = self._with_service(lambda conn: [
            self._group(dn, attrs)
            for dn, attrs in self._search(conn, p.group_base, query, [a.group_name, a.id])])
        return sorted(found, key=lambda g: g.name)
