"""JSON-RPC 2.0 endpoints compatible with OpenVirteX, so `ovxctl` and OVX scripts keep working.

Mirrors OVX's `/tenant` (TenantHandler) and `/status` (MonitoringHandler) services: the same
method names, parameter names (`tenantId`, `dpids`, `srcDpid`, `backup_num`, ...) and reply
keys, which OVX builds from its elements' `getDBObject()`.  OVX's `tenantId` is our network id.

Where OVX is loose we are exact, and say so in the error:
- OVX answers every JSON-RPC reply, errors included, with HTTP 200 (AbstractService
  .writeJSONObject); so do we, except 401 for bad credentials (Jetty's Basic auth in OVX).
- OVX answers a parse error with id 0; the JSON-RPC 2.0 spec says null, which we send.
- Invalid input, including every intent refusal from the core, is -32602 with the core's
  message; `data` carries the HTTP status and error kind for programs that want them.
- `algorithm` and `backup_num` may be left out of `connectLink` ("spf", 0); `backup_num`
  is 0-8 (OVX takes a byte), priorities of paths and routes 0-65535 (OVX: 0-127).
- A big switch made by `createSwitch` routes by spf with 1 backup, OVX's default.
- `connectRoute` makes a route both ways, as OVX does: two one-way routes in our intent, the
  one back with the next id; the reply's `routeId` is the first, and `disconnectRoute` with it
  removes both.
- `createNetwork` takes an optional `scalability` (a flow-rule reduction level: exact, app,
  host, hop, lite; OVX has none).  `setScalability` (`tenantId`, `scalability`) changes it,
  and Libera's `setOVXmode` (`tenantId`, `mode`) does with Libera's numbers: 0 exact, 1 lite,
  2 hop.  Both answer the network (OVXNetwork.getDBObject) plus its `scalability`.
- Physical link ids in the mapping replies are the `linkId`s of `getPhysicalTopology` (the
  index of the link direction in its list), as OVX's are its own physical link ids.
- `createPort` takes an optional boolean `exclusive` (OVX has none; default false): the vport
  holds its physical port alone and admits every frame there (any source MAC, any VLAN),
  refused (-32602, `data.http_status` 409) on a port another vport or host of any network
  uses.  Its reply, and `getVirtualSwitchPorts` (`tenantId`, `vdpid`: per vport number its
  `dpid` and `port`, as the os-libera fork answers, plus `exclusive`), show it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from tenantvisor.api.auth import Caller
from tenantvisor.api.ids import dpid_str, ip_to_int, mac_to_int, parse_dpid
from tenantvisor.compile.paths import internal_routes, vlink_candidates
from tenantvisor.errors import InvalidRequest, TenantvisorError
from tenantvisor.mapping.paths import Hop, Path, reverse
from tenantvisor.physical.topology import PhysicalTopology
from tenantvisor.virtual.manager import NetworkManager, scalability_level
from tenantvisor.virtual.model import Host, PathHops, Route, VirtualNetwork, VLink, VSwitch
from tenantvisor.virtual.urls import parse_controller_url

log = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNAUTHORIZED = -32001  # server-defined range; HTTP 401 goes with it

OVX_VDPID_BASE = 0xA42305 << 32  # OVXNetwork.createSwitch: 00:a4:23:05:<index>
OVX_TENANT_NAME = "ovx"  # owner of networks the admin token creates through JSON-RPC
OVX_MODES = {0: "exact", 1: "lite", 2: "hop"}  # Libera's setOVXmode numbers


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def error_reply(req_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": RpcError(code, message, data).to_json()}


class Params:
    """Typed access to named params, refusing wrong types with -32602 (OVX's fetchField)."""

    def __init__(self, method: str, params: dict[str, Any]) -> None:
        self.method = method
        self.params = params

    def _bad(self, name: str, expected: str) -> RpcError:
        return RpcError(
            INVALID_PARAMS,
            f"{self.method}: parameter {name!r} must be {expected}, got {self.params[name]!r}",
        )

    def has(self, name: str) -> bool:
        return self.params.get(name) is not None

    def _get(self, name: str) -> Any:
        if not self.has(name):
            raise RpcError(INVALID_PARAMS, f"{self.method}: missing required parameter {name!r}")
        return self.params[name]

    def integer(self, name: str) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(name, "an integer")
        return value

    def integer_or(self, name: str, default: int) -> int:
        return self.integer(name) if self.has(name) else default

    def dpid(self, name: str) -> int:
        """A dpid: OVX clients send Java longs, so negative values are two's complement."""
        value = self._get(name)
        if isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < 0:
            value += 1 << 64
        try:
            return parse_dpid(value, name)
        except ValueError as exc:
            raise RpcError(INVALID_PARAMS, f"{self.method}: {exc}") from None

    def dpid_list(self, name: str) -> list[int]:
        value = self._get(name)
        if not isinstance(value, list):
            raise self._bad(name, "a list of dpids")
        return [Params(self.method, {name: v}).dpid(name) for v in value]

    def flag_or(self, name: str, default: bool) -> bool:
        """An optional boolean: JSON true or false only (a 1 or "yes" is refused)."""
        if not self.has(name):
            return default
        value = self.params[name]
        if not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return value

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise self._bad(name, "a string")
        return value

    def text_list(self, name: str) -> list[str]:
        value = self._get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(name, "a list of strings")
        return list(value)

    def raw(self, name: str) -> Any:
        return self._get(name)


Handler = Callable[[Caller, Params], Any]


class Service:
    """One JSON-RPC endpoint: a table of methods and the envelope handling around them."""

    def __init__(self, name: str, methods: dict[str, Handler], no_params: set[str]) -> None:
        self.name = name
        self.methods = methods
        self.no_params = no_params  # OVX NO_PARAMS methods: params, if any, are ignored

    def handle(self, caller: Caller, body: bytes) -> dict[str, Any] | None:
        """Answer one request body; None for a notification (no id: nothing to send back)."""
        try:
            request = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return error_reply(None, PARSE_ERROR, f"parse error: {exc}")
        if isinstance(request, list):
            return error_reply(None, INVALID_REQUEST, "batch requests are not supported")
        if not isinstance(request, dict):
            return error_reply(None, INVALID_REQUEST, "a request must be a JSON object")
        req_id = request.get("id")
        if not isinstance(req_id, str | int | float | type(None)) or isinstance(req_id, bool):
            return error_reply(None, INVALID_REQUEST, "id must be a string, a number or null")
        if request.get("jsonrpc") != "2.0":
            return error_reply(req_id, INVALID_REQUEST, 'the member "jsonrpc" must be "2.0"')
        method = request.get("method")
        if not isinstance(method, str):
            return error_reply(req_id, INVALID_REQUEST, 'the member "method" must be a string')
        params = request.get("params", {})
        if not isinstance(params, dict | list):
            return error_reply(req_id, INVALID_REQUEST, '"params" must be an object or an array')
        notification = "id" not in request
        reply = self._call(caller, req_id, method, params)
        return None if notification else reply

    def _call(self, caller: Caller, req_id: Any, method: str, params: Any) -> dict[str, Any]:
        fn = self.methods.get(method)
        if fn is None:
            return error_reply(
                req_id, METHOD_NOT_FOUND, f"method {method!r} not found on /{self.name}"
            )
        if method in self.no_params:
            params = {}
        elif not isinstance(params, dict):
            # OVX's wording (TenantHandler.process): its handlers take named params only.
            return error_reply(req_id, INVALID_PARAMS, f"{method} requires: OBJECT; got: ARRAY")
        try:
            result = fn(caller, Params(method, params))
        except RpcError as exc:
            return {"jsonrpc": "2.0", "id": req_id, "error": exc.to_json()}
        except TenantvisorError as exc:
            data = {"http_status": exc.http_status, "kind": type(exc).__name__}
            return error_reply(req_id, INVALID_PARAMS, str(exc), data)
        except Exception:
            log.exception("JSON-RPC %s on /%s failed", method, self.name)
            return error_reply(req_id, INTERNAL_ERROR, "internal error")
        return {"jsonrpc": "2.0", "id": req_id, "result": result}


# --- reply shapes (OVX getDBObject / serializers) ------------------------------------------------
def network_db(net: VirtualNetwork) -> dict[str, Any]:
    """OVXNetwork.getDBObject: networkAddress is the integer address (unsigned here)."""
    return {
        "tenantId": net.id,
        "controllerUrls": list(net.controller_urls),
        "networkAddress": ip_to_int(net.network_address),
        "mask": net.mask,
        "isBooted": net.started,
    }


def switch_db(net: VirtualNetwork, sw: VSwitch) -> dict[str, Any]:
    """OVXSwitch.getDBObject plus tenantId (CreateOVXSwitch); a big switch adds its routing
    (OVXBigSwitch.getDBObject)."""
    db: dict[str, Any] = {"vdpid": sw.vdpid, "dpids": list(sw.dpids), "tenantId": net.id}
    if sw.is_big:
        db["algorithm"] = sw.routing
        db["backup_num"] = sw.backup_num
    return db


def _hops(hops: Path | PathHops) -> list[dict[str, int]]:
    """Physical links as Link.getDBObject writes them (without their ids, as OVX drops them)."""
    return [
        {"srcDpid": a, "srcPort": b, "dstDpid": c, "dstPort": d}
        for a, b, c, d in (
            (h.src_dpid, h.src_port, h.dst_dpid, h.dst_port) if isinstance(h, Hop) else h
            for h in hops
        )
    ]


def link_db(manager: NetworkManager, net: VirtualNetwork, lk: VLink) -> dict[str, Any]:
    """OVXLink.getDBObject plus tenantId (ConnectOVXLink): ends are virtual, `path` is the
    physical path carrying the vlink now (null: none), `priority` that path's (0 for spf)."""
    candidates = vlink_candidates(manager.topo, net, lk)
    primary = candidates[0] if candidates else None
    priority = 0
    if primary is not None and lk.algorithm == "manual":
        key = tuple((h.src_dpid, h.src_port, h.dst_dpid, h.dst_port) for h in primary)
        priority = max(p.priority for p in lk.paths if p.hops == key)
    return {
        "srcDpid": lk.src.vdpid,
        "srcPort": lk.src.vport,
        "dstDpid": lk.dst.vdpid,
        "dstPort": lk.dst.vport,
        "linkId": lk.id,
        "priority": priority,
        "algorithm": lk.algorithm,
        "backup_num": lk.backup_num,
        "path": None if primary is None else _hops(primary),
        "tenantId": net.id,
    }


def route_db(net: VirtualNetwork, sw: VSwitch, r: Route) -> dict[str, Any]:
    """SwitchRoute.getDBObject plus tenantId (ConnectOVXRoute)."""
    return {
        "vdpid": sw.vdpid,
        "srcPort": r.src_vport,
        "dstPort": r.dst_vport,
        "priority": r.path.priority,
        "routeId": r.id,
        "path": _hops(r.path.hops),
        "tenantId": net.id,
    }


LIMIT_PARAMS = {
    "vport_pps": "vportPps", "vport_kbps": "vportKbps",
    "vlink_pps": "vlinkPps", "vlink_kbps": "vlinkKbps",
}  # fmt: skip


def limits_db(manager: NetworkManager, net: VirtualNetwork) -> dict[str, Any]:
    """A network's limits in OVX's spelling: what the admin set for it (`override`) and
    what is in force (`effective`, over the daemon's defaults)."""
    in_force = manager.effective_limits(net).given()
    return {
        "tenantId": net.id,
        "override": {LIMIT_PARAMS[k]: v for k, v in net.limits.given().items()},
        "effective": {LIMIT_PARAMS[k]: v for k, v in in_force.items()},
    }


def _link_ids(topo: PhysicalTopology) -> dict[tuple[int, int, int, int], int]:
    """Physical link ids as getPhysicalTopology numbers them."""
    return {
        (lk.src_dpid, lk.src_port, lk.dst_dpid, lk.dst_port): i for i, lk in enumerate(topo.links())
    }


def _ids(ids: dict[tuple[int, int, int, int], int], path: Path) -> list[int]:
    """A path's links by id; a direction LLDP has not proved yet is named by the other's."""
    out = []
    for h in path:
        key = (h.src_dpid, h.src_port, h.dst_dpid, h.dst_port)
        i = ids.get(key, ids.get((h.dst_dpid, h.dst_port, h.src_dpid, h.src_port)))
        if i is not None:
            out.append(i)
    return out


def switch_mapping(topo: PhysicalTopology, net: VirtualNetwork) -> dict[str, Any]:
    """GetVirtualSwitchMapping: per vswitch name its pswitches, and for a big switch the
    physical links its current internal routes use (OVXBigSwitch.getAllLinks)."""
    ids = _link_ids(topo)
    out: dict[str, Any] = {}
    for vdpid in sorted(net.switches):
        sw = net.switches[vdpid]
        used: set[int] = set()
        for a in sw.ports.values():
            for b in sw.ports.values():
                if a.dpid != b.dpid:
                    routes = internal_routes(topo, sw, a.dpid, b.number)
                    if routes:
                        used.update(_ids(ids, routes[0]))
        out[dpid_str(vdpid)] = {
            "switches": [dpid_str(d) for d in sw.dpids],
            "links": sorted(used),
        }
    return out


def link_mapping(topo: PhysicalTopology, net: VirtualNetwork) -> dict[str, list[list[int]]]:
    """GetVirtualLinkMapping: per vlink id, the physical link ids of its current path in each
    direction (src -> dst, then back); empty lists while the vlink has no path."""
    ids = _link_ids(topo)
    out: dict[str, list[list[int]]] = {}
    for i in sorted(net.links):
        candidates = vlink_candidates(topo, net, net.links[i])
        if candidates:
            out[str(i)] = [_ids(ids, candidates[0]), _ids(ids, reverse(candidates[0]))]
        else:
            out[str(i)] = [[], []]
    return out


def virtual_topology(net: VirtualNetwork) -> dict[str, Any]:
    """GetVirtualTopology: switch names, and each vlink once per direction (as OVX keeps them)."""
    links: list[dict[str, Any]] = []
    for i in sorted(net.links):
        lk = net.links[i]
        for src, dst in ((lk.src, lk.dst), (lk.dst, lk.src)):
            links.append(
                {
                    "linkId": lk.id,
                    "tenantId": net.id,
                    "src": {"dpid": dpid_str(src.vdpid), "port": src.vport},
                    "dst": {"dpid": dpid_str(dst.vdpid), "port": dst.vport},
                }
            )
    return {"switches": [dpid_str(v) for v in sorted(net.switches)], "links": links}


def ovx_vdpid(net: VirtualNetwork) -> int:
    """The vdpid OVX would choose: ON.Lab's OUI 00:a4:23:05 + the lowest free index (from 1).

    OVX scripts hard-code these (`connectLink 1 00:a4:23:05:00:00:00:01 1 ...` right after
    `createSwitch`), so JSON-RPC picks them the same way; REST keeps the core's own scheme.
    """
    n = 1
    while (OVX_VDPID_BASE | n) in net.switches:
        n += 1
    return OVX_VDPID_BASE | n


# --- services ------------------------------------------------------------------------------------
def tenant_service(manager: NetworkManager) -> Service:
    """/tenant: building and tearing down virtual networks (OVX TenantHandler)."""

    def net_of(caller: Caller, p: Params) -> VirtualNetwork:
        return manager.get_network(p.integer("tenantId"), caller.tenant)

    def owner_for(caller: Caller) -> tuple[int, bool]:
        """Tenant callers own what they create; the admin's OVX scripts use tenant 'ovx'."""
        if caller.tenant is not None:
            return caller.tenant.id, False
        for t in manager.tenants.values():
            if t.name == OVX_TENANT_NAME:
                return t.id, False
        return manager.create_tenant(OVX_TENANT_NAME).id, True

    def create_network(caller: Caller, p: Params) -> dict[str, Any]:
        urls = p.text_list("controllerUrls")
        address = p.text("networkAddress") if p.has("networkAddress") else None
        mask = p.integer("mask") if p.has("mask") else None
        level = p.text("scalability") if p.has("scalability") else "exact"
        for url in urls:  # refuse bad input before the 'ovx' tenant might be created
            parse_controller_url(url)
        scalability_level(level)
        owner, created = owner_for(caller)
        try:
            net = manager.create_network(owner, urls, address, mask, level)
        except Exception:
            if created:
                manager.delete_tenant(owner)
            raise
        return network_db(net)

    def create_switch(caller: Caller, p: Params) -> dict[str, Any]:
        net = net_of(caller, p)
        dpids = p.dpid_list("dpids")
        # CreateOVXSwitch reads "vdpid"; ovxctl sends it as "dpid".  0 means "choose one".
        vdpid = p.dpid("vdpid") if p.has("vdpid") else p.dpid("dpid") if p.has("dpid") else 0
        if not vdpid:
            vdpid = ovx_vdpid(net)
        backups = 1 if len(dpids) > 1 else 0  # OVXBigSwitch: spf with one backup
        sw = manager.create_switch(net.id, dpids, vdpid, backup_num=backups)
        return switch_db(net, sw)

    def set_internal_routing(caller: Caller, p: Params) -> dict[str, Any]:
        net = net_of(caller, p)
        vdpid = p.dpid("vdpid")
        algorithm, backups = p.text("algorithm").lower(), p.integer("backup_num")
        sw = manager.set_internal_routing(net.id, vdpid, algorithm, backups)
        return switch_db(net, sw)

    def create_port(caller: Caller, p: Params) -> dict[str, Any]:
        net = net_of(caller, p)
        dpid, port = p.dpid("dpid"), p.integer("port")
        vdpid = p.dpid("vdpid") if p.has("vdpid") else None
        exclusive = p.flag_or("exclusive", False)  # ours: OVX's createPort has none
        vp = manager.create_port(net.id, dpid, port, vdpid, exclusive)
        owner = next(sw.vdpid for sw in net.switches.values() if sw.ports.get(vp.number) is vp)
        return {
            "dpid": vp.dpid,
            "port": vp.port,
            "vport": vp.number,
            "vdpid": owner,
            "tenantId": net.id,
            "exclusive": vp.exclusive,
        }

    def connect_link(caller: Caller, p: Params) -> dict[str, Any]:
        net = net_of(caller, p)
        ends = (p.dpid("srcDpid"), p.integer("srcPort"), p.dpid("dstDpid"), p.integer("dstPort"))
        algorithm = p.text("algorithm").lower() if p.has("algorithm") else "spf"
        backups = p.integer_or("backup_num", 0)
        lk = manager.create_link(net.id, *ends, algorithm=algorithm, backup_num=backups)
        return link_db(manager, net, lk)

    def set_link_path(caller: Caller, p: Params) -> dict[str, Any]:
        net = net_of(caller, p)
        link_id, path, priority = p.integer("linkId"), p.text("path"), p.integer("priority")
        lk = manager.set_link_path(net.id, link_id, path, priority)
        return link_db(manager, net, lk)

    def connect_route(caller: Caller, p: Params) -> dict[str, Any]:
        net = net_of(caller, p)
        vdpid, src, dst = p.dpid("vdpid"), p.integer("srcPort"), p.integer("dstPort")
        path, priority = p.text("path"), p.integer("priority")
        r = manager.connect_route(net.id, vdpid, src, dst, path, priority, both_ways=True)
        return route_db(net, net.switches[vdpid], r)

    def disconnect_route(caller: Caller, p: Params) -> None:
        net = net_of(caller, p)
        manager.disconnect_route(net.id, p.dpid("vdpid"), p.integer("routeId"), both_ways=True)

    def connect_host(caller: Caller, p: Params) -> dict[str, Any]:
        net = net_of(caller, p)
        vdpid, vport, mac = p.dpid("vdpid"), p.integer("vport"), p.raw("mac")
        return host_db(net, manager.connect_host(net.id, vdpid, vport, mac))

    def host_db(net: VirtualNetwork, h: Host) -> dict[str, Any]:
        return {
            "vdpid": h.vdpid,
            "vport": h.vport,
            "mac": mac_to_int(h.mac),
            "hostId": h.id,
            "tenantId": net.id,
        }

    def start_network(caller: Caller, p: Params) -> dict[str, Any]:
        return network_db(manager.start_network(net_of(caller, p).id))

    def stop_network(caller: Caller, p: Params) -> dict[str, Any]:
        return network_db(manager.stop_network(net_of(caller, p).id))

    def set_controllers(caller: Caller, p: Params) -> dict[str, Any]:
        net = net_of(caller, p)
        return network_db(manager.set_controllers(net.id, p.text_list("controllerUrls")))

    def scalability_db(net: VirtualNetwork) -> dict[str, Any]:
        return {**network_db(net), "scalability": net.scalability}

    def set_scalability(caller: Caller, p: Params) -> dict[str, Any]:
        net = net_of(caller, p)
        return scalability_db(manager.set_scalability(net.id, p.text("scalability")))

    def set_ovx_mode(caller: Caller, p: Params) -> dict[str, Any]:
        """Libera's setOVXmode: the reduction level by number (OVX_MODES)."""
        net = net_of(caller, p)
        mode = p.integer("mode")
        if mode not in OVX_MODES:
            modes = ", ".join(f"{n} {name}" for n, name in OVX_MODES.items())
            raise RpcError(INVALID_PARAMS, f"setOVXmode: mode {mode} is not one of {modes}")
        return scalability_db(manager.set_scalability(net.id, OVX_MODES[mode]))

    def remove_network(caller: Caller, p: Params) -> None:
        manager.remove_network(net_of(caller, p).id)

    def remove_switch(caller: Caller, p: Params) -> None:
        manager.remove_switch(net_of(caller, p).id, p.dpid("vdpid"))

    def remove_port(caller: Caller, p: Params) -> None:
        manager.remove_port(net_of(caller, p).id, p.dpid("vdpid"), p.integer("vport"))

    def disconnect_link(caller: Caller, p: Params) -> None:
        manager.remove_link(net_of(caller, p).id, p.integer("linkId"))

    def disconnect_host(caller: Caller, p: Params) -> None:
        manager.disconnect_host(net_of(caller, p).id, p.integer("hostId"))

    def migrate_host(caller: Caller, p: Params) -> dict[str, Any]:
        """Ours (OVX has none): the host is now on physical (dpid, port); admin only, as
        `POST .../hosts/{id}/move`.  Answers as connectHost, with the new location."""
        caller.require_admin()
        net = net_of(caller, p)
        h = manager.move_host(net.id, p.integer("hostId"), p.dpid("dpid"), p.integer("port"))
        where = net.where(h) or (0, 0)
        return {**host_db(net, h), "dpid": where[0], "port": where[1]}

    def set_limits(caller: Caller, p: Params) -> dict[str, Any]:
        """Ours (OVX has none): the network's override of the default data-plane limits,
        admin only, as `PUT /v1/networks/{id}/limits`: vportPps, vportKbps, vlinkPps,
        vlinkKbps (absent or null: the default applies; 0: unlimited)."""
        caller.require_admin()
        net = net_of(caller, p)
        given = {k: p.integer(c) for k, c in LIMIT_PARAMS.items() if p.has(c)}
        return limits_db(manager, manager.set_limits(net.id, given))

    methods: dict[str, Handler] = {
        "createNetwork": create_network,
        "createSwitch": create_switch,
        "createPort": create_port,
        "connectLink": connect_link,
        "setLinkPath": set_link_path,
        "setInternalRouting": set_internal_routing,
        "connectRoute": connect_route,
        "disconnectRoute": disconnect_route,
        "connectHost": connect_host,
        "startNetwork": start_network,
        "stopNetwork": stop_network,
        "removeNetwork": remove_network,
        "removeSwitch": remove_switch,
        "removePort": remove_port,
        "disconnectLink": disconnect_link,
        "disconnectHost": disconnect_host,
        "migrateHost": migrate_host,
        "setNetworkControllers": set_controllers,
        "setScalability": set_scalability,
        "setOVXmode": set_ovx_mode,
        "setNetworkLimits": set_limits,
    }
    return Service("tenant", methods, set())


def status_service(manager: NetworkManager) -> Service:
    """/status: read-only views (OVX MonitoringHandler), each limited to what the caller owns."""

    def physical_topology(caller: Caller, p: Params) -> dict[str, Any]:
        links = [
            {
                "linkId": i,
                "src": {"dpid": dpid_str(lk.src_dpid), "port": lk.src_port},
                "dst": {"dpid": dpid_str(lk.dst_dpid), "port": lk.dst_port},
            }
            for i, lk in enumerate(manager.topo.links())
        ]
        return {"switches": [dpid_str(d) for d in sorted(manager.topo.switches)], "links": links}

    def list_networks(caller: Caller, p: Params) -> list[int]:
        return sorted(n.id for n in manager.list_networks(caller.tenant))

    def net_of(caller: Caller, p: Params) -> VirtualNetwork:
        return manager.get_network(p.integer("tenantId"), caller.tenant)

    def get_virtual_topology(caller: Caller, p: Params) -> dict[str, Any]:
        return virtual_topology(net_of(caller, p))

    def get_switch_mapping(caller: Caller, p: Params) -> dict[str, Any]:
        return switch_mapping(manager.topo, net_of(caller, p))

    def get_link_mapping(caller: Caller, p: Params) -> dict[str, list[list[int]]]:
        return link_mapping(manager.topo, net_of(caller, p))

    def get_subnet(caller: Caller, p: Params) -> str:
        net = net_of(caller, p)
        if net.network_address is None or net.mask is None:
            raise InvalidRequest(f"virtual network {net.id} was created without an address")
        return f"{net.network_address}/{net.mask}"

    def get_switch_ports(caller: Caller, p: Params) -> dict[str, dict[str, Any]]:
        """GetVirtualSwitchPorts (os-libera fork): per vport number, the physical port it
        maps (`dpid` as a colon string, `port`), and ours: whether it is `exclusive`."""
        net = net_of(caller, p)
        vdpid = p.dpid("vdpid")
        sw = net.switches.get(vdpid)
        if sw is None:
            raise RpcError(INVALID_PARAMS,
                           f"getVirtualSwitchPorts: no vswitch {dpid_str(vdpid)} in virtual "
                           f"network {net.id}")  # fmt: skip
        return {
            str(n): {"dpid": dpid_str(vp.dpid), "port": vp.port, "exclusive": vp.exclusive}
            for n, vp in sorted(sw.ports.items())
        }

    def get_virtual_hosts(caller: Caller, p: Params) -> list[dict[str, Any]]:
        """HostSerializer: hosts on their vswitch and vport.  IPs are not learnt here, so
        ipAddress is 0.0.0.0, what OVX reports before it has seen one."""
        net = net_of(caller, p)
        return [
            {
                "hostId": h.id,
                "ipAddress": "0.0.0.0",
                "mac": h.mac,
                "dpid": dpid_str(h.vdpid),
                "port": h.vport,
            }
            for h in (net.hosts[i] for i in sorted(net.hosts))
        ]

    def get_physical_hosts(caller: Caller, p: Params) -> list[dict[str, Any]]:
        """Host.convertToPhysical for every host the caller may see (no ipAddress: unknown);
        the admin sees where a moved host is now, its tenant the vport's port as ever."""
        out = []
        for net in sorted(manager.list_networks(caller.tenant), key=lambda n: n.id):
            for h in (net.hosts[i] for i in sorted(net.hosts)):
                vp = net.vport(h.vdpid, h.vport)
                if vp is None:
                    continue
                dpid, port = (net.where(h) or (vp.dpid, vp.port)) if caller.is_admin else (
                    vp.dpid, vp.port)  # fmt: skip
                out.append({"hostId": h.id, "dpid": dpid_str(dpid), "port": port, "mac": h.mac})
        return out

    def get_limits(caller: Caller, p: Params) -> dict[str, Any]:
        """Ours: the network's data-plane limits (see setNetworkLimits); what they
        dropped is in `GET /v1/networks/{id}/limits` and the metrics."""
        return limits_db(manager, net_of(caller, p))

    methods: dict[str, Handler] = {
        "getPhysicalTopology": physical_topology,
        "listVirtualNetworks": list_networks,
        "getVirtualTopology": get_virtual_topology,
        "getVirtualSwitchMapping": get_switch_mapping,
        "getVirtualLinkMapping": get_link_mapping,
        "getVirtualSwitchPorts": get_switch_ports,
        "getSubnet": get_subnet,
        "getVirtualHosts": get_virtual_hosts,
        "getPhysicalHosts": get_physical_hosts,
        "getNetworkLimits": get_limits,
    }
    return Service(
        "status", methods, {"getPhysicalTopology", "listVirtualNetworks", "getPhysicalHosts"}
    )
