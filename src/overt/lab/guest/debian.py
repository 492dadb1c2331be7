"""Fetching and unpacking the Debian packages the test guest is made of."""

from __future__ import annotations

import re
from pathlib import Path

from overt.system.commands import CommandFailed, run

KERNEL_METAPACKAGE = "linux-image-cloud-amd64"
BUSYBOX_PACKAGE = "busybox-static"


def _refresh_package_lists() -> None:
    run(["apt-get", "update", "-q"], timeout=600)


def _depends_of(metapackage: str) -> str:
    out = run(["apt-cache", "depends", metapackage]).stdout
    match = re.search(r"Depends:\s*(linux-image-\S+)", out)
    if not match:
        raise CommandFailed(["apt-cache", "depends", metapackage], 1,
                            f"{metapackage} names no kernel package; run apt-get update")
    return match.group(1)


def kernel_package() -> str:
    """The versioned Debian cloud kernel package (e.g. linux-image-6.1.0-56-cloud-amd64)."""
    try:
        return _depends_of(KERNEL_METAPACKAGE)
    except CommandFailed:
        _refresh_package_lists()
        return _depends_of(KERNEL_METAPACKAGE)


def candidate_version(package: str) -> str:
    """The version apt would fetch for `package`."""
    out = run(["apt-cache", "policy", package]).stdout
    match = re.search(r"Candidate:\s*(\S+)", out)
    return match.group(1) if match else "unknown"


def download_and_unpack(package: str, into: Path) -> Path:
    """Download `package`'s .deb with apt and unpack it below `into`; return that tree."""
    into.mkdir(parents=True, exist_ok=True)
    download = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package]
    try:
        run(download, cwd=str(into), timeout=600)
    except CommandFailed:
        _refresh_package_lists()
        run(download, cwd=str(into), timeout=600)
    deb = next(into.glob(f"{package}_*.deb"))
    tree = into / package
    run(["dpkg-deb", "-x", str(deb), str(tree)])
    return tree
