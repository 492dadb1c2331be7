"""The files dnsmasq and chrony read, rendered from the plan and the inventory.

Pure functions: the same plan and inventory always give the same text, so the supervisor
restarts or reloads a daemon only when its files really change.

Names: a VM NIC is `VM.CLUSTER.DOMAIN.`, a host `HOST.CLUSTER.DOMAIN.`, the engine
`ENGINE.DOMAIN.` (each label lower-cased, other characters than a-z 0-9 made `-`), and
`_overt._tcp.DOMAIN.` is an SRV record pointing nodes at the engine's node gateway.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from overt.engine.netsvc.inventory import Inventory
from overt.engine.netsvc.plan import NetworkPlan, ServicesPlan, dns_label
from overt.engine.netsvc.pxe import dnsmasq_lines

HEADER = "# Written by the Overt engine (network services); changes here are overwritten.\n"
SRV_NAME = "_overt._tcp"


@dataclass(frozen=True)
class DnsmasqFiles:
    """dnsmasq's main file (a change needs a restart) and the files SIGHUP re-reads."""

    main: str
    hosts: str
    dhcp_hosts: str


def vm_fqdn(vm: str, cluster: str, domain: str) -> str:
    return f"{dns_label(vm)}.{dns_label(cluster)}.{domain}"


def engine_fqdn(plan: ServicesPlan) -> str:
    return f"{plan.engine_name}.{plan.domain}"


def render_dnsmasq(plan: ServicesPlan, net: NetworkPlan, inventory: Inventory,
                   addresses: dict[str, dict[str, ipaddress.IPv4Address]], state_dir: Path, *,
                   user: str, group: str, tftp_root: Path | None = None) -> DnsmasqFiles:
    """The files of the dnsmasq serving `net`. `addresses` is network -> MAC -> address;
    DNS answers for every managed network, DHCP only on this one; on a `pxe` network its
    TFTP server serves `tftp_root` (network boot)."""
    low, high = net.dhcp_range
    mask = net.subnet.netmask
    lines = [
        f"pid-file={state_dir / 'dnsmasq.pid'}",
        f"log-facility={state_dir / 'dnsmasq.log'}",
        f"user={user}", f"group={group}",
        f"interface={net.interface}", "bind-dynamic", "except-interface=lo",
        "no-hosts", f"addn-hosts={state_dir / 'hosts'}",
        f"domain={plan.domain}", f"local=/{plan.domain}/", "domain-needed", "bogus-priv",
    ]
    if plan.upstream_dns:
        lines += ["no-resolv", *(f"server={server}" for server in plan.upstream_dns)]
    lines += [
        f"dhcp-range=set:dynamic,{low},{high},{mask},{net.lease_time}",
        f"dhcp-range=set:reserved,{net.subnet.network_address},static,{mask},{net.lease_time}",
        f"dhcp-hostsfile={state_dir / 'dhcp-hosts'}",
        f"dhcp-leasefile={state_dir / 'leases'}", "dhcp-authoritative",
        f"dhcp-option=option:dns-server,{net.address}",
        f"dhcp-option=option:domain-search,{plan.domain}",
    ]
    lines.append(f"dhcp-option=option:router,{net.gateway}" if net.gateway
                 else "dhcp-option=option:router")
    if plan.ntp:
        lines.append(f"dhcp-option=option:ntp-server,{net.address}")
    lines.append(f"srv-host={SRV_NAME}.{plan.domain},{engine_fqdn(plan)},{plan.gateway_port}")
    if net.pxe and tftp_root is not None:
        lines += dnsmasq_lines(tftp_root)
    main = HEADER + "\n".join(lines) + "\n"

    records: list[tuple[str, str]] = [(str(net.address), engine_fqdn(plan))]
    for nic in inventory.nics:
        ip = addresses.get(nic.network, {}).get(nic.mac)
        if ip is not None:
            records.append((str(ip), vm_fqdn(nic.vm, nic.cluster, plan.domain)))
    for host in inventory.hosts:
        records.append((str(host.address), vm_fqdn(host.host, host.cluster, plan.domain)))
    hosts = HEADER + "".join(f"{ip} {name}\n" for ip, name in dict.fromkeys(records))

    named: set[str] = set()
    dhcp_lines = []
    for nic in inventory.nics:
        ip = addresses.get(net.name, {}).get(nic.mac)
        if nic.network != net.name or ip is None:
            continue
        label = dns_label(nic.vm)
        dhcp_lines.append(f"{nic.mac},{ip},{label}" if label not in named else f"{nic.mac},{ip}")
        named.add(label)
    return DnsmasqFiles(main=main, hosts=hosts,
                        dhcp_hosts=HEADER + "".join(f"{line}\n" for line in dhcp_lines))


def render_chrony(plan: ServicesPlan, state_dir: Path) -> str:
    """chronyd serving the managed networks: its own pid and drift files, no command socket
    (so it never meets the system's chronyd), the local clock as a stratum-10 fallback."""
    lines = [
        f"pidfile {state_dir / 'chronyd.pid'}",
        f"driftfile {state_dir / 'chrony.drift'}",
        "cmdport 0", "bindcmdaddress /",
        "local stratum 10",
    ]
    if len(plan.networks) == 1:
        lines.append(f"bindaddress {plan.networks[0].address}")
    lines += [f"server {server} iburst" for server in plan.ntp_servers]
    lines += [f"allow {net.subnet}" for net in plan.networks]
    return HEADER + "\n".join(lines) + "\n"
