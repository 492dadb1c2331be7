"""`overt cluster affinity`: list, add, update and remove a cluster's affinity groups."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from overt.cli.client import ApiClient, ApiError
from overt.cli.errors import reports_errors
from overt.cli.objects import names_by_id, report, resolve
from overt.cli.options import CaFile, DataDir, Json, PasswordFile, Url, User, connect
from overt.cli.output import as_json, table

app = typer.Typer(help="Affinity groups: VMs kept together or apart, on or off hosts.",
                  no_args_is_help=True)
ClusterName = Annotated[str, typer.Argument(help="The cluster's name or id.")]
GroupName = Annotated[str, typer.Argument(help="The affinity group's name or id.")]


class Polarity(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"
    DISABLED = "disabled"


VmsRule = Annotated[Polarity | None, typer.Option(
    "--vms-rule", help="The group's VMs together on one host (positive), each apart "
    "(negative), or neither (disabled).")]
HostsRule = Annotated[Polarity | None, typer.Option(
    "--hosts-rule", help="The group's VMs on the group's hosts (positive), off them "
    "(negative), or neither (disabled).")]
VmsEnforcing = Annotated[bool | None, typer.Option(
    "--vms-enforcing/--vms-soft", help="A hard VMs rule (never broken) or a soft one.")]
HostsEnforcing = Annotated[bool | None, typer.Option(
    "--hosts-enforcing/--hosts-soft", help="A hard hosts rule or a soft one.")]
Vms = Annotated[list[str] | None, typer.Option("--vm", help="A member VM (name or id); "
                                               "repeat it. Replaces the members given.")]
Hosts = Annotated[list[str] | None, typer.Option("--host", help="A member host (name or id); "
                                                 "repeat it. Replaces the members given.")]
Priority = Annotated[float | None, typer.Option(help="Weight of the soft rules (default 1).")]
Description = Annotated[str | None, typer.Option(help="A description.")]


def _rule(polarity: Polarity | None, enforcing: bool | None) -> dict[str, Any] | None:
    rule: dict[str, Any] = {}
    if polarity is not None:
        rule["enabled"] = polarity is not Polarity.DISABLED
        if polarity is not Polarity.DISABLED:
            rule["positive"] = polarity is Polarity.POSITIVE
    if enforcing is not None:
        rule["enforcing"] = enforcing
    return rule or None


def _body(client: ApiClient, *, name: str | None, description: str | None,
          priority: float | None, vms_rule: dict[str, Any] | None,
          hosts_rule: dict[str, Any] | None, vms: list[str] | None,
          hosts: list[str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {key: value for key, value in (
        ("name", name), ("description", description), ("priority", priority),
        ("vms_rule", vms_rule), ("hosts_rule", hosts_rule)) if value is not None}
    if vms is not None:
        body["vms"] = {"vm": [{"id": resolve(client, "vms", "vm", v)["id"]} for v in vms]}
    if hosts is not None:
        body["hosts"] = {"host": [{"id": resolve(client, "hosts", "host", h)["id"]}
                                  for h in hosts]}
    return body


def _groups_path(client: ApiClient, cluster: str) -> str:
    return f"/clusters/{resolve(client, 'clusters', 'cluster', cluster)['id']}/affinitygroups"


def _group(client: ApiClient, path: str, group: str) -> dict[str, Any]:
    for found in client.get(path).get("affinity_group", []):
        if group in (found["id"], found["name"]):
            return dict(found)
    raise ApiError(f"there is no affinity group named {group!r} in the cluster")


def _describe(rule: dict[str, Any]) -> str:
    if not rule.get("enabled"):
        return "-"
    polarity = "positive" if rule.get("positive") else "negative"
    return f"{polarity}, {'enforcing' if rule.get('enforcing') else 'soft'}"


@app.command("list")
@reports_errors
def list_groups(cluster: ClusterName, url: Url = None, user: User = None,
                password_file: PasswordFile = None, ca_file: CaFile = None,
                data_dir: DataDir = None, json: Json = False) -> None:
    """List a cluster's affinity groups with their rules and members."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        groups = client.get(_groups_path(client, cluster)).get("affinity_group", [])
        vm_names = names_by_id(client, "vms", "vm")
        host_names = names_by_id(client, "hosts", "host")
    if json:
        as_json(groups)
        return
    table("Affinity groups", ["name", "VMs rule", "hosts rule", "priority", "VMs", "hosts"], [
        (g["name"], _describe(g.get("vms_rule", {})), _describe(g.get("hosts_rule", {})),
         g.get("priority", 1),
         ", ".join(sorted(vm_names.get(v["id"], v["id"])
                          for v in g.get("vms", {}).get("vm", []))),
         ", ".join(sorted(host_names.get(h["id"], h["id"])
                          for h in g.get("hosts", {}).get("host", []))))
        for g in groups])


@app.command()
@reports_errors
def add(cluster: ClusterName, name: Annotated[str, typer.Argument(help="The group's name.")],
        vms_rule: VmsRule = None, vms_enforcing: VmsEnforcing = None,
        hosts_rule: HostsRule = None, hosts_enforcing: HostsEnforcing = None,
        vm: Vms = None, host: Hosts = None, priority: Priority = None,
        description: Description = None, url: Url = None, user: User = None,
        password_file: PasswordFile = None, ca_file: CaFile = None, data_dir: DataDir = None,
        json: Json = False) -> None:
    """Add an affinity group to a cluster."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        added = client.post(_groups_path(client, cluster), _body(
            client, name=name, description=description, priority=priority,
            vms_rule=_rule(vms_rule, vms_enforcing),
            hosts_rule=_rule(hosts_rule, hosts_enforcing), vms=vm, hosts=host))
    report(added, json, f"Affinity group {added['name']} added")


@app.command()
@reports_errors
def update(cluster: ClusterName, group: GroupName,
           name: Annotated[str | None, typer.Option(help="A new name.")] = None,
           vms_rule: VmsRule = None, vms_enforcing: VmsEnforcing = None,
           hosts_rule: HostsRule = None, hosts_enforcing: HostsEnforcing = None,
           vm: Vms = None, host: Hosts = None, priority: Priority = None,
           description: Description = None, url: Url = None, user: User = None,
           password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None, json: Json = False) -> None:
    """Change an affinity group: what is not given stays."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        path = _groups_path(client, cluster)
        found = _group(client, path, group)
        updated = client.put(f"{path}/{found['id']}", _body(
            client, name=name, description=description, priority=priority,
            vms_rule=_rule(vms_rule, vms_enforcing),
            hosts_rule=_rule(hosts_rule, hosts_enforcing), vms=vm, hosts=host))
    report(updated, json, f"Affinity group {updated['name']} updated")


@app.command()
@reports_errors
def remove(cluster: ClusterName, group: GroupName, url: Url = None, user: User = None,
           password_file: PasswordFile = None, ca_file: CaFile = None,
           data_dir: DataDir = None) -> None:
    """Remove an affinity group (its VMs and hosts stay)."""
    with connect(url, user, password_file, ca_file, data_dir) as client:
        path = _groups_path(client, cluster)
        found = _group(client, path, group)
        client.delete(f"{path}/{found['id']}")
    report({}, False, f"Affinity group {found['name']} removed")
