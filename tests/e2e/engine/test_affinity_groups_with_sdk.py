"""Affinity groups through the official SDK: a cluster's groups with their VM and host rules
and members, oVirt 4.0's top-level `positive`/`enforcing`, a start an enforcing rule
forbids, and the faults for what oVirt refuses (nothing changed by any of them)."""

from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.e2e.engine.test_inventory_with_sdk import _host
from tests.support.engine import RunningEngine

MIB = 2**20


def _cluster(conn: sdk.Connection, name: str) -> types.Cluster:
    system = conn.system_service()
    dc = system.data_centers_service().list(search="name=Default")[0]
    return system.clusters_service().add(types.Cluster(name=name, data_center=types.DataCenter(
        id=dc.id)))


def _vm(conn: sdk.Connection, name: str, cluster: str) -> types.Vm:
    return conn.system_service().vms_service().add(types.Vm(
        name=name, cluster=types.Cluster(name=cluster), template=types.Template(name="Blank"),
        memory=256 * MIB))


def _fault(call: object, code: int, words: str) -> None:
    with pytest.raises(sdk.Error) as caught:
        call()  # type: ignore[operator]
    assert caught.value.code == code, str(caught.value)
    assert words in str(caught.value)


def test_affinity_groups_their_rules_and_members(api_engine: RunningEngine,
                                                 connection: sdk.Connection) -> None:
    cluster = _cluster(connection, "ag-crud")
    h1, h2 = _host(api_engine, "ag-h1", cluster="ag-crud"), _host(api_engine, "ag-h2",
                                                                  cluster="ag-crud")
    web, db = _vm(connection, "ag-web", "ag-crud"), _vm(connection, "ag-db", "ag-crud")
    groups = connection.system_service().clusters_service().cluster_service(
        cluster.id).affinity_groups_service()
    assert groups.list() == []

    added = groups.add(types.AffinityGroup(
        name="front", description="web with db", priority=2.5,
        vms_rule=types.AffinityRule(enabled=True, positive=True, enforcing=True),
        hosts_rule=types.AffinityRule(enabled=True, positive=False, enforcing=False),
        vms=[types.Vm(id=web.id), types.Vm(name="ag-db")], hosts=[types.Host(id=h1)]))
    assert (added.name, added.description, float(added.priority)) == (
        "front", "web with db", 2.5)
    assert added.cluster.id == cluster.id
    assert (added.vms_rule.enabled, added.vms_rule.positive, added.vms_rule.enforcing) == (
        True, True, True)
    assert (added.hosts_rule.enabled, added.hosts_rule.positive,
            added.hosts_rule.enforcing) == (True, False, False)
    assert (added.positive, added.enforcing) == (True, True)  # oVirt 4.0's view of the VMs rule
    assert sorted(v.id for v in added.vms) == sorted([web.id, db.id])
    assert [h.id for h in added.hosts] == [h1]

    service = groups.group_service(added.id)
    shown = service.get()
    assert shown.name == "front" and [h.id for h in shown.hosts] == [h1]
    assert [g.name for g in groups.list()] == ["front"]

    updated = service.update(types.AffinityGroup(
        priority=1.0, vms_rule=types.AffinityRule(positive=False)))
    assert float(updated.priority) == 1.0
    assert (updated.vms_rule.enabled, updated.vms_rule.positive,
            updated.vms_rule.enforcing) == (True, False, True)
    assert updated.name == "front" and len(updated.vms) == 2  # what was not sent stays

    members = service.vms_service()
    members.vm_service(web.id).remove()
    assert [v.id for v in members.list()] == [db.id]
    members.add(types.Vm(name="ag-web"))
    assert sorted(v.id for v in members.list()) == sorted([web.id, db.id])
    hosts = service.hosts_service()
    hosts.add(types.Host(name="ag-h2"))
    assert sorted(h.id for h in hosts.list()) == sorted([h1, h2])
    hosts.host_service(h1).remove()
    assert [h.id for h in hosts.list()] == [h2]

    # oVirt 4.0's form: top-level positive/enforcing are the VMs rule.
    old = groups.add(types.AffinityGroup(name="old-style", positive=False, enforcing=False,
                                         vms=[types.Vm(id=web.id)]))
    assert (old.vms_rule.enabled, old.vms_rule.positive, old.vms_rule.enforcing) == (
        True, False, False)
    assert old.hosts_rule.enabled is False
    assert float(old.priority) == 1.0
    assert sorted(g.name for g in groups.list()) == ["front", "old-style"]

    groups.group_service(old.id).remove()
    service.remove()
    assert groups.list() == []
    # The VMs and hosts outlive their groups.
    assert connection.system_service().vms_service().vm_service(web.id).get().name == "ag-web"


def test_an_enforcing_rule_refuses_a_start_naming_the_group(api_engine: RunningEngine,
                                                            connection: sdk.Connection) -> None:
    cluster = _cluster(connection, "ag-start")
    _host(api_engine, "ag-only", cluster="ag-start")
    vm = _vm(connection, "ag-kept-off", "ag-start")
    connection.system_service().clusters_service().cluster_service(
        cluster.id).affinity_groups_service().add(types.AffinityGroup(
            name="not-there", hosts_rule=types.AffinityRule(enabled=True, positive=False,
                                                            enforcing=True),
            vms=[types.Vm(id=vm.id)], hosts=[types.Host(name="ag-only")]))
    service = connection.system_service().vms_service().vm_service(vm.id)
    _fault(service.start, 409, "Cannot run VM ag-kept-off. There is no host that satisfies "
           "current scheduling constraints: ag-only: negative enforcing affinity group "
           "not-there keeps the VM off this host")
    assert service.get().status == types.VmStatus.DOWN


def test_bad_affinity_group_input_is_a_4xx_and_changes_nothing(
        api_engine: RunningEngine, connection: sdk.Connection) -> None:
    cluster = _cluster(connection, "ag-bad")
    _cluster(connection, "ag-elsewhere")
    _host(api_engine, "ag-bad-h", cluster="ag-bad")
    far_host = _host(api_engine, "ag-far-h", cluster="ag-elsewhere")
    mine = _vm(connection, "ag-mine", "ag-bad")
    far_vm = _vm(connection, "ag-far", "ag-elsewhere")
    clusters = connection.system_service().clusters_service()
    groups = clusters.cluster_service(cluster.id).affinity_groups_service()
    group = groups.add(types.AffinityGroup(name="kept", vms=[types.Vm(id=mine.id)]))
    service = groups.group_service(group.id)

    _fault(lambda: groups.add(types.AffinityGroup(name="kept")), 409,
           "the cluster has an affinity group of that name already")
    _fault(lambda: groups.add(types.AffinityGroup(name="x", vms=[types.Vm(id=far_vm.id)])),
           400, "VM ag-far is in another cluster")
    _fault(lambda: groups.add(types.AffinityGroup(name="x", hosts=[types.Host(id=far_host)])),
           400, "host ag-far-h is in another cluster")
    _fault(lambda: groups.add(types.AffinityGroup(
        name="x", vms=[types.Vm(id="6f1e0c4e-0000-4000-8000-000000000001")])), 400,
        "does not exist")
    _fault(lambda: groups.add(types.AffinityGroup(description="no name")), 400,
           "affinity_group.name is required")
    _fault(lambda: groups.add(types.AffinityGroup(name="x", priority=-1.0)), 400,
           "priority must be 0 or more")
    _fault(lambda: service.vms_service().add(types.Vm(id=far_vm.id)), 400,
           "VM ag-far is in another cluster")
    _fault(lambda: service.hosts_service().add(types.Host(name="ag-nosuch")), 400,
           "'ag-nosuch' does not exist")
    _fault(lambda: service.update(types.AffinityGroup(
        name="renamed", vms=[types.Vm(id=mine.id), types.Vm(id=far_vm.id)])), 400,
        "VM ag-far is in another cluster")
    _fault(lambda: groups.group_service("6f1e0c4e-0000-4000-8000-000000000002").get(), 404,
           "no affinity group")
    _fault(lambda: service.vms_service().vm_service(far_vm.id).remove(), 404,
           "is not in affinity group kept")
    other_groups = clusters.cluster_service(
        clusters.list(search="name=ag-elsewhere")[0].id).affinity_groups_service()
    _fault(lambda: other_groups.group_service(group.id).get(), 404, "in this cluster")

    assert [g.name for g in groups.list()] == ["kept"]  # nothing changed
    shown = service.get()
    assert shown.name == "kept" and [v.id for v in shown.vms] == [mine.id]
    assert not shown.hosts
    assert other_groups.list() == []
