"""The program stage's diff: what a pswitch is sent, given what it reported (pure).

The flow-statistics bytes here are built the way a pswitch sends them (os-ken's OFPFlowStats
serializer is not available for replies, so the layout comes from its pack string), with OVS's
habit of listing match fields in its own order.
"""

from __future__ import annotations

import struct

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.openflow import codec, oxm
from tenantvisor.program import diff
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.group import GroupSpec, bucket

COOKIE = layout.infra_cookie(3)


def _rule(port: int, out: int, prio: int = 100, cookie: int = COOKIE) -> PhysFlow:
    match = codec.encode_match(
        [codec.oxm_u32(oxm.IN_PORT, port), codec.oxm_mac(oxm.ETH_SRC, "02:00:00:00:00:01")]
    )
    ins = codec.encode_instructions(apply_actions=codec.output(out))
    return PhysFlow(7, 0, prio, match, ins, cookie)


def _stats_entry(pf: PhysFlow, *, reorder: bool = False, cookie: int | None = None) -> bytes:
    """One ofp_flow_stats as a pswitch reports `pf` (fields reversed with `reorder`)."""
    oxms = codec.parse_match(pf.match, 0)[0]
    match = codec.encode_match(list(reversed(oxms)) if reorder else oxms)
    length = 48 + len(match) + len(pf.instructions)
    head = struct.pack(
        ofp.OFP_FLOW_STATS_0_PACK_STR, length, pf.table, 5, 0, pf.priority, pf.idle_timeout,
        pf.hard_timeout, pf.flags, pf.cookie if cookie is None else cookie, 10, 1000,
    )  # fmt: skip
    return head + match + pf.instructions


def test_the_stats_layout_is_os_kens() -> None:
    assert struct.calcsize(ofp.OFP_FLOW_STATS_0_PACK_STR) == 48


def test_a_pswitch_that_has_everything_is_sent_nothing() -> None:
    want = [_rule(1, 2), _rule(2, 1)]
    have = diff.parse_flow_stats([b"".join(_stats_entry(pf, reorder=True) for pf in want)])
    assert len(have) == 2
    assert len(diff.reconcile_rules(7, want, have)) == 0


def test_missing_changed_and_stale_rules() -> None:
    keep, change, missing = _rule(1, 2), _rule(2, 1), _rule(3, 1)
    stale = _rule(4, 1)
    changed_on_switch = PhysFlow(7, 0, 100, change.match, codec.encode_instructions(
        apply_actions=codec.output(9)), COOKIE)  # fmt: skip
    reported = [keep, changed_on_switch, stale]
    have = diff.parse_flow_stats([b"".join(_stats_entry(pf) for pf in reported)])
    plan = diff.reconcile_rules(7, [keep, change, missing], have)
    assert plan.add == [missing]
    assert plan.modify == [change]  # in place: counters and duration stay
    assert [pf.key[1:3] for pf in plan.delete] == [(0, 100)]
    assert plan.delete[0].match.startswith(b"\x00\x01")  # deleted by the match it reported


def test_rules_that_are_not_ours_are_never_deleted() -> None:
    foreign = _rule(5, 1, cookie=0)  # an operator's rule: cookie 0
    have = diff.parse_flow_stats([_stats_entry(foreign)])
    assert len(diff.reconcile_rules(7, [], have)) == 0
    assert diff.is_ours(layout.DISCOVERY_COOKIE) and diff.is_ours(layout.tenant_cookie(1, 9))
    assert not diff.is_ours(0x1234)


def test_a_cookie_or_timeout_difference_is_an_add() -> None:
    """MODIFY changes neither cookies nor timeouts: such a rule is replaced with ADD."""
    pf = _rule(1, 2)
    have = diff.parse_flow_stats([_stats_entry(pf, cookie=layout.infra_cookie(4))])
    plan = diff.reconcile_rules(7, [pf], have)
    assert plan.add == [pf] and not plan.modify and not plan.delete


def test_a_truncated_reply_loses_its_tail_and_never_raises() -> None:
    entry = _stats_entry(_rule(1, 2))
    assert diff.parse_flow_stats([entry + entry[:30]]) == diff.parse_flow_stats([entry])
    assert diff.parse_flow_stats(None) == []


def test_groups_are_added_modified_and_removed_by_id() -> None:
    a = GroupSpec(7, 1, ofp.OFPGT_INDIRECT, bucket(codec.output(1)))
    b = GroupSpec(7, 2, ofp.OFPGT_FF, bucket(codec.output(2), 2) + bucket(codec.output(3), 3))
    c = GroupSpec(7, 3, ofp.OFPGT_INDIRECT, bucket(codec.output(4)))
    have = {1: (a.type, a.buckets), 2: (b.type, bucket(codec.output(3), 3)), 9: (1, b"")}
    plan = diff.reconcile_groups([a, b, c], have)
    assert plan.add == [c] and plan.modify == [b] and plan.delete == [9]


def test_group_desc_replies_parse_to_type_and_buckets() -> None:
    g = GroupSpec(7, 5, ofp.OFPGT_FF, bucket(codec.output(2), 2))
    entry = struct.pack(ofp.OFP_GROUP_DESC_STATS_PACK_STR, 8 + len(g.buckets), g.type, 5)
    assert diff.parse_group_desc([entry + g.buckets]) == {5: (g.type, g.buckets)}


def test_desired_to_desired() -> None:
    a, b, c = _rule(1, 2), _rule(2, 1), _rule(3, 1)
    b2 = PhysFlow(7, 0, 100, b.match, codec.encode_instructions(apply_actions=codec.output(5)),
                  COOKIE)  # fmt: skip
    plan = diff.diff_rules({a.key: a, b.key: b}, {b.key: b2, c.key: c})
    assert plan.add == [c] and plan.modify == [b2] and plan.delete == [a]
    g1 = GroupSpec(7, 1, ofp.OFPGT_INDIRECT, bucket(codec.output(1)))
    g1b = GroupSpec(7, 1, ofp.OFPGT_INDIRECT, bucket(codec.output(2)))
    g2 = GroupSpec(7, 2, ofp.OFPGT_INDIRECT, bucket(codec.output(3)))
    gplan = diff.diff_groups({(7, 1): g1}, {(7, 1): g1b, (7, 2): g2})
    assert gplan.add == [g2] and gplan.modify == [g1b]
    assert diff.stale_groups({(7, 1): g1, (7, 2): g2}, {(7, 1): g1}) == [g2]


def test_a_delete_only_takes_a_rule_that_still_carries_its_cookie() -> None:
    """A freed tag may be reused by another network at the same (table, priority, match):
    a late delete of the old rule must not take the new one."""
    pf = _rule(1, 2)
    msg = pf.delete_strict(9)
    cookie, mask, table, command = codec.FLOW_MOD_BODY.unpack_from(msg, 8)[:4]
    assert (cookie, mask) == (COOKIE, layout.ALL_ONES)
    assert (table, command) == (0, ofp.OFPFC_DELETE_STRICT)


def test_a_meter_without_burst_is_the_same_whatever_burst_ovs_reports() -> None:
    band = struct.pack("!HHII4x", ofp.OFPMBT_DROP, 16, 1_000_000, 0)
    reported = struct.pack("!HHII4x", ofp.OFPMBT_DROP, 16, 1_000_000, 1_000_000)
    assert diff.same_meter((ofp.OFPMF_KBPS, reported), (ofp.OFPMF_KBPS, band))
    other_rate = struct.pack("!HHII4x", ofp.OFPMBT_DROP, 16, 5, 5)
    assert not diff.same_meter((ofp.OFPMF_KBPS, other_rate), (ofp.OFPMF_KBPS, band))
    burst = ofp.OFPMF_KBPS | ofp.OFPMF_BURST
    assert not diff.same_meter((burst, reported), (burst, band))


def test_a_drop_rule_reported_without_instructions_is_no_difference() -> None:
    """OVS reports an empty APPLY_ACTIONS as no instruction at all."""
    drop = PhysFlow(7, 0, 100, _rule(1, 2).match, codec.encode_instructions(apply_actions=b""),
                    COOKIE)  # fmt: skip
    reported = PhysFlow(7, 0, 100, drop.match, b"", COOKIE)
    have = diff.parse_flow_stats([_stats_entry(reported)])
    assert len(diff.reconcile_rules(7, [drop], have)) == 0
