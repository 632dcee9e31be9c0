"""What must be sent to move a pswitch from one state to another (pure).

Rules are compared by (table, priority, normalized match): OVS reports match fields in its
own order.  A rule whose key is present with other instructions, timeouts or flags is
modified in place (MODIFY_STRICT keeps its counters and duration, as a reconnect must);
ADD would reset them.  Only rules whose cookie says they are tenantvisor's are ever deleted.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.openflow import codec
from tenantvisor.openflow.codec import MalformedMessage, OFError
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.group import GroupSpec
from tenantvisor.virtual.flowtable import NormMatch, normalize

_FLOW_STATS_MIN = 56
_GROUP_DESC_MIN = 8
_METER_CONFIG_MIN = 8


@dataclass(frozen=True, slots=True)
class DumpedFlow:
    """One entry of a flow statistics reply, as much of it as reconciliation compares."""

    table: int
    priority: int
    match: NormMatch
    raw_match: bytes
    instructions: bytes
    cookie: int
    idle_timeout: int
    hard_timeout: int
    flags: int


def is_ours(cookie: int) -> bool:
    """Whether a rule's cookie says tenantvisor installed it (a network's, or the
    provider's own): nothing else on a pswitch is ever touched."""
    return cookie >> layout.NET_SHIFT != 0 or cookie in (
        layout.DISCOVERY_COOKIE,
        layout.PROVIDER_COOKIE,
    )


def parse_flow_stats(parts: list[bytes] | None) -> list[DumpedFlow]:
    out = []
    for body, off, length in codec.entries(parts, _FLOW_STATS_MIN):
        end = off + length
        table = body[off + 2]
        prio, idle, hard, flags = struct.unpack_from("!HHHH", body, off + 12)
        cookie = struct.unpack_from("!Q", body, off + 24)[0]
        try:
            oxms, ins_at = codec.parse_match(body[:end], off + 48)
        except (MalformedMessage, OFError):
            continue
        out.append(
            DumpedFlow(
                table, prio, normalize(oxms), body[off + 48 : ins_at], body[ins_at:end], cookie,
                idle, hard, flags,
            )
        )  # fmt: skip
    return out


def parse_group_desc(parts: list[bytes] | None) -> dict[int, tuple[int, bytes]]:
    """group id -> (type, encoded buckets)."""
    out = {}
    for body, off, length in codec.entries(parts, _GROUP_DESC_MIN):
        gtype, gid = body[off + 2], codec.u32(body, off + 4)
        out[gid] = (gtype, body[off + 8 : off + length])
    return out


def parse_meter_config(parts: list[bytes] | None) -> dict[int, tuple[int, bytes]]:
    """meter id -> (flags, encoded bands)."""
    out = {}
    for body, off, length in codec.entries(parts, _METER_CONFIG_MIN):
        flags, mid = codec.u16(body, off + 2), codec.u32(body, off + 4)
        out[mid] = (flags, body[off + 8 : off + length])
    return out


def canonical_instructions(ins: bytes) -> bytes:
    """Instructions as a pswitch reports them back: OVS drops an APPLY_ACTIONS with no
    action (a drop rule), so an empty one is no difference."""
    out = []
    off = 0
    while off + 4 <= len(ins):
        itype, length = struct.unpack_from("!HH", ins, off)
        if length < 4 or off + length > len(ins):
            return ins  # not ours to judge: compared as it is
        if not (itype == ofp.OFPIT_APPLY_ACTIONS and length == 8):
            out.append(ins[off : off + length])
        off += length
    return b"".join(out)


def _norm(pf: PhysFlow) -> NormMatch:
    return normalize(codec.parse_match(pf.match, 0)[0])


# flags OVS reports back; others (CHECK_OVERLAP) act only when the rule is added
_REPORTED_FLAGS = ofp.OFPFF_SEND_FLOW_REM | ofp.OFPFF_NO_PKT_COUNTS | ofp.OFPFF_NO_BYT_COUNTS


@dataclass
class RulePlan:
    add: list[PhysFlow] = field(default_factory=list)
    modify: list[PhysFlow] = field(default_factory=list)
    delete: list[PhysFlow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.add) + len(self.modify) + len(self.delete)


def reconcile_rules(
    dpid: int,
    desired: Iterable[PhysFlow],
    have: list[DumpedFlow],
    deletable: Callable[[int], bool] = is_ours,
) -> RulePlan:
    """Send what is missing or different; delete what is not wanted and `deletable` by its
    cookie (ours; with several instances, only what this instance answers for)."""
    plan = RulePlan()
    want: dict[tuple[int, int, NormMatch], PhysFlow] = {}
    for pf in desired:
        want[(pf.table, pf.priority, _norm(pf))] = pf
    seen = set()
    for d in have:
        key = (d.table, d.priority, d.match)
        found = want.get(key)
        if found is None:
            if deletable(d.cookie):
                plan.delete.append(PhysFlow(dpid, d.table, d.priority, d.raw_match, b"", d.cookie))
            continue
        pf = found
        seen.add(key)
        if (
            (pf.idle_timeout, pf.hard_timeout) != (d.idle_timeout, d.hard_timeout)
            or (pf.flags & _REPORTED_FLAGS) != (d.flags & _REPORTED_FLAGS)
            or pf.cookie != d.cookie
        ):
            plan.add.append(pf)  # MODIFY changes neither timeouts nor cookies
        elif canonical_instructions(pf.instructions) != canonical_instructions(d.instructions):
            plan.modify.append(pf)
    plan.add.extend(pf for key, pf in want.items() if key not in seen)
    return plan


@dataclass
class GroupPlan:
    add: list[GroupSpec] = field(default_factory=list)
    modify: list[GroupSpec] = field(default_factory=list)
    delete: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.add) + len(self.modify) + len(self.delete)


def reconcile_groups(
    desired: Iterable[GroupSpec],
    have: dict[int, tuple[int, bytes]],
    deletable: Callable[[int], bool] = lambda gid: True,
) -> GroupPlan:
    """Groups carry no cookie: tenantvisor owns the group id space of its pswitches, and
    with several instances `deletable` says whose a group id is (the allocations)."""
    plan = GroupPlan()
    want = {g.group_id: g for g in desired}
    for gid, g in sorted(want.items()):
        cur = have.get(gid)
        if cur is None:
            plan.add.append(g)
        elif cur != (g.type, g.buckets):
            plan.modify.append(g)
    plan.delete = sorted(gid for gid in have if gid not in want and deletable(gid))
    return plan


def diff_rules(
    old: dict[tuple[int, int, int, bytes], PhysFlow],
    new: dict[tuple[int, int, int, bytes], PhysFlow],
) -> RulePlan:
    """From one desired state to the next (no pswitch read needed)."""
    plan = RulePlan()
    for key, pf in new.items():
        was = old.get(key)
        if was is None:
            plan.add.append(pf)
        elif was != pf:
            same_kind = (was.cookie, was.idle_timeout, was.hard_timeout, was.flags) == (
                pf.cookie, pf.idle_timeout, pf.hard_timeout, pf.flags,
            )  # fmt: skip
            (plan.modify if same_kind else plan.add).append(pf)
    plan.delete = [pf for key, pf in old.items() if key not in new]
    return plan


def diff_groups(
    old: dict[tuple[int, int], GroupSpec], new: dict[tuple[int, int], GroupSpec]
) -> GroupPlan:
    plan = GroupPlan()
    for key, g in new.items():
        was = old.get(key)
        if was is None:
            plan.add.append(g)
        elif was != g:
            plan.modify.append(g)
    return plan


def stale_groups(
    old: dict[tuple[int, int], GroupSpec], new: dict[tuple[int, int], GroupSpec]
) -> list[GroupSpec]:
    return [g for key, g in old.items() if key not in new]


def _bands_without_burst(bands: bytes) -> bytes:
    """Meter bands with their burst_size zeroed (ofp_meter_band_header: type, len, rate,
    burst_size, then the band's own fields)."""
    out = bytearray(bands)
    off = 0
    while off + 12 <= len(out):
        length = struct.unpack_from("!H", out, off + 2)[0]
        if length < 12:
            break
        out[off + 8 : off + 12] = bytes(4)
        off += length
    return bytes(out)


def same_meter(have: tuple[int, bytes], want: tuple[int, bytes]) -> bool:
    """Whether a pswitch's meter is the one wanted.  Without OFPMF_BURST a band's
    burst_size means nothing, and OVS reports it as the rate: not a difference."""
    (hf, hb), (wf, wb) = have, want
    if hf != wf:
        return False
    if wf & ofp.OFPMF_BURST:
        return hb == wb
    return _bands_without_burst(hb) == _bands_without_burst(wb)
