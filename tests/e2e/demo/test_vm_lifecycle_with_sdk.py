"""The official oVirt SDK against `overt demo`: a real VM from creation to removal."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from overt.config import EngineSettings
from overt.engine.db.database import Database
from overt.engine.netsvc.plan import parse_plan
from overt.engine.netsvc.service import NetworkServices
from overt.engine.queries.vm_spec import CONSOLE_LOG_DIR
from overt.lab import netns
from overt.lab.guest import BOOT_MARKER
from tests.support.demo import Demo, wait_until
from tests.support.engine import free_port

pytestmark = [pytest.mark.vm, pytest.mark.slow]
MIB = 2**20


def status_of(conn: sdk.Connection, vm_id: str) -> types.VmStatus:
    return conn.system_service().vms_service().vm_service(vm_id).get().status


def test_the_local_host_is_up(demo: Demo) -> None:
    conn = demo.connect()
    try:
        hosts = conn.system_service().hosts_service().list()
        assert [(h.name, h.status) for h in hosts] == [("local", types.HostStatus.UP)]
        assert hosts[0].cluster.id == conn.system_service().clusters_service().list(
            search="name=Default")[0].id
        domains = conn.system_service().storage_domains_service().list()
        assert [d.name for d in domains] == ["local"]
        templates = {t.name: t for t in conn.system_service().templates_service().list()}
        assert templates["test-guest"].status == types.TemplateStatus.OK
    finally:
        conn.close()


def test_a_vm_runs_boots_shuts_down_and_is_removed(demo: Demo) -> None:
    conn = demo.connect()
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name="e2e-web", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="test-guest"), memory=256 * MIB))
    try:
        service = vms.vm_service(vm.id)
        attachments = service.disk_attachments_service().list()
        assert len(attachments) == 1 and attachments[0].bootable
        disk = conn.follow_link(attachments[0].disk)
        wait_until(lambda: conn.system_service().disks_service().disk_service(disk.id).get()
                   .status == types.DiskStatus.OK, 60, "the VM's disk to be created")
        profile = next(p for p in conn.system_service().vnic_profiles_service().list()
                       if p.name == "ovirtmgmt")
        nic = service.nics_service().add(types.Nic(name="nic1",
                                                   vnic_profile=types.VnicProfile(id=profile.id)))

        service.start()
        wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.UP, 90, "the VM to be up")
        running = service.get()
        assert running.host.id == conn.system_service().hosts_service().list()[0].id
        serial = Path(CONSOLE_LOG_DIR) / f"{vm.id}.log"
        wait_until(lambda: serial.exists() and BOOT_MARKER in serial.read_text(), 30,
                   "the guest's boot marker")
        domain_xml = libvirt.open("qemu:///system").lookupByUUIDString(vm.id).XMLDesc()
        assert nic.mac.address in domain_xml

        service.suspend()
        wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.SUSPENDED, 90,
                   "the VM to be suspended")
        memory = next(demo.images_dir.rglob(f"{vm.id}.memory"))
        assert memory.stat().st_size > 1 << 20
        with pytest.raises(libvirt.libvirtError):
            libvirt.open("qemu:///system").lookupByUUIDString(vm.id)
        service.start()
        wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.UP, 90, "the VM to resume")
        # The node deletes the image once libvirt's restore has returned, which may be just
        # after the VM's own event showed it up.
        wait_until(lambda: not memory.exists(), 30, "the saved memory image to be deleted")

        service.shutdown()
        wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.DOWN, 90, "the VM to be down")
        assert "ACPI power button pressed" in serial.read_text()

        image = next(demo.images_dir.rglob(f"{disk.id}.*"))
        service.remove()
        wait_until(lambda: not vms.list(search="name=e2e-web"), 60, "the VM to be removed")
        assert not image.exists()
        assert disk.id not in [d.id for d in conn.system_service().disks_service().list()]
    finally:
        demo.destroy_leftover_domains([vm.id])
        conn.close()


def test_two_starts_for_the_last_room_on_the_host_one_runs_one_is_refused(demo: Demo) -> None:
    """The host's room is cut to fit one of two small VMs (the cluster's over-commit at 1 %);
    both are started at the same moment through the API: one runs under QEMU, the other is
    refused with the scheduler's reason and stays down."""
    conn = demo.connect()
    system = conn.system_service()
    cluster = system.clusters_service().list(search="name=Default")[0]
    cluster_service = system.clusters_service().cluster_service(cluster.id)
    room_mib = system.hosts_service().list()[0].memory // MIB // 100
    vms = system.vms_service()
    pair = [vms.add(types.Vm(name=f"e2e-room-{n}", cluster=types.Cluster(name="Default"),
                             template=types.Template(name="Blank"),
                             memory=max(16, room_mib * 2 // 3) * MIB)) for n in (1, 2)]

    def start(vm: types.Vm) -> str:
        try:
            vms.vm_service(vm.id).start()
        except sdk.Error as error:
            return str(error)
        return "started"
    try:
        cluster_service.update(types.Cluster(memory_policy=types.MemoryPolicy(
            over_commit=types.MemoryOverCommit(percent=1))))
        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(start, pair))
        assert sorted(o == "started" for o in outcomes) == [False, True], outcomes
        winner, loser = (pair[0], pair[1]) if outcomes[0] == "started" else (pair[1], pair[0])
        refusal = next(o for o in outcomes if o != "started")
        assert "409" in refusal and "There is no host that satisfies" in refusal
        assert "local: not enough memory" in refusal
        wait_until(lambda: status_of(conn, winner.id) == types.VmStatus.UP, 90, "the VM to be up")
        libvirt.open("qemu:///system").lookupByUUIDString(winner.id)  # it runs under QEMU
        assert status_of(conn, loser.id) == types.VmStatus.DOWN
        with pytest.raises(libvirt.libvirtError):
            libvirt.open("qemu:///system").lookupByUUIDString(loser.id)
        vms.vm_service(winner.id).stop()
        wait_until(lambda: status_of(conn, winner.id) == types.VmStatus.DOWN, 60,
                   "the VM to be down")
    finally:
        cluster_service.update(types.Cluster(memory_policy=types.MemoryPolicy(
            over_commit=types.MemoryOverCommit(percent=cluster.memory_policy.over_commit.percent))))
        demo.destroy_leftover_domains([vm.id for vm in pair])
        for vm in pair:
            with contextlib.suppress(sdk.Error):  # a VM still up after a failure stays
                vms.vm_service(vm.id).remove()
        conn.close()


def test_events_and_jobs_tell_the_story(demo: Demo) -> None:
    conn = demo.connect()
    try:
        descriptions = [e.description for e in conn.system_service().events_service().list()]
        assert any("Host local is up" in d for d in descriptions)
        jobs = conn.system_service().jobs_service().list()
        assert any(j.description == "Adding host local" and j.status == types.JobStatus.FINISHED
                   for j in jobs)
    finally:
        conn.close()


CLOUD_INIT_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP34SiWpX97gj29sZsH/6YdxLfI36Wj6vbRXY/"
                  "OxvEQz alice@laptop")


# On the embedded database and direct transport only: the drive's files travel inside the
# start command's VM spec, which the other variants carry already for every start.
@pytest.mark.parametrize("demo", ["sqlite"], indirect=True)
def test_a_vm_started_with_cloud_init_comes_up_with_its_host_name_user_and_key(
        demo: Demo) -> None:
    """oVirt's run once with cloud-init: the node attaches a cidata cdrom (QEMU's alone,
    read-only) for the run and removes it when the VM stops; the test guest's NoCloud
    reader shows from inside the guest what it applied."""
    conn = demo.connect()
    vms = conn.system_service().vms_service()
    vm = vms.add(types.Vm(name="e2e-cinit", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="test-guest"), memory=256 * MIB))
    password = "N0t-in-any-log"
    try:
        service = vms.vm_service(vm.id)
        disk = conn.follow_link(service.disk_attachments_service().list()[0].disk)
        wait_until(lambda: conn.system_service().disks_service().disk_service(disk.id).get()
                   .status == types.DiskStatus.OK, 60, "the VM's disk to be created")
        service.start(use_cloud_init=True, vm=types.Vm(initialization=types.Initialization(
            host_name="cinit-web1", user_name="alice", authorized_ssh_keys=CLOUD_INIT_KEY,
            root_password=password)))
        wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.UP, 90, "the VM to be up")

        drive = Path("/var/lib/overt/config-drives") / f"{vm.id}.iso"
        assert drive.stat().st_mode & 0o777 == 0o600
        domain = libvirt.open("qemu:///system").lookupByUUIDString(vm.id).XMLDesc()
        assert f"<source file='{drive}'" in domain and "<readonly/>" in domain
        serial = Path(CONSOLE_LOG_DIR) / f"{vm.id}.log"
        wait_until(lambda: serial.exists() and "nocloud: done" in serial.read_text(), 40,
                   "the guest to read its cloud-init drive")
        console = serial.read_text()
        assert "overt-test-guest: nocloud: hostname cinit-web1" in console
        assert "overt-test-guest: nocloud: user alice" in console
        assert ("overt-test-guest: nocloud: /home/alice/.ssh/authorized_keys: "
                f"{CLOUD_INIT_KEY}") in console
        assert service.get().initialization is None  # run once: not kept on the VM

        service.stop()
        wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.DOWN, 60,
                   "the VM to be down")
        wait_until(lambda: not drive.exists(), 30, "the cloud-init drive to be removed")
        logs = demo.log.read_text(errors="replace")
        node_log = demo.data_dir / "node.log"
        if node_log.exists():
            logs += node_log.read_text(errors="replace")
        assert "e2e-cinit" in logs  # the logs speak of this VM's run...
        assert password not in logs  # ...and never of its password
    finally:
        demo.destroy_leftover_domains([vm.id])
        with contextlib.suppress(sdk.Error):
            vms.vm_service(vm.id).remove()
def _backing_of(image: Path) -> str | None:
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", str(image)], check=True,
                         capture_output=True, text=True).stdout
    backing: str | None = json.loads(out).get("full-backing-filename")
    return backing


# One database is enough here: the copies are the node's; the demo of the sqlite run is shared.
@pytest.mark.parametrize("demo", ["sqlite"], indirect=True)
def test_a_template_from_a_vm_a_thin_vm_and_a_clone_that_boots(demo: Demo) -> None:
    """Through the SDK: a template made from a down VM (its disk copied, flattened; its
    cloud-init kept), a thin VM of that template (a qcow2 layer over the template's disk; the
    template's cloud-init) and a clone of the thin VM (a disk of its own), which boots the
    test guest under QEMU and comes up configured: the guest's NoCloud reader shows the
    host name, user and key from inside, and the drive carries the custom script."""
    conn = demo.connect()
    system = conn.system_service()
    vms, templates = system.vms_service(), system.templates_service()
    disks = system.disks_service()
    made: list[str] = []

    def disk_of(vm_id: str) -> types.Disk:
        [attachment] = vms.vm_service(vm_id).disk_attachments_service().list()
        return conn.follow_link(attachment.disk)

    def ready(disk_id: str) -> bool:
        return disks.disk_service(disk_id).get().status == types.DiskStatus.OK

    def image(disk_id: str) -> Path:
        return next(demo.images_dir.rglob(f"{disk_id}.*"))
    template = None
    try:
        script = "runcmd:\n  - [touch, /tmp/configured-from-the-template]"
        source = vms.add(types.Vm(
            name="e2e-tpl-src", cluster=types.Cluster(name="Default"),
            template=types.Template(name="test-guest"), memory=256 * MIB,
            initialization=types.Initialization(
                host_name="tpl-web1", user_name="carol", authorized_ssh_keys=CLOUD_INIT_KEY,
                custom_script=script)))
        made.append(source.id)
        source_disk = disk_of(source.id)
        wait_until(lambda: ready(source_disk.id), 60, "the source VM's disk")
        template = templates.add(types.Template(name="e2e-tpl", vm=types.Vm(id=source.id)))
        wait_until(lambda: templates.template_service(template.id).get().status
                   == types.TemplateStatus.OK, 120, "the template to be ok")
        assert templates.template_service(template.id).get().initialization.host_name == \
            "tpl-web1"
        [attachment] = templates.template_service(template.id).disk_attachments_service().list()
        assert attachment.bootable
        template_image = image(attachment.disk.id)
        assert _backing_of(template_image) is None and _backing_of(image(source_disk.id))

        thin = vms.add(types.Vm(name="e2e-tpl-thin", cluster=types.Cluster(name="Default"),
                                template=types.Template(id=template.id)))
        made.append(thin.id)
        assert vms.vm_service(thin.id).get().initialization.user_name == "carol"
        thin_disk = disk_of(thin.id)
        wait_until(lambda: ready(thin_disk.id), 60, "the thin VM's disk")
        assert Path(str(_backing_of(image(thin_disk.id)))).resolve() == template_image.resolve()

        vms.vm_service(thin.id).clone(vm=types.Vm(name="e2e-tpl-clone"))
        clone = wait_until(lambda: next(iter(vms.list(search="name=e2e-tpl-clone")), None), 30,
                           "the clone")
        made.append(clone.id)
        clone_disk = disk_of(clone.id)
        wait_until(lambda: ready(clone_disk.id), 120, "the clone's disk")
        assert _backing_of(image(clone_disk.id)) is None

        service = vms.vm_service(clone.id)
        service.start()
        wait_until(lambda: status_of(conn, clone.id) == types.VmStatus.UP, 90, "the clone up")
        serial = Path(CONSOLE_LOG_DIR) / f"{clone.id}.log"
        wait_until(lambda: serial.exists() and BOOT_MARKER in serial.read_text(), 30,
                   "the clone's boot marker")
        drive = Path("/var/lib/overt/config-drives") / f"{clone.id}.iso"
        assert script.encode() in drive.read_bytes()  # the user-data, as given
        wait_until(lambda: "nocloud: done" in serial.read_text(), 40,
                   "the guest to read its cloud-init drive")
        console = serial.read_text()
        assert "overt-test-guest: nocloud: hostname tpl-web1" in console
        assert "overt-test-guest: nocloud: user carol" in console
        assert ("overt-test-guest: nocloud: /home/carol/.ssh/authorized_keys: "
                f"{CLOUD_INIT_KEY}") in console
        service.stop()
        wait_until(lambda: status_of(conn, clone.id) == types.VmStatus.DOWN, 60, "the clone down")
    finally:
        demo.destroy_leftover_domains(made)
        for vm_id in made:
            with contextlib.suppress(sdk.Error):
                vms.vm_service(vm_id).remove()
        if template is not None:
            wait_until(lambda: not vms.list(search="name=e2e-tpl-thin"), 60, "the thin VM gone")
            templates.template_service(template.id).remove()
        conn.close()


MACHINE_ID = "0123456789abcdef0123456789abcdef"
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"


def _guestfish(images: list[Path], script: str, *, read_only: bool) -> str:
    """guestfish on a disk image, libguestfs's appliance under TCG (KVM is unusable here);
    the script's lines are guestfish commands."""
    env = {**os.environ, "LIBGUESTFS_BACKEND": "direct", "LIBGUESTFS_BACKEND_SETTINGS":
           "force_tcg"}
    argv = ["guestfish", *(["--ro"] if read_only else [])]
    for image in images:
        argv += ["-a", str(image)]
    return subprocess.run(argv, input=script, env=env, check=True, capture_output=True,
                          text=True, timeout=300).stdout


def _give_a_linux_identity(image: Path, scratch: Path) -> None:
    """The test guest's disk holds only its boot files: give it what virt-sysprep looks for
    (an /etc with fstab and os-release, a /bin) and an identity to remove: a machine-id and
    an SSH host key."""
    files = {"fstab": "/dev/vda1 / ext4 defaults 0 1\n", "machine-id": f"{MACHINE_ID}\n",
             "os-release": 'ID=debian\nVERSION_ID="12"\nNAME="Debian GNU/Linux"\n',
             "host-key": "-----BEGIN OPENSSH PRIVATE KEY-----\ntest\n"}
    for name, text in files.items():
        (scratch / name).write_text(text)
    _guestfish([image], "\n".join([
        "run", "mount /dev/sda1 /", "mkdir-p /bin", "mkdir-p /etc/ssh",
        f"upload {scratch}/fstab /etc/fstab", f"upload {scratch}/machine-id /etc/machine-id",
        f"upload {scratch}/os-release /etc/os-release",
        f"upload {scratch}/host-key {HOST_KEY}", ""]), read_only=False)


@pytest.mark.parametrize("demo", ["sqlite"], indirect=True)
def test_a_sealed_template_loses_the_vms_identity_and_its_vms_boot(
        demo: Demo, tmp_path: Path) -> None:
    """Through the SDK: `templates.add(..., seal=True)` from a down VM whose disk has a
    machine-id and an SSH host key: the job's "Sealing template" step runs virt-sysprep on
    the template's copy (the machine-id is emptied, the host key gone; the VM's own disk
    keeps both), and a VM made from the sealed template boots."""
    conn = demo.connect()
    system = conn.system_service()
    vms, templates = system.vms_service(), system.templates_service()
    disks = system.disks_service()
    made: list[str] = []

    def image(disk_id: str) -> Path:
        return next(demo.images_dir.rglob(f"{disk_id}.*"))

    def ready(disk_id: str) -> bool:
        return disks.disk_service(disk_id).get().status == types.DiskStatus.OK
    template = None
    try:
        source = vms.add(types.Vm(name="e2e-seal-src", cluster=types.Cluster(name="Default"),
                                  template=types.Template(name="test-guest"), memory=256 * MIB))
        made.append(source.id)
        [attachment] = vms.vm_service(source.id).disk_attachments_service().list()
        wait_until(lambda: ready(attachment.disk.id), 60, "the source VM's disk")
        source_image = image(attachment.disk.id)
        _give_a_linux_identity(source_image, tmp_path)

        template = templates.add(types.Template(name="e2e-sealed", vm=types.Vm(id=source.id)),
                                 seal=True)
        wait_until(lambda: templates.template_service(template.id).get().status
                   == types.TemplateStatus.OK, 300, "the sealed template to be ok")
        job = next(j for j in system.jobs_service().list()
                   if j.description == "Creating template e2e-sealed from VM e2e-seal-src")
        steps = [s.description for s in
                 system.jobs_service().job_service(job.id).steps_service().list()]
        assert "Sealing template e2e-sealed" in steps
        [sealed] = templates.template_service(template.id).disk_attachments_service().list()
        # Both disks in one appliance boot: the template's (sda), then the VM's (sdb).
        check = "".join(f"mount-ro /dev/{d}1 /\ncat /etc/machine-id\nexists {HOST_KEY}\n"
                        "umount /\n" for d in ("sda", "sdb"))
        seen = _guestfish([image(sealed.disk.id), source_image], f"run\n{check}",
                          read_only=True).split()
        assert seen == ["false", MACHINE_ID, "true"]

        vm = vms.add(types.Vm(name="e2e-sealed-vm", cluster=types.Cluster(name="Default"),
                              template=types.Template(id=template.id)))
        made.append(vm.id)
        [vm_disk] = vms.vm_service(vm.id).disk_attachments_service().list()
        wait_until(lambda: ready(vm_disk.disk.id), 60, "the new VM's disk")
        service = vms.vm_service(vm.id)
        service.start()
        wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.UP, 90, "the VM up")
        serial = Path(CONSOLE_LOG_DIR) / f"{vm.id}.log"
        wait_until(lambda: serial.exists() and BOOT_MARKER in serial.read_text(), 30,
                   "the boot marker of the sealed template's VM")
        service.stop()
        wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.DOWN, 60, "the VM down")
    finally:
        demo.destroy_leftover_domains(made)
        for vm_id in made:
            with contextlib.suppress(sdk.Error):
                vms.vm_service(vm_id).remove()
        if template is not None:
            wait_until(lambda: not vms.list(search="name=e2e-sealed-vm"), 60, "the VM gone")
            with contextlib.suppress(sdk.Error):
                templates.template_service(template.id).remove()
        conn.close()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_disk_uploaded_with_the_sdk_flow_downloads_back_identical(demo: Demo,
                                                                     tmp_path: Path) -> None:
    """upload_disk.py's and download_disk.py's flow (`ovirt_imageio.client`) on `overt demo`:
    a new disk made by the node on the local domain, the image written into its volume."""
    from ovirt_imageio import client

    source, back = tmp_path / "source.qcow2", tmp_path / "back.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(source), "64M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x6b 2M 3M", str(source)],
                   check=True, capture_output=True)
    conn = demo.connect()
    system = conn.system_service()
    disks, transfers = system.disks_service(), system.image_transfers_service()
    disk = disks.add(types.Disk(name="e2e-upload", format=types.DiskFormat.COW,
                                provisioned_size=64 * MIB, sparse=True,
                                storage_domains=[types.StorageDomain(name="local")]))
    try:
        wait_until(lambda: disks.disk_service(disk.id).get().status == types.DiskStatus.OK, 60,
                   "the disk to be created")
        for direction, move in (
                (types.ImageTransferDirection.UPLOAD,
                 lambda url: client.upload(str(source), url, str(demo.ca_file))),
                (types.ImageTransferDirection.DOWNLOAD,
                 lambda url: client.download(url, str(back), str(demo.ca_file), fmt="qcow2"))):
            transfer = transfers.add(types.ImageTransfer(disk=types.Disk(id=disk.id),
                                                         direction=direction,
                                                         format=types.DiskFormat.RAW))
            assert disks.disk_service(disk.id).get().status == types.DiskStatus.LOCKED
            move(transfer.transfer_url)
            service = transfers.image_transfer_service(transfer.id)
            service.finalize()
            wait_until(lambda s=service: s.get().phase
                       == types.ImageTransferPhase.FINISHED_SUCCESS, 60, "the transfer to end")
        compared = subprocess.run(["qemu-img", "compare", str(source), str(back)],
                                  capture_output=True, text=True, check=False)
        assert compared.returncode == 0, compared.stdout + compared.stderr
        assert disks.disk_service(disk.id).get().status == types.DiskStatus.OK
    finally:
        disks.disk_service(disk.id).remove()
        conn.close()


@contextlib.contextmanager
def _network_services_on_a_bridge(demo: Demo, token: str) -> Iterator[tuple[str, Path]]:
    """A bridge of this test's own (the network's name is the bridge's), served by the
    engine's network services (dnsmasq with DHCP and TFTP) with the test guest as the boot
    entry: the `netsvc` part, run here against the demo's database. Yields the bridge and
    the network services' directory."""
    bridge = f"ovpxe{secrets.token_hex(2)}"
    subnet = ipaddress.IPv4Network(f"10.233.{secrets.randbelow(250) + 1}.0/24")
    netns.ensure_bridge(bridge)
    netns.ensure_address(bridge, ipaddress.IPv4Interface(f"{subnet.network_address + 1}/24"))
    state = demo.data_dir.parent / "netsvc-pxe"
    plan = parse_plan({
        "domain": "overt.test", "upstream_dns": [], "ntp": False, "refresh_s": 1,
        "pxe": {"cmdline": f"console=ttyS0,115200 panic=-1 loglevel=6 overt.pxe={token}",
                "http_port": free_port()},
        "networks": [{"name": bridge, "subnet": str(subnet),
                      "address": str(subnet.network_address + 1),
                      "dhcp_range": f"{subnet.network_address + 100}-{subnet.network_address + 150}",
                      "reserved_range": f"{subnet.network_address + 10}-"
                                        f"{subnet.network_address + 50}", "pxe": True}]})
    db = Database(EngineSettings(data_dir=demo.data_dir, db=demo.db).database_url())
    services = NetworkServices(db, plan, state)
    loop = asyncio.new_event_loop()

    async def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):  # how the test stops them
            await services.run()
    task = loop.create_task(serve())
    thread = threading.Thread(target=loop.run_until_complete, args=(task,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: task.done() or services.dnsmasq, 120, "the network services to start")
        if task.done():
            raise AssertionError(f"the network services stopped: {task.exception()!r}")
        yield bridge, state
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(timeout=30)
        loop.run_until_complete(db.dispose())
        loop.close()
        netns.delete_links([bridge])


# On the embedded database only: the network services read the database the same way on
# every variant, and the boot is the node's and QEMU's business.
@pytest.mark.parametrize("demo", ["sqlite"], indirect=True)
def test_a_vm_boots_from_the_network_into_the_image_the_engine_serves(demo: Demo) -> None:
    """`os.boot.devices` = [network, hd] on a VM with no disk: QEMU's iPXE boot ROM gets its
    address and `boot.ipxe` from the engine's dnsmasq, loads the test guest's kernel and
    initramfs over TFTP, and the guest's console shows the command line only the engine's
    boot entry gives (a token of this test's own)."""
    token = secrets.token_hex(4)
    conn = demo.connect()
    system = conn.system_service()
    vms = system.vms_service()
    vm: types.Vm | None = None
    network: types.Network | None = None
    with _network_services_on_a_bridge(demo, token) as (bridge, state):
        try:
            network = system.networks_service().add(types.Network(
                name=bridge, data_center=types.DataCenter(name="Default")))
            cluster = system.clusters_service().list(search="name=Default")[0]
            system.clusters_service().cluster_service(cluster.id).networks_service().add(
                types.Network(id=network.id, required=False))
            profile = next(p for p in system.vnic_profiles_service().list() if p.name == bridge)
            vm = vms.add(types.Vm(
                name=f"e2e-pxe-{token}", cluster=types.Cluster(name="Default"),
                template=types.Template(name="Blank"), memory=256 * MIB,
                os=types.OperatingSystem(boot=types.Boot(
                    devices=[types.BootDevice.NETWORK, types.BootDevice.HD]))))
            service = vms.vm_service(vm.id)
            assert [d for d in service.get().os.boot.devices] == [
                types.BootDevice.NETWORK, types.BootDevice.HD]
            assert service.disk_attachments_service().list() == []
            nic = service.nics_service().add(types.Nic(
                name="nic1", vnic_profile=types.VnicProfile(id=profile.id)))
            dhcp_hosts = state / bridge / "dhcp-hosts"
            wait_until(lambda: nic.mac.address in dhcp_hosts.read_text(), 30,
                       "the network services to publish the VM's NIC")

            service.start()
            wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.UP, 90,
                       "the VM to be up")
            serial = Path(CONSOLE_LOG_DIR) / f"{vm.id}.log"
            wait_until(lambda: serial.exists() and BOOT_MARKER in serial.read_text(), 120,
                       "the network-booted guest's boot marker")
            console = serial.read_text(errors="replace")
            assert f"overt.pxe={token}" in console  # the kernel echoes its command line
            leases = (state / bridge / "leases").read_text()
            assert nic.mac.address in leases  # its address came from the engine's dnsmasq
            tftp_log = (state / bridge / "dnsmasq.log").read_text(errors="replace")
            assert "boot.ipxe" in tftp_log  # the script by TFTP; the files by HTTP

            service.stop()
            wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.DOWN, 60,
                       "the VM to be down")
        finally:
            if vm is not None:
                demo.destroy_leftover_domains([vm.id])
                with contextlib.suppress(sdk.Error):
                    wait_until(lambda: status_of(conn, vm.id) == types.VmStatus.DOWN, 60,
                               "the VM to be down")
                    vms.vm_service(vm.id).remove()
                    wait_until(lambda: not vms.list(search=f"name=e2e-pxe-{token}"), 60,
                               "the VM to be removed")
            if network is not None:
                with contextlib.suppress(sdk.Error):
                    system.networks_service().network_service(network.id).remove()
            conn.close()
