"""Ten VMs started at once through the engine's API until all are `up`, against ten
parallel `virsh create` of the same domains.

Runs `overt demo` in a child process on free ports; creates ten VMs from the test-guest
template; starts each once to take the agent's own domain XML (renamed, without
Overt's metadata, each on its VM's own disk); then, alternately: starts the ten through
the API from ten threads, each with an SDK connection of its own (as ten oVirt SDK
clients would: an `ovirtsdk4.Connection` is not for use from several threads at once,
and ten `virsh` processes are ten libvirt connections too), waits until the API lists
all ten `up` (one listing every 100 ms: ten clients polling every 10 ms would load the
engine more than the starts do) and takes the time the last of them came up from the
VMs' own `start_time` (set in the transaction that saw each VM up, to the millisecond);
stops them; and runs ten `virsh create` at once and times until all have returned,
destroys them. Prints medians and the ratio.
Usage (root, after scripts/setup): .venv/bin/python -m bench.engine_vm_burst [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
from tests.support.demo import wait_until

from bench.engine_vm_start import as_plain_domain, start_demo

MIB = 2**20


def all_in(conn: sdk.Connection, ids: list[str], status: types.VmStatus) -> bool:
    vms = conn.system_service().vms_service()
    return all(vms.vm_service(vm_id).get().status == status for vm_id in ids)


def time_api_burst(conn: sdk.Connection, clients: list[sdk.Connection], ids: list[str]
                   ) -> float:
    go = threading.Barrier(len(ids) + 1)

    def start(client: sdk.Connection, vm_id: str) -> None:
        vm = client.system_service().vms_service().vm_service(vm_id)
        go.wait()
        vm.start()

    vms = conn.system_service().vms_service()
    with ThreadPoolExecutor(len(ids)) as pool:
        started = [pool.submit(start, client, vm_id)
                   for client, vm_id in zip(clients, ids, strict=True)]
        go.wait()
        began = time.time()
        for each in started:
            each.result()
    while True:
        listed = {vm.id: vm for vm in vms.list(search="name=bench-burst-*")}
        if all(listed[vm_id].status == types.VmStatus.UP for vm_id in ids):
            break
        time.sleep(0.1)
    elapsed = max(listed[vm_id].start_time.timestamp() for vm_id in ids) - began
    for vm_id in ids:
        vms.vm_service(vm_id).stop()
    wait_until(lambda: all_in(conn, ids, types.VmStatus.DOWN), 120, "the VMs to stop")
    return elapsed


def time_virsh_burst(files: list[Path], names: list[str]) -> float:
    start = time.perf_counter()
    running = [subprocess.Popen(["virsh", "-q", "create", str(f)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE) for f in files]
    failures = [p.communicate()[1] for p in running if p.wait() != 0]
    elapsed = time.perf_counter() - start
    for name in names:
        subprocess.run(["virsh", "-q", "destroy", name], check=False, capture_output=True)
    if failures:
        raise RuntimeError(f"virsh create failed: {failures[0]!r}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--vms", type=int, default=10)
    args = parser.parse_args()
    base, demo = start_demo()
    conn = demo.connect()
    ids: list[str] = []
    try:
        vms = conn.system_service().vms_service()
        ids = [vms.add(types.Vm(name=f"bench-burst-{n}", cluster=types.Cluster(name="Default"),
                                template=types.Template(name="test-guest"), memory=256 * MIB)).id
               for n in range(args.vms)]
        disks = conn.system_service().disks_service()
        wait_until(lambda: all(disks.disk_service(a.disk.id).get().status == types.DiskStatus.OK
                               for vm_id in ids
                               for a in vms.vm_service(vm_id).disk_attachments_service().list()),
                   120, "the disks")
        for vm_id in ids:
            vms.vm_service(vm_id).start()
        wait_until(lambda: all_in(conn, ids, types.VmStatus.UP), 120, "up")
        hypervisor = libvirt.open("qemu:///system")
        names = [f"bench-virsh-{n}" for n in range(len(ids))]
        files = []
        for vm_id, name in zip(ids, names, strict=True):
            files.append(base / f"{name}.xml")
            files[-1].write_text(as_plain_domain(hypervisor.lookupByUUIDString(vm_id).XMLDesc(),
                                                 name))
        for vm_id in ids:
            vms.vm_service(vm_id).stop()
        wait_until(lambda: all_in(conn, ids, types.VmStatus.DOWN), 120, "down")
        clients = [demo.connect() for _ in ids]
        for client in clients:
            client.authenticate()  # signed in before the clock runs, as a client would be
        api, virsh = [], []
        for _ in range(args.runs):
            api.append(time_api_burst(conn, clients, ids))
            virsh.append(time_virsh_burst(files, names))
        api_median, virsh_median = statistics.median(api), statistics.median(virsh)
        print(f"{len(ids)} VMs at once, runs: {args.runs} each, alternating")
        print(f"API start x{len(ids)} -> all up: median {api_median:6.2f} s  "
              f"(min {min(api):.2f}, max {max(api):.2f})")
        print(f"virsh create x{len(ids)} -> all running: median {virsh_median:6.2f} s  "
              f"(min {min(virsh):.2f}, max {max(virsh):.2f})")
        print(f"ratio API / virsh: {api_median / virsh_median:.2f}")
        for client in clients:
            client.close()
    finally:
        for vm_id in ids:
            try:
                conn.system_service().vms_service().vm_service(vm_id).remove()
            except sdk.Error as error:
                print(f"could not remove VM {vm_id}: {error}")
        conn.close()
        demo.stop()


if __name__ == "__main__":
    main()
