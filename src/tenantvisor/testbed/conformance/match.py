"""Match cases: every OpenFlow 1.3 match field, exact and (where maskable) masked.

Each case installs one rule "field matches -> output to port 2" and sends, from port 1,
frames the rule must take (they leave by port 2) and frames it must not (the table miss
drops them: an OpenFlow 1.3 switch without a table-miss rule drops).  Invalid matches
(missing prerequisites, masks on unmaskable fields) must be refused with the spec's error.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.testbed.conformance.dsl import flow, fwd, goto, out
from tenantvisor.testbed.conformance.harness import SRC_MACS, Case, Ctx
from tenantvisor.testbed.packets import (
    ETH_ARP,
    ETH_IPV4,
    ETH_IPV6,
    ETH_MPLS,
    ETH_QINQ,
    ETH_VLAN,
    EXT_DSTOPTS,
    EXT_FRAGMENT,
    EXT_HOPOPTS,
    EXT_ROUTING,
    ND_NA,
    ND_NS,
    PROTO_ICMP,
    PROTO_ICMPV6,
    PROTO_SCTP,
    PROTO_TCP,
    PROTO_UDP,
    Pkt,
)

M1, M2, M3, M4 = SRC_MACS
VID = ofp.OFPVID_PRESENT

UDP4 = Pkt()
TCP4 = Pkt(ip_proto=PROTO_TCP)
SCTP4 = Pkt(ip_proto=PROTO_SCTP)
ICMP4 = Pkt(ip_proto=PROTO_ICMP)
ARP = Pkt(l3="arp")
UDP6 = Pkt(l3="ipv6", ip_src="2001:db8::1", ip_dst="2001:db8::2")
TCP6 = UDP6.but(ip_proto=PROTO_TCP)
SCTP6 = UDP6.but(ip_proto=PROTO_SCTP)
ICMP6 = UDP6.but(ip_proto=PROTO_ICMPV6, icmp_type=128)
NS = UDP6.but(ip_proto=PROTO_ICMPV6, icmp_type=ND_NS, ip_src="fe80::1", ip_dst="ff02::1:ff00:99",
              ttl=255, nd_target="fe80::99", nd_sll="02:00:00:00:00:01")  # fmt: skip
NA = UDP6.but(ip_proto=PROTO_ICMPV6, icmp_type=ND_NA, ip_src="fe80::99", ip_dst="fe80::1",
              ttl=255, nd_target="fe80::99", nd_tll="02:00:00:00:00:99")  # fmt: skip
MPLS = Pkt(mpls=((100, 0, 64),))
RAW = Pkt(l3="raw")

MatchSpec = dict[str, Any] | Callable[[Ctx], dict[str, Any]]


def m(
    name: str, match: MatchSpec, hits: list[Pkt], misses: list[Pkt], *, ci: bool = False,
    errors: list[list[int]] | None = None, ovs_note: str = "", table: int = 0,
) -> Case:  # fmt: skip
    """`match` -> output 2; `hits` must leave by port 2, `misses` must be dropped.  In
    `table` > 0, table 0 sends everything there first (the match is translated for a
    later table: its own physical table and metadata)."""

    def rules(c: Ctx) -> list[Any]:
        fields = match(c) if callable(match) else match
        first = [flow(None, inst=[goto(table)], priority=1)] if table else []
        return [*first, flow(p.OFPMatch(**fields), [out(c.p(2))], table=table)]

    sends = [(1, f) for f in hits + misses]
    kind = "match" if not table else f"match_in_table_{table}"
    return fwd(f"{kind}/{name}", kind, rules, sends, {2: hits}, ci=ci,
               install_errors=errors or [], ovs_note=ovs_note)  # fmt: skip


def refused(name: str, match: MatchSpec, error: list[int], *, ci: bool = False,
            ovs_note: str = "") -> Case:  # fmt: skip
    """An invalid match: the error, and nothing installed (a frame it names is dropped)."""
    return m(name, match, [], [UDP4, TCP4], ci=ci, errors=[error], ovs_note=ovs_note)


IP4 = {"eth_type": ETH_IPV4}
IP6 = {"eth_type": ETH_IPV6}
BAD_PREREQ = [ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_PREREQ]
BAD_FIELD = [ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD]


def _metadata(name: str, value: int | tuple[int, int], ci: bool = False) -> Case:
    """Table 0 writes metadata by source MAC, table 1 matches it."""

    def rules(c: Ctx) -> list[Any]:
        return [
            flow(p.OFPMatch(eth_src=M1), inst=[p.OFPInstructionWriteMetadata(0x5, 0xFF),
                                               goto(1)]),
            flow(p.OFPMatch(eth_src=M2), inst=[p.OFPInstructionWriteMetadata(0x2, 0xFF),
                                               goto(1)]),
            flow(p.OFPMatch(metadata=value), [out(c.p(2))], table=1),
        ]  # fmt: skip

    hit, miss = UDP4, UDP4.but(eth_src=M2)
    return fwd(f"match/{name}", "match", rules, [(1, hit), (1, miss)], {2: [hit]}, ci=ci)


def cases() -> list[Case]:
    c: list[Case] = []
    twins: list[Case] = []  # each valid match again in table 1

    def spec(name: str, match: MatchSpec, hits: list[Pkt], misses: list[Pkt],
             **kw: Any) -> None:  # fmt: skip
        c.append(m(name, match, hits, misses, **kw))
        # refusals and the isolation refusals (tunnel_id, the hypervisor's metadata bits)
        # count once: the twin tests translation for a later table, not a refusal again
        if not kw.get("errors") and "metadata" not in name and name != "tunnel_id":
            twins.append(m(name, match, hits, misses, table=1, ci=kw.get("ci", False),
                           ovs_note=kw.get("ovs_note", "")))  # fmt: skip

    vlan10 = UDP4.but(vlans=((ETH_VLAN, 0, 10),))
    vlan20 = UDP4.but(vlans=((ETH_VLAN, 0, 20),))
    # --- ports and metadata --------------------------------------------------------------
    c.append(fwd("match/in_port", "match",
                 lambda x: [flow(p.OFPMatch(in_port=x.p(1)), [out(x.p(2))])],
                 [(1, UDP4), (3, UDP4), (4, ARP)], {2: [UDP4]}, ci=True))  # fmt: skip
    c.append(fwd("match/in_port_arp", "match",
                 lambda x: [flow(p.OFPMatch(in_port=x.p(3)), [out(x.p(2))])],
                 [(1, ARP), (3, ARP)], {2: [ARP]}))  # fmt: skip
    c.append(
        m(
            "in_phy_port",
            lambda x: {"in_port": x.p(1), "in_phy_port": x.p(1)},
            [],
            [UDP4],
            errors=[BAD_FIELD],
            ovs_note="OVS does not match in_phy_port: BAD_FIELD",
        )
    )
    c.append(_metadata("metadata", 0x5, ci=True))
    c.append(_metadata("metadata_masked", (0x4, 0x4)))
    c.append(_metadata("metadata_masked_low_bits", (0x5, 0xFFFFFFFF)))
    spec("metadata_high_bits", {"metadata": (1 << 40, 1 << 40)}, [], [UDP4], ci=True)
    # --- Ethernet --------------------------------------------------------------------------
    spec("eth_dst", {"eth_dst": "02:00:00:00:00:aa"}, [UDP4],
               [UDP4.but(eth_dst="02:00:00:00:00:bb")], ci=True)  # fmt: skip
    spec("eth_dst_masked", {"eth_dst": ("01:00:00:00:00:00", "01:00:00:00:00:00")},
               [UDP4.but(eth_dst="ff:ff:ff:ff:ff:ff"), UDP4.but(eth_dst="01:00:5e:00:00:01")],
               [UDP4])  # fmt: skip
    spec("eth_dst_broadcast", {"eth_dst": "ff:ff:ff:ff:ff:ff"},
               [ARP.but(eth_dst="ff:ff:ff:ff:ff:ff")], [ARP])  # fmt: skip
    spec("eth_src", {"eth_src": M1}, [UDP4], [UDP4.but(eth_src=M2)], ci=True)
    c.append(
        m(
            "eth_src_masked",
            {"eth_src": ("02:00:00:00:01:00", "ff:ff:ff:ff:ff:00")},
            [UDP4.but(eth_src=M3), UDP4.but(eth_src=M4)],
            [UDP4, UDP4.but(eth_src=M2)],
        )
    )
    spec("eth_type_ipv4", {"eth_type": ETH_IPV4}, [UDP4, TCP4], [ARP, UDP6], ci=True)
    spec("eth_type_arp", {"eth_type": ETH_ARP}, [ARP], [UDP4])
    spec("eth_type_ipv6", {"eth_type": ETH_IPV6}, [UDP6], [UDP4])
    spec("eth_type_other", {"eth_type": 0x88B5}, [RAW], [UDP4])
    spec("eth_type_mpls", {"eth_type": ETH_MPLS}, [MPLS], [UDP4])
    # --- VLAN ----------------------------------------------------------------------------
    spec("vlan_vid", {"vlan_vid": VID | 10}, [vlan10], [vlan20, UDP4], ci=True)
    spec("vlan_vid_none", {"vlan_vid": ofp.OFPVID_NONE}, [UDP4], [vlan10])
    spec("vlan_vid_present", {"vlan_vid": (VID, VID)}, [vlan10, vlan20], [UDP4])
    spec("vlan_vid_masked", {"vlan_vid": (VID | 0x10, VID | 0xF0)},
               [UDP4.but(vlans=((ETH_VLAN, 0, 0x1A),)), UDP4.but(vlans=((ETH_VLAN, 0, 0x13),))],
               [vlan10, UDP4.but(vlans=((ETH_VLAN, 0, 0x2A),)), UDP4])  # fmt: skip
    spec("vlan_pcp", {"vlan_vid": (VID, VID), "vlan_pcp": 5},
               [UDP4.but(vlans=((ETH_VLAN, 5, 10),))], [vlan10, UDP4])  # fmt: skip
    spec("vlan_inner_after_outer", {"vlan_vid": VID | 30},
               [UDP4.but(vlans=((ETH_VLAN, 0, 30), (ETH_VLAN, 0, 40)))],
               [UDP4.but(vlans=((ETH_VLAN, 0, 40), (ETH_VLAN, 0, 30)))])  # fmt: skip
    c.append(
        m(
            "vlan_vid_8021ad",
            {"vlan_vid": VID | 10},
            [UDP4.but(vlans=((ETH_QINQ, 0, 10),))],
            [UDP4.but(vlans=((ETH_QINQ, 0, 11),))],
        )
    )
    spec("eth_type_under_vlan", {"vlan_vid": VID | 10, "eth_type": ETH_ARP},
               [ARP.but(vlans=((ETH_VLAN, 0, 10),))], [vlan10])  # fmt: skip
    c.append(refused("vlan_pcp_without_vid", {"vlan_pcp": 5}, BAD_PREREQ))
    # --- IPv4 ----------------------------------------------------------------------------
    spec("ip_dscp", {**IP4, "ip_dscp": 46}, [UDP4.but(dscp=46)], [UDP4], ci=True)
    spec("ip_dscp_ipv6", {**IP6, "ip_dscp": 10}, [UDP6.but(dscp=10)], [UDP6])
    spec("ip_ecn", {**IP4, "ip_ecn": 3}, [UDP4.but(ecn=3)], [UDP4, UDP4.but(ecn=1)])
    spec("ip_ecn_ipv6", {**IP6, "ip_ecn": 1}, [UDP6.but(ecn=1)], [UDP6])
    spec("ip_proto", {**IP4, "ip_proto": PROTO_TCP}, [TCP4], [UDP4, ICMP4], ci=True)
    spec("ip_proto_ipv6", {**IP6, "ip_proto": PROTO_UDP}, [UDP6], [TCP6])
    spec("ipv4_src", {**IP4, "ipv4_src": "192.168.10.1"}, [UDP4],
               [UDP4.but(ip_src="192.168.10.2")], ci=True)  # fmt: skip
    c.append(
        m(
            "ipv4_src_masked",
            {**IP4, "ipv4_src": ("192.168.10.0", "255.255.255.0")},
            [UDP4, UDP4.but(ip_src="192.168.10.77")],
            [UDP4.but(ip_src="192.168.11.1")],
        )
    )
    c.append(
        m(
            "ipv4_src_noncontiguous",
            {**IP4, "ipv4_src": ("0.0.0.1", "0.0.0.1")},
            [UDP4, UDP4.but(ip_src="10.0.0.3")],
            [UDP4.but(ip_src="192.168.10.2")],
        )
    )
    spec("ipv4_dst", {**IP4, "ipv4_dst": "192.168.20.2"}, [UDP4, TCP4],
               [UDP4.but(ip_dst="192.168.20.3")])  # fmt: skip
    spec("ipv4_dst_masked", {**IP4, "ipv4_dst": ("192.168.0.0", "255.255.0.0")},
               [UDP4], [UDP4.but(ip_dst="10.1.2.3")])  # fmt: skip
    spec("ipv4_ttl_ignored", {**IP4, "ipv4_dst": "192.168.20.2"}, [UDP4.but(ttl=1)], [])
    c.append(refused("ipv4_src_without_eth_type", {"ipv4_src": "192.168.10.1"}, BAD_PREREQ,
                     ci=True))  # fmt: skip
    c.append(refused("ipv4_with_ipv6_type", {**IP6, "ipv4_src": "192.168.10.1"}, BAD_PREREQ))
    c.append(refused("ip_proto_without_eth_type", {"ip_proto": 17}, BAD_PREREQ))
    # --- transport -------------------------------------------------------------------------
    tcp, udp, sctp = ({**IP4, "ip_proto": n} for n in (PROTO_TCP, PROTO_UDP, PROTO_SCTP))
    spec("tcp_src", {**tcp, "tcp_src": 1000}, [TCP4], [TCP4.but(sport=1001), UDP4],
               ci=True)  # fmt: skip
    spec("tcp_dst", {**tcp, "tcp_dst": 2000}, [TCP4], [TCP4.but(dport=2001)])
    spec("tcp_dst_ipv6", {**IP6, "ip_proto": PROTO_TCP, "tcp_dst": 2000}, [TCP6],
               [TCP6.but(dport=80), TCP4])  # fmt: skip
    spec("udp_src", {**udp, "udp_src": 1000}, [UDP4], [UDP4.but(sport=53), TCP4])
    spec("udp_dst", {**udp, "udp_dst": 2000}, [UDP4], [UDP4.but(dport=53)], ci=True)
    spec("udp_dst_ipv6", {**IP6, "ip_proto": PROTO_UDP, "udp_dst": 2000}, [UDP6],
               [UDP6.but(dport=53)])  # fmt: skip
    spec("sctp_src", {**sctp, "sctp_src": 1000}, [SCTP4], [SCTP4.but(sport=9)])
    spec("sctp_dst", {**sctp, "sctp_dst": 2000}, [SCTP4], [SCTP4.but(dport=9), UDP4])
    spec("sctp_dst_ipv6", {**IP6, "ip_proto": PROTO_SCTP, "sctp_dst": 2000}, [SCTP6],
               [SCTP6.but(dport=9)])  # fmt: skip
    c.append(refused("tcp_src_without_ip_proto", {**IP4, "tcp_src": 1000}, BAD_PREREQ))
    c.append(refused("udp_dst_with_tcp_proto", {**tcp, "udp_dst": 2000}, BAD_PREREQ))
    icmp = {**IP4, "ip_proto": PROTO_ICMP}
    spec("icmpv4_type", {**icmp, "icmpv4_type": 8}, [ICMP4],
               [ICMP4.but(icmp_type=0), UDP4], ci=True)  # fmt: skip
    spec("icmpv4_code", {**icmp, "icmpv4_code": 3}, [ICMP4.but(icmp_type=3, icmp_code=3)],
               [ICMP4.but(icmp_type=3, icmp_code=1)])  # fmt: skip
    # --- ARP -----------------------------------------------------------------------------
    arp = {"eth_type": ETH_ARP}
    reply = ARP.but(arp_op=2)
    spec("arp_op", {**arp, "arp_op": 2}, [reply], [ARP], ci=True)
    spec("arp_spa", {**arp, "arp_spa": "192.168.10.1"}, [ARP],
               [ARP.but(arp_spa="192.168.10.9")])  # fmt: skip
    c.append(
        m(
            "arp_spa_masked",
            {**arp, "arp_spa": ("192.168.10.0", "255.255.255.0")},
            [ARP.but(arp_spa="192.168.10.9")],
            [ARP.but(arp_spa="192.168.11.1")],
        )
    )
    spec("arp_tpa", {**arp, "arp_tpa": "192.168.20.2"}, [ARP],
               [ARP.but(arp_tpa="192.168.20.3")])  # fmt: skip
    spec("arp_tpa_masked", {**arp, "arp_tpa": ("192.168.20.0", "255.255.255.0")},
               [ARP], [ARP.but(arp_tpa="10.0.0.1")])  # fmt: skip
    spec("arp_sha", {**arp, "arp_sha": "02:00:00:00:00:01"}, [ARP],
               [ARP.but(arp_sha="02:00:00:00:00:07")])  # fmt: skip
    spec("arp_sha_masked", {**arp, "arp_sha": ("02:00:00:00:00:00", "ff:ff:ff:00:00:00")},
               [ARP], [ARP.but(arp_sha="04:00:00:00:00:01")])  # fmt: skip
    spec("arp_tha", {**arp, "arp_tha": "02:00:00:00:00:99"},
               [reply.but(arp_tha="02:00:00:00:00:99")], [reply])  # fmt: skip
    c.append(refused("arp_op_without_eth_type", {"arp_op": 1}, BAD_PREREQ))
    # --- IPv6 ----------------------------------------------------------------------------
    spec("ipv6_src", {**IP6, "ipv6_src": "2001:db8::1"}, [UDP6],
               [UDP6.but(ip_src="2001:db8::7")], ci=True)  # fmt: skip
    c.append(
        m(
            "ipv6_src_masked",
            {**IP6, "ipv6_src": ("2001:db8::", "ffff:ffff::")},
            [UDP6, UDP6.but(ip_src="2001:db8:1::5")],
            [UDP6.but(ip_src="2001:db9::1")],
        )
    )
    spec("ipv6_dst", {**IP6, "ipv6_dst": "2001:db8::2"}, [UDP6, TCP6],
               [UDP6.but(ip_dst="2001:db8::3")])  # fmt: skip
    spec("ipv6_dst_masked", {**IP6, "ipv6_dst": ("::2", "::ffff")},
               [UDP6], [UDP6.but(ip_dst="2001:db8::3")])  # fmt: skip
    spec("ipv6_flabel", {**IP6, "ipv6_flabel": 0x12345}, [UDP6.but(flabel=0x12345)],
               [UDP6, UDP6.but(flabel=0x12346)])  # fmt: skip
    c.append(
        m(
            "ipv6_flabel_masked",
            {**IP6, "ipv6_flabel": (0x00045, 0x000FF)},
            [UDP6.but(flabel=0x12345), UDP6.but(flabel=0x00145)],
            [UDP6.but(flabel=0x46)],
        )
    )
    icmp6 = {**IP6, "ip_proto": PROTO_ICMPV6}
    spec("icmpv6_type", {**icmp6, "icmpv6_type": 128}, [ICMP6],
               [ICMP6.but(icmp_type=129), UDP6], ci=True)  # fmt: skip
    spec("icmpv6_code", {**icmp6, "icmpv6_code": 4}, [ICMP6.but(icmp_type=1, icmp_code=4)],
               [ICMP6.but(icmp_type=1, icmp_code=3)])  # fmt: skip
    spec("ipv6_nd_target", {**icmp6, "icmpv6_type": ND_NS, "ipv6_nd_target": "fe80::99"},
               [NS], [NS.but(nd_target="fe80::98")], ci=True)  # fmt: skip
    spec("ipv6_nd_target_na", {**icmp6, "icmpv6_type": ND_NA, "ipv6_nd_target": "fe80::99"},
               [NA], [NA.but(nd_target="fe80::97")])  # fmt: skip
    spec("ipv6_nd_sll", {**icmp6, "icmpv6_type": ND_NS, "ipv6_nd_sll": "02:00:00:00:00:01"},
               [NS], [NS.but(nd_sll="02:00:00:00:00:02")])  # fmt: skip
    spec("ipv6_nd_tll", {**icmp6, "icmpv6_type": ND_NA, "ipv6_nd_tll": "02:00:00:00:00:99"},
               [NA], [NA.but(nd_tll="02:00:00:00:00:98")])  # fmt: skip
    c.append(refused("ipv6_nd_target_without_type", {**icmp6, "ipv6_nd_target": "fe80::99"},
                     BAD_PREREQ))  # fmt: skip
    no_exthdr = "OVS does not match ipv6_exthdr: BAD_FIELD"
    c.append(
        m(
            "ipv6_exthdr",
            {**IP6, "ipv6_exthdr": 0x0008},
            [],
            [UDP6.but(ext=(EXT_FRAGMENT,)), UDP6],
            errors=[BAD_FIELD],
            ovs_note=no_exthdr,
        )
    )
    c.append(
        m(
            "ipv6_exthdr_masked",
            {**IP6, "ipv6_exthdr": (0x0008, 0x0008)},
            [],
            [
                UDP6.but(ext=(EXT_HOPOPTS, EXT_FRAGMENT)),
                UDP6.but(ext=(EXT_DSTOPTS,)),
                UDP6.but(ext=(EXT_ROUTING,)),
            ],
            errors=[BAD_FIELD],
            ovs_note=no_exthdr,
        )
    )
    # --- MPLS ----------------------------------------------------------------------------
    mpls = {"eth_type": ETH_MPLS}
    spec("mpls_label", {**mpls, "mpls_label": 100}, [MPLS], [MPLS.but(mpls=((101, 0, 64),))],
               ci=True)  # fmt: skip
    spec("mpls_tc", {**mpls, "mpls_tc": 5}, [MPLS.but(mpls=((100, 5, 64),))], [MPLS])
    spec("mpls_bos", {**mpls, "mpls_bos": 0}, [MPLS.but(mpls=((100, 0, 64), (200, 0, 64)))],
               [MPLS])  # fmt: skip
    c.append(refused("mpls_label_without_eth_type", {"mpls_label": 100}, BAD_PREREQ))
    # --- PBB and tunnels -----------------------------------------------------------------
    c.append(
        m(
            "pbb_isid",
            {"eth_type": 0x88E7, "pbb_isid": 5},
            [],
            [UDP4],
            errors=[BAD_FIELD],
            ovs_note="OVS does not match pbb_isid (no PBB): BAD_FIELD",
        )
    )
    spec("tunnel_id", {"tunnel_id": 0}, [UDP4, ARP], [])
    # --- priorities and overlaps ---------------------------------------------------------
    c.append(fwd("match/priority_higher_wins", "match", lambda x: [
        flow(p.OFPMatch(eth_type=ETH_IPV4), [out(x.p(3))], priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_UDP), [out(x.p(2))], priority=20),
    ], [(1, UDP4), (1, TCP4)], {2: [UDP4], 3: [TCP4]}, ci=True))  # fmt: skip
    c.append(fwd("match/priority_lower_specific_loses", "match", lambda x: [
        flow(p.OFPMatch(eth_type=ETH_IPV4), [out(x.p(3))], priority=30),
        flow(p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_UDP), [out(x.p(2))], priority=20),
    ], [(1, UDP4)], {3: [UDP4]}))  # fmt: skip
    c.append(
        fwd(
            "match/all_fields_wildcarded",
            "match",
            lambda x: [flow(None, [out(x.p(2))], priority=1)],
            [(1, UDP4), (1, ARP), (1, RAW), (1, UDP6)],
            {2: [UDP4, ARP, RAW, UDP6]},
        )
    )
    c.append(fwd("match/table_miss_drops", "match", lambda x: [],
                 [(1, UDP4), (1, ARP)], {}, ci=True))  # fmt: skip
    c.append(fwd("match/many_fields", "match", lambda x: [
        flow(p.OFPMatch(in_port=x.p(1), eth_src=M1, eth_dst="02:00:00:00:00:aa",
                        eth_type=ETH_IPV4, ip_proto=PROTO_TCP, ipv4_src="192.168.10.1",
                        ipv4_dst="192.168.20.2", tcp_src=1000, tcp_dst=2000, ip_dscp=0),
             [out(x.p(2))]),
    ], [(1, TCP4), (1, TCP4.but(dport=2001)), (3, TCP4)], {2: [TCP4]}))  # fmt: skip
    # --- malformed matches -----------------------------------------------------------------
    c.append(fwd("match/duplicate_field", "match", lambda x: [
        _raw_flow_mod(x, [oxm(5, b"\x08\x00"), oxm(5, b"\x08\x00")]),
    ], [], {}, install_errors=[[ofp.OFPET_BAD_MATCH, ofp.OFPBMC_DUP_FIELD]]))  # fmt: skip
    return c + twins


def _raw_flow_mod(c: Ctx, oxms: list[bytes]) -> bytes:
    """A FLOW_MOD whose match is given TLV by TLV (os-ken will not build odd ones)."""
    del c
    return raw_flow_mod(b"".join(oxms))


def raw_flow_mod(oxms: bytes, instructions: bytes = b"", priority: int = 100) -> bytes:
    """FLOW_MOD ADD bytes with this match body (OXM TLVs) and instructions."""
    body = struct.pack("!QQBBHHHIIIH2x", 0, 0, 0, ofp.OFPFC_ADD, 0, 0, priority,
                       ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0)  # fmt: skip
    match = struct.pack("!HH", ofp.OFPMT_OXM, 4 + len(oxms)) + oxms
    match += b"\x00" * (-len(match) % 8)
    msg = body + match + instructions
    return struct.pack("!BBHI", 4, ofp.OFPT_FLOW_MOD, 8 + len(msg), 0) + msg


def oxm(field: int, value: bytes, mask: bytes | None = None) -> bytes:
    """One OpenFlow-basic OXM TLV."""
    data = value + (mask or b"")
    return struct.pack("!HBB", 0x8000, (field << 1) | (mask is not None), len(data)) + data
