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
edge vport whose hosts' packets can meet it (table 0 admits only their source MACs there: the
ingress edge always keeps the tenant's full match) or ended EXACT.  At `lite` a rule pinning
eth_dst to a host is realised on a link vport by a rule matching the destination's tag
instead (`_prove_lite`).

Why one high priority for every reduced rule is right (docs/design.md): for a packet p that
can arrive on a, any reduced rule containing p has p's exact fate (that is what was proven);
a p in no reduced rule is decided by the exact rules, among which its exact winner is present
(had it been reduced, its reduced rule would contain p).  So reduced rules from many tenant
rules that project to the same match are one physical rule.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm
from tenantvisor.reduce import levels
from tenantvisor.reduce.headerspace import (
    DEFAULT_BUDGET,
    Cube,
    CubeIndex,
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
AGREE, MISS, FAIL = 0, 1, 2  # what one arrival says of a region check

CheckKey = tuple[int, Cube, Hashable]  # (vport, region, expected fate)
Answer = tuple[bool | None, tuple[tuple[Cube, int | None], ...]]


@lru_cache(maxsize=1024)
def _ingress(vport: int) -> Cube:
    return Cube.from_fields({oxm.IN_PORT: vport})


class _Check:
    """One region check, kept up to date arrival by arrival: what each arrival cube that
    meets the region says (AGREE, MISS or FAIL), counted by verdict (an arrival listed twice
    counts twice, as a scan of the list would), and the answer those counts give."""

    __slots__ = ("answer", "counts", "misses", "verdict")

    def __init__(self) -> None:
        self.verdict: dict[Cube, int] = {}
        self.counts = [0, 0, 0]
        self.misses: dict[Cube, None] = {}
        self.answer: Answer = (None, ())

    def set(self, a: Cube, verdict: int, weight: int) -> None:
        old = self.verdict.get(a)
        if old == verdict:
            return
        if old is not None:
            self.counts[old] -= weight
            if old == MISS:
                del self.misses[a]
        self.verdict[a] = verdict
        self.counts[verdict] += weight
        if verdict == MISS:
            self.misses[a] = None


class Reducer:
    """One vswitch's plan, changed by what changes it: a rule of its own added, modified or
    removed (`rule_changed`), or packets newly able to arrive on a vlink because a rule at
    its other end (`arrivals_grew`).  Only the proofs those can affect are redone, which is
    what keeps a tenant's FLOW_MOD cheap (a full `rebuild` redoes every proof).

    Every (rule, vport) outcome rests on region checks ("does every packet that can arrive on
    this vport inside this region get this fate?"), shared by every rule projecting onto the
    same region and fate (at `hop` every rule from one vport onto the same outputs: one
    check).  A check is kept as the verdicts of the arrival cubes meeting its region, so a
    change costs what it touches, not what the vswitch holds:

    * a rule's change can only change the fate of the arrival cubes its match (old or new)
      meets: those cubes' verdicts are redone in the checks whose region they meet;
    * new arrivals add their verdicts to the checks whose region they meet;
    * a rule is placed again when it changed itself or a check it rests on changed answer.

    Rules, arrival cubes and check regions are kept in `CubeIndex`es, so finding what a
    cube meets does not scan them all; each arrival cube's fate in the table is cached and
    dropped only when a rule meeting it changes.

    Removals never make an outcome wrong (fewer arrivals, or a rule gone whose packets the
    proofs counted): arrivals are not shrunk (an over-approximation stays sound) and the
    outcomes they block are revisited by the next `rebuild`."""

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
        # `lite` (set_lite): MAC -> destination LITE, each destination's eth_dst cubes and
        # one cube covering them all (what a change must meet to matter), and the link
        # vports LITE tags arrive on
        self.lite: dict[str, int] = {}
        self.lite_regions: dict[int, list[Cube]] = {}
        self.lite_watch: dict[int, Cube] = {}
        self.lite_in: set[int] = set()
        self.lite_out: set[int] = set()
        self.hosts: dict[int, list[Cube]] | None = None  # per edge vport (rebuild)
        self._reset()

    def _reset(self) -> None:
        # table 0 as proofs read it: per serial (-priority, order, cube, fate, serial), by cube;
        # `order` is the rule's place among equal priorities (its first arrival in `rules`)
        self._rows: dict[int, tuple[int, int, Cube, Hashable, int]] = {}
        self._rindex: CubeIndex[int] = CubeIndex()
        self._order: dict[int, int] = {}
        self._next = 0
        self._table: list[tuple[int, Cube, Hashable]] | None = None
        self._serials: list[int] = []  # of the table's rows, in its order
        # what can arrive, per vport: how often each cube is listed, where first, by cube
        self._mult: dict[int, dict[Cube, int]] = {}
        self._first: dict[int, dict[Cube, int]] = {}
        self._aindex: dict[int, CubeIndex[Cube]] = {}
        self._afate: dict[Cube, tuple[Hashable, int | None]] = {}  # fate, winner serial
        # the region checks, by key and per vport by region; the rules resting on each
        self._memo: dict[CheckKey, _Check] = {}
        self._cindex: dict[int, CubeIndex[CheckKey]] = {}
        self._users: dict[CheckKey, set[int]] = {}
        self._orphans: set[CheckKey] = set()  # users gone: dropped after the change
        self._deciding: dict[CheckKey, int] = {}  # reduced outcomes each check decided
        self._missy: set[CheckKey] = set()  # checks answering True with exceptions
        # the region checks each (rule, vport) outcome consulted, and rules to redo whatever
        # their checks say (the rule itself changed)
        self._consulted: dict[tuple[int, int], list[tuple[Any, Answer]]] = {}  # Any: "plain"
        self._dirty: set[int] = set()
        # `lite`: what arrives on each link without a tag, listed and by cube; the LITE
        # outcomes the plan installs, by (vport, destination), and the checks they rest on
        self.plain: dict[int, list[Cube]] = {}
        self._pindex: dict[int, CubeIndex[Cube]] = {}
        self._lite_deciding: dict[tuple[int, int], dict[CheckKey, int]] = {}

    def set_lite(
        self, lite: Mapping[str, int], receiving: Iterable[int], sending: Iterable[int] = ()
    ) -> None:
        """The network's LITE numbering, the link vports whose packets may carry a LITE tag
        and those that tag what leaves by them (before `rebuild`)."""
        self.lite = dict(lite)
        self.lite_in = set(receiving)
        self.lite_out = set(sending)
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
        """Table 0 as (priority, cube, fate) rows in priority order (highest first)."""
        if self._table is None:
            rows = sorted(self._rows.values())
            self._table = [(-p, c, f) for p, _, c, f, _ in rows]
            self._serials = [s for *_, s in rows]
        return self._table

    def _fate(self, vf: VFlow) -> Hashable:
        got = self.fates.get(vf.serial)
        if got is None:
            got = self.fates[vf.serial] = levels.fate(vf)
        return got

    def _set_row(self, serial: int) -> None:
        """The table's row of one rule as it is now (none: gone, or not in table 0)."""
        vf = self.rules.get(serial)
        if vf is None or vf.table != 0:
            if self._rows.pop(serial, None) is not None:
                self._rindex.discard(serial)
            return
        cube = self.cubes.get(serial, EVERYTHING)
        self._rows[serial] = (-vf.priority, self._order[serial], cube, self._fate(vf), serial)
        self._rindex.add(serial, cube)

    def _rows_meeting(self, c: Cube) -> list[tuple[int, int, Cube, Hashable, int]]:
        """The rows whose match meets `c`, in the table's order."""
        rows = self._rows
        return sorted(rows[s] for s in self._rindex.meeting(c))

    def _arrival_fate(self, a: Cube) -> tuple[Hashable, int | None]:
        """The fate every packet of arrival cube `a` gets (or _MIXED), and the one rule that
        decides it (None: a table miss, or several rules)."""
        got = self._afate.get(a)
        if got is None:
            rows = self._rows_meeting(a)
            if not rows:
                got = (levels.DROP, None)
            else:
                prio, _, c, fate, serial = rows[0]
                if not subset(a, c):
                    got = (_MIXED, None)  # split between this rule and what lies below
                elif any(r[0] == prio and r[3] != fate for r in rows[1:]):
                    got = (_MIXED, None)  # tied with another fate
                else:
                    got = (fate, serial)
            self._afate[a] = got
        return got

    def _punted(self, serial: int | None) -> bool:
        vf = None if serial is None else self.rules.get(serial)
        return vf is not None and levels.punts(vf)

    def _verdict(self, a: Cube, region: Cube, expected: Hashable) -> int | None:
        """What arrival cube `a` says of the check of `region` and `expected` (None: it does
        not meet the region)."""
        piece = intersect(a, region)
        if piece is None:
            return None
        if piece == a:
            fate, winner = self._arrival_fate(a)
            if fate == expected:
                return AGREE
            if (fate == levels.DROP and winner is None) or self._punted(winner):
                # a miss (or the tenant's table-miss rule sending it to the controller):
                # typically a flow whose rule here is not installed yet (its path installed
                # from the source end, or hop by hop by a reactive controller); an exact
                # rule above the reduced rule doing what the miss does, gone once the rule
                # comes, instead of refining every rule here
                return MISS
            if fate != _MIXED:
                return FAIL
        # a piece proven below (only the rules meeting it can decide it)
        rows = [(-p, c, f) for p, _, c, f, _ in self._rows_meeting(piece)]
        try:
            ok = winner_fate_uniform(piece, rows, expected, levels.DROP, self.budget)
        except TooComplex:
            return FAIL
        return AGREE if ok else FAIL

    def _settle(self, key: CheckKey, chk: _Check) -> None:
        """The check's answer from its verdicts: whether every packet that can arrive on the
        vport inside the region gets the fate, but for the exceptions (whole arrival cubes
        that miss, at most MAX_EXCEPTIONS); None when none can arrive there, or all miss."""
        agree, miss, fail = chk.counts
        answer: Answer
        if not chk.verdict:
            answer = (None, ())
        elif fail or miss > MAX_EXCEPTIONS:
            answer = (False, ())
        elif not agree:
            answer = (None, ())  # every packet that arrives here is another rule's: none needed
        else:
            vport = key[0]
            first, mult = self._first[vport], self._mult[vport]
            answer = (True, tuple((a, self._arrival_fate(a)[1])
                                  for a in sorted(chk.misses, key=first.__getitem__)
                                  for _ in range(mult[a])))  # fmt: skip
        chk.answer = answer
        if answer[1]:
            self._missy.add(key)
        else:
            self._missy.discard(key)

    def _check(self, vport: int, region: Cube, expected: Hashable) -> Answer:
        """Whether every packet that can arrive on `vport` inside `region` gets `expected`,
        but for the exceptions returned (whole arrival cubes that miss); None when none can
        arrive (vacuous)."""
        key = (vport, region, expected)
        chk = self._memo.get(key)
        if chk is None:
            chk = self._memo[key] = _Check()
            idx = self._aindex.get(vport)
            if idx is not None:
                mult = self._mult[vport]
                for a in idx.meeting(region):
                    v = self._verdict(a, region, expected)
                    if v is not None:
                        chk.set(a, v, mult[a])
            self._cindex.setdefault(vport, CubeIndex()).add(key, region)
            self._settle(key, chk)
        return chk.answer

    def _reverdict(self, vport: int, arrivals: Iterable[Cube]) -> set[CheckKey]:
        """Redo what these arrival cubes of `vport` say in every check whose region they
        meet; the checks whose answer changed."""
        idx = self._cindex.get(vport)
        if idx is None:
            return set()
        mult = self._mult[vport]
        redone: dict[CheckKey, _Check] = {}
        for a in arrivals:
            for key in idx.meeting(a):
                chk = redone[key] = self._memo[key]
                v = self._verdict(a, key[1], key[2])
                if v is not None:  # it meets the region: the index says so
                    chk.set(a, v, mult[a])
        flipped = set()
        for key, chk in redone.items():
            was = chk.answer[0]
            self._settle(key, chk)
            if chk.answer[0] != was:
                flipped.add(key)
        return flipped

    def _users_of(self, keys: Iterable[CheckKey]) -> set[int]:
        out: set[int] = set()
        for key in keys:
            out |= self._users.get(key, set())
        return out

    def exceptions(self) -> dict[int, set[tuple[Cube, int | None]]]:
        """The exception drops the plan needs now, by vport: those of every check that
        decided a reduced rule the plan installs (shared by all the rules it decided).  A
        rule that keeps its exact rule (an edge ingress, or exact elsewhere) installs none
        of its reduced outcomes, and their misses are already the exact table's."""
        out: dict[int, set[tuple[Cube, int | None]]] = {}
        if not self.active:
            return out
        for key in self._missy:
            if self._deciding.get(key):
                out.setdefault(key[0], set()).update(self._memo[key].answer[1])
        return out

    # --- one outcome ---------------------------------------------------------------------
    def _forwarding(
        self, vf: VFlow, vport: int
    ) -> tuple[Cube | None, Hashable, tuple[Outcome, Cube | None]]:
        """(its cube, its fate, _) of a forwarding rule that applies on `vport`; else (None,
        _, the outcome already settled): exact when it does more than forward, vacuous when
        pinned to another ingress."""
        cube = self.cubes.get(vf.serial)
        expected = self._fate(vf)
        if cube is None or expected[0] != "out":  # type: ignore[index]
            return None, expected, (EXACT, None)
        pinned = _in_port(vf)
        if pinned is not None and pinned != vport:
            return None, expected, (VACUOUS, None)
        return cube, expected, (EXACT, None)

    def _prove(self, vf: VFlow, vport: int) -> tuple[Outcome, Cube | None]:
        cube, expected, settled = self._forwarding(vf, vport)
        if cube is None:
            return settled
        here = _ingress(vport)
        # what a later change must meet to matter: the coarsest region tried (it holds the
        # finer ones), so a change there can make the outcome coarser as well as finer
        watch: Cube | None = None
        for lv in levels.finer(self.level):
            kept_fields = levels.KEPT[lv] or frozenset()
            region = intersect(project(cube, tuple(kept_fields)), here)
            if region is None:
                return VACUOUS, watch
            watch = watch or region
            key = (vport, region, expected)
            ok, exceptions = self._check(vport, region, expected)
            self._consulted.setdefault((vf.serial, vport), []).append((key, (ok, exceptions)))
            self._users.setdefault(key, set()).add(vf.serial)
            if ok is None:
                return VACUOUS, watch
            if ok:
                kept = tuple(sorted((o for o in vf.match if o.field in kept_fields),
                                    key=lambda o: o.field))  # fmt: skip
                return Reduced(lv, kept, expected, exceptions, key), watch
        return EXACT, watch

    def _prove_lite(self, vf: VFlow, vport: int, dst: int) -> tuple[Outcome, Cube | None]:
        """`lite`: one physical rule per (vport, destination LITE, fate) matching only the
        tag, when every packet that can arrive on `vport` for a host of that destination
        gets `vf`'s fate (what carries the tag is among those: tags are pushed only by rules
        pinning eth_dst to such a host and that only forward), and no untagged packet of
        `vf`'s match can arrive here (those meet the tenant tables, where `vf` then needs
        its exact rule).  Otherwise exact: a shared finer rule could not carry the tag on."""
        cube, expected, settled = self._forwarding(vf, vport)
        if cube is None:
            return settled
        here = _ingress(vport)
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
            self._users.setdefault(key, set()).add(vf.serial)
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
        if any(a.get(oxm.VLAN_VID)[1] or a.get(oxm.VLAN_PCP)[1] or w is not None
               for a, w in exceptions):  # fmt: skip
            # the tag is the outer VLAN there: a drop could not say these, and a packet
            # sent to the controller would carry it
            return EXACT, watch
        check = ("lite", vport, dst, tuple(keys))
        return Reduced("lite", (), expected, tuple(exceptions), check, dst), watch

    def _answer(self, key: Any) -> Any:
        """What one consulted check says now: a region check's verdict, or (`plain`) whether
        an untagged arrival meets a rule's match."""
        if key[0] == "plain":
            _, vport, cube = key
            idx = self._pindex.get(vport)
            return idx is not None and bool(idx.meeting(cube))
        return self._check(*key)[0]

    def lite_exceptions(self) -> dict[tuple[int, int], set[tuple[Cube, int | None]]]:
        """The exception drops of the LITE rules the plan installs, by (vport, destination
        LITE): those of the region checks they rest on."""
        out: dict[tuple[int, int], set[tuple[Cube, int | None]]] = {}
        if not self.active:
            return out
        for where, keys in self._lite_deciding.items():
            for key in keys:
                if key in self._missy:
                    out.setdefault(where, set()).update(self._memo[key].answer[1])
        return out

    def _forget(self, serial: int) -> None:
        """Drop one rule's outcomes and what they rested on."""
        for vp, (outcome, _) in self.outcomes.pop(serial, {}).items():
            if isinstance(outcome, Reduced) and (serial, vp) in self.plan.reduced:
                self._decided(outcome, vp, -1)
            for key, _ in self._consulted.pop((serial, vp), ()):
                users = self._users.get(key)
                if users is not None:
                    users.discard(serial)
                    if not users:
                        self._orphans.add(key)

    def _decided(self, outcome: Reduced, vport: int, n: int) -> None:
        """Count (n = 1) or uncount (-1) a reduced outcome the plan installs: the checks
        whose exceptions become drops are those such outcomes rest on."""
        if outcome.level == "lite":
            _, _, dst, keys = outcome.check
            counts = self._lite_deciding.setdefault((vport, dst), {})
            for key in keys:
                left = counts.get(key, 0) + n
                if left:
                    counts[key] = left
                else:
                    counts.pop(key, None)
            if not counts:
                del self._lite_deciding[(vport, dst)]
            return
        left = self._deciding.get(outcome.check, 0) + n
        if left:
            self._deciding[outcome.check] = left
        else:
            self._deciding.pop(outcome.check, None)

    def _collect(self) -> None:
        """Forget the checks no rule rests on any more."""
        for key in self._orphans:
            if self._users.get(key):
                continue
            self._users.pop(key, None)
            if self._memo.pop(key, None) is not None:
                self._cindex[key[0]].discard(key)
            self._missy.discard(key)
        self._orphans.clear()

    def _place(self, vf: VFlow) -> None:
        """Decide every ingress of one rule and put the result into the plan."""
        serial = vf.serial
        self._forget(serial)
        forwarding = vf.table == 0 and self._fate(vf)[0] == "out"  # type: ignore[index]
        mine: dict[int, tuple[Outcome, Cube | None]] = {}
        keep_exact = not forwarding
        if forwarding:
            pinned = _in_port(vf)
            dst = self._lite_dst(vf)
            for vp in [pinned] if pinned is not None else list(self.vports):
                if self.vports.get(vp) is None:
                    if self._edge_needs(vp, serial):
                        keep_exact = True  # a host's packets can meet it: the full match
                    else:
                        mine[vp] = (VACUOUS, None)  # no host there sends what it matches
                    continue
                got = mine[vp] = self._prove_lite(vf, vp, dst) if dst else self._prove(vf, vp)
                if (
                    dst
                    and got[0] == EXACT
                    and not self.lite_out.intersection(
                        self._fate(vf)[1]  # type: ignore[index]
                    )
                ):
                    # it tags nothing (no output is a LITE link: a host's edge, say), so a
                    # shared finer rule loses no tag: tried at hop, host, app as any rule
                    got = mine[vp] = self._prove(vf, vp)
                if got[0] == EXACT:
                    keep_exact = True
        self.outcomes[serial] = mine
        reduced = {} if keep_exact else {
            vp: o for vp, (o, _) in mine.items() if isinstance(o, Reduced)
        }  # fmt: skip
        whole = self._whole(vf) if len(reduced) > 1 else ()
        if whole and all(o.kept == whole for o in reduced.values()):
            # reduced to its whole match at several ingresses: a copy each, where its one
            # exact rule does (a copy keeping fields is no other rule's to share; an empty
            # match's copies are every rule's with its outputs, so those stay)
            keep_exact, reduced = True, {}
        for vp, o in reduced.items():
            self._decided(o, vp, 1)
        vacuous = {vp for vp, (o, _) in mine.items() if o == VACUOUS}
        self.plan.set_rule(serial, keep_exact, reduced, vacuous)

    @staticmethod
    def _whole(vf: VFlow) -> tuple[codec.Oxm, ...]:
        """A rule's match as a reduced rule keeping every field would keep it."""
        return tuple(sorted((o for o in vf.match if o.field != oxm.IN_PORT),
                            key=lambda o: o.field))  # fmt: skip

    def _edge_needs(self, vport: int, serial: int) -> bool:
        """Whether packets of the hosts on edge `vport` can meet rule `serial` (table 0 lets
        in only their source MACs; without `hosts`, or for a vport not known, assume so)."""
        if self.hosts is None or vport not in self.vports:
            return True
        cube = self.cubes.get(serial)
        return cube is None or any(overlaps(h, cube) for h in self.hosts.get(vport, ()))

    def _unchanged(self, serial: int) -> bool:
        """Whether every region check this rule's outcomes rested on answers as it did: its
        outcomes are then the same, no need to redo them."""
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
        for serial in sorted(serials):
            if self._unchanged(serial):
                continue
            was = self.plan.part(serial)
            vf = self.rules.get(serial)
            if vf is None:
                self._forget(serial)
                self.plan.drop_rule(serial)
            else:
                self._place(vf)
            if self.plan.part(serial) != was:
                changed.add(serial)
        self._dirty.clear()
        self._collect()
        return changed

    def _add_arrivals(self, vport: int, cubes: Sequence[Cube]) -> list[Cube]:
        """List `cubes` as arriving on `vport`; the ones not there before, once each."""
        listed = self.arriving.setdefault(vport, [])
        mult = self._mult.setdefault(vport, {})
        first = self._first.setdefault(vport, {})
        idx = self._aindex.setdefault(vport, CubeIndex())
        fresh: list[Cube] = []
        for c in cubes:
            listed.append(c)
            n = mult.get(c)
            if n is None:
                mult[c] = 1
                first[c] = len(listed) - 1
                idx.add(c, c)
                fresh.append(c)
            else:
                mult[c] = n + 1
        return fresh

    # --- what changes it -------------------------------------------------------------------
    def rebuild(
        self, rules: Sequence[VFlow], vports: Mapping[int, Peer | None],
        arriving: Mapping[int, Space | Sequence[Cube]],
        plain: Mapping[int, Space | Sequence[Cube]] | None = None,
        hosts: Mapping[int, Sequence[Cube]] | None = None,
    ) -> set[int]:  # fmt: skip
        """Every proof again (a new level, new vports, or to take removals into account);
        the serials whose realisation changed.  `plain`: what of `arriving` comes without a
        LITE tag (default: all of it).  `hosts`: per edge vport, what its hosts can send
        (their source MACs: table 0 admits no other); None: anything, so every rule that
        can apply to an edge vport keeps its exact rule."""
        self.hosts = None if hosts is None else {vp: list(c) for vp, c in hosts.items()}
        before = {vf.serial: self.plan.part(vf.serial) for vf in rules}
        before.update({s: self.plan.part(s) for s in self.rules})
        self.rules = {vf.serial: vf for vf in rules}
        self.fates = {}
        self.cubes = {s: c for s, vf in self.rules.items() if (c := rule_cube(vf)) is not None}
        self.vports = dict(vports)
        self._reset()
        for serial in self.rules:
            self._order[serial] = self._next
            self._next += 1
            self._set_row(serial)
        self.arriving = {}
        for vp, cubes in arriving.items():
            self.arriving[vp] = []
            self._add_arrivals(vp, list(cubes))
        for vp, cubes in (arriving if plain is None else plain).items():
            self._add_plain(vp, list(cubes))
        self.outcomes.clear()
        self.plan = VSwitchPlan().index()
        for vf in self.rules.values():
            if self.active:
                self._place(vf)
            else:
                self.plan.set_rule(vf.serial, True, {}, set())
        self._collect()
        return {s for s, part in before.items() if self.plan.part(s) != part}

    def rule_changed(self, old: VFlow | None, new: VFlow | None) -> set[int]:
        """A rule of this vswitch was added (old None), modified or removed (new None)."""
        touched: list[Cube] = []
        new_cube = None if new is None else rule_cube(new)
        if old is not None:
            touched.append(rule_cube(old) or EVERYTHING)
        if new is not None:
            touched.append(new_cube or EVERYTHING)
        serial = (new or old).serial  # type: ignore[union-attr]
        self.fates.pop(serial, None)
        if new is None:
            self.rules.pop(serial, None)
            self.cubes.pop(serial, None)
            self._order.pop(serial, None)
        else:
            if serial not in self.rules:  # a new one goes after its equals; a modified one stays
                self._order[serial] = self._next
                self._next += 1
            self.rules[serial] = new
            if new_cube is None:
                self.cubes.pop(serial, None)
            else:
                self.cubes[serial] = new_cube
        self._set_row(serial)
        self._table = None
        # the arrival cubes whose fate it may change, and the checks they are in
        flipped: set[CheckKey] = set()
        for vp, idx in self._aindex.items():
            stale: dict[Cube, None] = {}
            for t in touched:
                stale.update(dict.fromkeys(idx.meeting(t)))
            for a in stale:
                self._afate.pop(a, None)
            if stale:
                flipped |= self._reverdict(vp, stale)
        if not self.active:
            if new is None:
                self.plan.drop_rule(serial)
            else:
                self.plan.set_rule(serial, True, {}, set())
            return set()
        self._dirty.add(serial)
        return self._redo({serial} | self._users_of(flipped))

    def _add_plain(self, vport: int, cubes: Sequence[Cube]) -> list[Cube]:
        """List `cubes` as arriving untagged on `vport`; the ones not there before."""
        listed = self.plain.setdefault(vport, [])
        idx = self._pindex.setdefault(vport, CubeIndex())
        fresh = []
        for c in cubes:
            if c not in idx:
                idx.add(c, c)
                listed.append(c)
                fresh.append(c)
        return fresh

    def arrivals_grew(self, vport: int, cubes: Sequence[Cube], plain: bool = True) -> set[int]:
        """Packets in `cubes` can now arrive on link `vport` (`plain`: without a LITE tag)."""
        if vport not in self.arriving:
            return set()
        have = self._mult[vport]
        new = [c for c in cubes if c not in have]
        again: set[int] = set()  # rules whose untagged arrivals may have changed
        if plain:
            for c in self._add_plain(vport, cubes):
                if self.level == "lite":
                    again.update(self._rindex.meeting(c))
        if not new and not again:
            return set()
        flipped = self._reverdict(vport, self._add_arrivals(vport, new)) if new else set()
        if not self.active:
            return set()
        return self._redo(self._users_of(flipped) | (again & set(self.outcomes)))
