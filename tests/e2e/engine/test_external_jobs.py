"""oVirt's external jobs through the SDK: a client records its own work, ends it, clears it;
the engine's own jobs cannot be ended from outside."""

from __future__ import annotations

import ovirtsdk4 as sdk
import ovirtsdk4.types as types
import pytest

MIB = 2**20


def test_an_external_job_is_added_ended_and_cleared(connection: sdk.Connection) -> None:
    jobs = connection.system_service().jobs_service()
    job = jobs.add(types.Job(description="Backing up the VMs", auto_cleared=False))
    assert job.external is True and job.status == types.JobStatus.STARTED
    assert job.auto_cleared is False
    service = jobs.job_service(job.id)
    service.end(succeeded=False)
    ended = service.get()
    assert ended.status == types.JobStatus.FAILED and ended.end_time is not None
    with pytest.raises(sdk.Error) as twice:
        service.end()
    assert twice.value.code == 409 and "already ended" in str(twice.value)
    service.clear()
    assert service.get().auto_cleared is True
    done = jobs.add(types.Job(description="Checking the disks"))
    jobs.job_service(done.id).end(succeeded=True)
    assert jobs.job_service(done.id).get().status == types.JobStatus.FINISHED
    with pytest.raises(sdk.Error) as missing:
        jobs.add(types.Job())
    assert missing.value.code == 400


def test_the_engines_own_jobs_cannot_be_ended_or_cleared(connection: sdk.Connection) -> None:
    system = connection.system_service()
    vm = system.vms_service().add(types.Vm(
        name="jobs-vm", cluster=types.Cluster(name="Default"),
        template=types.Template(name="Blank"), memory=128 * MIB))
    system.vms_service().vm_service(vm.id).remove()
    engine_job = next(j for j in system.jobs_service().list() if not j.external)
    service = system.jobs_service().job_service(engine_job.id)
    before = service.get()
    for call in (service.end, service.clear):
        with pytest.raises(sdk.Error) as refused:
            call()
        assert refused.value.code == 409 and "not an external job" in str(refused.value)
    after = service.get()
    assert (after.external, after.auto_cleared) == (before.external, before.auto_cleared)
