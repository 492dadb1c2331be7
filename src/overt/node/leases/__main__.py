"""`python -m overt.node.leases`: the lease keeper with a lean start (it imports no engine
or CLI code, so `overt node` gets its keeper's socket within a second or so)."""

from __future__ import annotations

import argparse
import asyncio
import uuid
from pathlib import Path

from overt.logs import configure_logging
from overt.node.leases.service import host_uuid, run_keeper


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m overt.node.leases")
    parser.add_argument("--data-dir", type=Path, default=Path("/var/lib/overt/node"))
    parser.add_argument("--libvirt-uri", default="qemu:///system")
    parser.add_argument("--host-id", type=uuid.UUID, default=None)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    configure_logging(args.log_level, "text")
    owner = args.host_id or host_uuid(args.libvirt_uri)
    asyncio.run(run_keeper(owner, args.data_dir / "leases", args.libvirt_uri))


if __name__ == "__main__":
    main()
