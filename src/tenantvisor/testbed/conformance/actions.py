"""Action cases: outputs to every kind of port, tags, MPLS, TTLs, queues and set-field on
every settable field, each as an apply-actions list of one rule matching port 1's frames.

The expected frame is the sent one with the action's change, built again (checksums
included), so a switch that rewrites a field but forgets a checksum fails.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.testbed.conformance.dsl import (
    Pin,
    apply,
    custom,
    flow,
    fwd,
    goto,
    out,
    setf,
    write,
)
from tenantvisor.testbed.conformance.harness import DP, Case, Ctx, Obs, expect_obs
from tenantvisor.testbed.conformance.match import (
    ARP,
    ICMP4,
    ICMP6,
    IP4,
    IP6,
    MPLS,
    NA,
    NS,
    SCTP4,
    TCP4,
    TCP6,
    UDP4,
    UDP6,
)
from tenantvisor.testbed.packets import (
    ETH_ARP,
    ETH_IPV4,
    ETH_MPLS,
    ETH_QINQ,
    ETH_VLAN,
    ND_NA,
    ND_NS,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    Pkt,
)

VID = ofp.OFPVID_PRESENT
BAD_OUT_PORT = [ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT]
BAD_TYPE = [ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE]
BAD_SET_TYPE = [ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE]
BAD_ARGUMENT = [ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_ARGUMENT]
BAD_SET_ARGUMENT = [ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_ARGUMENT]
MATCH_INCONSISTENT = [ofp.OFPET_BAD_ACTION, ofp.OFPBAC_MATCH_INCONSISTENT]
ActionsSpec = Callable[[Ctx], list[Any]]


def a(
    name: str,
    actions: ActionsSpec,
    sent: Pkt | Sequence[Pkt],
    expect: Mapping[int, Sequence[Pkt | bytes]],
    *,
    match: dict[str, Any] | None = None,
    packet_in: Sequence[Pin] = (),
    errors: list[list[int]] | None = None,
    ci: bool = False,
    ovs_note: str = "",
    kind: str = "action",
) -> Case:  # fmt: skip
    """A rule (port 1's frames and `match`) applying `actions`; `sent` from port 1."""
    frames = [sent] if isinstance(sent, Pkt) else list(sent)

    def rules(c: Ctx) -> list[Any]:
        return [flow(p.OFPMatch(in_port=c.p(1), **(match or {})), actions(c))]

    return fwd(f"{kind}/{name}", kind, rules, [(1, f) for f in frames], expect,
               packet_in=packet_in, install_errors=errors or [], ci=ci,
               ovs_note=ovs_note)  # fmt: skip


def set_case(
    name: str, field: dict[str, Any], sent: Pkt, changed: Pkt, match: dict[str, Any],
    *, ci: bool = False, ovs_note: str = "",
) -> list[Case]:  # fmt: skip
    """set_field `field` then output 2: `changed` leaves.  Four times: in an apply-actions
    list, in an action set (write_actions), in a group's bucket and in a PACKET_OUT, each a
    translation path of its own in a vswitch.  An isolation refusal (tunnel_id) counts
    once."""
    acts: ActionsSpec = lambda c: [setf(**field), out(c.p(2))]  # noqa: E731
    cases = [a(f"set_{name}", acts, sent, {2: [changed]}, match=match, ci=ci,
               ovs_note=ovs_note, kind="set_field")]  # fmt: skip
    if name == "tunnel_id":
        return cases

    def in_set(c: Ctx) -> list[Any]:
        return [flow(p.OFPMatch(in_port=c.p(1), **match), inst=[write(*acts(c))])]

    def in_bucket(c: Ctx) -> list[Any]:
        bucket = p.OFPBucket(0, ofp.OFPP_ANY, ofp.OFPG_ANY, acts(c))
        return [p.OFPGroupMod(DP, ofp.OFPGC_ADD, ofp.OFPGT_INDIRECT, 1, [bucket]),
                flow(p.OFPMatch(in_port=c.p(1), **match), [p.OFPActionGroup(1)])]  # fmt: skip

    for kind, rules in (("set_field_in_action_set", in_set), ("set_field_in_bucket", in_bucket)):
        cases.append(fwd(f"{kind}/set_{name}", kind, rules, [(1, sent)], {2: [changed]},
                         ci=ci, ovs_note=ovs_note))  # fmt: skip

    def in_packet_out(c: Ctx) -> Obs:
        c.packet_out(sent, acts(c))
        return c.observe(1)

    cases.append(custom(f"set_field_in_packet_out/set_{name}", "set_field_in_packet_out",
                        in_packet_out, lambda mk: expect_obs(mk, {2: [changed]}), ci=ci,
                        ovs_note=ovs_note))  # fmt: skip
    return cases


def cases() -> list[Case]:
    c: list[Case] = []
    v10 = UDP4.but(vlans=((ETH_VLAN, 3, 10),))
    # --- outputs ---------------------------------------------------------------------------
    c.append(a("output_two_ports", lambda x: [out(x.p(2)), out(x.p(3))], UDP4,
               {2: [UDP4], 3: [UDP4]}, ci=True))  # fmt: skip
    c.append(a("output_same_port_twice", lambda x: [out(x.p(2)), out(x.p(2))], UDP4,
               {2: [UDP4, UDP4]}))  # fmt: skip
    c.append(a("output_in_port", lambda x: [out(ofp.OFPP_IN_PORT)], UDP4, {1: [UDP4]}, ci=True))
    c.append(a("output_ingress_port_dropped", lambda x: [out(x.p(1))], UDP4, {}))
    c.append(a("output_flood", lambda x: [out(ofp.OFPP_FLOOD)], UDP4,
               {2: [UDP4], 3: [UDP4], 4: [UDP4]}, ci=True))  # fmt: skip
    c.append(a("output_all", lambda x: [out(ofp.OFPP_ALL)], ARP, {2: [ARP], 3: [ARP], 4: [ARP]}))
    c.append(a("output_controller", lambda x: [out(ofp.OFPP_CONTROLLER)], UDP4, {},
               packet_in=[Pin(ofp.OFPR_ACTION, UDP4)], ci=True))  # fmt: skip
    c.append(
        a(
            "output_controller_max_len",
            lambda x: [out(ofp.OFPP_CONTROLLER, 32)],
            UDP4,
            {},
            packet_in=[Pin(ofp.OFPR_ACTION, UDP4)],
            ovs_note="OVS sends the whole frame whatever max_len (it buffers nothing)",
        )
    )
    c.append(a("output_controller_and_port", lambda x: [out(ofp.OFPP_CONTROLLER), out(x.p(2))],
               TCP4, {2: [TCP4]}, packet_in=[Pin(ofp.OFPR_ACTION, TCP4)]))  # fmt: skip
    c.append(a("output_local", lambda x: [out(ofp.OFPP_LOCAL)], UDP4, {}))
    c.append(a("output_normal", lambda x: [out(ofp.OFPP_NORMAL)], UDP4,
               {2: [UDP4], 3: [UDP4], 4: [UDP4]}))  # fmt: skip
    c.append(a("output_absent_port", lambda x: [out(99)], UDP4, {}))
    c.append(a("output_any_refused", lambda x: [out(ofp.OFPP_ANY)], UDP4, {},
               errors=[BAD_OUT_PORT]))  # fmt: skip
    c.append(
        a(
            "output_table_in_a_rule",
            lambda x: [out(ofp.OFPP_TABLE)],
            UDP4,
            {},
            ovs_note="OVS takes output:TABLE in a rule (the spec: packet-out only) and "
            "resubmits to table 0, here the same rule, until its recursion limit",
        )
    )
    c.append(a("no_actions_drops", lambda x: [], UDP4, {}))
    # FLOOD, ALL and IN_PORT by a rule that does not pin in_port: the ingress decides, so a
    # vswitch expands it per ingress vport; frames from two ports must each get theirs
    every = {1: [ARP], 2: [UDP4], 3: [UDP4, ARP], 4: [UDP4, ARP]}
    for port, outs in ((ofp.OFPP_FLOOD, every), (ofp.OFPP_ALL, every),
                       (ofp.OFPP_IN_PORT, {1: [UDP4], 2: [ARP]})):  # fmt: skip
        name = {ofp.OFPP_FLOOD: "flood", ofp.OFPP_ALL: "all", ofp.OFPP_IN_PORT: "in_port"}[port]
        c.append(fwd(f"action/output_{name}_any_ingress", "action",
                     lambda x, port=port: [flow(None, [out(port)])],  # type: ignore[misc]
                     [(1, UDP4), (2, ARP)], outs))  # fmt: skip
    c.append(a("output_flood_and_a_port", lambda x: [out(ofp.OFPP_FLOOD), out(x.p(2))], TCP4,
               {2: [TCP4, TCP4], 3: [TCP4], 4: [TCP4]}))  # fmt: skip
    # --- VLAN tags -------------------------------------------------------------------------
    c.append(a("push_vlan", lambda x: [p.OFPActionPushVlan(ETH_VLAN), setf(vlan_vid=VID | 5),
                                       out(x.p(2))],
               UDP4, {2: [UDP4.but(vlans=((ETH_VLAN, 0, 5),))]}, ci=True))  # fmt: skip
    c.append(a("push_vlan_alone", lambda x: [p.OFPActionPushVlan(ETH_VLAN), out(x.p(2))],
               UDP4, {2: [UDP4.but(vlans=((ETH_VLAN, 0, 0),))]}))  # fmt: skip
    no_copy = "OVS's push_vlan starts the new tag at VID 0, PCP 0 (the spec copies the outer tag's)"
    c.append(a("push_vlan_on_tagged", lambda x: [p.OFPActionPushVlan(ETH_VLAN), out(x.p(2))],
               v10, {2: [v10.but(vlans=((ETH_VLAN, 0, 0), (ETH_VLAN, 3, 10)))]},
               ovs_note=no_copy))  # fmt: skip
    c.append(a("push_vlan_8021ad", lambda x: [p.OFPActionPushVlan(ETH_QINQ), setf(vlan_vid=VID | 7),
                                              out(x.p(2))],
               v10, {2: [v10.but(vlans=((ETH_QINQ, 0, 7), (ETH_VLAN, 3, 10)))]},
               ovs_note=no_copy, ci=True))  # fmt: skip
    c.append(a("push_vlan_bad_ethertype", lambda x: [p.OFPActionPushVlan(0x0800), out(x.p(2))],
               UDP4, {}, errors=[BAD_ARGUMENT]))  # fmt: skip
    c.append(a("pop_vlan", lambda x: [p.OFPActionPopVlan(), out(x.p(2))], v10, {2: [UDP4]},
               match={"vlan_vid": VID | 10}, ci=True))  # fmt: skip
    c.append(
        a(
            "pop_vlan_outer_of_two",
            lambda x: [p.OFPActionPopVlan(), out(x.p(2))],
            UDP4.but(vlans=((ETH_QINQ, 0, 100), (ETH_VLAN, 0, 10))),
            {2: [UDP4.but(vlans=((ETH_VLAN, 0, 10),))]},
            match={"vlan_vid": VID | 100},
        )
    )
    c.append(a("set_vlan_vid", lambda x: [setf(vlan_vid=VID | 20), out(x.p(2))], v10,
               {2: [v10.but(vlans=((ETH_VLAN, 3, 20),))]}, match={"vlan_vid": (VID, VID)},
               ci=True, kind="set_field"))  # fmt: skip
    c.append(a("set_vlan_pcp", lambda x: [setf(vlan_pcp=6), out(x.p(2))], v10,
               {2: [v10.but(vlans=((ETH_VLAN, 6, 10),))]}, match={"vlan_vid": (VID, VID)},
               kind="set_field"))  # fmt: skip
    c.append(a("set_vlan_vid_untagged_match", lambda x: [setf(vlan_vid=VID | 20), out(x.p(2))],
               UDP4, {}, match={"vlan_vid": ofp.OFPVID_NONE}, errors=[MATCH_INCONSISTENT],
               kind="set_field"))  # fmt: skip
    # --- MPLS ------------------------------------------------------------------------------
    c.append(a("push_mpls", lambda x: [p.OFPActionPushMpls(ETH_MPLS), setf(mpls_label=200),
                                       out(x.p(2))],
               UDP4, {2: [UDP4.but(mpls=((200, 0, 64),))]}, match=IP4, ci=True))  # fmt: skip
    c.append(
        a(
            "push_mpls_copies_ttl",
            lambda x: [p.OFPActionPushMpls(ETH_MPLS), out(x.p(2))],
            UDP4.but(ttl=9),
            {2: [UDP4.but(ttl=9, mpls=((0, 0, 9),))]},
            match=IP4,
        )
    )
    c.append(a("push_mpls_on_mpls", lambda x: [p.OFPActionPushMpls(ETH_MPLS), out(x.p(2))],
               MPLS, {2: [MPLS.but(mpls=((100, 0, 64), (100, 0, 64)))]},
               match={"eth_type": ETH_MPLS}))  # fmt: skip
    c.append(a("pop_mpls", lambda x: [p.OFPActionPopMpls(ETH_IPV4), out(x.p(2))], MPLS,
               {2: [UDP4]}, match={"eth_type": ETH_MPLS}, ci=True))  # fmt: skip
    c.append(a("set_mpls_label", lambda x: [setf(mpls_label=300), out(x.p(2))], MPLS,
               {2: [MPLS.but(mpls=((300, 0, 64),))]}, match={"eth_type": ETH_MPLS},
               kind="set_field"))  # fmt: skip
    c.append(a("set_mpls_tc", lambda x: [setf(mpls_tc=6), out(x.p(2))], MPLS,
               {2: [MPLS.but(mpls=((100, 6, 64),))]}, match={"eth_type": ETH_MPLS},
               kind="set_field"))  # fmt: skip
    c.append(a("set_mpls_bos", lambda x: [setf(mpls_bos=0), out(x.p(2))], MPLS, {},
               match={"eth_type": ETH_MPLS}, errors=[BAD_SET_ARGUMENT], kind="set_field",
               ovs_note="OVS does not set mpls_bos (BAD_SET_ARGUMENT)"))  # fmt: skip
    c.append(
        a(
            "set_mpls_ttl",
            lambda x: [p.OFPActionSetMplsTtl(5), out(x.p(2))],
            MPLS,
            {2: [MPLS.but(mpls=((100, 0, 5),))]},
            match={"eth_type": ETH_MPLS},
        )
    )
    c.append(
        a(
            "dec_mpls_ttl",
            lambda x: [p.OFPActionDecMplsTtl(), out(x.p(2))],
            MPLS,
            {2: [MPLS.but(mpls=((100, 0, 63),))]},
            match={"eth_type": ETH_MPLS},
        )
    )
    no_copy_ttl = "OVS has no copy_ttl actions (BAD_TYPE)"
    c.append(a("copy_ttl_out", lambda x: [p.OFPActionCopyTtlOut(), out(x.p(2))],
               MPLS.but(ttl=9), {}, match={"eth_type": ETH_MPLS}, errors=[BAD_TYPE],
               ovs_note=no_copy_ttl))  # fmt: skip
    c.append(a("copy_ttl_in", lambda x: [p.OFPActionCopyTtlIn(), out(x.p(2))],
               MPLS.but(mpls=((100, 0, 9),)), {}, match={"eth_type": ETH_MPLS}, errors=[BAD_TYPE],
               ovs_note=no_copy_ttl))  # fmt: skip
    # --- IP TTL ----------------------------------------------------------------------------
    c.append(a("set_nw_ttl", lambda x: [p.OFPActionSetNwTtl(7), out(x.p(2))], UDP4,
               {2: [UDP4.but(ttl=7)]}, match=IP4))  # fmt: skip
    c.append(a("dec_nw_ttl", lambda x: [p.OFPActionDecNwTtl(), out(x.p(2))], UDP4,
               {2: [UDP4.but(ttl=63)]}, match=IP4, ci=True))  # fmt: skip
    c.append(a("dec_nw_ttl_ipv6", lambda x: [p.OFPActionDecNwTtl(), out(x.p(2))], UDP6,
               {2: [UDP6.but(ttl=63)]}, match=IP6))  # fmt: skip
    c.append(a("dec_nw_ttl_expired_drops", lambda x: [p.OFPActionDecNwTtl(), out(x.p(2))],
               UDP4.but(ttl=1), {}, match=IP4))  # fmt: skip
    c.append(a("set_nw_ttl_without_ip", lambda x: [p.OFPActionSetNwTtl(7), out(x.p(2))], UDP4,
               {}, errors=[MATCH_INCONSISTENT]))  # fmt: skip
    # --- queues, PBB, experimenter ----------------------------------------------------------
    c.append(a("set_queue", lambda x: [p.OFPActionSetQueue(1), out(x.p(2))], UDP4, {2: [UDP4]}))
    c.append(a("push_pbb", lambda x: [p.OFPActionPushPbb(0x88E7), out(x.p(2))], UDP4, {},
               errors=[BAD_TYPE]))  # fmt: skip
    c.append(a("pop_pbb", lambda x: [p.OFPActionPopPbb(), out(x.p(2))], UDP4, {},
               errors=[BAD_TYPE]))  # fmt: skip
    c.append(
        a(
            "experimenter_unknown",
            lambda x: [p.OFPActionExperimenterUnknown(0xDEAD, b"x" * 4), out(x.p(2))],
            UDP4,
            {},
            errors=[[ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_EXPERIMENTER]],
        )
    )
    # --- order of an action list -------------------------------------------------------------
    c.append(a("order_output_set_output",
               lambda x: [out(x.p(2)), setf(eth_dst="02:00:00:00:00:bb"), out(x.p(3))], UDP4,
               {2: [UDP4], 3: [UDP4.but(eth_dst="02:00:00:00:00:bb")]}, ci=True))  # fmt: skip
    c.append(a("order_set_twice_last_wins",
               lambda x: [setf(ipv4_dst="10.1.1.1"), setf(ipv4_dst="10.2.2.2"), out(x.p(2))],
               UDP4, {2: [UDP4.but(ip_dst="10.2.2.2")]}, match=IP4))  # fmt: skip
    c.append(a("order_push_set_pop", lambda x: [p.OFPActionPushVlan(ETH_VLAN),
                                                setf(vlan_vid=VID | 9), out(x.p(2)),
                                                p.OFPActionPopVlan(), out(x.p(3))],
               UDP4, {2: [UDP4.but(vlans=((ETH_VLAN, 0, 9),))], 3: [UDP4]}))  # fmt: skip
    c += _set_fields()
    return c


def _set_fields() -> list[Case]:
    c: list[Case] = []
    tcp = {**IP4, "ip_proto": PROTO_TCP}
    udp = {**IP4, "ip_proto": PROTO_UDP}
    sctp = {**IP4, "ip_proto": PROTO_SCTP}
    arp = {"eth_type": ETH_ARP}
    icmp = {**IP4, "ip_proto": PROTO_ICMP}
    icmp6 = {**IP6, "ip_proto": PROTO_ICMPV6}
    c += set_case("eth_dst", {"eth_dst": "02:00:00:00:00:bb"}, UDP4,
                      UDP4.but(eth_dst="02:00:00:00:00:bb"), {}, ci=True)  # fmt: skip
    c += set_case("eth_src", {"eth_src": "02:00:00:00:00:cc"}, ARP,
                      ARP.but(eth_src="02:00:00:00:00:cc"), {})  # fmt: skip
    c += set_case("ip_dscp", {"ip_dscp": 46}, UDP4, UDP4.but(dscp=46), IP4, ci=True)
    c += set_case("ip_dscp_ipv6", {"ip_dscp": 10}, UDP6, UDP6.but(dscp=10), IP6)
    c += set_case("ip_ecn", {"ip_ecn": 2}, UDP4, UDP4.but(ecn=2), IP4)
    c += set_case("ip_ecn_ipv6", {"ip_ecn": 1}, TCP6, TCP6.but(ecn=1), IP6)
    c += set_case("ipv4_src", {"ipv4_src": "10.9.8.7"}, UDP4, UDP4.but(ip_src="10.9.8.7"),
                      IP4, ci=True)  # fmt: skip
    c += set_case("ipv4_dst", {"ipv4_dst": "10.9.8.6"}, TCP4, TCP4.but(ip_dst="10.9.8.6"),
                      IP4)  # fmt: skip
    c += set_case("ipv4_dst_icmp", {"ipv4_dst": "10.9.8.6"}, ICMP4,
                      ICMP4.but(ip_dst="10.9.8.6"), IP4)  # fmt: skip
    c.append(a("set_ip_proto", lambda x: [setf(ip_proto=PROTO_TCP), out(x.p(2))], UDP4, {},
               match=IP4, errors=[BAD_SET_ARGUMENT], kind="set_field",
               ovs_note="OVS does not set ip_proto (BAD_SET_ARGUMENT)"))  # fmt: skip
    c += set_case("tcp_src", {"tcp_src": 4000}, TCP4, TCP4.but(sport=4000), tcp, ci=True)
    c += set_case("tcp_dst", {"tcp_dst": 4001}, TCP4, TCP4.but(dport=4001), tcp)
    c += set_case("tcp_dst_ipv6", {"tcp_dst": 4001}, TCP6, TCP6.but(dport=4001),
                      {**IP6, "ip_proto": PROTO_TCP})  # fmt: skip
    c += set_case("udp_src", {"udp_src": 5000}, UDP4, UDP4.but(sport=5000), udp)
    c += set_case("udp_dst", {"udp_dst": 5001}, UDP4, UDP4.but(dport=5001), udp, ci=True)
    c += set_case("udp_dst_ipv6", {"udp_dst": 5001}, UDP6, UDP6.but(dport=5001),
                      {**IP6, "ip_proto": PROTO_UDP})  # fmt: skip
    c += set_case("sctp_src", {"sctp_src": 6000}, SCTP4, SCTP4.but(sport=6000), sctp)
    c += set_case("sctp_dst", {"sctp_dst": 6001}, SCTP4, SCTP4.but(dport=6001), sctp)
    c += set_case("icmpv4_type", {"icmpv4_type": 0}, ICMP4, ICMP4.but(icmp_type=0), icmp)
    c += set_case("icmpv4_code", {"icmpv4_code": 1}, ICMP4, ICMP4.but(icmp_code=1), icmp)
    c += set_case("arp_op", {"arp_op": 2}, ARP, ARP.but(arp_op=2), arp, ci=True)
    c += set_case("arp_spa", {"arp_spa": "10.0.0.5"}, ARP, ARP.but(arp_spa="10.0.0.5"), arp)
    c += set_case("arp_tpa", {"arp_tpa": "10.0.0.6"}, ARP, ARP.but(arp_tpa="10.0.0.6"), arp)
    c += set_case("arp_sha", {"arp_sha": "02:00:00:00:00:77"}, ARP,
                      ARP.but(arp_sha="02:00:00:00:00:77"), arp)  # fmt: skip
    c += set_case("arp_tha", {"arp_tha": "02:00:00:00:00:78"}, ARP,
                      ARP.but(arp_tha="02:00:00:00:00:78"), arp)  # fmt: skip
    c += set_case("ipv6_src", {"ipv6_src": "2001:db8::77"}, UDP6,
                      UDP6.but(ip_src="2001:db8::77"), IP6, ci=True)  # fmt: skip
    c += set_case("ipv6_dst", {"ipv6_dst": "2001:db8::78"}, TCP6,
                      TCP6.but(ip_dst="2001:db8::78"), IP6)  # fmt: skip
    c += set_case("ipv6_flabel", {"ipv6_flabel": 0xABCDE}, UDP6, UDP6.but(flabel=0xABCDE),
                      IP6)  # fmt: skip
    c += set_case("icmpv6_type", {"icmpv6_type": 129}, ICMP6, ICMP6.but(icmp_type=129),
                      icmp6)  # fmt: skip
    c += set_case("icmpv6_code", {"icmpv6_code": 1}, ICMP6, ICMP6.but(icmp_code=1), icmp6)
    ns = {**icmp6, "icmpv6_type": ND_NS}
    na = {**icmp6, "icmpv6_type": ND_NA}
    c += set_case("ipv6_nd_target", {"ipv6_nd_target": "fe80::55"}, NS,
                      NS.but(nd_target="fe80::55"), ns)  # fmt: skip
    c += set_case("ipv6_nd_sll", {"ipv6_nd_sll": "02:00:00:00:00:55"}, NS,
                      NS.but(nd_sll="02:00:00:00:00:55"), ns)  # fmt: skip
    c += set_case("ipv6_nd_tll", {"ipv6_nd_tll": "02:00:00:00:00:56"}, NA,
                      NA.but(nd_tll="02:00:00:00:00:56"), na)  # fmt: skip
    c += set_case("tunnel_id", {"tunnel_id": 5}, UDP4, UDP4, {})
    c.append(fwd("set_field/set_metadata", "set_field", lambda x: [
        flow(p.OFPMatch(in_port=x.p(1)), inst=[apply(setf(metadata=5)), goto(1)]),
        flow(p.OFPMatch(metadata=5), [out(x.p(2))], table=1),
        flow(p.OFPMatch(metadata=0), [out(x.p(3))], table=1),
    ], [(1, UDP4)], {2: [UDP4]}))  # fmt: skip
    c.append(a("set_pbb_isid", lambda x: [setf(pbb_isid=5), out(x.p(2))], UDP4, {},
               errors=[[ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_LEN]], kind="set_field",
               ovs_note="OVS has no PBB (BAD_SET_LEN)"))  # fmt: skip
    c.append(a("set_in_port", lambda x: [setf(in_port=x.p(3)), out(x.p(2))], UDP4, {},
               errors=[BAD_SET_ARGUMENT], kind="set_field",
               ovs_note="OVS answers BAD_SET_ARGUMENT (the spec: BAD_SET_TYPE)"))  # fmt: skip
    c.append(a("set_eth_type", lambda x: [setf(eth_type=0x0806), out(x.p(2))], UDP4, {},
               errors=[BAD_SET_ARGUMENT], kind="set_field",
               ovs_note="OVS answers BAD_SET_ARGUMENT (the spec: BAD_SET_TYPE)"))  # fmt: skip
    c.append(a("set_ipv4_without_prerequisite", lambda x: [setf(ipv4_src="10.0.0.1"),
                                                           out(x.p(2))],
               UDP4, {}, errors=[MATCH_INCONSISTENT], kind="set_field"))  # fmt: skip
    c.append(a("set_tcp_port_on_udp_rule", lambda x: [setf(tcp_src=1), out(x.p(2))], UDP4, {},
               match=udp, errors=[MATCH_INCONSISTENT], kind="set_field"))  # fmt: skip
    c.append(a("set_several_fields", lambda x: [
        setf(eth_src="02:00:00:00:00:0e"), setf(ipv4_src="10.1.1.1"), setf(ipv4_dst="10.2.2.2"),
        setf(udp_dst=53), setf(ip_dscp=8), out(x.p(2))],
        UDP4, {2: [UDP4.but(eth_src="02:00:00:00:00:0e", ip_src="10.1.1.1", ip_dst="10.2.2.2",
                            dport=53, dscp=8)]}, match=udp, kind="set_field"))  # fmt: skip
    return c
