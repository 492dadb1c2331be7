"""The official oVirt SDK against the engine's API: what administrators' tools do."""

from __future__ import annotations

import uuid

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

from tests.support.engine import RunningEngine

MIB = 2**20


def _vm(conn: sdk.Connection, name: str, memory: int = 256 * MIB) -> types.Vm:
    return conn.system_service().vms_service().add(types.Vm(
        name=name, cluster=types.Cluster(name="Default"), template=types.Template(name="Blank"),
        memory=memory))


def test_api_root_identifies_an_ovirt_4_engine(connection: sdk.Connection) -> None:
    api = connection.system_service().get()
    assert api.product_info.name == "oVirt Engine"
    assert api.product_info.version.major == 4
    assert api.special_objects.blank_template.id == "00000000-0000-0000-0000-000000000000"
    assert connection.test(raise_exception=True)


def test_defaults_exist(connection: sdk.Connection) -> None:
    system = connection.system_service()
    assert [dc.name for dc in system.data_centers_service().list()] == ["Default"]
    assert [c.name for c in system.clusters_service().list()] == ["Default"]
    assert "Blank" in [t.name for t in system.templates_service().list()]
    networks = system.networks_service().list()
    assert [n.name for n in networks] == ["ovirtmgmt"]
    profiles = system.networks_service().network_service(networks[0].id) \
        .vnic_profiles_service().list()
    assert [p.name for p in profiles] == ["ovirtmgmt"]


def test_vm_lifecycle_of_records(connection: sdk.Connection) -> None:
    vms = connection.system_service().vms_service()
    vm = _vm(connection, "records-1")
    assert vm.status == types.VmStatus.DOWN
    assert vm.memory == 256 * MIB
    fetched = vms.vm_service(vm.id).get()
    assert fetched.name == "records-1"
    assert fetched.cluster.id == connection.system_service().clusters_service().list()[0].id
    updated = vms.vm_service(vm.id).update(types.Vm(description="a web server",
                                                      memory=512 * MIB))
    assert updated.description == "a web server" and updated.memory == 512 * MIB
    assert [v.name for v in vms.list(search="name=records-*")] == ["records-1"]
    assert vms.list(search="name=nothing-like-this") == []


def test_nics_get_macs_from_the_pool_and_follow_works(connection: sdk.Connection) -> None:
    vms = connection.system_service().vms_service()
    vm = _vm(connection, "nics-1")
    profile = connection.system_service().vnic_profiles_service().list()[0]
    nics = vms.vm_service(vm.id).nics_service()
    nic = nics.add(types.Nic(name="nic1", vnic_profile=types.VnicProfile(id=profile.id)))
    assert nic.mac.address.startswith("56:6f:")
    assert nic.vnic_profile.id == profile.id
    followed = vms.vm_service(vm.id).get(follow="nics")
    assert [n.name for n in followed.nics] == ["nic1"]
    linked = connection.follow_link(vms.vm_service(vm.id).get().nics)
    assert [n.id for n in linked] == [nic.id]


def test_a_vm_name_is_unique(connection: sdk.Connection) -> None:
    _vm(connection, "unique-1")
    with pytest.raises(sdk.Error) as caught:
        _vm(connection, "unique-1")
    assert caught.value.code == 409
    assert "already in use" in str(caught.value)


@pytest.mark.parametrize(
    ("vm", "words"),
    [
        (types.Vm(name="bad-cluster", cluster=types.Cluster(name="Nope"),
                  template=types.Template(name="Blank")), "vm.cluster 'Nope' does not exist"),
        (types.Vm(name="negative", cluster=types.Cluster(name="Default"), memory=-1),
         "vm.memory must be a positive number"),
        (types.Vm(name="odd-memory", cluster=types.Cluster(name="Default"), memory=1000),
         "whole number of MiB"),
        (types.Vm(name="bad name!", cluster=types.Cluster(name="Default")), "not valid"),
        (types.Vm(cluster=types.Cluster(name="Default")), "vm.name is required"),
        (types.Vm(name="no-cluster"), "vm.cluster is required"),
    ],
)
def test_bad_vm_input_is_a_400_fault_and_changes_nothing(
    connection: sdk.Connection, vm: types.Vm, words: str
) -> None:
    vms = connection.system_service().vms_service()
    before = {v.id for v in vms.list()}
    with pytest.raises(sdk.Error) as caught:
        vms.add(vm)
    assert caught.value.code == 400
    assert words in str(caught.value)
    assert {v.id for v in vms.list()} == before


def test_unknown_ids_are_404(connection: sdk.Connection) -> None:
    vms = connection.system_service().vms_service()
    with pytest.raises(sdk.NotFoundError):
        vms.vm_service(str(uuid.uuid4())).get()
    with pytest.raises(sdk.NotFoundError):
        vms.vm_service("not-a-uuid").get()
    with pytest.raises(sdk.NotFoundError):
        connection.system_service().hosts_service().host_service(str(uuid.uuid4())).get()


def test_actions_that_the_state_forbids_are_refused(connection: sdk.Connection) -> None:
    vm = _vm(connection, "state-1")
    service = connection.system_service().vms_service().vm_service(vm.id)
    with pytest.raises(sdk.Error) as caught:
        service.shutdown()
    assert caught.value.code == 409
    assert "Cannot shut down VM state-1: the VM is down" in str(caught.value)
    with pytest.raises(sdk.Error):
        service.reboot()
    assert service.get().status == types.VmStatus.DOWN


def test_migrating_a_vm_that_is_not_up_is_refused_and_changes_nothing(
    connection: sdk.Connection,
) -> None:
    vm = _vm(connection, "migr-1")
    service = connection.system_service().vms_service().vm_service(vm.id)
    for host in (None, types.Host(name="migr-nosuch")):
        with pytest.raises(sdk.Error) as caught:
            service.migrate(host=host)
        assert caught.value.code == 409
        assert "Cannot migrate VM migr-1: the VM is down" in str(caught.value)
    assert service.get().status == types.VmStatus.DOWN
    jobs = connection.system_service().jobs_service().list()
    assert not any(j.description == "Migrating VM migr-1" for j in jobs)


def test_starting_a_vm_no_host_can_take_is_refused_with_the_reason(
    connection: sdk.Connection,
) -> None:
    vm = _vm(connection, "no-host-1")
    service = connection.system_service().vms_service().vm_service(vm.id)
    with pytest.raises(sdk.Error) as caught:
        service.start()
    assert caught.value.code == 409
    assert "Cannot run VM no-host-1. There is no host that satisfies current scheduling " \
        "constraints: the cluster has no hosts." in str(caught.value)
    jobs = connection.system_service().jobs_service().list()
    assert not any(j.description == "Launching VM no-host-1" for j in jobs)
    assert service.get().status == types.VmStatus.DOWN


def test_remove_vm(connection: sdk.Connection) -> None:
    import time

    vm = _vm(connection, "remove-1")
    vms = connection.system_service().vms_service()
    vms.vm_service(vm.id).remove()
    deadline = time.monotonic() + 20
    while vms.list(search="name=remove-1") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert vms.list(search="name=remove-1") == []


def test_wrong_password_is_refused(api_engine: RunningEngine) -> None:
    conn = sdk.Connection(url=api_engine.url, username="admin@internal", password="wrong",
                          ca_file=str(api_engine.ca_file))
    with pytest.raises(sdk.AuthError, match="Cannot authenticate user"):
        conn.system_service().get()
    conn.close(logout=False)


def test_a_trailing_slash_in_the_url_still_works(api_engine: RunningEngine) -> None:
    conn = sdk.Connection(url=api_engine.url + "/", username="admin@internal",
                          password=api_engine.password, ca_file=str(api_engine.ca_file))
    try:
        assert [c.name for c in conn.system_service().clusters_service().list()] == ["Default"]
    finally:
        conn.close()


def test_placement_policy_is_stored_shown_and_checked(api_engine: RunningEngine,
                                                      connection: sdk.Connection) -> None:
    from tests.e2e.engine.test_inventory_with_sdk import _host
    h1, h2 = _host(api_engine, "pp-h1"), _host(api_engine, "pp-h2")
    system = connection.system_service()
    dc = system.data_centers_service().list(search="name=Default")[0]
    system.clusters_service().add(types.Cluster(name="pp-other", data_center=types.DataCenter(
        id=dc.id)))
    vms = system.vms_service()
    vm = vms.add(types.Vm(name="pp-vm", cluster=types.Cluster(name="Default"),
                          template=types.Template(name="Blank"), memory=256 * MIB,
                          placement_policy=types.VmPlacementPolicy(
                              affinity=types.VmAffinity.PINNED, hosts=[types.Host(id=h1)])))
    service = vms.vm_service(vm.id)
    shown = service.get().placement_policy
    assert shown.affinity == types.VmAffinity.PINNED and [h.id for h in shown.hosts] == [h1]

    service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        affinity=types.VmAffinity.USER_MIGRATABLE,
        hosts=[types.Host(id=h2), types.Host(name="pp-h1")])))
    shown = service.get().placement_policy
    assert shown.affinity == types.VmAffinity.USER_MIGRATABLE
    assert [h.id for h in shown.hosts] == [h2, h1]

    far = _host(api_engine, "pp-far", cluster="pp-other")
    with pytest.raises(sdk.Error) as unknown:
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            hosts=[types.Host(name="pp-nosuch")])))
    assert unknown.value.code == 400 and "pp-nosuch" in str(unknown.value)
    with pytest.raises(sdk.Error) as elsewhere:
        service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
            hosts=[types.Host(id=far)])))
    assert elsewhere.value.code == 400 and "is not in the VM's cluster" in str(elsewhere.value)
    shown = service.get().placement_policy  # the refusals changed nothing
    assert shown.affinity == types.VmAffinity.USER_MIGRATABLE
    assert [h.id for h in shown.hosts] == [h2, h1]

    service.update(types.Vm(placement_policy=types.VmPlacementPolicy(
        affinity=types.VmAffinity.MIGRATABLE, hosts=[])))
    shown = service.get().placement_policy
    assert shown.affinity == types.VmAffinity.MIGRATABLE and not shown.hosts


def test_maintenance_of_a_host_running_no_vm_is_immediate(api_engine: RunningEngine,
                                                          connection: sdk.Connection) -> None:
    from tests.e2e.engine.test_inventory_with_sdk import _host
    host = connection.system_service().hosts_service().host_service(_host(api_engine, "mnt-1"))
    host.deactivate()
    assert host.get().status == types.HostStatus.MAINTENANCE
    host.deactivate()  # asking again is no error
    assert host.get().status == types.HostStatus.MAINTENANCE
