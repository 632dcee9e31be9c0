"""Pipeline cases: instructions (goto, metadata, action sets), groups of every type, meters,
and the FLOW_MOD commands (add, modify, delete, strict, overlap, cookies, timeouts)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.testbed.conformance.dsl import (
    Pin,
    apply,
    clear,
    custom,
    error_of,
    flow,
    fwd,
    goto,
    out,
    setf,
    write,
)
from tenantvisor.testbed.conformance.harness import DP, SRC_MACS, Case, Ctx, Obs, expect_obs
from tenantvisor.testbed.conformance.match import ARP, IP4, TCP4, UDP4
from tenantvisor.testbed.packets import ETH_IPV4, ETH_VLAN, PROTO_TCP, PROTO_UDP, Pkt

M1, M2, M3, M4 = SRC_MACS
VID = ofp.OFPVID_PRESENT
BAD_TABLE_ID = [ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_TABLE_ID]
_CLS = Callable[[Ctx], Sequence[Any]]


def inst(name: str, rules: _CLS, sends: Sequence[tuple[int, Pkt]], expect: dict[int, list[Pkt]],
         *, errors: list[list[int]] | None = None, ci: bool = False, ovs_note: str = "",
         kind: str = "instruction", packet_in: Sequence[Pin] = ()) -> Case:  # fmt: skip
    return fwd(f"{kind}/{name}", kind, rules, sends, expect, install_errors=errors or [], ci=ci,
               ovs_note=ovs_note, packet_in=packet_in)  # fmt: skip


def bucket(actions: list[Any], weight: int = 0, watch_port: int = ofp.OFPP_ANY,
           watch_group: int = ofp.OFPG_ANY) -> Any:  # fmt: skip
    return p.OFPBucket(weight, watch_port, watch_group, actions)


def group_mod(gid: int, gtype: int, buckets: list[Any], command: int = ofp.OFPGC_ADD) -> Any:
    return p.OFPGroupMod(DP, command, gtype, gid, buckets)


def meter_mod(mid: int, bands: list[Any], flags: int = ofp.OFPMF_KBPS,
              command: int = ofp.OFPMC_ADD) -> Any:  # fmt: skip
    return p.OFPMeterMod(DP, command, flags, mid, bands)


def via_group(c: Ctx) -> Any:
    """Port 1's frames into group 1."""
    return flow(p.OFPMatch(in_port=c.p(1)), [p.OFPActionGroup(1)])


def cases() -> list[Case]:
    return [*_instructions(), *_groups(), *_meters(), *_flow_mods()]


# --- instructions ------------------------------------------------------------------------
def _instructions() -> list[Case]:
    c: list[Case] = []
    c.append(inst("goto_table", lambda x: [
        flow(p.OFPMatch(in_port=x.p(1)), inst=[goto(1)]),
        flow(p.OFPMatch(eth_type=ETH_IPV4), [out(x.p(2))], table=1),
    ], [(1, UDP4), (1, ARP)], {2: [UDP4]}, ci=True))  # fmt: skip
    c.append(inst("goto_table_skips_tables", lambda x: [
        flow(None, inst=[goto(5)]),
        flow(None, [out(x.p(3))], table=1),
        flow(None, [out(x.p(2))], table=5),
    ], [(1, UDP4)], {2: [UDP4]}))  # fmt: skip
    c.append(inst("goto_table_then_miss_drops", lambda x: [flow(None, inst=[goto(1)])],
                  [(1, UDP4)], {}))  # fmt: skip
    c.append(inst("goto_table_last_offered", lambda x: [
        flow(None, inst=[goto(63)]), flow(None, [out(x.p(2))], table=63),
    ], [(1, UDP4)], {2: [UDP4]}))  # fmt: skip
    c.append(inst("goto_table_100", lambda x: [
        flow(None, inst=[goto(100)]), flow(None, [out(x.p(2))], table=100),
    ], [(1, UDP4)], {2: [UDP4]}))  # fmt: skip
    c.append(inst("goto_table_backwards_refused", lambda x: [
        flow(None, inst=[goto(1)], table=2),
    ], [(1, UDP4)], {}, errors=[BAD_TABLE_ID]))  # fmt: skip
    c.append(inst("goto_table_same_refused", lambda x: [flow(None, inst=[goto(0)])],
                  [(1, UDP4)], {}, errors=[BAD_TABLE_ID]))  # fmt: skip
    c.append(inst("apply_then_goto", lambda x: [
        flow(None, inst=[apply(setf(eth_dst="02:00:00:00:00:bb")), goto(1)]),
        flow(p.OFPMatch(eth_dst="02:00:00:00:00:bb"), [out(x.p(2))], table=1),
    ], [(1, UDP4)], {2: [UDP4.but(eth_dst="02:00:00:00:00:bb")]}, ci=True))  # fmt: skip
    c.append(inst("write_metadata_masks", lambda x: [
        flow(None, inst=[p.OFPInstructionWriteMetadata(0x0F, 0x0F), goto(1)]),
        flow(None, inst=[p.OFPInstructionWriteMetadata(0xF0, 0xF0), goto(2)], table=1),
        flow(p.OFPMatch(metadata=0xFF), [out(x.p(2))], table=2),
    ], [(1, UDP4)], {2: [UDP4]}))  # fmt: skip
    c.append(inst("write_metadata_all_bits", lambda x: [
        flow(None, inst=[p.OFPInstructionWriteMetadata(0x5, 0xFFFFFFFFFFFFFFFF), goto(1)]),
        flow(p.OFPMatch(metadata=0x5), [out(x.p(2))], table=1),
    ], [(1, UDP4)], {2: [UDP4]}))  # fmt: skip
    c.append(inst("write_actions", lambda x: [flow(None, inst=[write(out(x.p(2)))])],
                  [(1, UDP4)], {2: [UDP4]}, ci=True))  # fmt: skip
    c.append(inst("write_actions_set_field", lambda x: [
        flow(None, inst=[write(out(x.p(2)), setf(eth_dst="02:00:00:00:00:bb"))]),
    ], [(1, UDP4)], {2: [UDP4.but(eth_dst="02:00:00:00:00:bb")]}))  # fmt: skip
    c.append(inst("write_actions_order_push_before_output", lambda x: [
        flow(None, inst=[write(out(x.p(2)), p.OFPActionPushVlan(ETH_VLAN))]),
    ], [(1, UDP4)], {2: [UDP4.but(vlans=((ETH_VLAN, 0, 0),))]}))  # fmt: skip
    c.append(inst("write_actions_set_vlan_needs_vlan_match", lambda x: [
        flow(None, inst=[write(out(x.p(2)), setf(vlan_vid=VID | 9),
                               p.OFPActionPushVlan(ETH_VLAN))]),
    ], [(1, UDP4)], {}, errors=[[ofp.OFPET_BAD_ACTION, ofp.OFPBAC_MATCH_INCONSISTENT]],
        ovs_note="OVS checks set_field prerequisites against the match, before the push "
        "the action set would do"))  # fmt: skip
    c.append(
        inst(
            "write_actions_flood",
            lambda x: [
                flow(None, inst=[write(out(ofp.OFPP_FLOOD))]),
            ],
            [(1, UDP4), (3, ARP)],
            {2: [UDP4, ARP], 3: [UDP4], 4: [UDP4, ARP], 1: [ARP]},
        )
    )
    c.append(
        inst(
            "write_actions_all_after_rewrite",
            lambda x: [
                flow(None, inst=[write(out(ofp.OFPP_ALL), setf(eth_dst="02:00:00:00:00:bb"))]),
            ],
            [(2, UDP4)],
            {a: [UDP4.but(eth_dst="02:00:00:00:00:bb")] for a in (1, 3, 4)},
        )
    )
    c.append(inst("write_actions_in_port", lambda x: [
        flow(None, inst=[write(out(ofp.OFPP_IN_PORT))]),
    ], [(4, UDP4)], {4: [UDP4]}))  # fmt: skip
    c.append(inst("write_actions_dec_ttl", lambda x: [
        flow(p.OFPMatch(eth_type=ETH_IPV4), inst=[write(out(x.p(2)), p.OFPActionDecNwTtl())]),
    ], [(1, UDP4)], {2: [UDP4.but(ttl=63)]}))  # fmt: skip
    c.append(inst("write_actions_later_table_replaces", lambda x: [
        flow(None, inst=[write(out(x.p(3))), goto(1)]),
        flow(None, inst=[write(out(x.p(2)))], table=1),
    ], [(1, UDP4)], {2: [UDP4]}, ci=True))  # fmt: skip
    c.append(inst("write_actions_merge_across_tables", lambda x: [
        flow(None, inst=[write(setf(eth_dst="02:00:00:00:00:bb")), goto(1)]),
        flow(None, inst=[write(out(x.p(2)))], table=1),
    ], [(1, UDP4)], {2: [UDP4.but(eth_dst="02:00:00:00:00:bb")]}))  # fmt: skip
    c.append(inst("apply_and_write", lambda x: [
        flow(None, inst=[apply(out(x.p(2))), write(out(x.p(3)))]),
    ], [(1, UDP4)], {2: [UDP4], 3: [UDP4]}))  # fmt: skip
    c.append(inst("clear_actions", lambda x: [
        flow(None, inst=[write(out(x.p(3))), goto(1)]),
        flow(None, inst=[clear()], table=1),
    ], [(1, UDP4)], {}, ci=True))  # fmt: skip
    c.append(inst("clear_then_write", lambda x: [
        flow(None, inst=[write(out(x.p(3))), goto(1)]),
        flow(None, inst=[clear(), write(out(x.p(2)))], table=1),
    ], [(1, UDP4)], {2: [UDP4]}))  # fmt: skip
    c.append(inst("action_set_group_beats_output", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))])]),
        flow(None, inst=[write(out(x.p(3)), p.OFPActionGroup(1))]),
    ], [(1, UDP4)], {2: [UDP4]}))  # fmt: skip
    c.append(inst("empty_instructions_drop", lambda x: [flow(None, inst=[])], [(1, UDP4)], {}))
    # a later table matches the packet as an earlier one rewrote it
    tagged = UDP4.but(vlans=((ETH_VLAN, 0, 33),))
    c.append(inst("push_vlan_then_match_it", lambda x: [
        flow(None, inst=[apply(p.OFPActionPushVlan(ETH_VLAN), setf(vlan_vid=VID | 33)),
                         goto(1)]),
        flow(p.OFPMatch(vlan_vid=VID | 33), [out(x.p(2))], table=1),
    ], [(1, UDP4)], {2: [tagged]}))  # fmt: skip
    c.append(inst("pop_vlan_then_match_untagged", lambda x: [
        flow(p.OFPMatch(vlan_vid=(VID, VID)), inst=[apply(p.OFPActionPopVlan()), goto(1)]),
        flow(p.OFPMatch(vlan_vid=ofp.OFPVID_NONE, eth_type=ETH_IPV4), [out(x.p(3))], table=1),
    ], [(1, tagged)], {3: [UDP4]}))  # fmt: skip
    c.append(inst("set_ipv4_then_match_it", lambda x: [
        flow(p.OFPMatch(**IP4), inst=[apply(setf(ipv4_dst="10.4.4.4")), goto(1)]),
        flow(p.OFPMatch(eth_type=ETH_IPV4, ipv4_dst="10.4.4.4"), [out(x.p(4))], table=1),
    ], [(1, UDP4)], {4: [UDP4.but(ip_dst="10.4.4.4")]}))  # fmt: skip
    c.append(inst("set_eth_dst_in_one_table_match_in_the_third", lambda x: [
        flow(None, inst=[apply(setf(eth_dst="02:00:00:00:00:cc")), goto(1)]),
        flow(None, inst=[goto(2)], table=1),
        flow(p.OFPMatch(eth_dst="02:00:00:00:00:cc"), [out(x.p(2))], table=2),
    ], [(1, ARP)], {2: [ARP.but(eth_dst="02:00:00:00:00:cc")]}))  # fmt: skip
    c.append(inst("table_miss_rule_in_next_table", lambda x: [
        flow(None, inst=[goto(1)]),
        flow(None, [out(x.p(2))], table=1, priority=0),
    ], [(1, UDP4), (1, ARP)], {2: [UDP4, ARP]}))  # fmt: skip
    c.append(inst("rule_in_table_200", lambda x: [flow(None, [out(x.p(2))], table=200)],
                  [(1, UDP4)], {}))  # fmt: skip
    return c


# --- groups ------------------------------------------------------------------------------
def _groups() -> list[Case]:
    c: list[Case] = []

    def g(name: str, rules: _CLS, sends: Sequence[tuple[int, Pkt]], expect: dict[int, list[Pkt]],
          **kw: Any) -> None:  # fmt: skip
        c.append(inst(name, rules, sends, expect, kind="group", **kw))

    g("all", lambda x: [group_mod(1, ofp.OFPGT_ALL, [bucket([out(x.p(2))]), bucket([out(x.p(3))])]),
                        via_group(x)],
      [(1, UDP4)], {2: [UDP4], 3: [UDP4]}, ci=True)  # fmt: skip
    g("all_buckets_rewrite_apart", lambda x: [
        group_mod(1, ofp.OFPGT_ALL, [bucket([setf(eth_dst="02:00:00:00:00:bb"), out(x.p(2))]),
                                     bucket([out(x.p(3))])]),
        via_group(x),
    ], [(1, UDP4)], {2: [UDP4.but(eth_dst="02:00:00:00:00:bb")], 3: [UDP4]})  # fmt: skip
    g("all_bucket_in_port", lambda x: [
        group_mod(1, ofp.OFPGT_ALL, [bucket([out(ofp.OFPP_IN_PORT)]), bucket([out(x.p(3))])]),
        via_group(x),
    ], [(1, UDP4)], {1: [UDP4], 3: [UDP4]})  # fmt: skip
    g("all_bucket_flood", lambda x: [
        group_mod(1, ofp.OFPGT_ALL, [bucket([out(ofp.OFPP_FLOOD)])]), via_group(x),
    ], [(1, UDP4)], {2: [UDP4], 3: [UDP4], 4: [UDP4]})  # fmt: skip
    g("bucket_is_an_action_set", lambda x: [
        group_mod(1, ofp.OFPGT_ALL, [bucket([out(x.p(2)), setf(eth_dst="02:00:00:00:00:bb"),
                                             out(x.p(3))])]),
        via_group(x),
    ], [(1, UDP4)], {3: [UDP4.but(eth_dst="02:00:00:00:00:bb")]},
      ovs_note="OVS executes a bucket as an action set: one output, the last")  # fmt: skip
    g("all_bucket_flood_after_rewrite", lambda x: [
        group_mod(1, ofp.OFPGT_ALL, [bucket([setf(eth_dst="02:00:00:00:00:bb"),
                                             out(ofp.OFPP_FLOOD)]), bucket([out(x.p(2))])]),
        via_group(x),
    ], [(1, UDP4)], {2: [UDP4.but(eth_dst="02:00:00:00:00:bb"), UDP4],
                     3: [UDP4.but(eth_dst="02:00:00:00:00:bb")],
                     4: [UDP4.but(eth_dst="02:00:00:00:00:bb")]})  # fmt: skip
    g("all_bucket_to_ingress_dropped", lambda x: [
        group_mod(1, ofp.OFPGT_ALL, [bucket([out(x.p(1))]), bucket([out(x.p(2))])]),
        via_group(x),
    ], [(1, UDP4)], {2: [UDP4]})  # fmt: skip
    g("all_bucket_controller", lambda x: [
        group_mod(1, ofp.OFPGT_ALL, [bucket([out(ofp.OFPP_CONTROLLER)]), bucket([out(x.p(2))])]),
        via_group(x),
    ], [(1, TCP4)], {2: [TCP4]}, packet_in=[Pin(ofp.OFPR_ACTION, TCP4)])  # fmt: skip
    g("indirect", lambda x: [group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))])]),
                             via_group(x)],
      [(1, UDP4), (1, ARP)], {2: [UDP4, ARP]}, ci=True)  # fmt: skip
    g("indirect_push_vlan", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([p.OFPActionPushVlan(ETH_VLAN),
                                                  setf(vlan_vid=VID | 12), out(x.p(2))])]),
        via_group(x),
    ], [(1, UDP4)], {2: [UDP4.but(vlans=((ETH_VLAN, 0, 12),))]})  # fmt: skip
    g("select_one_bucket", lambda x: [
        group_mod(1, ofp.OFPGT_SELECT, [bucket([out(x.p(2))], weight=1)]), via_group(x),
    ], [(1, UDP4)], {2: [UDP4]})  # fmt: skip
    g("select_zero_weight_never", lambda x: [
        group_mod(1, ofp.OFPGT_SELECT, [bucket([out(x.p(2))], weight=0),
                                        bucket([out(x.p(3))], weight=1)]),
        via_group(x),
    ], [(1, UDP4), (1, TCP4)], {3: [UDP4, TCP4]})  # fmt: skip
    c.append(custom("group/select_one_of_two", "group", _select_two, {"copies": 4, "where": "2|3"},
                    ci=True))  # fmt: skip
    g("fast_failover_first_live", lambda x: [
        group_mod(1, ofp.OFPGT_FF, [bucket([out(x.p(2))], watch_port=x.p(2)),
                                    bucket([out(x.p(3))], watch_port=x.p(3))]),
        via_group(x),
    ], [(1, UDP4)], {2: [UDP4]}, ci=True)  # fmt: skip
    c.append(
        custom(
            "group/fast_failover_port_down",
            "group",
            _ff_down,
            lambda mk: expect_obs(mk, {3: [UDP4]}) | {"install": []},
            ci=True,
        )
    )
    g("fast_failover_watch_group", lambda x: [
        group_mod(2, ofp.OFPGT_INDIRECT, [bucket([out(x.p(4))])]),
        group_mod(1, ofp.OFPGT_FF, [bucket([p.OFPActionGroup(2)], watch_group=2)]),
        via_group(x),
    ], [(1, UDP4)], {4: [UDP4]})  # fmt: skip
    g("chained_indirect_to_all", lambda x: [
        group_mod(2, ofp.OFPGT_ALL, [bucket([out(x.p(3))]), bucket([out(x.p(4))])]),
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([p.OFPActionGroup(2)])]),
        via_group(x),
    ], [(1, UDP4)], {3: [UDP4], 4: [UDP4]})  # fmt: skip
    g("group_and_output", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))])]),
        flow(p.OFPMatch(in_port=x.p(1)), [p.OFPActionGroup(1), out(x.p(3))]),
    ], [(1, UDP4)], {2: [UDP4], 3: [UDP4]})  # fmt: skip
    g("add_existing_refused", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))])]),
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(3))])]),
        via_group(x),
    ], [(1, UDP4)], {2: [UDP4]},
      errors=[[ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_GROUP_EXISTS]])  # fmt: skip
    g("modify_buckets", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))])]),
        via_group(x),
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(3))])], ofp.OFPGC_MODIFY),
    ], [(1, UDP4)], {3: [UDP4]}, ci=True)  # fmt: skip
    g("modify_type", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))])]),
        via_group(x),
        group_mod(1, ofp.OFPGT_ALL, [bucket([out(x.p(3))]), bucket([out(x.p(4))])],
                  ofp.OFPGC_MODIFY),
    ], [(1, UDP4)], {3: [UDP4], 4: [UDP4]})  # fmt: skip
    g(
        "modify_unknown_refused",
        lambda x: [
            group_mod(7, ofp.OFPGT_INDIRECT, [bucket([out(x.p(3))])], ofp.OFPGC_MODIFY),
        ],
        [(1, UDP4)],
        {},
        errors=[[ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_UNKNOWN_GROUP]],
    )
    g("delete_removes_its_rules", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))])]),
        via_group(x),
        flow(p.OFPMatch(in_port=x.p(1)), [out(x.p(4))], priority=50),
        group_mod(1, ofp.OFPGT_INDIRECT, [], ofp.OFPGC_DELETE),
    ], [(1, UDP4)], {4: [UDP4]}, ci=True)  # fmt: skip
    g("delete_unknown_is_fine", lambda x: [
        group_mod(9, ofp.OFPGT_INDIRECT, [], ofp.OFPGC_DELETE),
    ], [], {})  # fmt: skip
    g("delete_all", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))])]),
        group_mod(2, ofp.OFPGT_INDIRECT, [bucket([out(x.p(3))])]),
        via_group(x),
        group_mod(ofp.OFPG_ALL, ofp.OFPGT_INDIRECT, [], ofp.OFPGC_DELETE),
    ], [(1, UDP4)], {})  # fmt: skip
    g("unknown_group_action_refused", lambda x: [via_group(x)], [(1, UDP4)], {},
      errors=[[ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP]])  # fmt: skip
    g("bad_type_refused", lambda x: [group_mod(1, 9, [bucket([out(x.p(2))])])], [], {},
      errors=[[ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_BAD_TYPE]])  # fmt: skip
    g("invalid_id_refused", lambda x: [group_mod(ofp.OFPG_ANY, ofp.OFPGT_INDIRECT,
                                                 [bucket([out(x.p(2))])])],
      [], {}, errors=[[ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_INVALID_GROUP]])  # fmt: skip
    g("indirect_two_buckets_refused", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))]), bucket([out(x.p(3))])]),
    ], [], {}, errors=[[ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_INVALID_GROUP]])  # fmt: skip
    g("chain_to_group_added_later", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([p.OFPActionGroup(5)])]),
        group_mod(5, ofp.OFPGT_INDIRECT, [bucket([out(x.p(3))])]),
        via_group(x),
    ], [(1, UDP4)], {3: [UDP4]},
      ovs_note="OVS takes a bucket naming a group that does not exist yet")  # fmt: skip
    g("bucket_set_field_ipv4", lambda x: [
        group_mod(1, ofp.OFPGT_ALL, [bucket([setf(ipv4_dst="10.3.3.3"), out(x.p(2))]),
                                     bucket([out(x.p(3))])]),
        flow(p.OFPMatch(in_port=x.p(1), **IP4), [p.OFPActionGroup(1)]),
    ], [(1, UDP4)], {2: [UDP4.but(ip_dst="10.3.3.3")], 3: [UDP4]})  # fmt: skip
    return c


def _select_two(c: Ctx) -> Obs:
    """A select group over ports 2 and 3: each frame leaves by exactly one of them."""
    errs = c.install([
        group_mod(1, ofp.OFPGT_SELECT, [bucket([out(c.p(2))], weight=1),
                                        bucket([out(c.p(3))], weight=1)]),
        via_group(c),
    ])  # fmt: skip
    frames = [UDP4, UDP4.but(sport=1001), TCP4, ARP]
    for f in frames:
        c.inject(1, f)
    obs = c.observe(len(frames))
    got = obs.get("out", {})
    copies = sum(len(v) for v in got.values())
    where = "|".join(sorted(got)) if set(got) <= {"2", "3"} else ",".join(sorted(got))
    if set(got) < {"2", "3"} and got:
        where = "2|3"  # all hashed to one bucket: still one copy each
    result: Obs = {"copies": copies, "where": where}
    if errs or obs["errors"]:
        result["errors"] = errs + obs["errors"]
    return result


def _ff_down(c: Ctx) -> Obs:
    """Port 2 down: a fast-failover group watching it uses its next bucket (port 3)."""
    errs = c.install([
        group_mod(1, ofp.OFPGT_FF, [bucket([out(c.p(2))], watch_port=c.p(2)),
                                    bucket([out(c.p(3))], watch_port=c.p(3))]),
        via_group(c),
    ])  # fmt: skip
    c.link(2, False)
    c.cleanups.append(lambda: time.sleep(0.4))  # both switches see it up again
    time.sleep(0.4)
    c.inject(1, UDP4)
    obs = c.observe(1)
    obs["install"] = errs
    return obs


# --- meters ------------------------------------------------------------------------------
def _meters() -> list[Case]:
    c: list[Case] = []

    def mt(name: str, rules: _CLS, sends: Sequence[tuple[int, Pkt]], expect: dict[int, list[Pkt]],
           **kw: Any) -> None:  # fmt: skip
        c.append(inst(name, rules, sends, expect, kind="meter", **kw))

    def metered(x: Ctx, mid: int = 1) -> Any:
        return flow(p.OFPMatch(in_port=x.p(1)), inst=[p.OFPInstructionMeter(mid, ofp.OFPIT_METER),
                                                       apply(out(x.p(2)))])  # fmt: skip

    mt("drop_band_under_rate_passes", lambda x: [
        meter_mod(1, [p.OFPMeterBandDrop(rate=100000, burst_size=1000)]), metered(x),
    ], [(1, UDP4), (1, TCP4)], {2: [UDP4, TCP4]}, ci=True)  # fmt: skip
    mt("pktps_band_under_rate_passes", lambda x: [
        meter_mod(1, [p.OFPMeterBandDrop(rate=1000, burst_size=100)],
                  ofp.OFPMF_PKTPS | ofp.OFPMF_BURST),
        metered(x),
    ], [(1, UDP4)], {2: [UDP4]})  # fmt: skip
    c.append(custom("meter/pktps_band_drops_over_rate", "meter", _meter_limits,
                    {"sent": 20, "passed_some": True, "dropped_some": True, "band_counted": True},
                    ci=True))  # fmt: skip
    invalid = [ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_INVALID_METER]
    mt("no_bands", lambda x: [meter_mod(1, []), metered(x)], [(1, UDP4)], {},
       errors=[[ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_BANDS], invalid],
       ovs_note="OVS refuses a meter without bands (OUT_OF_BANDS)")  # fmt: skip
    mt("dscp_remark_band", lambda x: [
        meter_mod(1, [p.OFPMeterBandDscpRemark(rate=100000, burst_size=1000, prec_level=1)]),
        metered(x),
    ], [(1, UDP4)], {}, errors=[[ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_BAND], invalid],
       ovs_note="OVS's userspace datapath has drop bands only (BAD_BAND)")  # fmt: skip
    mt("unknown_meter_refused", lambda x: [metered(x, 3)], [(1, UDP4)], {}, errors=[invalid],
       ovs_note="OVS answers INVALID_METER (the spec: UNKNOWN_METER)")  # fmt: skip
    mt("add_existing_refused", lambda x: [
        meter_mod(1, [p.OFPMeterBandDrop(rate=100000, burst_size=1000)]),
        meter_mod(1, [p.OFPMeterBandDrop(rate=100000, burst_size=1000)]),
    ], [], {}, errors=[[ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_METER_EXISTS]])  # fmt: skip
    mt("modify_unknown_refused", lambda x: [
        meter_mod(4, [p.OFPMeterBandDrop(rate=100000, burst_size=1000)], command=ofp.OFPMC_MODIFY),
    ], [], {}, errors=[[ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_UNKNOWN_METER]])  # fmt: skip
    mt("modify_keeps_rules", lambda x: [
        meter_mod(1, [p.OFPMeterBandDrop(rate=100000, burst_size=1000)]), metered(x),
        meter_mod(1, [p.OFPMeterBandDrop(rate=200000, burst_size=1000)], command=ofp.OFPMC_MODIFY),
    ], [(1, UDP4)], {2: [UDP4]})  # fmt: skip
    mt("delete_removes_its_rules", lambda x: [
        meter_mod(1, [p.OFPMeterBandDrop(rate=100000, burst_size=1000)]), metered(x),
        meter_mod(1, [], command=ofp.OFPMC_DELETE),
    ], [(1, UDP4)], {}, ci=True)  # fmt: skip
    mt("invalid_id_refused", lambda x: [
        meter_mod(0, [p.OFPMeterBandDrop(rate=100000, burst_size=1000)]),
    ], [], {}, errors=[[ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_INVALID_METER]])  # fmt: skip
    mt("bad_rate_refused", lambda x: [meter_mod(1, [p.OFPMeterBandDrop(rate=0, burst_size=0)])],
       [], {}, errors=[[ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_RATE]])  # fmt: skip
    mt("two_rules_share_meter", lambda x: [
        meter_mod(1, [p.OFPMeterBandDrop(rate=100000, burst_size=1000)]),
        metered(x),
        flow(p.OFPMatch(in_port=x.p(3)), inst=[p.OFPInstructionMeter(1, ofp.OFPIT_METER),
                                               apply(out(x.p(4)))]),
    ], [(1, UDP4), (3, ARP)], {2: [UDP4], 4: [ARP]})  # fmt: skip
    return c


def _meter_limits(c: Ctx) -> Obs:
    """1 packet/s with a burst of 2: of 20 frames sent at once some pass, most are
    dropped, and the band counts them."""
    errs = c.install([
        meter_mod(1, [p.OFPMeterBandDrop(rate=1, burst_size=2)],
                  ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS),
        flow(p.OFPMatch(in_port=c.p(1)), inst=[p.OFPInstructionMeter(1, ofp.OFPIT_METER),
                                               apply(out(c.p(2)))]),
    ])  # fmt: skip
    for i in range(20):
        c.inject(1, UDP4.but(sport=3000 + i))
    obs = c.observe(20, quiet=0.3)
    passed = len(obs.get("out", {}).get("2", []))
    stats = c.multipart(p.OFPMeterStatsRequest(DP, 0, 1))
    band = 0
    if not error_of(stats) and stats:
        band = sum(b.packet_band_count for b in stats[0].band_stats)
    result: Obs = {"sent": 20, "passed_some": passed > 0, "dropped_some": passed < 20,
                   "band_counted": band == 20 - passed}  # fmt: skip
    if errs or obs["errors"]:
        result["errors"] = errs + obs["errors"]
    return result


# --- FLOW_MOD commands -------------------------------------------------------------------
def _flow_stats(c: Ctx, **kw: Any) -> list[Any]:
    kw.setdefault("table_id", ofp.OFPTT_ALL)
    kw.setdefault("out_port", ofp.OFPP_ANY)
    kw.setdefault("out_group", ofp.OFPG_ANY)
    kw.setdefault("cookie", 0)
    kw.setdefault("cookie_mask", 0)
    kw.setdefault("match", p.OFPMatch())
    got = c.multipart(p.OFPFlowStatsRequest(DP, 0, **kw))
    return [] if error_of(got) else list(got)


def _flow_mods() -> list[Case]:
    c: list[Case] = []

    def fm(name: str, rules: _CLS, sends: Sequence[tuple[int, Pkt]], expect: dict[int, list[Pkt]],
           **kw: Any) -> None:  # fmt: skip
        c.append(inst(name, rules, sends, expect, kind="flow_mod", **kw))

    udp = p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_UDP)
    fm("modify_changes_actions", lambda x: [
        flow(udp, [out(x.p(2))]),
        flow(p.OFPMatch(), [out(x.p(3))], command=ofp.OFPFC_MODIFY),
    ], [(1, UDP4)], {3: [UDP4]}, ci=True)  # fmt: skip
    fm("modify_strict_only_exact", lambda x: [
        flow(udp, [out(x.p(2))], priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4), [out(x.p(4))], priority=5),
        flow(udp, [out(x.p(3))], priority=10, command=ofp.OFPFC_MODIFY_STRICT),
        flow(p.OFPMatch(), [out(x.p(4))], priority=10, command=ofp.OFPFC_MODIFY_STRICT),
    ], [(1, UDP4), (1, TCP4)], {3: [UDP4], 4: [TCP4]})  # fmt: skip
    fm("modify_nothing_adds_nothing", lambda x: [
        flow(udp, [out(x.p(3))], command=ofp.OFPFC_MODIFY),
    ], [(1, UDP4)], {})  # fmt: skip
    fm("modify_by_cookie", lambda x: [
        flow(udp, [out(x.p(2))], cookie=0x11, priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_TCP), [out(x.p(2))], cookie=0x22,
             priority=10),
        flow(None, [out(x.p(3))], cookie=0x11, cookie_mask=0xFF, command=ofp.OFPFC_MODIFY),
    ], [(1, UDP4), (1, TCP4)], {3: [UDP4], 2: [TCP4]})  # fmt: skip
    fm("delete_non_strict", lambda x: [
        flow(udp, [out(x.p(2))], priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_TCP), [out(x.p(2))], priority=20),
        flow(p.OFPMatch(), [out(x.p(3))], priority=1),
        flow(p.OFPMatch(eth_type=ETH_IPV4), command=ofp.OFPFC_DELETE),
    ], [(1, UDP4), (1, TCP4)], {3: [UDP4, TCP4]}, ci=True)  # fmt: skip
    fm("delete_strict", lambda x: [
        flow(udp, [out(x.p(2))], priority=10),
        flow(udp, [out(x.p(4))], priority=5),
        flow(udp, priority=10, command=ofp.OFPFC_DELETE_STRICT),
    ], [(1, UDP4)], {4: [UDP4]})  # fmt: skip
    fm("delete_strict_needs_priority", lambda x: [
        flow(udp, [out(x.p(2))], priority=10),
        flow(udp, priority=11, command=ofp.OFPFC_DELETE_STRICT),
    ], [(1, UDP4)], {2: [UDP4]})  # fmt: skip
    fm("delete_by_out_port", lambda x: [
        flow(udp, [out(x.p(2))], priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_TCP), [out(x.p(3))], priority=10),
        flow(None, command=ofp.OFPFC_DELETE, out_port=x.p(2)),
    ], [(1, UDP4), (1, TCP4)], {3: [TCP4]})  # fmt: skip
    fm("delete_by_out_group", lambda x: [
        group_mod(1, ofp.OFPGT_INDIRECT, [bucket([out(x.p(2))])]),
        flow(udp, [p.OFPActionGroup(1)], priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_TCP), [out(x.p(3))], priority=10),
        flow(None, command=ofp.OFPFC_DELETE, out_group=1),
    ], [(1, UDP4), (1, TCP4)], {3: [TCP4]})  # fmt: skip
    fm("delete_by_cookie_mask", lambda x: [
        flow(udp, [out(x.p(2))], cookie=0x1234, priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_TCP), [out(x.p(3))], cookie=0x5634,
             priority=10),
        flow(None, command=ofp.OFPFC_DELETE, cookie=0x1200, cookie_mask=0xFF00),
    ], [(1, UDP4), (1, TCP4)], {3: [TCP4]}, ci=True)  # fmt: skip
    fm("delete_in_one_table", lambda x: [
        flow(None, inst=[goto(1)], priority=1),
        flow(udp, [out(x.p(2))], priority=10),
        flow(None, [out(x.p(3))], table=1),
        flow(None, command=ofp.OFPFC_DELETE, table=0),
    ], [(1, UDP4)], {})  # fmt: skip
    fm("delete_all_tables", lambda x: [
        flow(None, inst=[goto(1)], priority=1),
        flow(None, [out(x.p(3))], table=1),
        flow(None, command=ofp.OFPFC_DELETE, table=ofp.OFPTT_ALL),
        flow(p.OFPMatch(in_port=x.p(1)), [out(x.p(2))], priority=1),
    ], [(1, UDP4)], {2: [UDP4]})  # fmt: skip
    fm("check_overlap_refused", lambda x: [
        flow(udp, [out(x.p(2))], priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4), [out(x.p(3))], priority=10,
             flags=ofp.OFPFF_CHECK_OVERLAP),
    ], [(1, UDP4), (1, TCP4)], {2: [UDP4]},
       errors=[[ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_OVERLAP]], ci=True)  # fmt: skip
    fm("check_overlap_other_priority_fine", lambda x: [
        flow(udp, [out(x.p(2))], priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4), [out(x.p(3))], priority=9,
             flags=ofp.OFPFF_CHECK_OVERLAP),
    ], [(1, UDP4), (1, TCP4)], {2: [UDP4], 3: [TCP4]})  # fmt: skip
    fm("add_same_match_replaces", lambda x: [
        flow(udp, [out(x.p(2))], priority=10),
        flow(udp, [out(x.p(3))], priority=10),
    ], [(1, UDP4)], {3: [UDP4]})  # fmt: skip
    fm(
        "bad_table_refused",
        lambda x: [flow(udp, [out(x.p(2))], table=ofp.OFPTT_ALL)],
        [(1, UDP4)],
        {},
        errors=[[ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID]],
    )
    fm(
        "bad_command_refused",
        lambda x: [flow(udp, [out(x.p(2))], command=9)],
        [(1, UDP4)],
        {},
        errors=[[ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_COMMAND]],
    )
    fm(
        "unknown_buffer_refused",
        lambda x: [flow(udp, [out(x.p(2))], buffer_id=1234)],
        [(1, UDP4)],
        {},
        errors=[[ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN]],
        ovs_note="OVS does not install the rule of a FLOW_MOD naming an unknown buffer",
    )
    c.append(custom("flow_mod/add_identical_keeps_counters", "flow_mod", _readd_counters,
                    {"before": 2, "after": 2},
                    ovs_note="OVS keeps the counters of a rule an identical ADD replaces "
                    "(the spec clears them)"))  # fmt: skip
    c.append(custom("flow_mod/modify_keeps_counters", "flow_mod", _modify_counters,
                    {"before": 2, "after": 2}))  # fmt: skip
    c.append(custom("flow_mod/modify_reset_counts", "flow_mod", _modify_reset,
                    {"before": 2, "after": 0}))  # fmt: skip
    c.append(custom("flow_mod/delete_sends_flow_removed", "flow_mod", _delete_removed,
                    {"removed": [{"reason": ofp.OFPRR_DELETE, "table_id": 0, "cookie": 0x77,
                                  "priority": 10, "packet_count": 2,
                                  "byte_count": 2 * len(UDP4.build(b"x" * 8))}]},
                    ci=True))  # fmt: skip
    c.append(custom("flow_mod/delete_without_flag_silent", "flow_mod", _delete_silent,
                    {"removed": []}))  # fmt: skip
    c.append(custom("flow_mod/hard_timeout_expires", "flow_mod", _hard_timeout,
                    {"removed": [{"reason": ofp.OFPRR_HARD_TIMEOUT, "table_id": 0, "cookie": 0x78,
                                  "priority": 10, "packet_count": 1,
                                  "byte_count": len(UDP4.build(b"x" * 8))}],
                     "forwarding_after": False}, slow=True))  # fmt: skip
    c.append(custom("flow_mod/idle_timeout_expires", "flow_mod", _idle_timeout,
                    {"removed": [{"reason": ofp.OFPRR_IDLE_TIMEOUT, "table_id": 0, "cookie": 0x79,
                                  "priority": 10, "packet_count": 0, "byte_count": 0}],
                     "left": 0}, slow=True))  # fmt: skip
    c.append(custom("flow_mod/idle_timeout_kept_alive", "flow_mod", _idle_alive,
                    {"still_there": True}, slow=True))  # fmt: skip
    return c


def _count(c: Ctx) -> int:
    return sum(f.packet_count for f in _flow_stats(c))


def _two_packets(c: Ctx, rules: list[Any]) -> int:
    c.install(rules)
    c.inject(1, UDP4)
    c.inject(1, UDP4)
    c.observe(2)
    return _count(c)


def _readd_counters(c: Ctx) -> Obs:
    rule = lambda: flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))], priority=10)  # noqa: E731
    before = _two_packets(c, [rule()])
    c.install([rule()])
    return {"before": before, "after": _count(c)}


def _modify_counters(c: Ctx) -> Obs:
    before = _two_packets(c, [flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))], priority=10)])
    c.install([flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(3))], priority=10,
                    command=ofp.OFPFC_MODIFY_STRICT)])  # fmt: skip
    return {"before": before, "after": _count(c)}


def _modify_reset(c: Ctx) -> Obs:
    before = _two_packets(c, [flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))], priority=10)])
    c.install([flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(3))], priority=10,
                    command=ofp.OFPFC_MODIFY, flags=ofp.OFPFF_RESET_COUNTS)])  # fmt: skip
    return {"before": before, "after": _count(c)}


def _delete_removed(c: Ctx) -> Obs:
    c.install([flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))], priority=10, cookie=0x77,
                    flags=ofp.OFPFF_SEND_FLOW_REM)])  # fmt: skip
    c.inject(1, UDP4)
    c.inject(1, UDP4)
    c.observe(2)
    c.install([flow(None, command=ofp.OFPFC_DELETE)])
    return {"removed": c.flow_removed(2.0)}


def _delete_silent(c: Ctx) -> Obs:
    c.install([flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))], priority=10, cookie=0x77)])
    c.install([flow(None, command=ofp.OFPFC_DELETE)])
    return {"removed": c.flow_removed(0.5)}


def _hard_timeout(c: Ctx) -> Obs:
    c.install([flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))], priority=10, cookie=0x78,
                    hard_timeout=1, flags=ofp.OFPFF_SEND_FLOW_REM)])  # fmt: skip
    c.inject(1, UDP4)
    c.observe(1)
    removed = c.flow_removed(4.0)
    c.inject(1, UDP4)
    after = c.observe(0)
    return {"removed": removed, "forwarding_after": "out" in after}


def _idle_timeout(c: Ctx) -> Obs:
    c.install([flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))], priority=10, cookie=0x79,
                    idle_timeout=1, flags=ofp.OFPFF_SEND_FLOW_REM)])  # fmt: skip
    removed = c.flow_removed(4.0)
    return {"removed": removed, "left": len(_flow_stats(c))}


def _idle_alive(c: Ctx) -> Obs:
    c.install([flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))], priority=10, idle_timeout=2)])
    for _ in range(6):
        c.inject(1, UDP4)
        c.observe(1)
        time.sleep(0.5)
    return {"still_there": len(_flow_stats(c)) == 1}


__all__ = ["bucket", "cases", "group_mod", "meter_mod"]
