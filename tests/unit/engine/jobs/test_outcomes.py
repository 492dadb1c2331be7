"""The worker's one mapping of a job's exceptions to "retry later" or "failed"."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError

from overt.bus.base import NodeUnreachable
from overt.engine.jobs.errors import JobFailed, RetryLater
from overt.engine.jobs.kinds import UnreadableJob
from overt.engine.jobs.worker import Outcome, outcome_of
from overt.engine.model.errors import Conflict, NotFound
from overt.engine.nodes import NodeCommandFailed
from overt.protocol import ErrorCode
from overt.protocol.errors import NodeError


def _node_failed(code: ErrorCode) -> NodeCommandFailed:
    return NodeCommandFailed("h1", NodeError(code=code, message="no"))


@pytest.mark.parametrize(("exc", "expected"), [
    (RetryLater("agent starting", max_delay_s=5), Outcome(True, "agent starting", 5)),
    (NodeUnreachable("h1 is unreachable"), Outcome(True, "h1 is unreachable")),
    (OperationalError("SELECT", {}, Exception("db gone")), None),
    (JobFailed("disk is gone"), Outcome(False, "disk is gone")),
    (UnreadableJob("job x has arguments"), Outcome(False, "job x has arguments")),
    (Conflict("VM web is up"), Outcome(False, "VM web is up")),
    (NotFound("there is no vm with id 1"), Outcome(False, "there is no vm with id 1")),
    (ValueError("bug"), Outcome(False, "the job failed unexpectedly; the engine log has "
                                       "details")),
])
def test_each_failure_is_retried_or_final(exc: Exception, expected: Outcome | None) -> None:
    outcome = outcome_of(exc)
    if expected is None:  # a database that is away for a moment
        assert outcome.retry and "db gone" in outcome.message
    else:
        assert outcome == expected


def test_a_node_failure_is_retried_only_when_the_node_says_it_is_transient() -> None:
    assert outcome_of(_node_failed(ErrorCode.STORAGE_UNREACHABLE)).retry
    final = outcome_of(_node_failed(ErrorCode.NO_SUCH_VM))
    assert not final.retry and final.message == "h1: no"
