"""The network services serve provisioning profiles on real dnsmasq: a machine on the
provisioning network (a network namespace) gets its MAC's iPXE script and the profile's
node image over the engine's TFTP; a profile removed is served no more. (The boot HTTP
server runs in the engine's own namespace: its part is in the demo's network boot test.)"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import select

from overt.engine.db.database import Database
from overt.engine.db.tables import DataCenter, Network, ProvisioningProfile
from overt.engine.netsvc.plan import parse_plan
from overt.engine.netsvc.service import NetworkServices
from overt.engine.provisioning.images import NodeImages
from tests.integration.engine.netsvc.test_network_services import (
    GATEWAY_PORT,
    VM_MAC,
    wire,
)
from tests.support.netns_pair import Wire

pytestmark = pytest.mark.slow
__all__ = ["wire"]
FP = "AA:" * 31 + "BB"


@pytest_asyncio.fixture
async def services(db: Database, wire: Wire, tmp_path: Path) -> AsyncIterator[NetworkServices]:
    async with db.transaction() as session:
        dc = (await session.execute(select(DataCenter))).scalars().first()
        assert dc is not None
        session.add(Network(id=uuid.uuid4(), name="provnet", data_center_id=dc.id,
                            bridge="provnet", usages=["vm"]))
    for name in ("vmlinuz", "initrd.img"):  # the plan's own entry, for unknown machines
        (tmp_path / name).write_bytes(b"guest " + name.encode())
    image = tmp_path / "node-images" / "node-2026"
    image.mkdir(parents=True)
    (image / "vmlinuz").write_bytes(b"node kernel")
    (image / "initrd.img").write_bytes(b"node initramfs")
    plan = parse_plan({
        "domain": "overt.test", "upstream_dns": [], "refresh_s": 3600, "ntp": False,
        "pxe": {"kernel": str(tmp_path / "vmlinuz"), "initrd": str(tmp_path / "initrd.img"),
                "http_port": False},
        "networks": [{"name": "provnet", "interface": wire.engine_if,
                      "subnet": str(wire.subnet), "address": str(wire.host(1)), "pxe": True,
                      "dhcp_range": f"{wire.host(100)}-{wire.host(150)}",
                      "reserved_range": f"{wire.host(10)}-{wire.host(50)}"}],
    }, gateway_port=GATEWAY_PORT)
    svc = NetworkServices(db, plan, tmp_path / "netsvc",
                          wrap=["ip", "netns", "exec", wire.engine_ns],
                          node_images=NodeImages(tmp_path / "node-images"), ca_fingerprint=FP)
    await svc.start()
    yield svc
    await svc.stop()


def _get(wire: Wire, tmp_path: Path, name: str) -> str:
    """A boot file over TFTP from the machine's side, as its firmware fetches it."""
    out = tmp_path / "fetched"
    out.unlink(missing_ok=True)
    done = subprocess.run(["ip", "netns", "exec", wire.vm_ns, "busybox", "tftp", "-g", "-r",
                           name, "-l", str(out), str(wire.host(1))], capture_output=True,
                          text=True, timeout=30, check=False)
    return out.read_text() if done.returncode == 0 else "not found"


async def test_a_machine_gets_its_profiles_script_and_node_image(
        db: Database, services: NetworkServices, wire: Wire, tmp_path: Path) -> None:
    here = tmp_path  # where fetched files land
    assert _get(wire, here, "node-node-2026-vmlinuz") == "not found"  # no profile yet
    async with db.transaction() as session:
        session.add(ProvisioningProfile(name="rack1-node3", mac=VM_MAC, image="node-2026",
                                        kernel_args="intel_iommu=on"))
    await services.refresh()
    tftp = services.tftp_root
    script = _get(wire, here, f"mac-{VM_MAC.replace(':', '-')}.ipxe")
    assert f"overt.engine=https://${{next-server}}:{GATEWAY_PORT}" in script
    assert "overt.ca_fingerprint=" + "aa" * 31 + "bb" in script and "intel_iommu=on" in script
    assert "chain mac-${netX/mac:hexhyp}.ipxe" in _get(wire, here, "boot.ipxe")
    assert "kernel node-node-2026-vmlinuz " in script  # relative: over TFTP
    assert _get(wire, here, "node-node-2026-vmlinuz") == "node kernel"
    assert _get(wire, here, "node-node-2026-initrd.img") == "node initramfs"
    assert _get(wire, here, "vmlinuz") == "guest vmlinuz"  # unknown machines: the plan's

    async with db.transaction() as session:
        row = (await session.execute(select(ProvisioningProfile))).scalar_one()
        await session.delete(row)
    await services.refresh()
    assert not list(tftp.glob("mac-*.ipxe"))
    assert "chain" not in _get(wire, here, "boot.ipxe")
    assert _get(wire, here, "node-node-2026-vmlinuz") == "not found"
