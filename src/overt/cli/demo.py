"""`overt demo`: the all-in-one. Until the engine lands it shows the lab with a running guest."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import libvirt
import typer
from rich.console import Console

from overt.cli.errors import reports_errors
from overt.cli.lab import print_status
from overt.lab.guest import BOOT_MARKER, build_guest_image
from overt.lab.guest.domain import GuestDomain, overlay_disk
from overt.lab.lab import Lab
from overt.lab.topology import LabSpec, Topology
from overt.system.daemons import ensure_libvirtd

console = Console()
GUEST_DIR = "/var/tmp/overt-demo"  # seen by every lab node (their /var/lib/overt is private)


@reports_errors
def demo(
    nodes: Annotated[int, typer.Option(help="How many lab nodes.")] = 2,
    keep: Annotated[bool, typer.Option(help="Leave the lab up on exit.")] = False,
) -> None:
    """Build a lab, boot the test guest on node1 and keep it running until Ctrl-C."""
    ensure_libvirtd()
    lab = Lab(Topology(LabSpec(nodes=nodes)), on_step=lambda s: console.print(f"[cyan]•[/] {s}"))
    lab.up()
    image = build_guest_image()
    workdir = Path(GUEST_DIR)
    workdir.mkdir(parents=True, exist_ok=True, mode=0o755)
    spec = GuestDomain(disk=workdir / "guest1.qcow2", serial_log=workdir / "guest1.serial.log",
                       bridge="ovirtmgmt", name="demo-guest")
    spec.disk.unlink(missing_ok=True)
    overlay_disk(image.qcow2_disk, spec.disk)
    conn = libvirt.open(lab.hypervisor("node1").uri)
    domain = conn.createXML(spec.xml(), 0)
    started = time.monotonic()
    while BOOT_MARKER not in (spec.serial_log.read_text() if spec.serial_log.exists() else ""):
        time.sleep(0.2)
    console.print(f"[green]✓[/] test guest booted on node1 in {time.monotonic() - started:.1f} s")
    print_status(lab)
    console.print("Try: overt lab exec node1 -- virsh list    (Ctrl-C stops the demo)")
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        console.print("stopping the test guest")
        domain.destroy()
        conn.close()
        if not keep:
            lab.down()
