"""The domain's exceptions. One place (the API's fault mapping) turns them into HTTP faults."""

from __future__ import annotations


class OvertError(Exception):
    """Base of the domain's errors: `reason` is short (oVirt's fault reason), `detail` says why."""

    reason = "Operation Failed"
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidInput(OvertError):
    reason = "Incomplete parameters"
    status = 400


class NotFound(OvertError):
    reason = "Not Found"
    status = 404


class Conflict(OvertError):
    """The request is well formed but the current state does not allow it."""

    reason = "Operation Failed"
    status = 409


class NotAuthenticated(OvertError):
    reason = "Unauthorized"
    status = 401


class Forbidden(OvertError):
    reason = "Forbidden"
    status = 403


class NoHostAvailable(Conflict):
    """The scheduler found no host; `detail` lists why each candidate was filtered out."""


class Unavailable(OvertError):
    """A dependency (database, node, broker) cannot be reached now; retrying may succeed."""

    reason = "Service Unavailable"
    status = 503
