"""Applies DNB intent to compute nodes: validate, plan, apply node by node, roll back.

Every public method either changes intent *and* every affected node, or raises a
:class:`~tenantvisor.errors.TenantvisorError` and leaves intent and nodes as they were:

1. validate the request against the intent (unknown node -> 404, duplicate MAC -> 409, a name
   that would not fit an interface -> 400, ...): nothing has been touched yet;
2. plan the new intent (pure) and diff it against what each node holds;
3. check every node that would change is connected (424 otherwise, still untouched);
4. apply the diffs, the node of the new VM first, each node as one OVSDB transaction
   (verified), then its addresses, neighbour seeds and rules;
5. if any step fails, apply the inverse diff to every node touched so far (OVSDB changes are
   idempotent "ensure" operations, so a half-done step is undone too) and re-raise.

Calls are synchronous and serialised by one lock: a step is a few OVSDB round trips and
subprocesses (tens of ms), and the API runs them in its thread pool, off the event loop.

**Intent in the store** (``store=``, the daemon's `Store`; None in tests and with ``--db none``):

6. a store that is not connected (and does not come back within its timeout) refuses the
   change before any node is touched (503, as an unreachable node's 424 in 3); once every
   node holds the change, it is written to the store in the same call, one
   transaction (the record's own ``put_*``/``delete_*``, or ``put_dnb_intent`` when one change
   touches several records); only then does the manager's intent change and the call return;
7. if the store fails then, the nodes are rolled back as in 5 and the call raises
   :class:`~tenantvisor.errors.Unavailable` (HTTP 503) naming the store: the API never answers
   success for a change the store does not hold.  A write that timed out after it was sent may
   still have reached the store; the store is then marked dirty and rewritten from the
   manager's intent (what the nodes hold) by the next change or the upkeep, so it never keeps
   a change the API refused for longer than the store is away.

**Restart** (:meth:`DnbManager.restore`): the stored intent comes back, every node is
re-connected, and each reachable node is *reconciled*: what it holds (its OVSDB bridges and
ports tagged as ours, provider rule cookies, addresses, tunnel neighbours) is read back as a
plan, the planner's diff against the desired plan is applied with the usual idempotent
"ensure" operations, so what is already right is not touched (no bridge, port or rule is
deleted and re-created) and what a change that was never stored left behind is removed.  A
node that does not answer is logged and retried by the upkeep (:meth:`DnbManager.upkeep`),
which also reconciles a node again whenever its OVSDB connection dropped and came back (an
``ovs-vswitchd`` restart loses rules and neighbours).  Until a node is reconciled, a change
that needs it is refused (424) as for a disconnected node.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from tenantvisor.dedicated import planner
from tenantvisor.dedicated.agent import AgentError, LocalAgent
from tenantvisor.dedicated.flows import FlowError, OfctlFlows
from tenantvisor.dedicated.model import (
    Intent,
    Mode,
    Network,
    Node,
    PortKind,
    TenantPort,
    VmBinding,
)
from tenantvisor.dedicated.ovsdb import NodeOvsdb, NodeUnreachable
from tenantvisor.dedicated.planner import BridgeSpec, NodeDiff, NodePlan, PortSpec
from tenantvisor.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    TenantvisorError,
    Unavailable,
)
from tenantvisor.virtual.manager import normalize_mac

log = logging.getLogger(__name__)

MAX_NODES = 250
_NODE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_NET_ID = re.compile(r"[a-z0-9]+")
_IFNAME = re.compile(r"[A-Za-z0-9_.:-]+")
_TENANT_PORT = re.compile(r"[a-z][a-z0-9-]*")
_RESERVED_PREFIXES = ("br", "ex-", "pi-", "pt-", "g-", "gre-", "patch-", "tv", "eth", "ovs")
DEFAULT_ENDPOINT_POOL = ipaddress.IPv4Network("10.124.0.0/16")
FIRST_SEGMENTATION_ID = 1000


RETRY_MAX = 30.0  # seconds between attempts to reach or reconcile a node, at most


class StepFailed(Conflict):
    """A node-local step failed; the change was rolled back."""


class DnbStore(Protocol):
    """Where DNB intent is kept (`tenantvisor.store.Store`): each call one transaction."""

    remote: str
    timeout: float  # seconds a call waits for the store

    @property
    def connected(self) -> bool: ...

    def put_dnb_node(self, node: Node) -> None: ...
    def delete_dnb_node(self, name: str) -> None: ...
    def put_dnb_network(self, net: Network) -> None: ...
    def delete_dnb_network(self, net_id: str) -> None: ...
    def put_vm_binding(self, vm: VmBinding) -> None: ...
    def delete_vm_binding(self, network: str, mac: str) -> None: ...
    def put_tenant_port(self, port: TenantPort) -> None: ...
    def delete_tenant_port(self, node: str, name: str) -> None: ...
    def put_dnb_intent(self, intent: Intent) -> None: ...


def _store_writes(old: Intent, new: Intent) -> list[tuple[str, tuple[Any, ...]]]:
    """The store calls (method, arguments) that turn ``old`` into ``new``, one per record."""
    out: list[tuple[str, tuple[Any, ...]]] = []
    out += [("delete_dnb_node", (k,)) for k in old.nodes.keys() - new.nodes.keys()]
    out += [("delete_dnb_network", (k,)) for k in old.networks.keys() - new.networks.keys()]
    out += [("delete_vm_binding", k) for k in old.vms.keys() - new.vms.keys()]
    out += [("delete_tenant_port", k) for k in old.tenant_ports.keys() - new.tenant_ports.keys()]
    out += [("put_dnb_node", (r,)) for k, r in new.nodes.items() if old.nodes.get(k) != r]
    out += [("put_dnb_network", (r,)) for k, r in new.networks.items() if old.networks.get(k) != r]
    out += [("put_vm_binding", (r,)) for k, r in new.vms.items() if old.vms.get(k) != r]
    out += [
        ("put_tenant_port", (r,))
        for k, r in new.tenant_ports.items()
        if old.tenant_ports.get(k) != r
    ]
    return out


def _check_ifname(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or not _IFNAME.fullmatch(name):
        raise InvalidRequest(f"{what} {name!r}: letters, digits, '_', '.', ':', '-' only")
    if len(name) > planner.IFNAMSIZ:
        raise InvalidRequest(
            f"{what} {name!r} is {len(name)} characters: an interface name fits {planner.IFNAMSIZ}"
        )
    return name


def _ipv4_interface(value: object, what: str) -> ipaddress.IPv4Interface:
    try:
        text = str(value)
        if "/" not in text:
            raise ValueError("needs a prefix length")
        return ipaddress.IPv4Interface(text)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"{what} {value!r}: expected IPv4 address/prefix ({exc})") from None


def _controller_target(value: object) -> str:
    """Only ``tcp:IPv4:PORT``: the bridge connects out to the tenant's controller."""
    m = re.fullmatch(r"tcp:([0-9.]+):([0-9]{1,5})", str(value))
    if not isinstance(value, str) or m is None:
        raise InvalidRequest(f"controller {value!r}: expected tcp:IPv4:PORT")
    try:
        ip = ipaddress.IPv4Address(m.group(1))
    except ValueError:
        raise InvalidRequest(f"controller {value!r}: {m.group(1)} is not IPv4") from None
    port = int(m.group(2))
    if not 1 <= port <= 65535 or ip.is_unspecified or ip.is_multicast:
        raise InvalidRequest(f"controller {value!r}: bad address or port")
    return f"tcp:{ip}:{port}"


class DnbManager:
    """Intent for DNB/CNB plus the connections to the nodes that realise it."""

    def __init__(
        self,
        tenant_name: Callable[[int], str] | None = None,
        *,
        ovsdb_timeout: float = 5.0,
        endpoint_pool: str = str(DEFAULT_ENDPOINT_POOL),
        store: DnbStore | None = None,
    ) -> None:
        self.store = store
        self._store_dirty = False  # the store may differ from self.intent (a failed write)
        self.intent = Intent()
        self.plans: dict[str, NodePlan] = {}
        self._db: dict[str, NodeOvsdb] = {}
        self._flows: dict[str, OfctlFlows] = {}
        self._agents: dict[str, LocalAgent] = {}
        self._lock = threading.RLock()
        self._tenant_name = tenant_name or (lambda tid: str(tid))
        self.ovsdb_timeout = ovsdb_timeout
        self.endpoint_pool = ipaddress.IPv4Network(endpoint_pool)
        self.reasserted = 0  # provider rules put back after a tenant removed them
        # nodes whose plan is what they should hold, not known to be what they hold (restored,
        # never reached or reconciled yet); the OVSDB session each node was reconciled on
        self._unsynced: set[str] = set()
        self._synced_on: dict[str, int | None] = {}
        self._retry: dict[str, tuple[float, float, str]] = {}  # node: (next, backoff, why)
        self._store_retry = (0.0, 0.5)  # the same, for rewriting a dirty store
        self._closed = False
        # several tenantvisor instances: the nodes are managed by one of them; this says
        # which when it is another (None: this one), and the API sends callers there
        self.elsewhere: Callable[[], str | None] = lambda: None

    def _who(self, net: Network) -> str:
        return f"tenant={self._tenant_name(net.tenant_id)} net={net.id}"

    # --- nodes (admin) ------------------------------------------------------------------------
    def add_node(
        self,
        name: str,
        ovsdb: str,
        transport_ip: str,
        transport_port: str = "eth1",
        netns: str | None = None,
        rundir: str | None = None,
    ) -> Node:
        """Register a compute node: connect to its OVSDB and build its common bridges."""
        if not isinstance(name, str) or not _NODE_NAME.fullmatch(name):
            raise InvalidRequest(f"node name {name!r}: 1-32 letters, digits, '_', '.', '-'")
        tip = _ipv4_interface(transport_ip, "transport_ip")
        _check_ifname(transport_port, "transport_port")
        if netns is not None and (not isinstance(netns, str) or not _NODE_NAME.fullmatch(netns)):
            raise InvalidRequest(f"netns {netns!r}: 1-32 letters, digits, '_', '.', '-'")
        if not isinstance(ovsdb, str) or not re.fullmatch(
            r"(unix:/\S+|tcp:[0-9.]+:\d{1,5})", ovsdb
        ):
            raise InvalidRequest(f"ovsdb {ovsdb!r}: expected unix:/PATH or tcp:IPv4:PORT")
        if rundir is None:
            if not ovsdb.startswith("unix:"):
                raise InvalidRequest(
                    "a node reached over tcp: needs 'rundir' (where its bridges' OpenFlow "
                    "management sockets are)"
                )
            rundir = str(Path(ovsdb[5:]).parent)
        with self._lock:
            if name in self.intent.nodes:
                raise Conflict(f"node {name} is already registered")
            for other in self.intent.nodes.values():
                if other.transport_ip.ip == tip.ip:
                    raise Conflict(f"transport_ip {tip.ip} is node {other.name}'s")
                if other.ovsdb == ovsdb:
                    raise Conflict(f"node {other.name} already uses {ovsdb}")
            for net in self.intent.networks.values():
                if net.endpoint_subnet.overlaps(tip.network):
                    raise Conflict(
                        f"transport network {tip.network} overlaps the endpoint "
                        f"subnet of network {net.id}"
                    )
            used = {n.index for n in self.intent.nodes.values()}
            index = next((i for i in range(1, MAX_NODES + 1) if i not in used), 0)
            if not index:
                raise Conflict(f"at most {MAX_NODES} nodes")
            node = Node(name, index, ovsdb, tip, transport_port, netns, rundir)
            db = NodeOvsdb(name, ovsdb, self.ovsdb_timeout).connect()
            self._db[name] = db
            self._flows[name] = OfctlFlows(rundir)
            self._agents[name] = LocalAgent(rundir, netns)
            new = self.intent.copy()
            new.nodes[name] = node
            try:
                self._commit(new, first=name)
            except BaseException:
                self._forget(name)
                raise
            log.info("node=%s index=%d ovsdb=%s transport=%s: registered", name, index, ovsdb, tip)
            return node

    def _forget(self, name: str) -> None:
        db = self._db.pop(name, None)
        if db is not None:
            db.close()
        self._flows.pop(name, None)
        self._agents.pop(name, None)
        self.plans.pop(name, None)
        self._unsynced.discard(name)
        self._synced_on.pop(name, None)
        self._retry.pop(name, None)

    def remove_node(self, name: str) -> None:
        """Unregister a node without VMs: its common bridges go too (and any bridge of ours
        it still holds).  If the store then fails, the bridges are built again (503)."""
        with self._lock:
            self._node(name)
            if any(vm.node == name for vm in self.intent.vms.values()):
                raise Conflict(f"node {name} still hosts VMs: detach them first")
            db = self._db[name]
            if not db.connected:
                raise NodeUnreachable(f"node {name}: OVSDB is not connected")
            self._require_store()
            plan = self.plans.get(name, NodePlan(name))
            ours, _ = db.observe()
            db.apply(planner.OvsdbChange(del_bridges=sorted(set(plan.bridges) | set(ours))))
            new = self.intent.copy()
            del new.nodes[name]
            try:
                self._write_store(new)
            except Exception:
                try:
                    self._apply(name, planner.diff(None, plan), plan)
                except Exception as exc2:
                    log.error("node=%s: rebuilding its bridges failed: %s", name, exc2)
                    self._unsynced.add(name)
                raise
            self.intent = new
            self._forget(name)
            log.info("node=%s: removed", name)

    def _node(self, name: object) -> Node:
        node = self.intent.nodes.get(str(name))
        if node is None:
            raise NotFound(f"no node {name!r}")
        return node

    def nodes(self) -> list[Node]:
        return sorted(self.intent.nodes.values(), key=lambda n: n.index)

    def node_info(self, name: str) -> dict[str, Any]:
        """What the node holds now (read from its OVSDB) next to what it should hold."""
        with self._lock:
            node = self._node(name)
            db = self._db[name]
            info: dict[str, Any] = {
                "name": name,
                "index": node.index,
                "ovsdb": node.ovsdb,
                "transport_ip": str(node.transport_ip),
                "connected": db.connected,
                "in_sync": db.ready and not self._needs_sync(name),
            }
            if db.connected:
                snap = db.snapshot()
                info["bridges"] = sorted(snap)
                info["dnb_tunnels"] = _dnb_tunnels(snap)
            info["expected_bridges"] = planner.bridges_expected(self.intent, name)
            return info

    # --- networks -----------------------------------------------------------------------------
    def create_network(
        self,
        tenant_id: int,
        net_id: str,
        mode: str = "dedicated",
        segmentation_id: int | None = None,
        endpoint_subnet: str | None = None,
    ) -> Network:
        if not isinstance(net_id, str) or not _NET_ID.fullmatch(net_id):
            raise InvalidRequest(f"network id {net_id!r}: lower-case letters and digits only")
        if len(net_id) > planner.MAX_NETWORK_ID:
            raise InvalidRequest(
                f"network id {net_id!r} is too long: interface name {planner.brint(net_id)!r} "
                f"would exceed {planner.IFNAMSIZ} characters (at most {planner.MAX_NETWORK_ID})"
            )
        try:
            m = Mode(mode)
        except ValueError:
            raise InvalidRequest(f"mode {mode!r}: 'dedicated' or 'common'") from None
        with self._lock:
            nets = self.intent.networks
            if net_id in nets:
                raise Conflict(f"network id {net_id} is taken")
            serial = next(
                (i for i in range(1, 1 << 16) if i not in {n.serial for n in nets.values()}), 0
            )
            vid = next(
                (v for v in range(1, 4095) if v not in {n.local_vid for n in nets.values()}), 0
            )
            if not serial or not vid:
                raise Conflict("no free network serial or VLAN id left")
            segids = {n.segmentation_id for n in nets.values()}
            if segmentation_id is None:
                segmentation_id = FIRST_SEGMENTATION_ID + serial
                while segmentation_id in segids:
                    segmentation_id += 1
            if (
                not isinstance(segmentation_id, int)
                or isinstance(segmentation_id, bool)
                or not 1 <= segmentation_id < 1 << 32
            ):
                raise InvalidRequest("segmentation_id: 1..4294967295 (a GRE key)")
            if segmentation_id in segids:
                raise Conflict(f"segmentation id {segmentation_id} is in use")
            subnet = self._endpoint_subnet(endpoint_subnet, serial)
            net = Network(net_id, tenant_id, m, segmentation_id, vid, subnet, serial)
            new = self.intent.copy()
            new.networks[net_id] = net
            self._write_store(new)  # no node holds anything of it yet
            self.intent = new
            log.info(
                "%s mode=%s segid=%d vid=%d endpoints=%s: network created",
                self._who(net),
                m.value,
                segmentation_id,
                vid,
                subnet,
            )
            return net

    def _endpoint_subnet(self, given: str | None, serial: int) -> ipaddress.IPv4Network:
        if given is None:
            subnets = list(self.endpoint_pool.subnets(new_prefix=24))
            candidates = subnets[serial % len(subnets) :] + subnets[: serial % len(subnets)]
        else:
            try:
                candidates = [ipaddress.IPv4Network(given)]
            except ValueError as exc:
                raise InvalidRequest(f"endpoint_subnet {given!r}: {exc}") from None
            if candidates[0].num_addresses < MAX_NODES + 2:
                raise InvalidRequest(
                    f"endpoint_subnet {given}: needs at least a /24 "
                    f"(one address per node index up to {MAX_NODES})"
                )
        taken = [n.endpoint_subnet for n in self.intent.networks.values()]
        taken += [n.transport_ip.network for n in self.intent.nodes.values()]
        for sub in candidates:
            if not any(sub.overlaps(t) for t in taken):
                return sub
        raise Conflict(
            f"endpoint subnet {given or self.endpoint_pool} overlaps another "
            "network's endpoints or the transport network"
        )

    def get_network(self, net_id: str, tenant_id: int | None) -> Network:
        """The network as ``tenant_id`` may see it (None = admin); others' look absent."""
        net = self.intent.networks.get(str(net_id))
        if net is None or (tenant_id is not None and net.tenant_id != tenant_id):
            raise NotFound(f"no DNB network {net_id!r}")
        return net

    def networks(self, tenant_id: int | None) -> list[Network]:
        return sorted(
            (
                n
                for n in self.intent.networks.values()
                if tenant_id is None or n.tenant_id == tenant_id
            ),
            key=lambda n: n.serial,
        )

    def delete_network(self, net_id: str, tenant_id: int | None) -> None:
        with self._lock:
            net = self.get_network(net_id, tenant_id)
            if self.intent.hosts(net.id):
                raise Conflict(f"network {net.id} still has VMs: detach them first")
            new = self.intent.copy()
            del new.networks[net.id]
            self._write_store(new)  # no node holds anything of it any more
            self.intent = new
            log.info("%s: network deleted", self._who(net))

    # --- VMs ----------------------------------------------------------------------------------
    def vms(self, net_id: str, tenant_id: int | None) -> list[VmBinding]:
        net = self.get_network(net_id, tenant_id)
        return sorted(
            (v for v in self.intent.vms.values() if v.network == net.id),
            key=lambda v: (v.node, v.mac),
        )

    def attach_vm(
        self,
        net_id: str,
        tenant_id: int | None,
        node: str,
        mac: str,
        ip: str,
        interface: str,
    ) -> dict[str, Any]:
        """Plug the VM's tap ``interface`` on ``node`` into the network; build what it needs."""
        t0 = time.perf_counter()
        with self._lock:
            net = self.get_network(net_id, tenant_id)
            n = self._node(node)
            mac = normalize_mac(mac)
            vip = _ipv4_interface(ip, "ip")
            _check_ifname(interface, "interface")
            if (net.id, mac) in self.intent.vms:
                raise Conflict(f"MAC {mac} is already attached to network {net.id}")
            for vm in self.intent.vms.values():
                if vm.network == net.id and vm.ip.ip == vip.ip:
                    raise Conflict(f"IP {vip.ip} is already used in network {net.id}")
            ports_here = {p.name for b in self.plans[n.name].bridges.values() for p in b.ports}
            ports_here |= set(self.plans[n.name].bridges)
            if interface in ports_here or interface.startswith(_RESERVED_PREFIXES[:7]):
                raise Conflict(
                    f"interface {interface} is already a port on node {n.name} "
                    "or uses a name reserved for tenantvisor's ports"
                )
            new = self.intent.copy()
            new.vms[(net.id, mac)] = VmBinding(net.id, n.name, mac, vip, interface)
            diffs, steps = self._commit(new, first=n.name)
            rules = _table_i_summary(diffs, n.name)
            took = time.perf_counter() - t0
            log.info(
                "%s node=%s: attached %s (%s) on %s in %.1f ms, rules %s",
                self._who(net),
                n.name,
                mac,
                vip,
                interface,
                took * 1e3,
                dict(rules),
            )
            return {
                "network": net.id,
                "node": n.name,
                "mac": mac,
                "ip": str(vip),
                "interface": interface,
                "seconds": took,
                "steps": steps,
                "rules": rules,
            }

    def detach_vm(self, net_id: str, tenant_id: int | None, mac: str) -> dict[str, Any]:
        t0 = time.perf_counter()
        with self._lock:
            net = self.get_network(net_id, tenant_id)
            mac = normalize_mac(mac)
            vm = self.intent.vms.get((net.id, mac))
            if vm is None:
                raise NotFound(f"no VM {mac} in network {net.id}")
            new = self.intent.copy()
            del new.vms[(net.id, mac)]
            if vm.node not in new.hosts(net.id):  # its tenant ports there go with the bridges
                for key, tport in list(new.tenant_ports.items()):
                    if tport.network == net.id and tport.node == vm.node:
                        del new.tenant_ports[key]
            _, steps = self._commit(new, first=vm.node)
            took = time.perf_counter() - t0
            log.info("%s node=%s: detached %s in %.1f ms", self._who(net), vm.node, mac, took * 1e3)
            return {"network": net.id, "node": vm.node, "mac": mac, "seconds": took, "steps": steps}

    # --- tenant control -----------------------------------------------------------------------
    def set_controller(self, net_id: str, tenant_id: int | None, target: str | None) -> Network:
        """Point the network's dedicated bridges (every node) at the tenant's controller."""
        with self._lock:
            net = self.get_network(net_id, tenant_id)
            if net.mode is not Mode.DEDICATED:
                raise Conflict(
                    f"network {net.id} is in common mode: its bridges are shared "
                    "and only the provider programs them"
                )
            ctl = None if target is None else _controller_target(target)
            new = self.intent.copy()
            new.networks[net.id] = dataclasses.replace(net, controller=ctl)
            self._commit(new, first=None)
            log.info("%s: controller %s", self._who(net), ctl or "removed")
            return new.networks[net.id]

    def add_tenant_port(
        self,
        net_id: str,
        tenant_id: int | None,
        node: str,
        name: str,
        kind: str,
        remote_ip: str | None = None,
        key: int | None = None,
    ) -> TenantPort:
        """A port of the tenant's own on its dedicated bridge on ``node``.

        Tunnels (gre/vxlan/geneve) go on ``brtun-<id>`` and may only reach this network's own
        endpoints; ``internal`` ports go on ``brint-<id>``.
        """
        with self._lock:
            net = self.get_network(net_id, tenant_id)
            n = self._node(node)
            if net.mode is not Mode.DEDICATED:
                raise Conflict(f"network {net.id} is in common mode: no bridges of its own")
            _check_ifname(name, "port name")
            if not _TENANT_PORT.fullmatch(name) or name.startswith(_RESERVED_PREFIXES):
                raise InvalidRequest(
                    f"port name {name!r}: lower-case letter first, then "
                    "letters, digits, '-'; not starting with "
                    f"{', '.join(_RESERVED_PREFIXES)}"
                )
            try:
                k = PortKind(kind)
            except ValueError:
                raise InvalidRequest(
                    f"kind {kind!r}: one of {', '.join(x.value for x in PortKind)}"
                ) from None
            if n.name not in self.intent.hosts(net.id):
                raise Conflict(
                    f"network {net.id} has no bridges on node {n.name}: attach a VM there first"
                )
            plan = self.plans[n.name]
            if name in {p.name for b in plan.bridges.values() for p in b.ports}:
                raise Conflict(f"node {n.name} already has a port {name}")
            rip: ipaddress.IPv4Address | None = None
            if k is PortKind.INTERNAL:
                if remote_ip is not None or key is not None:
                    raise InvalidRequest("an internal port takes no remote_ip or key")
            else:
                try:
                    rip = ipaddress.IPv4Address(str(remote_ip))
                except ValueError:
                    raise InvalidRequest(f"remote_ip {remote_ip!r} is not IPv4") from None
                own = planner.endpoint_ip(net, n).ip
                if rip not in net.endpoint_subnet or rip == own:
                    raise Forbidden(
                        f"remote_ip {rip}: tunnels may only reach the other "
                        f"endpoints of network {net.id} ({net.endpoint_subnet})"
                    )
                if key is not None and (isinstance(key, bool) or not 0 <= int(key) < 1 << 32):
                    raise InvalidRequest("key: 0..4294967295")
            tport = TenantPort(net.id, n.name, name, k, rip, None if key is None else int(key))
            new = self.intent.copy()
            new.tenant_ports[(n.name, name)] = tport
            self._commit(new, first=n.name)
            log.info("%s node=%s: tenant port %s (%s) added", self._who(net), n.name, name, k.value)
            return tport

    def tenant_ports(self, net_id: str, tenant_id: int | None) -> list[TenantPort]:
        net = self.get_network(net_id, tenant_id)
        return sorted(
            (t for t in self.intent.tenant_ports.values() if t.network == net.id),
            key=lambda t: (t.node, t.name),
        )

    def del_tenant_port(self, net_id: str, tenant_id: int | None, node: str, name: str) -> None:
        with self._lock:
            net = self.get_network(net_id, tenant_id)
            tport = self.intent.tenant_ports.get((str(node), str(name)))
            if tport is None or tport.network != net.id:
                raise NotFound(f"no port {name!r} of network {net.id} on node {node!r}")
            new = self.intent.copy()
            del new.tenant_ports[(tport.node, tport.name)]
            self._commit(new, first=tport.node)

    # --- upkeep -------------------------------------------------------------------------------
    def reassert(self) -> int:
        """Put back provider rules a tenant controller removed; returns how many."""
        count = 0
        with self._lock:
            for name, plan in self.plans.items():
                db = self._db.get(name)  # None: closed
                if db is None or not db.connected or name in self._unsynced:
                    continue
                for b in plan.bridges.values():
                    if b.controller is None:
                        continue
                    try:
                        n = self._flows[name].reassert(b.name, plan.flows_on(b.name))
                    except FlowError as exc:
                        log.warning("node=%s bridge=%s: re-assertion failed: %s", name, b.name, exc)
                        continue
                    if n:
                        log.info(
                            "node=%s bridge=%s net=%s: re-asserted %d provider rules",
                            name,
                            b.name,
                            b.network,
                            n,
                        )
                    count += n
        self.reasserted += count
        return count

    def equations(self) -> dict[str, Any]:
        """Bridges and tunnels read from every node, against equations (1)-(4)."""
        with self._lock:
            per_node = {}
            holds = True
            total_bridges = 0
            tunnel_ports: Counter[str] = Counter()
            for node in self.nodes():
                db = self._db[node.name]
                snap = db.snapshot()
                bridges = len(snap)
                expected = planner.bridges_expected(self.intent, node.name)
                holds &= bridges == expected
                total_bridges += bridges
                tunnels = _dnb_tunnels(snap)
                for net_id, count in tunnels.items():
                    tunnel_ports[net_id] += count
                per_node[node.name] = {
                    "bridges": bridges,
                    "expected": expected,
                    "dnb_tunnel_ports": tunnels,
                }
            per_net: dict[str, dict[str, int]] = {}
            for net_id, net in self.intent.networks.items():
                if net.mode is not Mode.DEDICATED:
                    continue
                n_tun = tunnel_ports[net_id] // 2  # a tunnel is a port at each end
                exact = planner.tunnels_of(self.intent, net_id)
                bound = planner.tunnel_bound(self.intent)
                holds &= tunnel_ports[net_id] % 2 == 0 and n_tun == exact and n_tun <= bound
                per_net[net_id] = {"tunnels": n_tun, "full_mesh": exact, "bound_eq3": bound}
            total_tunnels = sum(v["tunnels"] for v in per_net.values())
            total_expected = planner.total_bridges_expected(self.intent)
            bound4 = planner.total_tunnel_bound(self.intent)
            holds &= total_bridges == total_expected and total_tunnels <= bound4
            return {
                "holds": holds,
                "nodes": per_node,
                "networks": per_net,
                "total_bridges": total_bridges,
                "total_bridges_eq2": total_expected,
                "total_tunnels": total_tunnels,
                "total_tunnels_bound_eq4": bound4,
            }

    def dump_flows(self, node: str, bridge: str) -> str:
        self._node(node)
        return self._flows[node].dump(bridge)

    def close(self) -> None:
        """Drop the OVSDB connections (the nodes keep their state)."""
        with self._lock:
            self._closed = True
            for name in list(self._db):
                self._db[name].close()
            self._db.clear()

    def release(self) -> None:
        """Another instance manages the nodes from now on: drop the connections and forget
        the intent (the store keeps it; `restore` takes it back)."""
        with self._lock:
            for name in list(self._db):
                self._db[name].close()
            self._db.clear()
            self._flows.clear()
            self._agents.clear()
            self.plans.clear()
            self._unsynced.clear()
            self._synced_on.clear()
            self._retry.clear()
            self.intent = Intent()
            self._store_dirty = False

    # --- restart: restore, reconcile, upkeep --------------------------------------------------
    def restore(self, intent: Intent) -> dict[str, str]:
        """Take back the stored intent (a restart, before the API answers): nodes, networks,
        VM bindings, tenant ports and controllers.  Every node is connected (in parallel) and
        each reachable one reconciled (:meth:`sync_nodes`); the others are logged and left to
        :meth:`upkeep`.  Returns each node's outcome."""
        with self._lock:
            if self.intent.nodes or self.intent.networks:
                raise RuntimeError("restore: this manager holds intent already")
            self.intent = intent.copy()
            for name, node in intent.nodes.items():
                rundir = node.rundir or str(Path(node.ovsdb.removeprefix("unix:")).parent)
                self._db[name] = NodeOvsdb(name, node.ovsdb, self.ovsdb_timeout)
                self._flows[name] = OfctlFlows(rundir)
                self._agents[name] = LocalAgent(rundir, node.netns)
                self.plans[name] = planner.plan_node(intent, node)
                self._unsynced.add(name)
        log.info(
            "DNB intent restored: %d nodes, %d networks, %d VMs, %d tenant ports",
            len(intent.nodes),
            len(intent.networks),
            len(intent.vms),
            len(intent.tenant_ports),
        )
        t0 = time.perf_counter()
        out = self.sync_nodes(force=True)
        log.info(
            "DNB nodes after restore: %d of %d in sync, in %.0f ms%s",
            sum(1 for v in out.values() if v == "in sync"),
            len(out),
            (time.perf_counter() - t0) * 1e3,
            "".join(f"; {n}: {v}" for n, v in sorted(out.items()) if v != "in sync"),
        )
        return out

    def _needs_sync(self, name: str) -> bool:
        return name in self._unsynced or self._db[name].session != self._synced_on.get(name)

    def sync_nodes(self, force: bool = False) -> dict[str, str]:
        """Connect the nodes that never answered and reconcile every node that needs it
        (restored, or its OVSDB connection dropped and came back).  Outcome per node: "in
        sync", "unreachable: ..." or "failed: ...".  A node that failed is tried again after a
        backoff (1 s, doubling up to RETRY_MAX; until then its last outcome is reported)
        unless ``force``."""
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return {}
            out: dict[str, str] = {}
            due = []
            for n in self.intent.nodes:
                at, _, why = self._retry.get(n, (0.0, 0.0, ""))
                if force or at <= now:
                    due.append(n)
                else:
                    out[n] = f"{why} (next attempt in {at - now:.0f} s)"
            dial = {n: self.intent.nodes[n].ovsdb for n in due if not self._db[n].started}
        # connecting waits for the node (up to ovsdb_timeout): in parallel, outside the lock
        dialled = _connect_all(dial, self.ovsdb_timeout)
        with self._lock:
            for name, got in dialled.items():
                node = self.intent.nodes.get(name)
                if isinstance(got, NodeOvsdb):
                    cur = self._db.get(name)
                    if node is None or node.ovsdb != got.endpoint or cur is None or cur.started:
                        got.close()  # removed, connected meanwhile, or the manager closed
                        continue
                    self._db[name] = got
                    log.info("node=%s: OVSDB at %s connected", name, got.endpoint)
                else:
                    out[name] = f"unreachable: {got}"
                    self._backoff(name, now, out[name])
            for name in due:
                if name in out or name not in self._db:
                    continue
                db = self._db[name]
                if not db.ready:  # started, reconnecting by itself: reconciled once it is back
                    if name not in self._unsynced:
                        log.warning("node=%s: OVSDB connection lost", name)
                        self._unsynced.add(name)
                    out[name] = "unreachable: OVSDB not connected"
                    continue
                if not self._needs_sync(name):
                    out[name] = "in sync"
                    continue
                try:
                    self._reconcile(name)
                except Exception as exc:
                    out[name] = f"failed: {exc}"
                    self._backoff(name, now, out[name])
                else:
                    out[name] = "in sync"
                    self._retry.pop(name, None)
        return out

    def _backoff(self, name: str, now: float, why: str) -> None:
        _, wait, _ = self._retry.get(name, (0.0, 0.5, ""))
        wait = min(RETRY_MAX, wait * 2)
        self._retry[name] = (now + wait, wait, why)
        log.warning("node=%s: %s; trying again in %.0f s", name, why, wait)

    def _sync_node(self, name: str) -> None:
        """Reconcile ``name`` before a change is applied to it; 424 if that cannot be done."""
        if not self._db[name].ready:
            raise NodeUnreachable(
                f"node {name} is unreachable (OVSDB not connected): nothing was changed"
            )
        try:
            self._reconcile(name)
        except Exception as exc:
            raise NodeUnreachable(
                f"node {name} could not be brought in line with its intent ({exc}): "
                "the change was not applied"
            ) from None

    def _reconcile(self, name: str) -> dict[str, int]:
        """Make node ``name`` hold its plan, by the planner's diff against what it holds.

        What the node holds is read back as a plan: our bridges and the ports on them (OVSDB),
        the provider rules present by cookie, addresses, tunnel neighbours.  Records equal to
        the desired ones count as present, so only what is missing is added and only what is
        ours and not wanted is removed (stale bridges, ports, rules by cookie).  A port that
        does not come up (a VM's tap that is gone) is logged: it is as intent says.
        """
        node = self.intent.nodes[name]
        db, flows, agent = self._db[name], self._flows[name], self._agents[name]
        session = db.session
        want = planner.plan_node(self.intent, node)
        have = NodePlan(name)
        stale: dict[str, set[int]] = {}
        try:
            ours, present = db.observe()
            for bname, b in ours.items():
                have.bridges[bname] = _as_planned(b, want.bridges.get(bname))
            for bname in want.bridges:
                if bname not in present:
                    continue  # built now, with all of its rules
                cookies = flows.cookies(bname)
                wanted = want.flows_on(bname)
                have.flows |= {f for f in wanted if f.cookie in cookies}
                extra = cookies - {f.cookie for f in wanted}
                if extra:
                    stale[bname] = extra
            have.addresses = agent.addresses() & want.addresses
            seeded = {planner.Neighbour(*n) for n in agent.neighbours()}
            have.neighbours = seeded & want.neighbours
        except (AgentError, FlowError) as exc:
            raise StepFailed(f"node {name}: reading what it holds: {exc}") from None
        d = planner.diff(have, want)
        stats = {
            "bridges_added": len(d.ovsdb.add_bridges),
            "bridges_deleted": len(d.ovsdb.del_bridges),
            "bridges_set": len(d.ovsdb.set_bridges),
            "ports_added": len(d.ovsdb.add_ports),
            "ports_deleted": len(d.ovsdb.del_ports),
            "flows_added": len(d.flows_add),
            "flows_deleted": sum(len(c) for c in stale.values()),
            "addresses": len(d.addresses_add),
            "neighbours": len(d.neighbours_add),
        }
        if d or stale:
            step = self._apply(name, d, want, stale=stale, verify=False)
            for down in step.get("interfaces_down", []):
                log.warning("node=%s: %s (the port is as intent says; is its VM gone?)", name, down)
            log.info(
                "node=%s: reconciled: %s",
                name,
                ", ".join(f"{k} {v}" for k, v in stats.items() if v),
            )
        else:
            log.info("node=%s: reconciled: holds its intent, nothing changed", name)
        self.plans[name] = want
        self._unsynced.discard(name)
        self._synced_on[name] = session
        return stats

    def _resync_store(self) -> None:
        """After a failed write: make the store hold the intent the nodes hold."""
        now = time.monotonic()
        with self._lock:
            if self.store is None or not self._store_dirty:
                return
            at, wait = self._store_retry
            if at > now:
                return
            try:
                self.store.put_dnb_intent(self.intent)
            except Exception as exc:
                wait = min(RETRY_MAX, wait * 2)
                self._store_retry = (now + wait, wait)
                log.warning(
                    "DNB intent not rewritten to the store (%s); again in %.0f s", exc, wait
                )
                return
            self._store_retry = (0.0, 0.5)
            self._store_dirty = False
            log.info("DNB intent store rewritten: it holds what the nodes hold again")

    def upkeep(self) -> None:
        """The daemon's periodic work: reach and reconcile nodes that need it, rewrite the
        store after a failed write, re-assert provider rules."""
        if self._closed or self.elsewhere() is not None:
            return
        self.sync_nodes()
        self._resync_store()
        self.reassert()

    # --- applying -----------------------------------------------------------------------------
    def _commit(
        self, new: Intent, first: str | None
    ) -> tuple[dict[str, NodeDiff], list[dict[str, Any]]]:
        """Make every node hold ``planner.plan(new)``, then the store ``new``; all or nothing
        (see module docstring)."""
        new_plans = {name: planner.plan_node(new, node) for name, node in new.nodes.items()}
        diffs = {n: planner.diff(self.plans.get(n), p) for n, p in new_plans.items()}
        changed = sorted(
            (n for n, d in diffs.items() if d), key=lambda n: (n != first, new.nodes[n].index)
        )
        self._require_store()
        for name in changed:
            if not self._db[name].connected:
                raise NodeUnreachable(
                    f"node {name} is unreachable (OVSDB not connected): nothing was changed"
                )
        for name in changed:  # restored or reconnected: what it holds first, then the change
            if name in self.intent.nodes and self._needs_sync(name):
                self._sync_node(name)
                diffs[name] = planner.diff(self.plans.get(name), new_plans[name])
        done: list[str] = []
        steps: list[dict[str, Any]] = []
        try:
            for name in changed:
                done.append(name)
                steps.append(self._apply(name, diffs[name], new_plans[name]))
        except Exception as exc:
            log.warning("node=%s: step failed (%s); rolling back %s", done[-1], exc, done)
            self._roll_back(done, new_plans)
            if isinstance(exc, TenantvisorError):
                raise
            raise StepFailed(str(exc)) from None
        try:
            self._write_store(new)
        except Exception as exc:
            log.warning("%s; rolling back %s", exc, done)
            self._roll_back(done, new_plans)
            raise
        self.intent = new
        self.plans = {**self.plans, **new_plans}
        for name in new.nodes:
            if name not in self._synced_on and name not in self._unsynced:
                self._synced_on[name] = self._db[name].session
        return diffs, steps

    def _roll_back(self, done: list[str], new_plans: dict[str, NodePlan]) -> None:
        """Give every node in ``done`` its previous plan again (the inverse diffs)."""
        for name in reversed(done):
            old = self.plans.get(name, NodePlan(name))
            try:
                self._apply(name, planner.diff(new_plans[name], old), old)
            except Exception as exc2:
                log.error("node=%s: rollback failed: %s", name, exc2)
                self._unsynced.add(name)  # reconciled from what it holds before its next step

    def _require_store(self) -> None:
        """Wait for a store that is not connected as long as one of its calls would (its
        timeout), then 503 before anything is touched."""
        if self.store is None:
            return
        deadline = time.monotonic() + self.store.timeout
        while not self.store.connected:
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"DNB intent store unavailable: store at {self.store.remote} is not "
                    f"connected (waited {self.store.timeout:g} s; nothing was changed)"
                )
            time.sleep(0.05)

    def _write_store(self, new: Intent) -> None:
        """Make the store hold ``new`` (module docstring, 6 and 7); Unavailable if it did not."""
        if self.store is None:
            return
        self._require_store()
        writes = _store_writes(self.intent, new)
        try:
            if self._store_dirty or len(writes) > 1:
                self.store.put_dnb_intent(new)
            elif writes:
                method, args = writes[0]
                getattr(self.store, method)(*args)
        except Exception as exc:
            self._store_dirty = True  # a write that timed out may have landed: rewrite later
            why = "unavailable" if isinstance(exc, Unavailable) else "refused the change"
            raise Unavailable(f"DNB intent store {why}: {exc} (nothing was changed)") from None
        self._store_dirty = False

    def _apply(
        self,
        name: str,
        d: NodeDiff,
        plan: NodePlan,
        *,
        stale: dict[str, set[int]] | None = None,
        verify: bool = True,
    ) -> dict[str, Any]:
        """One node's step: one OVSDB transaction, then addresses, seeds and rules (and the
        provider rules of cookies ``stale`` removed, per bridge)."""
        t0 = time.perf_counter()
        down = self._db[name].apply(d.ovsdb, verify=verify)
        t1 = time.perf_counter()
        agent = self._agents[name]
        try:
            ports = {p.name for b in plan.bridges.values() for p in b.ports} | set(plan.bridges)
            for ifname, cidr in sorted(d.addresses_add):
                if ifname in ports:
                    agent.set_address(ifname, cidr)
            agent.seed_neighbours(sorted((x.bridge, x.ip, x.mac) for x in d.neighbours_add))
            t2 = time.perf_counter()
            for bridge in plan.bridges:
                add = {f for f in d.flows_add if f.bridge == bridge}
                delete = {f for f in d.flows_del if f.bridge == bridge}
                self._flows[name].apply(bridge, add, delete, (stale or {}).get(bridge, ()))
        except (AgentError, FlowError) as exc:
            raise StepFailed(f"node {name}: {exc}") from None
        t3 = time.perf_counter()
        step = {
            "node": name,
            "ovsdb_ms": (t1 - t0) * 1e3,
            "agent_ms": (t2 - t1) * 1e3,
            "flows_ms": (t3 - t2) * 1e3,
            "flows_added": len(d.flows_add),
            "flows_deleted": len(d.flows_del) + sum(len(c) for c in (stale or {}).values()),
        }
        if down:
            step["interfaces_down"] = down
        return step


def _connect_all(dial: dict[str, str], timeout: float) -> dict[str, NodeOvsdb | Exception]:
    """Connect to every node of ``dial`` (name: OVSDB endpoint) at once."""
    if not dial:
        return {}

    def one(item: tuple[str, str]) -> NodeOvsdb | Exception:
        try:
            return NodeOvsdb(item[0], item[1], timeout).connect()
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(max_workers=min(16, len(dial))) as pool:
        return dict(zip(dial, pool.map(one, dial.items()), strict=True))


def _same_port(a: PortSpec, b: PortSpec) -> bool:
    return (
        a.name == b.name
        and a.type == b.type
        and dict(a.options) == dict(b.options)
        and (a.mac or "").lower() == (b.mac or "").lower()
        and a.tag == b.tag
        and a.owner == b.owner
    )


def _as_planned(have: BridgeSpec, want: BridgeSpec | None) -> BridgeSpec:
    """A bridge as read from a node, with the planner's own records wherever they say the
    same thing, so that the diff sees a change only where there is one."""
    if want is None:
        return have
    wports = want.port_map()
    ports = tuple(
        wports[p.name] if p.name in wports and _same_port(p, wports[p.name]) else p
        for p in have.ports
    )

    def norm(shape: tuple[str | None, str | None, str | None]) -> tuple[Any, ...]:
        return (shape[0], shape[1], (shape[2] or "").lower())

    same = norm(have.shape()) == norm(want.shape())
    network, controller, hwaddr = want.shape() if same else have.shape()
    return BridgeSpec(have.name, ports, network, controller, hwaddr)


def _dnb_tunnels(snap: dict[str, dict[str, dict[str, Any]]]) -> dict[str, int]:
    """Provider GRE ports per network on dedicated tunnel bridges."""
    out: dict[str, int] = {}
    for br, ports in snap.items():
        if not br.startswith("brtun-"):
            continue
        n = sum(1 for p in ports.values() if p["type"] == "gre" and p["owner"] == "provider")
        out[br.removeprefix("brtun-")] = n
    return out


def _table_i_summary(diffs: dict[str, NodeDiff], local: str) -> dict[str, int]:
    """Rules added by one attach, named as the paper's Table I names them."""
    out = {"local-ingress": 0, "local-egress": 0, "local-flood": 0, "remote-egress": 0}
    for name, d in diffs.items():
        for f in d.flows_add:
            if f.kind == planner.EGRESS:
                out["local-egress" if name == local else "remote-egress"] += 1
            elif f.kind in (planner.LOCAL_INGRESS, planner.LOCAL_FLOOD):
                out[f.kind] += 1
    return out


async def dnb_upkeep(dnb: DnbManager, interval: float = 1.0) -> None:
    """The daemon's background task, every ``interval`` seconds (:meth:`DnbManager.upkeep`):
    nodes that were not reachable are retried and reconciled, the store rewritten after a
    failed write, provider rules re-asserted.

    Runs the (blocking) work in a worker thread; only bridges with a tenant controller are
    checked for rules, so a deployment without tenant controllers pays nothing.
    """
    import asyncio

    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(dnb.upkeep)
        except Exception:
            log.exception("DNB upkeep failed")


__all__ = ["DnbManager", "DnbStore", "StepFailed", "dnb_upkeep"]
