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

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm
from tenantvisor.reduce import levels
from tenantvisor.reduce.headerspace import (
    DEFAULT_BUDGET,
    Cube,
    Space,
    TooComplex,
    intersect,
    overlaps,
    project,
    subset,
    winner_fate_uniform,
)
from tenantvisor.translate.flow import lite_destination
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
    # arrivals inside the reduced match that meet no rule here (a miss: dropped), as the
    # check that decided said them (for information: the drops installed are the Reducer's
    # `exceptions()`, kept per check, not per tenant rule)
    exceptions: tuple[tuple[Cube, int | None], ...] = field(default=(), compare=False)
    check: Any = field(default=None, compare=False)  # the key of the check that decided
    dst: int = 0  # `lite`: the destination LITE whose tag the physical rule matches


MAX_EXCEPTIONS = 4  # more arrivals disagreeing with a reduced rule: a finer level instead


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
        self._vacuous_of: dict[int, set[int]] = {}
        self._known: set[int] = set()

    def index(self) -> VSwitchPlan:
        """Build the per-rule lookups (after the plan was filled in whole)."""
        self._by_serial = {}
        self._vacuous_of = {}
        for (serial, vport), red in sorted(self.reduced.items(), key=lambda kv: kv[0]):
            self._by_serial.setdefault(serial, []).append((vport, red))
        for serial, vport in self.vacuous:
            self._vacuous_of.setdefault(serial, set()).add(vport)
        self._known = self.exact | {s for s, _ in self.reduced} | {s for s, _ in self.vacuous}
        return self

    def set_rule(
        self, serial: int, exact: bool, reduced: Mapping[int, Reduced], vacuous: set[int]
    ) -> None:
        """One rule's realisation, replacing what the plan said of it (cost: that rule's)."""
        self.drop_rule(serial)
        self._known.add(serial)
        if exact:
            self.exact.add(serial)
        if reduced:
            self._by_serial[serial] = sorted(reduced.items(), key=lambda kv: kv[0])
            for vp, red in reduced.items():
                self.reduced[(serial, vp)] = red
        if vacuous:
            self._vacuous_of[serial] = set(vacuous)
            self.vacuous |= {(serial, vp) for vp in vacuous}

    def drop_rule(self, serial: int) -> None:
        self._known.discard(serial)
        self.exact.discard(serial)
        for vp, _ in self._by_serial.pop(serial, []):
            self.reduced.pop((serial, vp), None)
        for vp in self._vacuous_of.pop(serial, ()):
            self.vacuous.discard((serial, vp))

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

    def part(self, serial: int) -> tuple[bool, tuple[tuple[int, Reduced], ...]]:
        """What the plan says of one rule: whether it keeps its exact rule (a rule newer than
        the plan does), and its reduced ones."""
        return serial in self.exact or not self.knows(serial), tuple(self.reduced_of(serial))

    def physical_count(self) -> int:
        """Physical rules this plan costs on the vswitch's pswitch (reduced ones shared; the
        exception drops are the Reducer's, not counted here)."""
        shared = {(vp, r.kept, r.fate, r.dst) for (_, vp), r in self.reduced.items()}
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
    apply, write = ins.apply_actions or [], ins.write_actions or []

    def hits(a: codec.Action) -> bool:
        port = codec.u32(a.raw, 4)
        hit = port == vport or port in (ofp.OFPP_FLOOD, ofp.OFPP_ALL)
        return hit or (port == ofp.OFPP_IN_PORT and pinned in (None, vport))

    result: Cube | None = None
    rewritten = False
    for a in apply:  # in order: a rewrite counts for the outputs after it
        if a.type in _REWRITES:
            rewritten = True
        elif a.type == ofp.OFPAT_GROUP:
            return EVERYTHING  # buckets may rewrite and output anywhere
        elif a.type == ofp.OFPAT_OUTPUT and hits(a):
            if rewritten:
                return EVERYTHING
            result = base
    # the action set runs last, its set-fields before its output whatever their order, after
    # this rule's apply-actions and whatever later tables (goto) do to the packet
    if any(a.type == ofp.OFPAT_GROUP for a in write):
        return EVERYTHING
    if any(a.type == ofp.OFPAT_OUTPUT and hits(a) for a in write):
        later = rewritten or ins.goto_table is not None or any(a.type in _REWRITES for a in write)
        if later:
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


def table_of(rules: Iterable[VFlow]) -> list[tuple[int, Cube, Hashable]]:
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
    """Every rule of one vswitch at once: `vports` maps each vport to its vlink peer (None:
    an edge vport, hosts); `peer_rules` the rules of each peer vswitch by vdpid."""
    arriving = {
        vp: list(arrivals(peer_rules.get(peer[0], ()), peer[1], vp))
        for vp, peer in vports.items()
        if peer is not None
    }
    r = Reducer(level, budget)
    r.rebuild(rules, vports, arriving)
    return r.plan


# --- incremental: one vswitch's reduction kept up to date rule by rule -----------------------
_MIXED = ("mixed",)  # an arrival cube whose packets meet rules of different fates


class Reducer:
    """One vswitch's plan, changed by what changes it: a rule of its own added, modified or
    removed (`rule_changed`), or packets newly able to arrive on a vlink because a rule at
    its other end (`arrivals_grew`).  Only the proofs those can affect are redone, which is
    what keeps a tenant's FLOW_MOD cheap (a full `rebuild` redoes every proof):

    * a rule's own change affects the (rule, vport) outcomes whose region (the projection
      the outcome was decided on) meets the rule's match, old or new: the winner of those
      packets may have changed;
    * new arrivals affect the outcomes at that vport whose region meets them, reduced or
      vacuous (a vacuous rule has no physical rule there: new packets could need it).

    Removals never make an outcome wrong (fewer arrivals, or a rule gone whose packets the
    proofs counted): arrivals are not shrunk (an over-approximation stays sound) and the
    outcomes they block are revisited by the next `rebuild`.

    Each arrival cube's fate in the table is cached and dropped only when a rule meeting it
    changes; proofs of one region and fate are shared by every rule projecting onto it (at
    `hop` every rule from one vport onto the same outputs: one check)."""

    def __init__(self, level: str, budget: int | None = DEFAULT_BUDGET) -> None:
        self.level = level
        self.budget = budget
        self.rules: dict[int, VFlow] = {}
        self.cubes: dict[int, Cube] = {}
        self.vports: dict[int, Peer | None] = {}
        self.arriving: dict[int, list[Cube]] = {}
        # per rule: per ingress link vport, the outcome and the region it rests on
        self.outcomes: dict[int, dict[int, tuple[Outcome, Cube | None]]] = {}
        self.fates: dict[int, Hashable] = {}
        self.plan = VSwitchPlan().index()
        self._table: list[tuple[int, Cube, Hashable]] | None = None
        self._serials: list[int] = []  # of the table's rows, in its order
        self._afate: dict[Cube, tuple[Hashable, int | None]] = {}  # fate, winner serial
        self._memo: dict[tuple[int, Cube, Hashable], tuple[bool | None, tuple[Any, ...]]] = {}
        # the region checks each (rule, vport) outcome consulted, and rules to redo whatever
        # their checks say (the rule itself changed)
        self._consulted: dict[tuple[int, int], list[tuple[Any, Any]]] = {}
        self._exc: dict[Any, tuple[tuple[Cube, int | None], ...]] = {}  # per check, latest
        self._dirty: set[int] = set()
        # `lite` (set_lite): MAC -> destination LITE, each destination's eth_dst cubes and
        # one cube covering them all (what a change must meet to matter), the link vports
        # LITE tags arrive on, and what arrives on each link without a tag
        self.lite: dict[str, int] = {}
        self.lite_regions: dict[int, list[Cube]] = {}
        self.lite_watch: dict[int, Cube] = {}
        self.lite_in: set[int] = set()
        self.plain: dict[int, list[Cube]] = {}

    def set_lite(self, lite: Mapping[str, int], receiving: Iterable[int]) -> None:
        """The network's LITE numbering and the link vports whose packets may carry a LITE
        tag (before `rebuild`)."""
        self.lite = dict(lite)
        self.lite_in = set(receiving)
        macs: dict[int, list[int]] = {}
        for mac, d in self.lite.items():
            macs.setdefault(d, []).append(int(mac.replace(":", ""), 16))
        self.lite_regions = {
            d: [Cube.from_fields({oxm.ETH_DST: m}) for m in sorted(ms)] for d, ms in macs.items()
        }
        self.lite_watch = {}
        for d, ms in macs.items():
            differ = 0
            for m in ms:
                differ |= m ^ ms[0]
            mask = ~differ & 0xFFFFFFFFFFFF
            self.lite_watch[d] = Cube.from_fields({oxm.ETH_DST: (ms[0] & mask, mask)})

    def _lite_dst(self, vf: VFlow) -> int:
        """The destination LITE `vf`'s packets carry (0: it is not realised by tags)."""
        if self.level != "lite" or vf.table != 0:
            return 0
        return lite_destination(self.lite, vf.match, vf.instructions)

    @property
    def active(self) -> bool:
        return self.level in levels.KEPT and self.level != "exact"

    # --- the table and what arrives ---------------------------------------------------------
    def table(self) -> list[tuple[int, Cube, Hashable]]:
        if self._table is None:
            rows = sorted(((vf.priority, self.cubes.get(s, EVERYTHING), self._fate(vf), s)
                           for s, vf in self.rules.items() if vf.table == 0),
                          key=lambda r: -r[0])  # fmt: skip
            self._table = [(p, c, f) for p, c, f, _ in rows]
            self._serials = [s for _, _, _, s in rows]
        return self._table

    def _fate(self, vf: VFlow) -> Hashable:
        got = self.fates.get(vf.serial)
        if got is None:
            got = self.fates[vf.serial] = levels.fate(vf)
        return got

    def _arrival_fate(self, a: Cube) -> tuple[Hashable, int | None]:
        """The fate every packet of arrival cube `a` gets (or _MIXED), and the one rule that
        decides it (None: a table miss, or several rules)."""
        got = self._afate.get(a)
        if got is None:
            got = (_MIXED, None)
            table = self.table()
            for i, (prio, c, fate) in enumerate(table):
                if intersect(a, c) is None:
                    continue
                if not subset(a, c):
                    break  # split between this rule and what lies below: mixed
                tied = [f for p, c2, f in table if p == prio and f != fate
                        and intersect(a, c2) is not None]  # fmt: skip
                got = (_MIXED, None) if tied else (fate, self._serials[i])
                break
            else:
                got = (levels.DROP, None)
            self._afate[a] = got
        return got

    def _check(
        self, vport: int, region: Cube, expected: Hashable
    ) -> tuple[bool | None, tuple[tuple[Cube, int | None], ...]]:
        """Whether every packet that can arrive on `vport` inside `region` gets `expected`,
        but for the exceptions returned (whole arrival cubes with a single other winner);
        None when none can arrive (vacuous)."""
        key = (vport, region, expected)
        if key in self._memo:
            return self._memo[key]
        result: bool | None = None
        exceptions: list[tuple[Cube, int | None]] = []
        agreeing = 0
        table = self.table()
        for a in self.arriving.get(vport, ()):
            piece = intersect(a, region)
            if piece is None:
                continue
            result = True
            if piece == a:
                fate, winner = self._arrival_fate(a)
                if fate == expected:
                    agreeing += 1
                    continue
                if fate == levels.DROP and winner is None:
                    # a miss: typically a flow whose rule here is not installed yet (its
                    # path installed from the source end); an exact drop above the reduced
                    # rule, gone once the rule comes, instead of refining every rule here
                    exceptions.append((a, winner))
                    if len(exceptions) > MAX_EXCEPTIONS:
                        result = False
                        break
                    continue
                if fate != _MIXED:
                    result = False
                    break
            agreeing += 1  # a piece proven below: it agrees, or the check fails
            try:
                if not winner_fate_uniform(piece, table, expected, levels.DROP, self.budget):
                    result = False
                    break
            except TooComplex:
                result = False
                break
        if result and not agreeing:
            result = None  # every packet that arrives here is another rule's: none needed
        got = (result, tuple(exceptions) if result else ())
        self._memo[key] = got
        self._exc[key] = got[1]
        return got

    def exceptions(self) -> dict[int, set[tuple[Cube, int | None]]]:
        """The exception drops the plan needs now, by vport: those of every check that
        decided a reduced rule the plan installs (shared by all the rules it decided).  A
        rule that keeps its exact rule (an edge ingress, or exact elsewhere) installs none
        of its reduced outcomes, and their misses are already the exact table's."""
        out: dict[int, set[tuple[Cube, int | None]]] = {}
        if not self.active:
            return out
        seen = set()
        for red in self.plan.reduced.values():
            if red.level != "lite" and red.check not in seen:
                seen.add(red.check)
                got = self._exc.get(red.check, ())
                if got:
                    out.setdefault(red.check[0], set()).update(got)
        return out

    # --- one outcome ---------------------------------------------------------------------
    def _prove(self, vf: VFlow, vport: int) -> tuple[Outcome, Cube | None]:
        cube = self.cubes.get(vf.serial)
        expected = self._fate(vf)
        if cube is None or expected[0] != "out":  # type: ignore[index]
            return EXACT, None
        pinned = _in_port(vf)
        if pinned is not None and pinned != vport:
            return VACUOUS, None
        here = Cube.from_fields({oxm.IN_PORT: vport})
        # what a later change must meet to matter: the coarsest region tried (it holds the
        # finer ones), so a change there can make the outcome coarser as well as finer
        watch: Cube | None = None
        for lv in levels.finer(self.level):
            kept_fields = levels.KEPT[lv] or frozenset()
            region = intersect(project(cube, tuple(kept_fields)), here)
            if region is None:
                return VACUOUS, watch
            watch = watch or region
            ok, exceptions = self._check(vport, region, expected)
            self._consulted.setdefault((vf.serial, vport), []).append(
                ((vport, region, expected), (ok, exceptions))
            )
            if ok is None:
                return VACUOUS, watch
            if ok:
                kept = tuple(sorted((o for o in vf.match if o.field in kept_fields),
                                    key=lambda o: o.field))  # fmt: skip
                return Reduced(lv, kept, expected, exceptions, (vport, region, expected)), watch
        return EXACT, watch

    def _prove_lite(self, vf: VFlow, vport: int, dst: int) -> tuple[Outcome, Cube | None]:
        """`lite`: one physical rule per (vport, destination LITE, fate) matching only the
        tag, when every packet that can arrive on `vport` for a host of that destination
        gets `vf`'s fate (what carries the tag is among those: tags are pushed only by rules
        pinning eth_dst to such a host and that only forward), and no untagged packet of
        `vf`'s match can arrive here (those meet the tenant tables, where `vf` then needs
        its exact rule).  Otherwise exact: a shared finer rule could not carry the tag on."""
        cube = self.cubes.get(vf.serial)
        expected = self._fate(vf)
        if cube is None or expected[0] != "out":  # type: ignore[index]
            return EXACT, None
        pinned = _in_port(vf)
        if pinned is not None and pinned != vport:
            return VACUOUS, None
        here = Cube.from_fields({oxm.IN_PORT: vport})
        watch = intersect(here, self.lite_watch[dst])
        consulted = self._consulted.setdefault((vf.serial, vport), [])
        plain_key = ("plain", vport, cube)
        if vport not in self.lite_in:  # no tags arrive here: the rule's packets need it
            hit = self._answer(plain_key)
            consulted.append((plain_key, (hit, ())))
            return (EXACT if hit else VACUOUS), watch
        keys = []
        exceptions: list[tuple[Cube, int | None]] = []
        agreed = False
        for eth in self.lite_regions.get(dst, ()):
            region = intersect(here, eth)
            if region is None:
                continue
            key = (vport, region, expected)
            ok, exc = self._check(*key)
            consulted.append((key, (ok, exc)))
            if ok is False:
                return EXACT, watch
            if ok:
                agreed = True
                keys.append(key)
                exceptions.extend(exc)
        hit = self._answer(plain_key)
        consulted.append((plain_key, (hit, ())))
        if hit:
            return EXACT, watch
        if not agreed:
            return VACUOUS, watch
        if any(a.get(oxm.VLAN_VID)[1] or a.get(oxm.VLAN_PCP)[1] for a, _ in exceptions):
            return EXACT, watch  # the tag is the outer VLAN there: a drop could not say these
        check = ("lite", vport, dst, tuple(keys))
        return Reduced("lite", (), expected, tuple(exceptions), check, dst), watch

    def _answer(self, key: Any) -> Any:
        """What one consulted check says now: a region check's verdict, or (`plain`) whether
        an untagged arrival meets a rule's match."""
        if key[0] == "plain":
            _, vport, cube = key
            return any(overlaps(p, cube) for p in self.plain.get(vport, ()))
        return self._check(*key)[0]

    def lite_exceptions(self) -> dict[tuple[int, int], set[tuple[Cube, int | None]]]:
        """The exception drops of the LITE rules now, by (vport, destination LITE)."""
        out: dict[tuple[int, int], set[tuple[Cube, int | None]]] = {}
        if not self.active:
            return out
        seen = set()
        for red in self.plan.reduced.values():  # those the plan installs
            if red.level == "lite" and red.check not in seen:
                seen.add(red.check)
                _, vport, dst, keys = red.check
                for k in keys:
                    got = self._exc.get(k, ())
                    if got:
                        out.setdefault((vport, dst), set()).update(got)
        return out

    def _place(self, vf: VFlow) -> None:
        """Decide every ingress of one rule and put the result into the plan."""
        serial = vf.serial
        for key in [k for k in self._consulted_of(serial)]:
            self._consulted.pop(key, None)
        forwarding = vf.table == 0 and self._fate(vf)[0] == "out"  # type: ignore[index]
        mine: dict[int, tuple[Outcome, Cube | None]] = {}
        keep_exact = not forwarding
        if forwarding:
            pinned = _in_port(vf)
            dst = self._lite_dst(vf)
            for vp in [pinned] if pinned is not None else list(self.vports):
                if self.vports.get(vp) is None:
                    keep_exact = True  # an edge vport (or the controller's): the full match
                    continue
                got = mine[vp] = self._prove_lite(vf, vp, dst) if dst else self._prove(vf, vp)
                if got[0] == EXACT:
                    keep_exact = True
        self.outcomes[serial] = mine
        reduced = {} if keep_exact else {
            vp: o for vp, (o, _) in mine.items() if isinstance(o, Reduced)
        }  # fmt: skip
        vacuous = {vp for vp, (o, _) in mine.items() if o == VACUOUS}
        self.plan.set_rule(serial, keep_exact, reduced, vacuous)

    def _consulted_of(self, serial: int) -> list[tuple[int, int]]:
        return [(serial, vp) for vp in self.outcomes.get(serial, {})]

    def _unchanged(self, serial: int) -> bool:
        """Whether every region check this rule's outcomes rested on answers as it did: its
        outcomes are then the same, no need to redo them (at `hop` every rule of a vport
        rests on one shared check, so a change costs one check, not one per rule)."""
        mine = self.outcomes.get(serial)
        if mine is None or serial in self._dirty:
            return False
        for vp, (_, region) in mine.items():
            seen = self._consulted.get((serial, vp))
            if seen is None:
                if region is not None:
                    return False
                continue
            for key, answer in seen:
                if self._answer(key) != answer[0]:  # exceptions aside: kept per check
                    return False
        return True

    def _redo(self, serials: set[int]) -> set[int]:
        """Place again those of these rules whose checks no longer answer as they did; the
        serials whose realisation changed."""
        changed = set()
        for serial in serials:
            if self._unchanged(serial):
                continue
            was = self.plan.part(serial)
            vf = self.rules.get(serial)
            if vf is None:
                for key in self._consulted_of(serial):
                    self._consulted.pop(key, None)
                self.outcomes.pop(serial, None)
                self.plan.drop_rule(serial)
            else:
                self._place(vf)
            if self.plan.part(serial) != was:
                changed.add(serial)
        self._dirty.clear()
        return changed

    # --- what changes it -------------------------------------------------------------------
    def rebuild(
        self, rules: Sequence[VFlow], vports: Mapping[int, Peer | None],
        arriving: Mapping[int, Space | Sequence[Cube]],
        plain: Mapping[int, Space | Sequence[Cube]] | None = None,
    ) -> set[int]:  # fmt: skip
        """Every proof again (a new level, new vports, or to take removals into account);
        the serials whose realisation changed.  `plain`: what of `arriving` comes without a
        LITE tag (default: all of it)."""
        before = {vf.serial: self.plan.part(vf.serial) for vf in rules}
        before.update({s: self.plan.part(s) for s in self.rules})
        self.rules = {vf.serial: vf for vf in rules}
        self.fates = {}
        self.cubes = {s: c for s, vf in self.rules.items() if (c := rule_cube(vf)) is not None}
        self.vports = dict(vports)
        self.arriving = {vp: list(cubes) for vp, cubes in arriving.items()}
        self.plain = {vp: list(cubes) for vp, cubes in (arriving if plain is None
                                                        else plain).items()}  # fmt: skip
        self._table, self._afate, self._memo = None, {}, {}
        self._consulted, self._dirty, self._exc = {}, set(), {}
        self.outcomes.clear()
        self.plan = VSwitchPlan().index()
        for vf in self.rules.values():
            if self.active:
                self._place(vf)
            else:
                self.plan.set_rule(vf.serial, True, {}, set())
        return {s for s, part in before.items() if self.plan.part(s) != part}

    def rule_changed(self, old: VFlow | None, new: VFlow | None) -> set[int]:
        """A rule of this vswitch was added (old None), modified or removed (new None)."""
        touched: list[Cube] = []
        for vf in (old, new):
            if vf is not None and (c := rule_cube(vf)) is not None:
                touched.append(c)
            elif vf is not None:
                touched.append(EVERYTHING)
        serial = (new or old).serial  # type: ignore[union-attr]
        self.fates.pop(serial, None)
        if new is None:
            self.rules.pop(serial, None)
            self.cubes.pop(serial, None)
        else:
            self.rules[serial] = new
            c = rule_cube(new)
            if c is None:
                self.cubes.pop(serial, None)
            else:
                self.cubes[serial] = c
        self._table = None
        self._memo = {}
        self._afate = {a: f for a, f in self._afate.items()
                       if not any(intersect(a, t) is not None for t in touched)}  # fmt: skip
        if not self.active:
            if new is None:
                self.plan.drop_rule(serial)
            else:
                self.plan.set_rule(serial, True, {}, set())
            return set()
        affected = {serial}
        self._dirty.add(serial)
        for s, mine in self.outcomes.items():
            for _, region in mine.values():
                if region is not None and any(intersect(region, t) is not None for t in touched):
                    affected.add(s)
                    break
        return self._redo(affected)

    def arrivals_grew(self, vport: int, cubes: Sequence[Cube], plain: bool = True) -> set[int]:
        """Packets in `cubes` can now arrive on link `vport` (`plain`: without a LITE tag)."""
        if vport not in self.arriving:
            return set()
        have = set(self.arriving[vport])
        new = [c for c in cubes if c not in have]
        if plain:
            had = set(self.plain.setdefault(vport, []))
            fresh = [c for c in cubes if c not in had]
            self.plain[vport].extend(fresh)
            new += [c for c in fresh if c not in new]
        if not new:
            return set()
        self.arriving[vport].extend(c for c in new if c not in have)
        self._memo = {}
        if not self.active:
            return set()
        affected = set()
        for s, mine in self.outcomes.items():
            got = mine.get(vport)
            if (
                got is not None
                and got[1] is not None
                and any(intersect(got[1], c) is not None for c in new)
            ):
                affected.add(s)
        return self._redo(affected)
