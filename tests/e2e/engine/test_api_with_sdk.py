"""The official oVirt SDK against the engine's API: what administrators' tools do."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

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


def _until(check: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_templates_from_vms_clones_and_removal_with_the_sdk(connection: sdk.Connection) -> None:
    """A template from a down VM, a VM from it, clones both ways, and the refusals (4xx
    faults that change nothing). The VMs have no disks: the copies are the fast lane's."""
    system = connection.system_service()
    templates, vms = system.templates_service(), system.vms_service()
    source = _vm(connection, "tpl-src-1", memory=512 * MIB)
    made = templates.add(types.Template(name="tpl-1", vm=types.Vm(id=source.id)))
    assert made.memory == 512 * MIB and made.status in (types.TemplateStatus.LOCKED,
                                                        types.TemplateStatus.OK)
    _until(lambda: templates.template_service(made.id).get().status == types.TemplateStatus.OK,
           "the template to be ok")

    before = sorted(t.name for t in templates.list())
    for template, code, words in (
            (types.Template(name="tpl-1", vm=types.Vm(id=source.id)), 409,
             "The name 'tpl-1' is already in use"),
            (types.Template(name="tpl-2", vm=types.Vm(id=str(uuid.uuid4()))), 400,
             "does not exist"),
            (types.Template(name="tpl-2"), 400, "template.vm is required"),
            (types.Template(vm=types.Vm(id=source.id)), 400, "template.name is required"),
            (types.Template(name="tpl-2", vm=types.Vm(id=source.id),
                            storage_domain=types.StorageDomain(name="tpl-nosuch")), 400,
             "template.storage_domain 'tpl-nosuch' does not exist"),
            (types.Template(name="tpl-2", vm=types.Vm(id=source.id, disk_attachments=[
                types.DiskAttachment(disk=types.Disk(id=str(uuid.uuid4()),
                                                     format=types.DiskFormat.RAW))])), 400,
             "that VM tpl-src-1 does not have")):
        with pytest.raises(sdk.Error) as caught:
            templates.add(template)
        assert caught.value.code == code and words in str(caught.value)
    assert sorted(t.name for t in templates.list()) == before

    thin = vms.add(types.Vm(name="tpl-thin-1", cluster=types.Cluster(name="Default"),
                            template=types.Template(name="tpl-1")))
    assert thin.template.id == made.id and thin.memory == 512 * MIB
    full = vms.add(types.Vm(name="tpl-full-1", cluster=types.Cluster(name="Default"),
                            template=types.Template(name="tpl-1")), clone=True)
    assert full.template.id == "00000000-0000-0000-0000-000000000000"
    vms.vm_service(source.id).clone(vm=types.Vm(name="tpl-copy-1"))
    _until(lambda: vms.list(search="name=tpl-copy-1"), "the clone")
    assert vms.list(search="name=tpl-copy-1")[0].memory == 512 * MIB
    for name in ("tpl-copy-1", "tpl-src-1"):
        with pytest.raises(sdk.Error) as caught:
            vms.vm_service(source.id).clone(vm=types.Vm(name=name))
        assert caught.value.code == 409
        assert f"The name '{name}' is already in use" in str(caught.value)
    assert len(vms.list(search="name=tpl-*")) == 4

    for template_id, words in ((made.id, "being used by the following VMs: tpl-thin-1"),
                               ("00000000-0000-0000-0000-000000000000", "cannot be removed")):
        with pytest.raises(sdk.Error) as caught:
            templates.template_service(template_id).remove()
        assert caught.value.code == 409 and words in str(caught.value)
    assert sorted(t.name for t in templates.list()) == before
    vms.vm_service(thin.id).remove()
    _until(lambda: not vms.list(search="name=tpl-thin-1"), "the thin VM's removal")
    templates.template_service(made.id).remove()
    assert "tpl-1" not in [t.name for t in templates.list()]


POST_COPY = "a7aeedb2-8d66-4e51-bb22-32595027ce71"
MINIMAL_DOWNTIME = "80554327-0569-496b-bdeb-fcbbf52b827b"


def test_a_clusters_migration_options_are_set_and_shown(connection: sdk.Connection) -> None:
    clusters = connection.system_service().clusters_service()
    cluster = clusters.add(types.Cluster(
        name="migr-opts", data_center=types.DataCenter(name="Default"),
        migration=types.MigrationOptions(
            auto_converge=types.InheritableBoolean.TRUE,
            bandwidth=types.MigrationBandwidth(
                assignment_method=types.MigrationBandwidthAssignmentMethod.CUSTOM,
                custom_value=500),
            policy=types.MigrationPolicy(id=MINIMAL_DOWNTIME))))
    service = clusters.cluster_service(cluster.id)
    shown = service.get().migration
    assert shown.auto_converge == types.InheritableBoolean.TRUE
    assert shown.compressed == types.InheritableBoolean.INHERIT
    assert shown.bandwidth.assignment_method == types.MigrationBandwidthAssignmentMethod.CUSTOM
    assert shown.bandwidth.custom_value == 500
    assert shown.policy.id == MINIMAL_DOWNTIME and shown.policy.name == "Minimal downtime"

    service.update(types.Cluster(migration=types.MigrationOptions(
        compressed=types.InheritableBoolean.FALSE,
        bandwidth=types.MigrationBandwidth(
            assignment_method=types.MigrationBandwidthAssignmentMethod.HYPERVISOR_DEFAULT),
        policy=types.MigrationPolicy(id=POST_COPY))))
    shown = service.get().migration
    assert shown.auto_converge == types.InheritableBoolean.TRUE  # kept: not in the update
    assert shown.compressed == types.InheritableBoolean.FALSE
    assert shown.bandwidth.assignment_method == \
        types.MigrationBandwidthAssignmentMethod.HYPERVISOR_DEFAULT
    assert shown.bandwidth.custom_value is None
    assert shown.policy.name == "Post-copy migration"
    service.remove()


@pytest.mark.parametrize(("options", "words"), [
    (types.MigrationOptions(bandwidth=types.MigrationBandwidth(
        assignment_method=types.MigrationBandwidthAssignmentMethod.CUSTOM, custom_value=-10)),
     "bandwidth.custom_value must be a positive number of Mbps, not -10"),
    (types.MigrationOptions(policy=types.MigrationPolicy(id=str(uuid.UUID(int=42)))),
     "is not a migration policy"),
], ids=["negative-bandwidth", "unknown-policy"])
def test_bad_migration_options_are_a_400_and_change_nothing(
        connection: sdk.Connection, options: types.MigrationOptions, words: str) -> None:
    system = connection.system_service()
    default = system.clusters_service().list(search="name=Default")[0]
    cluster_service = system.clusters_service().cluster_service(default.id)
    before = cluster_service.get().migration
    with pytest.raises(sdk.Error) as caught:
        cluster_service.update(types.Cluster(migration=options))
    assert caught.value.code == 400 and words in str(caught.value)
    after = cluster_service.get().migration
    assert (after.policy, after.bandwidth) == (before.policy, before.bandwidth)

    names = {v.name for v in system.vms_service().list()}
    with pytest.raises(sdk.Error) as caught:
        system.vms_service().add(types.Vm(
            name="migr-bad", cluster=types.Cluster(name="Default"),
            template=types.Template(name="Blank"), memory=256 * MIB, migration=options))
    assert caught.value.code == 400 and words in str(caught.value)
    assert {v.name for v in system.vms_service().list()} == names


def test_a_vm_overrides_its_clusters_migration_options(connection: sdk.Connection) -> None:
    vms = connection.system_service().vms_service()
    vm = vms.add(types.Vm(
        name="migr-vm-opts", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), memory=256 * MIB,
        migration=types.MigrationOptions(
            compressed=types.InheritableBoolean.TRUE,
            policy=types.MigrationPolicy(id=POST_COPY)),
        migration_downtime=400))
    assert vm.migration.compressed == types.InheritableBoolean.TRUE
    assert vm.migration.auto_converge == types.InheritableBoolean.INHERIT
    assert vm.migration.policy.id == POST_COPY
    assert vm.migration_downtime == 400
    service = vms.vm_service(vm.id)
    service.update(types.Vm(migration=types.MigrationOptions(
        compressed=types.InheritableBoolean.INHERIT,
        bandwidth=types.MigrationBandwidth(
            assignment_method=types.MigrationBandwidthAssignmentMethod.CUSTOM,
            custom_value=40)), migration_downtime=-1))
    shown = service.get()
    assert shown.migration.compressed == types.InheritableBoolean.INHERIT
    assert shown.migration.bandwidth.custom_value == 40
    assert shown.migration.policy.id == POST_COPY
    assert shown.migration_downtime == -1
    with pytest.raises(sdk.Error) as caught:
        service.update(types.Vm(migration_downtime=0))
    assert caught.value.code == 400 and "migration_downtime must be between" in str(caught.value)
    assert service.get().migration_downtime == -1
    service.remove()


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
