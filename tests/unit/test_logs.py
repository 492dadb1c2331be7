"""Engine and node log lines carry host, VM and job as fields: key=value in text, keys in JSON."""

from __future__ import annotations

import json
import logging
import uuid

from overt.logs import JsonFormatter, KeyValueFormatter, _JobFilter, current_job

VM_ID = uuid.UUID("5f27d523-7b47-49ca-a0c5-526a747e8388")


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("overt.engine.monitor.reconcile", logging.WARNING, __file__, 1,
                               "VM %s was %s on host %s but the host does not run it",
                               ("web", "up", "h1"), None)
    record.__dict__.update(extra)
    return record


def test_text_lines_end_with_the_fields() -> None:
    line = KeyValueFormatter().format(_record(host="h1", vm="web", vm_id=VM_ID))
    assert line.endswith("WARNING overt.engine.monitor.reconcile: VM web was up on host h1 but "
                         f"the host does not run it host=h1 vm=web vm_id={VM_ID}")


def test_json_lines_have_the_fields_as_keys_and_nothing_else_added() -> None:
    data = json.loads(JsonFormatter().format(_record(host="h1", vm_id=VM_ID, password="x")))
    assert data["host"] == "h1" and data["vm_id"] == str(VM_ID)
    assert data["message"] == "VM web was up on host h1 but the host does not run it"
    assert "password" not in data  # only the known context keys leave the process


def test_the_running_job_is_added_to_each_line() -> None:
    record = _record(host="h1")
    token = current_job.set("job-7")
    try:
        assert _JobFilter().filter(record)
    finally:
        current_job.reset(token)
    assert KeyValueFormatter().format(record).endswith("host=h1 job=job-7")
