"""What the store raises.  Every write is one OVSDB transaction: when one of these is raised
the transaction did not commit (`StoreUnavailable` after the request left is the exception:
see its docstring)."""

from __future__ import annotations

from tenantvisor.errors import Conflict, TenantvisorError, Unavailable


class StoreError(TenantvisorError):
    """The store refused a change (a schema constraint, a missing parent row, a bad value)
    or cannot be used (wrong database, incompatible schema version): nothing was written."""

    http_status = 500


class StoreUnavailable(StoreError, Unavailable):
    """No OVSDB server answered in time; the message names the remote.

    Raised before anything was sent (not connected, never synced), nothing was written.
    Raised because the reply did not come within the timeout after the transaction was sent,
    the outcome is unknown: OVSDB applies a transaction whole or not at all, so either all
    of it is in the database or none of it.  Writing the same intent again is always safe
    (every write is an idempotent "make it so")."""

    http_status = 503


class StoreConflict(StoreError, Conflict):
    """A uniqueness index of the schema refused the change: another row (usually another
    writer's) already holds that key.  Nothing was written."""

    http_status = 409


class AllocationConflict(StoreConflict):
    """An id this writer wanted in an allocation space is held by another owner: another
    instance allocated it first (the schema's (space, id) index).  Nothing was written."""


class ServerError(StoreError):
    """An embedded ovsdb-server (or a cluster member) could not be created, converted,
    started or stopped; the message says why and quotes the server's log."""


__all__ = [
    "AllocationConflict",
    "ServerError",
    "StoreConflict",
    "StoreError",
    "StoreUnavailable",
]
