"""The lab's storage host: NFS (nfs-ganesha) and iSCSI (tgt), on the storage network only.

Both servers run in userspace (the kernel here has no NFS or iSCSI server) in the
storage host's namespaces; they bind to its storage address, so nodes reach them
over the storage network and not over management.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from overt.lab.anchor import enter, read_anchor, start_anchor
from overt.system.commands import run, succeeds
from overt.system.waiting import wait_until

NFS_PORT = 2049
ISCSI_PORT = 3260
LUN_COUNT = 2
LUN_SIZE = 2 << 30

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
        if self.target_iqn in shown:
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

    def _answers_inside(self, anchor: int, port: int) -> bool:
        probe = f"exec 3<>/dev/tcp/{self.address}/{port}"
        return succeeds(self._in_host(anchor, "timeout", "2", "bash", "-c", probe), timeout=10)
