"""`overt provision`: provisioning profiles, which node image a machine booting from a
provisioning network gets (by its MAC, or the default profile) and the cluster it joins."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.objects import changes, names_by_id, report
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, table

app = typer.Typer(help="Node provisioning profiles (PXE boot of new nodes).",
                  no_args_is_help=True)
Mac = Annotated[str | None, typer.Option(
    help="The machine's MAC (aa:bb:cc:dd:ee:ff); without it, the default profile.")]
Image = Annotated[str | None, typer.Option(help="The node image (`overt node-image build`).")]
KernelArgs = Annotated[str | None, typer.Option(help="Extra kernel arguments.")]
Cluster = Annotated[str | None, typer.Option(help="The cluster the node joins (name or id).")]


def _cluster(client: ApiClient, name: str | None) -> dict[str, Any] | None:
    if name is None:
        return None
    for found in client.get("/clusters").get("cluster", []):
        if name in (found.get("name"), found.get("id")):
            return {"id": found["id"]}
    raise ApiError(f"there is no cluster named {name!r}")


def _resolve(client: ApiClient, name: str) -> dict[str, Any]:
    for profile in client.get("/provisioningprofiles").get("provisioning_profile", []):
        if name in (profile["name"], profile["id"]):
            return dict(profile)
    raise ApiError(f"there is no provisioning profile named {name!r}")


@app.command("list")
@reports_errors
def list_profiles(url: Url = None, user: User = None, password_file: PasswordFile = None,
                  ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """List the provisioning profiles."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        profiles = client.get("/provisioningprofiles").get("provisioning_profile", [])
        clusters = names_by_id(client, "clusters", "cluster")
    if json:
        as_json(profiles)
        return
    table("Provisioning profiles", ["name", "mac", "image", "kernel args", "cluster", "id"], [
        (p["name"], (p.get("mac") or {}).get("address", "(default)"), p["image"],
         p.get("kernel_args", ""), clusters.get((p.get("cluster") or {}).get("id", ""), ""),
         p["id"]) for p in profiles])


@app.command()
@reports_errors
def add(name: Annotated[str, typer.Argument(help="The profile's name.")],
        image: Annotated[str, typer.Option(help="The node image (`overt node-image build`).")],
        mac: Mac = None, kernel_args: KernelArgs = None, cluster: Cluster = None,
        url: Url = None, user: User = None, password_file: PasswordFile = None,
        ca_file: CaFile = None, data_dir: DataDir = None, json: Json = False) -> None:
    """Add a profile: a machine with --mac (or any machine, without it) boots --image."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        body = changes(name=name, image=image, kernel_args=kernel_args,
                       mac={"address": mac} if mac else None, cluster=_cluster(client, cluster))
        made = client.post("/provisioningprofiles", body)
    report(made, json, f"Provisioning profile {made['name']} added")


@app.command()
@reports_errors
def update(name: Annotated[str, typer.Argument(help="The profile's name or id.")],
           mac: Mac = None, image: Image = None, kernel_args: KernelArgs = None,
           cluster: Cluster = None,
           new_name: Annotated[str | None, typer.Option(
               "--name", help="A new name for the profile.")] = None,
           default: Annotated[bool, typer.Option(
               "--default", help="Make it the default profile (no MAC of its own).")] = False,
           no_cluster: Annotated[bool, typer.Option(
               "--no-cluster", help="No cluster of its own: its nodes join Default.")] = False,
           url: Url = None, user: User = None,
           password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None, json: Json = False) -> None:
    """Change what a profile gives (only the options given)."""
    if default and mac:
        raise typer.BadParameter("give --mac or --default, not both")
    if no_cluster and cluster is not None:
        raise typer.BadParameter("give --cluster or --no-cluster, not both")
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = _resolve(client, name)
        body = changes(name=new_name, image=image, kernel_args=kernel_args,
                       mac={"address": "" if default else mac}
                       if default or mac is not None else None,
                       cluster={} if no_cluster else _cluster(client, cluster))
        made = client.put(f"/provisioningprofiles/{found['id']}", body)
    report(made, json, f"Provisioning profile {made['name']} updated")


@app.command()
@reports_errors
def remove(name: Annotated[str, typer.Argument(help="The profile's name or id.")],
           url: Url = None, user: User = None, password_file: PasswordFile = None,
           ca_file: CaFile = None, data_dir: DataDir = None) -> None:
    """Remove a profile (its machines then get the default profile, if any)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        found = _resolve(client, name)
        client.delete(f"/provisioningprofiles/{found['id']}")
    report(found, False, f"Provisioning profile {found['name']} removed")
