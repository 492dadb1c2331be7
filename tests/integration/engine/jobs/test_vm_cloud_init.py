"""cloud-init over the fast lane: what the node is given at start, and what is kept."""

from __future__ import annotations

from overt.engine.db.tables import Job, User, Vm
from overt.engine.model.errors import InvalidInput
from overt.engine.model.initialization import Initialization
from overt.engine.model.status import VmStatus
from overt.engine.secrets import Secret, SecretBox
from overt.engine.services import vms
from overt.engine.services.inputs import VmInput
from tests.support.loopback import LoopbackEngine

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP34SiWpX97gj29sZsH/6YdxLfI36Wj6vbRXY/OxvEQz "
       "alice@laptop")


async def _set_initialization(engine: LoopbackEngine, vm_id: object, init: Initialization
                              ) -> None:
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        assert vm is not None
        vm.initialization = init.to_json()
        await session.commit()


async def test_a_run_once_initialization_reaches_the_node_and_is_then_forgotten(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("web")
    once = Initialization(host_name="web1", user_name="alice", root_password="S3cret!pw",
                          authorized_ssh_keys=KEY)
    job = await engine.act(vms.start_vm, vm_id, use_cloud_init=True, initialization=once)
    assert (await engine.job(job.id)).state == "done"
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    drive = node.hypervisor.started_specs[vm_id].config_drive
    assert drive is not None
    assert drive.meta_data == f'instance-id: "{vm_id}"\nlocal-hostname: "web1"\n'
    assert f'      - "{KEY}"\n' in drive.user_data
    assert '      password: "S3cret!pw"\n' in drive.user_data
    async with engine.session() as session:
        vm = await session.get(Vm, vm_id)
        stored = await session.get(Job, job.id)
        assert vm is not None and stored is not None
        assert vm.initialization is None  # run once: nothing stays on the VM
        assert "S3cret" not in str(stored.params)  # nor in the finished job


async def test_a_sealed_root_password_is_opened_only_for_the_config_drive(
        engine: LoopbackEngine) -> None:
    """The API keeps the root password sealed (the database never has it in clear text);
    the start opens it with the engine's key to write the guest's user-data."""
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("sealed")
    sealed = SecretBox(engine.settings.data_dir).seal(Secret("S3cret!pw"))
    await _set_initialization(engine, vm_id, Initialization(host_name="s1",
                                                            root_password=sealed))
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    drive = node.hypervisor.started_specs[vm_id].config_drive
    assert drive is not None
    assert '      password: "S3cret!pw"\n' in drive.user_data
    assert sealed not in drive.user_data


async def test_the_vms_own_initialization_serves_every_run_unless_refused(
        engine: LoopbackEngine) -> None:
    node = await engine.add_host("h1")
    vm_id = await engine.add_vm("db")
    await _set_initialization(engine, vm_id, Initialization(host_name="db1",
                                                            dns_servers="10.0.0.53"))
    await engine.job((await engine.act(vms.start_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    drive = node.hypervisor.started_specs[vm_id].config_drive
    assert drive is not None and 'hostname: "db1"' in drive.user_data
    assert drive.network_config == ('version: 1\nconfig:\n  - type: "nameserver"\n'
                                    '    address: ["10.0.0.53"]\n')
    await engine.job((await engine.act(vms.stop_vm, vm_id)).id)
    await engine.vm_reaches(vm_id, [VmStatus.DOWN])

    await engine.job((await engine.act(vms.start_vm, vm_id, use_cloud_init=False)).id)
    await engine.vm_reaches(vm_id, [VmStatus.UP])
    assert node.hypervisor.started_specs[vm_id].config_drive is None


async def test_use_cloud_init_without_any_initialization_is_refused(
        engine: LoopbackEngine) -> None:
    await engine.add_host("h1")
    vm_id = await engine.add_vm("bare")
    try:
        await engine.act(vms.start_vm, vm_id, use_cloud_init=True)
    except InvalidInput as exc:
        assert "has no initialization" in str(exc)
    else:
        raise AssertionError("the start was accepted")
    vm = await engine.vm(vm_id)
    assert vm.status == VmStatus.DOWN and vm.host_id is None


async def test_an_update_keeps_the_unshown_password_and_an_empty_one_clears_all(
        engine: LoopbackEngine) -> None:
    vm_id = await engine.add_vm("kept")

    async def update(init: Initialization) -> dict[str, object] | None:
        async with engine.session() as session:
            user = await session.get(User, engine.user_id)
            assert user is not None
            vm = await vms.update_vm(session, vm_id, VmInput(initialization=init), user)
            await session.commit()
            return vm.initialization

    assert await update(Initialization(host_name="a", root_password="pw1")) == \
        {"host_name": "a", "root_password": "pw1"}
    assert await update(Initialization(host_name="b")) == \
        {"host_name": "b", "root_password": "pw1"}  # what a client sends back after a GET
    assert await update(Initialization(host_name="c", root_password="pw2")) == \
        {"host_name": "c", "root_password": "pw2"}
    assert await update(Initialization()) is None
