"""Tags through the official SDK: the tree under the root tag, renaming and moving, assigning
to VMs, finding VMs by tag, and the faults for what oVirt refuses."""

from __future__ import annotations

from collections.abc import Iterator

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

MIB = 2**20
ROOT = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def vm(connection: sdk.Connection) -> Iterator[types.Vm]:
    vms = connection.system_service().vms_service()
    made = vms.add(types.Vm(name="tagged-vm", cluster=types.Cluster(name="Default"),
                            template=types.Template(name="Blank"), memory=256 * MIB))
    yield made
    vms.vm_service(made.id).remove()


def test_tags_crud_tree_and_assignment(connection: sdk.Connection, vm: types.Vm) -> None:
    system = connection.system_service()
    tags = system.tags_service()
    assert system.get().special_objects.root_tag.id == ROOT
    assert [t.name for t in tags.list()] == ["root"]

    web = tags.add(types.Tag(name="web", description="web servers"))
    assert web.parent.id == ROOT
    prod = tags.add(types.Tag(name="prod", parent=types.Tag(name="web")))
    assert prod.parent.id == web.id
    assert sorted(t.name for t in tags.list()) == ["prod", "root", "web"]

    renamed = tags.tag_service(web.id).update(types.Tag(name="www", description="front"))
    assert (renamed.name, renamed.description) == ("www", "front")
    with pytest.raises(sdk.Error) as cycle:
        tags.tag_service(web.id).update(types.Tag(parent=types.Tag(id=prod.id)))
    assert cycle.value.code == 409
    with pytest.raises(sdk.Error) as taken:
        tags.add(types.Tag(name="prod"))
    assert taken.value.code == 409

    vm_tags = system.vms_service().vm_service(vm.id).tags_service()
    assigned = vm_tags.add(types.Tag(name="prod"))
    assert assigned.id == prod.id
    vm_tags.add(types.Tag(id=web.id))
    assert sorted(t.name for t in vm_tags.list()) == ["prod", "www"]
    assert [v.name for v in system.vms_service().list(search="tag=prod")] == ["tagged-vm"]
    assert system.vms_service().list(search="tag=nothing") == []

    vm_tags.tag_service(prod.id).remove()
    assert [t.name for t in vm_tags.list()] == ["www"]
    with pytest.raises(sdk.NotFoundError):
        vm_tags.tag_service(prod.id).get()

    tags.tag_service(web.id).remove()  # and its subtag prod, and its assignment
    assert [t.name for t in tags.list()] == ["root"]
    assert vm_tags.list() == []
    with pytest.raises(sdk.NotFoundError):
        tags.tag_service(ROOT).remove()


@pytest.mark.parametrize("bad", [types.Tag(), types.Tag(name="root"), types.Tag(name="a b"),
                                 types.Tag(name="x", parent=types.Tag(name="missing"))])
def test_bad_tags_are_400_faults_and_change_nothing(connection: sdk.Connection,
                                                    bad: types.Tag) -> None:
    tags = connection.system_service().tags_service()
    with pytest.raises(sdk.Error) as caught:
        tags.add(bad)
    assert caught.value.code == 400
    assert [t.name for t in tags.list()] == ["root"]
