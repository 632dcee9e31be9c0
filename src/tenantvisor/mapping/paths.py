"""Physical paths for vlinks.

A vlink joins two link vports; its path leaves the source pswitch through the source vport's
physical port and enters the destination pswitch through the destination vport's physical
port, with the shortest (hop count) route in between.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import NamedTuple

import networkx as nx

from tenantvisor.physical.topology import PhysicalTopology


class Hop(NamedTuple):
    """Traverse one physical link: out of (src_dpid, src_port) into (dst_dpid, dst_port).

    A named tuple (not a dataclass): paths are parts of allocation owners and cache keys,
    hashed and compared on every compile, and a tuple does that in C."""

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


# --- several paths: primary and link-disjoint backups ---------------------------------------
Path = tuple[Hop, ...]


def _link_id(h: Hop) -> tuple[tuple[int, int], tuple[int, int]]:
    """A physical link regardless of direction (disjointness is about cables)."""
    a, b = (h.src_dpid, h.src_port), (h.dst_dpid, h.dst_port)
    return (a, b) if a <= b else (b, a)


def _shortest(
    g: nx.MultiDiGraph, src: int, dst: int, banned: set[tuple[tuple[int, int], tuple[int, int]]]
) -> Path | None:
    """Shortest path in hops avoiding `banned` links; deterministic among equal ones (the
    lowest ports, then the lowest dpids), so the same fabric always gives the same paths."""
    h: nx.DiGraph = nx.DiGraph()
    h.add_nodes_from(g.nodes)
    for a, b, key in sorted(g.edges(keys=True)):
        hop = Hop(a, key[0], b, key[1])
        if _link_id(hop) in banned or h.has_edge(a, b):
            continue
        h.add_edge(a, b, hop=hop)
    try:
        nodes = min(
            nx.all_shortest_paths(h, src, dst),
            key=lambda p: [(n, h[x][n]["hop"].src_port) for x, n in itertools.pairwise(p)],
        )
    except (nx.NetworkXNoPath, nx.NodeNotFound):
        return None
    return tuple(h[a][b]["hop"] for a, b in itertools.pairwise(nodes))


def switch_paths(
    topo: PhysicalTopology, src: int, dst: int, backup_num: int, within: set[int] | None = None
) -> list[Path]:
    """The shortest path between two pswitches and up to `backup_num` link-disjoint
    alternatives (each the shortest that avoids every link already chosen), optionally only
    through the pswitches in `within` (a big switch routes inside itself)."""
    key = ("switch_paths", src, dst, backup_num, None if within is None else frozenset(within))
    return list(topo.memo(key, lambda: tuple(_switch_paths(topo, src, dst, backup_num, within))))


def _switch_paths(
    topo: PhysicalTopology, src: int, dst: int, backup_num: int, within: set[int] | None
) -> list[Path]:
    g = topo.graph()
    if within is not None:
        g = g.subgraph(n for n in g.nodes if n in within)
    out: list[Path] = []
    banned: set[tuple[tuple[int, int], tuple[int, int]]] = set()
    while len(out) <= backup_num:
        p = _shortest(g, src, dst, banned)
        if not p:
            break
        out.append(p)
        banned.update(_link_id(h) for h in p)
    return out


def vlink_paths(
    topo: PhysicalTopology, src: tuple[int, int], dst: tuple[int, int], backup_num: int
) -> list[Path]:
    """A vlink's candidate paths, best first: the primary leaves through the source vport's
    port and enters through the destination vport's (`vlink_path`); backups join the two
    pswitches over other links, link-disjoint from every path before them.  Empty: none."""
    key = ("vlink_paths", src, dst, backup_num)
    return list(topo.memo(key, lambda: tuple(_vlink_paths(topo, src, dst, backup_num))))


def _vlink_paths(
    topo: PhysicalTopology, src: tuple[int, int], dst: tuple[int, int], backup_num: int
) -> list[Path]:
    out: list[Path] = []
    with contextlib.suppress(NoPath):
        out.append(tuple(vlink_path(topo, src, dst)))
    if backup_num <= 0 or src[0] == dst[0]:
        return out
    g = topo.graph()
    banned = {_link_id(h) for p in out for h in p}
    while len(out) <= backup_num:
        p = _shortest(g, src[0], dst[0], banned)
        if not p:
            break
        out.append(p)
        banned.update(_link_id(h) for h in p)
    return out


def is_live(topo: PhysicalTopology, hops: Path) -> bool:
    """Whether every link of a (manual) path is up now."""
    g = topo.graph()
    return bool(hops) and all(
        g.has_edge(h.src_dpid, h.dst_dpid, key=(h.src_port, h.dst_port)) for h in hops
    )


def reverse(path: Path) -> Path:
    return tuple(Hop(h.dst_dpid, h.dst_port, h.src_dpid, h.src_port) for h in reversed(path))


def parse_path(text: str) -> Path:
    """OpenVirteX's path syntax: "dpid/port-dpid/port,dpid/port-dpid/port,..." (dpids in
    decimal, hex with 0x, or colon form).  Raises ValueError with the reason."""
    hops = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            a, b = part.split("-")
            (sd, sp), (dd, dp) = (x.strip().rsplit("/", 1) for x in (a, b))
            hops.append(Hop(_dpid(sd), int(sp, 0), _dpid(dd), int(dp, 0)))
        except ValueError:
            raise ValueError(f"bad hop {part!r}: expected dpid/port-dpid/port") from None
    if not hops:
        raise ValueError("empty path")
    for x, y in itertools.pairwise(hops):
        if x.dst_dpid != y.src_dpid:
            raise ValueError(f"hops do not join: {x.dst_dpid:#x} then {y.src_dpid:#x}")
    return tuple(hops)


def _dpid(text: str) -> int:
    if ":" in text:
        return int(text.replace(":", ""), 16)
    return int(text, 0)


def format_path(path: Path) -> str:
    return ",".join(f"{h.src_dpid}/{h.src_port}-{h.dst_dpid}/{h.dst_port}" for h in path)
