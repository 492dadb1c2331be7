"""`overt vm`: list, create, start, stop and remove VMs through the engine's API."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, console, human_bytes, parse_size, progress, table
from overt.cli.vm_provisioning import CDROM_ID, initialization, iso_id, parse_boot

app = typer.Typer(help="Virtual machines.", no_args_is_help=True)


def _wait(client: ApiClient, reply: dict[str, Any], what: str, correlation_id: str) -> None:
    job = reply.get("job")
    if not job:
        return
    with progress(what) as on_step:
        result = client.follow_job(job["href"], on_step)
    if result["status"] != "finished":
        raise ApiError(client.failure_of(correlation_id))
    console.print(f"[green]✓[/] {what}")


@app.command("list")
@reports_errors
def list_vms(url: Url = None, user: User = None, password_file: PasswordFile = None,
             ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List VMs with their status and host."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        vms = client.get("/vms").get("vm", [])
        hosts = {h["id"]: h["name"] for h in client.get("/hosts").get("host", [])}
    if json:
        as_json(vms)
        return
    table("VMs", ["name", "status", "host", "memory", "CPUs", "id"], [
        (vm["name"], vm["status"], hosts.get(vm.get("host", {}).get("id"), ""),
         human_bytes(vm.get("memory")), _cpus(vm), vm["id"]) for vm in vms])


def _cpus(vm: dict[str, Any]) -> int:
    topology = vm.get("cpu", {}).get("topology", {})
    return int(topology.get("sockets", 1)) * int(topology.get("cores", 1)) * int(
        topology.get("threads", 1))


@app.command()
@reports_errors
def create(
    name: Annotated[str, typer.Argument(help="The VM's name.")],
    cluster: Annotated[str, typer.Option(help="Cluster to create it in.")] = "Default",
    template: Annotated[str, typer.Option(help="Template to base it on.")] = "Blank",
    memory: Annotated[str, typer.Option(help="Memory, e.g. 512M or 2G.")] = "512M",
    cpus: Annotated[int, typer.Option(help="Virtual CPUs.")] = 1,
    disk_size: Annotated[str | None, typer.Option(help="Add an empty disk of this size.")] = None,
    storage_domain: Annotated[str | None, typer.Option(help="Where the disk goes.")] = None,
    network: Annotated[str | None, typer.Option(help="Add a NIC on this network.")] = "ovirtmgmt",
    boot: Annotated[str | None, typer.Option(
        help="Boot devices in order, comma-separated: hd, cdrom, network.")] = None,
    iso: Annotated[str | None, typer.Option(help="An ISO image (name) for the VM's CD.")] = None,
    hostname: Annotated[str | None, typer.Option(help="cloud-init: the guest's host name.")
                        ] = None,
    user_name: Annotated[str | None, typer.Option(
        "--user-name", help="cloud-init: a user to create.")] = None,
    ssh_key: Annotated[Path | None, typer.Option(
        help="cloud-init: a file of SSH public keys for the user.", dir_okay=False)] = None,
    root_password_file: Annotated[Path | None, typer.Option(
        help="cloud-init: a file holding the root password.", dir_okay=False)] = None,
    cloud_init_script: Annotated[Path | None, typer.Option(
        help="cloud-init: a file of cloud-config to merge.", dir_okay=False)] = None,
    url: Url = None, user: User = None, password_file: PasswordFile = None,
    ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False,
) -> None:
    """Create a VM (from a template), with a NIC and optionally an empty disk, its boot
    order, an ISO in its CD and cloud-init settings."""
    devices = parse_boot(boot)
    init = initialization(hostname, user_name, ssh_key, root_password_file, cloud_init_script)
    with connect(url, user, password_file, ca_file, data_dir) as client:
        body: dict[str, Any] = {"name": name, "cluster": {"name": cluster},
                                "template": {"name": template}, "memory": parse_size(memory),
                                "cpu": {"topology": {"sockets": cpus, "cores": 1, "threads": 1}}}
        if devices:
            body["os"] = {"boot": {"devices": {"device": devices}}}
        if init:
            body["initialization"] = init
        iso_disk = iso_id(client, iso) if iso else None
        vm = client.post("/vms", body)
        if iso_disk:
            try:
                client.put(f"/vms/{vm['id']}/cdroms/{CDROM_ID}", {"file": {"id": iso_disk}})
            except ApiError:  # e.g. an ISO of another data center: no VM left half-made
                client.delete(f"/vms/{vm['id']}")
                raise
        if network:
            profiles = [p for p in client.get("/vnicprofiles").get("vnic_profile", [])
                        if p["name"] == network]
            if not profiles:
                raise ApiError(f"there is no network (vNIC profile) named {network!r}")
            client.post(f"/vms/{vm['id']}/nics", {"name": "nic1",
                                                  "vnic_profile": {"id": profiles[0]["id"]}})
        if disk_size:
            domain = storage_domain or _first_domain(client)
            client.post(f"/vms/{vm['id']}/diskattachments", {
                "bootable": True, "interface": "virtio", "active": True,
                "disk": {"name": f"{name}_disk1", "format": "cow",
                         "provisioned_size": parse_size(disk_size),
                         "storage_domains": {"storage_domain": [{"name": domain}]}}})
        _wait_for_disks(client, vm["id"])
        vm = client.get(f"/vms/{vm['id']}")
    if json:
        as_json(vm)
    else:
        console.print(f"[green]✓[/] VM {name} created ({vm['id']})")


def _first_domain(client: ApiClient) -> str:
    domains = client.get("/storagedomains").get("storage_domain", [])
    if not domains:
        raise ApiError("there is no storage domain for the disk; add one first")
    return str(domains[0]["name"])


def _wait_for_disks(client: ApiClient, vm_id: str) -> None:
    import time

    seen: set[str] = set()
    with progress("Creating disks") as on_step:
        while True:
            attachments = client.get(f"/vms/{vm_id}/diskattachments", follow="disk").get(
                "disk_attachment", [])
            states = [a["disk"].get("status") for a in attachments]
            present = {str(a["disk"]["id"]) for a in attachments}
            seen |= present
            if "illegal" in states or seen - present:  # a disk that failed is removed
                raise ApiError("creating a disk failed; see the events (overt vm list, the UI)")
            if all(state == "ok" for state in states):
                return
            on_step(f"{states.count('ok')} of {len(states)} ready")
            time.sleep(0.3)


def _vm_id(client: ApiClient, name_or_id: str) -> tuple[str, str]:
    try:
        uuid.UUID(name_or_id)
        vm = client.get(f"/vms/{name_or_id}")
    except ValueError:
        vm = client.find("vms", "vm", name_or_id)
    return str(vm["id"]), str(vm["name"])


def _action(name_or_id: str, verb: str, what: str, url: str | None, user: str | None,
            password_file: Any, ca_file: Any, data_dir: Any, wait_for: str | None,
            body: dict[str, Any] | None = None) -> None:
    with connect(url, user, password_file, ca_file, data_dir) as client:
        vm_id, name = _vm_id(client, name_or_id)
        correlation = str(uuid.uuid4())
        reply = client.post(f"/vms/{vm_id}/{verb}", body or {}, correlation_id=correlation)
        _wait(client, reply, f"{what} {name}", correlation)
        if wait_for:
            status = client.get(f"/vms/{vm_id}")["status"]
            console.print(f"VM {name} is {status}")


@app.command()
@reports_errors
def start(name: Annotated[str, typer.Argument(help="VM name or id.")], url: Url = None,
          user: User = None, password_file: PasswordFile = None, ca_file: CaFile = None,
          data_dir: DataDir = None) -> None:
    """Start a VM and wait until it runs."""
    _action(name, "start", "Starting VM", url, user, password_file, ca_file, data_dir, "up")


@app.command()
@reports_errors
def stop(name: Annotated[str, typer.Argument(help="VM name or id.")],
         force: Annotated[bool, typer.Option(help="Power off at once instead of an ACPI "
                                                  "shutdown.")] = False,
         url: Url = None, user: User = None, password_file: PasswordFile = None,
         ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Shut a VM down (ACPI, then power off after a timeout), or power it off with --force."""
    verb, what = ("stop", "Powering off VM") if force else ("shutdown", "Shutting down VM")
    _action(name, verb, what, url, user, password_file, ca_file, data_dir, "down")


@app.command()
@reports_errors
def remove(name: Annotated[str, typer.Argument(help="VM name or id.")], url: Url = None,
           user: User = None, password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None) -> None:
    """Remove a stopped VM and its disks."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        vm_id, vm_name = _vm_id(client, name)
        correlation = str(uuid.uuid4())
        reply = client.delete(f"/vms/{vm_id}", correlation_id=correlation)
        _wait(client, reply, f"Removing VM {vm_name}", correlation)


@app.command()
@reports_errors
def migrate(name: Annotated[str, typer.Argument(help="VM name or id.")],
            to: Annotated[str | None, typer.Option(
                "--to", help="The destination host's name; else the scheduler chooses a host "
                "of the VM's cluster.")] = None,
            url: Url = None, user: User = None, password_file: PasswordFile = None,
            ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Live-migrate a running VM to another host and wait until it runs there."""
    body = {"host": {"name": to}} if to else None
    _action(name, "migrate", "Migrating VM", url, user, password_file, ca_file, data_dir, "up",
            body=body)


@app.command()
@reports_errors
def cdrom(name: Annotated[str, typer.Argument(help="VM name or id.")],
          iso: Annotated[str | None, typer.Option(help="The ISO image (name) to insert.")
                         ] = None,
          eject: Annotated[bool, typer.Option(help="Empty the CD.")] = False,
          url: Url = None, user: User = None, password_file: PasswordFile = None,
          ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Change a VM's CD: on a running VM now, else for its next start."""
    if (iso is None) == (not eject):
        raise typer.BadParameter("give either --iso NAME or --eject", param_hint="--iso")
    with connect(url, user, password_file, ca_file, data_dir) as client:
        vm_id, vm_name = _vm_id(client, name)
        file_id = iso_id(client, iso) if iso else ""
        running = client.get(f"/vms/{vm_id}")["status"] not in ("down", "suspended")
        query = "?current=true" if running else ""
        client.put(f"/vms/{vm_id}/cdroms/{CDROM_ID}{query}", {"file": {"id": file_id}})
    what = f"ISO {iso} inserted" if iso else "CD ejected"
    when = "now (the VM is running)" if running else "for the VM's next start"
    console.print(f"[green]✓[/] {what} in VM {vm_name}, {when}")
