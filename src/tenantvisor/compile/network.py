"""One virtual network's desired physical state, compiled from intent and the fabric.

`compile_network` is a function of (intent, physical topology, allocations): no I/O, no
clock.  It returns every hypervisor-owned rule (table 0 classification, tag swaps along
vlink paths and big-switch routes) and group (edge-vport output groups, fast-failover groups
over a vlink's or route's candidate paths) keyed so the program stage can diff them, and per
(vswitch, pswitch) the view the vswitch endpoint translates tenant rules against.

Ids on the wire come from `IdAllocator` under owners that name what they stand for: a path's
tags are owned by the path itself (its hops), so when a backup becomes the primary its
rules stay as they were and only the head-end's failover group changes order.

Data-plane limits (the network's override over the admin's defaults, `Limits`) become the
provider's meters, one per edge vport and per vlink direction on the pswitch where that
traffic enters the slice, attached by the table-0 rules that classify it (`meters`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.paths import internal_routes, vlink_candidates
from tenantvisor.mapping import layout
from tenantvisor.mapping.alloc import IdAllocator, IdSpaceExhausted
from tenantvisor.mapping.layout import FABRIC_TPID, MAX_TAG
from tenantvisor.mapping.paths import Path, reverse, switch_paths
from tenantvisor.openflow import codec, oxm
from tenantvisor.physical.topology import PhysicalTopology
from tenantvisor.translate import infra
from tenantvisor.translate.flow import PhysFlow, deliver_actions, flood_buckets
from tenantvisor.translate.group import GroupSpec, bucket, output_group_spec
from tenantvisor.translate.meter import LimitMeter
from tenantvisor.translate.view import PortMap, VSwitchView
from tenantvisor.virtual.flowtable import NormMatch, normalize
from tenantvisor.virtual.model import NO_LIMITS, Limits, VirtualNetwork, VLink, VPort, VPortKind

log = logging.getLogger(__name__)
RuleKey = tuple[int, int, int, bytes]  # dpid, table, priority, match
StatKey = tuple[int, int, int, NormMatch]  # dpid, table, priority, normalized match
TAG_BYTES = 4  # the 802.1ad S-tag a frame carries across the fabric
LITE_MAX_BLOCK = 64  # LITE tags per vlink direction: at most 63 destination LITEs
OFPG_MAX = ofp.OFPG_MAX
# Set (tests do): every compile that takes the hosts-only way (`_Compiler._fast`) is also
# made the whole way, without the cache, and the two must be equal.
VERIFY_ENV = "TENANTVISOR_VERIFY_COMPILE"


@lru_cache(maxsize=1 << 16)
def stat_key(pf: PhysFlow) -> StatKey:
    """How a physical rule is recognised in a flow statistics reply (OVS orders fields its
    own way, so the match is compared normalized)."""
    return pf.dpid, pf.table, pf.priority, normalize(codec.parse_match(pf.match, 0)[0])


@dataclass
class PathReport:
    """The paths of one direction of a vlink (or one internal route), primary first."""

    paths: list[Path]


@dataclass
class NetworkState:
    """Everything the hypervisor programs for one network, and how endpoints see it."""

    net_id: int
    rules: dict[RuleKey, PhysFlow] = field(default_factory=dict)
    groups: dict[tuple[int, int], GroupSpec] = field(default_factory=dict)
    # the provider's limit meters of the network, by (dpid, meter id)
    meters: dict[tuple[int, int], LimitMeter] = field(default_factory=dict)
    views: dict[tuple[int, int], VSwitchView] = field(default_factory=dict)  # (vdpid, dpid)
    port_names: dict[int, dict[int, str]] = field(default_factory=dict)  # vdpid -> names
    # table-0 rule -> (vdpid, vport) it classifies into, bytes it counts beyond the frame
    classify: dict[StatKey, tuple[int, int, int]] = field(default_factory=dict)
    # OpenFlow 1.0: (dpid, marker VLAN) -> (vswitch index, ingress vport, PACKET_IN reason)
    markers: dict[tuple[int, int], tuple[int, int, int]] = field(default_factory=dict)
    # (vlink id, 0 = src->dst | 1 = dst->src) -> candidate paths in use, primary first
    vlink_paths: dict[tuple[int, int], list[Path]] = field(default_factory=dict)
    owners: set[tuple[object, object]] = field(default_factory=set)  # allocations in use

    def take(self, part: NetworkState) -> None:
        """Add what `part` holds (a vlink's or a vswitch's piece, or the vlinks' part kept
        for hosts-only compiles): its path lists are copied, not shared with the cache."""
        self.rules.update(part.rules)
        self.groups.update(part.groups)
        self.meters.update(part.meters)
        self.views.update(part.views)
        self.port_names.update(part.port_names)
        self.markers.update(part.markers)
        self.classify.update(part.classify)
        self.owners |= part.owners
        self.vlink_paths.update((k, list(v)) for k, v in part.vlink_paths.items())


@dataclass(frozen=True)
class _Moved:
    """Where a vport that follows a moved host goes: its new port, and (another pswitch)
    the first hop and tag of the path to it (None: the same pswitch)."""

    port: int
    exit: tuple[int, int] | None
    up: bool


@dataclass
class _Piece:
    """What one vlink or vswitch contributes to its network's state, with the inputs it
    was computed from (`key`) and the ids it holds, to be reused as it is."""

    key: tuple[object, ...]
    state: NetworkState
    ids: dict[tuple[object, object], int] = field(default_factory=dict)
    mark: int = -1  # the allocator's `lost_mark` when its ids were last known to hold

    def holds(self, alloc: IdAllocator) -> bool:
        """Whether every id the piece uses is still its owner's (another instance may have
        won one in a race, or the ids may have been given back meanwhile): from the owners
        that lost ids since it last checked, or every id if that is too long ago."""
        lost = alloc.lost_since(self.mark)
        if lost is None:
            peek = alloc.peek
            ok = all(peek(sp, o) == i for (sp, o), i in self.ids.items())  # type: ignore[arg-type]
        else:
            ok = not any(k in self.ids for k in lost)
        if ok:
            self.mark = alloc.lost_mark
        return ok


@dataclass
class _VlinkPiece(_Piece):
    """A vlink's, with what its vswitches' vports learn of it."""

    heads: list[tuple[tuple[int, int], list[tuple[Path, tuple[int, ...]]]]] = field(
        default_factory=list
    )
    in_tags: dict[tuple[int, int], int] = field(default_factory=dict)
    lite_out: dict[tuple[int, int], int] = field(default_factory=dict)
    lite_in: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)

    def add_head(self, vport: tuple[int, int], path: Path, tags: tuple[int, ...]) -> None:
        if self.heads and self.heads[-1][0] == vport:
            self.heads[-1][1].append((path, tags))
        else:
            self.heads.append((vport, [(path, tags)]))


@dataclass
class _Last:
    """The previous compile, as far as a compile in which only hosts' locations changed
    reuses it: everything the vlinks made (merged), what the hosts made of the vports."""

    key: tuple[object, ...]
    vlinks: list[_VlinkPiece]
    part: NetworkState  # the vlinks' rules, meters, classification, paths and ids
    heads: dict[tuple[int, int], list[tuple[Path, tuple[int, ...]]]]
    in_tags: dict[tuple[int, int], int]
    lite_out: dict[tuple[int, int], int]
    lite_in: dict[tuple[int, int], tuple[int, int]]
    lite: dict[str, int]
    lite_size: int
    moved: dict[tuple[int, int], _Moved]
    hosts: dict[tuple[int, int], list[str]]
    macs: dict[tuple[int, int], list[str]]


@dataclass
class CompileCache:
    """What `compile_network` may reuse from its previous run for the same network: each
    vlink's and each vswitch's piece, for as long as everything it was computed from (its
    key: intent, the fabric's links and the ports it uses) and its ids are unchanged.  The
    result is the same with or without it (tested); it only saves the time, which a live
    migration's recompile is judged by, and the endpoints get the very same views.

    `last`: when nothing but hosts' locations changed since (the network's `shape`, the
    fabric's `version`, the limits and table count are the same), the next compile takes
    the vlinks' part whole and rebuilds only the vswitches whose vports a host changed
    (with every reused piece's ids checked as always): a live migration's compile reads
    a fraction of the network instead of all of it."""

    vlinks: dict[int, _VlinkPiece] = field(default_factory=dict)
    vswitches: dict[int, _Piece] = field(default_factory=dict)
    last: _Last | None = None


@dataclass
class _Around:
    """What the vlinks and hosts of a network tell its vswitches' vports (`_vswitch`)."""

    heads: dict[tuple[int, int], list[tuple[Path, tuple[int, ...]]]]
    in_tags: dict[tuple[int, int], int]
    lite_out: dict[tuple[int, int], int]
    lite_in: dict[tuple[int, int], tuple[int, int]]
    moved: dict[tuple[int, int], _Moved]
    hosts: dict[tuple[int, int], list[str]]
    macs: dict[tuple[int, int], list[str]]
    lite: dict[str, int]
    lite_size: int

    @property
    def lite_key(self) -> tuple[object, ...]:
        return (self.lite_size, *sorted(self.lite.items())) if self.lite_size else ()


def _vlink_key(lk: VLink) -> tuple[object, ...]:
    return (
        lk.id, lk.src.vdpid, lk.src.vport, lk.dst.vdpid, lk.dst.vport, lk.algorithm,
        lk.backup_num, tuple((mp.hops, mp.priority) for mp in lk.paths),
    )  # fmt: skip


def _fabric_push(tag: int) -> bytes:
    return codec.push_vlan(FABRIC_TPID) + codec.set_field(
        codec.oxm_u16(oxm.VLAN_VID, tag | oxm.VLAN_PRESENT)
    )


class _Compiler:
    def __init__(
        self, net: VirtualNetwork, topo: PhysicalTopology, alloc: IdAllocator, n_tables: int,
        cache: CompileCache | None = None, limits: Limits = NO_LIMITS,
    ) -> None:  # fmt: skip
        self.net = net
        self.topo = topo
        self.alloc = alloc
        self.n_tables = n_tables
        self.cache = cache
        self.limits = limits  # in force: the network's override over the defaults
        self.st = NetworkState(net.id)
        self._held: dict[tuple[object, object], int] | None = None  # a piece's ids, if one
        self._incomplete = False  # the piece being made lacks ids: not to be reused

    # --- allocation ----------------------------------------------------------------------
    def _id(self, space: tuple[object, ...], owner: object, hi: int = MAX_TAG) -> int:
        self.st.owners.add((space, owner))
        got = self.alloc.get(space, owner, 1, hi)
        if self._held is not None:
            self._held[(space, owner)] = got
        return got

    def _tags(self, kind: tuple[object, ...], path: Path) -> tuple[int, ...]:
        """One tag per hop, from the space of the port the hop enters; owned by the path."""
        return tuple(
            self._id(("tag", h.dst_dpid, h.dst_port), (self.net.id, *kind, path, i))
            for i, h in enumerate(path)
        )

    def _hop_tags(self, kind: tuple[object, ...], path: Path) -> tuple[int, ...]:
        """As `_tags`, each hop's tag owned by the hop itself, not by the whole path: for an
        owner that has one path at a time (a moved host's, each way), so a new path keeps
        the tags, and the rules, of every hop it shares with the old one, and a move
        rewrites only what is near its ends (a path never crosses a hop twice)."""
        return tuple(
            self._id(("tag", h.dst_dpid, h.dst_port), (self.net.id, *kind, h)) for h in path
        )

    def _of10(self, dpid: int) -> bool:
        info = self.topo.switches.get(dpid)
        return info is not None and info.of_version == 1

    def _add(self, pf: PhysFlow) -> None:
        self.st.rules[pf.key] = pf

    def _limit_meter(self, dpid: int, kind: str, what: tuple[int, int]) -> int | None:
        """The provider's meter limiting `what` (a vport: (vdpid, number); a vlink
        direction: (id, 0 | 1)) where its traffic enters the slice, on `dpid`; None when
        unlimited, or on an OpenFlow 1.0 pswitch (no meters: its traffic is not limited).
        The id is the network's, from the pswitch's meter space below the punt meter, so
        the program stage gives it back with the network's other ids."""
        rate = self.limits.rate(kind)
        if rate is None or self._of10(dpid):
            return None
        owner = (self.net.id, "limit", kind, *what)
        mid = self._id(("meter", dpid), owner, layout.PUNT_METER - 1)
        flags, bands = infra.limit_meter(*rate)
        self.st.meters[(dpid, mid)] = LimitMeter(dpid, mid, flags, bands, kind, what)
        return mid

    # --- failover groups -----------------------------------------------------------------
    def _ff_groups(
        self, dpid: int, owner: tuple[object, ...], exits: tuple[tuple[int, int], ...],
        ingress: set[int], protected: bool,
    ) -> tuple[tuple[int, int], ...]:  # fmt: skip
        """Fast-failover groups over `exits` on `dpid`, for an output the tenant asked to
        protect (backups) or that has several paths now: one per physical in_port a packet
        can have here (that bucket says IN_PORT, or OVS would drop it) and one (0) for
        packets the controller injected.  The set depends on the ports, not on which paths
        are alive, so a failure or a repair changes buckets, never the tenant's rules."""
        if not (protected or len(exits) > 1) or self._of10(dpid):
            return ()
        return tuple((v, self._ff_group(dpid, owner, exits, v)) for v in [0, *sorted(ingress)])

    def _ff_group(
        self, dpid: int, owner: tuple[object, ...], exits: tuple[tuple[int, int], ...],
        variant: int,
    ) -> int:  # fmt: skip
        """One fast-failover group: a bucket per exit, watching its port, the one leaving
        through `variant` (the packet's in_port) saying IN_PORT."""
        gid = self._id(("group", dpid), (self.net.id, "ff", *owner, variant), OFPG_MAX)
        buckets = b"".join(
            bucket(
                _fabric_push(tag) + codec.output(ofp.OFPP_IN_PORT if port == variant else port),
                watch_port=port,
            )
            for port, tag in exits
        )
        self.st.groups[(dpid, gid)] = GroupSpec(dpid, gid, ofp.OFPGT_FF, buckets)
        return gid

    # --- the network ---------------------------------------------------------------------
    def _key(self) -> tuple[object, ...]:
        """What must be unchanged for the hosts-only way (see CompileCache.last)."""
        net = self.net
        return (id(net), net.id, net.shape, self.topo.version, self.n_tables, self.limits,
                len(net.switches), len(net.links), len(net.hosts))  # fmt: skip

    def run(self) -> NetworkState:
        cache = self.cache
        key = self._key() if cache is not None else ()
        last = cache.last if cache is not None else None
        if last is not None and last.key == key:
            st = self._fast(last)
            if st is not None:
                if os.environ.get(VERIFY_ENV) == "1":
                    full = _Compiler(self.net, self.topo, self.alloc, self.n_tables, None,
                                     self.limits).run()  # fmt: skip
                    if full != st:
                        raise AssertionError(f"net={self.net.id}: the hosts-only compile "
                                             "differs from the whole one")  # fmt: skip
                return st
        return self._full(key)

    def _full(self, key: tuple[object, ...]) -> NetworkState:
        net, st = self.net, self.st
        # link vport -> candidate paths out of it (primary first) with their tags
        heads: dict[tuple[int, int], list[tuple[Path, tuple[int, ...]]]] = {}
        in_tags: dict[tuple[int, int], int] = {}  # OpenFlow 1.0 vports: arriving tag
        lite, lite_size = self._lite_ids()
        lite_out: dict[tuple[int, int], int] = {}  # link vport -> its LITE block
        lite_in: dict[tuple[int, int], tuple[int, int]] = {}  # -> (in_port, block) arriving
        pieces = []
        for lk in net.links.values():
            piece = self._vlink_piece(lk, lite_size)
            pieces.append(piece)
            st.take(piece.state)
            for vport, cands in piece.heads:
                heads.setdefault(vport, []).extend(cands)
            in_tags.update(piece.in_tags)
            lite_out.update(piece.lite_out)
            lite_in.update(piece.lite_in)
        part = NetworkState(net.id)  # the vlinks' part, for the hosts-only way
        part.take(st)
        moved, hosts, macs = self._hosts()
        ctx = _Around(heads, in_tags, lite_out, lite_in, moved, hosts, macs, lite, lite_size)
        self._vswitches(ctx, None)
        if self.cache is not None:
            # only when every vlink's piece is whole (cached): one that lacked ids is to
            # be made again next time, not taken as it is
            cached = self.cache.vlinks
            whole = all(cached.get(lk) is pc for lk, pc in zip(net.links, pieces, strict=True))
            self.cache.last = None
            if whole:
                self.cache.last = _Last(key, pieces, part, heads, in_tags, lite_out, lite_in,
                                        lite, lite_size, moved, hosts, macs)  # fmt: skip
        return st

    def _fast(self, last: _Last) -> NetworkState | None:
        """The compile when only hosts' locations changed since `last`: the vlinks' part
        as it was (if every vlink's ids still hold), the hosts' rules anew, and the
        vswitches rebuilt (by key, as always) only where a vport's hosts changed."""
        if not all(pc.holds(self.alloc) for pc in last.vlinks):
            return None
        st = self.st
        st.take(last.part)
        moved, hosts, macs = self._hosts()
        ctx = _Around(last.heads, last.in_tags, last.lite_out, last.lite_in, moved, hosts,
                      macs, last.lite, last.lite_size)  # fmt: skip
        touched = {
            k[0]
            for old, new in ((last.moved, moved), (last.hosts, hosts), (last.macs, macs))
            for k in old.keys() | new.keys()
            if old.get(k) != new.get(k)
        }
        self._vswitches(ctx, touched)
        last.moved, last.hosts, last.macs = moved, hosts, macs
        return st

    def _hosts(self) -> tuple[dict[tuple[int, int], _Moved], dict[tuple[int, int], list[str]],
                              dict[tuple[int, int], list[str]]]:  # fmt: skip
        """Each host's classification where it is (or its path home, if it moved away):
        the vports that follow a moved host, and the MACs of each vport's hosts."""
        net, st = self.net, self.st
        macs: dict[tuple[int, int], list[str]] = {}
        hosts: dict[tuple[int, int], list[str]] = {}
        moved: dict[tuple[int, int], _Moved] = {}  # vports following a host that moved
        for host in net.hosts.values():
            sw = net.switches.get(host.vdpid)
            vp = net.vport(host.vdpid, host.vport)
            if sw is None or vp is None:
                continue
            hosts.setdefault((host.vdpid, host.vport), []).append(host.mac)
            if vp.exclusive:
                continue  # information only: its vport classifies by in_port alone (below)
            if host.location is not None and host.location != (vp.dpid, vp.port):
                moved[(host.vdpid, host.vport)] = self._moved(
                    host.mac, host.location, sw.index, (host.vdpid, vp.number), (vp.dpid, vp.port)
                )
                continue
            if self._of10(vp.dpid):
                macs.setdefault((host.vdpid, host.vport), []).append(host.mac)
                continue
            meter = self._limit_meter(vp.dpid, "vport", (host.vdpid, host.vport))
            hf = infra.host_flow(
                net.id, infra.HostBinding(vp.dpid, vp.port, host.mac, sw.index, vp.number, meter)
            )
            self._add(hf)
            st.classify[stat_key(hf)] = (host.vdpid, host.vport, 0)
        return moved, hosts, macs

    def _vswitches(self, ctx: _Around, only: set[int] | None) -> None:
        """Each vswitch's piece into the state: looked up by key, or (`only` given: the
        hosts-only way) reused as cached unless it is in `only` or its ids do not hold."""
        st, cache = self.st, self.cache
        for vdpid in self.net.switches:
            cached = None
            if cache is not None and only is not None and vdpid not in only:
                cached = cache.vswitches.get(vdpid)
            if cached is not None and cached.holds(self.alloc):
                vpiece = cached
            else:
                vpiece = self._vswitch_piece(vdpid, ctx)
            st.take(vpiece.state)

    def _vswitch_piece(self, vdpid: int, ctx: _Around) -> _Piece:
        """One vswitch's views, groups and big-switch routes, taken from `cache` while
        nothing it depends on changed (so its endpoint finds the very same views, and
        compares them at once)."""
        key = self._vswitch_key(vdpid, ctx)
        cached = self.cache.vswitches.get(vdpid) if self.cache is not None else None
        if cached is not None and cached.key == key and cached.holds(self.alloc):
            return cached
        piece = _Piece(key, NetworkState(self.net.id))
        if self._make(piece, lambda: self._vswitch(vdpid, ctx)) and self.cache:
            self.cache.vswitches[vdpid] = piece
        elif self.cache is not None:
            self.cache.vswitches.pop(vdpid, None)
        return piece

    def _vswitch_key(self, vdpid: int, ctx: _Around) -> tuple[object, ...]:
        """Everything `_vswitch` reads, as plain values."""
        net, topo, sw = self.net, self.topo, self.net.switches[vdpid]
        ports: list[object] = []
        for n, vp in sw.ports.items():
            where = [(vp.dpid, vp.port)]
            at = (n, vdpid)
            mv = ctx.moved.get((vdpid, n))
            if mv is not None:
                where.append((vp.dpid, mv.port))
            seen = []
            for d, pt in where:
                pinfo = topo.switches.get(d)
                pp = pinfo.ports.get(pt) if pinfo else None
                seen.append((pinfo is not None, None if pp is None else (pp.up, pp.name)))
            vl = net.links.get(vp.link_id) if vp.link_id is not None else None
            ports.append((
                at, vp.dpid, vp.port, vp.kind, vp.link_id, vp.exclusive, tuple(seen), mv,
                None if vl is None else (vl.backup_num, vl.algorithm, len(vl.paths)),
                tuple(ctx.heads.get((vdpid, n), ())), ctx.in_tags.get((vdpid, n)),
                ctx.lite_out.get((vdpid, n)), ctx.lite_in.get((vdpid, n)),
                tuple(ctx.hosts.get((vdpid, n), ())), tuple(ctx.macs.get((vdpid, n), ())),
            ))  # fmt: skip
        return (
            net.id, topo.links_version, self.n_tables, ctx.lite_key, self.limits.rate("vport"),
            vdpid, tuple(sw.dpids),
            sw.index, sw.routing, sw.backup_num,
            tuple((r.id, r.src_vport, r.dst_vport, r.path.hops, r.path.priority)
                  for r in sw.routes.values()),
            tuple(self._of10(d) for d in sw.dpids), tuple(ports),
        )  # fmt: skip

    def _vswitch(self, vdpid: int, ctx: _Around) -> None:
        net, topo, st, sw = self.net, self.topo, self.st, self.net.switches[vdpid]
        local: dict[int, dict[int, PortMap]] = {d: {} for d in sw.dpids}
        names: dict[int, str] = {}
        on: dict[int, set[int]] = {}  # pswitch -> the vswitch's ports there
        for vp in sw.ports.values():
            on.setdefault(vp.dpid, set()).add(vp.port)
        for n, vp in sw.ports.items():
            pinfo = topo.switches.get(vp.dpid)
            pp = pinfo.ports.get(vp.port) if pinfo else None
            up = pp is not None and pp.up
            names[n] = pp.name if pp else f"vport{n}"
            if vp.dpid not in local:
                continue
            ingress = on[vp.dpid]
            if vp.kind is VPortKind.LINK:
                cands = ctx.heads.get((vdpid, n), [])
                exits = tuple((p[0].src_port, t[0]) for p, t in cands)
                vl = net.links.get(vp.link_id) if vp.link_id is not None else None
                protected = vl is not None and (
                    vl.backup_num > 0 or (vl.algorithm == "manual" and len(vl.paths) > 1)
                )
                groups = self._ff_groups(vp.dpid, ("vlink", vdpid, n), exits, ingress, protected)
                tag = exits[0][1] if exits else None
                # up while any path is: its own port failing is what backups are for
                local[vp.dpid][n] = PortMap(
                    n, vp.port, tag, True, pinfo is not None and tag is not None,
                    ctx.in_tags.get((vdpid, n)),
                    exits=exits, groups=groups,
                    lite_base=None if groups else ctx.lite_out.get((vdpid, n)),
                    lite_in=ctx.lite_in.get((vdpid, n)),
                )  # fmt: skip
                continue
            if vp.exclusive:
                self._exclusive(vdpid, sw.index, vp)
            mv = ctx.moved.get((vdpid, n))
            if mv is not None and mv.exit is not None:  # reached over the fabric
                local[vp.dpid][n] = PortMap(
                    n, vp.port, mv.exit[1], False, mv.up, exits=(mv.exit,),
                    hosts=tuple(sorted(ctx.hosts.get((vdpid, n), ()))),
                )  # fmt: skip
                continue
            if mv is not None:  # another port of the same pswitch
                there = pinfo.ports.get(mv.port) if pinfo else None
                vp = replace(vp, port=mv.port)
                up = there is not None and there.up
            tx = hp = None
            if not self._of10(vp.dpid) and pinfo is not None:
                tx = self._id(("group", vp.dpid), (net.id, "tx", vdpid, n), OFPG_MAX)
                hp = self._id(("group", vp.dpid), (net.id, "hairpin", vdpid, n), OFPG_MAX)
                st.groups[(vp.dpid, tx)] = output_group_spec(vp.dpid, tx, vp.port)
                st.groups[(vp.dpid, hp)] = output_group_spec(vp.dpid, hp, ofp.OFPP_IN_PORT)
            local[vp.dpid][n] = PortMap(
                n, vp.port, None, False, up,
                macs=tuple(sorted(ctx.macs.get((vdpid, n), ()))), tx_group=tx, hairpin_group=hp,
                hosts=tuple(sorted(ctx.hosts.get((vdpid, n), ()))), exclusive=vp.exclusive,
            )  # fmt: skip
        st.port_names[vdpid] = names
        self._big_switch_routes(vdpid, local)
        for dpid in sw.dpids:
            self._view(vdpid, dpid, local[dpid], ctx.lite, ctx.lite_size)

    def _exclusive(self, vdpid: int, index: int, vp: VPort) -> None:
        """The one table-0 rule of an exclusive vport: its physical port, by in_port alone.
        An OpenFlow 1.0 pswitch has no classification table and its one tag is the fabric's
        (the manager refuses exclusive vports there); if the pswitch turned out to speak 1.0
        after all, the vport admits nothing rather than something unsafe."""
        if self._of10(vp.dpid):
            log.warning("net=%d vswitch %016x vport %d: exclusive on OpenFlow 1.0 pswitch "
                        "%016x is not supported: it admits nothing", self.net.id, vdpid,
                        vp.number, vp.dpid)  # fmt: skip
            return
        meter = self._limit_meter(vp.dpid, "vport", (vdpid, vp.number))
        pf = infra.exclusive_flow(self.net.id, vp.dpid, vp.port, index, vp.number, meter)
        self._add(pf)
        self.st.classify[stat_key(pf)] = (vdpid, vp.number, 0)

    def _vlink_piece(self, lk: VLink, lite_size: int) -> _VlinkPiece:
        """What one vlink adds (its paths' rules, classification, tags, LITE blocks), taken
        from `cache` while nothing it depends on changed: the key names every input, and
        the ids it holds must still be its own in the allocator."""
        net = self.net
        va = net.vport(lk.src.vdpid, lk.src.vport)
        vb = net.vport(lk.dst.vdpid, lk.dst.vport)
        key = (
            net.id, self.topo.links_version, lite_size, self.limits.rate("vlink"), _vlink_key(lk),
            None if va is None else (va.dpid, va.port, va.kind, va.link_id),
            None if vb is None else (vb.dpid, vb.port, vb.kind, vb.link_id),
            None if vb is None else net.switches[lk.dst.vdpid].index,
            None if va is None else net.switches[lk.src.vdpid].index,
        )  # fmt: skip
        cached = self.cache.vlinks.get(lk.id) if self.cache is not None else None
        if cached is not None and cached.key == key and cached.holds(self.alloc):
            return cached
        piece = _VlinkPiece(key, NetworkState(net.id))
        if self._make(piece, lambda: self._vlink(lk, lite_size, piece)) and self.cache:
            self.cache.vlinks[lk.id] = piece
        elif self.cache is not None:
            self.cache.vlinks.pop(lk.id, None)
        return piece

    def _make(self, piece: _Piece, build: Callable[[], None]) -> bool:
        """`build()` the piece into its own state, its ids noted; whether it is whole."""
        outer, self.st, self._held, self._incomplete = self.st, piece.state, piece.ids, False
        try:
            build()
        finally:
            self.st, self._held = outer, None
        piece.mark = self.alloc.lost_mark
        return not self._incomplete

    def _vlink(self, lk: VLink, lite_size: int, piece: _VlinkPiece) -> None:
        net, topo, st = self.net, self.topo, self.st
        fwd = vlink_candidates(topo, net, lk)
        for d, (a, b) in enumerate(((lk.src, lk.dst), (lk.dst, lk.src))):
            va, vb = net.vport(a.vdpid, a.vport), net.vport(b.vdpid, b.vport)
            if va is None or vb is None:
                continue
            paths = fwd if d == 0 else [reverse(p) for p in fwd]
            if self._of10(va.dpid) or self._of10(vb.dpid):
                paths = paths[:1]  # no failover groups nor in_port rewrite on 1.0
            if not paths:
                log.warning("net=%d vlink %d is down: no physical path", net.id, lk.id)
            st.vlink_paths[(lk.id, d)] = list(paths)
            dst_sw = net.switches[b.vdpid]
            # what crosses this direction is limited where it arrives, whichever path it took
            meter = self._limit_meter(vb.dpid, "vlink", (lk.id, d)) if paths else None
            for path in paths:
                try:
                    tags = self._tags(("vlink", lk.id, d), path)
                except IdSpaceExhausted as exc:
                    log.error("net=%d vlink %d: %s", net.id, lk.id, exc)
                    self._incomplete = True
                    continue
                piece.add_head((a.vdpid, a.vport), path, tags)
                lp = infra.LinkPath(path, tags, dst_sw.index, b.vport, in_port=vb.port, meter=meter)
                lf = infra.link_flows(net.id, lp)
                if self._of10(vb.dpid):  # no classification table: folded into rules
                    piece.in_tags[(b.vdpid, b.vport)] = tags[-1]
                    lf = lf[:-1]
                else:
                    st.classify[stat_key(lf[-1])] = (b.vdpid, b.vport, TAG_BYTES)
                for pf in lf:
                    self._add(pf)
            protected = lk.backup_num > 0 or (lk.algorithm == "manual" and len(lk.paths) > 1)
            if lite_size and len(paths) == 1 and len(paths[0]) == 1 and not protected \
                    and not (self._of10(va.dpid) or self._of10(vb.dpid)):  # fmt: skip
                hop = paths[0][0]
                owner = (net.id, "lite", lk.id, d, paths[0])
                space = ("tag", hop.dst_dpid, hop.dst_port)
                try:
                    base = self.alloc.get_block(space, owner, lite_size)
                except IdSpaceExhausted as exc:
                    log.warning("net=%d vlink %d: no LITE tags (%s): plain tags only",
                                net.id, lk.id, exc)  # fmt: skip
                    self._incomplete = True
                    continue
                block = [(space, (*owner, k)) for k in range(lite_size)]
                self.st.owners.update(block)
                piece.ids.update((so, base + k) for k, so in enumerate(block))
                lf1 = infra.lite_classify(net.id, hop.dst_dpid, hop.dst_port, base,
                                          lite_size, dst_sw.index, b.vport, meter)  # fmt: skip
                self._add(lf1)
                st.classify[stat_key(lf1)] = (b.vdpid, b.vport, TAG_BYTES)
                piece.lite_out[(a.vdpid, a.vport)] = base
                piece.lite_in[(b.vdpid, b.vport)] = (hop.dst_port, base)

    def _moved(
        self, mac: str, where: tuple[int, int], index: int, place: tuple[int, int],
        home: tuple[int, int],
    ) -> _Moved:  # fmt: skip
        """A host that moved to physical port `where`: its vport stays where the tenant put it
        and follows it.  On the same pswitch the vport's port is simply the new one.  On
        another, a path each way joins the vport's port to the host's, as a big switch
        reaches its other pswitches: the host's packets are classified where it is and
        carried home (arriving with the vport's own port as in_port), and what the vswitch
        sends to the vport is carried to the host's port."""
        net, topo, st = self.net, self.topo, self.st
        ld, lp = where
        hd, hp = home
        vport = place[1]
        if ld == hd:
            meter = self._limit_meter(hd, "vport", place)
            hf = infra.host_flow(net.id, infra.HostBinding(hd, lp, mac, index, vport, meter))
            self._add(hf)
            st.classify[stat_key(hf)] = (*place, 0)
            return _Moved(lp, None, True)
        info = topo.switches.get(ld)
        if info is None:
            log.warning("net=%d host %s moved to %016x port %d: no such pswitch now",
                        net.id, mac, ld, lp)  # fmt: skip
            return _Moved(lp, (0, 0), False)
        # its port may be gone (a migration unplugs the VM before it is seen elsewhere): the
        # vport is down until the host is found or told of somewhere else, but its paths
        # stay (what is sent there is dropped at the port, as at a down edge port), so
        # the move that follows changes them once rather than twice
        pp = info.ports.get(lp)
        if self._of10(ld) or self._of10(hd):
            log.warning("net=%d host %s moved to %016x port %d: an OpenFlow 1.0 pswitch "
                        "cannot carry it", net.id, mac, ld, lp)  # fmt: skip
            return _Moved(lp, (0, 0), False)
        back = switch_paths(topo, ld, hd, 0)
        out = switch_paths(topo, hd, ld, 0)
        if not back or not out:
            log.warning("net=%d host %s moved to %016x port %d: no path to its vport's "
                        "pswitch %016x", net.id, mac, ld, lp, hd)  # fmt: skip
            return _Moved(lp, (0, 0), False)
        owner = ("moved", index, vport)
        try:
            tags_in = self._hop_tags((*owner, "in"), back[0])
            tags_out = self._hop_tags((*owner, "out"), out[0])
        except IdSpaceExhausted as exc:
            log.error("net=%d host %s moved to %016x port %d: %s", net.id, mac, ld, lp, exc)
            return _Moved(lp, (0, 0), False)
        first = back[0][0]
        # limited where it enters: here, before it crosses the fabric to its vport
        meter = self._limit_meter(ld, "vport", place)
        ingress = PhysFlow(
            ld, 0, infra.PRIO_CLASSIFY,
            codec.encode_match([codec.oxm_u32(oxm.IN_PORT, lp), codec.oxm_mac(oxm.ETH_SRC, mac)]),
            codec.encode_instructions(meter=meter, apply_actions=_fabric_push(tags_in[0])
                                      + codec.output(first.src_port)),
            layout.infra_cookie(net.id),
        )  # fmt: skip
        self._add(ingress)
        st.classify[stat_key(ingress)] = (*place, 0)
        for pf in infra.link_flows(net.id, infra.LinkPath(back[0], tags_in, index, vport,
                                                          in_port=hp)):  # fmt: skip
            self._add(pf)
        deliver = infra.LinkPath(out[0], tags_out, index, vport, deliver=codec.output(lp))
        for pf in infra.link_flows(net.id, deliver):
            self._add(pf)
        return _Moved(lp, (out[0][0].src_port, tags_out[0]), pp is not None and pp.up)

    def _lite_ids(self) -> tuple[dict[str, int], int]:
        """A network at `lite`: each host MAC's destination LITE (its edge vswitch, numbered
        1.. in vdpid order) and the tag block size that numbers them (a power of two above
        the count; edges beyond LITE_MAX_BLOCK - 1 get none and stay plain)."""
        net = self.net
        if net.scalability != "lite":
            return {}, 0
        edges = sorted({h.vdpid for h in net.hosts.values() if h.vdpid in net.switches})
        if not edges:
            return {}, 0
        size = min(LITE_MAX_BLOCK, max(2, 1 << len(edges).bit_length()))
        index = {v: i + 1 for i, v in enumerate(edges[: size - 1])}
        return {h.mac: index[h.vdpid] for h in net.hosts.values() if h.vdpid in index}, size

    def _big_switch_routes(self, vdpid: int, local: dict[int, dict[int, PortMap]]) -> None:
        """Each pswitch of a big switch reaches the vports on the others over internal
        routes: seen from pswitch A, vport R on B is a tagged output whose path ends at B by
        delivering to R (the tenant's rule was applied where the packet entered)."""
        sw = self.net.switches[vdpid]
        if not sw.is_big:
            return
        for a in sw.dpids:
            ingress = {p.port for p in sw.ports.values() if p.dpid == a}
            if not ingress and a != sw.dpid:
                continue  # no packet enters here (controller packets enter the first one)
            for n, vp in sorted(sw.ports.items()):
                if vp.dpid == a or vp.dpid not in local or n not in local[vp.dpid]:
                    continue
                target = local[vp.dpid][n]
                cands = []
                for path in internal_routes(self.topo, sw, a, n):
                    try:
                        tags = self._tags(("route", vdpid, a, n), path)
                    except IdSpaceExhausted as exc:
                        log.error("net=%d vswitch %016x: %s", self.net.id, vdpid, exc)
                        self._incomplete = True
                        continue
                    arrival = path[-1].dst_port
                    if target.groups and arrival in {p for p, _ in target.exits}:
                        # the link vport's failover group with IN_PORT in the bucket that
                        # leaves through the port this route arrives on
                        gid = self._ff_group(vp.dpid, ("vlink", vdpid, n), target.exits, arrival)
                        target = replace(target, groups=((arrival, gid), *target.groups))
                    deliver = deliver_actions(target, arrival)
                    lp = infra.LinkPath(path, tags, sw.index, n, deliver=deliver)
                    for pf in infra.link_flows(self.net.id, lp):
                        self._add(pf)
                    cands.append((path, tags))
                exits = tuple((p[0].src_port, t[0]) for p, t in cands)
                protected = sw.backup_num > 0 if sw.routing == "spf" else len(cands) > 1
                groups = self._ff_groups(a, ("route", vdpid, n), exits, ingress, protected)
                local[a][n] = PortMap(
                    n, exits[0][0] if exits else 0, exits[0][1] if exits else None, True,
                    target.up and bool(exits), exits=exits, groups=groups, remote=True,
                )  # fmt: skip

    def _view(
        self, vdpid: int, dpid: int, ports: dict[int, PortMap], lite: dict[str, int],
        lite_size: int,
    ) -> None:  # fmt: skip
        net, sw, st = self.net, self.net.switches[vdpid], self.st
        if self._of10(dpid):
            markers: dict[int, tuple[int, int]] = {}
            for n in [0, *sorted(ports)]:
                got = []
                for reason in (ofp.OFPR_ACTION, ofp.OFPR_NO_MATCH):
                    mark = self._id(("marker", dpid), (net.id, vdpid, n, reason))
                    st.markers[(dpid, mark)] = (sw.index, n, reason)
                    got.append(mark)
                markers[n] = (got[0], got[1])
            view = VSwitchView(net.id, sw.index, vdpid, dpid, 1, ports, True, markers)
        else:
            view = VSwitchView(net.id, sw.index, vdpid, dpid, self.n_tables, ports,
                               lite=lite, lite_size=lite_size)  # fmt: skip
            buckets = flood_buckets(view)
            if buckets is not None:
                gid = self._id(("group", dpid), (net.id, "flood", vdpid), OFPG_MAX)
                st.groups[(dpid, gid)] = GroupSpec(dpid, gid, ofp.OFPGT_ALL, buckets)
                view = replace(view, flood_group=gid)
        st.views[(vdpid, dpid)] = view


def compile_network(
    net: VirtualNetwork, topo: PhysicalTopology, alloc: IdAllocator, n_tables: int,
    cache: CompileCache | None = None, defaults: Limits = NO_LIMITS,
) -> NetworkState:  # fmt: skip
    """The desired physical state of a started network (see the module docstring).  The
    caller releases the allocations of `net` that are not in the result's `owners`.
    `cache` (kept by the caller per network, across compiles) saves recomputing what did
    not change; the result is the same without it, provided whoever changes the network
    other than a host's location bumps its `shape` (NetworkManager does, on every change
    it makes; store and cluster code hand over new objects).  `defaults`: the admin's data-plane
    limits, which the network's own `limits` override kind by kind."""
    if cache is not None:
        for gone in set(cache.vlinks) - set(net.links):
            del cache.vlinks[gone]
        for gone in set(cache.vswitches) - set(net.switches):
            del cache.vswitches[gone]
    limits = net.limits.over(defaults)
    return _Compiler(net, topo, alloc, n_tables, cache, limits).run()


def release_unused(alloc: IdAllocator, net_id: int, keep: set[tuple[object, object]]) -> None:
    """Give back the ids a network held and no longer uses."""

    def stale(space: object, owner: object) -> bool:
        return (
            isinstance(owner, tuple)
            and bool(owner)
            and owner[0] == net_id
            and (space, owner) not in keep
        )

    alloc.release_where(stale)
