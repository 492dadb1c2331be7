"""How a job's handler tells the worker what kind of failure it met."""

from __future__ import annotations


class JobFailed(Exception):
    """The job cannot succeed; the message says why, for the administrator."""


class RetryLater(Exception):
    """A transient failure: the worker runs the job again after a backoff.

    `max_delay_s` caps the backoff for handlers that wait on something about to happen
    (a node's agent still starting) and would rather look again soon.
    """

    def __init__(self, message: str, *, max_delay_s: float | None = None) -> None:
        super().__init__(message)
        self.max_delay_s = max_delay_s
