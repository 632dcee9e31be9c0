"""What translation needs to know about one vswitch: a frozen snapshot, rebuilt on change."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PortMap:
    """A vport as the data plane sees it."""

    number: int
    phys_port: int
    # Fabric tag pushed when sending out of this link vport (first hop of its vlink path);
    # None for an edge vport.
    link_tag: int | None = None
    is_link: bool = False
    up: bool = True  # a link vport whose vlink has no physical path is down
    # On an OpenFlow 1.0 pswitch (no classification table) each tenant rule is folded with
    # what identifies the packets entering this vport: the tag they arrive with over the
    # vlink, or the MACs of the hosts behind the edge vport.
    in_tag: int | None = None
    macs: tuple[str, ...] = ()
    # Edge vports on OpenFlow 1.3 pswitches: indirect groups of the hypervisor's whose only
    # bucket outputs to the port (and to IN_PORT), so the pswitch counts what the vport sent.
    tx_group: int | None = None
    hairpin_group: int | None = None
    # Tagged outputs (link vports, and a big switch's vports on its other pswitches): every
    # candidate path as (exit port, first tag), primary first.  With more than one, `groups`
    # holds the fast-failover groups carrying them, by the physical in_port they are built
    # for (0: any other), so the pswitch moves to a backup by itself when a port dies.
    exits: tuple[tuple[int, int], ...] = ()
    groups: tuple[tuple[int, int], ...] = ()
    # A vport of this big switch on another of its pswitches: reached over an internal route,
    # never an ingress here.
    remote: bool = False
    # LITE (a network at the `lite` scalability level, docs/design.md): over a vlink of one
    # physical hop, the block of fabric tags `lite_base + D` that carries "destination LITE
    # D" out of this vport; and, on the receiving side, (physical in_port, block base) of
    # the block its packets arrive with.
    lite_base: int | None = None
    lite_in: tuple[int, int] | None = None
    # An edge vport: the MACs of the hosts on it (table 0 admits only their packets), which
    # is all that can enter here from the wire (reduce/prove.py rests on it)
    hosts: tuple[str, ...] = ()
    # An exclusive edge vport: table 0 admits every frame of its physical port, whatever its
    # source MAC, so `hosts` (information only there) says nothing of what can enter
    exclusive: bool = False

    @property
    def reaches(self) -> bool:
        """Whether output to this vport is translated into something that leaves: a link
        vport (or a big switch's vport elsewhere) while it is up, a moved host's vport
        while a path joins it, and an edge vport always: its port down or gone, the pswitch
        drops what is sent there, as a switch does, so a port that comes and goes (a VM
        re-plugged by a live migration) rewrites no rule."""
        if self.is_link:
            return self.up
        return self.link_tag is None or (bool(self.exits) and self.exits[0] != (0, 0))


@dataclass(frozen=True, slots=True)
class VSwitchView:
    net_id: int
    index: int  # fabric-wide vswitch id (metadata bits)
    vdpid: int
    dpid: int
    n_tables: int
    ports: dict[int, PortMap] = field(default_factory=dict)
    of10: bool = False  # the pswitch speaks OpenFlow 1.0: one table, rules folded
    # OpenFlow 1.0: the VLAN ids that mark a packet sent to the controller, per ingress vport
    # (0: injected by the controller): (by a rule, by the tenant's table-miss rule).  PACKET_IN
    # carries no metadata or cookie there, so the mark tells ingress and reason.
    markers: dict[int, tuple[int, int]] = field(default_factory=dict)
    # LITE: the destination LITE of each host MAC of the network (1..lite_size-1), and the
    # size of the networks' tag blocks (0: the network is not at `lite`)
    lite: dict[str, int] = field(default_factory=dict)
    lite_size: int = 0
    # The hypervisor's ALL group that outputs to every vport (None: there is none, output to
    # some vport depends on the ingress): FLOOD and ALL where one action must do (an action
    # set or a group bucket, which Open vSwitch executes as an action set: one output)
    flood_group: int | None = None
    # Physical ports under more than one vport of this vswitch (several vlinks over one
    # uplink): output between those vports must use OFPP_IN_PORT.
    shared_ports: frozenset[int] = field(init=False, compare=False, default=frozenset())
    # Physical ports a packet can have as in_port here (the local vports' own ports).
    ingress_ports: frozenset[int] = field(init=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        # a port is shared when two vports send through it (a vport that follows a moved
        # host leaves through a link port: output to it from that link needs OFPP_IN_PORT)
        counts = Counter(p for pm in self.ports.values() for p in _out_ports(pm))
        shared = frozenset(p for p, n in counts.items() if n > 1)
        object.__setattr__(self, "shared_ports", shared)
        local = frozenset(pm.phys_port for pm in self.ports.values() if not pm.remote)
        object.__setattr__(self, "ingress_ports", local)

    def needs_ingress(self, pm: PortMap) -> bool:
        """Whether output to `pm` depends on which vport the packet came in on, beyond what
        OVS's "never out of the in_port" rule settles: a port several vports share, or a
        protected output (its failover group is chosen by the packet's in_port, and a
        packet must never go back toward the vport it came from over a backup)."""
        shared = any(p in self.shared_ports for p in _out_ports(pm))
        return shared or bool(pm.groups) or len(pm.exits) > 1


def _out_ports(pm: PortMap) -> set[int]:
    """The physical ports a vport's packets leave by (its own, and its paths' first hops)."""
    return {pm.phys_port, *(port for port, _ in pm.exits)}
