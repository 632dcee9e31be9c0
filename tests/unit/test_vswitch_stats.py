"""A vswitch's multipart requests answered without sockets (virtual/stats.py).

The part reads a fake vswitch; the pswitch session records the statistics requests it is
asked and the test answers them with bodies as a pswitch sends; the replies the tenant gets
are read back with os-ken.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.mapping import layout
from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow import messages as msgs
from tenantvisor.openflow.codec import MalformedMessage, OFError
from tenantvisor.translate.view import PortMap, VSwitchView
from tenantvisor.virtual.flowtable import VFlow, VirtualFlowTable, normalize
from tenantvisor.virtual.groups import VSwitchGroups
from tenantvisor.virtual.stats import (
    MAX_REPLY_BODY,
    VSwitchStats,
    flow_counts,
    port_desc,
    reply_messages,
)

from .ofkit import DP, osken_bytes, osken_parse

ALL_ONES = 0xFFFFFFFFFFFFFFFF
NET, VDPID, DPID, PEER_DPID = 1, 0x33, 9, 10
VIEW = VSwitchView(NET, 3, VDPID, DPID, 4, {
    1: PortMap(1, 11, tx_group=901, hairpin_group=902),
    2: PortMap(2, 12, link_tag=40, is_link=True),
    3: PortMap(3, 13, up=False),
})  # fmt: skip
Done = Callable[[list[bytes] | None], None]


class Session:
    """A pswitch session that keeps the statistics requests until the test answers."""

    def __init__(self) -> None:
        self.ready = True
        self.asked: list[tuple[int, bytes, Done]] = []

    def multipart(self, mtype: int, body: bytes, done: Done) -> None:
        self.asked.append((mtype, body, done))

    def answer(self, *bodies: bytes) -> tuple[int, bytes]:
        mtype, body, done = self.asked.pop(0)
        done(list(bodies))
        return mtype, body


class Host:
    max_rules = 100

    def __init__(self) -> None:
        self.sessions: dict[int, Session] = {DPID: Session()}
        self.classified: dict[tuple[int, int], list[int]] = {}
        self.peers = {(NET, VDPID, 2): (PEER_DPID, 0x44, 7)}
        self.held: set[int] = set()

    def session(self, dpid: int) -> Session | None:
        return self.sessions.get(dpid)

    def vlink_peer(self, net_id: int, vdpid: int, vport: int) -> tuple[int, int, int] | None:
        return self.peers.get((net_id, vdpid, vport))

    def classified_counts(
        self, net_id: int, dpids: set[int], done: Callable[[dict[tuple[int, int], list[int]]], None]
    ) -> None:
        assert net_id == NET
        self.classified_dpids = dpids
        done(self.classified)

    def classify_dpids(self, net_id: int, vdpid: int) -> set[int]:
        """A host of the vswitch moved to pswitch 12."""
        return {12} if (net_id, vdpid) == (NET, VDPID) else set()

    def alloc_id(self, kind: str, dpid: int, owner: object) -> int | None:
        new = 500 + len(self.held)
        self.held.add(new)
        return new

    def free_id(self, kind: str, dpid: int, value: int) -> None:
        self.held.discard(value)


class VSwitch:
    """What the part reads of its vswitch (StatsContext)."""

    def __init__(self, view: VSwitchView = VIEW) -> None:
        self.view = view
        self.views = {view.dpid: view}
        self.vdpid = VDPID
        self.label = "tenant=t net=1 vswitch=0000000000000033 dpid=0000000000000009"
        self.host = Host()
        self.table = VirtualFlowTable()
        self.port_names = {1: "h1-eth0"}
        self.created = time.monotonic() - 5
        self.shared: set[int] = set()  # serials realised by shared reduced rules
        self.held_down: set[int] = set()  # vports down, not said yet
        self.packet_outs_to_table = 0

    def inexact(self) -> set[int]:
        return self.shared

    def quota_full(self, kind: str) -> str | None:
        return None


class Channel:
    version = codec.VERSION

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, msg: bytes) -> None:
        self.sent.append(msg)


class Conn:
    def __init__(self) -> None:
        self.channel = Channel()
        self.touched: set[int] = set()

    def sent_to(self, session: object) -> None:
        pass  # the pswitch window: not under test here


def setup(view: VSwitchView = VIEW) -> tuple[VSwitch, VSwitchGroups, VSwitchStats, Conn]:
    vs = VSwitch(view)
    groups = VSwitchGroups(vs)
    return vs, groups, VSwitchStats(vs, groups), Conn()


def ask(stats: VSwitchStats, conn: Conn, req: Any, xid: int = 7) -> None:
    req.xid = xid
    stats.multipart(conn, xid, osken_bytes(req))


def replies(conn: Conn) -> list[Any]:
    out = [osken_parse(m) for m in conn.channel.sent]
    assert all(r.xid == 7 for r in out)
    conn.channel.sent.clear()
    return out


def rule(
    vs: VSwitch, table: int, priority: int, instructions: bytes = b"", cookie: int = 0,
    in_port: bool = False,
) -> VFlow:  # fmt: skip
    """A tenant rule in the vswitch's table (matching in_port 1 with `in_port`)."""
    match = [codec.oxm_u32(oxm.IN_PORT, 1)] if in_port else []
    vf = VFlow(vs.table.new_serial(), table, priority, match, normalize(match), instructions,
               cookie, 0, 0, 0)  # fmt: skip
    vs.table.put(vf)
    return vf


def phys_flow_stats(serial: int, packets: int, nbytes: int) -> bytes:
    """An ofp_flow_stats as the pswitch reports one of the rules behind `serial`."""
    return msgs.flow_stats_entry(
        1, (1, 0), 10, 0, 0, 0, layout.tenant_cookie(NET, serial), packets, nbytes,
        codec.encode_match([]), b"",
    )  # fmt: skip


# --- reply bodies ------------------------------------------------------------------------------
def test_replies_are_split_below_the_message_size_with_reply_more() -> None:
    entries = [bytes([i]) * 1000 for i in range(150)]
    out = reply_messages(codec.VERSION, 7, ofp.OFPMP_FLOW, entries)
    assert len(out) == 3 and all(len(m) <= 65535 for m in out)
    flags = [struct.unpack_from("!H", m, 10)[0] for m in out]
    assert flags == [ofp.OFPMPF_REPLY_MORE, ofp.OFPMPF_REPLY_MORE, 0]
    assert b"".join(m[16:] for m in out) == b"".join(entries)
    assert all(len(m) - 16 <= MAX_REPLY_BODY for m in out)
    (empty,) = reply_messages(codec.VERSION, 7, ofp.OFPMP_FLOW, [])
    assert osken_parse(empty).body == [] and struct.unpack_from("!H", empty, 10)[0] == 0


def test_flow_counts_add_up_the_expansions_of_one_rule() -> None:
    parts = [phys_flow_stats(1, 2, 200) + phys_flow_stats(1, 3, 300), phys_flow_stats(2, 1, 64)]
    assert flow_counts(parts) == {1: [5, 500], 2: [1, 64]}
    assert flow_counts(None) == {} and flow_counts([b"\x00\x00" + b"\x00" * 60]) == {}


# --- descriptions ------------------------------------------------------------------------------
def test_desc_names_the_vswitch() -> None:
    vs, _, stats, conn = setup()
    ask(stats, conn, p.OFPDescStatsRequest(DP, 0))
    (r,) = replies(conn)
    assert r.body.mfr_desc.rstrip(b"\0") == b"tenantvisor"
    assert r.body.serial_num.rstrip(b"\0") == b"net1-0000000000000033"
    assert r.body.dp_desc.rstrip(b"\0").decode() == vs.label
    assert b"0000000000000009" in r.body.hw_desc


def test_port_desc_lists_the_vports_with_their_names_and_state() -> None:
    _, _, stats, conn = setup()
    ask(stats, conn, p.OFPPortDescStatsRequest(DP, 0))
    (r,) = replies(conn)
    ports = {pt.port_no: pt for pt in r.body}
    assert sorted(ports) == [1, 2, 3]
    assert ports[1].name.rstrip(b"\0") == b"h1-eth0" and ports[2].name.rstrip(b"\0") == b"vport2"
    assert ports[1].state == ofp.OFPPS_LIVE and ports[3].state == ofp.OFPPS_LINK_DOWN
    assert ports[2].hw_addr == "02:76:00:00:30:02"  # vswitch index 3, vport 2


def test_vport_macs_differ_between_vswitches_and_vports() -> None:
    """The index's low byte used to be dropped: vswitches 1-255 had identical port MACs."""
    macs = set()
    for index in (1, 2, 255, 256, 0x7FFFF):
        view = VSwitchView(NET, index, VDPID, DPID, 4, {1: PortMap(1, 1), 0xFFF: PortMap(0xFFF, 2)})
        for n in (1, 0xFFF):
            body = port_desc(view, {}, n)
            macs.add(body[8:14])
    assert len(macs) == 10


# --- flows, aggregates, tables -----------------------------------------------------------------
def test_flow_stats_map_the_pswitchs_counters_to_the_tenants_rules() -> None:
    vs, _, stats, conn = setup()
    a = rule(vs, 0, 10, cookie=0xA)
    b = rule(vs, 1, 20, cookie=0xB, in_port=True)
    ask(stats, conn, p.OFPFlowStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY))
    assert conn.channel.sent == [] and conn.touched == {DPID}  # BARRIER waits for the reply
    session = vs.host.sessions[DPID]
    mtype, body = session.answer(
        phys_flow_stats(a.serial, 2, 200) + phys_flow_stats(a.serial, 1, 100),
        phys_flow_stats(b.serial, 4, 256),
    )
    # one request for the network's rules, the hypervisor's own excluded
    assert mtype == ofp.OFPMP_FLOW
    cookie, mask = struct.unpack_from("!QQ", body, 16)
    assert (cookie, mask) == (layout.net_cookie(NET), layout.NET_COOKIE_MASK | layout.INFRA_BIT)
    (r,) = replies(conn)
    got = {s.cookie: (s.table_id, s.priority, s.packet_count, s.byte_count) for s in r.body}
    assert got == {0xA: (0, 10, 3, 300), 0xB: (1, 20, 4, 256)}
    assert next(s for s in r.body if s.cookie == 0xB).match["in_port"] == 1


def test_a_rule_realised_by_shared_reduced_rules_has_unknown_counters() -> None:
    """Flow-rule reduction: a physical rule many tenant rules share counts all of their
    packets; none of them is given those counts as its own."""
    vs, _, stats, conn = setup()
    a = rule(vs, 0, 10, cookie=0xA)
    b = rule(vs, 0, 20, cookie=0xB)
    vs.shared = {b.serial}
    ask(stats, conn, p.OFPFlowStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY))
    vs.host.sessions[DPID].answer(phys_flow_stats(a.serial, 2, 200) +
                                  phys_flow_stats(b.serial, 1, 100))  # fmt: skip
    (r,) = replies(conn)
    got = {s.cookie: (s.packet_count, s.byte_count) for s in r.body}
    assert got == {0xA: (2, 200), 0xB: (ALL_ONES, ALL_ONES)}
    ask(stats, conn, p.OFPAggregateStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY,
                                                ofp.OFPG_ANY, 0, 0, p.OFPMatch()))  # fmt: skip
    vs.host.sessions[DPID].answer()
    (agg,) = replies(conn)
    assert (agg.body.packet_count, agg.body.byte_count) == (ALL_ONES, ALL_ONES)


def test_flow_stats_select_like_a_delete_and_refuse_a_table_outside() -> None:
    vs, _, stats, conn = setup()
    rule(vs, 0, 10, cookie=0xA)
    rule(vs, 1, 20, cookie=0xB)
    ask(stats, conn, p.OFPFlowStatsRequest(DP, 0, 1, ofp.OFPP_ANY, ofp.OFPG_ANY))
    vs.host.sessions[DPID].answer()
    assert [s.cookie for s in replies(conn)[0].body] == [0xB]
    ask(stats, conn, p.OFPFlowStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                           cookie=0xA, cookie_mask=ALL_ONES))  # fmt: skip
    vs.host.sessions[DPID].answer()
    assert [s.cookie for s in replies(conn)[0].body] == [0xA]
    with pytest.raises(OFError) as exc:
        ask(stats, conn, p.OFPFlowStatsRequest(DP, 0, 4, ofp.OFPP_ANY, ofp.OFPG_ANY))
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TABLE_ID)


def test_flow_stats_filtered_by_out_group_are_the_rules_sending_to_that_group() -> None:
    vs, groups, stats, conn = setup()
    add_group(groups, 3)
    to_group = codec.encode_instructions(apply_actions=struct.pack("!HHI", ofp.OFPAT_GROUP, 8, 3))
    rule(vs, 0, 10, to_group, cookie=0xA)
    rule(vs, 0, 20, codec.encode_instructions(apply_actions=codec.output(1)), cookie=0xB)
    ask(stats, conn, p.OFPFlowStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, 3))
    vs.host.sessions[DPID].answer()
    assert [s.cookie for s in replies(conn)[0].body] == [0xA]
    ask(stats, conn, p.OFPAggregateStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, 4, 0, 0,
                                                p.OFPMatch()))  # fmt: skip
    vs.host.sessions[DPID].answer()
    assert replies(conn)[0].body.flow_count == 0


def test_aggregate_adds_up_the_selected_rules() -> None:
    vs, _, stats, conn = setup()
    a, b = rule(vs, 0, 10), rule(vs, 0, 20)
    ask(stats, conn, p.OFPAggregateStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY,
                                                ofp.OFPG_ANY, 0, 0, p.OFPMatch()))  # fmt: skip
    vs.host.sessions[DPID].answer(
        phys_flow_stats(a.serial, 1, 10), phys_flow_stats(b.serial, 2, 20)
    )
    (r,) = replies(conn)
    assert (r.body.packet_count, r.body.byte_count, r.body.flow_count) == (3, 30, 2)


def test_a_pswitch_that_is_down_counts_nothing_and_is_not_waited_for() -> None:
    vs, _, stats, conn = setup()
    rule(vs, 0, 10)
    vs.host.sessions[DPID].ready = False
    ask(stats, conn, p.OFPFlowStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY))
    (r,) = replies(conn)
    assert [(s.packet_count, s.byte_count) for s in r.body] == [(0, 0)]
    assert conn.touched == set() and vs.host.sessions[DPID].asked == []


def table_rows(conn: Conn) -> list[tuple[int, int, int, int]]:
    (r,) = replies(conn)
    return [(t.table_id, t.active_count, t.lookup_count, t.matched_count) for t in r.body]


def test_table_stats_count_lookups_and_matches_of_the_tenant_alone() -> None:
    """Table 0 looks up what classification admitted into the vswitch (not what another
    vswitch's vports received) plus the PACKET_OUTs to TABLE; table 2 what rules sent there
    with goto_table; matches are the packets the tenant's rules took, a table-miss rule's
    included (Open vSwitch counts those as matched too)."""
    vs, _, stats, conn = setup()
    a = rule(vs, 0, 10, codec.encode_instructions(goto_table=2))
    miss = rule(vs, 0, 0)  # table-miss rule
    c = rule(vs, 2, 5)
    vs.packet_outs_to_table = 2
    vs.host.classified = {(VDPID, 1): [7, 700], (VDPID, 2): [4, 400], (0x44, 7): [50, 5000]}
    ask(stats, conn, p.OFPTableStatsRequest(DP, 0))
    assert vs.host.classified_dpids == {DPID, 12} and DPID in conn.touched
    vs.host.sessions[DPID].answer(
        phys_flow_stats(a.serial, 6, 1), phys_flow_stats(miss.serial, 3, 1),
        phys_flow_stats(c.serial, 4, 1),
    )  # fmt: skip
    assert table_rows(conn) == [(0, 2, 13, 9), (1, 0, 0, 0), (2, 1, 6, 4), (3, 0, 0, 0)]


def test_table_stats_without_a_table_miss_rule_show_the_misses() -> None:
    vs, _, stats, conn = setup()
    a = rule(vs, 0, 10)
    vs.host.classified = {(VDPID, 1): [5, 500]}
    ask(stats, conn, p.OFPTableStatsRequest(DP, 0))
    vs.host.sessions[DPID].answer(phys_flow_stats(a.serial, 3, 1))
    assert table_rows(conn)[0] == (0, 1, 5, 3)  # 2 packets no rule took


def test_table_stats_unknown_where_a_count_is() -> None:
    """A rule counted by shared reduced rules makes its table's matches unknown, and the
    lookups of the table it sends to; a LITE ingress takes packets before classification."""
    vs, _, stats, conn = setup()
    a = rule(vs, 0, 10, codec.encode_instructions(goto_table=1))
    vs.shared.add(a.serial)
    ask(stats, conn, p.OFPTableStatsRequest(DP, 0))
    vs.host.sessions[DPID].answer(phys_flow_stats(a.serial, 3, 1))
    assert table_rows(conn)[:2] == [(0, 1, 0, ALL_ONES), (1, 0, ALL_ONES, 0)]
    lite = VSwitchView(NET, 3, VDPID, DPID, 4, {2: PortMap(2, 12, 40, True, lite_in=(12, 64))})
    vs, _, stats, conn = setup(lite)
    ask(stats, conn, p.OFPTableStatsRequest(DP, 0))
    vs.host.sessions[DPID].answer()
    assert table_rows(conn)[0] == (0, 0, ALL_ONES, 0)


# --- ports -------------------------------------------------------------------------------------
def group_stats(gid: int, packets: int, nbytes: int, buckets: int = 1) -> bytes:
    return msgs.group_stats_entry(gid, 0, packets, nbytes, (3, 0), [(packets, nbytes)] * buckets)


def test_port_stats_rx_from_classification_tx_from_the_peer_and_the_edge_groups() -> None:
    vs, _, stats, conn = setup()
    vs.host.classified = {(VDPID, 1): [5, 500], (VDPID, 2): [6, 600], (0x44, 7): [7, 700]}
    ask(stats, conn, p.OFPPortStatsRequest(DP, 0, ofp.OFPP_ANY))
    assert vs.host.classified_dpids == {DPID, PEER_DPID, 12}
    assert conn.touched == {DPID, PEER_DPID, 12}
    mtype, _ = vs.host.sessions[DPID].answer(
        group_stats(901, 8, 800) + group_stats(902, 1, 100) + group_stats(77, 99, 99)
    )
    assert mtype == ofp.OFPMP_GROUP
    (r,) = replies(conn)
    got = {s.port_no: (s.rx_packets, s.rx_bytes, s.tx_packets, s.tx_bytes) for s in r.body}
    assert got == {
        1: (5, 500, 9, 900),  # tx: through its two indirect groups
        2: (6, 600, 7, 700),  # tx: what the peer vport received
        3: (0, 0, ALL_ONES, ALL_ONES),  # no counter for what it sent
    }
    assert all(s.rx_errors == ALL_ONES and s.duration_sec >= 5 for s in r.body)


def test_port_stats_of_one_port_and_of_no_such_port() -> None:
    vs, _, stats, conn = setup()
    ask(stats, conn, p.OFPPortStatsRequest(DP, 0, 3))
    assert [s.port_no for s in replies(conn)[0].body] == [3]
    assert vs.host.sessions[DPID].asked == []  # no edge group to read
    ask(stats, conn, p.OFPPortStatsRequest(DP, 0, 9))  # none: empty, as Open vSwitch answers
    assert replies(conn)[0].body == []


def test_rx_over_an_openflow10_pswitch_is_unknown() -> None:
    of10 = VSwitchView(NET, 3, VDPID, DPID, 1, {3: PortMap(3, 13)}, of10=True)
    vs, _, stats, conn = setup(of10)
    vs.host.classified = {(VDPID, 3): [5, 500]}
    ask(stats, conn, p.OFPPortStatsRequest(DP, 0, ofp.OFPP_ANY))
    (s,) = replies(conn)[0].body
    assert (s.rx_packets, s.tx_packets) == (ALL_ONES, ALL_ONES)


# --- groups and meters -------------------------------------------------------------------------
def add_group(groups: VSwitchGroups, gid: int, buckets: int = 1) -> int:
    gm = p.OFPGroupMod(DP, ofp.OFPGC_ADD, ofp.OFPGT_ALL, gid,
                       [p.OFPBucket(actions=[p.OFPActionOutput(1)])] * buckets)  # fmt: skip
    groups.decide_group_mod(osken_bytes(gm))
    return groups.groups[gid].phys_id


def test_group_desc_is_the_tenants_groups_as_sent() -> None:
    _, groups, stats, conn = setup()
    add_group(groups, 8)
    add_group(groups, 2, buckets=2)
    ask(stats, conn, p.OFPGroupDescStatsRequest(DP, 0))
    got = [(g.group_id, g.type, len(g.buckets)) for g in replies(conn)[0].body]
    assert got == [(2, ofp.OFPGT_ALL, 2), (8, ofp.OFPGT_ALL, 1)]


def test_group_stats_under_the_tenants_ids_and_ref_counts() -> None:
    vs, groups, stats, conn = setup()
    p5, p6 = add_group(groups, 5), add_group(groups, 6, buckets=2)
    to5 = codec.encode_instructions(apply_actions=struct.pack("!HHI", ofp.OFPAT_GROUP, 8, 5))
    rule(vs, 0, 1, to5)
    rule(vs, 0, 2, to5)
    ask(stats, conn, p.OFPGroupStatsRequest(DP, 0, ofp.OFPG_ALL))
    assert conn.touched == {DPID}
    # the pswitch reports every group it has: another vswitch's (p5 + 100) stays unseen
    vs.host.sessions[DPID].answer(group_stats(p5, 4, 400) + group_stats(p5 + 100, 9, 9))
    (r,) = replies(conn)
    got = [(g.group_id, g.ref_count, g.packet_count, len(g.bucket_stats)) for g in r.body]
    assert got == [(5, 2, 4, 1), (6, 0, 0, 2)]  # 6: not on the pswitch, its buckets counted 0
    assert p6 != p5
    ask(stats, conn, p.OFPGroupStatsRequest(DP, 0, 9))  # no such group: an empty reply, no ask
    assert replies(conn)[0].body == [] and vs.host.sessions[DPID].asked == []


def test_group_features_offer_every_type() -> None:
    _, _, stats, conn = setup()
    ask(stats, conn, p.OFPGroupFeaturesStatsRequest(DP, 0))
    (r,) = replies(conn)
    assert r.body.types == sum(1 << t for t in (0, 1, 2, 3))
    assert r.body.max_groups == [65535] * 4


def add_meter(groups: VSwitchGroups, mid: int) -> int:
    mm = p.OFPMeterMod(DP, ofp.OFPMC_ADD, ofp.OFPMF_KBPS, mid,
                       [p.OFPMeterBandDrop(rate=1000, burst_size=0)])  # fmt: skip
    groups.decide_meter_mod(osken_bytes(mm))
    return groups.meters[mid].phys_id


def meter_stats(phys: int, packets: int) -> bytes:
    band = struct.pack("!QQ", packets, packets * 100)
    head = msgs.METER_STATS.pack(phys, msgs.METER_STATS.size + len(band), 0, packets,
                                 packets * 100, 2, 0)  # fmt: skip
    return head + band


def test_meter_stats_and_config_under_the_tenants_ids() -> None:
    vs, groups, stats, conn = setup()
    p3, p4 = add_meter(groups, 3), add_meter(groups, 4)
    rule(vs, 0, 1, codec.encode_instructions(meter=3))
    ask(stats, conn, p.OFPMeterStatsRequest(DP, 0, ofp.OFPM_ALL))
    mtype, body = vs.host.sessions[DPID].answer(meter_stats(p3, 5) + meter_stats(999, 1))
    assert mtype == ofp.OFPMP_METER and struct.unpack_from("!I", body)[0] == ofp.OFPM_ALL
    (r,) = replies(conn)
    got = [(m.meter_id, m.flow_count, m.packet_in_count, len(m.band_stats)) for m in r.body]
    assert got == [(3, 1, 5, 1)]  # meter 4 not reported; another's (999) never shown
    assert p4 != p3


def meter_config(phys: int, flags: int, rate: int, burst: int) -> bytes:
    band = struct.pack("!HHII4x", ofp.OFPMBT_DROP, 16, rate, burst)
    return msgs.METER_CONFIG.pack(msgs.METER_CONFIG.size + len(band), flags, phys) + band


def test_meter_config_is_what_the_pswitch_applied_under_the_tenants_ids() -> None:
    """Not an echo of the METER_MOD: the pswitch's own description (OVS fills in a burst
    size left at 0), another vswitch's meter left out."""
    vs, groups, stats, conn = setup()
    p3, p4 = add_meter(groups, 3), add_meter(groups, 4)
    ask(stats, conn, p.OFPMeterConfigStatsRequest(DP, 0, 4))
    assert conn.touched == {DPID}
    mtype, body = vs.host.sessions[DPID].answer(
        meter_config(p3, ofp.OFPMF_KBPS, 1000, 1000) + meter_config(999, 0, 1, 1)
        + meter_config(p4, ofp.OFPMF_KBPS | ofp.OFPMF_BURST, 1000, 1000)
    )  # fmt: skip
    assert mtype == ofp.OFPMP_METER_CONFIG and struct.unpack_from("!I", body)[0] == ofp.OFPM_ALL
    ((m,),) = [r.body for r in replies(conn)]
    assert (m.meter_id, m.flags, m.bands[0].rate, m.bands[0].burst_size) == (
        4, ofp.OFPMF_KBPS | ofp.OFPMF_BURST, 1000, 1000)  # fmt: skip
    ask(stats, conn, p.OFPMeterConfigStatsRequest(DP, 0, ofp.OFPM_ALL))
    vs.host.sessions[DPID].answer(meter_config(p3, ofp.OFPMF_KBPS, 1000, 1000))
    (r,) = replies(conn)  # meter 4 undescribed (the pswitch lost it?): as the tenant sent it
    assert [(m.meter_id, m.bands[0].burst_size) for m in r.body] == [(3, 1000), (4, 0)]
    ask(stats, conn, p.OFPMeterConfigStatsRequest(DP, 0, 8))  # no such meter: nothing asked
    assert replies(conn)[0].body == [] and vs.host.sessions[DPID].asked == []


def test_meter_features_are_the_pswitchs() -> None:
    vs, _, stats, conn = setup()
    ask(stats, conn, p.OFPMeterFeaturesStatsRequest(DP, 0))
    vs.host.sessions[DPID].answer(msgs.METER_FEATURES.pack(64, 1 << ofp.OFPMBT_DROP, 7, 1, 0))
    ((f,),) = [r.body for r in replies(conn)]
    assert (f.max_meter, f.capabilities, f.max_bands) == (64, 7, 1)


# --- what is refused ---------------------------------------------------------------------------
def test_unknown_malformed_and_table_changing_requests() -> None:
    _, _, stats, conn = setup()
    with pytest.raises(MalformedMessage):
        stats.multipart(conn, 7, msgs.multipart_request(codec.VERSION, 7, ofp.OFPMP_DESC)[:12])
    with pytest.raises(MalformedMessage):
        stats.multipart(conn, 7, msgs.multipart_request(codec.VERSION, 7, ofp.OFPMP_PORT_STATS))
    with pytest.raises(OFError) as exc:
        stats.multipart(conn, 7, msgs.multipart_request(codec.VERSION, 7, 99))
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART)
    with pytest.raises(OFError) as exc:
        stats.multipart(conn, 7, msgs.multipart_request(codec.VERSION, 7, ofp.OFPMP_EXPERIMENTER,
                                                        bytes(8)))  # fmt: skip
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_BAD_REQUEST,
                                                ofp.OFPBRC_BAD_EXPERIMENTER)  # fmt: skip
    ask(stats, conn, p.OFPQueueStatsRequest(DP, 0, ofp.OFPP_ANY, ofp.OFPQ_ALL))
    assert replies(conn)[0].body == []  # no queues offered: none counted
    with pytest.raises(OFError) as exc:
        changing = msgs.multipart_request(codec.VERSION, 7, ofp.OFPMP_TABLE_FEATURES, b"\0" * 64)
        stats.multipart(conn, 7, changing)
    assert exc.value.type == ofp.OFPET_TABLE_FEATURES_FAILED
    stats.multipart(conn, 7, msgs.multipart_request(codec.VERSION, 7, ofp.OFPMP_TABLE_FEATURES))
    assert [t.table_id for r in replies(conn) for t in r.body] == [0, 1, 2, 3]


# --- a big switch: counters from every pswitch it spans ----------------------------------------
OTHER_DPID = 11
BIG_FIRST = VSwitchView(NET, 3, VDPID, DPID, 4, {
    1: PortMap(1, 11, tx_group=901, hairpin_group=902),
    4: PortMap(4, 2, link_tag=7, is_link=True, exits=((2, 7),), remote=True),
})  # fmt: skip
BIG_OTHER = VSwitchView(NET, 3, VDPID, OTHER_DPID, 4, {
    1: PortMap(1, 3, link_tag=8, is_link=True, exits=((3, 8),), remote=True),
    4: PortMap(4, 5, tx_group=911, hairpin_group=912),
})  # fmt: skip


def big_setup() -> tuple[VSwitch, VSwitchStats, Conn]:
    vs, _, stats, conn = setup(BIG_FIRST)
    vs.views = {DPID: BIG_FIRST, OTHER_DPID: BIG_OTHER}
    vs.host.sessions[OTHER_DPID] = Session()
    return vs, stats, conn


def test_a_big_switchs_rule_counts_what_every_copy_counted() -> None:
    vs, stats, conn = big_setup()
    a = rule(vs, 0, 10, cookie=0xA)
    ask(stats, conn, p.OFPFlowStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY))
    assert conn.touched == {DPID, OTHER_DPID}
    vs.host.sessions[DPID].answer(phys_flow_stats(a.serial, 2, 200))
    assert conn.channel.sent == []  # waits for every pswitch
    vs.host.sessions[OTHER_DPID].answer(phys_flow_stats(a.serial, 3, 300))
    (r,) = replies(conn)
    assert [(s.packet_count, s.byte_count) for s in r.body] == [(5, 500)]


def test_a_big_switchs_vport_counts_tx_on_its_own_pswitch() -> None:
    vs, stats, conn = big_setup()
    vs.host.classified = {(VDPID, 1): [1, 100], (VDPID, 4): [2, 200]}
    ask(stats, conn, p.OFPPortStatsRequest(DP, 0, ofp.OFPP_ANY))
    assert vs.host.classified_dpids == {DPID, OTHER_DPID, 12}  # 12: a moved host
    vs.host.sessions[DPID].answer(group_stats(901, 4, 400) + group_stats(911, 50, 50))
    vs.host.sessions[OTHER_DPID].answer(group_stats(911, 6, 600) + group_stats(901, 70, 70))
    (r,) = replies(conn)
    got = {s.port_no: (s.rx_packets, s.tx_packets, s.tx_bytes) for s in r.body}
    # the same group id on another pswitch is somebody else's: never mixed in
    assert got == {1: (1, 4, 400), 4: (2, 6, 600)}
