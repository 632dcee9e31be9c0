"""The physical topology as the pswitch sessions report it: switches, ports, discovered links.

Plain data with no I/O; sessions write to it, the intent layer and path computation read it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import networkx as nx

_T = TypeVar("_T")


@dataclass
class PPort:
    port_no: int
    name: str
    hw_addr: str
    up: bool = True
    curr_speed: int = 0  # kb/s as OpenFlow reports it
    max_speed: int = 0


@dataclass
class PSwitchInfo:
    dpid: int
    ports: dict[int, PPort] = field(default_factory=dict)
    n_tables: int = 0
    connected: bool = True
    of_version: int = 4  # 1: OpenFlow 1.0, transit only


@dataclass(frozen=True, order=True)
class PLink:
    """One direction of a physical link, as one LLDP probe proves it."""

    src_dpid: int
    src_port: int
    dst_dpid: int
    dst_port: int


class PhysicalTopology:
    """Switches and links; link directions are kept separately, as LLDP discovers them."""

    def __init__(self) -> None:
        self.switches: dict[int, PSwitchInfo] = {}
        self._links: dict[tuple[int, int], PLink] = {}  # keyed by (src_dpid, src_port)
        # per link direction: whether full-size tagged frames cross it (None: not known yet)
        self.mtu_ok: dict[PLink, bool] = {}
        # per pswitch: whether it parses a tenant's VLAN tag inside the fabric tag (None: not
        # known yet); a property of the switch (Open vSwitch's vlan-limit), not of a link
        self.qinq_ok: dict[int, bool] = {}
        self.version = 0  # bumped on every change, so dependants know to recompute
        # bumped only by what can change a path: switches, links, and the ports they use
        # (a host's port coming and going, as a live migration re-plugs it, does not)
        self.links_version = 0
        # what is derived from the links alone (the link graph, paths): every compile of
        # every network asks again, and a live migration's compile is on the clock
        self._memo: dict[Hashable, Any] = {}
        self._memo_version = -1

    # --- updates from sessions -------------------------------------------------------------
    def _bump(self, links: bool) -> None:
        self.version += 1
        if links:
            self.links_version += 1

    def add_switch(self, info: PSwitchInfo) -> None:
        self.switches[info.dpid] = info
        self._bump(True)

    def remove_switch(self, dpid: int) -> None:
        self.switches.pop(dpid, None)
        self.qinq_ok.pop(dpid, None)
        for key in [k for k, lk in self._links.items() if dpid in (lk.src_dpid, lk.dst_dpid)]:
            del self._links[key]
        self._bump(True)

    def set_port(self, dpid: int, port: PPort) -> None:
        sw = self.switches.get(dpid)
        if sw is None:
            return
        sw.ports[port.port_no] = port
        on_link = self.is_link_port(dpid, port.port_no)
        if not port.up:
            self._drop_links_on(dpid, port.port_no)
        self._bump(on_link)

    def remove_port(self, dpid: int, port_no: int) -> None:
        sw = self.switches.get(dpid)
        if sw is not None:
            sw.ports.pop(port_no, None)
        on_link = self.is_link_port(dpid, port_no)
        self._drop_links_on(dpid, port_no)
        self._bump(on_link)

    def add_link(self, link: PLink) -> bool:
        """Record one direction; returns True when this is news."""
        old = self._links.get((link.src_dpid, link.src_port))
        if old == link:
            return False
        self._links[(link.src_dpid, link.src_port)] = link
        self._bump(True)
        return True

    def remove_link(self, link: PLink) -> None:
        self.mtu_ok.pop(link, None)
        if self._links.get((link.src_dpid, link.src_port)) == link:
            del self._links[(link.src_dpid, link.src_port)]
            self._bump(True)

    def _drop_links_on(self, dpid: int, port_no: int) -> None:
        gone = [
            k
            for k, lk in self._links.items()
            if (lk.src_dpid, lk.src_port) == (dpid, port_no)
            or (lk.dst_dpid, lk.dst_port) == (dpid, port_no)
        ]
        for k in gone:
            del self._links[k]

    # --- queries ---------------------------------------------------------------------------
    def links(self) -> list[PLink]:
        return sorted(self._links.values())

    def peer(self, dpid: int, port_no: int) -> tuple[int, int] | None:
        """The (dpid, port) a physical port faces, if LLDP found one (in either direction)."""
        lk = self._links.get((dpid, port_no))
        if lk is not None:
            return lk.dst_dpid, lk.dst_port
        for lk in self._links.values():
            if (lk.dst_dpid, lk.dst_port) == (dpid, port_no):
                return lk.src_dpid, lk.src_port
        return None

    def is_link_port(self, dpid: int, port_no: int) -> bool:
        return self.peer(dpid, port_no) is not None

    def has_port(self, dpid: int, port_no: int) -> bool:
        sw = self.switches.get(dpid)
        return sw is not None and port_no in sw.ports

    def memo(self, key: Hashable, compute: Callable[[], _T]) -> _T:
        """`compute()`, computed once per `links_version`: only for what depends on the
        switches, links and link ports (and `key`) alone, and is not mutated by its
        users."""
        if self._memo_version != self.links_version:
            self._memo.clear()
            self._memo_version = self.links_version
        try:
            return cast(_T, self._memo[key])
        except KeyError:
            got = self._memo[key] = compute()
            return got

    def graph(self) -> nx.MultiDiGraph:
        """Directed multigraph of usable links: edge key (src_port, dst_port); frozen (it is
        shared until the topology changes).

        A link proved in one direction is used in both: Ethernet links are bidirectional, and
        a vlink requested right after two pswitches connect should not wait for the second
        direction's probe.
        """
        return self.memo("graph", self._graph)

    def _graph(self) -> nx.MultiDiGraph:
        g: nx.MultiDiGraph = nx.MultiDiGraph()
        # sorted: path searches walk nodes and edges in insertion order, and the same fabric
        # must give the same paths whatever order LLDP found its links in (a restarted
        # daemon must compile exactly the rules the pswitches still have)
        g.add_nodes_from(sorted(self.switches))
        for lk in sorted(self._links.values()):
            a = self.switches.get(lk.src_dpid)
            b = self.switches.get(lk.dst_dpid)
            if a is None or b is None:
                continue
            pa, pb = a.ports.get(lk.src_port), b.ports.get(lk.dst_port)
            if pa is None or pb is None or not pa.up or not pb.up:
                continue
            g.add_edge(lk.src_dpid, lk.dst_dpid, key=(lk.src_port, lk.dst_port))
            g.add_edge(lk.dst_dpid, lk.src_dpid, key=(lk.dst_port, lk.src_port))
        return nx.freeze(g)
