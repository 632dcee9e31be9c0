"""The VNM's HTTP face: REST under /v1, OVX-compatible JSON-RPC at /tenant and /status.

`create_app` builds an app around one NetworkManager; nothing is global, so tests and the
daemon can run several.  Error handling is centralised here so every refusal has one shape:
REST answers `{"error": message}` with the status the core's exception carries, JSON-RPC
answers a JSON-RPC error object.  Bad input is always a 4xx; anything unexpected is logged
with its traceback and answered with a bare 500 that leaks nothing about the internals.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tenantvisor import __version__
from tenantvisor.api import jsonrpc
from tenantvisor.api.auth import CHALLENGE, SECURITY_SCHEMES, authenticate
from tenantvisor.api.rest import build_router
from tenantvisor.errors import TenantvisorError, Unauthorized
from tenantvisor.virtual.manager import NetworkManager

if TYPE_CHECKING:
    from tenantvisor.dedicated.manager import DnbManager

log = logging.getLogger(__name__)

_RPC_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["jsonrpc", "method"],
                "properties": {
                    "jsonrpc": {"type": "string", "enum": ["2.0"]},
                    "id": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "method": {"type": "string"},
                    "params": {"type": "object"},
                },
            },
            "example": {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "createNetwork",
                "params": {
                    "controllerUrls": ["tcp:127.0.0.1:6653"],
                    "networkAddress": "10.0.0.0",
                    "mask": 16,
                },
            },
        }
    },
}


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    """One readable line per problem, `where: what`; malformed JSON is a 400, the rest 422."""
    status = 422
    parts: list[str] = []
    for err in exc.errors():
        loc = [str(x) for x in err.get("loc", ()) if x != "body"]
        if err.get("type") == "json_invalid":
            status = 400
            reason = err.get("ctx", {}).get("error", "")
            parts.append(f"request body is not valid JSON: {reason}".rstrip(": "))
            continue
        where = ".".join(loc) or "body"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")  # our own validators
        parts.append(f"{where}: {msg}")
    return status, "; ".join(parts) or "invalid request"


def create_app(
    manager: NetworkManager,
    status: Callable[[], dict[str, Any]] | None = None,
    metrics: Callable[[], bytes] | None = None,
    dnb: DnbManager | None = None,
    limits: Callable[[int], list[dict[str, Any]]] | None = None,
    usage: Callable[[int], dict[str, Any]] | None = None,
    rolled_out: Callable[[int], Awaitable[None]] | None = None,
) -> FastAPI:
    """Build the API app around `manager`; `status` (optional) feeds GET /v1/status,
    `metrics` (optional) GET /metrics, in Prometheus' text format, `limits` (optional)
    the limit meters of GET /v1/networks/{id}/limits, `usage` (optional) the run-time
    part of GET /v1/tenants/{id}/quotas, and `rolled_out` (optional) what a host's move
    waits for before it replies (the network's rollouts under way are over)."""
    app = FastAPI(
        title="tenantvisor",
        version=__version__,
        description=(
            "Per-tenant virtual networks over a shared OpenFlow fabric. REST under /v1; "
            "OpenVirteX-compatible JSON-RPC 2.0 at /tenant and /status. Authenticate with "
            "`Authorization: Bearer <token>` or HTTP Basic with the token as password."
        ),
    )
    app.include_router(build_router(manager, status, limits, usage, rolled_out))
    if dnb is not None:  # dedicated bridges on compute nodes (/v1/nodes, /v1/dnb/...)
        from tenantvisor.api.dnb import build_dnb_router

        app.include_router(build_dnb_router(manager, dnb))

    tenant_rpc = jsonrpc.tenant_service(manager)
    status_rpc = jsonrpc.status_service(manager)

    async def rpc(service: jsonrpc.Service, request: Request) -> Response:
        try:
            caller = authenticate(manager, request)
        except Unauthorized as exc:
            body = jsonrpc.error_reply(None, jsonrpc.UNAUTHORIZED, str(exc))
            return JSONResponse(body, status_code=401, headers={"WWW-Authenticate": CHALLENGE})
        reply = service.handle(caller, await request.body())
        if reply is None:
            return Response(status_code=204)
        return JSONResponse(reply)

    if metrics is not None:
        scrape = metrics

        @app.get("/metrics", tags=["status"], response_class=Response)
        async def prometheus(request: Request) -> Response:
            """Prometheus metrics (admin token: labels name every tenant)."""
            try:
                caller = authenticate(manager, request)
            except Unauthorized as exc:
                return JSONResponse({"error": str(exc)}, 401, {"WWW-Authenticate": CHALLENGE})
            if caller.tenant is not None:
                return JSONResponse({"error": "this operation needs the admin token"}, 403)
            return Response(scrape(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/tenant", tags=["openvirtex"], openapi_extra={"requestBody": _RPC_BODY})
    async def ovx_tenant(request: Request) -> Response:
        """OVX tenant service: createNetwork, createSwitch, createPort, connectLink, ..."""
        return await rpc(tenant_rpc, request)

    @app.post("/status", tags=["openvirtex"], openapi_extra={"requestBody": _RPC_BODY})
    async def ovx_status(request: Request) -> Response:
        """OVX monitoring service: getPhysicalTopology, getVirtualTopology, ..."""
        return await rpc(status_rpc, request)

    @app.exception_handler(TenantvisorError)
    async def on_refused(request: Request, exc: TenantvisorError) -> Response:
        headers = {"WWW-Authenticate": CHALLENGE} if isinstance(exc, Unauthorized) else None
        return JSONResponse({"error": str(exc)}, status_code=exc.http_status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        code, message = _validation_message(exc)
        return JSONResponse({"error": message}, status_code=code)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Last resort: log the traceback here, answer a bare 500 (no internals leak).

        A middleware rather than an `Exception` handler: Starlette re-raises after running
        such a handler, so the server would log the same crash twice.
        """
        try:
            return await call_next(request)
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
            return JSONResponse({"error": "internal error"}, status_code=500)

    def openapi() -> dict[str, Any]:
        """The default document plus both auth schemes, so /docs can authorize requests."""
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            schema["security"] = [{"bearerAuth": []}, {"basicAuth": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
