"""Time from PXE power-on of a blank machine to its host pending approval, and from
approval to its certificate, under software emulation (TCG).

Run as root on a machine set up by scripts/setup: `.venv/bin/python -m bench.node_provisioning`.
Builds the node image (`overt node-image build`), starts an engine, writes the TFTP root
as the network services do for a provisioning profile of the machine's MAC (`boot.ipxe`
chaining to `mac-....ipxe`), serves the boot files with the engine's boot HTTP server, and
powers on a QEMU machine (TCG, 2 vCPUs, 2 GiB, no disk) that boots from the network: its
iPXE ROM gets `boot.ipxe` from QEMU's user network (DHCP and TFTP there; the host is
`${next-server}` = 10.0.2.2), chains to the profile's script, fetches the image over HTTP
and boots it; the agent finds the engine on its kernel command line. The official SDK
waits for the host pending approval, approves it, and waits for the certificate. Not
measured: `up` (the engine cannot call a node behind QEMU's user network).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import ovirtsdk4.types as types
from tests.support.engine import start_engine
from tests.support.ports import free_port

from overt.engine.netsvc.boot_http import BootFileServer
from overt.engine.netsvc.provisioning import publish
from overt.engine.netsvc.pxe import KERNEL, BootEntry, boot_base, prepare_tftp_root
from overt.engine.provisioning.boot import ProfileBoot
from overt.engine.provisioning.images import NodeImages
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
    tftp, entry = work / "tftp", BootEntry(http_port=free_port())
    tftp.mkdir()
    served = publish(tftp, [ProfileBoot("bench", MAC, "node")], NodeImages(image.directory.parent),
                     base=boot_base(entry), engine_url=f"https://${{next-server}}:{port}",
                     ca_fingerprint=ca)
    prepare_tftp_root(tftp, image.kernel, image.initrd, entry, profiles=True)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    files = BootFileServer(tftp, {KERNEL, *served})
    asyncio.run_coroutine_threadsafe(files.start(["127.0.0.1"], entry.http_port or 0),
                                     loop).result(10)
    power_on = time.monotonic()
    with (work / "console.log").open("w") as console:
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "q35,accel=tcg", "-m", "2048", "-smp", "2",
             "-nographic", "-no-reboot", "-boot", "n",
             "-netdev", f"user,id=n0,tftp={tftp},bootfile=boot.ipxe",
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
        print(f"PXE power-on to pending_approval: {pending:.0f} s; host {host.name}, "
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
        asyncio.run_coroutine_threadsafe(files.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)


if __name__ == "__main__":
    main()
