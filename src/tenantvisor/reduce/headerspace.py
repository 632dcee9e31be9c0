"""Header-space algebra over OpenFlow 1.3 ternary matches, for the rule-reduction proofs.

Rule reduction (issue 9) installs a tenant's rule at a core vswitch with a coarser match only
when that is proven to change nothing: every packet that can reach the rule must get the same
fate from the reduced table as from the exact one.  The proof is set algebra on OpenFlow
matches, which are ternary (value/mask per field) and ordered by priority; this module is that
algebra and nothing else (no I/O, no hypervisor state), so it can be tested against brute
force and called on the FLOW_MOD path.

Representation
--------------
A `Cube` is one ternary match over *all* OXM_OF_BASIC fields at once: the fields are laid end
to end in one bit string (`FIELDS`, offsets below), and a cube is two Python ints over it,
`value` and `mask` (a 1 in `mask` is a constrained bit, `value` holds its required value).
Every set operation is then a handful of big-int `&`/`^`/`|` on <= 1261-bit ints, done in C,
instead of a Python loop over 40 fields.  Fields a tenant commonly matches (in_port, eth_type,
ip_proto, IPv4, L4 ports, VLAN, ...) sit at the low offsets, so a typical cube's ints stay a few
hundred bits long (Python ints store only up to their highest set bit).

The form is canonical: `value & ~mask == 0`, an unconstrained field has mask 0, and widths are
the fields' *bit* widths (ip_dscp 6, vlan_vid 13, ...), not their OXM byte lengths, so two
cubes denote the same set exactly when they are equal, and there are no phantom values (an
ip_dscp of 0x40 is not a packet).

Sets that are not one cube are a `Space`: a union of (possibly overlapping) cubes.  Subtraction
splits into disjoint cubes with the optimal count (see `subtract`), and every Space operation
takes an optional `budget` on its cube count and raises `TooComplex` past it, so a proof that
would explode is abandoned and the caller keeps the exact rules.

Prerequisites
-------------
OpenFlow makes a match on tcp_dst imply ip_proto=6 and eth_type IPv4/IPv6 (OF1.3.5 7.2.3.6);
`Cube.from_match` does NOT add such implied constraints: a cube is the match as given.  Callers
pass matches the switch would accept (so prerequisites are present) or accept that the cube is
a superset of what the switch matches.  Note that the hypervisor forwards tenant fields other
than in_port/metadata without checking their lengths or values (the switch does), so
`from_match` raises ValueError on anything a switch would refuse as malformed; a caller
treats that as "no proof" and installs the rule exact.

Complexity
----------
W is the length of a cube's ints in words: at most TOTAL_BITS = 1261 bits, ~300 for an exact
TCP/IPv4 match.  intersect, subset, overlaps, project: O(W), ~50-150 ns.  subtract(a, b):
O(k * W) and at most k cubes, k = number of bits b constrains that a does not.  Space ops: the
pairwise products of those, bounded by `budget`.  winner_fate_uniform: O(rules * cubes in the
region * W), the region capped at `budget` cubes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from itertools import groupby
from typing import Generic, NamedTuple, TypeVar

from tenantvisor.openflow import oxm

OXM_CLASS_OPENFLOW_BASIC = 0x8000  # = codec.OXM_CLASS_OPENFLOW_BASIC, kept import-light here

NormEntry = tuple[tuple[int, int], int, int, int]
"""One entry of `virtual.flowtable.normalize`: ((oxm class, field), value, mask, byte length)."""

FieldKey = str | int
"""A field named by its os-ken name ("ipv4_dst") or its OXM field number (oxm.IPV4_DST)."""

FieldValues = Mapping[str, int | tuple[int, int]] | Mapping[int, int | tuple[int, int]]
"""{field: value} (exact) or {field: (value, mask)}, fields by name or by OXM number."""

Packet = Mapping[str, int] | Mapping[int, int]
"""A packet's header values by field (name or OXM number); absent fields are 0."""

DEFAULT_BUDGET = 1000
"""Default cap on the cubes a proof may hold; it bounds a proof at ~budget x rules cube tests
(~50 ns each): tens of ms for a few hundred rules, instead of exponential growth."""


class TooComplex(Exception):
    """The operation would exceed its cube budget: give up the proof and stay exact."""


class FieldSpec(NamedTuple):
    """Where an OXM field lives in a cube's packed bit string."""

    name: str  # os-ken's name (ofproto_v1_3.oxm_types)
    oxm: int  # OXM_OF_BASIC field number
    bits: int  # width of the packet field: the values a packet can carry
    nbytes: int  # OXM payload length on the wire (bits rounded up, as normalize() sees it)
    offset: int  # bit position of the field's least significant bit
    full: int  # ((1 << bits) - 1) << offset


# (name, OXM number, bit width, wire bytes), commonly matched fields first (low offsets keep
# typical cubes' ints short).  Widths from OF1.3.5 table 12; vlan_vid is 13 bits: the 12-bit
# VID plus OFPVID_PRESENT (0x1000).  in_phy_port and tunnel_id are hypervisor-owned but kept so
# any OF1.3 match can be reasoned about.
_LAYOUT: tuple[tuple[str, int, int, int], ...] = (
    ("in_port", oxm.IN_PORT, 32, 4),
    ("eth_type", oxm.ETH_TYPE, 16, 2),
    ("ip_proto", oxm.IP_PROTO, 8, 1),
    ("ipv4_src", oxm.IPV4_SRC, 32, 4),
    ("ipv4_dst", oxm.IPV4_DST, 32, 4),
    ("tcp_src", oxm.TCP_SRC, 16, 2),
    ("tcp_dst", oxm.TCP_DST, 16, 2),
    ("udp_src", oxm.UDP_SRC, 16, 2),
    ("udp_dst", oxm.UDP_DST, 16, 2),
    ("vlan_vid", oxm.VLAN_VID, 13, 2),
    ("vlan_pcp", oxm.VLAN_PCP, 3, 1),
    ("ip_dscp", oxm.IP_DSCP, 6, 1),
    ("ip_ecn", oxm.IP_ECN, 2, 1),
    ("eth_dst", oxm.ETH_DST, 48, 6),
    ("eth_src", oxm.ETH_SRC, 48, 6),
    ("icmpv4_type", oxm.ICMPV4_TYPE, 8, 1),
    ("icmpv4_code", oxm.ICMPV4_CODE, 8, 1),
    ("arp_op", oxm.ARP_OP, 16, 2),
    ("arp_spa", oxm.ARP_SPA, 32, 4),
    ("arp_tpa", oxm.ARP_TPA, 32, 4),
    ("sctp_src", oxm.SCTP_SRC, 16, 2),
    ("sctp_dst", oxm.SCTP_DST, 16, 2),
    ("metadata", oxm.METADATA, 64, 8),
    ("arp_sha", oxm.ARP_SHA, 48, 6),
    ("arp_tha", oxm.ARP_THA, 48, 6),
    ("icmpv6_type", oxm.ICMPV6_TYPE, 8, 1),
    ("icmpv6_code", oxm.ICMPV6_CODE, 8, 1),
    ("ipv6_flabel", oxm.IPV6_FLABEL, 20, 4),
    ("mpls_label", oxm.MPLS_LABEL, 20, 4),
    ("mpls_tc", oxm.MPLS_TC, 3, 1),
    ("mpls_bos", oxm.MPLS_BOS, 1, 1),
    ("pbb_isid", oxm.PBB_ISID, 24, 3),
    ("ipv6_exthdr", oxm.IPV6_EXTHDR, 9, 2),
    ("ipv6_src", oxm.IPV6_SRC, 128, 16),
    ("ipv6_dst", oxm.IPV6_DST, 128, 16),
    ("ipv6_nd_target", oxm.IPV6_ND_TARGET, 128, 16),
    ("ipv6_nd_sll", oxm.IPV6_ND_SLL, 48, 6),
    ("ipv6_nd_tll", oxm.IPV6_ND_TLL, 48, 6),
    ("tunnel_id", oxm.TUNNEL_ID, 64, 8),
    ("in_phy_port", oxm.IN_PHY_PORT, 32, 4),
)


def _build_fields() -> tuple[FieldSpec, ...]:
    out, off = [], 0
    for name, num, bits, nbytes in _LAYOUT:
        out.append(FieldSpec(name, num, bits, nbytes, off, ((1 << bits) - 1) << off))
        off += bits
    return tuple(out)


FIELDS: tuple[FieldSpec, ...] = _build_fields()
"""Every OXM_OF_BASIC field of OpenFlow 1.3 (numbers 0-39), in packing order."""
BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
BY_OXM: dict[int, FieldSpec] = {f.oxm: f for f in FIELDS}
TOTAL_BITS = sum(f.bits for f in FIELDS)
_ALL_BITS = (1 << TOTAL_BITS) - 1


def field_spec(key: FieldKey) -> FieldSpec:
    """The field named `key` (name or OXM number); ValueError if there is none."""
    spec = BY_NAME.get(key) if isinstance(key, str) else BY_OXM.get(key)
    if spec is None:
        raise ValueError(f"unknown OXM_OF_BASIC field {key!r}")
    return spec


class _CubeBase(NamedTuple):
    value: int
    mask: int


class Cube(_CubeBase):
    """An immutable ternary match over all header fields: the set of packets it matches.

    Never empty (an empty intersection is None, an empty difference an empty list), so every
    cube in a `Space` holds at least one packet.  Build with `all`, `of`, `from_match` or
    `point`; `Cube(value, mask)` canonicalises and checks its arguments.  It is a tuple, so it
    hashes and compares in C (a cube also compares equal to the plain tuple (value, mask)).
    """

    __slots__ = ()

    def __new__(cls, value: int, mask: int) -> Cube:
        if mask < 0 or mask & ~_ALL_BITS:
            raise ValueError("mask has bits outside the header fields")
        return _new(cls, (value & mask, mask))

    # --- constructors ---------------------------------------------------------------------
    @classmethod
    def all(cls) -> Cube:
        """Every packet: all fields wildcarded."""
        return _ALL

    @classmethod
    def from_match(cls, match: Iterable[NormEntry]) -> Cube:
        """The cube of a normalised match (`virtual.flowtable.normalize`, or `VFlow.norm`).

        Masks are clipped to the field's bit width: normalize() gives an unmasked 1-byte field
        the mask 0xFF, but ip_dscp has 6 bits and the other 2 are not in any packet.  Raises
        ValueError for what a switch would refuse (OFPBMC_*): a class other than
        OPENFLOW_BASIC, an unknown field, a wrong length, a value bit set beyond the field's
        width, a field given twice.  Adds no prerequisites (see the module docstring).
        """
        value = mask = 0
        seen = 0
        for (cls_, num), v, m, length in match:
            if cls_ != OXM_CLASS_OPENFLOW_BASIC:
                raise ValueError(f"OXM class {cls_:#x} is not OPENFLOW_BASIC")
            spec = BY_OXM.get(num)
            if spec is None:
                raise ValueError(f"unknown OXM_OF_BASIC field {num}")
            if length != spec.nbytes:
                raise ValueError(f"{spec.name} is {spec.nbytes} bytes, not {length}")
            if seen & spec.full:
                raise ValueError(f"{spec.name} given twice")
            seen |= spec.full
            width = (1 << spec.bits) - 1
            if v & m & ~width:
                raise ValueError(f"{spec.name} value {v:#x} beyond its {spec.bits} bits")
            m &= width
            value |= (v & m) << spec.offset
            mask |= m << spec.offset
        return _new(cls, (value, mask))

    @classmethod
    def from_fields(cls, fields: FieldValues) -> Cube:
        """A cube from {field: value} (exact) or {field: (value, mask)}; mask 0 is a wildcard.

        Strict: a value or mask beyond the field's bit width is a ValueError (a caller's bug,
        unlike the byte-rounded masks `from_match` clips); value bits outside the mask are
        dropped (canonical form).
        """
        value = mask = 0
        for key, vm in fields.items():
            spec = field_spec(key)
            width = (1 << spec.bits) - 1
            v, m = (vm, width) if isinstance(vm, int) else vm
            if v < 0 or m < 0 or (v | m) & ~width:
                raise ValueError(f"{spec.name} value/mask {v:#x}/{m:#x} beyond {spec.bits} bits")
            value |= (v & m) << spec.offset
            mask |= m << spec.offset
        return _new(cls, (value, mask))

    @classmethod
    def of(cls, **fields: int | tuple[int, int]) -> Cube:
        """`Cube.of(ip_dscp=4, vlan_pcp=(1, 1))`: `from_fields` with keyword names."""
        return cls.from_fields(fields)

    @classmethod
    def point(cls, packet: Packet) -> Cube:
        """One packet as an exact cube: the given field values, every other field 0.

        (0 is what OpenFlow matches for an absent header, e.g. vlan_vid of an untagged frame.)
        """
        c = cls.from_fields(packet)
        return _new(cls, (c.value, _ALL_BITS))

    # --- inspection -----------------------------------------------------------------------
    def get(self, key: FieldKey) -> tuple[int, int]:
        """(value, mask) of one field; (0, 0) when unconstrained."""
        spec = field_spec(key)
        width = (1 << spec.bits) - 1
        return (self.value >> spec.offset) & width, (self.mask >> spec.offset) & width

    def constraints(self) -> dict[str, tuple[int, int]]:
        """{name: (value, mask)} of the constrained fields, in packing order."""
        out = {}
        for spec in FIELDS:
            if self.mask & spec.full:
                out[spec.name] = self.get(spec.name)
        return out

    def is_all(self) -> bool:
        return not self.mask

    def contains_point(self, packet: Packet) -> bool:
        """Does the packet (absent fields 0, as `point`) match?"""
        return not ((Cube.point(packet).value ^ self.value) & self.mask)

    def __repr__(self) -> str:
        parts = []
        for name, (v, m) in self.constraints().items():
            full = (1 << BY_NAME[name].bits) - 1
            parts.append(f"{name}={v:#x}" if m == full else f"{name}={v:#x}/{m:#x}")
        return f"Cube({', '.join(parts)})"


_new = tuple.__new__  # builds a Cube from an already canonical (value, mask), skipping checks
_ALL: Cube = _new(Cube, (0, 0))


# --- cube algebra ----------------------------------------------------------------------------
def intersect(a: Cube, b: Cube) -> Cube | None:
    """a ∩ b, or None when empty (the two disagree on a bit both constrain).  O(W)."""
    if (a.value ^ b.value) & a.mask & b.mask:
        return None
    return _new(Cube, (a.value | b.value, a.mask | b.mask))


def overlaps(a: Cube, b: Cube) -> bool:
    """a ∩ b is not empty.  O(W), allocates nothing."""
    return not ((a.value ^ b.value) & a.mask & b.mask)


def subset(a: Cube, b: Cube) -> bool:
    """a ⊆ b: b constrains nothing a leaves free, and a agrees on what b constrains.  O(W)."""
    bm = b.mask
    return not (bm & ~a.mask) and not ((a.value ^ b.value) & bm)


def subtract(a: Cube, b: Cube) -> list[Cube]:
    """a \\ b as disjoint cubes: [a] if they do not meet, [] if a ⊆ b, else exactly k cubes.

    With d = the bits b constrains and a does not (k = popcount(d)), the difference is split
    one bit of d at a time, most significant first: cube i has the bits of d before i set as
    in b and bit i set opposite to b.  k cubes is the minimum for a disjoint split ({0,1}^k
    minus a point needs k subcubes), and a prefix constraint yields prefixes: all minus
    ipv4_dst=10.0.0.0/24 is 24 cubes /1../24, and a /8 minus a /24 inside it 16.  Disjoint
    cubes keep later subtractions from re-splitting the same packets.  O(k * W) time.
    """
    av, am, bv, bm = a.value, a.mask, b.value, b.mask
    if (av ^ bv) & am & bm:
        return [a]
    d = bm & ~am
    out = []
    while d:
        bit = 1 << (d.bit_length() - 1)
        d ^= bit
        out.append(_new(Cube, (av | (bit & ~bv), am | bit)))
        av |= bv & bit
        am |= bit
    return out


@lru_cache(maxsize=256)
def _fields_mask(keys: tuple[FieldKey, ...]) -> int:
    m = 0
    for k in keys:
        m |= field_spec(k).full
    return m


def project(a: Cube, fields: Iterable[FieldKey]) -> Cube:
    """a with only `fields` kept and the rest wildcarded: a superset of a.  O(W).

    This is the reduced rule's match: e.g. project(exact, ("in_port",)).
    """
    m = _fields_mask(tuple(fields))
    return _new(Cube, (a.value & m, a.mask & m))


# --- finding the cubes that meet one, without testing them all -------------------------------
_T = TypeVar("_T", bound=Hashable)
MAX_VIEWS = 16  # hash tables per mask in a CubeIndex (queries of more shapes scan instead)


class CubeIndex(Generic[_T]):
    """Items, each with a cube, found by a cube they meet (`meeting`) in time that depends on
    the shapes of the cubes (their masks), not on how many there are: tuple space search, as
    Open vSwitch's classifier does it.

    Items are grouped by their cube's mask M; in a group, a cube c meets a query q exactly when
    c and q agree on the bits both constrain, M & q.mask: so each group keeps its items hashed
    by `value & sub` for every such `sub` it was asked with (built on the first query of that
    shape, kept up to date after).  A query costs one hash lookup per group, plus what it
    returns.  Past MAX_VIEWS shapes of query a group is scanned (correct, slower).
    """

    __slots__ = ("_cube", "_groups")

    def __init__(self) -> None:
        self._cube: dict[_T, Cube] = {}
        # mask -> {sub-mask -> {value & sub-mask -> items}}; sub-mask == mask: every item once
        self._groups: dict[int, dict[int, dict[int, dict[_T, None]]]] = {}

    def __len__(self) -> int:
        return len(self._cube)

    def __contains__(self, item: object) -> bool:
        return item in self._cube

    def add(self, item: _T, cube: Cube) -> None:
        """Add `item` with `cube` (replacing its cube if it was there)."""
        if item in self._cube:
            self.discard(item)
        self._cube[item] = cube
        views = self._groups.get(cube.mask)
        if views is None:
            views = self._groups[cube.mask] = {cube.mask: {}}
        value = cube.value
        for sub, table in views.items():
            k = value & sub
            bucket = table.get(k)
            if bucket is None:
                table[k] = {item: None}
            else:
                bucket[item] = None

    def discard(self, item: _T) -> None:
        cube = self._cube.pop(item, None)
        if cube is None:
            return
        views = self._groups[cube.mask]
        for sub, table in views.items():
            k = cube.value & sub
            bucket = table[k]
            del bucket[item]
            if not bucket:
                del table[k]
        if not views[cube.mask]:
            del self._groups[cube.mask]

    def meeting(self, q: Cube) -> list[_T]:
        """The items whose cube meets `q` (no other), in no particular order."""
        out: list[_T] = []
        qv, qm = q.value, q.mask
        for mask, views in self._groups.items():
            sub = mask & qm
            table = views.get(sub)
            if table is None:
                every = views[mask]
                if len(views) >= MAX_VIEWS:
                    for v, bucket in every.items():
                        if not ((v ^ qv) & sub):
                            out.extend(bucket)
                    continue
                table = views[sub] = {}
                for v, bucket in every.items():
                    have = table.get(v & sub)
                    if have is None:
                        table[v & sub] = dict(bucket)
                    else:
                        have.update(bucket)
            found = table.get(qv & sub)
            if found:
                out.extend(found)
        return out


# --- unions of cubes -------------------------------------------------------------------------
def _check(n: int, budget: int | None) -> None:
    if budget is not None and n > budget:
        raise TooComplex(f"{n} cubes, over the budget of {budget}")


def _minus(cubes: Iterable[Cube], b: Cube, budget: int | None) -> list[Cube]:
    """Every cube minus b; cubes disjoint from b are kept as they are (the common case)."""
    bv, bm = b.value, b.mask
    out: list[Cube] = []
    for c in cubes:
        cv, cm = c.value, c.mask
        if (cv ^ bv) & cm & bm:
            out.append(c)
        elif bm & ~cm or (cv ^ bv) & bm:  # not c ⊆ b: split
            out.extend(subtract(c, b))
            _check(len(out), budget)
    _check(len(out), budget)
    return out


class Space:
    """A set of packets as a union of cubes (they may overlap; no cube is empty).

    Immutable; operations return new Spaces.  No merging is attempted beyond dropping exact
    duplicates in `union`: the proofs only ask emptiness and intersection, for which a longer
    list costs linearly and merging would cost more than it saves.
    """

    __slots__ = ("cubes",)

    def __init__(self, cubes: Iterable[Cube] = ()) -> None:
        self.cubes: tuple[Cube, ...] = tuple(cubes)

    @staticmethod
    def _cubes(other: Cube | Space) -> tuple[Cube, ...]:
        return (other,) if isinstance(other, Cube) else other.cubes

    def __len__(self) -> int:
        """Number of cubes (not packets)."""
        return len(self.cubes)

    def __iter__(self) -> Iterator[Cube]:
        return iter(self.cubes)

    def __repr__(self) -> str:
        return f"Space({list(self.cubes)!r})"

    def is_empty(self) -> bool:
        return not self.cubes

    def overlaps(self, other: Cube | Space) -> bool:
        """Some packet is in both.  O(len(self) * len(other) * W), no allocation."""
        return any(overlaps(a, b) for b in self._cubes(other) for a in self.cubes)

    def intersect(self, other: Cube | Space, budget: int | None = None) -> Space:
        """Pairwise intersections; O(len(self) * len(other)) cubes at most."""
        out = []
        for b in self._cubes(other):
            for a in self.cubes:
                c = intersect(a, b)
                if c is not None:
                    out.append(c)
            _check(len(out), budget)
        return Space(out)

    def subtract(self, other: Cube | Space, budget: int | None = None) -> Space:
        """Exact difference: no result cube meets any subtracted cube.

        Cubes that do not meet the subtracted one are kept untouched (fast path); the others
        are split by `subtract`, so the result grows by at most (bits the subtracted cube
        constrains beyond each split cube) per cube.
        """
        cubes: Iterable[Cube] = self.cubes
        for b in self._cubes(other):
            cubes = _minus(cubes, b, budget)
        return Space(cubes)

    def union(self, other: Cube | Space, budget: int | None = None) -> Space:
        """Both lists, exact duplicates dropped."""
        out = dict.fromkeys(self.cubes)
        out.update(dict.fromkeys(self._cubes(other)))
        _check(len(out), budget)
        return Space(out)

    def contains_point(self, packet: Packet) -> bool:
        """Is the packet (absent fields 0) in the set?"""
        p = Cube.point(packet).value
        return any(not ((p ^ c.value) & c.mask) for c in self.cubes)


# --- the proof's question --------------------------------------------------------------------
Rule = tuple[int, Cube, Hashable]
"""(priority, match, fate): the fate is opaque (an output port, a "drop", a tuple of actions)."""


def winner_fate_uniform(
    region: Space | Cube,
    rules: Sequence[Rule],
    expected_fate: Hashable,
    miss_fate: Hashable,
    budget: int | None = DEFAULT_BUDGET,
) -> bool:
    """Does every packet of `region` get `expected_fate` from the table `rules`?

    OpenFlow semantics: a packet gets the fate of the highest-priority rule containing it, and
    `miss_fate` if none does.  Rules of equal priority that overlap are ambiguous (the switch
    may pick either), so a packet in several of them passes only if all their fates are the
    expected one.

    Walks priorities downward keeping the part of the region no higher rule has claimed: a
    rule with another fate that meets it answers False (those packets win that rule, or are
    ambiguous with it); rules with the expected fate are subtracted from it.  In a priority
    group the wrong-fate rules are checked before any of the group is subtracted, which is
    what makes ties ambiguous rather than won by list order.  Stops with True once the region
    is used up, or once only expected fates are left below (miss included).

    Cost O(len(rules) * cubes * W); the remaining region is capped at `budget` cubes, past
    which TooComplex is raised (the caller keeps the exact rules).  Wrong-fate rules are only
    tested for overlap, never subtracted, so they never grow the region.
    """
    remaining = list(Space._cubes(region))
    _check(len(remaining), budget)
    if not remaining:
        return True
    ordered = sorted(rules, key=lambda r: -r[0])
    wrong_left = sum(1 for r in ordered if r[2] != expected_fate)
    miss_ok = miss_fate == expected_fate
    if not wrong_left and miss_ok:
        return True
    for _, group_iter in groupby(ordered, key=lambda r: r[0]):
        group = list(group_iter)
        good = []
        for _, c, fate in group:
            if fate == expected_fate:
                good.append(c)
                continue
            wrong_left -= 1
            cv, cm = c.value, c.mask
            for r in remaining:
                if not ((r.value ^ cv) & r.mask & cm):
                    return False
        if not wrong_left and miss_ok:
            return True
        for c in good:
            remaining = _minus(remaining, c, budget)
            if not remaining:
                return True
    return miss_ok
