"""An engine whose network services provision a lab's blank machines: the lab's management
network is `ovirtmgmt` with `pxe = true` in the engine's address plan (the lab's
`Topology.netsvc_plan`), so the engine's dnsmasq serves DHCP, TFTP and the iPXE scripts on
the lab's management bridge, and its boot HTTP server the node image built from this
machine's packages (`overt node-image build`). The engine is a real `overt engine`
process in the root namespace, where the lab's management bridge has the engine's
address; the nodes call its gateway there, and it calls them at their DHCP addresses.
(A process, not a thread of the test: a node under emulation or its guest's boot ROM may
be mid-request when the engine stops, and their connections then die with the process.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import ovirtsdk4 as sdk

from overt.engine.provisioning.boot import mac_script_name
from overt.lab.blank_machine import BlankMachine
from overt.lab.lab import Lab
from overt.lab.topology import LabSpec, Topology
from overt.nodeimage.builder import NodeImageFiles, build_node_image
from overt.system.daemons import ensure_libvirtd
from tests.support.demo import wait_until
from tests.support.ports import free_port
from tests.support.schema import TEST_PASSWORD

NODE_IMAGE = "node"
NODE_IMAGE_CACHE = Path("/var/cache/overt/node-image")  # `overt node-image build`'s


@dataclass
class EngineProcess:
    """`overt engine` with the lab's address plan, its API on 127.0.0.1."""

    data_dir: Path
    api_port: int
    process: subprocess.Popen[bytes]
    log: Path
    password: str = TEST_PASSWORD

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}/ovirt-engine/api"

    @property
    def ca_file(self) -> Path:
        return self.data_dir / "pki" / "ca.pem"

    def admin_connection(self) -> sdk.Connection:
        """The official SDK signed in as admin@internal (close it after use)."""
        return sdk.Connection(url=self.url, username="admin@internal", password=self.password,
                              ca_file=str(self.ca_file), timeout=60)

    def wait_for_api(self, timeout: float = 120) -> None:
        def answers() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"the engine exited:\n{self.output()[-3000:]}")
            try:
                conn = self.admin_connection()
                conn.test(raise_exception=True)
                conn.close()
                return True
            except sdk.Error:
                return False
        wait_until(lambda: self.ca_file.exists() and answers(), timeout, "the API to answer",
                   every=0.5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_engine_process(base: Path, plan: Path, public_address: str) -> EngineProcess:
    data_dir = base / "engine"
    api_port = free_port()
    argv = [sys.executable, "-m", "overt", "engine", "--data-dir", str(data_dir),
            "--port", str(api_port), "--public-address", public_address,
            "--netsvc-file", str(plan)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OVERT_ADMIN_PASSWORD": TEST_PASSWORD,
           "OVERT_GATEWAY_PORT": str(free_port()), "OVERT_IMAGEIO_PORT": "0"}
    log = base / "engine.log"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    engine = EngineProcess(data_dir, api_port, process, log)
    try:
        engine.wait_for_api()
    except BaseException:
        engine.stop()
        raise
    return engine


@dataclass
class PxeSite:
    lab: Lab
    engine: EngineProcess
    image: NodeImageFiles
    base: Path
    machines: list[BlankMachine] = field(default_factory=list)

    def blank_machine(self, name: str, mac: str) -> BlankMachine:
        """A blank machine on the lab's management network (powered off until
        `power_on`); the site powers it off at its end, after the engine has stopped."""
        machine = self.lab.blank_machine(name, mac, index=len(self.machines) + 1)
        self.machines.append(machine)
        return machine

    @property
    def netsvc_dir(self) -> Path:
        return self.engine.data_dir / "netsvc"

    @property
    def tftp_root(self) -> Path:
        return self.netsvc_dir / "tftp"

    def dnsmasq_log(self) -> str:
        """What the engine's dnsmasq on the management network logged (DHCP, TFTP)."""
        with contextlib.suppress(FileNotFoundError):
            return (self.netsvc_dir / "ovirtmgmt" / "dnsmasq.log").read_text(errors="replace")
        return ""

    def profile_served(self, mac: str) -> bool:
        return (self.tftp_root / mac_script_name(mac)).exists()

    def add_profile(self, name: str, mac: str, image: str = NODE_IMAGE) -> dict[str, Any]:
        """A provisioning profile through the API (`/provisioningprofiles`, Overt's own: the
        official SDK has no such service)."""
        reply = httpx.post(
            f"{self.engine.url}/provisioningprofiles",
            json={"name": name, "mac": {"address": mac}, "image": image},
            auth=("admin@internal", self.engine.password),
            headers={"Accept": "application/json", "Version": "4"},
            verify=ssl.create_default_context(cafile=str(self.engine.ca_file)), timeout=30)
        assert reply.status_code == 201, reply.text
        profile: dict[str, Any] = reply.json()
        return profile


@contextlib.contextmanager
def pxe_site(spec: LabSpec) -> Iterator[PxeSite]:
    """The lab up, the node image built, the engine serving it; all gone afterwards."""
    ensure_libvirtd()  # its QEMU capability cache seeds the lab nodes'
    lab = Lab(Topology(spec))
    lab.up()
    base = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="overt-pxe-site-"))
    base.chmod(0o755)
    engine: EngineProcess | None = None
    site: PxeSite | None = None
    try:
        data_dir = base / "engine"
        image = build_node_image(data_dir / "node-images" / NODE_IMAGE, cache=NODE_IMAGE_CACHE)
        plan = base / "netsvc.toml"
        plan.write_text(lab.topology.netsvc_plan(boot_http_port=free_port(), refresh_s=1))
        engine = start_engine_process(base, plan, str(lab.topology.engine_address()))
        site = PxeSite(lab, engine, image, base)
        yield site
    finally:
        if engine is not None:
            engine.stop()
            print(f"==== engine.log\n{engine.output()[-5000:]}")
        for machine in site.machines if site is not None else []:
            machine.power_off()
        lab.down()
        shutil.rmtree(base, ignore_errors=True)
