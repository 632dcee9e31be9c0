"""Physical paths for vlinks.

A vlink joins two link vports; its path leaves the source pswitch through the source vport's
physical port and enters the destination pswitch through the destination vport's physical
port, with the shortest (hop count) route in between.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import networkx as nx

from tenantvisor.physical.topology import PhysicalTopology


@dataclass(frozen=True)
class Hop:
    """Traverse one physical link: out of (src_dpid, src_port) into (dst_dpid, dst_port)."""

    src_dpid: int
    src_port: int
    dst_dpid: int
    dst_port: int


class NoPath(Exception):
    pass


def vlink_path(topo: PhysicalTopology, src: tuple[int, int], dst: tuple[int, int]) -> list[Hop]:
    """Shortest physical path from port `src` (leaving) to port `dst` (entering).

    Raises NoPath when the ports do not face other pswitches or no route joins them.
    """
    first = topo.peer(*src)
    last = topo.peer(*dst)
    if first is None:
        raise NoPath(f"port {src[1]} of {src[0]:#x} faces no pswitch")
    if last is None:
        raise NoPath(f"port {dst[1]} of {dst[0]:#x} faces no pswitch")
    head = Hop(src[0], src[1], first[0], first[1])
    tail = Hop(last[0], last[1], dst[0], dst[1])
    if head == tail:
        return [head]
    g = topo.graph()
    # Do not route back through the end switches: a vlink is a simple path.
    inner = g.subgraph(n for n in g.nodes if n not in (src[0], dst[0]) or n in (first[0], last[0]))
    try:
        nodes = nx.shortest_path(inner, first[0], last[0])
    except (nx.NetworkXNoPath, nx.NodeNotFound) as exc:
        raise NoPath(f"no physical path from {first[0]:#x} to {last[0]:#x}") from exc
    hops = [head]
    for a, b in itertools.pairwise(nodes):
        sp, dp = min(g[a][b])  # deterministic choice among parallel links
        hops.append(Hop(a, sp, b, dp))
    hops.append(tail)
    return hops
