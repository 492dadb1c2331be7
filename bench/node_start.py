"""Time from the agent's vm.start to a running guest, against `virsh start` of the same domain.

Run as root on a machine with libvirtd (scripts/setup): `.venv/bin/python -m bench.node_start`.
The agent runs as a real `overt node` process; the engine side calls it over the direct
transport (HTTPS + mutual TLS). Both start the same persistent domain (the test guest),
alternately, and each start is followed by a destroy. Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import libvirt

from overt.bus.base import NodeAddress
from overt.bus.direct.engine import DirectEngineTransport
from overt.bus.direct.gateway import NodeGateway
from overt.bus.direct.tls import issue_engine_identity, node_names
from overt.lab.guest import BOOT_MARKER, build_guest_image
from overt.lab.guest.domain import overlay_disk
from overt.node.hypervisor.libvirt_host import parse_capabilities
from overt.node.identity import NodeIdentity
from overt.pki.certs import CertificateAuthority, cert_pem
from overt.protocol import CommandEnvelope
from overt.protocol.commands import VmDefine, VmDestroy, VmStart, VmUndefine
from overt.protocol.enrollment import EnrollmentGrant, EnrollmentStatus
from overt.protocol.vm import DiskSpec, FileSource, VmSpec
from overt.system.daemons import LOCAL_LIBVIRT_URI, ensure_libvirtd

URI = LOCAL_LIBVIRT_URI


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_marker(log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and BOOT_MARKER in log.read_text(errors="replace"):
            return
        time.sleep(0.02)
    raise RuntimeError(f"no boot marker in {log}")


async def _noop_sink(_event: object) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    ensure_libvirtd()
    conn = libvirt.open(URI)
    work = Path(tempfile.mkdtemp(prefix="ovnd-bench-"))
    storage = Path(tempfile.mkdtemp(prefix="ovnd-bench-images-", dir="/var/tmp"))
    storage.chmod(0o755)
    disk = overlay_disk(build_guest_image().qcow2_disk, storage / "bench.qcow2")
    serial = storage / "bench.serial.log"
    spec = VmSpec(id=uuid.uuid4(), name=f"ovnd-bench-{uuid.uuid4().hex[:6]}", memory_mib=256,
                  disks=(DiskSpec(id=uuid.uuid4(), source=FileSource(path=str(disk))),),
                  serial_log=str(serial))
    ca = CertificateAuthority.create("bench")
    engine_tls = issue_engine_identity(ca, work / "engine", ["127.0.0.1"])
    host_uuid = parse_capabilities(conn.getCapabilities()).host_uuid
    loop = asyncio.new_event_loop()
    gateway = NodeGateway(engine_tls, host="127.0.0.1", port=0, sink=_noop_sink)
    engine = DirectEngineTransport(engine_tls, gateway=gateway)
    loop.run_until_complete(engine.start(_noop_sink))
    identity = NodeIdentity(work / "data")
    cert = ca.sign(identity.csr_pem(host_uuid, node_names(host_uuid, "n", "127.0.0.1")).encode())
    identity.accept_grant(EnrollmentGrant(status=EnrollmentStatus.APPROVED,
                                          certificate_pem=cert_pem(cert).decode(),
                                          ca_pem=cert_pem(ca.cert).decode()),
                          host_uuid, f"https://127.0.0.1:{gateway.port}")
    port = _free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "overt", "node", "--listen-address", "127.0.0.1", "--port",
         str(port), "--data-dir", str(work / "data"), "--storage-dir", str(storage),
         "--virt-type", "qemu", "--log-level", "WARNING"])
    node = NodeAddress(host_uuid, f"https://127.0.0.1:{port}")

    def call(command: object) -> None:
        reply = loop.run_until_complete(engine.call(node, CommandEnvelope(command=command)))
        if not reply.ok:
            raise RuntimeError(f"{command}: {reply.error}")

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        call(VmDefine(spec=spec))
        call(VmStart(vm_id=spec.id))  # warm-up of both paths (page cache, connections)
        _wait_marker(serial)
        call(VmDestroy(vm_id=spec.id))
        results: dict[str, list[float]] = {"agent": [], "virsh": [], "agent-boot": [],
                                           "virsh-boot": []}
        for _ in range(args.runs):
            for way in ("virsh", "agent"):
                start = time.perf_counter()
                if way == "virsh":
                    subprocess.run(["virsh", "-q", "-c", URI, "start", spec.name], check=True,
                                   stdout=subprocess.DEVNULL)
                else:
                    call(VmStart(vm_id=spec.id))
                results[way].append(time.perf_counter() - start)
                _wait_marker(serial)
                results[f"{way}-boot"].append(time.perf_counter() - start)
                call(VmDestroy(vm_id=spec.id))
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"runs: {args.runs} each, domain {spec.name} (test guest, type qemu, 256 MiB)")
        for way in ("virsh", "agent"):
            print(f"{way:>6} start -> running: median {med[way] * 1000:7.1f} ms   "
                  f"-> boot marker: median {med[way + '-boot']:.2f} s")
        ratio = med["agent"] / med["virsh"]
        print(f"ratio agent/virsh (start -> running): {ratio:.3f} "
              f"({(ratio - 1) * 100:+.1f} %)")
        boot_ratio = med["agent-boot"] / med["virsh-boot"]
        print(f"ratio agent/virsh (start -> boot marker): {boot_ratio:.3f} "
              f"({(boot_ratio - 1) * 100:+.1f} %)")
    finally:
        try:
            call(VmUndefine(vm_id=spec.id))
        except Exception as exc:
            print(f"cleanup: {exc}", file=sys.stderr)
        agent.terminate()
        agent.wait(30)
        loop.run_until_complete(engine.close())
        loop.close()
        conn.close()
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
