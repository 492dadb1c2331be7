"""Broker URLs: checked once, shown only with the password masked."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

# Seconds between AMQP heartbeats unless the URL says otherwise: a silent peer is
# noticed within about three of them (RabbitMQ's default, 60 s, is too slow for us).
DEFAULT_HEARTBEAT_S = 15


@dataclass(frozen=True)
class BrokerUrl:
    """An amqp:// or amqps:// URL with a user; `str()` never shows the password."""

    url: str
    username: str
    password: str
    host: str
    port: int
    vhost: str

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("amqp", "amqps"):
            raise ValueError(f"{_mask(url)} is not a broker URL: expected "
                             "amqp://USER:PASSWORD@HOST:PORT/VHOST or amqps://...")
        if not parts.username or parts.password is None:
            raise ValueError(f"the broker URL {_mask(url)} names no user and password; Overt "
                             "never falls back to RabbitMQ's default account")
        query = dict(parse_qsl(parts.query))
        query.setdefault("heartbeat", str(DEFAULT_HEARTBEAT_S))
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(
            url=urlunsplit(parts._replace(query=urlencode(query))),
            username=unquote(parts.username),
            password=unquote(parts.password),
            host=parts.hostname or "localhost",
            port=parts.port or (5671 if parts.scheme == "amqps" else 5672),
            vhost=vhost,
        )

    def __str__(self) -> str:
        return _mask(self.url)

    def __repr__(self) -> str:
        return f"BrokerUrl({_mask(self.url)!r})"

    def scrub(self, text: str) -> str:
        """`text` (e.g. a library's error message) with this URL's password masked."""
        return text.replace(self.password, "***") if self.password else text


def broker_url(scheme: str, username: str, password: str, host: str, port: int,
               vhost: str) -> str:
    """Build an amqp(s) URL, quoting what needs quoting (vhost '/' is '%2F')."""
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}:{port}"
    return f"{scheme}://{netloc}/{quote(vhost, safe='')}"


def _mask(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{netloc}"))


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
