"""CHAP for QEMU's iSCSI client: the password reaches `qemu-img`, `qemu-nbd` and
`qemu-storage-daemon` as a secret object read from a 0600 file, and libvirt as an iSCSI
auth secret, never on a command line, in an image header or in a log line.

An image's options name the secret by an id derived from the target (`password-secret`),
so the qcow2 backing name a volume keeps in its header holds the user name and that id
only: every process opening the chain defines the object under the same id.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from overt.protocol.vm import ChapAuth, DiskSource, IscsiSource, VmSpec

# What libiscsi says (through QEMU) when a target refuses the login.
_REFUSED = ("authorization failure", "authentication failure", "failed to login",
            "failed to log in", "chap")


def secret_id(target: str) -> str:
    """The QEMU object id (and libvirt usage name) of the CHAP secret of `target`."""
    return "overtchap" + hashlib.sha256(target.encode()).hexdigest()[:12]


def iscsi_credentials(spec: VmSpec) -> dict[str, ChapAuth]:
    """The CHAP credentials of the VM's disks (their backing chains too), by secret id."""
    def sources() -> Iterator[DiskSource]:
        for disk in spec.disks:
            yield disk.source
            if disk.backing is not None:
                yield disk.backing
            yield from (layer.source for layer in disk.chain)
        if spec.cdrom is not None and spec.cdrom.source is not None:
            yield spec.cdrom.source
    return {secret_id(s.target): s.chap for s in sources()
            if isinstance(s, IscsiSource) and s.chap is not None}


def image_options(target: str, chap: ChapAuth | None) -> str:
    """The iSCSI driver's CHAP options (none without CHAP), comma-separated."""
    if chap is None:
        return ""
    return f"user={chap.username},password-secret={secret_id(target)}"


@contextmanager
def secret_objects(credentials: Sequence[tuple[str, ChapAuth | None]]) -> Iterator[list[str]]:
    """`--object secret,...` arguments for each (target, credentials) with CHAP; the
    files live only as long as the block."""
    wanted = {secret_id(target): chap for target, chap in credentials if chap is not None}
    if not wanted:
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="overt-chap-") as tmp:
        args: list[str] = []
        for ident, chap in sorted(wanted.items()):
            path = Path(tmp) / ident
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(chap.password)
            args += ["--object", f"secret,id={ident},file={path},format=raw"]
        yield args


def with_objects(argv: list[str], objects: list[str]) -> list[str]:
    """`argv` (a `qemu-img SUBCOMMAND ...` line) with the secret objects after the
    subcommand, where qemu-img takes them."""
    return [*argv[:2], *objects, *argv[2:]] if objects else argv


def refused_login(message: str) -> bool:
    """Whether a QEMU error says the iSCSI target refused the login."""
    lowered = message.lower()
    return any(word in lowered for word in _REFUSED)


def scrub(message: str, chap: ChapAuth | None) -> str:
    """`message` without the password, should a tool ever echo it."""
    if chap is None or not chap.password:
        return message
    return message.replace(chap.password, "***")
