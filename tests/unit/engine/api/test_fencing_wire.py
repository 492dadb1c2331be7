"""A cluster's `fencing_policy` as the oVirt SDK writes and reads it: what it sends is what
is stored; bad values are refused; the SDK reads back what we show."""

from __future__ import annotations

import ovirtsdk4.readers
import ovirtsdk4.types as types
import ovirtsdk4.writers  # noqa: F401 - registers the SDK's writers
import pytest
from ovirtsdk4.reader import Reader
from ovirtsdk4.writer import Writer

from overt.engine.api.fencing_wire import fencing_policy_view, read_fencing_policy
from overt.engine.api.wire.parse import parse_body
from overt.engine.api.wire.render import to_xml
from overt.engine.model import fencing_policy
from overt.engine.model.errors import InvalidInput
from overt.engine.model.fencing_policy import FencingPolicy


def _read(xml: str) -> FencingPolicy:
    node = parse_body(xml.encode(), "application/xml", "fencing_policy")
    return fencing_policy.check(FencingPolicy().updated(read_fencing_policy(node) or {}))


def test_what_the_sdk_sends_is_stored() -> None:
    sent = types.FencingPolicy(
        enabled=False,
        skip_if_connectivity_broken=types.SkipIfConnectivityBroken(enabled=True, threshold=30),
        skip_if_sd_active=types.SkipIfSdActive(enabled=True),
        skip_if_gluster_bricks_up=True, skip_if_gluster_quorum_not_met=False)
    policy = _read(Writer.write(sent, root="fencing_policy"))
    assert policy == FencingPolicy(enabled=False, skip_if_connectivity_broken=True,
                                   connectivity_threshold=30, skip_if_sd_active=True,
                                   skip_if_gluster_bricks_up=True)


def test_a_partial_policy_changes_only_what_it_names() -> None:
    policy = _read("<fencing_policy><skip_if_sd_active><enabled>true</enabled>"
                   "</skip_if_sd_active><host_grace_period><seconds>20</seconds>"
                   "</host_grace_period></fencing_policy>")
    assert policy == FencingPolicy(skip_if_sd_active=True, grace_s=20.0)


@pytest.mark.parametrize("body", [
    "<fencing_policy><skip_if_connectivity_broken><threshold>150</threshold>"
    "</skip_if_connectivity_broken></fencing_policy>",
    "<fencing_policy><enabled>maybe</enabled></fencing_policy>",
    "<fencing_policy><host_grace_period><seconds>soon</seconds></host_grace_period>"
    "</fencing_policy>",
    "<fencing_policy><host_grace_period><per_vm_seconds>-1</per_vm_seconds>"
    "</host_grace_period></fencing_policy>",
    "<fencing_policy><host_grace_period><seconds>nan</seconds></host_grace_period>"
    "</fencing_policy>",
])
def test_bad_values_are_refused(body: str) -> None:
    with pytest.raises(InvalidInput):
        _read(body)


def test_the_sdk_reads_back_what_we_show() -> None:
    shown = FencingPolicy(skip_if_connectivity_broken=True, connectivity_threshold=70)
    seen = Reader.read(to_xml("fencing_policy", fencing_policy_view(shown)))
    assert isinstance(seen, types.FencingPolicy)
    assert seen.enabled is True
    assert seen.skip_if_connectivity_broken.enabled is True
    assert seen.skip_if_connectivity_broken.threshold == 70
    assert seen.skip_if_sd_active.enabled is False
    assert seen.skip_if_gluster_bricks_up is False
