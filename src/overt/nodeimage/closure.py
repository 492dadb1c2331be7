"""Which installed Debian packages a node image needs, and their files: the closure of
the roots' Depends and Pre-Depends over what dpkg has installed (nothing is downloaded).

Alternatives take the first one installed; a virtual package, an installed provider."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from overt.system.commands import run

# What a node runs: the agent's Python, libvirt's daemon and its QEMU driver, QEMU with
# its NICs' boot ROMs (ipxe-qemu: QEMU will not start a guest with a NIC whose ROM file is
# missing), and busybox for its init (udhcpc, modprobe, mount...).
ROOTS = ("python3-minimal", "python3.11", "libvirt-daemon", "libvirt-daemon-driver-qemu",
         "qemu-system-x86", "ipxe-qemu", "qemu-utils", "busybox", "iproute2", "kmod",
         "util-linux")
# Pulled in by maintainer scripts' needs, never run on a node.
EXCLUDED = frozenset({"debconf", "perl-base", "dpkg", "init-system-helpers", "systemd",
                      "systemd-sysv", "adduser", "passwd", "login", "ucf", "lsb-base",
                      "sysvinit-utils", "install-info", "python3.11-doc"})
# Never needed to run: documentation, translations, manual pages.
_SKIPPED = re.compile(r"^/usr/share/(doc|man|info|locale|lintian|bug|doc-base|bash-completion"
                      r"|zsh|gtk-doc|help)/")


@dataclass(frozen=True)
class Installed:
    name: str
    depends: tuple[tuple[str, ...], ...]  # each: alternatives
    provides: tuple[str, ...]


def _names(field: str) -> tuple[tuple[str, ...], ...]:
    groups = []
    for group in field.split(","):
        alternatives = tuple(alt.strip().split()[0].split(":")[0]
                             for alt in group.split("|") if alt.strip())
        if alternatives:
            groups.append(alternatives)
    return tuple(groups)


def parse_status(text: str) -> dict[str, Installed]:
    """dpkg-query's `Package\\tStatus\\tDepends\\tPre-Depends\\tProvides` lines."""
    packages = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 5 or not fields[1].endswith(" installed"):
            continue
        name, _, depends, pre, provides = fields
        packages[name] = Installed(name, _names(depends) + _names(pre),
                                   tuple(p[0] for p in _names(provides)))
    return packages


def installed_packages() -> dict[str, Installed]:
    return parse_status(run(["dpkg-query", "-W", "-f",
                             "${Package}\t${Status}\t${Depends}\t${Pre-Depends}\t${Provides}\n"]
                            ).stdout)


def closure(packages: dict[str, Installed], roots: Iterable[str],
            excluded: frozenset[str] = EXCLUDED) -> list[str]:
    """The roots and everything they depend on, as installed; sorted."""
    providers: dict[str, str] = {}
    for pkg in packages.values():
        for virtual in pkg.provides:
            providers.setdefault(virtual, pkg.name)
    seen: set[str] = set()
    queue = list(roots)
    while queue:
        name = queue.pop()
        name = name if name in packages else providers.get(name, name)
        if name in seen or name in excluded or name not in packages:
            continue
        seen.add(name)
        for alternatives in packages[name].depends:
            chosen = next((a for a in alternatives if a in packages or a in providers), None)
            if chosen is not None:
                queue.append(chosen)
    return sorted(seen)


def package_files(name: str, info_dir: Path = Path("/var/lib/dpkg/info")) -> list[str]:
    """The paths a package installed (its dpkg file list), without documentation."""
    for candidate in (info_dir / f"{name}.list", *info_dir.glob(f"{name}:*.list")):
        if candidate.is_file():
            return [p for p in candidate.read_text().splitlines()
                    if p and p != "/." and not _SKIPPED.match(p)]
    return []
