"""A vswitch's own answers to a controller (FEATURES, QUEUE_GET_CONFIG, PACKET_INs no tenant
rule names), as a bare Open vSwitch bridge gives them (the conformance harness compares the
two: testbed/conformance)."""

from __future__ import annotations

import struct

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.mapping import layout
from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.codec import OFError, PacketIn
from tenantvisor.virtual.endpoint import VSwitchEndpoint

from .ofkit import DP, osken_bytes, osken_parse
from .test_reduce_churn import NET, Channel, Conn, network


class Recording(Channel):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def send(self, msg: bytes) -> None:
        self.sent.append(msg)


def conn() -> Conn:
    c = Conn()
    c.channel = Recording()
    return c


def test_features_say_which_statistics_the_vswitch_answers() -> None:
    lf1 = network("exact")[1]["lf1"]
    c = conn()
    lf1.handle(c, ofp.OFPT_FEATURES_REQUEST, 7, osken_bytes(p.OFPFeaturesRequest(DP)))  # type: ignore[arg-type]
    (reply,) = [osken_parse(m) for m in c.channel.sent]  # type: ignore[attr-defined]
    want = ofp.OFPC_FLOW_STATS | ofp.OFPC_TABLE_STATS | ofp.OFPC_PORT_STATS | ofp.OFPC_GROUP_STATS
    assert reply.capabilities == want  # no queues, no reassembly, no STP
    assert (reply.datapath_id, reply.n_buffers, reply.auxiliary_id) == (lf1.vdpid, 0, 0)


def test_queue_config_of_a_vport_lists_no_queues_and_of_another_port_is_refused() -> None:
    lf1 = network("exact")[1]["lf1"]
    c = conn()
    msg = struct.pack("!BBHI", 4, ofp.OFPT_QUEUE_GET_CONFIG_REQUEST, 16, 7) + struct.pack("!I4x", 2)
    lf1.handle(c, ofp.OFPT_QUEUE_GET_CONFIG_REQUEST, 7, msg)  # type: ignore[arg-type]
    (reply,) = [osken_parse(m) for m in c.channel.sent]  # type: ignore[attr-defined]
    assert (reply.msg_type, reply.port, reply.queues) == (ofp.OFPT_QUEUE_GET_CONFIG_REPLY, 2, [])
    other = msg[:8] + struct.pack("!I4x", 77)
    with pytest.raises(OFError) as exc:
        lf1.handle(c, ofp.OFPT_QUEUE_GET_CONFIG_REQUEST, 7, other)  # type: ignore[arg-type]
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_QUEUE_OP_FAILED, ofp.OFPQOFC_BAD_PORT)


# --- PACKET_INs the pswitch sends for what no tenant rule's cookie names ------------------
FRAME = bytes.fromhex("0200000000aa0200000000010800") + bytes(46)


def recorded(ep: VSwitchEndpoint) -> list[tuple[int, int, int, int, int]]:
    """(reason, table, cookie, in_port, metadata) of each PACKET_IN the tenant is sent."""
    got: list[tuple[int, int, int, int, int]] = []

    def broadcast(msg: bytes, kind: int, reason: int) -> None:
        pi = osken_parse(msg)
        got.append((pi.reason, pi.table_id, pi.cookie, pi.match["in_port"],
                    pi.match.get("metadata", 0)))  # fmt: skip

    ep._broadcast = broadcast  # type: ignore[method-assign]
    return got


def physical_packet_in(cookie: int, meta: int, reason: int = ofp.OFPR_ACTION) -> PacketIn:
    return PacketIn(ofp.OFP_NO_BUFFER, len(FRAME), reason, 1, cookie,
                    [codec.oxm_u64(oxm.METADATA, meta)], FRAME)  # fmt: skip


def add_rule(ep: VSwitchEndpoint, **kw: object) -> None:
    ep.handle(conn(), ofp.OFPT_FLOW_MOD, 7, osken_bytes(p.OFPFlowMod(DP, **kw)))  # type: ignore[arg-type]


def test_a_packet_outs_output_to_controller_names_no_rule() -> None:
    lf1 = network("exact")[1]["lf1"]
    got = recorded(lf1)
    meta = layout.INJECTED | layout.vswitch_meta(lf1.view.index, 2)
    lf1.packet_in(physical_packet_in(layout.ALL_ONES, meta), meta)
    assert got == [(ofp.OFPR_ACTION, 0, layout.ALL_ONES, 2, 0)]  # as a bare OVS bridge says


def test_a_packet_out_taken_by_the_table_miss_rule_is_action_as_ovs_says() -> None:
    lf1 = network("exact")[1]["lf1"]
    add_rule(lf1, priority=0, cookie=9, instructions=[
        p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(ofp.OFPP_CONTROLLER)])
    ])  # fmt: skip
    (vf,) = lf1.table
    got = recorded(lf1)
    cookie = layout.tenant_cookie(NET, vf.serial)
    wire = layout.vswitch_meta(lf1.view.index, 1)
    lf1.packet_in(physical_packet_in(cookie, wire), wire)
    lf1.packet_in(physical_packet_in(cookie, wire | layout.INJECTED), wire | layout.INJECTED)
    assert got == [(ofp.OFPR_NO_MATCH, 0, 9, 1, 0), (ofp.OFPR_ACTION, 0, 9, 1, 0)]


def test_an_expiring_ttl_keeps_its_reason() -> None:
    lf1 = network("exact")[1]["lf1"]
    add_rule(lf1, priority=5, cookie=4, match=p.OFPMatch(eth_type=0x0800), instructions=[
        p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionDecNwTtl()])
    ])  # fmt: skip
    (vf,) = lf1.table
    got = recorded(lf1)
    meta = layout.vswitch_meta(lf1.view.index, 1)
    lf1.packet_in(physical_packet_in(layout.tenant_cookie(NET, vf.serial), meta,
                                     ofp.OFPR_INVALID_TTL), meta)  # fmt: skip
    assert got == [(ofp.OFPR_INVALID_TTL, 0, 4, 1, 0)]


def test_an_action_set_output_names_the_table_0_rule_when_the_frame_can_say() -> None:
    """OVS names the rule its first table took the packet with; on a pswitch that is the
    hypervisor's classification rule (infrastructure cookie), so the tenant's is found from
    the frame, and left unnamed when a rewrite may have changed what the frame says."""
    lf1 = network("exact")[1]["lf1"]
    to_ctl = [p.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS,
                                      [p.OFPActionOutput(ofp.OFPP_CONTROLLER)])]  # fmt: skip
    add_rule(lf1, priority=10, cookie=0x10, match=p.OFPMatch(in_port=1, eth_type=0x0800),
             instructions=to_ctl)  # fmt: skip
    add_rule(lf1, priority=5, cookie=0x20, match=p.OFPMatch(in_port=1), instructions=to_ctl)
    got = recorded(lf1)
    meta = layout.vswitch_meta(lf1.view.index, 1) | 0x77
    infra = layout.infra_cookie(NET)
    lf1.packet_in(physical_packet_in(infra, meta), meta)
    arp = FRAME[:12] + b"\x08\x06" + FRAME[14:]
    lf1.packet_in(PacketIn(ofp.OFP_NO_BUFFER, len(arp), ofp.OFPR_ACTION, 0, infra, [], arp), meta)
    add_rule(
        lf1,
        priority=1,
        table_id=1,
        instructions=[
            p.OFPInstructionActions(
                ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionSetField(eth_dst="02:00:00:00:00:bb")]
            )
        ],
    )
    lf1.packet_in(physical_packet_in(infra, meta), meta)
    assert got == [
        (ofp.OFPR_ACTION, 0, 0x10, 1, 0x77),
        (ofp.OFPR_ACTION, 0, 0x20, 1, 0x77),
        (ofp.OFPR_ACTION, 0, layout.ALL_ONES, 1, 0x77),  # a rule rewrites: not said
    ]


def test_a_frame_a_neighbours_packet_out_carries_in_misses_as_on_the_wire() -> None:
    """At a reduction level the daemon carries a PACKET_OUT's frame across vlinks and
    injects it where it arrives (INJECTED): lf1's table miss must still say NO_MATCH, as
    it would for a frame off the wire (ovs-testcontroller ignores ACTION and would never
    learn: the demo at hop and lite lost every ping across the spine)."""
    _, eps = network("hop")
    lf1, sp1 = eps["lf1"], eps["sp1"]
    add_rule(lf1, priority=0, cookie=9, instructions=[
        p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(ofp.OFPP_CONTROLLER)])
    ])  # fmt: skip
    (vf,) = lf1.table
    got = recorded(lf1)
    po = p.OFPPacketOut(
        DP,
        buffer_id=ofp.OFP_NO_BUFFER,
        in_port=ofp.OFPP_CONTROLLER,
        actions=[p.OFPActionOutput(1)],
        data=FRAME,
    )  # sp1:1 faces lf1:3
    sp1.handle(conn(), ofp.OFPT_PACKET_OUT, 8, osken_bytes(po))  # type: ignore[arg-type]
    meta = layout.INJECTED | layout.vswitch_meta(lf1.view.index, 3)
    cookie = layout.tenant_cookie(NET, vf.serial)
    lf1.packet_in(physical_packet_in(cookie, meta), meta)
    assert got == [(ofp.OFPR_NO_MATCH, 0, 9, 3, 0)]
    lf1.packet_in(physical_packet_in(cookie, meta), meta)  # its own PACKET_OUT's: ACTION
    assert got[-1][0] == ofp.OFPR_ACTION
