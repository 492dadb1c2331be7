"""The portal's forms for data centers, clusters and networks: which fields each has, and
how a submitted form becomes the service layer's input."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from overt.engine.db.tables import Cluster, DataCenter, Network
from overt.engine.model.errors import InvalidInput
from overt.engine.model.fencing_policy import FencingPolicy
from overt.engine.model.status import NetworkUsage
from overt.engine.queries.lookup import Ref
from overt.engine.services.clusters import ClusterInput
from overt.engine.services.datacenters import DataCenterInput
from overt.engine.services.networks import NetworkInput


@dataclass(frozen=True)
class FormField:
    """One input of a form; `options` make it a select (or checkboxes when `multiple`)."""

    key: str
    label: str
    kind: str = "text"  # text, number, checkbox, select, checkboxes
    help: str = ""
    required: bool = False
    options: list[tuple[str, str]] = field(default_factory=list)
    attrs: dict[str, str] = field(default_factory=dict)


NAME_ATTRS = {"maxlength": "40", "pattern": r"[A-Za-z0-9_.\-]+"}
NAME_HELP = "Letters, digits, '.', '_' or '-'; up to 40."


def data_center_fields() -> list[FormField]:
    return [FormField("name", "Name", required=True, help=NAME_HELP, attrs=NAME_ATTRS),
            FormField("description", "Description"),
            FormField("local", "Local storage (one host) instead of shared", kind="checkbox")]


def cluster_fields(data_centers: list[DataCenter]) -> list[FormField]:
    return [FormField("name", "Name", required=True, help=NAME_HELP, attrs=NAME_ATTRS),
            FormField("description", "Description"),
            FormField("data_center", "Data center", kind="select",
                      options=[(str(dc.id), dc.name) for dc in data_centers]),
            FormField("overcommit", "Memory overcommit (%)", kind="number", required=True,
                      help="Memory the scheduler may promise, in percent of the hosts' "
                      "memory (100: none).", attrs={"min": "1", "max": "1000"}),
            *FENCING_FIELDS]


# The cluster's fencing policy: what happens to a host that stops answering.
FENCING_FIELDS = [
    FormField("fencing", "Fence hosts that stop answering", kind="checkbox",
              help="After its grace period, a non responsive host is restarted through its "
              "power management and its highly available VMs start elsewhere."),
    FormField("grace_s", "Grace period (s)", kind="number", required=True,
              help="How long a host may stay silent (connecting) before it is judged non "
              "responsive.", attrs={"min": "0", "max": "3600"}),
    FormField("grace_per_vm_s", "Extra grace per running VM (s)", kind="number",
              required=True, attrs={"min": "0", "max": "3600", "step": "0.1"}),
    FormField("skip_connectivity", "Skip fencing when many hosts are unreachable at once",
              kind="checkbox", help="A network outage, not host failures."),
    FormField("connectivity_threshold", "Unreachable hosts that skip fencing (%)",
              kind="number", required=True, attrs={"min": "0", "max": "100"}),
    FormField("skip_sd_active", "Skip fencing while the host still renews its storage leases",
              kind="checkbox"),
]
FENCING_CHECKBOXES = ("fencing", "skip_connectivity", "skip_sd_active")


def network_fields(data_centers: list[DataCenter], *, editing: bool) -> list[FormField]:
    fields = [FormField("name", "Name", required=True,
                        help="Letters, digits, '.', '_' or '-'; up to 15 (the host bridge "
                        "takes this name).", attrs={**NAME_ATTRS, "maxlength": "15"}),
              FormField("description", "Description")]
    if not editing:
        fields.append(FormField("data_center", "Data center", kind="select",
                                options=[(str(dc.id), dc.name) for dc in data_centers]))
    return [*fields,
            FormField("vlan", "VLAN id", kind="number", help="0 to 4094; empty for none.",
                      attrs={"min": "0", "max": "4094"}),
            FormField("mtu", "MTU", kind="number", help="Empty or 0 for the default (1500).",
                      attrs={"min": "0", "max": "65520"}),
            FormField("usages", "Usages", kind="checkboxes",
                      options=[(u.value, u.value.replace("_", " ")) for u in NetworkUsage])]


def data_center_values(dc: DataCenter) -> dict[str, str | list[str]]:
    return {"name": dc.name, "description": dc.description, "local": "on" if dc.local else ""}


def cluster_values(cluster: Cluster) -> dict[str, str | list[str]]:
    return {"name": cluster.name, "description": cluster.description,
            "data_center": str(cluster.data_center_id),
            "overcommit": str(cluster.memory_overcommit_percent),
            **fencing_values(FencingPolicy.from_json(cluster.fencing_policy))}


def fencing_values(policy: FencingPolicy) -> dict[str, str | list[str]]:
    return {"fencing": "on" if policy.enabled else "",
            "grace_s": f"{policy.grace_s:g}", "grace_per_vm_s": f"{policy.grace_per_vm_s:g}",
            "skip_connectivity": "on" if policy.skip_if_connectivity_broken else "",
            "connectivity_threshold": str(policy.connectivity_threshold),
            "skip_sd_active": "on" if policy.skip_if_sd_active else ""}


def network_values(network: Network) -> dict[str, str | list[str]]:
    return {"name": network.name, "description": network.description,
            "data_center": str(network.data_center_id),
            "vlan": "" if network.vlan_id is None else str(network.vlan_id),
            "mtu": str(network.mtu or ""), "usages": list(network.usages)}


def _int(form: dict[str, str | list[str]], key: str, label: str) -> int | None:
    raw = str(form.get(key) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(f"{label} must be a whole number, not {raw!r}") from None


def _float(form: dict[str, str | list[str]], key: str, label: str) -> float | None:
    raw = str(form.get(key) or "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise InvalidInput(f"{label} must be a number of seconds, not {raw!r}") from None


def read_fencing(form: dict[str, str | list[str]]) -> dict[str, Any]:
    """The fencing policy fields of a cluster form (empty numbers: left as they are)."""
    return {"enabled": form.get("fencing") == "on",
            "grace_s": _float(form, "grace_s", "Grace period"),
            "grace_per_vm_s": _float(form, "grace_per_vm_s", "Extra grace per running VM"),
            "skip_if_connectivity_broken": form.get("skip_connectivity") == "on",
            "connectivity_threshold": _int(form, "connectivity_threshold",
                                           "Unreachable hosts that skip fencing"),
            "skip_if_sd_active": form.get("skip_sd_active") == "on"}


def _ref(raw: str | list[str] | None, label: str) -> Ref:
    try:
        return Ref(id=uuid.UUID(str(raw or "")))
    except ValueError:
        raise InvalidInput(f"choose a {label}") from None


def read_data_center(form: dict[str, str | list[str]]) -> DataCenterInput:
    return DataCenterInput(name=str(form.get("name", "")), description=str(
        form.get("description", "")), local=form.get("local") == "on")


def read_cluster(form: dict[str, str | list[str]], *, editing: bool) -> ClusterInput:
    return ClusterInput(
        name=str(form.get("name", "")), description=str(form.get("description", "")),
        data_center=_ref(form.get("data_center"), "data center"),
        memory_overcommit_percent=_int(form, "overcommit", "Memory overcommit")
        if editing or form.get("overcommit") else 100,
        fencing_policy=read_fencing(form))


def read_network(form: dict[str, str | list[str]], *, editing: bool) -> NetworkInput:
    vlan = _int(form, "vlan", "VLAN id")
    usages = form.get("usages") or []
    return NetworkInput(
        name=str(form.get("name", "")), description=str(form.get("description", "")),
        data_center=None if editing else _ref(form.get("data_center"), "data center"),
        vlan_id=vlan, clear_vlan=editing and vlan is None,
        mtu=_int(form, "mtu", "MTU") or 0,
        usages=list(usages) if isinstance(usages, list) else [usages])
