"""Start-to-up through the engine's API (as the oVirt SDK does it) against `virsh create`.

Runs `overt demo` in a child process on free ports; creates a VM from the test-guest
template; then, alternately: starts it through the API and times until the API
reports `up`, stops it; and creates the same domain with `virsh create` (the XML the
agent produced) and times until virsh returns. Prints medians and the ratio.
Usage (root, after scripts/setup): .venv/bin/python -m bench.engine_vm_start [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
from tests.support.demo import Demo, wait_until

MIB = 2**20


def time_api_start(conn: sdk.Connection, vm_id: str) -> float:
    service = conn.system_service().vms_service().vm_service(vm_id)
    start = time.perf_counter()
    service.start()
    while service.get().status != types.VmStatus.UP:
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    service.stop()
    wait_until(lambda: service.get().status == types.VmStatus.DOWN, 60, "the VM to stop")
    return elapsed


def time_virsh_create(xml_file: Path, name: str) -> float:
    start = time.perf_counter()
    subprocess.run(["virsh", "-q", "create", str(xml_file)], check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    subprocess.run(["virsh", "-q", "destroy", name], check=True, capture_output=True)
    return elapsed


def as_plain_domain(xml: str, name: str) -> str:
    """The same domain under another name and UUID, without Overt's metadata, so the
    engine sees it as an unrelated (external) domain rather than its VM."""
    root = ET.fromstring(xml)
    root.find("name").text = name  # type: ignore[union-attr]
    for tag in ("uuid", "metadata", "seclabel"):
        for element in root.findall(tag):
            root.remove(element)
    for graphics in root.iter("graphics"):
        graphics.attrib.pop("port", None)
        graphics.set("autoport", "yes")
    return ET.tostring(root, encoding="unicode")


def start_demo() -> tuple[Path, Demo]:
    """`overt demo` on SQLite in a scratch directory QEMU can read; returns both."""
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-bench-"))
    base.chmod(0o755)
    demo = Demo(data_dir=base / "engine", images_dir=base / "images", db=None)
    demo.start()
    return base, demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    base, demo = start_demo()
    conn = demo.connect()
    try:
        vms = conn.system_service().vms_service()
        vm = vms.add(types.Vm(name="bench-start", cluster=types.Cluster(name="Default"),
                              template=types.Template(name="test-guest"), memory=256 * MIB))
        disks = conn.system_service().disks_service()
        wait_until(lambda: all(disks.disk_service(a.disk.id).get().status == types.DiskStatus.OK
                               for a in vms.vm_service(vm.id).disk_attachments_service().list()),
                   60, "the disk")
        # The agent's own domain XML, for virsh to start the very same VM.
        vms.vm_service(vm.id).start()
        wait_until(lambda: vms.vm_service(vm.id).get().status == types.VmStatus.UP, 60, "up")
        xml = libvirt.open("qemu:///system").lookupByUUIDString(vm.id).XMLDesc()
        xml_file = base / "domain.xml"
        xml_file.write_text(as_plain_domain(xml, "bench-virsh"))
        vms.vm_service(vm.id).stop()
        wait_until(lambda: vms.vm_service(vm.id).get().status == types.VmStatus.DOWN, 60, "down")
        api, virsh = [], []
        for _ in range(args.runs):
            api.append(time_api_start(conn, vm.id))
            virsh.append(time_virsh_create(xml_file, "bench-virsh"))
        api_median, virsh_median = statistics.median(api), statistics.median(virsh)
        print(f"runs: {args.runs} each, alternating")
        print(f"API start -> status up (oVirt SDK, HTTPS): median {api_median * 1000:7.1f} ms  "
              f"(min {min(api) * 1000:.1f}, max {max(api) * 1000:.1f})")
        print(f"virsh create -> running:                   median {virsh_median * 1000:7.1f} ms  "
              f"(min {min(virsh) * 1000:.1f}, max {max(virsh) * 1000:.1f})")
        print(f"ratio API / virsh: {api_median / virsh_median:.2f}")
        vms.vm_service(vm.id).remove()
    finally:
        conn.close()
        demo.stop()


if __name__ == "__main__":
    main()
