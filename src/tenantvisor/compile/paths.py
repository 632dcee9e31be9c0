"""Which physical paths carry a vlink or a big switch's internal route, best first.

The first live candidate is the primary; the rest are its backups, in order.  Manual paths
are the tenant's (highest priority first, only those whose every link is up); spf paths are
recomputed on the fabric as it is, so a failed link drops out and a repaired one returns.
"""

from __future__ import annotations

from tenantvisor.mapping.paths import Hop, Path, is_live, switch_paths, vlink_paths
from tenantvisor.physical.topology import PhysicalTopology
from tenantvisor.virtual.model import ManualPath, VirtualNetwork, VLink, VSwitch


def _manual(topo: PhysicalTopology, paths: list[ManualPath]) -> list[Path]:
    ordered = sorted(paths, key=lambda p: -p.priority)  # stable: equal priority, set order
    out = []
    for mp in ordered:
        hops = tuple(Hop(*h) for h in mp.hops)
        if is_live(topo, hops) and hops not in out:
            out.append(hops)
    return out


def vlink_candidates(topo: PhysicalTopology, net: VirtualNetwork, lk: VLink) -> list[Path]:
    """Paths of the vlink in its src -> dst direction (the other direction reverses them)."""
    a = net.vport(lk.src.vdpid, lk.src.vport)
    b = net.vport(lk.dst.vdpid, lk.dst.vport)
    if a is None or b is None:
        return []
    if lk.algorithm == "manual":
        return [
            p
            for p in _manual(topo, lk.paths)
            if p[0].src_dpid == a.dpid and p[-1].dst_dpid == b.dpid
        ]
    return vlink_paths(topo, (a.dpid, a.port), (b.dpid, b.port), lk.backup_num)


def internal_routes(
    topo: PhysicalTopology, sw: VSwitch, src_dpid: int, dst_vport: int
) -> list[Path]:
    """How a big switch carries a packet from its pswitch `src_dpid` to the pswitch of
    `dst_vport`.  Manual routing uses the routes the tenant set toward that vport from a vport
    on `src_dpid` (highest priority first); spf uses shortest paths through the switch's own
    pswitches only, with `backup_num` link-disjoint alternatives."""
    dst = sw.ports.get(dst_vport)
    if dst is None or dst.dpid == src_dpid:
        return []
    if sw.routing == "manual":
        mine = [
            r.path
            for r in sorted(sw.routes.values(), key=lambda r: r.id)
            if r.dst_vport == dst_vport
            and (src := sw.ports.get(r.src_vport)) is not None
            and src.dpid == src_dpid
        ]
        return [
            p
            for p in _manual(topo, mine)
            if p[0].src_dpid == src_dpid and p[-1].dst_dpid == dst.dpid
        ]
    return switch_paths(topo, src_dpid, dst.dpid, sw.backup_num, within=set(sw.dpids))
