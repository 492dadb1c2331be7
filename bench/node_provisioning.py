"""Time from power-on of a blank machine to its host pending approval, and from approval to
its certificate, under software emulation (TCG).

Run as root on a machine set up by scripts/setup: `.venv/bin/python -m bench.node_provisioning`.
Builds the node image (`overt node-image build`) into an engine's node images, starts the
engine, and powers on a QEMU machine (TCG, 2 vCPUs, 2 GiB) with the image's kernel and
initramfs and the kernel command line a provisioning profile gives (`overt.engine=`,
`overt.ca_fingerprint=`, `BOOTIF=`), on QEMU's user network (the engine's gateway is the
host's 10.0.2.2). The official SDK waits for the host pending approval, checks its facts,
approves it, and waits for the certificate. Not measured here: PXE itself (iPXE fetching
the files from the engine's network services) and `up` (the engine cannot reach a node
behind QEMU's user network).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

import ovirtsdk4.types as types
from tests.support.engine import start_engine

from overt.nodeimage.builder import build_node_image
from overt.pki.certs import fingerprint, load_cert

MAC = "52:54:00:12:34:56"


def _wait(check: object, timeout: float, what: str) -> object:
    assert callable(check)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(1)
    raise RuntimeError(f"timed out waiting for {what}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", type=Path, default=Path("/var/cache/overt/node-image"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="overt-bench-prov-"))
    started = time.monotonic()
    image = build_node_image(work / "engine" / "node-images" / "node", cache=args.cache)
    print(f"node image built in {time.monotonic() - started:.0f} s "
          f"(initramfs {image.initrd.stat().st_size >> 20} MiB)")
    engine = start_engine(work / "engine")
    port = engine.runtime.settings.gateway_port
    ca = fingerprint(load_cert(engine.runtime.pki.ca_pem().encode())).replace(":", "").lower()
    cmdline = (f"console=ttyS0,115200 panic=-1 overt.engine=https://10.0.2.2:{port} "
               f"overt.ca_fingerprint={ca} BOOTIF=01-{MAC.replace(':', '-')}")
    power_on = time.monotonic()
    with (work / "console.log").open("w") as console:
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "2048", "-smp", "2",
             "-nographic", "-no-reboot", "-kernel", str(image.kernel), "-initrd",
             str(image.initrd), "-append", cmdline, "-netdev", "user,id=n0",
             "-device", f"virtio-net-pci,netdev=n0,mac={MAC}"],
            stdout=console, stderr=subprocess.STDOUT)
    conn = engine.admin_connection()
    try:
        hosts = conn.system_service().hosts_service()
        host = _wait(lambda: next((h for h in hosts.list()
                                   if h.status == types.HostStatus.PENDING_APPROVAL), None),
                     600, "the node pending approval")
        assert isinstance(host, types.Host)
        pending = time.monotonic() - power_on
        print(f"power-on to pending_approval: {pending:.0f} s; host {host.name}, "
              f"{host.hardware_information.manufacturer} {host.hardware_information.product_name}"
              f", CPU {host.cpu.name}, memory {host.memory >> 20} MiB")
        approved = time.monotonic()
        hosts.host_service(host.id).approve()
        _wait(lambda: hosts.host_service(host.id).get().certificate is not None, 300,
              "the node's certificate")
        print(f"approval to certificate: {time.monotonic() - approved:.0f} s "
              f"(console: {work / 'console.log'})")
    finally:
        conn.close()
        qemu.kill()
        qemu.wait()
        engine.stop()


if __name__ == "__main__":
    main()
