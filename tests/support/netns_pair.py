"""Two private network namespaces joined by a veth pair, for tests of the engine's network
services: `engine_ns` holds the engine's end (address .1), `vm_ns` a VM's or node's end
(address .200, outside the DHCP ranges) with a given MAC. Names start with `nsv`; the /24
is a random one of 10.233.0.0/16."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from overt.lab import netns


@dataclass
class Wire:
    engine_ns: str
    vm_ns: str
    engine_if: str
    vm_if: str
    subnet: ipaddress.IPv4Network

    def host(self, n: int) -> ipaddress.IPv4Address:
        return self.subnet.network_address + n

    def run_in(self, namespace: str, *argv: str, timeout: float = 30,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", namespace, *argv], capture_output=True,
                              text=True, timeout=timeout, check=False,
                              env={**os.environ, **(env or {})})


def require_netsvc_programs() -> None:
    missing = [p for p in ("dnsmasq", "chronyd", "busybox")
               if shutil.which(p, path=f"{os.environ['PATH']}:/usr/sbin") is None]
    if missing:
        pytest.fail(f"not installed (scripts/setup installs them): {', '.join(missing)}")
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root")


@contextlib.contextmanager
def veth_pair(vm_mac: str) -> Iterator[Wire]:
    require_netsvc_programs()
    tag = secrets.token_hex(3)
    subnet = ipaddress.IPv4Network(f"10.233.{secrets.randbelow(250) + 1}.0/24")
    w = Wire(f"nsve{tag}", f"nsvv{tag}", f"nsve{tag}", f"nsvv{tag}", subnet)
    try:
        netns.ensure_namespace(w.engine_ns)
        netns.ensure_namespace(w.vm_ns)
        netns.ip("link", "add", w.engine_if, "type", "veth", "peer", "name", w.vm_if,
                 namespace=w.engine_ns)
        netns.ip("link", "set", w.vm_if, "netns", w.vm_ns, namespace=w.engine_ns)
        netns.ip("link", "set", w.vm_if, "address", vm_mac, namespace=w.vm_ns)
        netns.ensure_address(w.engine_if, ipaddress.IPv4Interface(f"{w.host(1)}/24"),
                             namespace=w.engine_ns)
        netns.ip("link", "set", w.engine_if, "up", namespace=w.engine_ns)
        netns.ip("link", "set", w.vm_if, "up", namespace=w.vm_ns)
        netns.ensure_address(w.vm_if, ipaddress.IPv4Interface(f"{w.host(200)}/24"),
                             namespace=w.vm_ns)
        yield w
    finally:
        for ns in (w.engine_ns, w.vm_ns):
            for pid in netns.pids_in(ns):  # only processes this test started live in them
                subprocess.run(["kill", "-9", str(pid)], check=False)
            netns.delete_namespace(ns)
