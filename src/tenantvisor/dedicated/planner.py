"""From intent to what every node must hold: bridges, ports, tunnels, provider rules. Pure.

One function, :func:`plan`, maps an :class:`~tenantvisor.dedicated.model.Intent` to a
:class:`NodePlan` per node; :func:`diff` says what changes between two plans of one node.
The manager applies diffs; the tests check plans (and the paper's equations) without OVS.

Node layout (layout B of ``notes/dnb-userspace-tunnels.md``; docs/design.md says why)::

    VM tap --[brint-X]--pi-X~~pt-X--[brtun-X]--g-X-<k> (GRE, key = segmentation id)
                                                 |  encapsulated by ovs-vswitchd, routed via
    VM tap --[br-int]--patch-tun~~patch-int--[br-tun]--ex-X (endpoint, internal, on br-tun)
                                              |   \\--gre-<k> (CNB, key=flow)
                                              eth1 (transport)          LOCAL (node address)

``br-tun`` carries no NORMAL rule: explicit underlay rules deliver frames from the transport
port to the endpoint (by MAC, ARP by target address) that owns them, let each ``ex-X`` send
only to its own network's endpoint subnet, and let the node's own address (LOCAL) send only
from itself.  That is the isolation DESIGN.md asks of the common bridges.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass, field
from math import comb

from tenantvisor.dedicated.model import Intent, Mode, Network, Node, PortKind, VmBinding

IFNAMSIZ = 15
BR_INT = "br-int"
BR_TUN = "br-tun"
PATCH_TUN = "patch-tun"  # on br-int
PATCH_INT = "patch-int"  # on br-tun
PROVIDER_COOKIE = 0x7476 << 48  # "tv": the provider's rules; the low 48 bits name the rule
PROVIDER_COOKIE_MASK = 0xFFFF << 48
MAX_NETWORK_ID = 9  # "brint-" + id <= 15
OF_PROTOCOLS = "OpenFlow10,OpenFlow13,OpenFlow14"

# Rule kinds: the paper's Table I, plus the provider's plumbing around it.
LOCAL_INGRESS = "local-ingress"
EGRESS = "egress"  # local egress on the node of a new VM, remote egress on its peers
LOCAL_FLOOD = "local-flood"
TABLE_I = (LOCAL_INGRESS, EGRESS, LOCAL_FLOOD)
NORMAL = "normal"
UNDERLAY = "underlay"
ENDPOINT_GUARD = "endpoint-guard"
CNB_INGRESS = "cnb-ingress"
CNB_EGRESS = "cnb-egress"
CNB_FLOOD = "cnb-flood"


# --- names -------------------------------------------------------------------------------------
def brint(net: str) -> str:
    return f"brint-{net}"


def brtun(net: str) -> str:
    return f"brtun-{net}"


def endpoint(net: str) -> str:
    return f"ex-{net}"


def patch_int_side(net: str) -> str:
    return f"pi-{net}"


def patch_tun_side(net: str) -> str:
    return f"pt-{net}"


def dnb_tunnel(net: str, peer_index: int) -> str:
    return f"g-{net}-{peer_index}"


def cnb_tunnel(peer_index: int) -> str:
    return f"gre-{peer_index}"


def network_names(net: str) -> list[str]:
    """Every interface/bridge name a network yields (with the longest tunnel name)."""
    return [
        brint(net),
        brtun(net),
        endpoint(net),
        patch_int_side(net),
        patch_tun_side(net),
        dnb_tunnel(net, 250),
    ]


def node_mac(index: int) -> str:
    """The fixed MAC of a node's br-tun LOCAL port (its transport address)."""
    return f"02:74:76:00:00:{index:02x}"


def endpoint_mac(net: Network, node: Node) -> str:
    """The fixed MAC of ``ex-<net>`` on ``node``: peers seed it, decapsulation needs it."""
    return f"02:74:76:{net.serial >> 8:02x}:{net.serial & 0xFF:02x}:{node.index:02x}"


def endpoint_ip(net: Network, node: Node) -> ipaddress.IPv4Interface:
    """The tunnel endpoint address of ``net`` on ``node``: host ``index`` of its subnet."""
    sub = net.endpoint_subnet
    return ipaddress.IPv4Interface(f"{sub.network_address + node.index}/{sub.prefixlen}")


# --- plan records ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PortSpec:
    """A port and its one interface, as OVSDB holds them."""

    name: str
    type: str = ""  # "" = system device, internal, patch, gre, vxlan, geneve
    options: tuple[tuple[str, str], ...] = ()
    mac: str | None = None
    tag: int | None = None
    owner: str = "provider"  # or "tenant"


@dataclass(frozen=True)
class BridgeSpec:
    name: str
    ports: tuple[PortSpec, ...]
    network: str | None = None  # the dedicated network it belongs to, None for common
    controller: str | None = None  # the tenant's controller target
    hwaddr: str | None = None

    def port_map(self) -> dict[str, PortSpec]:
        return {p.name: p for p in self.ports}

    def shape(self) -> tuple[str | None, str | None, str | None]:
        """What a bridge row holds besides its ports."""
        return (self.network, self.controller, self.hwaddr)


@dataclass(frozen=True)
class FlowSpec:
    """One provider rule in ``ovs-ofctl`` syntax; its cookie is derived from its content."""

    bridge: str
    kind: str
    priority: int
    match: str
    actions: str

    @property
    def cookie(self) -> int:
        text = f"{self.bridge}|{self.priority}|{self.match}|{self.actions}".encode()
        return PROVIDER_COOKIE | int.from_bytes(hashlib.sha1(text).digest()[:6], "big")

    def line(self) -> str:
        """The ``add-flows`` line (table 0)."""
        match = f",{self.match}" if self.match else ""
        return f"cookie={self.cookie:#x},priority={self.priority}{match},actions={self.actions}"


@dataclass(frozen=True)
class Neighbour:
    """A tunnel neighbour to seed (``tnl/arp/set BRIDGE IP MAC``)."""

    bridge: str
    ip: str
    mac: str


@dataclass
class NodePlan:
    node: str
    bridges: dict[str, BridgeSpec] = field(default_factory=dict)
    flows: set[FlowSpec] = field(default_factory=set)
    addresses: set[tuple[str, str]] = field(default_factory=set)  # (ifname, ip/prefix)
    neighbours: set[Neighbour] = field(default_factory=set)

    def flows_on(self, bridge: str) -> set[FlowSpec]:
        return {f for f in self.flows if f.bridge == bridge}

    def dnb_tunnels(self) -> list[str]:
        """Provider GRE ports on dedicated tunnel bridges."""
        return [
            p.name
            for b in self.bridges.values()
            if b.network is not None and b.name.startswith("brtun-")
            for p in b.ports
            if p.type == "gre" and p.owner == "provider"
        ]


# --- the plan ----------------------------------------------------------------------------------
def _push_vid(vid: int) -> str:
    return f"push_vlan:0x8100,set_field:{4096 + vid}->vlan_vid"


def plan(intent: Intent) -> dict[str, NodePlan]:
    """The full desired state of every registered node."""
    return {name: plan_node(intent, node) for name, node in intent.nodes.items()}


def plan_node(intent: Intent, node: Node) -> NodePlan:
    p = NodePlan(node.name)
    tp = node.transport_port
    ip = str(node.transport_ip.ip)
    nodes_by_name = intent.nodes
    tun_ports: list[PortSpec] = [PortSpec(tp), PortSpec(PATCH_INT, "patch", (("peer", PATCH_TUN),))]
    int_ports: list[PortSpec] = [PortSpec(PATCH_TUN, "patch", (("peer", PATCH_INT),))]
    p.addresses.add((BR_TUN, str(node.transport_ip)))
    f = p.flows.add
    # The node's own address: reachable from the transport, sends only as itself.
    f(FlowSpec(BR_TUN, UNDERLAY, 100, f"in_port={tp},dl_dst={node_mac(node.index)}", "LOCAL"))
    f(FlowSpec(BR_TUN, UNDERLAY, 100, f"in_port={tp},arp,arp_tpa={ip}", "LOCAL"))
    f(FlowSpec(BR_TUN, UNDERLAY, 50, f"in_port=LOCAL,ip,nw_src={ip}", f"output:{tp}"))
    f(FlowSpec(BR_TUN, UNDERLAY, 50, f"in_port=LOCAL,arp,arp_spa={ip}", f"output:{tp}"))
    f(FlowSpec(BR_INT, NORMAL, 1, "", "NORMAL"))

    here = {vm for vm in intent.vms.values() if vm.node == node.name}
    nets_here = sorted({vm.network for vm in here})
    cnb_peers: set[str] = set()
    for net_id in nets_here:
        net = intent.networks[net_id]
        peers = sorted(intent.hosts(net_id) - {node.name}, key=lambda n: nodes_by_name[n].index)
        vms_here = sorted((vm for vm in here if vm.network == net_id), key=lambda v: v.mac)
        remote_vms = sorted(
            (vm for vm in intent.vms.values() if vm.network == net_id and vm.node != node.name),
            key=lambda v: v.mac,
        )
        if net.mode is Mode.COMMON:
            cnb_peers.update(peers)
            int_ports += [PortSpec(vm.interface, tag=net.local_vid) for vm in vms_here]
            _plan_cnb_network(p, intent, net, peers, remote_vms)
        else:
            bridges, tun_port = _plan_dnb_network(p, intent, node, net, peers, remote_vms)
            for b in bridges:
                p.bridges[b.name] = b
            tun_ports.append(tun_port)
    for peer in sorted(cnb_peers, key=lambda n: nodes_by_name[n].index):
        other = nodes_by_name[peer]
        opts = (("key", "flow"), ("local_ip", ip), ("remote_ip", str(other.transport_ip.ip)))
        tun_ports.append(PortSpec(cnb_tunnel(other.index), "gre", opts))
        p.neighbours.add(Neighbour(BR_TUN, str(other.transport_ip.ip), node_mac(other.index)))
    p.bridges[BR_INT] = BridgeSpec(BR_INT, tuple(int_ports))
    p.bridges[BR_TUN] = BridgeSpec(BR_TUN, tuple(tun_ports), hwaddr=node_mac(node.index))
    return p


def _plan_cnb_network(
    p: NodePlan, intent: Intent, net: Network, peers: list[str], remote_vms: list[VmBinding]
) -> None:
    """OpenStack's br-tun rules for one network: VLAN <-> tunnel key, per peer node."""
    nodes = intent.nodes
    vid, key = net.local_vid, net.segmentation_id
    for peer in peers:
        port = cnb_tunnel(nodes[peer].index)
        p.flows.add(
            FlowSpec(
                BR_TUN,
                CNB_INGRESS,
                200,
                f"in_port={port},tun_id={key}",
                f"{_push_vid(vid)},output:{PATCH_INT}",
            )
        )
    for vm in remote_vms:
        port = cnb_tunnel(nodes[vm.node].index)
        p.flows.add(
            FlowSpec(
                BR_TUN,
                CNB_EGRESS,
                200,
                f"in_port={PATCH_INT},dl_vlan={vid},dl_dst={vm.mac}",
                f"pop_vlan,set_field:{key}->tun_id,output:{port}",
            )
        )
    if peers:
        outs = ",".join(f"output:{cnb_tunnel(nodes[n].index)}" for n in peers)
        p.flows.add(
            FlowSpec(
                BR_TUN,
                CNB_FLOOD,
                100,
                f"in_port={PATCH_INT},dl_vlan={vid}",
                f"pop_vlan,set_field:{key}->tun_id,{outs}",
            )
        )


def _plan_dnb_network(
    p: NodePlan,
    intent: Intent,
    node: Node,
    net: Network,
    peers: list[str],
    remote_vms: list[VmBinding],
) -> tuple[list[BridgeSpec], PortSpec]:
    """brint-X, brtun-X, ex-X and Table I for one network on one node."""
    nodes = intent.nodes
    n, vid, key = net.id, net.local_vid, net.segmentation_id
    ex, exip, exmac = endpoint(n), endpoint_ip(net, node), endpoint_mac(net, node)
    tp = node.transport_port
    pi, pt = patch_int_side(n), patch_tun_side(n)
    vms_here = sorted(
        (vm for vm in intent.vms.values() if vm.network == n and vm.node == node.name),
        key=lambda v: v.mac,
    )
    int_ports = [PortSpec(pi, "patch", (("peer", pt),))]
    int_ports += [PortSpec(vm.interface, tag=vid) for vm in vms_here]
    tun_ports = [PortSpec(pt, "patch", (("peer", pi),))]
    for peer in peers:
        other = nodes[peer]
        opts: tuple[tuple[str, str], ...] = (
            ("key", str(key)),
            ("local_ip", str(exip.ip)),
            ("remote_ip", str(endpoint_ip(net, other).ip)),
        )
        tun_ports.append(PortSpec(dnb_tunnel(n, other.index), "gre", opts))
        p.neighbours.add(
            Neighbour(BR_TUN, str(endpoint_ip(net, other).ip), endpoint_mac(net, other))
        )
    for tport in sorted(
        (t for t in intent.tenant_ports.values() if t.network == n and t.node == node.name),
        key=lambda t: t.name,
    ):
        if tport.kind is PortKind.INTERNAL:
            int_ports.append(PortSpec(tport.name, "internal", owner="tenant"))
            continue
        topts = [("local_ip", str(exip.ip))]
        if tport.remote_ip is not None:
            topts.append(("remote_ip", str(tport.remote_ip)))
        if tport.key is not None:
            topts.append(("key", str(tport.key)))
        tun_ports.append(
            PortSpec(tport.name, tport.kind.value, tuple(sorted(topts)), owner="tenant")
        )
    bint = BridgeSpec(brint(n), tuple(int_ports), network=n, controller=net.controller)
    btun = BridgeSpec(brtun(n), tuple(tun_ports), network=n, controller=net.controller)

    f = p.flows.add
    f(FlowSpec(bint.name, NORMAL, 1, "", "NORMAL"))
    # Table I on brtun-X.
    for peer in peers:
        g = dnb_tunnel(n, nodes[peer].index)
        f(
            FlowSpec(
                btun.name,
                LOCAL_INGRESS,
                200,
                f"in_port={g},tun_id={key}",
                f"{_push_vid(vid)},output:{pt}",
            )
        )
    for vm in remote_vms:
        g = dnb_tunnel(n, nodes[vm.node].index)
        f(
            FlowSpec(
                btun.name,
                EGRESS,
                200,
                f"in_port={pt},dl_vlan={vid},dl_dst={vm.mac}",
                f"pop_vlan,output:{g}",
            )
        )
    if peers:
        outs = ",".join(f"output:{dnb_tunnel(n, nodes[x].index)}" for x in peers)
        f(FlowSpec(btun.name, LOCAL_FLOOD, 100, f"in_port={pt},dl_vlan={vid}", f"pop_vlan,{outs}"))
    # The endpoint on br-tun: delivered to by MAC and ARP target; sends only to its network.
    sub = net.endpoint_subnet
    f(FlowSpec(BR_TUN, UNDERLAY, 100, f"in_port={tp},dl_dst={exmac}", f"output:{ex}"))
    f(FlowSpec(BR_TUN, UNDERLAY, 100, f"in_port={tp},arp,arp_tpa={exip.ip}", f"output:{ex}"))
    f(
        FlowSpec(
            BR_TUN,
            ENDPOINT_GUARD,
            60,
            f"in_port={ex},ip,nw_src={exip.ip},nw_dst={sub}",
            f"output:{tp}",
        )
    )
    f(
        FlowSpec(
            BR_TUN,
            ENDPOINT_GUARD,
            60,
            f"in_port={ex},arp,arp_spa={exip.ip},arp_tpa={sub}",
            f"output:{tp}",
        )
    )
    p.addresses.add((ex, str(exip)))
    return [bint, btun], PortSpec(ex, "internal", mac=exmac)


# --- diffs -------------------------------------------------------------------------------------
@dataclass
class OvsdbChange:
    """What one OVSDB transaction must do on one node."""

    add_bridges: list[BridgeSpec] = field(default_factory=list)
    del_bridges: list[str] = field(default_factory=list)
    add_ports: list[tuple[str, PortSpec]] = field(default_factory=list)  # (bridge, port)
    del_ports: list[tuple[str, str]] = field(default_factory=list)
    set_bridges: list[BridgeSpec] = field(default_factory=list)  # controller/ids changed

    def __bool__(self) -> bool:
        return bool(
            self.add_bridges
            or self.del_bridges
            or self.add_ports
            or self.del_ports
            or self.set_bridges
        )


@dataclass
class NodeDiff:
    node: str
    ovsdb: OvsdbChange
    flows_add: set[FlowSpec]
    flows_del: set[FlowSpec]
    addresses_add: set[tuple[str, str]]
    neighbours_add: set[Neighbour]

    def __bool__(self) -> bool:
        return bool(
            self.ovsdb
            or self.flows_add
            or self.flows_del
            or self.addresses_add
            or self.neighbours_add
        )


def diff(old: NodePlan | None, new: NodePlan) -> NodeDiff:
    """What turns ``old`` (None: a node with nothing of ours) into ``new``."""
    old = old or NodePlan(new.node)
    ch = OvsdbChange()
    for name, b in new.bridges.items():
        ob = old.bridges.get(name)
        if ob is None:
            ch.add_bridges.append(b)
            continue
        if ob.shape() != b.shape():
            ch.set_bridges.append(b)
        oports, nports = ob.port_map(), b.port_map()
        for pname, port in nports.items():
            if oports.get(pname) != port:
                if pname in oports:
                    ch.del_ports.append((name, pname))
                ch.add_ports.append((name, port))
        ch.del_ports += [(name, pname) for pname in oports if pname not in nports]
    ch.del_bridges = [name for name in old.bridges if name not in new.bridges]
    gone = set(ch.del_bridges)
    return NodeDiff(
        new.node,
        ch,
        flows_add=new.flows - old.flows,
        flows_del={f for f in old.flows - new.flows if f.bridge not in gone},
        addresses_add=new.addresses - old.addresses,
        neighbours_add=new.neighbours - old.neighbours,
    )


# --- the paper's equations ---------------------------------------------------------------------
def bridges_expected(intent: Intent, node: str) -> int:
    """Equation (1): |bridges_c| = 2 x (|tns_c| + 1), tns_c = networks with a VM on c.

    Only dedicated-mode networks get bridges of their own; a common-mode network counts 0.
    """
    dedicated = {n for n in intent.networks_on(node) if intent.networks[n].mode is Mode.DEDICATED}
    return 2 * (len(dedicated) + 1)


def total_bridges_expected(intent: Intent, n_network_servers: int = 0) -> int:
    """Equation (2) with |ons| network servers (0 here: no Neutron network node)."""
    tns = {
        n for n, net in intent.networks.items() if net.mode is Mode.DEDICATED and intent.hosts(n)
    }
    cnodes = sum(bridges_expected(intent, c) for c in intent.nodes)
    return cnodes + n_network_servers * (2 * len(tns) + 3)


def tunnels_of(intent: Intent, network: str) -> int:
    """Tunnels our planner builds for one network: a full mesh among its hosting nodes."""
    return comb(len(intent.hosts(network)), 2)


def tunnel_bound(intent: Intent, n_network_servers: int = 0) -> int:
    """Equation (3)'s bound for one network: C(|cns| + |ons|, 2)."""
    return comb(len(intent.nodes) + n_network_servers, 2)


def total_tunnel_bound(intent: Intent, n_network_servers: int = 0) -> int:
    """Equation (4): |tnts| <= |tns| x C(|cns| + |ons|, 2)."""
    tns = [
        n for n, net in intent.networks.items() if net.mode is Mode.DEDICATED and intent.hosts(n)
    ]
    return len(tns) * tunnel_bound(intent, n_network_servers)
