"""The lab's storage host: NFS (nfs-ganesha) and iSCSI (tgt), on the storage network only.

Both servers run in userspace (the kernel here has no NFS or iSCSI server) in the
storage host's namespaces; they bind to its storage address, so nodes reach them
over the storage network and not over management. A second iSCSI target asks its
initiators for CHAP (user `CHAP_USER`, a password made for this lab and kept 0600 in the
storage host's directory).
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path

from overt.lab.anchor import enter, read_anchor, start_anchor
from overt.system.commands import run, succeeds
from overt.system.waiting import wait_until

NFS_PORT = 2049
ISCSI_PORT = 3260
LUN_COUNT = 2
LUN_SIZE = 2 << 30
CHAP_USER = "overt-lab"
CHAP_LUN_SIZE = 256 << 20
CHAP_LUN_COUNT = 2

GANESHA_CONF = """\
NFS_CORE_PARAM {{
    Bind_addr = {address};
    Protocols = 3, 4;
    # NFSv3 clients (QEMU's libnfs) mount the pseudo path, as NFSv4 clients do.
    Mount_Path_Pseudo = true;
}}
NFSV4 {{
    Graceless = true;
}}
EXPORT_DEFAULTS {{
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
}}
EXPORT {{
    Export_Id = 1;
    Path = {export};
    Pseudo = /export;
    Protocols = 3, 4;
    Transports = TCP;
    FSAL {{
        Name = VFS;
    }}
}}
LOG {{
    Default_Log_Level = EVENT;
}}
"""


class StorageServer:
    """Paths and daemons of the lab's storage host."""

    def __init__(self, host_dir: Path, namespace: str, address: ipaddress.IPv4Address,
                 export_dir: Path, target_iqn: str) -> None:
        self.host_dir = host_dir
        self.namespace = namespace
        self.address = address
        self.export_dir = export_dir
        self.target_iqn = target_iqn
        self.pid_dir = host_dir / "pids"

    def anchor(self) -> int | None:
        return read_anchor(self.pid_dir / "anchor.pid")

    def iscsi_url(self, lun: int) -> str:
        return f"iscsi://{self.address}/{self.target_iqn}/{lun}"

    @property
    def chap_target_iqn(self) -> str:
        """The target that asks for CHAP; its LUNs (1, 2) are `chap-lunN.img`."""
        return f"{self.target_iqn}.chap"

    def chap_secret(self) -> str:
        """The CHAP password of `chap_target_iqn` (made on first use, kept 0600)."""
        path = self.host_dir / "chap-secret"
        try:
            return path.read_text()
        except FileNotFoundError:
            pass
        self.host_dir.mkdir(parents=True, exist_ok=True)
        secret = secrets.token_urlsafe(12)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text()
        with os.fdopen(fd, "w") as out:
            out.write(secret)
        return secret

    def ensure_running(self) -> None:
        self.pid_dir.mkdir(parents=True, exist_ok=True)
        self.export_dir.mkdir(parents=True, exist_ok=True)
        self.export_dir.chmod(0o777)
        anchor = self.anchor()
        if anchor is None:
            # A private /run keeps rpcbind's and tgtd's sockets apart from the machine's.
            anchor = start_anchor(self.namespace, self.pid_dir / "anchor.pid",
                                  binds={self.host_dir / "var-lib-nfs": "/var/lib/nfs"},
                                  tmpfs=["/run"])
        self._ensure_nfs(anchor)
        self._ensure_iscsi(anchor)

    def _in_host(self, anchor: int, *argv: str) -> list[str]:
        return enter(anchor, list(argv))

    def _ensure_nfs(self, anchor: int) -> None:
        if self._answers_inside(anchor, NFS_PORT):
            return
        run(self._in_host(anchor, "mkdir", "-p", "/run/rpcbind", "/run/ganesha",
                          "/var/lib/nfs/ganesha"))
        if not succeeds(self._in_host(anchor, "rpcinfo", "-p", "127.0.0.1")):
            run(self._in_host(anchor, "rpcbind"))
        conf = self.host_dir / "ganesha.conf"
        conf.write_text(GANESHA_CONF.format(address=self.address, export=self.export_dir))
        run(self._in_host(anchor, "ganesha.nfsd", "-f", str(conf),
                          "-L", str(self.host_dir / "ganesha.log"),
                          "-p", str(self.pid_dir / "ganesha.pid"), "-N", "NIV_EVENT"))
        wait_until(lambda: self._answers_inside(anchor, NFS_PORT), timeout=30,
                   what=f"nfs-ganesha listening on {self.address}:{NFS_PORT}")

    def _ensure_iscsi(self, anchor: int) -> None:
        if not self._answers_inside(anchor, ISCSI_PORT):
            run(self._in_host(anchor, "mkdir", "-p", "/run/tgtd"))
            run(self._in_host(anchor, "tgtd", "--iscsi", f"portal={self.address}:{ISCSI_PORT}",
                              "--pid-file", str(self.pid_dir / "tgtd.pid")))
            wait_until(lambda: self._answers_inside(anchor, ISCSI_PORT), timeout=20,
                       what=f"tgtd listening on {self.address}:{ISCSI_PORT}")
        tgtadm = ["tgtadm", "--lld", "iscsi"]
        shown = run(self._in_host(anchor, *tgtadm, "--op", "show", "--mode", "target")).stdout
        if self.chap_target_iqn not in shown:
            self._add_chap_target(anchor, tgtadm)
        self._add_chap_luns(anchor, tgtadm, shown)
        if f"{self.target_iqn}\n" in shown:
            return
        run(self._in_host(anchor, *tgtadm, "--op", "new", "--mode", "target", "--tid", "1",
                          "-T", self.target_iqn))
        for lun in range(1, LUN_COUNT + 1):
            backing = self.host_dir / f"lun{lun}.img"
            if not backing.exists():
                with backing.open("wb") as image:
                    image.truncate(LUN_SIZE)
            run(self._in_host(anchor, *tgtadm, "--op", "new", "--mode", "logicalunit",
                              "--tid", "1", "--lun", str(lun), "-b", str(backing)))
        run(self._in_host(anchor, *tgtadm, "--op", "bind", "--mode", "target", "--tid", "1",
                          "-I", "ALL"))

    def _add_chap_target(self, anchor: int, tgtadm: list[str]) -> None:
        """Target 2 and an incoming CHAP account bound to it (its LUNs: `_add_chap_luns`)."""
        run(self._in_host(anchor, *tgtadm, "--op", "new", "--mode", "target", "--tid", "2",
                          "-T", self.chap_target_iqn))
        self.chap_secret()  # read by the shell below: the password is on no logged line
        account = (f'{" ".join(tgtadm)} --op new --mode account --user {CHAP_USER} '
                   f'--password "$(cat {self.host_dir / "chap-secret"})"')
        run(self._in_host(anchor, "bash", "-c", account))
        run(self._in_host(anchor, *tgtadm, "--op", "bind", "--mode", "account", "--tid", "2",
                          "--user", CHAP_USER))
        run(self._in_host(anchor, *tgtadm, "--op", "bind", "--mode", "target", "--tid", "2",
                          "-I", "ALL"))

    def _add_chap_luns(self, anchor: int, tgtadm: list[str], shown: str) -> None:
        """The CHAP target's LUNs, each `chap-lunN.img` that target 2 lacks (a lab made
        before LUN 2 existed gets it on its next `up`): LUN 1 for domains, LUN 2 for
        direct LUN disks."""
        for lun in range(1, CHAP_LUN_COUNT + 1):
            backing = self.host_dir / f"chap-lun{lun}.img"
            if f"{backing}\n" in shown:
                continue
            if not backing.exists():
                with backing.open("wb") as image:
                    image.truncate(CHAP_LUN_SIZE)
            run(self._in_host(anchor, *tgtadm, "--op", "new", "--mode", "logicalunit",
                              "--tid", "2", "--lun", str(lun), "-b", str(backing)))

    def _answers_inside(self, anchor: int, port: int) -> bool:
        probe = f"exec 3<>/dev/tcp/{self.address}/{port}"
        return succeeds(self._in_host(anchor, "timeout", "2", "bash", "-c", probe), timeout=10)
