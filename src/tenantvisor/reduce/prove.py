"""Which tenant rules may be installed reduced, and where: the proof obligation of issue 9.

A vswitch's rule R is realised per ingress vport.  On a *link* vport a (packets that come over
a vlink from the vswitch at its other end: "core" in Libera's sense) it may be installed with
a coarser match R' = project(R, level) pinned to a, when that is equivalent: every packet that
can arrive on a and falls in R' gets R's fate from the tenant's exact table (`prove`).  The
packets that can arrive on a (`arrivals`) are over-approximated from the rules of the vswitch
at the other end that can send packets out of the vlink's vport (their matches, or everything
when they rewrite headers, use groups or reach the vport through FLOOD/ALL after a rewrite).
Packets a controller injects are not among them: the endpoint carries those itself
(PACKET_OUT through a reduced vswitch is resolved against the exact table).

Outcomes per (rule, link vport): REDUCED at a level (the coarsest that proves, trying finer
ones in turn), VACUOUS (no packet that can arrive there falls in R' at all: R needs no rule for
that ingress), or EXACT.  R keeps its exact physical rule when some ingress it applies to is an
edge vport (hosts: the ingress edge always keeps the tenant's full match) or ended EXACT.

Why one high priority for every reduced rule is right (docs/design.md): for a packet p that
can arrive on a, any reduced rule containing p has p's exact fate (that is what was proven);
a p in no reduced rule is decided by the exact rules, among which its exact winner is present
(had it been reduced, its reduced rule would contain p).  So reduced rules from many tenant
rules that project to the same match are one physical rule.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm
from tenantvisor.reduce import levels
from tenantvisor.reduce.headerspace import (
    DEFAULT_BUDGET,
    Cube,
    Space,
    TooComplex,
    intersect,
    project,
    winner_fate_uniform,
)
from tenantvisor.virtual.flowtable import VFlow

# every field but those that do not survive a hop (in_port, metadata)
_TRAVEL = tuple(
    f for f in range(oxm.IN_PORT, oxm.IPV6_EXTHDR + 1) if f not in (oxm.IN_PORT, oxm.METADATA,
                                                                   oxm.IN_PHY_PORT)
)  # fmt: skip
_REWRITES = frozenset({
    ofp.OFPAT_SET_FIELD, ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_POP_VLAN, ofp.OFPAT_PUSH_MPLS,
    ofp.OFPAT_POP_MPLS, ofp.OFPAT_PUSH_PBB, ofp.OFPAT_POP_PBB, ofp.OFPAT_SET_MPLS_TTL,
    ofp.OFPAT_DEC_MPLS_TTL, ofp.OFPAT_SET_NW_TTL, ofp.OFPAT_DEC_NW_TTL, ofp.OFPAT_COPY_TTL_OUT,
    ofp.OFPAT_COPY_TTL_IN, ofp.OFPAT_EXPERIMENTER,
})  # fmt: skip
EVERYTHING = Cube.all()

Peer = tuple[int, int]  # (vdpid, vport) at the other end of a vlink


@dataclass(frozen=True)
class Reduced:
    level: str
    kept: tuple[codec.Oxm, ...]  # the tenant's match fields the reduced rule keeps, sorted
    fate: Hashable  # what it does (its outputs): rules with equal (vport, kept, fate) share


VACUOUS = "vacuous"
EXACT = "exact"
Outcome = Reduced | str


@dataclass
class VSwitchPlan:
    """How one vswitch's rules are realised: serials that keep their exact rule, and the
    reduced rule of (serial, link vport) pairs."""

    exact: set[int] = field(default_factory=set)
    reduced: dict[tuple[int, int], Reduced] = field(default_factory=dict)
    vacuous: set[tuple[int, int]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._by_serial: dict[int, list[tuple[int, Reduced]]] = {}
        self._known: set[int] = set()

    def index(self) -> VSwitchPlan:
        """Build the per-rule lookups (after the plan is complete)."""
        self._by_serial = {}
        for (serial, vport), red in sorted(self.reduced.items(), key=lambda kv: kv[0]):
            self._by_serial.setdefault(serial, []).append((vport, red))
        self._known = self.exact | {s for s, _ in self.reduced} | {s for s, _ in self.vacuous}
        return self

    def knows(self, serial: int) -> bool:
        """Whether the rule was there when the plan was made (a newer one is exact)."""
        return serial in self._known

    def reduced_of(self, serial: int) -> list[tuple[int, Reduced]]:
        return self._by_serial.get(serial, [])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VSwitchPlan):
            return NotImplemented
        return (self.exact, self.reduced, self.vacuous) == (other.exact, other.reduced,
                                                            other.vacuous)  # fmt: skip

    __hash__ = None  # type: ignore[assignment]

    def physical_count(self) -> int:
        """Physical rules this plan costs on the vswitch's pswitch (reduced ones shared)."""
        shared = {(vp, r.kept, r.fate) for (_, vp), r in self.reduced.items()}
        return len(self.exact) + len(shared)


def rule_cube(vf: VFlow) -> Cube | None:
    try:
        return Cube.from_match(vf.norm)
    except ValueError:
        return None


def image_toward(vf: VFlow, vport: int) -> Cube | None:
    """The packets rule `vf` can send out of `vport`, as they leave (an over-approximation;
    None: it sends nothing there)."""
    try:
        ins = codec.parse_instructions(vf.instructions)
    except (codec.OFError, codec.MalformedMessage):
        return EVERYTHING
    cube = rule_cube(vf)
    base = EVERYTHING if cube is None else project(cube, _TRAVEL)
    pinned = _in_port(vf)
    result: Cube | None = None
    for actions in (ins.apply_actions or [], ins.write_actions or []):
        rewritten = False
        for a in actions:
            if a.type in _REWRITES:
                rewritten = True
            elif a.type == ofp.OFPAT_GROUP:
                return EVERYTHING  # buckets may rewrite and output anywhere
            elif a.type == ofp.OFPAT_OUTPUT:
                port = codec.u32(a.raw, 4)
                hit = port == vport or port in (ofp.OFPP_FLOOD, ofp.OFPP_ALL)
                hit |= port == ofp.OFPP_IN_PORT and pinned in (None, vport)
                if hit:
                    if rewritten:
                        return EVERYTHING
                    result = base
    return result


def _in_port(vf: VFlow) -> int | None:
    for (_, f), v, _, _ in vf.norm:
        if f == oxm.IN_PORT:
            return v
    return None


def arrivals(peer_rules: Sequence[VFlow], peer_vport: int, vport: int) -> Space:
    """Packets that can arrive on `vport` over a vlink whose other end is `peer_vport` of a
    vswitch holding `peer_rules`: what those rules send there, seen with in_port = vport."""
    here = Cube.from_fields({oxm.IN_PORT: vport})
    cubes = []
    for vf in peer_rules:
        img = image_toward(vf, peer_vport)
        if img is not None:
            got = intersect(img, here)
            if got is not None:
                cubes.append(got)
    return Space(cubes)


def prove(
    vf: VFlow,
    vport: int,
    arriving: Space,
    table: Sequence[tuple[int, Cube, Hashable]],
    level: str,
    budget: int | None = DEFAULT_BUDGET,
) -> Outcome:
    """The outcome for rule `vf` on link `vport` of its vswitch, whose table 0 is `table`
    ((priority, cube, fate) of every rule there) and on which `arriving` can arrive."""
    if levels.outputs(vf) is None:
        return EXACT
    cube = rule_cube(vf)
    if cube is None:
        return EXACT
    pinned = _in_port(vf)
    if pinned is not None and pinned != vport:
        return VACUOUS  # not a rule of this ingress at all
    expected = levels.fate(vf)
    here = Cube.from_fields({oxm.IN_PORT: vport})
    for lv in levels.finer(level):
        kept_fields = levels.KEPT[lv] or frozenset()
        reduced = intersect(project(cube, tuple(kept_fields)), here)
        if reduced is None:
            return VACUOUS
        try:
            region = arriving.intersect(reduced, budget)
            if region.is_empty():
                return VACUOUS
            if winner_fate_uniform(region, table, expected, levels.DROP, budget):
                kept = tuple(sorted((o for o in vf.match if o.field in kept_fields),
                                    key=lambda o: o.field))  # fmt: skip
                return Reduced(lv, kept, expected)
        except TooComplex:
            continue  # too many pieces to tell at this level: a finer one has fewer
    return EXACT


def table_of(rules: Sequence[VFlow]) -> list[tuple[int, Cube, Hashable]]:
    """Table 0 as proofs read it; a rule whose match cannot be read covers everything with
    a fate of its own (so nothing near it is ever proven)."""
    out = []
    for vf in rules:
        if vf.table != 0:
            continue
        cube = rule_cube(vf)
        out.append((vf.priority, EVERYTHING if cube is None else cube, levels.fate(vf)))
    return out


def plan_vswitch(
    rules: Sequence[VFlow],
    vports: Mapping[int, Peer | None],
    peer_rules: Mapping[int, Sequence[VFlow]],
    level: str,
    budget: int | None = DEFAULT_BUDGET,
) -> VSwitchPlan:
    """Every rule of one vswitch: `vports` maps each vport to its vlink peer (None: an edge
    vport, hosts); `peer_rules` the rules of each peer vswitch by vdpid."""
    plan = VSwitchPlan()
    if level not in levels.KEPT or level == "exact":
        plan.exact = {vf.serial for vf in rules}
        return plan.index()
    table = table_of(rules)
    arriving: dict[int, Space] = {}
    for vp, peer in vports.items():
        if peer is not None:
            arriving[vp] = arrivals(peer_rules.get(peer[0], ()), peer[1], vp)
    for vf in rules:
        if vf.table != 0 or levels.outputs(vf) is None:
            plan.exact.add(vf.serial)
            continue
        pinned = _in_port(vf)
        ingress = [pinned] if pinned is not None else list(vports)
        keep_exact = False
        got_here: dict[int, Reduced] = {}
        for vp in ingress:
            if vp not in vports or vports[vp] is None:
                keep_exact = True  # an edge vport (or the controller's): the full match
                continue
            got = prove(vf, vp, arriving[vp], table, level, budget)
            if isinstance(got, Reduced):
                got_here[vp] = got
            elif got == VACUOUS:
                plan.vacuous.add((vf.serial, vp))
            else:
                keep_exact = True
        if keep_exact:
            # its exact rule serves every ingress it applies to: reduced copies would only
            # add rules (sound either way: the exact rule is present at its priority)
            plan.exact.add(vf.serial)
        else:
            for vp, red in got_here.items():
                plan.reduced[(vf.serial, vp)] = red
    return plan.index()
