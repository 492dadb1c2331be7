"""Broker URLs: checked once, shown only with the password masked."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

# Seconds between AMQP heartbeats unless the URL says otherwise: a silent peer is
# noticed within about three of them (RabbitMQ's default, 60 s, is too slow for us).
DEFAULT_HEARTBEAT_S = 15


@dataclass(frozen=True)
class BrokerUrl:
    """An amqp:// or amqps:// URL with a user; `str()` never shows the password.

    The URL may name several brokers of one cluster, comma-separated
    (`amqp://USER:PASSWORD@HOST1:5672,HOST2:5672/VHOST`): `url`, `host` and `port` are
    the first's, `members()` gives one URL per broker, to try in turn."""

    url: str
    username: str
    password: str
    host: str
    port: int
    vhost: str
    others: tuple[tuple[str, int], ...] = ()

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        scheme, _, rest = url.partition("://")
        netloc, slash, tail = rest.partition("/")
        credentials, at, hosts = netloc.rpartition("@")
        addresses = [_address(scheme, a) for a in hosts.split(",")] if hosts else []
        first = (f"{credentials}{at}{_netloc_host(addresses[0][0])}:{addresses[0][1]}"
                 if addresses else netloc)
        parts = urlsplit(f"{scheme}://{first}{slash}{tail}")
        if parts.scheme not in ("amqp", "amqps") or not addresses:
            raise ValueError(f"{_mask(url)} is not a broker URL: expected "
                             "amqp://USER:PASSWORD@HOST:PORT/VHOST or amqps://...")
        if not parts.username or parts.password is None:
            raise ValueError(f"the broker URL {_mask(url)} names no user and password; Overt "
                             "never falls back to RabbitMQ's default account")
        query = dict(parse_qsl(parts.query))
        query.setdefault("heartbeat", str(DEFAULT_HEARTBEAT_S))
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        host, port = addresses[0]
        return cls(
            url=urlunsplit(parts._replace(query=urlencode(query))),
            username=unquote(parts.username),
            password=unquote(parts.password),
            host=host,
            port=port,
            vhost=vhost,
            others=tuple(addresses[1:]),
        )

    def members(self) -> list[BrokerUrl]:
        """One URL per broker named, the first first."""
        parts = urlsplit(self.url)
        credentials = parts.netloc.rpartition("@")[0]
        result = [replace(self, others=())]
        for host, port in self.others:
            netloc = f"{credentials}@{_netloc_host(host)}:{port}"
            result.append(replace(self, url=urlunsplit(parts._replace(netloc=netloc)),
                                  host=host, port=port, others=()))
        return result

    def __str__(self) -> str:
        first = f"@{_netloc_host(self.host)}:{self.port}"
        every = ",".join(f"{_netloc_host(h)}:{p}" for h, p in ((self.host, self.port),
                                                                *self.others))
        return _mask(self.url).replace(first, f"@{every}", 1)

    def __repr__(self) -> str:
        return f"BrokerUrl({_mask(self.url)!r})"

    def scrub(self, text: str) -> str:
        """`text` (e.g. a library's error message) with this URL's password masked."""
        return text.replace(self.password, "***") if self.password else text


def broker_url(scheme: str, username: str, password: str, host: str, port: int,
               vhost: str, *, others: tuple[tuple[str, int], ...] = ()) -> str:
    """Build an amqp(s) URL, quoting what needs quoting (vhost '/' is '%2F'); `others`
    are more brokers of the same cluster."""
    hosts = ",".join(f"{_netloc_host(h)}:{p}" for h, p in ((host, port), *others))
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{hosts}"
    return f"{scheme}://{netloc}/{quote(vhost, safe='')}"


def broker_addresses(url: str) -> list[tuple[str, int]]:
    """The (host, port) of every broker an amqp(s) URL names (credentials or not)."""
    scheme, _, rest = url.partition("://")
    hosts = rest.partition("/")[0].rpartition("@")[2]
    if scheme not in ("amqp", "amqps") or not hosts:
        raise ValueError(f"{_mask(url)} is not a broker address: expected amqp://HOST:PORT")
    return [_address(scheme, a) for a in hosts.split(",")]


def _address(scheme: str, text: str) -> tuple[str, int]:
    parts = urlsplit(f"{scheme}://{text}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{text!r} is not a broker address: expected HOST or HOST:PORT") from None
    if not parts.hostname:
        raise ValueError(f"{text!r} is not a broker address: expected HOST or HOST:PORT")
    return parts.hostname, port or (5671 if scheme == "amqps" else 5672)


def _netloc_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _mask(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    netloc, slash, tail = rest.partition("/")
    credentials, at, hosts = netloc.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{hosts}{slash}{tail}"


class PlainBrokerRefused(ValueError):
    """A plain (unencrypted) broker connection that would carry a password off this machine."""


def is_loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_tls(url: str, *, allow_plain: bool, what: str) -> None:
    """Refuse `url` (amqp://, or the management API's http://) when it leaves this machine
    unencrypted, unless plain connections are explicitly allowed (a lab, a trusted network)."""
    parts = urlsplit(url)
    if parts.scheme in ("amqps", "https") or allow_plain or is_loopback(parts.hostname):
        return
    secure = "amqps" if parts.scheme == "amqp" else "https"
    raise PlainBrokerRefused(
        f"{what} {_mask(url)} is plain {parts.scheme}:// to {parts.hostname}: broker "
        f"passwords would cross the network unencrypted. Use {secure}:// (RabbitMQ with TLS, "
        "see docs/broker.md), or on a network you trust (the lab) allow plain connections "
        "with OVERT_BROKER_ALLOW_PLAIN=1")
