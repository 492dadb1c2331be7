"""Network plumbing of the lab with iproute2: namespaces, bridges, veth pairs, addresses.

Every function is idempotent, so `overt lab up` can repair a half-present lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from overt.system.commands import CommandFailed, run, succeeds

NETNS_DIR = Path("/run/netns")
# `ip netns add` makes /run/netns a shared mount point the first time; two first adds at
# once (two labs, or a lab and a test's namespaces, coming up side by side) can each mount
# it, and a namespace made under the first mount is then hidden ("Cannot open network
# namespace"). Adds take this lock, and the mount point stays once made, as iproute2
# itself leaves it (an unmount while another lab came up was the same race).
NETNS_LOCK = Path("/run/lock/overt-netns.lock")


def ip(*args: str, namespace: str | None = None) -> str:
    prefix = ["ip", "-n", namespace] if namespace else ["ip"]
    return run([*prefix, *args]).stdout


def namespaces() -> list[str]:
    out = run(["ip", "-j", "netns", "list"]).stdout.strip()
    return [entry["name"] for entry in json.loads(out or "[]")]


@contextlib.contextmanager
def _netns_lock() -> Iterator[None]:
    NETNS_LOCK.parent.mkdir(parents=True, exist_ok=True)
    with NETNS_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_namespace(name: str) -> None:
    with _netns_lock():
        if name not in namespaces():
            run(["ip", "netns", "add", name])
    ip("link", "set", "lo", "up", namespace=name)


def delete_namespace(name: str) -> None:
    if name in namespaces():
        run(["ip", "netns", "delete", name])


def link_exists(name: str, namespace: str | None = None) -> bool:
    prefix = ["ip", "-n", namespace] if namespace else ["ip"]
    return succeeds([*prefix, "link", "show", "dev", name])


def links(namespace: str | None = None) -> list[str]:
    prefix = ["ip", "-n", namespace] if namespace else ["ip"]
    out = run([*prefix, "-j", "link", "show"]).stdout.strip()
    return [entry["ifname"] for entry in json.loads(out or "[]")]


def ensure_bridge(name: str, namespace: str | None = None) -> None:
    if not link_exists(name, namespace):
        ip("link", "add", name, "type", "bridge", "stp_state", "0", "forward_delay", "0",
           namespace=namespace)
    ip("link", "set", name, "up", namespace=namespace)


def ensure_veth(outer: str, inner: str, namespace: str, bridge: str) -> None:
    """A veth pair: `outer` in the root namespace on `bridge`, `inner` inside `namespace`."""
    if not link_exists(inner, namespace):
        if link_exists(outer):
            ip("link", "delete", outer)
        # Create both ends in the root namespace under unique names, then move one in.
        ip("link", "add", outer, "type", "veth", "peer", "name", f"{outer}x")
        ip("link", "set", f"{outer}x", "netns", namespace)
        ip("link", "set", f"{outer}x", "name", inner, namespace=namespace)
    ip("link", "set", outer, "master", bridge)
    ip("link", "set", outer, "up")
    ip("link", "set", inner, "up", namespace=namespace)


def enslave(port: str, bridge: str, namespace: str | None = None) -> None:
    ip("link", "set", port, "master", bridge, namespace=namespace)
    ip("link", "set", port, "up", namespace=namespace)


def has_address(dev: str, address: ipaddress.IPv4Interface,
                namespace: str | None = None) -> bool:
    prefix = ["ip", "-n", namespace] if namespace else ["ip"]
    present = run([*prefix, "-4", "-o", "addr", "show", "dev", dev]).stdout
    return f" {address.with_prefixlen} " in present


def ensure_address(dev: str, address: ipaddress.IPv4Interface,
                   namespace: str | None = None) -> None:
    if not has_address(dev, address, namespace):
        ip("addr", "add", address.with_prefixlen, "dev", dev, namespace=namespace)


def delete_links(names: Sequence[str]) -> None:
    for name in names:
        if link_exists(name):
            try:
                ip("link", "delete", name)
            except CommandFailed:
                if link_exists(name):  # else its veth peer's deletion took it meanwhile
                    raise


def routes_overlapping(block: ipaddress.IPv4Network, *, ignore_devs: set[str]) -> list[str]:
    """Root-namespace routes that overlap `block`, except those through `ignore_devs`."""
    out = run(["ip", "-j", "-4", "route", "show"]).stdout.strip()
    clashes = []
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst in ("", "default") or route.get("dev") in ignore_devs:
            continue
        if ipaddress.IPv4Network(dst, strict=False).overlaps(block):
            clashes.append(f"{dst} dev {route.get('dev')}")
    return clashes


def pids_in(namespace: str) -> list[int]:
    out = run(["ip", "netns", "pids", namespace], check=False).stdout
    return [int(pid) for pid in out.split()]

