"""Exceptions raised by the core when intent is refused.

The API edge turns them into HTTP 4xx / JSON-RPC errors; nothing below the API knows about
HTTP.  Each carries a message written for the operator or tenant who sent the request.
"""


class TenantvisorError(Exception):
    """Base: a request was refused and nothing was changed."""

    http_status = 400


class InvalidRequest(TenantvisorError):
    """The request is malformed or names values outside their range."""

    http_status = 400


class NotFound(TenantvisorError):
    """The request names an object that does not exist (or that the caller may not see)."""

    http_status = 404


class Conflict(TenantvisorError):
    """The request collides with existing state (duplicate MAC, port already used, ...)."""

    http_status = 409


class Forbidden(TenantvisorError):
    """The caller is authenticated but may not touch this object."""

    http_status = 403


class QuotaExceeded(Forbidden):
    """The tenant holds as many of something (networks, vswitches, ...) as its quota allows;
    the message names the quota, what the tenant holds and the limit.  403: the request is
    understood and allowed in kind, but the tenant may not have more (raising the quota is
    the admin's call); 429 is kept for rates, which retrying later can get past."""

    http_status = 403

    def __init__(self, quota: str, message: str) -> None:
        super().__init__(message)
        self.quota = quota


class Unauthorized(TenantvisorError):
    """No valid token was presented."""

    http_status = 401


class Unavailable(TenantvisorError):
    """A part the request needs (the intent store) does not answer; nothing was changed."""

    http_status = 503


class ConcurrentChange(TenantvisorError):
    """Another instance sharing the store wrote a clashing change (the same new id) at the
    same moment, and retrying did not get past it; nothing was changed."""

    http_status = 409
