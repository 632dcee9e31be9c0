"""The intent layer: tenants, virtual networks and their parts, validated against the fabric.

Every method either applies the whole change or raises a TenantvisorError and changes
nothing.  Runtime programming is not done here: a started network's changes are announced
through `listener` (the daemon's reconciler), which derives and installs physical state.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import hmac
import ipaddress
import itertools
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import networkx as nx

from tenantvisor.errors import (
    ConcurrentChange,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
    Unauthorized,
)
from tenantvisor.mapping import layout
from tenantvisor.mapping.paths import (
    Hop,
    NoPath,
    Path,
    format_path,
    parse_path,
    reverse,
    vlink_path,
)
from tenantvisor.physical.topology import PhysicalTopology
from tenantvisor.quotas import API_QUOTAS, TenantLimits, check_overrides
from tenantvisor.virtual.model import (
    LIMIT_FIELDS,
    NO_LIMITS,
    ROUTING_ALGORITHMS,
    Host,
    Limits,
    ManualPath,
    PathHops,
    Route,
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
MAX_BACKUP_NUM = 8  # backup paths a vlink or big switch may ask for beyond its primary
MAX_PATH_PRIORITY = 0xFFFF  # priorities of manual paths and routes: higher is preferred
PathSpec = str | Sequence[Sequence[int]] | Sequence[Hop]
"""A physical path as callers give it: OVX text ("dpid/port-dpid/port,...") or hops, each
(src_dpid, src_port, dst_dpid, dst_port)."""
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


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class IntentWriter(Protocol):
    """Where intent is kept (store/): one call per API change, all of it or nothing."""

    def write_intent(self, change: IntentChange) -> None: ...


@dataclass
class IntentChange:
    """What one API call changed: whole tenants and networks to put or delete, and the
    counters ids are drawn from."""

    tenants: list[Tenant] = field(default_factory=list)
    deleted_tenants: list[int] = field(default_factory=list)
    networks: list[VirtualNetwork] = field(default_factory=list)
    deleted_networks: list[int] = field(default_factory=list)
    # single hosts of networks not otherwise changed (a move: one row, not the network)
    hosts: list[tuple[VirtualNetwork, Host]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)


_T = TypeVar("_T")
_ATTEMPTS = 3  # tries of a change the store refuses for another instance's clashing write


def _mutation(
    touches: Callable[..., list[int]] | None = None,
    *,
    undoes: bool = False,
    announce_first: bool = False,
) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """A public change of intent: validated and applied in memory, then written to the store
    in one call, and only then announced to the listeners (the daemon programs it).  If the
    store refuses or does not answer, memory is put back as it was and nothing is announced.
    If it refused for another instance's clashing write (ConcurrentChange) and `refresh` is
    set, the store's state is taken in and the change redone, up to _ATTEMPTS tries in all.
    `touches(self, *args)` names the networks it may change (they are saved before);
    `undoes`: the method saves nothing but records in `self._undo` how to take its change
    back (a live migration changes one field, and a deep copy of its network would be
    most of its time before the store).

    `announce_first` (a live migration): announced before the write, so the daemon's first
    rollout phase, which only adds rules nothing uses yet, is on its way to the pswitches
    while the store writes; its next phase, the first that changes where traffic goes, can
    only start from a BARRIER reply, which the event loop handles after this call returns
    (the write holds it).  If the write fails, memory is put back and the networks are
    announced again, so the daemon programs them back (the added rules go again)."""

    def wrap(method: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(method)
        def run(self: NetworkManager, *args: Any, **kw: Any) -> _T:
            if self._depth:  # inside another change (delete_tenant -> remove_network)
                return method(self, *args, **kw)
            attempts = _ATTEMPTS if self.refresh is not None else 1
            for attempt in range(1, attempts + 1):
                try:
                    result = self._attempt(method, None if undoes else touches, args, kw,
                                           undoes, announce_first)  # fmt: skip
                except ConcurrentChange as exc:
                    if attempt == attempts:
                        tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
                        raise ConcurrentChange(
                            "the intent was changed concurrently by another instance "
                            f"({tries}; the store said: {exc}); try again"
                        ) from exc
                    assert self.refresh is not None
                    self.refresh()  # take in what the other instance wrote, then redo
                    continue
                self.moving = announce_first
                try:
                    self._announce()
                finally:
                    self.moving = False
                return result
            raise AssertionError("unreachable")

        return run

    return wrap


def _net_arg(self: NetworkManager, net_id: object = None, *_: object) -> list[int]:
    return [net_id] if isinstance(net_id, int) else []


def _tenant_nets(self: NetworkManager, tenant_id: object = None, *_: object) -> list[int]:
    return [n.id for n in self.networks.values() if n.tenant_id == tenant_id]


class NetworkManager:
    def __init__(
        self, topo: PhysicalTopology, admin_token: str, tenant_limits: TenantLimits | None = None
    ) -> None:
        if not admin_token:
            raise ValueError("an admin token is required")
        self.topo = topo
        self._admin_token = admin_token
        # every tenant's limits (quotas.py) unless the admin set its own (Tenant.limits)
        self.tenant_defaults = tenant_limits or TenantLimits()
        # requests refused for a quota, by (tenant id, quota): tvctl tenant-quota, metrics
        self.quota_refused: Counter[tuple[int, str]] = Counter()
        # told of a tenant whose limits changed (here, or by another instance)
        self.tenant_listeners: list[Callable[[Tenant], None]] = []
        self._tenant_events: list[Tenant] = []  # announced once written
        self.tenants: dict[int, Tenant] = {}
        self.networks: dict[int, VirtualNetwork] = {}
        self._next_tenant = 1
        self._next_network = 1
        self._next_link = 1
        self._next_host = 1
        self._next_route = 1
        self._vswitch_index: set[int] = set()
        # the admin's data-plane limits for every network (daemon config), which a
        # network's own `limits` override kind by kind (`effective_limits`)
        self.default_limits: Limits = NO_LIMITS
        self.listeners: list[Listener] = []
        # listeners are hearing of a change the store has not taken yet (announce_first)
        self.writing = False
        # ... of hosts moving, and nothing else (announce_first): what the change removes
        # is the old place's, which nothing reaches once traffic turns (the daemon removes
        # it in the same phase)
        self.moving = False
        self.store: IntentWriter | None = None
        # Brings the store's current intent into memory (through absorb) after the store
        # refused a change for another instance's clashing write; None: no retry.
        self.refresh: Callable[[], None] | None = None
        self._depth = 0  # > 0 while a change runs
        self._events: list[tuple[str, VirtualNetwork]] = []  # announced once written
        self._dirty_tenants: set[int] = set()
        self._dirty_networks: set[int] = set()
        self._dirty_hosts: set[tuple[int, int]] = set()  # (network, host): that row only
        self._undo: list[Callable[[], None]] = []  # a change's own undo (_mutation undoes)

    # --- persistence -----------------------------------------------------------------------
    _COUNTERS = ("tenant", "network", "link", "host", "route")

    def counters(self) -> dict[str, int]:
        return {k: getattr(self, f"_next_{k}") for k in self._COUNTERS}

    def restore(
        self, tenants: list[Tenant], networks: dict[int, VirtualNetwork], counters: dict[str, int]
    ) -> None:
        """Intent read back from the store (a restart): nothing is announced; the daemon
        compiles every started network itself."""
        self.tenants = {t.id: t for t in tenants}
        self.networks = dict(networks)
        for k in self._COUNTERS:
            setattr(self, f"_next_{k}", max(1, counters.get(k, 1)))
        self._vswitch_index = {sw.index for n in networks.values() for sw in n.switches.values()}

    def absorb(
        self,
        tenants: Mapping[int, Tenant | None],
        networks: Mapping[int, VirtualNetwork | None],
        counters: Mapping[str, int],
    ) -> None:
        """Intent another instance wrote to the shared store (None: deleted there).  Nothing
        is written back; listeners hear what a local change to the same end would announce,
        so the daemon programs exactly what really changed.  The objects are kept, not
        copied.  A network's tenant need not be known yet: notices come in any order."""
        if self._depth:
            raise RuntimeError("absorb called while a change of intent is in progress")
        events: list[tuple[str, VirtualNetwork]] = []
        changed: list[Tenant] = []
        for tid, tenant in tenants.items():
            if tenant is None:
                self.tenants.pop(tid, None)
            else:
                old_tenant = self.tenants.get(tid)
                if old_tenant is not None and old_tenant.limits != tenant.limits:
                    changed.append(tenant)
                self.tenants[tid] = tenant
        for nid, new in sorted(networks.items()):
            old = self.networks.get(nid)
            if new is None:
                if old is None:
                    continue
                del self.networks[nid]
                if old.started:  # as remove_network: stopped, then removed
                    events.append(("stopped", old))
                events.append(("removed", old))
                continue
            self.networks[nid] = new
            was_started = old is not None and old.started
            if new.started and not was_started:
                events.append(("started", new))
            elif was_started and not new.started:
                events.append(("stopped", new))
            elif new.started and old != new:  # an unstarted network's edits announce nothing
                events.append(("changed", new))
        for k in self._COUNTERS:
            if k in counters:
                setattr(self, f"_next_{k}", max(getattr(self, f"_next_{k}"), counters[k]))
        self._vswitch_index = {
            sw.index for n in self.networks.values() for sw in n.switches.values()
        }
        for event, net in events:
            for cb in self.listeners:
                cb(event, net)
        for t in changed:
            for tcb in self.tenant_listeners:
                tcb(t)

    def _save_point(self, net_ids: list[int]) -> tuple[Any, ...]:
        nets = {i: copy.deepcopy(self.networks[i]) for i in net_ids if i in self.networks}
        return (dict(self.tenants), dict(self.networks), nets, self.counters(),
                set(self._vswitch_index))  # fmt: skip

    def _roll_back(self, saved: tuple[Any, ...]) -> None:
        tenants, networks, nets, counters, index = saved
        self.tenants, self.networks = tenants, networks
        self.networks.update(nets)
        for k, v in counters.items():
            setattr(self, f"_next_{k}", v)
        self._vswitch_index = index

    def _attempt(
        self,
        method: Callable[..., _T],
        touches: Callable[..., list[int]] | None,
        args: tuple[Any, ...],
        kw: dict[str, Any],
        undoes: bool = False,
        announce_first: bool = False,
    ) -> _T:
        """One try of a change (see _mutation): on any error memory is as it was before."""
        saved = None
        if self.store and not undoes:
            saved = self._save_point(touches(self, *args) if touches else [])
        announced: list[tuple[str, VirtualNetwork]] = []
        self._depth += 1
        try:
            result = method(self, *args, **kw)
            self._reshape()
            if announce_first and self.store is not None:
                announced = list(self._events)
                self.writing = self.moving = True
                try:
                    self._announce()
                finally:
                    self.writing = self.moving = False
            self._write()
        except BaseException:
            if saved is not None:
                self._roll_back(saved)
            for undo in reversed(self._undo):
                undo()
            self._reshape()  # put back as it was, but nothing cached is trusted with it
            self._events.clear()
            self._tenant_events.clear()
            if announced:  # programmed already: programmed back
                self._events = [("changed", net) for _, net in announced]
                self._announce()
            raise
        finally:
            self._depth -= 1
            self._undo.clear()
            self._dirty_tenants.clear()
            self._dirty_networks.clear()
            self._dirty_hosts.clear()
        return result

    def _reshape(self) -> None:
        """Every network this change touched but for hosts' locations has a new `shape`."""
        for nid in self._dirty_networks:
            net = self.networks.get(nid)
            if net is not None:
                net.shape += 1

    def _announce(self) -> None:
        """Tell the listeners of the changes made (and written, but see announce_first)."""
        events, self._events = self._events, []
        for event, net in events:
            for cb in self.listeners:
                cb(event, net)
        changed, self._tenant_events = self._tenant_events, []
        for tenant in changed:
            for tcb in self.tenant_listeners:
                tcb(tenant)

    def _write(self) -> None:
        if self.store is None or not (
            self._dirty_tenants or self._dirty_networks or self._dirty_hosts
        ):
            return
        change = IntentChange(counters=self.counters())
        for tid in sorted(self._dirty_tenants):
            if tid in self.tenants:
                change.tenants.append(self.tenants[tid])
            else:
                change.deleted_tenants.append(tid)
        for nid in sorted(self._dirty_networks):
            if nid in self.networks:
                change.networks.append(self.networks[nid])
            else:
                change.deleted_networks.append(nid)
        for nid, hid in sorted(self._dirty_hosts):
            net = self.networks.get(nid)
            if nid not in self._dirty_networks and net is not None and hid in net.hosts:
                change.hosts.append((net, net.hosts[hid]))
        self.store.write_intent(change)

    # --- authentication ----------------------------------------------------------------------
    def authenticate(self, token: str | None) -> Tenant | None:
        """Return the tenant for a token, None for the admin token; raise Unauthorized."""
        if token:
            if hmac.compare_digest(token.encode(), self._admin_token.encode()):
                return None
            digest = token_hash(token)
            for t in self.tenants.values():
                if hmac.compare_digest(digest, t.token_hash):
                    return t
        raise Unauthorized("missing or invalid token")

    def check_owner(self, caller: Tenant | None, net: VirtualNetwork) -> None:
        """Admin (None) may touch every network; a tenant only its own (others look absent)."""
        if caller is not None and net.tenant_id != caller.id:
            raise NotFound(f"no virtual network {net.id}")

    # --- tenants -------------------------------------------------------------------------------
    @_mutation()
    def create_tenant(self, name: str) -> Tenant:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            raise InvalidRequest("tenant name: 1-64 letters, digits, '_', '.', '-'")
        if any(t.name == name for t in self.tenants.values()):
            raise Conflict(f"tenant {name!r} exists")
        # "tv_" prefix: a token never starts with "-", which command lines would take for a flag
        token = "tv_" + secrets.token_urlsafe(24)
        t = Tenant(self._next_tenant, name, token_hash(token), token)
        self._next_tenant += 1
        self.tenants[t.id] = t
        self._dirty_tenants.add(t.id)
        return t

    def get_tenant(self, tenant_id: int) -> Tenant:
        t = self.tenants.get(tenant_id)
        if t is None:
            raise NotFound(f"no tenant {tenant_id}")
        return t

    # --- tenant limits (quotas.py) -----------------------------------------------------------
    def limits_of(self, tenant_id: int) -> TenantLimits:
        """The tenant's limits: its own values over the daemon's defaults (the defaults for
        a tenant not known here)."""
        t = self.tenants.get(tenant_id)
        return self.tenant_defaults.with_overrides(t.limits if t is not None else {})

    @_mutation()
    def set_tenant_limits(self, tenant_id: int, overrides: Mapping[str, Any]) -> Tenant:
        """Replace the tenant's own limits (the admin's call): `overrides` maps limit names
        to values, None or absent meaning the default.  A quota below what the tenant holds
        is allowed: what it has stays, more is refused.  Running vswitches take new rates at
        once (announced to `tenant_listeners`)."""
        t = self.get_tenant(tenant_id)
        try:
            own = check_overrides(dict(overrides))
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from None
        if own != t.limits:
            # a new object: a refused write puts the old one back (_save_point)
            t = dataclasses.replace(t, limits=own)
            self.tenants[tenant_id] = t
            self._dirty_tenants.add(tenant_id)
            self._tenant_events.append(t)
        return t

    def usage(self, tenant_id: int) -> dict[str, int]:
        """What the tenant holds of each quota the API enforces, over all its networks."""
        nets = [n for n in self.networks.values() if n.tenant_id == tenant_id]
        return {
            "networks": len(nets),
            "vswitches": sum(len(n.switches) for n in nets),
            "vports": sum(len(sw.ports) for n in nets for sw in n.switches.values()),
            "vlinks": sum(len(n.links) for n in nets),
            "hosts": sum(len(n.hosts) for n in nets),
        }

    def _check_quota(self, tenant_id: int, quota: str) -> None:
        """Refuse one more `quota` (403, naming it) when the tenant holds its limit."""
        assert quota in API_QUOTAS
        limit = self.limits_of(tenant_id).get(quota)
        used = self.usage(tenant_id)[quota]
        if used >= limit:
            self.quota_refused[(tenant_id, quota)] += 1
            t = self.tenants.get(tenant_id)
            who = t.name if t is not None else str(tenant_id)
            raise QuotaExceeded(
                quota,
                f"quota {quota} exceeded: tenant {who} holds {used} {quota}, its quota is "
                f"{limit} (the admin can raise it: PUT /v1/tenants/{tenant_id}/quotas)",
            )

    @_mutation(_tenant_nets)
    def delete_tenant(self, tenant_id: int) -> None:
        self.get_tenant(tenant_id)
        for net in [n for n in self.networks.values() if n.tenant_id == tenant_id]:
            self.remove_network(net.id)
        del self.tenants[tenant_id]
        self._dirty_tenants.add(tenant_id)

    # --- networks ------------------------------------------------------------------------------
    def get_network(self, net_id: int, caller: Tenant | None = None) -> VirtualNetwork:
        net = self.networks.get(net_id)
        if net is None:
            raise NotFound(f"no virtual network {net_id}")
        self.check_owner(caller, net)
        return net

    def list_networks(self, caller: Tenant | None = None) -> list[VirtualNetwork]:
        return [n for n in self.networks.values() if caller is None or n.tenant_id == caller.id]

    @_mutation()
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
        scalability = scalability_level(scalability)
        self._check_quota(tenant_id, "networks")
        if self._next_network > 0xFFFF:
            raise Conflict("network id space exhausted")
        net = VirtualNetwork(
            self._next_network, tenant_id, urls, network_address, mask, scalability=scalability
        )
        self._next_network += 1
        self.networks[net.id] = net
        self._dirty_networks.add(net.id)
        return net

    @_mutation(_net_arg)
    def set_controllers(self, net_id: int, controller_urls: list[str]) -> VirtualNetwork:
        net = self.get_network(net_id)
        urls = [str(parse_controller_url(u)) for u in controller_urls]
        net.controller_urls = urls
        self._changed(net)
        return net

    @_mutation(_net_arg)
    def set_scalability(self, net_id: int, level: str) -> VirtualNetwork:
        """The network's flow-rule reduction level (Libera's scalability level), the tenant's
        choice: one of SCALABILITY_LEVELS.  A started network is re-derived with it (announced
        "changed"); the same level again changes nothing and announces nothing."""
        net = self.get_network(net_id)
        level = scalability_level(level)
        if level != net.scalability:
            net.scalability = level
            self._changed(net)
        return net

    @_mutation(_net_arg)
    def set_limits(self, net_id: int, limits: Mapping[str, object]) -> VirtualNetwork:
        """Replace the network's override of the default data-plane limits (the admin's
        call: the API checks who asks): each of LIMIT_FIELDS a whole number (0: unlimited)
        or absent / None (the default applies).  A started network is re-derived with
        them (its meters change in place); the same override again announces nothing."""
        net = self.get_network(net_id)
        unknown = sorted(set(limits) - set(LIMIT_FIELDS))
        if unknown:
            raise InvalidRequest(
                f"unknown limit {unknown[0]!r}: expected {', '.join(LIMIT_FIELDS)}"
            )
        new = Limits(**{k: v for k, v in limits.items() if v is not None})  # type: ignore[arg-type]
        why = new.problem()
        if why is not None:
            raise InvalidRequest(why)
        if new != net.limits:
            net.limits = new
            self._changed(net)
        return net

    def effective_limits(self, net: VirtualNetwork) -> Limits:
        """The limits in force for `net`: its override over the admin's defaults."""
        return net.limits.over(self.default_limits)

    @_mutation(_net_arg)
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

    @_mutation(_net_arg)
    def start_network(self, net_id: int) -> VirtualNetwork:
        net = self.get_network(net_id)
        if not net.started:
            net.started = True
            self._notify("started", net)
        return net

    @_mutation(_net_arg)
    def stop_network(self, net_id: int) -> VirtualNetwork:
        net = self.get_network(net_id)
        if net.started:
            net.started = False
            self._notify("stopped", net)
        return net

    @_mutation(_net_arg)
    def remove_network(self, net_id: int) -> None:
        net = self.get_network(net_id)
        if net.started:
            self.stop_network(net_id)
        for sw in net.switches.values():
            self._vswitch_index.discard(sw.index)
        del self.networks[net_id]
        self._notify("removed", net)

    # --- vswitches -----------------------------------------------------------------------------
    @_mutation(_net_arg)
    def create_switch(
        self,
        net_id: int,
        dpids: list[int],
        vdpid: int | None = None,
        routing: str = "spf",
        backup_num: int = 0,
    ) -> VSwitch:
        """A vswitch on one pswitch, or a big switch over several (OVX `createSwitch`).

        A pswitch hosts at most one vswitch per network.  A big switch's pswitches must speak
        OpenFlow 1.3 and be joined by physical links among themselves; `routing` and
        `backup_num` say how it carries packets between them (see `set_internal_routing`).
        """
        net = self.get_network(net_id)
        if not isinstance(dpids, list) or not dpids:
            raise InvalidRequest("dpids must be a non-empty list of physical dpids")
        wanted: list[int] = []
        for d in dpids:
            dpid = _int(d, "dpid", 1 << 64)
            if dpid in wanted:
                raise InvalidRequest(f"dpid {dpid:#018x} is given twice")
            if dpid not in self.topo.switches:
                raise NotFound(f"unknown physical dpid {dpid:#018x}")
            wanted.append(dpid)
        for dpid in wanted:
            for sw in net.switches.values():
                if dpid in sw.dpids:
                    raise Conflict(
                        f"pswitch {dpid:#018x} already hosts vswitch {sw.vdpid:#018x} of "
                        f"network {net.id} (a pswitch hosts one vswitch per network)"
                    )
        routing, backup_num = _routing(routing, backup_num)
        if len(wanted) > 1:
            for dpid in wanted:
                if self.topo.switches[dpid].of_version == 1:
                    raise InvalidRequest(
                        f"pswitch {dpid:#018x} speaks only OpenFlow 1.0: a big switch needs "
                        "OpenFlow 1.3 pswitches"
                    )
            self._check_joined(wanted)
        elif (routing, backup_num) != ("spf", 0):
            raise InvalidRequest(
                "internal routing is for big switches (several dpids); a vswitch on one "
                "pswitch has none"
            )
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
        self._check_quota(net.tenant_id, "vswitches")
        index = next(
            (i for i in range(1, MAX_VSWITCH_INDEX + 1) if i not in self._vswitch_index), 0
        )
        if not index:
            raise Conflict("vswitch id space exhausted")
        self._vswitch_index.add(index)
        sw = VSwitch(vdpid, wanted, index, routing=routing, backup_num=backup_num)
        net.switches[vdpid] = sw
        self._changed(net)
        return sw

    @_mutation(_net_arg)
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

    @_mutation(_net_arg)
    def set_internal_routing(
        self, net_id: int, vdpid: int, algorithm: str, backup_num: int = 0
    ) -> VSwitch:
        """How a big switch carries packets between its pswitches (OVX `setInternalRouting`):
        "spf", the shortest path through its own pswitches plus `backup_num` link-disjoint
        backups, or "manual", the routes set with `connect_route`.  Routes are kept when the
        switch goes back to spf, and used again when it returns to manual."""
        net = self.get_network(net_id)
        sw = self._big_switch(net, vdpid, "internal routing")
        sw.routing, sw.backup_num = _routing(algorithm, backup_num)
        self._changed(net)
        return sw

    @_mutation(_net_arg)
    def connect_route(
        self,
        net_id: int,
        vdpid: int,
        src_vport: int,
        dst_vport: int,
        path: PathSpec,
        priority: int,
        both_ways: bool = False,
    ) -> Route:
        """A manual internal route of a big switch (OVX `connectRoute`): what enters at
        `src_vport` and leaves at `dst_vport` takes `path`, from the src vport's pswitch to
        the dst vport's, through the big switch's own pswitches only.  Among the routes
        between two vports the highest priority whose links are up is used; the others are its
        backups.  `both_ways` also adds the mirror route (dst -> src over the same links
        backwards, same priority; id + 1), as OVX's routes are bidirectional."""
        net = self.get_network(net_id)
        sw = self._big_switch(net, vdpid, "routes")
        if sw.routing != "manual":
            raise InvalidRequest(
                f"vswitch {sw.vdpid:#018x} routes by {sw.routing}: set its internal routing "
                "to manual before adding routes"
            )
        a = self._vport(net, sw.vdpid, src_vport)
        b = self._vport(net, sw.vdpid, dst_vport)
        if a.number == b.number:
            raise InvalidRequest(
                f"a route joins two different vports, not vport {a.number} to itself"
            )
        if a.dpid == b.dpid:
            raise InvalidRequest(
                f"vports {a.number} and {b.number} are both on pswitch {a.dpid:#018x}: "
                "no internal route joins them"
            )
        priority = _ranged(priority, "priority", MAX_PATH_PRIORITY)
        hops = _hops(path)
        self._check_path(
            hops, a.dpid, b.dpid, f"route from vport {a.number} to vport {b.number}", sw
        )
        wanted = [(a.number, b.number, hops)]
        if both_ways:
            wanted.append((b.number, a.number, reverse(hops)))
        for src, dst, h in wanted:
            for r in sw.routes.values():
                if (r.src_vport, r.dst_vport) == (src, dst) and (
                    r.path.priority == priority or r.path.hops == _key(h)
                ):
                    same = "priority" if r.path.priority == priority else "path"
                    raise Conflict(
                        f"route {r.id} already joins vport {src} to vport {dst} with this "
                        f"{same} (priority {r.path.priority} over "
                        f"{format_path(tuple(Hop(*x) for x in r.path.hops))}); remove it first"
                    )
        routes = []
        for src, dst, h in wanted:
            r = Route(self._next_route, src, dst, ManualPath(_key(h), priority))
            self._next_route += 1
            sw.routes[r.id] = r
            routes.append(r)
        self._changed(net)
        return routes[0]

    @_mutation(_net_arg)
    def disconnect_route(
        self, net_id: int, vdpid: int, route_id: int, both_ways: bool = False
    ) -> None:
        """Remove a route (OVX `disconnectRoute`); `both_ways` also removes its mirror (the
        route between the same vports the other way over the same links, same priority)."""
        net = self.get_network(net_id)
        sw = self._switch(net, vdpid)
        r = sw.routes.get(_int(route_id, "route id", 1 << 32))
        if r is None:
            raise NotFound(f"vswitch {sw.vdpid:#018x} has no route {route_id}")
        del sw.routes[r.id]
        if both_ways:
            back = tuple((h[2], h[3], h[0], h[1]) for h in reversed(r.path.hops))
            for m in list(sw.routes.values()):
                if (m.src_vport, m.dst_vport, m.path.hops, m.path.priority) == (
                    r.dst_vport,
                    r.src_vport,
                    back,
                    r.path.priority,
                ):
                    del sw.routes[m.id]
        self._changed(net)

    # --- vports --------------------------------------------------------------------------------
    @_mutation(_net_arg)
    def create_port(
        self, net_id: int, dpid: int, port: int, vdpid: int | None = None,
        exclusive: bool = False,
    ) -> VPort:  # fmt: skip
        """Map a physical port into the vswitch on that pswitch (OVX `createPort`); on a big
        switch, `dpid` is any of its pswitches.

        `exclusive`: an edge vport that holds the physical port alone and admits every frame
        arriving there (any source MAC, any VLAN tags), classified by the port alone.  That
        is only safe when nothing else can send on that port, so it is refused (409) on a
        port any vport or host of any network already uses, and every later vport or host
        move onto the port is refused too; a port facing another pswitch or on an OpenFlow
        1.0 pswitch (whose single tag cannot carry the tenant's own VLANs) cannot be one.
        """
        net = self.get_network(net_id)
        dpid = _int(dpid, "dpid", 1 << 64)
        port = _int(port, "port", 0xFFFFFF00)
        if not isinstance(exclusive, bool):
            raise InvalidRequest(f"exclusive {exclusive!r} must be true or false")
        if dpid not in self.topo.switches:
            raise NotFound(f"unknown physical dpid {dpid:#018x}")
        if not self.topo.has_port(dpid, port):
            raise NotFound(f"pswitch {dpid:#018x} has no port {port}")
        self._not_held(net, dpid, port, "a vport")
        if vdpid is not None:
            sw = self._switch(net, vdpid)
            if dpid not in sw.dpids:
                raise InvalidRequest(f"vswitch {sw.vdpid:#018x} is not on pswitch {dpid:#018x}")
        else:
            found = [s for s in net.switches.values() if dpid in s.dpids]
            if not found:
                raise NotFound(f"network {net.id} has no vswitch on pswitch {dpid:#018x}")
            sw = found[0]
        kind = VPortKind.LINK if self.topo.is_link_port(dpid, port) else VPortKind.EDGE
        if kind is VPortKind.EDGE and any(
            (p.dpid, p.port) == (dpid, port) and p.kind is VPortKind.EDGE for p in sw.ports.values()
        ):
            raise Conflict(f"port {port} of {dpid:#018x} is already an edge vport of this vswitch")
        if exclusive:
            self._exclusive_ok(dpid, port, kind)
        self._check_quota(net.tenant_id, "vports")
        number = next((n for n in range(1, MAX_VPORT + 1) if n not in sw.ports), 0)
        if not number:
            raise Conflict(f"vswitch {sw.vdpid:#018x} has no free vport number")
        vp = VPort(number, dpid, port, kind, exclusive=exclusive)
        sw.ports[number] = vp
        self._changed(net)
        return vp

    @_mutation(_net_arg)
    def remove_port(self, net_id: int, vdpid: int, vport: int) -> None:
        """Remove a vport with its vlink, its hosts and the routes that start or end on it."""
        net = self.get_network(net_id)
        sw = self._switch(net, vdpid)
        vp = self._vport(net, sw.vdpid, vport)
        if vp.link_id is not None:
            lk = net.links.pop(vp.link_id)
            self._unlink(net, lk)
        for h in [h for h in net.hosts.values() if (h.vdpid, h.vport) == (sw.vdpid, vp.number)]:
            del net.hosts[h.id]
        for r in [r for r in sw.routes.values() if vp.number in (r.src_vport, r.dst_vport)]:
            del sw.routes[r.id]
        del sw.ports[vp.number]
        self._changed(net)

    # --- vlinks --------------------------------------------------------------------------------
    @_mutation(_net_arg)
    def create_link(
        self,
        net_id: int,
        src_vdpid: int,
        src_vport: int,
        dst_vdpid: int,
        dst_vport: int,
        algorithm: str = "spf",
        backup_num: int = 0,
    ) -> VLink:
        """Join two link vports of different vswitches (OVX `connectLink`).  "spf" takes the
        shortest physical path and `backup_num` link-disjoint backups (a path must exist
        now); "manual" starts with no path, and is down until `set_link_path` gives one."""
        net = self.get_network(net_id)
        a = self._vport(net, src_vdpid, src_vport)
        b = self._vport(net, dst_vdpid, dst_vport)
        if src_vdpid == dst_vdpid:
            raise InvalidRequest("a vlink must join two different vswitches")
        algorithm, backup_num = _routing(algorithm, backup_num)
        upgrade = []  # created before LLDP found their link; without hosts they can be one
        for end, vp in (((src_vdpid, src_vport), a), ((dst_vdpid, dst_vport), b)):
            kind = vp.kind
            if vp.exclusive:
                raise InvalidRequest(
                    f"vport {end[1]} of {end[0]:#018x} is an exclusive edge vport: it cannot "
                    "be an end of a vlink"
                )
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
        if algorithm == "spf":
            try:
                vlink_path(self.topo, (a.dpid, a.port), (b.dpid, b.port))
            except NoPath as exc:
                raise InvalidRequest(f"no physical path joins the two vports: {exc}") from None
        self._check_quota(net.tenant_id, "vlinks")
        for vp in upgrade:
            vp.kind = VPortKind.LINK
        lk = VLink(
            self._next_link,
            VLinkEnd(src_vdpid, src_vport),
            VLinkEnd(dst_vdpid, dst_vport),
            algorithm=algorithm,
            backup_num=backup_num,
        )
        self._next_link += 1
        a.link_id = b.link_id = lk.id
        net.links[lk.id] = lk
        self._changed(net)
        return lk

    @_mutation(_net_arg)
    def remove_link(self, net_id: int, link_id: int) -> None:
        net = self.get_network(net_id)
        lk = self._link(net, link_id)
        del net.links[lk.id]
        self._unlink(net, lk)
        self._changed(net)

    @_mutation(_net_arg)
    def set_link_path(self, net_id: int, link_id: int, path: PathSpec, priority: int) -> VLink:
        """Give a manual vlink a physical path (OVX `setLinkPath`).

        The path joins the src vport's pswitch to the dst vport's (given from the dst end, it
        is stored reversed, as OVX accepts either).  The highest priority whose links are up
        carries the vlink, the others are its backups.  A path with the priority, or the
        links, of one the vlink has replaces that one.
        """
        net = self.get_network(net_id)
        lk = self._link(net, link_id)
        if lk.algorithm != "manual":
            raise InvalidRequest(
                f"vlink {lk.id} routes by {lk.algorithm}: only a vlink created with "
                "algorithm manual takes paths"
            )
        priority = _ranged(priority, "priority", MAX_PATH_PRIORITY)
        a = self._vport(net, lk.src.vdpid, lk.src.vport)
        b = self._vport(net, lk.dst.vdpid, lk.dst.vport)
        hops = _hops(path)
        if a.dpid != b.dpid and (hops[0].src_dpid, hops[-1].dst_dpid) == (b.dpid, a.dpid):
            hops = reverse(hops)
        self._check_path(hops, a.dpid, b.dpid, f"vlink {lk.id}", None)
        key = _key(hops)
        kept = [p for p in lk.paths if p.priority != priority and p.hops != key]
        lk.paths = sorted([*kept, ManualPath(key, priority)], key=lambda p: -p.priority)
        self._changed(net)
        return lk

    @_mutation(_net_arg)
    def remove_link_path(self, net_id: int, link_id: int, priority: int) -> VLink:
        """Take the path with `priority` off a manual vlink (with none left, it is down)."""
        net = self.get_network(net_id)
        lk = self._link(net, link_id)
        priority = _ranged(priority, "priority", MAX_PATH_PRIORITY)
        if not any(p.priority == priority for p in lk.paths):
            raise NotFound(f"vlink {lk.id} has no path with priority {priority}")
        lk.paths = [p for p in lk.paths if p.priority != priority]
        self._changed(net)
        return lk

    # --- hosts ---------------------------------------------------------------------------------
    @_mutation(_net_arg)
    def connect_host(self, net_id: int, vdpid: int, vport: int, mac: object) -> Host:
        """Attach a host (by MAC) to an edge vport: table 0 admits its frames there.  On an
        exclusive vport every frame is admitted anyway, so a host there is information only
        (the API's host lists, OVX scripts that call connectHost after createPort, and the
        destination LITEs of a `lite` network); it never moves (see move_host)."""
        net = self.get_network(net_id)
        vp = self._vport(net, vdpid, vport)
        if vp.kind is not VPortKind.EDGE:
            raise InvalidRequest(f"vport {vport} of {vdpid:#018x} is a link port; hosts need edge")
        text = normalize_mac(mac)
        self._mac_free(text, vp.dpid, vp.port, None)
        net_vp_hosts = [h for h in net.hosts.values() if (h.vdpid, h.vport) == (vdpid, vport)]
        if any(h.location is not None for h in net_vp_hosts):
            raise Conflict(f"vport {vport} of {vdpid:#018x} follows a host that moved; "
                           "give the new host a vport of its own")  # fmt: skip
        self._check_quota(net.tenant_id, "hosts")
        h = Host(self._next_host, vdpid, vport, text)
        self._next_host += 1
        net.hosts[h.id] = h
        self._changed(net)
        return h

    def _mac_free(self, mac: str, dpid: int, port: int, moving: Host | None) -> None:
        """Refuse a second host with one MAC on one physical port (wherever hosts are now)."""
        for other in self.networks.values():
            for h in other.hosts.values():
                if h is not moving and h.mac == mac and other.where(h) == (dpid, port):
                    raise Conflict(
                        f"MAC {mac} is already attached to physical port {port} of "
                        f"{dpid:#018x}; hosts on one physical port need distinct MACs"
                    )

    def _exclusive_ok(self, dpid: int, port: int, kind: VPortKind) -> None:
        """Refuse an exclusive vport where classifying by the port alone would be unsafe or
        impossible: a port facing another pswitch (fabric traffic arrives there), an OpenFlow
        1.0 pswitch (no classification table, and its one VLAN tag is the fabric's: the
        tenant's own tags, which an exclusive vport promises to carry, would be overwritten),
        or a port some vport or host of any network already uses (its frames would be taken
        for the exclusive vport's)."""
        if kind is VPortKind.LINK:
            raise InvalidRequest(
                f"port {port} of {dpid:#018x} faces another pswitch: only an edge port can be "
                "held by an exclusive vport"
            )
        if self.topo.switches[dpid].of_version == 1:
            raise InvalidRequest(
                f"pswitch {dpid:#018x} speaks only OpenFlow 1.0: an exclusive vport needs "
                "OpenFlow 1.3 (tenant VLAN tags cannot cross a 1.0 pswitch untouched)"
            )
        for other in self.networks.values():
            for sw in other.switches.values():
                if any((p.dpid, p.port) == (dpid, port) for p in sw.ports.values()):
                    raise Conflict(
                        f"port {port} of {dpid:#018x} is already mapped to a vport: an "
                        "exclusive vport needs a physical port no other vport (of any "
                        "network) uses"
                    )
            if any(other.where(h) == (dpid, port) for h in other.hosts.values()):
                raise Conflict(
                    f"a host is on port {port} of {dpid:#018x}: an exclusive vport needs a "
                    "physical port no host (of any network) is on"
                )

    def _not_held(self, net: VirtualNetwork, dpid: int, port: int, what: str) -> None:
        """Refuse `what` on a physical port an exclusive vport holds (every frame arriving
        there is that vport's).  Another network's vport is not named: tenants do not see
        each other's networks."""
        for other in self.networks.values():
            for sw in other.switches.values():
                for vp in sw.ports.values():
                    if vp.exclusive and (vp.dpid, vp.port) == (dpid, port):
                        whose = (
                            f"vport {vp.number} of vswitch {sw.vdpid:#018x}"
                            if other is net
                            else "a vport of another network"
                        )
                        raise Conflict(
                            f"port {port} of {dpid:#018x} is held exclusively by {whose}: "
                            f"{what} cannot use it"
                        )

    @_mutation(_net_arg, undoes=True, announce_first=True)
    def move_host(self, net_id: int, host_id: int, dpid: object, port: object) -> Host:
        """The host is now on physical edge port (dpid, port) (a live-migrated VM): its
        vport follows it, the tenant sees nothing change.  Back on its vport's own port, it
        is home again.  A vport carrying other hosts cannot follow one of them (409)."""
        net = self.get_network(net_id)
        h = net.hosts.get(_int(host_id, "host id", 1 << 32))
        if h is None:
            raise NotFound(f"no host {host_id} in network {net.id}")
        d = _int(dpid, "dpid", 1 << 64)
        pt = _int(port, "port", 0xFFFFFF00)
        if d not in self.topo.switches:
            raise NotFound(f"unknown physical dpid {d:#018x}")
        if not self.topo.has_port(d, pt):
            raise NotFound(f"pswitch {d:#018x} has no port {pt}")
        if self.topo.is_link_port(d, pt):
            raise InvalidRequest(f"port {pt} of {d:#018x} faces another pswitch: not a host's")
        vp = self._vport(net, h.vdpid, h.vport)
        if vp.exclusive:
            raise Conflict(
                f"host {h.id} is on exclusive vport {vp.number} of {h.vdpid:#018x}: that vport "
                "is its physical port and classifies by it alone, it does not follow a host "
                "(map the new port as a vport of its own)"
            )
        if (vp.dpid, vp.port) != (d, pt):
            self._not_held(net, d, pt, f"host {h.id}")
            for end in {d, vp.dpid}:
                info = self.topo.switches.get(end)
                if info is not None and info.of_version == 1:
                    # no classification table there: a moved host's packets could be
                    # neither classified where it is nor taken in as its vport's at home
                    raise InvalidRequest(
                        f"pswitch {end:#018x} speaks OpenFlow 1.0: a host cannot move "
                        "to or away from a port of it"
                    )
        shared = sorted(o.id for o in net.hosts.values()
                        if o.id != h.id and (o.vdpid, o.vport) == (h.vdpid, h.vport))  # fmt: skip
        if shared:
            others = ", ".join(map(str, shared))
            raise Conflict(f"vport {h.vport} of {h.vdpid:#018x} also carries host(s) {others}: "
                           f"it cannot follow host {h.id} alone")  # fmt: skip
        self._mac_free(h.mac, d, pt, h)
        home = (vp.dpid, vp.port) == (d, pt)
        if (None if home else (d, pt)) == h.location:
            return h  # already there: nothing changes
        was = h.location
        self._undo.append(lambda: setattr(h, "location", was))
        h.location = None if home else (d, pt)
        self._dirty_hosts.add((net.id, h.id))
        if net.started:
            self._events.append(("changed", net))
        return h

    @_mutation(_net_arg)
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

    def _big_switch(self, net: VirtualNetwork, vdpid: int, what: str) -> VSwitch:
        sw = self._switch(net, vdpid)
        if not sw.is_big:
            raise InvalidRequest(
                f"vswitch {sw.vdpid:#018x} is on one pswitch: only a big switch (a vswitch "
                f"over several pswitches) has {what}"
            )
        return sw

    def _link(self, net: VirtualNetwork, link_id: int) -> VLink:
        lk = net.links.get(_int(link_id, "vlink id", 1 << 32))
        if lk is None:
            raise NotFound(f"no vlink {link_id} in network {net.id}")
        return lk

    def _check_joined(self, dpids: list[int]) -> None:
        """A big switch routes inside itself: its pswitches must be one connected piece."""
        g = self.topo.graph().subgraph(dpids)
        reach = nx.node_connected_component(nx.Graph(g), dpids[0])
        apart = [d for d in dpids if d not in reach]
        if apart:
            raise InvalidRequest(
                f"pswitch {apart[0]:#018x} is not joined to {dpids[0]:#018x} by physical links "
                "through the big switch's own pswitches (as LLDP has found them so far)"
            )

    def _check_path(
        self, hops: Path, src: int, dst: int, what: str, within: VSwitch | None
    ) -> None:
        """A path must run from pswitch `src` to `dst` over discovered physical links, each
        hop leaving where the previous one arrived, never visiting a pswitch twice, and
        (for a big switch's route) only through the switch's own pswitches."""
        text = format_path(hops)
        if hops[0].src_dpid != src:
            raise InvalidRequest(
                f"{what}: the path must start on pswitch {src} ({src:#x}), not on "
                f"{hops[0].src_dpid} ({text})"
            )
        if hops[-1].dst_dpid != dst:
            raise InvalidRequest(
                f"{what}: the path must end on pswitch {dst} ({dst:#x}), not on "
                f"{hops[-1].dst_dpid} ({text})"
            )
        for x, y in itertools.pairwise(hops):
            here = format_path((x, y))
            if x.dst_dpid != y.src_dpid:
                raise InvalidRequest(f"{what}: hops do not join: {here}")
            if x.dst_port == y.src_port:
                raise InvalidRequest(
                    f"{what}: a hop leaves pswitch {y.src_dpid} through port {y.src_port}, "
                    f"where the one before arrived: {here}"
                )
        seen = [hops[0].src_dpid, *(h.dst_dpid for h in hops)]
        for dpid in seen:
            if seen.count(dpid) > 1:
                raise InvalidRequest(f"{what}: the path visits pswitch {dpid} twice ({text})")
            if within is not None and dpid not in within.dpids:
                raise InvalidRequest(
                    f"{what}: pswitch {dpid} ({dpid:#x}) is not part of big switch "
                    f"{within.vdpid:#018x}"
                )
        for h in hops:
            hop = format_path((h,))
            for dpid, port in ((h.src_dpid, h.src_port), (h.dst_dpid, h.dst_port)):
                if dpid not in self.topo.switches:
                    raise InvalidRequest(f"{what}: hop {hop}: unknown pswitch {dpid} ({dpid:#x})")
                if not self.topo.has_port(dpid, port):
                    raise InvalidRequest(f"{what}: hop {hop}: pswitch {dpid} has no port {port}")
            peer = self.topo.peer(h.src_dpid, h.src_port)
            if peer != (h.dst_dpid, h.dst_port):
                faces = "no pswitch" if peer is None else f"{peer[0]}/{peer[1]}"
                raise InvalidRequest(
                    f"{what}: hop {hop} is not a physical link: port {h.src_port} of pswitch "
                    f"{h.src_dpid} faces {faces}"
                )

    def _unlink(self, net: VirtualNetwork, lk: VLink) -> None:
        for end in (lk.src, lk.dst):
            vp = net.vport(end.vdpid, end.vport)
            if vp is not None:
                vp.link_id = None

    def _changed(self, net: VirtualNetwork) -> None:
        self._dirty_networks.add(net.id)
        if net.started:
            self._notify("changed", net)

    def _notify(self, event: str, net: VirtualNetwork) -> None:
        """Announced to the listeners once the change is written (see _mutation)."""
        self._dirty_networks.add(net.id)
        self._events.append((event, net))


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


def _ranged(value: object, what: str, high: int) -> int:
    number = _int(value, what, 1 << 64) if not isinstance(value, int) else value
    if isinstance(number, bool) or not isinstance(number, int):
        raise InvalidRequest(f"{what} {value!r} is not an integer")
    if not 0 <= number <= high:
        raise InvalidRequest(f"{what} {number} is out of range 0-{high}")
    return number


def scalability_level(level: object) -> str:
    """Validate a flow-rule reduction level: one of SCALABILITY_LEVELS, lower case."""
    if not isinstance(level, str) or level not in SCALABILITY_LEVELS:
        raise InvalidRequest(
            f"scalability level {level!r}: expected one of {', '.join(SCALABILITY_LEVELS)}"
        )
    return level


def _routing(algorithm: object, backup_num: object) -> tuple[str, int]:
    """Validate a routing choice: "spf" or "manual", and 0-8 backup paths."""
    if algorithm not in ROUTING_ALGORITHMS:
        raise InvalidRequest(
            f"routing algorithm {algorithm!r}: expected one of {', '.join(ROUTING_ALGORITHMS)}"
        )
    assert isinstance(algorithm, str)
    return algorithm, _ranged(backup_num, "backup_num", MAX_BACKUP_NUM)


def _hops(path: object) -> Path:
    """A path from OVX text or a sequence of (src_dpid, src_port, dst_dpid, dst_port)."""
    if isinstance(path, str):
        try:
            return parse_path(path)
        except ValueError as exc:
            raise InvalidRequest(f"path {path!r}: {exc}") from None
    if not isinstance(path, Sequence) or not path:
        raise InvalidRequest("a path is text (dpid/port-dpid/port,...) or a non-empty list of hops")
    out = []
    for i, h in enumerate(path, 1):
        if isinstance(h, Hop):
            out.append(h)
            continue
        if isinstance(h, str | bytes) or not isinstance(h, Sequence) or len(h) != 4:
            raise InvalidRequest(
                f"hop {i} of the path: expected (src_dpid, src_port, dst_dpid, dst_port)"
            )
        sd, sp, dd, dp = (
            _int(v, w, lim)
            for v, w, lim in zip(
                h,
                ("src_dpid", "src_port", "dst_dpid", "dst_port"),
                (1 << 64, 1 << 32) * 2,
                strict=True,
            )
        )
        out.append(Hop(sd, sp, dd, dp))
    return tuple(out)


def _key(hops: Path) -> PathHops:
    return tuple((h.src_dpid, h.src_port, h.dst_dpid, h.dst_port) for h in hops)


__all__ = ["Forbidden", "NetworkManager", "normalize_mac", "scalability_level"]
