"""Finding the engine by DNS: a node started without an engine URL looks up the SRV record
`_overt._tcp.DOMAIN` (the engine's network services publish it) and enrolls there."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver

log = logging.getLogger(__name__)

SRV_NAME = "_overt._tcp"


def _resolver(nameservers: Sequence[str], timeout_s: float) -> dns.resolver.Resolver:
    if nameservers:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = list(nameservers)
    else:
        resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout_s
    return resolver


def search_domains(resolver: dns.resolver.Resolver) -> list[str]:
    """The domains the system resolver searches (resolv.conf's `search`, else `domain`)."""
    names = list(resolver.search) or ([resolver.domain] if resolver.domain else [])
    return [name.to_text(omit_final_dot=True) for name in names
            if name != dns.name.root and name.to_text(omit_final_dot=True)]


def discover_engine_url(domains: Sequence[str] = (), nameservers: Sequence[str] = (), *,
                        timeout_s: float = 5.0) -> str | None:
    """`https://ADDRESS:PORT` of the engine's node gateway from the first domain whose SRV
    record answers (lowest priority, then highest weight), or None."""
    resolver = _resolver(nameservers, timeout_s)
    candidates = list(domains) or search_domains(dns.resolver.Resolver())
    for domain in candidates:
        qname = f"{SRV_NAME}.{domain.strip('.')}."
        try:
            answer = resolver.resolve(qname, "SRV")
        except (dns.exception.DNSException, OSError) as exc:
            log.debug("no engine at %s: %s", qname, exc)
            continue
        records = sorted(answer, key=lambda r: (r.priority, -r.weight))
        for srv in records:
            target = srv.target.to_text()
            try:
                address = resolver.resolve(target, "A")[0].to_text()
            except (dns.exception.DNSException, OSError):
                address = target.rstrip(".")
            url = f"https://{address}:{srv.port}"
            log.info("found the engine by DNS (%s): %s", qname, url)
            return url
    return None
