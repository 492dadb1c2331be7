"""How a job's handler tells the worker what kind of failure it met."""

from __future__ import annotations


class JobFailed(Exception):
    """The job cannot succeed; the message says why, for the administrator."""


class RetryLater(Exception):
    """A transient failure: the worker runs the job again after a backoff."""
