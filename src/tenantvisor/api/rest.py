"""The REST API under /v1: tenants (admin), the physical topology, and a tenant's networks.

Every network route first looks the network up *as the caller* (`get_network(id, tenant)`),
so another tenant's network answers 404 exactly like a missing one: a tenant cannot even learn
which ids exist.  The core methods are synchronous and quick, so handlers call them inline on
the event loop; the core either applies a whole change or raises and changes nothing.

No `from __future__ import annotations` here: FastAPI must see the `Auth` dependency alias,
which is local to `build_router`, as a real object rather than a string to resolve later.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Response, status
from pydantic import StrictInt

from tenantvisor import __version__
from tenantvisor.api import schemas as s
from tenantvisor.api.auth import Caller, caller_dependency
from tenantvisor.api.ids import parse_dpid
from tenantvisor.errors import Forbidden, InvalidRequest, NotFound
from tenantvisor.virtual.manager import NetworkManager
from tenantvisor.virtual.model import VirtualNetwork

StatusFn = Callable[[], dict[str, Any]]
LimitsFn = Callable[[int], list[dict[str, Any]]]  # a network's limit meters and their hits
UsageFn = Callable[[int], dict[str, Any]]
"""What a tenant's running vswitches hold and did (Hypervisor.tenant_usage)."""
# done once a network's rollouts under way are over (the daemon's NetworkProgrammer.idle)
RolledOutFn = Callable[[int], Awaitable[None]]
# how long a move's reply may wait for its rollout (a pswitch that does not answer)
MOVE_REPLY_WAIT = 1.0

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": s.ErrorOut, "description": text}
    for code, text in (
        (400, "invalid request"),
        (401, "missing or invalid token"),
        (404, "no such object (or not yours)"),
        (409, "conflicts with existing state"),
        (403, "admin token required / not allowed / a quota exceeded"),
        (422, "body or path does not match the schema"),
    )
}


def _vdpid(value: str) -> int:
    """Path segments carry vdpids in any notation; refuse garbage with a 400, not a 500."""
    try:
        return parse_dpid(value, "vdpid")
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def _path(path: str | list[s.HopIn]) -> str | list[tuple[int, int, int, int]]:
    if isinstance(path, str):
        return path
    return [(h.src_dpid, h.src_port, h.dst_dpid, h.dst_port) for h in path]


def build_router(
    manager: NetworkManager,
    status_fn: StatusFn | None,
    limits_fn: LimitsFn | None = None,
    usage_fn: UsageFn | None = None,
    rolled_out_fn: RolledOutFn | None = None,
) -> APIRouter:
    """Routes bound to `manager`; `status_fn` feeds GET /v1/status when the daemon gives one,
    `limits_fn` the meters of GET /v1/networks/{id}/limits, `usage_fn` the run-time part of
    a tenant's quotas (rules, groups, meters, rates), `rolled_out_fn` what a host's move
    waits for before its reply."""
    router = APIRouter(prefix="/v1", responses=_ERRORS)
    Auth = Annotated[Caller, Depends(caller_dependency(manager))]
    topo = manager.topo

    def network(caller: Caller, net_id: int) -> VirtualNetwork:
        return manager.get_network(net_id, caller.tenant)

    # --- tenants (admin only) ----------------------------------------------------------------
    @router.post(
        "/tenants",
        status_code=status.HTTP_201_CREATED,
        response_model=s.TenantCreated,
        tags=["tenants"],
    )
    async def create_tenant(body: s.TenantCreate, caller: Auth) -> s.TenantCreated:
        """Create a tenant; the reply carries its token, which is not shown again."""
        caller.require_admin()
        t = manager.create_tenant(body.name)
        return s.TenantCreated(id=t.id, name=t.name, token=t.token)

    @router.get("/tenants", response_model=list[s.TenantInfo], tags=["tenants"])
    async def list_tenants(caller: Auth) -> list[s.TenantInfo]:
        caller.require_admin()
        nets = list(manager.networks.values())
        return [s.tenant_info(manager.tenants[i], nets) for i in sorted(manager.tenants)]

    @router.get("/tenants/{tenant_id}", response_model=s.TenantInfo, tags=["tenants"])
    async def get_tenant(tenant_id: int, caller: Auth) -> s.TenantInfo:
        caller.require_admin()
        return s.tenant_info(manager.get_tenant(tenant_id), list(manager.networks.values()))

    @router.delete("/tenants/{tenant_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["tenants"])
    async def delete_tenant(tenant_id: int, caller: Auth) -> Response:
        """Delete a tenant and every network it owns."""
        caller.require_admin()
        manager.delete_tenant(tenant_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- limits and quotas ---------------------------------------------------------------------
    def quotas(tenant_id: int) -> s.QuotasOut:
        t = manager.get_tenant(tenant_id)
        used: dict[str, int] = dict(manager.usage(tenant_id))
        refused = {q: n for (tid, q), n in manager.quota_refused.items() if tid == tenant_id}
        counters: dict[str, float] = {}
        if usage_fn is not None:
            run = usage_fn(tenant_id)
            used.update(run["used"])
            refused.update(run["refused"])
            counters = run["counters"]
        return s.quotas_out(manager.tenant_defaults, t, used, refused, counters)

    @router.get("/quotas", response_model=s.QuotasOut, tags=["tenants"])
    async def my_quotas(caller: Auth) -> s.QuotasOut:
        """The caller's own limits, what it holds and what was refused; for the admin, every
        tenant's defaults."""
        if caller.tenant is None:
            return s.quotas_out(manager.tenant_defaults, None)
        return quotas(caller.tenant.id)

    @router.get("/tenants/{tenant_id}/quotas", response_model=s.QuotasOut, tags=["tenants"])
    async def get_quotas(tenant_id: int, caller: Auth) -> s.QuotasOut:
        """A tenant's limits (its own values over the defaults), what it holds of each quota,
        what was refused, and what the rate limits did.  The admin, or the tenant itself."""
        if caller.tenant is not None and caller.tenant.id != tenant_id:
            raise Forbidden("a tenant may read its own quotas only")
        return quotas(tenant_id)

    @router.put("/tenants/{tenant_id}/quotas", response_model=s.QuotasOut, tags=["tenants"])
    async def set_quotas(
        tenant_id: int,
        caller: Auth,
        body: Annotated[
            dict[str, StrictInt | None],
            Body(description=s.QUOTAS_HELP, examples=[{"vswitches": 16, "msg_rate": 2000}]),
        ],
    ) -> s.QuotasOut:
        """Set the tenant's own limits (admin), replacing those it had; a limit left out or
        null is the default.  Running vswitches apply new rates at once; a quota below what
        the tenant holds refuses more, and takes nothing away."""
        caller.require_admin()
        manager.set_tenant_limits(tenant_id, body)
        return quotas(tenant_id)

    # --- physical ------------------------------------------------------------------------------
    @router.get("/physical/topology", response_model=s.PhysicalTopologyOut, tags=["physical"])
    async def physical_topology(caller: Auth) -> s.PhysicalTopologyOut:
        """Switches, ports and discovered links: what tenants map their vswitches onto."""
        return s.physical_topology(topo)

    # --- networks ------------------------------------------------------------------------------
    @router.post(
        "/networks",
        status_code=status.HTTP_201_CREATED,
        response_model=s.NetworkOut,
        tags=["networks"],
    )
    async def create_network(body: s.NetworkCreate, caller: Auth) -> s.NetworkOut:
        """Create a VN.  A tenant's networks are its own; the admin names the owner."""
        if caller.tenant is not None:
            if body.tenant_id is not None and body.tenant_id != caller.tenant.id:
                raise Forbidden("only the admin may create networks for another tenant")
            owner = caller.tenant.id
        elif body.tenant_id is None:
            raise InvalidRequest("tenant_id is required when the admin creates a network")
        else:
            owner = body.tenant_id
        net = manager.create_network(
            owner, list(body.controller_urls), body.network_address, body.mask, body.scalability
        )
        return s.network_out(topo, net)

    @router.get("/networks", response_model=list[s.NetworkOut], tags=["networks"])
    async def list_networks(caller: Auth) -> list[s.NetworkOut]:
        nets = sorted(manager.list_networks(caller.tenant), key=lambda n: n.id)
        return [s.network_out(topo, n, caller.is_admin) for n in nets]

    @router.get("/networks/{net_id}", response_model=s.NetworkOut, tags=["networks"])
    async def get_network(net_id: int, caller: Auth) -> s.NetworkOut:
        return s.network_out(topo, network(caller, net_id), caller.is_admin)

    @router.delete("/networks/{net_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["networks"])
    async def delete_network(net_id: int, caller: Auth) -> Response:
        manager.remove_network(network(caller, net_id).id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/networks/{net_id}/start", response_model=s.NetworkOut, tags=["networks"])
    async def start_network(net_id: int, caller: Auth) -> s.NetworkOut:
        """Start: vswitches connect to the tenant's controllers and the fabric is programmed."""
        return s.network_out(topo, manager.start_network(network(caller, net_id).id))

    @router.post("/networks/{net_id}/stop", response_model=s.NetworkOut, tags=["networks"])
    async def stop_network(net_id: int, caller: Auth) -> s.NetworkOut:
        return s.network_out(topo, manager.stop_network(network(caller, net_id).id))

    @router.put("/networks/{net_id}/controllers", response_model=s.NetworkOut, tags=["networks"])
    async def set_controllers(net_id: int, body: s.ControllersSet, caller: Auth) -> s.NetworkOut:
        """Replace the controller URLs the network's vswitches use."""
        net = manager.set_controllers(network(caller, net_id).id, list(body.controller_urls))
        return s.network_out(topo, net)

    @router.put("/networks/{net_id}/scalability", response_model=s.NetworkOut, tags=["networks"])
    async def set_scalability(net_id: int, body: s.ScalabilitySet, caller: Auth) -> s.NetworkOut:
        """Set the network's flow-rule reduction level (exact, app, host, hop or lite); a
        started network's physical rules are re-derived with it."""
        net = manager.set_scalability(network(caller, net_id).id, body.level)
        return s.network_out(topo, net)

    @router.get("/networks/{net_id}/limits", response_model=s.LimitsOut, tags=["networks"])
    async def get_limits(net_id: int, caller: Auth) -> s.LimitsOut:
        """The network's data-plane limits (the admin's override over the daemon's
        defaults) and, per limit meter in force, what it let in and dropped."""
        net = network(caller, net_id)
        meters = limits_fn(net.id) if limits_fn is not None else []
        return s.limits_out(net, manager.default_limits, meters, caller.is_admin)

    @router.put("/networks/{net_id}/limits", response_model=s.LimitsOut, tags=["networks"])
    async def set_limits(net_id: int, body: s.LimitsSet, caller: Auth) -> s.LimitsOut:
        """Admin only: replace the network's override of the default data-plane limits
        (fields absent or null: the default applies; 0: unlimited).  A started network's
        meters change in place, make before break."""
        caller.require_admin()
        net = manager.set_limits(network(caller, net_id).id, body.model_dump())
        meters = limits_fn(net.id) if limits_fn is not None else []
        return s.limits_out(net, manager.default_limits, meters, admin=True)

    # --- vswitches, vports, vlinks, hosts ------------------------------------------------------
    @router.post(
        "/networks/{net_id}/switches",
        status_code=status.HTTP_201_CREATED,
        response_model=s.VSwitchOut,
        tags=["switches"],
    )
    async def create_switch(net_id: int, body: s.SwitchCreate, caller: Auth) -> s.VSwitchOut:
        """A vswitch on one pswitch, or a big switch over several (OpenFlow 1.3, joined by
        links among themselves) with its internal routing."""
        sw = manager.create_switch(
            network(caller, net_id).id,
            list(body.dpids),
            body.vdpid,
            routing=body.routing,
            backup_num=body.backup_num,
        )
        return s.vswitch_out(topo, sw)

    @router.put(
        "/networks/{net_id}/switches/{vdpid}/controllers",
        response_model=s.VSwitchOut,
        tags=["switches"],
    )
    async def set_switch_controllers(
        net_id: int, vdpid: str, body: s.SwitchControllersSet, caller: Auth
    ) -> s.VSwitchOut:
        """Give one vswitch its own controllers, e.g. a passive `ptcp:PORT` that `ovs-ofctl`
        can talk to; null returns it to the network's."""
        urls = None if body.controller_urls is None else list(body.controller_urls)
        sw = manager.set_switch_controllers(network(caller, net_id).id, _vdpid(vdpid), urls)
        return s.vswitch_out(topo, sw)

    @router.put(
        "/networks/{net_id}/switches/{vdpid}/routing",
        response_model=s.VSwitchOut,
        tags=["switches"],
    )
    async def set_routing(
        net_id: int, vdpid: str, body: s.RoutingSet, caller: Auth
    ) -> s.VSwitchOut:
        """A big switch's internal routing (OVX setInternalRouting): spf with `backup_num`
        link-disjoint backups, or manual (its routes; kept while it routes by spf)."""
        sw = manager.set_internal_routing(
            network(caller, net_id).id, _vdpid(vdpid), body.algorithm, body.backup_num
        )
        return s.vswitch_out(topo, sw)

    @router.post(
        "/networks/{net_id}/switches/{vdpid}/routes",
        status_code=status.HTTP_201_CREATED,
        response_model=s.RouteOut,
        tags=["switches"],
    )
    async def create_route(
        net_id: int, vdpid: str, body: s.RouteCreate, caller: Auth
    ) -> s.RouteOut:
        """A manual internal route of a big switch (OVX connectRoute), one direction: from
        the src vport's pswitch to the dst vport's through the switch's own pswitches.
        `both_ways` adds the mirror route too (its id is this one's + 1)."""
        sw_id = _vdpid(vdpid)
        r = manager.connect_route(
            network(caller, net_id).id,
            sw_id,
            body.src_vport,
            body.dst_vport,
            _path(body.path),
            body.priority,
            both_ways=body.both_ways,
        )
        return s.route_out(topo, r)

    @router.delete(
        "/networks/{net_id}/switches/{vdpid}/routes/{route_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        tags=["switches"],
    )
    async def delete_route(
        net_id: int, vdpid: str, route_id: int, caller: Auth, both_ways: bool = False
    ) -> Response:
        """Remove a route; `?both_ways=true` also removes its mirror (same links backwards,
        same priority)."""
        manager.disconnect_route(
            network(caller, net_id).id, _vdpid(vdpid), route_id, both_ways=both_ways
        )
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.delete(
        "/networks/{net_id}/switches/{vdpid}",
        status_code=status.HTTP_204_NO_CONTENT,
        tags=["switches"],
    )
    async def delete_switch(net_id: int, vdpid: str, caller: Auth) -> Response:
        """Remove a vswitch with its vports, the vlinks ending on it and its hosts."""
        manager.remove_switch(network(caller, net_id).id, _vdpid(vdpid))
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post(
        "/networks/{net_id}/ports",
        status_code=status.HTTP_201_CREATED,
        response_model=s.VPortCreated,
        tags=["ports"],
    )
    async def create_port(net_id: int, body: s.PortCreate, caller: Auth) -> s.VPortCreated:
        """Map physical port (dpid, port) into the vswitch on that pswitch (OVX createPort).
        `exclusive`: the vport holds the port alone and admits any source MAC and VLAN there
        (409 if another vport or host of any tenant uses it)."""
        net = network(caller, net_id)
        vp = manager.create_port(net.id, body.dpid, body.port, body.vdpid, body.exclusive)
        owner = next(sw.vdpid for sw in net.switches.values() if sw.ports.get(vp.number) is vp)
        return s.vport_created(owner, vp)

    @router.delete(
        "/networks/{net_id}/switches/{vdpid}/ports/{vport}",
        status_code=status.HTTP_204_NO_CONTENT,
        tags=["ports"],
    )
    async def delete_port(net_id: int, vdpid: str, vport: int, caller: Auth) -> Response:
        manager.remove_port(network(caller, net_id).id, _vdpid(vdpid), vport)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post(
        "/networks/{net_id}/links",
        status_code=status.HTTP_201_CREATED,
        response_model=s.VLinkOut,
        tags=["links"],
    )
    async def create_link(net_id: int, body: s.LinkCreate, caller: Auth) -> s.VLinkOut:
        """Join two link vports of different vswitches: over the shortest physical path and
        `backup_num` link-disjoint backups (spf), or over paths set later (manual)."""
        net = network(caller, net_id)
        lk = manager.create_link(
            net.id,
            body.src_vdpid,
            body.src_vport,
            body.dst_vdpid,
            body.dst_vport,
            algorithm=body.algorithm,
            backup_num=body.backup_num,
        )
        return s.vlink_out(topo, net, lk)

    @router.put(
        "/networks/{net_id}/links/{link_id}/paths/{priority}",
        response_model=s.VLinkOut,
        tags=["links"],
    )
    async def set_link_path(
        net_id: int, link_id: int, priority: int, body: s.LinkPathSet, caller: Auth
    ) -> s.VLinkOut:
        """Give a manual vlink the path with this priority (OVX setLinkPath): the highest
        priority whose links are up carries it, the others are backups.  The path runs from
        the src vport's pswitch to the dst vport's (or the other way: stored reversed); it
        replaces a path with the same priority or the same links."""
        net = network(caller, net_id)
        lk = manager.set_link_path(net.id, link_id, _path(body.path), priority)
        return s.vlink_out(topo, net, lk)

    @router.delete(
        "/networks/{net_id}/links/{link_id}/paths/{priority}",
        status_code=status.HTTP_204_NO_CONTENT,
        tags=["links"],
    )
    async def delete_link_path(net_id: int, link_id: int, priority: int, caller: Auth) -> Response:
        """Take a path off a manual vlink; with none left the vlink is down."""
        manager.remove_link_path(network(caller, net_id).id, link_id, priority)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.delete(
        "/networks/{net_id}/links/{link_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        tags=["links"],
    )
    async def delete_link(net_id: int, link_id: int, caller: Auth) -> Response:
        manager.remove_link(network(caller, net_id).id, link_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post(
        "/networks/{net_id}/hosts",
        status_code=status.HTTP_201_CREATED,
        response_model=s.HostOut,
        tags=["hosts"],
    )
    async def create_host(net_id: int, body: s.HostCreate, caller: Auth) -> s.HostOut:
        """Attach a host (by MAC) to an edge vport."""
        h = manager.connect_host(network(caller, net_id).id, body.vdpid, body.vport, body.mac)
        return s.host_out(h)

    @router.post(
        "/networks/{net_id}/hosts/{host_id}/move",
        response_model=s.HostOut,
        tags=["hosts"],
    )
    async def move_host(net_id: int, host_id: int, body: s.HostMove, caller: Auth) -> s.HostOut:
        """The host is now on this physical edge port (a live-migrated VM, as the cloud's
        orchestrator knows): its vport follows it, make-before-break, and its tenant sees
        nothing change.  Admin only: where a host really is is the provider's knowledge (a
        tenant moving its vport onto another's port would reach that port)."""
        caller.require_admin()
        net = network(caller, net_id)
        h = manager.move_host(net.id, host_id, body.dpid, body.port)
        # the reply once the network has followed the host (every pswitch confirmed the
        # move's rollout), so the orchestrator may then take the source's port away; and
        # building and sending it is no longer in the way of the BARRIER replies that
        # arrived while the store wrote (the traffic waits on them, not on the reply)
        if rolled_out_fn is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rolled_out_fn(net.id), MOVE_REPLY_WAIT)
        else:
            await asyncio.sleep(0)
        return s.host_out(h, admin=True)

    @router.get("/networks/{net_id}/hosts/{host_id}", response_model=s.HostOut, tags=["hosts"])
    async def get_host(net_id: int, host_id: int, caller: Auth) -> s.HostOut:
        """One host; its physical `location` (where it moved to, null at home) for the admin
        only.  An orchestrator waiting for a detected move reads this, not the network."""
        net = network(caller, net_id)
        h = net.hosts.get(host_id)
        if h is None:
            raise NotFound(f"no host {host_id} in network {net.id}")
        return s.host_out(h, admin=caller.is_admin)

    @router.delete(
        "/networks/{net_id}/hosts/{host_id}",
        status_code=status.HTTP_204_NO_CONTENT,
        tags=["hosts"],
    )
    async def delete_host(net_id: int, host_id: int, caller: Auth) -> Response:
        manager.disconnect_host(network(caller, net_id).id, host_id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    # --- daemon status (admin) -----------------------------------------------------------------
    @router.get("/status", tags=["status"])
    async def get_status(caller: Auth) -> dict[str, Any]:
        """The daemon's status (sessions, counters); admin only, it spans every tenant."""
        caller.require_admin()
        if status_fn is not None:
            return status_fn()
        return {
            "version": __version__,
            "tenants": len(manager.tenants),
            "networks": len(manager.networks),
            "physical_switches": len(topo.switches),
        }

    return router
