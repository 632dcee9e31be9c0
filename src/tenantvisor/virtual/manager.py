"""The intent layer: tenants, virtual networks and their parts, validated against the fabric.

Every method either applies the whole change or raises a TenantvisorError and changes
nothing.  Runtime programming is not done here: a started network's changes are announced
through `listener` (the daemon's reconciler), which derives and installs physical state.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import secrets
from collections.abc import Callable

from tenantvisor.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from tenantvisor.mapping import layout
from tenantvisor.mapping.paths import NoPath, vlink_path
from tenantvisor.physical.topology import PhysicalTopology
from tenantvisor.virtual.model import (
    Host,
    Tenant,
    VirtualNetwork,
    VLink,
    VLinkEnd,
    VPort,
    VPortKind,
    VSwitch,
)
from tenantvisor.virtual.urls import parse_controller_url

MAX_VPORT = 0xFFF  # vport numbers live in 12 metadata bits
MAX_VSWITCH_INDEX = layout.MAX_VSWITCH_INDEX  # fabric-wide vswitch ids: 19 metadata bits
SCALABILITY_LEVELS = ("exact", "app", "host", "hop", "lite")
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def normalize_mac(mac: object) -> str:
    """Accept aa:bb:.., AA-BB-.. or an integer (OpenVirteX sends both); return aa:bb:..:ff."""
    if isinstance(mac, int) and not isinstance(mac, bool) and 0 <= mac < 1 << 48:
        s = f"{mac:012x}"
        text = ":".join(s[i : i + 2] for i in range(0, 12, 2))
    elif isinstance(mac, str):
        text = mac.strip().lower().replace("-", ":")
    else:
        raise InvalidRequest(f"MAC {mac!r}: expected aa:bb:cc:dd:ee:ff")
    if not _MAC_RE.match(text):
        raise InvalidRequest(f"MAC {mac!r}: expected aa:bb:cc:dd:ee:ff")
    if int(text[:2], 16) & 1:
        raise InvalidRequest(f"MAC {text}: a host MAC must be unicast")
    if text == "00:00:00:00:00:00":
        raise InvalidRequest("MAC 00:00:00:00:00:00 is not a host address")
    return text


Listener = Callable[[str, VirtualNetwork], None]
"""Called with ("changed" | "started" | "stopped" | "removed", network)."""


class NetworkManager:
    def __init__(self, topo: PhysicalTopology, admin_token: str) -> None:
        if not admin_token:
            raise ValueError("an admin token is required")
        self.topo = topo
        self._admin_token = admin_token
        self.tenants: dict[int, Tenant] = {}
        self.networks: dict[int, VirtualNetwork] = {}
        self._next_tenant = 1
        self._next_network = 1
        self._next_link = 1
        self._next_host = 1
        self._vswitch_index: set[int] = set()
        self.listeners: list[Listener] = []

    # --- authentication ----------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Tenant | None:
        """Return the tenant for a token, None for the admin token; raise Unauthorized."""
        if token:
            if hmac.compare_digest(token.encode(), self._admin_token.encode()):
                return None
            for t in self.tenants.values():
                if hmac.compare_digest(token.encode(), t.token.encode()):
                    return t
        raise Unauthorized("missing or invalid token")

    def check_owner(self, caller: Tenant | None, net: VirtualNetwork) -> None:
        """Admin (None) may touch every network; a tenant only its own (others look absent)."""
        if caller is not None and net.tenant_id != caller.id:
            raise NotFound(f"no virtual network {net.id}")

    # --- tenants -------------------------------------------------------------------------------
    def create_tenant(self, name: str) -> Tenant:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise InvalidRequest("tenant name: 1-64 letters, digits, '_', '.', '-'")
        if any(t.name == name for t in self.tenants.values()):
            raise Conflict(f"tenant {name!r} exists")
        # "tv_" prefix: a token never starts with "-", which command lines would take for a flag
        t = Tenant(self._next_tenant, name, "tv_" + secrets.token_urlsafe(24))
        self._next_tenant += 1
        self.tenants[t.id] = t
        return t

    def get_tenant(self, tenant_id: int) -> Tenant:
        t = self.tenants.get(tenant_id)
        if t is None:
            raise NotFound(f"no tenant {tenant_id}")
        return t

    def delete_tenant(self, tenant_id: int) -> None:
        self.get_tenant(tenant_id)
        for net in [n for n in self.networks.values() if n.tenant_id == tenant_id]:
            self.remove_network(net.id)
        del self.tenants[tenant_id]

    # --- networks ------------------------------------------------------------------------------
    def get_network(self, net_id: int, caller: Tenant | None = None) -> VirtualNetwork:
        net = self.networks.get(net_id)
        if net is None:
            raise NotFound(f"no virtual network {net_id}")
        self.check_owner(caller, net)
        return net

    def list_networks(self, caller: Tenant | None = None) -> list[VirtualNetwork]:
        return [n for n in self.networks.values() if caller is None or n.tenant_id == caller.id]

    def create_network(
        self,
        tenant_id: int,
        controller_urls: list[str],
        network_address: str | None = None,
        mask: int | None = None,
        scalability: str = "exact",
    ) -> VirtualNetwork:
        self.get_tenant(tenant_id)
        if not isinstance(controller_urls, list):
            raise InvalidRequest("controllerUrls must be a list of tcp:IP:PORT / ptcp:PORT")
        urls = [str(parse_controller_url(u)) for u in controller_urls]
        if network_address is not None:
            try:
                ipaddress.IPv4Address(network_address)
            except (ValueError, TypeError):
                raise InvalidRequest(f"networkAddress {network_address!r} is not IPv4") from None
        if mask is not None and (not isinstance(mask, int) or not 0 <= mask <= 32):
            raise InvalidRequest(f"mask {mask!r} must be 0-32")
        if scalability != "exact":
            if scalability in SCALABILITY_LEVELS:
                raise InvalidRequest(f"scalability level {scalability!r} is not available yet")
            raise InvalidRequest(f"scalability level must be one of {SCALABILITY_LEVELS}")
        if self._next_network > 0xFFFF:
            raise Conflict("network id space exhausted")
        net = VirtualNetwork(self._next_network, tenant_id, urls, network_address, mask)
        self._next_network += 1
        self.networks[net.id] = net
        return net

    def set_controllers(self, net_id: int, controller_urls: list[str]) -> VirtualNetwork:
        net = self.get_network(net_id)
        urls = [str(parse_controller_url(u)) for u in controller_urls]
        net.controller_urls = urls
        self._changed(net)
        return net

    def set_switch_controllers(
        self, net_id: int, vdpid: int, controller_urls: list[str] | None
    ) -> VSwitch:
        """Give one vswitch its own controllers (None: back to the network's).  A passive
        `ptcp:PORT` may be used by one vswitch only, as with Open vSwitch bridges."""
        net = self.get_network(net_id)
        sw = self._switch(net, vdpid)
        if controller_urls is None:
            sw.controller_urls = None
            self._changed(net)
            return sw
        if not isinstance(controller_urls, list):
            raise InvalidRequest("controller_urls must be a list of tcp:IP:PORT / ptcp:PORT")
        urls = [parse_controller_url(u) for u in controller_urls]
        mine = {u.port for u in urls if not u.active}
        for other_net in self.networks.values():
            for other in other_net.switches.values():
                if other is sw:
                    continue
                for text in other.controller_urls or []:
                    u = parse_controller_url(text)
                    if not u.active and u.port in mine:
                        raise Conflict(f"ptcp port {u.port} is already used by another vswitch")
        sw.controller_urls = [str(u) for u in urls]
        self._changed(net)
        return sw

    def start_network(self, net_id: int) -> VirtualNetwork:
        net = self.get_network(net_id)
        if not net.started:
            net.started = True
            self._notify("started", net)
        return net

    def stop_network(self, net_id: int) -> VirtualNetwork:
        net = self.get_network(net_id)
        if net.started:
            net.started = False
            self._notify("stopped", net)
        return net

    def remove_network(self, net_id: int) -> None:
        net = self.get_network(net_id)
        if net.started:
            self.stop_network(net_id)
        for sw in net.switches.values():
            self._vswitch_index.discard(sw.index)
        del self.networks[net_id]
        self._notify("removed", net)

    # --- vswitches -----------------------------------------------------------------------------
    def create_switch(self, net_id: int, dpids: list[int], vdpid: int | None = None) -> VSwitch:
        net = self.get_network(net_id)
        if not isinstance(dpids, list) or not dpids:
            raise InvalidRequest("dpids must be a non-empty list of physical dpids")
        if len(dpids) > 1:
            raise InvalidRequest("a vswitch over several pswitches (big switch) is not supported")
        dpid = _int(dpids[0], "dpid", 1 << 64)
        if dpid not in self.topo.switches:
            raise NotFound(f"unknown physical dpid {dpid:#018x}")
        for sw in net.switches.values():
            if sw.dpid == dpid:
                raise Conflict(f"pswitch {dpid:#018x} already hosts vswitch {sw.vdpid:#018x}")
        if vdpid is None:
            n = len(net.switches) + 1
            while ((net.id << 48) | n) in net.switches:
                n += 1
            vdpid = (net.id << 48) | n
        vdpid = _int(vdpid, "vdpid", 1 << 64)
        if vdpid == 0:
            raise InvalidRequest("vdpid must not be 0")
        if vdpid in net.switches:
            raise Conflict(f"vdpid {vdpid:#018x} exists in network {net.id}")
        index = next(
            (i for i in range(1, MAX_VSWITCH_INDEX + 1) if i not in self._vswitch_index), 0
        )
        if not index:
            raise Conflict("vswitch id space exhausted")
        self._vswitch_index.add(index)
        sw = VSwitch(vdpid, [dpid], index)
        net.switches[vdpid] = sw
        self._changed(net)
        return sw

    def remove_switch(self, net_id: int, vdpid: int) -> None:
        net = self.get_network(net_id)
        sw = self._switch(net, vdpid)
        for lk in [lk for lk in net.links.values() if vdpid in (lk.src.vdpid, lk.dst.vdpid)]:
            del net.links[lk.id]
            self._unlink(net, lk)
        for h in [h for h in net.hosts.values() if h.vdpid == vdpid]:
            del net.hosts[h.id]
        del net.switches[vdpid]
        self._vswitch_index.discard(sw.index)
        self._changed(net)

    # --- vports --------------------------------------------------------------------------------
    def create_port(self, net_id: int, dpid: int, port: int, vdpid: int | None = None) -> VPort:
        """Map a physical port into the vswitch on that pswitch (OVX `createPort`)."""
        net = self.get_network(net_id)
        dpid = _int(dpid, "dpid", 1 << 64)
        port = _int(port, "port", 0xFFFFFF00)
        if dpid not in self.topo.switches:
            raise NotFound(f"unknown physical dpid {dpid:#018x}")
        if not self.topo.has_port(dpid, port):
            raise NotFound(f"pswitch {dpid:#018x} has no port {port}")
        if vdpid is not None:
            sw = self._switch(net, vdpid)
            if sw.dpid != dpid:
                raise InvalidRequest(f"vswitch {sw.vdpid:#018x} is not on pswitch {dpid:#018x}")
        else:
            found = [s for s in net.switches.values() if s.dpid == dpid]
            if not found:
                raise NotFound(f"network {net.id} has no vswitch on pswitch {dpid:#018x}")
            sw = found[0]
        kind = VPortKind.LINK if self.topo.is_link_port(dpid, port) else VPortKind.EDGE
        if kind is VPortKind.EDGE and any(
            p.port == port and p.kind is VPortKind.EDGE for p in sw.ports.values()
        ):
            raise Conflict(f"port {port} of {dpid:#018x} is already an edge vport of this vswitch")
        number = next((n for n in range(1, MAX_VPORT + 1) if n not in sw.ports), 0)
        if not number:
            raise Conflict(f"vswitch {sw.vdpid:#018x} has no free vport number")
        vp = VPort(number, dpid, port, kind)
        sw.ports[number] = vp
        self._changed(net)
        return vp

    def remove_port(self, net_id: int, vdpid: int, vport: int) -> None:
        net = self.get_network(net_id)
        vp = self._vport(net, vdpid, vport)
        if vp.link_id is not None:
            lk = net.links.pop(vp.link_id)
            self._unlink(net, lk)
        for h in [h for h in net.hosts.values() if (h.vdpid, h.vport) == (vdpid, vport)]:
            del net.hosts[h.id]
        del net.switches[vdpid].ports[vport]
        self._changed(net)

    # --- vlinks --------------------------------------------------------------------------------
    def create_link(
        self, net_id: int, src_vdpid: int, src_vport: int, dst_vdpid: int, dst_vport: int
    ) -> VLink:
        net = self.get_network(net_id)
        a = self._vport(net, src_vdpid, src_vport)
        b = self._vport(net, dst_vdpid, dst_vport)
        if src_vdpid == dst_vdpid:
            raise InvalidRequest("a vlink must join two different vswitches")
        upgrade = []  # created before LLDP found their link; without hosts they can be one
        for end, vp in (((src_vdpid, src_vport), a), ((dst_vdpid, dst_vport), b)):
            kind = vp.kind
            if (
                kind is VPortKind.EDGE
                and self.topo.is_link_port(vp.dpid, vp.port)
                and not any((h.vdpid, h.vport) == end for h in net.hosts.values())
            ):
                kind = VPortKind.LINK
                upgrade.append(vp)
            if kind is not VPortKind.LINK:
                raise InvalidRequest(
                    f"vport {end[1]} of {end[0]:#018x} is an edge port "
                    f"(physical port {vp.port} faces no pswitch)"
                )
            if vp.link_id is not None:
                raise Conflict(f"vport {end[1]} of {end[0]:#018x} is already in vlink {vp.link_id}")
        try:
            vlink_path(self.topo, (a.dpid, a.port), (b.dpid, b.port))
        except NoPath as exc:
            raise InvalidRequest(f"no physical path joins the two vports: {exc}") from None
        for vp in upgrade:
            vp.kind = VPortKind.LINK
        lk = VLink(self._next_link, VLinkEnd(src_vdpid, src_vport), VLinkEnd(dst_vdpid, dst_vport))
        self._next_link += 1
        a.link_id = b.link_id = lk.id
        net.links[lk.id] = lk
        self._changed(net)
        return lk

    def remove_link(self, net_id: int, link_id: int) -> None:
        net = self.get_network(net_id)
        lk = net.links.pop(link_id, None)
        if lk is None:
            raise NotFound(f"no vlink {link_id} in network {net.id}")
        self._unlink(net, lk)
        self._changed(net)

    # --- hosts ---------------------------------------------------------------------------------
    def connect_host(self, net_id: int, vdpid: int, vport: int, mac: object) -> Host:
        net = self.get_network(net_id)
        vp = self._vport(net, vdpid, vport)
        if vp.kind is not VPortKind.EDGE:
            raise InvalidRequest(f"vport {vport} of {vdpid:#018x} is a link port; hosts need edge")
        text = normalize_mac(mac)
        for other in self.networks.values():
            for h in other.hosts.values():
                op = other.vport(h.vdpid, h.vport)
                if op is not None and h.mac == text and (op.dpid, op.port) == (vp.dpid, vp.port):
                    raise Conflict(
                        f"MAC {text} is already attached to physical port {vp.port} of "
                        f"{vp.dpid:#018x}; hosts on one physical port need distinct MACs"
                    )
        h = Host(self._next_host, vdpid, vport, text)
        self._next_host += 1
        net.hosts[h.id] = h
        self._changed(net)
        return h

    def disconnect_host(self, net_id: int, host_id: int) -> None:
        net = self.get_network(net_id)
        if net.hosts.pop(host_id, None) is None:
            raise NotFound(f"no host {host_id} in network {net.id}")
        self._changed(net)

    # --- helpers -------------------------------------------------------------------------------
    def _switch(self, net: VirtualNetwork, vdpid: int) -> VSwitch:
        sw = net.switches.get(_int(vdpid, "vdpid", 1 << 64))
        if sw is None:
            raise NotFound(f"no vswitch {vdpid:#018x} in network {net.id}")
        return sw

    def _vport(self, net: VirtualNetwork, vdpid: int, vport: int) -> VPort:
        sw = self._switch(net, vdpid)
        vp = sw.ports.get(_int(vport, "vport", 1 << 32))
        if vp is None:
            raise NotFound(f"vswitch {vdpid:#018x} has no vport {vport}")
        return vp

    def _unlink(self, net: VirtualNetwork, lk: VLink) -> None:
        for end in (lk.src, lk.dst):
            vp = net.vport(end.vdpid, end.vport)
            if vp is not None:
                vp.link_id = None

    def _changed(self, net: VirtualNetwork) -> None:
        if net.started:
            self._notify("changed", net)

    def _notify(self, event: str, net: VirtualNetwork) -> None:
        for cb in self.listeners:
            cb(event, net)


def _int(value: object, what: str, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str):
            try:
                value = int(value, 0)
            except ValueError:
                raise InvalidRequest(f"{what} {value!r} is not an integer") from None
        else:
            raise InvalidRequest(f"{what} {value!r} is not an integer")
    assert isinstance(value, int)
    if not 0 <= value < limit:
        raise InvalidRequest(f"{what} {value} is out of range")
    return value


__all__ = ["Forbidden", "NetworkManager", "normalize_mac"]
