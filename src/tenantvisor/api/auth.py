"""Who is calling: a bearer token, or HTTP Basic with the token as the password.

Basic exists for OpenVirteX's `ovxctl`, which sends `-u USER` plus a password through
urllib's HTTPBasicAuthHandler.  That handler only sends credentials after a 401 carrying a
`WWW-Authenticate: Basic realm=...` challenge, so every 401 we send names Basic last (old
urllib2 reads the last scheme of the header).  The user name is ignored: the token alone
says who the caller is, exactly as for bearer tokens.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from tenantvisor.errors import Forbidden, Unauthorized
from tenantvisor.virtual.manager import NetworkManager
from tenantvisor.virtual.model import Tenant

REALM = "tenantvisor"
CHALLENGE = f'Bearer realm="{REALM}", Basic realm="{REALM}"'

# How the OpenAPI document describes the two schemes (app.py adds them to the spec).  The
# header itself is parsed by `token_from_header`: one code path for REST and JSON-RPC.
SECURITY_SCHEMES = {
    "bearerAuth": {"type": "http", "scheme": "bearer", "description": "tenant or admin token"},
    "basicAuth": {
        "type": "http",
        "scheme": "basic",
        "description": "any user name, the token as password (what ovxctl sends)",
    },
}


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: `tenant` is None for the admin."""

    tenant: Tenant | None

    @property
    def is_admin(self) -> bool:
        return self.tenant is None

    def require_admin(self) -> None:
        if self.tenant is not None:
            raise Forbidden("this operation needs the admin token")


def token_from_header(authorization: str | None) -> str | None:
    """Extract the token from `Bearer T` or `Basic base64(user:T)`; None when absent/garbled."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value or None
    if scheme.lower() == "basic":
        try:
            decoded = b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        _user, sep, password = decoded.partition(":")
        return password if sep and password else None
    return None


def authenticate(manager: NetworkManager, request: Request) -> Caller:
    """Resolve the request's credentials to a caller; raise Unauthorized otherwise."""
    token = token_from_header(request.headers.get("authorization"))
    if token is None:
        raise Unauthorized(
            "missing or invalid credentials: send 'Authorization: Bearer <token>' "
            "or HTTP Basic with the token as password"
        )
    return Caller(manager.authenticate(token))


def caller_dependency(manager: NetworkManager) -> Callable[[Request], Awaitable[Caller]]:
    """A FastAPI dependency bound to one manager (apps never share a global manager)."""

    async def dependency(request: Request) -> Caller:
        return authenticate(manager, request)

    return dependency
