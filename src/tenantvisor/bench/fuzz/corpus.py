"""Fuzz inputs: seeds as real controllers send them, random messages, and mutations.

Seeds are built with os-ken, the OpenFlow library several controllers are written on, so
they are the bytes a real controller sends: every OpenFlow 1.3 message a vswitch handles
(FLOW_MOD with many match fields and every instruction, GROUP_MOD, METER_MOD, PACKET_OUT,
each multipart request, configuration, roles, async, barrier, echo) and the OpenFlow 1.0
ones, alone and in the sequences controllers use (a group, then a rule using it, then its
delete).  Mutations work on the frames of an input, so a length field can lie about its own
frame without the whole stream becoming noise.  Everything is driven by a `random.Random`,
so a seed number reproduces a run.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from typing import Any

from os_ken.ofproto import ofproto_v1_0 as o10
from os_ken.ofproto import ofproto_v1_0_parser as p10
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.bench.fuzz.harness import (
    CHUNK_SIZES,
    CONFIG_BYTES,
    LEVELS,
    MAC1,
    MAC2,
    MAC3,
    NETWORKS,
    config,
)
from tenantvisor.openflow import codec, oxm

DP13 = ProtocolDesc(ofp.OFP_VERSION)
DP10 = ProtocolDesc(o10.OFP_VERSION)
LLDP = bytes.fromhex("0180c200000e02000000000188cc") + bytes(46)
ARP = bytes.fromhex("ffffffffffff0200000000010806") + bytes(28)
IPV4 = (
    bytes.fromhex("0200000000030200000000010800")
    + bytes.fromhex("4500002800004000400600000a0000010a000003")
    + bytes(20)
)


def _b(msg: Any, xid: int = 0) -> bytes:
    """os-ken message object -> wire bytes, with a given xid."""
    msg.xid = xid  # not set_xid: a seed's message may be in several sequences
    msg.serialize()
    return bytes(msg.buf)


# --- OpenFlow 1.3 seeds, as os-ken builds them -----------------------------------------------
def _apply(*acts: Any) -> Any:
    return p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(acts))


def _fm(match: Any = None, ins: list[Any] | None = None, **kw: Any) -> Any:
    kw.setdefault("out_port", ofp.OFPP_ANY)
    kw.setdefault("out_group", ofp.OFPG_ANY)
    kw.setdefault("buffer_id", ofp.OFP_NO_BUFFER)
    return p.OFPFlowMod(DP13, match=match or p.OFPMatch(), instructions=ins or [], **kw)


def _flow_mods13() -> list[Any]:
    out = p.OFPActionOutput
    full = p.OFPMatch(
        in_port=1,
        eth_src=MAC1,
        eth_dst=MAC3,
        eth_type=0x0800,
        vlan_vid=(0x1000 | 10),
        vlan_pcp=3,
        ip_dscp=10,
        ip_ecn=1,
        ip_proto=6,
        ipv4_src=("10.0.0.0", "255.255.255.0"),
        ipv4_dst="10.0.0.3",
        tcp_src=40000,
        tcp_dst=80,
        metadata=(0x12, 0xFF),
    )
    v6 = p.OFPMatch(
        in_port=2,
        eth_type=0x86DD,
        ipv6_src="fe80::1",
        ipv6_dst=("2001:db8::", "ffff:ffff::"),
        ip_proto=17,
        udp_src=53,
        udp_dst=5353,
        ipv6_flabel=5,
    )
    arp = p.OFPMatch(
        eth_type=0x0806,
        arp_op=1,
        arp_spa="10.0.0.1",
        arp_tpa="10.0.0.3",
        arp_sha=MAC1,
        arp_tha=MAC3,
    )
    icmp = p.OFPMatch(eth_type=0x0800, ip_proto=1, icmpv4_type=8, icmpv4_code=0)
    mpls = p.OFPMatch(eth_type=0x8847, mpls_label=17, mpls_tc=1, mpls_bos=1)
    return [
        _fm(p.OFPMatch(), [_apply(out(ofp.OFPP_CONTROLLER, 0xFFFF))], priority=0),  # miss
        _fm(
            full,
            [_apply(out(2))],
            priority=100,
            idle_timeout=10,
            hard_timeout=30,
            flags=ofp.OFPFF_SEND_FLOW_REM,
            cookie=0x1234,
        ),
        _fm(v6, [_apply(p.OFPActionSetField(ipv6_dst="fe80::2"), out(3))], priority=5),
        _fm(arp, [_apply(out(ofp.OFPP_FLOOD))], priority=7),
        _fm(icmp, [_apply(out(ofp.OFPP_ALL))], priority=8),
        _fm(mpls, [_apply(p.OFPActionPopMpls(0x0800), out(1))], priority=9),
        _fm(
            p.OFPMatch(in_port=1),
            [
                _apply(
                    p.OFPActionPushVlan(0x8100), p.OFPActionSetField(vlan_vid=0x1000 | 5), out(4)
                ),
                p.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, [out(2)]),
                p.OFPInstructionWriteMetadata(0x5, 0xFF),
                p.OFPInstructionGotoTable(1),
            ],
            priority=20,
        ),
        _fm(
            p.OFPMatch(eth_dst=MAC2),
            [
                _apply(
                    p.OFPActionSetField(eth_dst=MAC1),
                    p.OFPActionSetField(eth_src=MAC3),
                    p.OFPActionDecNwTtl(),
                    out(ofp.OFPP_IN_PORT),
                )
            ],
            table_id=1,
            priority=30,
        ),
        _fm(
            p.OFPMatch(in_port=2, eth_type=0x0800),
            [p.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, []), p.OFPInstructionGotoTable(3)],
            table_id=2,
        ),
        _fm(p.OFPMatch(eth_type=0x0800, ip_proto=17), [_apply(out(ofp.OFPP_TABLE))]),
        _fm(
            p.OFPMatch(eth_src=MAC1),
            [_apply(p.OFPActionSetQueue(1), p.OFPActionPopVlan(), p.OFPActionCopyTtlOut(), out(1))],
        ),
        _fm(p.OFPMatch(in_port=1), [_apply(out(2))], command=ofp.OFPFC_MODIFY),
        _fm(p.OFPMatch(in_port=1), [_apply(out(3))], command=ofp.OFPFC_MODIFY_STRICT, priority=20),
        _fm(p.OFPMatch(), command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL),
        _fm(full, command=ofp.OFPFC_DELETE_STRICT, priority=100),
        _fm(p.OFPMatch(), command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL, out_port=2),
        _fm(p.OFPMatch(), command=ofp.OFPFC_DELETE, table_id=0, cookie=0x1234, cookie_mask=0xFFFF),
        _fm(p.OFPMatch(in_port=1), [_apply(out(2))], flags=ofp.OFPFF_CHECK_OVERLAP, priority=20),
    ]


def _groups_meters13() -> list[list[Any]]:
    """Sequences: a group or meter, a rule using it, a change, a delete."""
    out = p.OFPActionOutput
    bucket = p.OFPBucket
    sel = [bucket(weight=1, actions=[out(1)]), bucket(weight=2, actions=[out(3)])]
    ff = [bucket(watch_port=3, actions=[out(3)]), bucket(watch_port=4, actions=[out(4)])]
    add, mod, delete = ofp.OFPGC_ADD, ofp.OFPGC_MODIFY, ofp.OFPGC_DELETE
    drop = p.OFPMeterBandDrop(rate=1000, burst_size=10)
    remark = p.OFPMeterBandDscpRemark(rate=500, burst_size=5, prec_level=1)
    return [
        [
            p.OFPGroupMod(
                DP13, add, ofp.OFPGT_ALL, 1, [bucket(actions=[out(1)]), bucket(actions=[out(2)])]
            ),
            _fm(p.OFPMatch(in_port=3), [_apply(p.OFPActionGroup(1))], priority=5),
            p.OFPGroupMod(DP13, mod, ofp.OFPGT_SELECT, 1, sel),
            p.OFPGroupMod(DP13, delete, ofp.OFPGT_ALL, 1, []),
        ],
        [
            p.OFPGroupMod(DP13, add, ofp.OFPGT_FF, 2, ff),
            p.OFPGroupMod(
                DP13,
                add,
                ofp.OFPGT_INDIRECT,
                3,
                [bucket(actions=[p.OFPActionSetField(eth_dst=MAC3), out(2)])],
            ),
            p.OFPGroupMod(DP13, add, ofp.OFPGT_ALL, 4, [bucket(actions=[p.OFPActionGroup(3)])]),
            p.OFPGroupMod(DP13, delete, ofp.OFPGT_ALL, ofp.OFPG_ALL, []),
        ],
        [
            p.OFPMeterMod(DP13, ofp.OFPMC_ADD, ofp.OFPMF_KBPS | ofp.OFPMF_BURST, 1, [drop]),
            _fm(p.OFPMatch(in_port=1), [p.OFPInstructionMeter(1), _apply(out(2))]),
            p.OFPMeterMod(DP13, ofp.OFPMC_MODIFY, ofp.OFPMF_PKTPS, 1, [remark]),
            p.OFPMeterStatsRequest(DP13, 0, ofp.OFPM_ALL),
            p.OFPMeterMod(DP13, ofp.OFPMC_DELETE, 0, 1, []),
        ],
    ]


def _packet_outs13() -> list[Any]:
    out = p.OFPActionOutput
    po = p.OFPPacketOut
    ctl, none = ofp.OFPP_CONTROLLER, ofp.OFP_NO_BUFFER
    return [
        po(DP13, none, ctl, [out(1)], IPV4),
        po(DP13, none, 1, [out(ofp.OFPP_FLOOD)], ARP),
        po(DP13, none, ctl, [out(ofp.OFPP_ALL)], ARP),
        po(DP13, none, 2, [out(ofp.OFPP_IN_PORT)], IPV4),
        po(DP13, none, ctl, [out(ofp.OFPP_TABLE)], IPV4),
        po(DP13, none, ctl, [out(3)], LLDP),
        po(DP13, none, ctl, [out(ofp.OFPP_FLOOD)], LLDP),
        po(
            DP13,
            none,
            1,
            [
                p.OFPActionSetField(eth_dst=MAC2),
                p.OFPActionPushVlan(0x8100),
                p.OFPActionSetField(vlan_vid=0x1000 | 3),
                out(2),
            ],
            IPV4,
        ),
        po(DP13, none, ctl, [p.OFPActionGroup(1)], IPV4),
        po(DP13, 7, ctl, [out(1)], None),
    ]


def _multipart13() -> list[Any]:
    m = p
    return [
        m.OFPDescStatsRequest(DP13, 0),
        m.OFPFlowStatsRequest(
            DP13, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, m.OFPMatch(in_port=1)
        ),
        m.OFPAggregateStatsRequest(
            DP13, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, m.OFPMatch()
        ),
        m.OFPTableStatsRequest(DP13, 0),
        m.OFPPortStatsRequest(DP13, 0, ofp.OFPP_ANY),
        m.OFPPortStatsRequest(DP13, 0, 1),
        m.OFPPortDescStatsRequest(DP13, 0),
        m.OFPQueueStatsRequest(DP13, 0, ofp.OFPP_ANY, ofp.OFPQ_ALL),
        m.OFPGroupStatsRequest(DP13, 0, ofp.OFPG_ALL),
        m.OFPGroupDescStatsRequest(DP13, 0),
        m.OFPGroupFeaturesStatsRequest(DP13, 0),
        m.OFPMeterStatsRequest(DP13, 0, ofp.OFPM_ALL),
        m.OFPMeterConfigStatsRequest(DP13, 0, ofp.OFPM_ALL),
        m.OFPMeterFeaturesStatsRequest(DP13, 0),
        m.OFPTableFeaturesStatsRequest(DP13, 0, []),
        m.OFPExperimenterStatsRequest(DP13, 0, 0x2320, 1, b"abcd"),
    ]


def _others13() -> list[Any]:
    return [
        p.OFPFeaturesRequest(DP13),
        p.OFPGetConfigRequest(DP13),
        p.OFPSetConfig(DP13, ofp.OFPC_FRAG_NORMAL, 0xFFFF),
        p.OFPBarrierRequest(DP13),
        p.OFPEchoRequest(DP13, b"ping"),
        p.OFPRoleRequest(DP13, ofp.OFPCR_ROLE_MASTER, 1),
        p.OFPRoleRequest(DP13, ofp.OFPCR_ROLE_SLAVE, 2),
        p.OFPRoleRequest(DP13, ofp.OFPCR_ROLE_EQUAL, 0),
        p.OFPRoleRequest(DP13, ofp.OFPCR_ROLE_NOCHANGE, 0),
        p.OFPGetAsyncRequest(DP13),
        p.OFPSetAsync(DP13, [3, 0], [7, 7], [15, 0]),
        p.OFPPortMod(DP13, 1, "02:00:00:00:00:01", 0, 0, 0),
        p.OFPTableMod(DP13, 0, 3),
        p.OFPQueueGetConfigRequest(DP13, 1),
        p.OFPExperimenter(DP13, 0x2320, 1, b"data"),
        p.OFPHello(DP13),
    ]


# --- OpenFlow 1.0 seeds ----------------------------------------------------------------------
def _seeds10() -> list[list[Any]]:
    out = p10.OFPActionOutput
    tcp = p10.OFPMatch(
        wildcards=0,
        in_port=1,
        dl_src=b"\x02\0\0\0\0\x01",
        dl_dst=b"\x02\0\0\0\0\x03",
        dl_vlan=0xFFFF,
        dl_vlan_pcp=0,
        dl_type=0x0800,
        nw_tos=0,
        nw_proto=6,
        nw_src=0x0A000001,
        nw_dst=0x0A000003,
        tp_src=40000,
        tp_dst=80,
    )
    wild = p10.OFPMatch()
    arp = p10.OFPMatch(dl_type=0x0806, nw_proto=1, nw_src=0x0A000001, nw_src_mask=24)
    fm = p10.OFPFlowMod
    return [
        [
            fm(
                DP10,
                tcp,
                7,
                o10.OFPFC_ADD,
                10,
                30,
                100,
                actions=[out(2)],
                flags=o10.OFPFF_SEND_FLOW_REM,
            )
        ],
        [fm(DP10, wild, 0, o10.OFPFC_ADD, priority=0, actions=[out(o10.OFPP_CONTROLLER, 0xFFFF)])],
        [fm(DP10, arp, 0, o10.OFPFC_ADD, actions=[out(o10.OFPP_FLOOD)])],
        [
            fm(
                DP10,
                tcp,
                0,
                o10.OFPFC_ADD,
                actions=[
                    p10.OFPActionVlanVid(5),
                    p10.OFPActionVlanPcp(1),
                    p10.OFPActionStripVlan(),
                    p10.OFPActionSetDlSrc(b"\x02\0\0\0\0\x02"),
                    p10.OFPActionSetDlDst(b"\x02\0\0\0\0\x04"),
                    p10.OFPActionSetNwSrc(0x0A000009),
                    p10.OFPActionSetNwDst(0x0A00000A),
                    p10.OFPActionSetNwTos(8),
                    p10.OFPActionSetTpSrc(1),
                    p10.OFPActionSetTpDst(2),
                    out(o10.OFPP_IN_PORT),
                ],
            )
        ],
        [fm(DP10, wild, 0, o10.OFPFC_ADD, actions=[p10.OFPActionEnqueue(1, 1)])],
        [
            fm(DP10, tcp, 0, o10.OFPFC_MODIFY, actions=[out(1)]),
            fm(DP10, tcp, 0, o10.OFPFC_MODIFY_STRICT, priority=100, actions=[out(2)]),
            fm(DP10, wild, 0, o10.OFPFC_DELETE, out_port=2),
            fm(DP10, tcp, 0, o10.OFPFC_DELETE_STRICT, priority=100),
        ],
        [
            p10.OFPPacketOut(DP10, 0xFFFFFFFF, o10.OFPP_NONE, [out(1)], IPV4),
            p10.OFPPacketOut(DP10, 0xFFFFFFFF, 1, [out(o10.OFPP_FLOOD)], ARP),
            p10.OFPPacketOut(DP10, 0xFFFFFFFF, o10.OFPP_NONE, [out(2)], LLDP),
            p10.OFPPacketOut(DP10, 0xFFFFFFFF, 2, [out(o10.OFPP_TABLE)], IPV4),
        ],
        [
            p10.OFPDescStatsRequest(DP10, 0),
            p10.OFPFlowStatsRequest(DP10, 0, wild, 0xFF, o10.OFPP_NONE),
            p10.OFPAggregateStatsRequest(DP10, 0, wild, 0xFF, o10.OFPP_NONE),
            p10.OFPTableStatsRequest(DP10, 0),
            p10.OFPPortStatsRequest(DP10, 0, o10.OFPP_NONE),
            p10.OFPQueueStatsRequest(DP10, 0, o10.OFPP_ALL, o10.OFPQ_ALL),
            p10.OFPVendorStatsRequest(DP10, 0, 0x2320, b"\0\0\0\0"),
        ],
        [
            p10.OFPFeaturesRequest(DP10),
            p10.OFPGetConfigRequest(DP10),
            p10.OFPSetConfig(DP10, 0, 128),
            p10.OFPBarrierRequest(DP10),
            p10.OFPEchoRequest(DP10, b"x"),
            p10.OFPQueueGetConfigRequest(DP10, 1),
            p10.OFPPortMod(DP10, 1, MAC1, 0, 0, 0),
            p10.OFPVendor(DP10),
        ],
    ]


def _vendor10_fix(msg: Any) -> Any:
    if isinstance(msg, p10.OFPVendor):
        msg.vendor = 0x2320
        msg.data = b"\0\0\0\0"
    return msg


# --- the seed corpus -------------------------------------------------------------------------
def _stream(msgs: list[Any], first_xid: int = 1) -> bytes:
    return b"".join(_b(_vendor10_fix(m), first_xid + i) for i, m in enumerate(msgs))


def _hello13() -> bytes:
    return _b(p.OFPHello(DP13, [p.OFPHelloElemVersionBitmap([ofp.OFP_VERSION])]))


def seeds() -> list[bytes]:
    """The seed inputs: configuration bytes + a stream of os-ken-built messages, over every
    network, both controller versions and the configurations' other switches."""
    groups13: list[list[Any]] = [[m] for m in _flow_mods13() + _packet_outs13()]
    groups13 += [[m] for m in _multipart13() + _others13()]
    groups13 += _groups_meters13()
    fms = _flow_mods13()
    groups13.append([fms[1], fms[6], p.OFPBarrierRequest(DP13), fms[13], fms[14]])  # add/del
    groups13.append([_others13()[5], fms[1], _others13()[6], fms[2]])  # master, then slave
    out: list[bytes] = []
    for i, msgs in enumerate(groups13):
        stream = _stream(msgs)
        network = NETWORKS[i % 4]
        out.append(config(network=network, level=LEVELS[i % 3]) + stream)
        if i % 3 == 0:
            out.append(config(network="reduced", level=LEVELS[i % 4], spine=i % 2 == 1) + stream)
        if i % 5 == 0:
            out.append(
                config(network=network, chunk=CHUNK_SIZES[i % 4], refusing=True, second=True)
                + stream
            )
        if i % 7 == 0:
            out.append(config(network=network, raw_hello=True) + _hello13() + stream)
    for i, msgs in enumerate(_seeds10()):
        stream = _stream(msgs)
        out.append(config(of10_controller=True, network=NETWORKS[i % 4]) + stream)
        out.append(config(of10_controller=True, network="of10", refusing=i % 2 == 0) + stream)
    return out


# --- random structured messages --------------------------------------------------------------
PORTS13 = [
    0,
    1,
    2,
    3,
    4,
    5,
    9,
    0xFFF,
    ofp.OFPP_MAX,
    ofp.OFPP_IN_PORT,
    ofp.OFPP_TABLE,
    ofp.OFPP_NORMAL,
    ofp.OFPP_FLOOD,
    ofp.OFPP_ALL,
    ofp.OFPP_CONTROLLER,
    ofp.OFPP_LOCAL,
    ofp.OFPP_ANY,
]
INTERESTING16 = [0, 1, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFE, 0xFFFF]
INTERESTING32 = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFF00, 0xFFFFFFFE, 0xFFFFFFFF, *PORTS13]
_OXM_SIZES = {
    0: 4,
    1: 4,
    2: 8,
    3: 6,
    4: 6,
    5: 2,
    6: 2,
    7: 1,
    8: 1,
    9: 1,
    10: 1,
    11: 4,
    12: 4,
    13: 2,
    14: 2,
    15: 2,
    16: 2,
    17: 2,
    18: 2,
    19: 1,
    20: 1,
    21: 2,
    22: 4,
    23: 4,
    24: 6,
    25: 6,
    26: 16,
    27: 16,
    28: 4,
    29: 1,
    30: 1,
    31: 16,
    32: 6,
    33: 6,
    34: 4,
    35: 1,
    36: 1,
    37: 3,
    38: 8,
    39: 2,
}


def rand_oxm(rng: random.Random) -> bytes:
    """One OXM TLV: usually a real field of its real size, sometimes anything."""
    field_no = rng.choice([*_OXM_SIZES, rng.randrange(128)])
    n = _OXM_SIZES.get(field_no, rng.randrange(17))
    masked = rng.random() < 0.25
    if rng.random() < 0.1:
        n = rng.randrange(20)
    cls = codec.OXM_CLASS_OPENFLOW_BASIC if rng.random() < 0.95 else rng.randrange(1 << 16)
    value = rng.randbytes(n)
    if field_no == oxm.IN_PORT and n == 4:
        value = struct.pack("!I", rng.choice(PORTS13))
    elif field_no == oxm.ETH_TYPE and n == 2:
        value = struct.pack("!H", rng.choice([0x0800, 0x0806, 0x86DD, 0x8100, 0x88CC, 0x8847]))
    elif field_no == oxm.VLAN_VID and n == 2:
        value = struct.pack("!H", rng.choice([0, 0x1000, 0x1005, 0x1FFF, 0xFFFF]))
    body = value + (rng.randbytes(n) if masked else b"")
    length = len(body) if rng.random() < 0.95 else rng.randrange(256)
    return struct.pack("!I", cls << 16 | field_no << 9 | int(masked) << 8 | length) + body


def rand_match(rng: random.Random) -> bytes:
    body = b"".join(rand_oxm(rng) for _ in range(rng.randrange(6)))
    length = 4 + len(body) if rng.random() < 0.95 else rng.randrange(80)
    mtype = ofp.OFPMT_OXM if rng.random() < 0.97 else rng.randrange(4)
    match = struct.pack("!HH", mtype, length) + body
    return match + bytes(-len(match) % 8)


def rand_action(rng: random.Random) -> bytes:
    t = rng.choice([ofp.OFPAT_OUTPUT] * 6 + [ofp.OFPAT_SET_FIELD] * 4 + [*range(0, 30), 0xFFFF])
    if t == ofp.OFPAT_OUTPUT:
        body = struct.pack("!IH6x", rng.choice(PORTS13), rng.choice(INTERESTING16))
    elif t == ofp.OFPAT_SET_FIELD:
        body = rand_oxm(rng)
        body += bytes(-(len(body) + 4) % 8)
    elif t in (ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_PUSH_MPLS, ofp.OFPAT_POP_MPLS, ofp.OFPAT_PUSH_PBB):
        body = struct.pack("!H2x", rng.choice([0x8100, 0x88A8, 0x8847, 0x0800, 0x88E7]))
    elif t == ofp.OFPAT_GROUP:
        body = struct.pack("!I", rng.choice([1, 2, 3, 9, ofp.OFPG_ALL, ofp.OFPG_ANY]))
    elif t == ofp.OFPAT_EXPERIMENTER:
        body = struct.pack("!I", rng.choice([0x2320, 0x4F4E4600, 0])) + rng.randbytes(12)
    else:
        body = rng.randbytes(rng.choice([4, 4, 12]))
    length = 4 + len(body)
    if rng.random() < 0.05:
        length = rng.choice([0, 4, 8, 12, 16, 24, rng.randrange(1 << 16)])
    return struct.pack("!HH", t, length) + body


def rand_actions(rng: random.Random, most: int = 4) -> bytes:
    return b"".join(rand_action(rng) for _ in range(rng.randrange(most + 1)))


def rand_instructions(rng: random.Random) -> bytes:
    out = b""
    for _ in range(rng.randrange(5)):
        t = rng.choice([1, 2, 3, 4, 5, 6, 0xFFFF, rng.randrange(1 << 16)])
        if t in (ofp.OFPIT_APPLY_ACTIONS, ofp.OFPIT_WRITE_ACTIONS):
            acts = rand_actions(rng)
            out += struct.pack("!HH4x", t, 8 + len(acts)) + acts
        elif t == ofp.OFPIT_GOTO_TABLE:
            out += struct.pack("!HHB3x", t, 8, rng.choice([0, 1, 2, 3, 4, 254, 255]))
        elif t == ofp.OFPIT_WRITE_METADATA:
            value, mask = rng.randrange(1 << 64), rng.choice([0xFF, 0xFFFFFFFF, (1 << 64) - 1])
            out += struct.pack("!HH4xQQ", t, 24, value, mask)
        elif t == ofp.OFPIT_METER:
            out += struct.pack("!HHI", t, 8, rng.choice([1, 2, 9, ofp.OFPM_MAX, 0]))
        else:
            out += struct.pack("!HH4x", t, 8)
    return out


def rand_flow_mod(rng: random.Random, xid: int) -> bytes:
    body = codec.FLOW_MOD_BODY.pack(
        rng.choice([0, 1, 0x1234, (1 << 64) - 1]),
        rng.choice([0, 0xFFFF, (1 << 64) - 1]),
        rng.choice([0, 1, 2, 3, 4, 254, 255]),
        rng.choice([0, 0, 0, 1, 2, 3, 4, 5]),
        rng.choice([0, 0, 1, 0xFFFF]),
        rng.choice([0, 0, 1, 0xFFFF]),
        rng.choice([0, 1, 100, 0x8000, 0xFFFF]),
        rng.choice([ofp.OFP_NO_BUFFER] * 5 + [0, 7]),
        rng.choice([ofp.OFPP_ANY] * 4 + PORTS13),
        rng.choice([ofp.OFPG_ANY] * 4 + [1, 2]),
        rng.choice([0, 1, 2, 4, 8, 16, 31, 0xFFFF]),
    )
    return codec.header(4, ofp.OFPT_FLOW_MOD, xid, body + rand_match(rng) + rand_instructions(rng))


def rand_packet_out(rng: random.Random, xid: int) -> bytes:
    acts = rand_actions(rng, 3)
    data = rng.choice([IPV4, ARP, LLDP, b"", rng.randbytes(rng.randrange(64))])
    alen = len(acts) if rng.random() < 0.95 else rng.randrange(1 << 16)
    body = struct.pack(
        "!IIH6x", rng.choice([ofp.OFP_NO_BUFFER] * 9 + [0]), rng.choice(PORTS13), alen
    )
    return codec.header(4, ofp.OFPT_PACKET_OUT, xid, body + acts + data)


def rand_group_mod(rng: random.Random, xid: int) -> bytes:
    buckets = b""
    for _ in range(rng.randrange(4)):
        acts = rand_actions(rng, 3)
        buckets += (
            struct.pack(
                "!HHII4x",
                16 + len(acts),
                rng.choice([0, 1, 2]),
                rng.choice([ofp.OFPP_ANY, 1, 3, 4]),
                rng.choice([ofp.OFPG_ANY, 1, 2]),
            )
            + acts
        )
    body = struct.pack(
        "!HBxI",
        rng.choice([0, 0, 1, 2, 3]),
        rng.choice([0, 1, 2, 3, 4]),
        rng.choice([1, 2, 3, 9, ofp.OFPG_MAX, ofp.OFPG_ALL, ofp.OFPG_ANY]),
    )
    return codec.header(4, ofp.OFPT_GROUP_MOD, xid, body + buckets)


def rand_meter_mod(rng: random.Random, xid: int) -> bytes:
    bands = b""
    for _ in range(rng.randrange(3)):
        btype = rng.choice([1, 2, 0xFFFF, 3])
        bands += struct.pack(
            "!HHIIB3x",
            btype,
            16,
            rng.choice([0, 1, 1000, 0xFFFFFFFF]),
            rng.choice([0, 10]),
            rng.choice([0, 1, 7]),
        )
    body = struct.pack(
        "!HHI",
        rng.choice([0, 0, 1, 2, 3]),
        rng.choice([0, 1, 2, 4, 8, 15]),
        rng.choice([1, 2, 9, ofp.OFPM_MAX, ofp.OFPM_ALL, 0]),
    )
    return codec.header(4, ofp.OFPT_METER_MOD, xid, body + bands)


def rand_multipart(rng: random.Random, xid: int) -> bytes:
    mtype = rng.choice([*range(0, 14), 0xFFFF])
    if mtype in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE):
        body = struct.pack(
            "!B3xII4xQQ",
            rng.choice([0, 1, 255]),
            rng.choice(PORTS13),
            rng.choice([ofp.OFPG_ANY, 1]),
            0,
            0,
        ) + rand_match(rng)
    elif mtype in (ofp.OFPMP_PORT_STATS, ofp.OFPMP_GROUP, ofp.OFPMP_METER, ofp.OFPMP_METER_CONFIG):
        body = struct.pack("!I4x", rng.choice(INTERESTING32))
    elif mtype == ofp.OFPMP_QUEUE:
        body = struct.pack("!II", rng.choice(PORTS13), rng.choice([0, ofp.OFPQ_ALL]))
    else:
        body = rng.randbytes(rng.choice([0, 0, 8, 64]))
    flags = rng.choice([0, 0, 0, ofp.OFPMPF_REQ_MORE])
    return codec.header(
        4, ofp.OFPT_MULTIPART_REQUEST, xid, struct.pack("!HH4x", mtype, flags) + body
    )


def rand_small(rng: random.Random, xid: int) -> bytes:
    """Configuration, role, async, barrier, echo, or a type and body at random."""
    t = rng.choice([5, 7, 9, 20, 2, 24, 26, 28, 16, 17, 22, 4, 0, rng.randrange(40)])
    if t == ofp.OFPT_SET_CONFIG:
        body = struct.pack("!HH", rng.choice([0, 1, 3, 0xFFFF]), rng.choice(INTERESTING16))
    elif t == ofp.OFPT_ROLE_REQUEST:
        body = struct.pack(
            "!I4xQ",
            rng.choice([0, 1, 2, 3, 4, 0xFFFFFFFF]),
            rng.choice([0, 1, 2, 1 << 63, (1 << 64) - 1]),
        )
    elif t == ofp.OFPT_SET_ASYNC:
        body = struct.pack("!6I", *(rng.choice([0, 1, 7, 0xFFFFFFFF]) for _ in range(6)))
    else:
        body = rng.randbytes(rng.choice([0, 0, 4, 8, 16, 40]))
    return codec.header(4, t, xid, body)


def rand_message10(rng: random.Random, xid: int) -> bytes:
    """An OpenFlow 1.0 message: FLOW_MOD, PACKET_OUT, STATS_REQUEST or another type."""
    t = rng.choice([14, 14, 14, 13, 13, 16, 16, 5, 7, 9, 18, 2, 4, rng.randrange(24)])
    if t in (o10.OFPT_FLOW_MOD, o10.OFPT_PACKET_OUT):
        acts = b""
        for _ in range(rng.randrange(4)):
            at = rng.choice([0, 0, 0, *range(1, 12), 0xFFFF])
            arg = rng.choice([1, 2, 3, 9, *(q & 0xFFFF for q in PORTS13), 0xFFF8, 0xFFFC])
            acts += struct.pack("!HHHH", at, rng.choice([8, 8, 8, 16, 0]), arg, 0xFFFF)
            if at in (o10.OFPAT_SET_DL_SRC, o10.OFPAT_SET_DL_DST, o10.OFPAT_ENQUEUE):
                acts = acts[:-4] + rng.randbytes(12)
        if t == o10.OFPT_FLOW_MOD:
            match = struct.pack(
                "!IH6s6sHBxHBB2xIIHH",
                rng.choice([0, 0x3FFFFF, rng.randrange(1 << 22)]),
                rng.choice([1, 2, 3, 0xFFFF, 0xFFF8]),
                rng.randbytes(6),
                rng.randbytes(6),
                rng.choice([0xFFFF, 1, 4095]),
                rng.randrange(8),
                rng.choice([0x0800, 0x0806, 0x86DD]),
                rng.randrange(256),
                rng.choice([1, 6, 17]),
                rng.randrange(1 << 32),
                rng.randrange(1 << 32),
                rng.randrange(1 << 16),
                rng.randrange(1 << 16),
            )
            body = match + struct.pack(
                "!QHHHHIHH",
                0,
                rng.choice([0, 1, 2, 3, 4, 5]),
                rng.choice([0, 5]),
                0,
                rng.choice([0, 1, 0xFFFF]),
                rng.choice([0xFFFFFFFF] * 5 + [0]),
                rng.choice([0xFFFF, 1, 2]),
                rng.choice([0, 1, 2, 4]),
            )
            body += acts
        else:
            body = struct.pack(
                "!IHH",
                rng.choice([0xFFFFFFFF] * 5 + [3]),
                rng.choice([0xFFFF, 1, 2, 0xFFFD, 0xFFF8]),
                len(acts),
            )
            body += acts + rng.choice([IPV4, ARP, LLDP, b""])
    elif t == o10.OFPT_STATS_REQUEST:
        body = struct.pack("!HH", rng.choice([0, 1, 2, 3, 4, 5, 0xFFFF]), 0) + rng.randbytes(
            rng.choice([0, 8, 44, 48])
        )
    else:
        body = rng.randbytes(rng.choice([0, 0, 4, 12]))
    return codec.header(1, t, xid, body)


GENERATORS13: list[Callable[[random.Random, int], bytes]] = [
    rand_flow_mod,
    rand_flow_mod,
    rand_flow_mod,
    rand_packet_out,
    rand_packet_out,
    rand_group_mod,
    rand_meter_mod,
    rand_multipart,
    rand_multipart,
    rand_small,
]


def random_input(rng: random.Random) -> bytes:
    """Configuration bytes and a few random structured messages of the controller's version."""
    cfg = rng.randbytes(CONFIG_BYTES)
    of10_controller = cfg[0] & 1
    cfg = bytes((cfg[0] & ~0x10, cfg[1]))  # the harness says HELLO: messages get through
    msgs = []
    for i in range(1 + rng.randrange(4)):
        gen = rand_message10 if of10_controller else rng.choice(GENERATORS13)
        msgs.append(gen(rng, i + 1))
    return cfg + b"".join(msgs)


# --- mutations -------------------------------------------------------------------------------
def split_frames(stream: bytes) -> list[bytes]:
    """`stream` cut where its length fields say (the rest as one last piece)."""
    out, off, n = [], 0, len(stream)
    while n - off >= 8:
        length = (stream[off + 2] << 8) | stream[off + 3]
        if length < 8 or off + length > n:
            break
        out.append(stream[off : off + length])
        off += length
    if off < n:
        out.append(stream[off:])
    return out


def _set_u16(b: bytearray, off: int, value: int) -> None:
    if off + 2 <= len(b):
        b[off : off + 2] = struct.pack("!H", value & 0xFFFF)


def _set_u32(b: bytearray, off: int, value: int) -> None:
    if off + 4 <= len(b):
        b[off : off + 4] = struct.pack("!I", value & 0xFFFFFFFF)


def _fix_length(b: bytearray) -> None:
    _set_u16(b, 2, len(b))


def _mutate_frame(rng: random.Random, frame: bytes, donor: bytes) -> bytes:
    b = bytearray(frame)
    if not b:
        return rng.randbytes(8)
    n = len(b)
    op = rng.randrange(13)
    if op == 0:  # bit flips
        for _ in range(1 + rng.randrange(4)):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:  # an interesting byte
        b[rng.randrange(n)] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
    elif op == 2:  # an interesting 16-bit field (lengths, ports, types sit on even offsets)
        off = rng.randrange(max(1, n // 2)) * 2
        _set_u16(b, off, rng.choice([*INTERESTING16, n - off, n - off + 8, n - off - 8]))
    elif op == 3:  # an interesting 32-bit field (ports, ids, buffer ids)
        _set_u32(b, rng.randrange(max(1, n // 4)) * 4, rng.choice(INTERESTING32))
    elif op == 4:  # the frame's length lies
        _set_u16(
            b, 2, rng.choice([0, 7, 8, n - 1, n + 1, n - 8, n + 8, 0xFFFF, rng.randrange(n + 1)])
        )
    elif op == 5:  # truncated, its length fixed (or not)
        del b[max(8, rng.randrange(n + 1)) :]
        if rng.random() < 0.8:
            _fix_length(b)
    elif op == 6:  # bytes inserted, the length fixed
        at = rng.randrange(8, n + 1) if n > 8 else n
        b[at:at] = rng.choice([bytes(8), rng.randbytes(rng.choice([1, 4, 8, 16])), b"\xff" * 8])
        _fix_length(b)
    elif op == 7:  # a span deleted (8-aligned, as TLVs are), the length fixed
        if n > 8:
            at = 8 + rng.randrange((n - 8) // 8 + 1) * 8
            del b[at : at + rng.choice([4, 8, 16])]
            _fix_length(b)
    elif op == 8:  # a span of the donor spliced in, the length fixed
        if len(donor) > 8:
            i = rng.randrange(8, len(donor))
            piece = donor[i : i + rng.randrange(1, 64)]
            at = rng.randrange(8, n + 1) if n > 8 else n
            b[at:at] = piece
            _fix_length(b)
    elif op == 9 and n >= 2:  # the message type
        b[1] = rng.choice([rng.randrange(36), b[1] ^ 1])
    elif op == 10:  # the version
        b[0] = rng.choice([0, 1, 2, 4, 5, 0xFF])
    elif op == 11:  # a random byte run
        at = rng.randrange(n)
        run = rng.randbytes(rng.randrange(1, 9))
        b[at : at + len(run)] = run
    else:  # an inner length (a match, an action, an instruction, a bucket) lies
        offs = [o for o in range(8, n - 1, 8)] or [2]
        off = rng.choice(offs) + rng.choice([0, 2, 4, 6])
        _set_u16(b, off, rng.choice([0, 4, 8, 16, 0xFFFF, rng.randrange(n + 16)]))
    return bytes(b)


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    """A mutation of `data`: its configuration, one or more of its frames, or the frame list
    (dropped, duplicated, reordered, spliced from another input), or its raw bytes."""
    cfg, stream = data[:CONFIG_BYTES], data[CONFIG_BYTES:]
    frames = split_frames(stream)
    donor_input = rng.choice(corpus) if corpus else data
    donor = split_frames(donor_input[CONFIG_BYTES:]) or [b""]
    for _ in range(1 + (rng.random() < 0.3) * rng.randrange(1, 4)):
        op = rng.randrange(10)
        if op == 0:  # another configuration
            cfg = bytes(c ^ (1 << rng.randrange(8)) for c in cfg[:1]) + cfg[1:]
            if rng.random() < 0.5:
                cfg = rng.randbytes(CONFIG_BYTES)
        elif op <= 5 and frames:
            i = rng.randrange(len(frames))
            frames[i] = _mutate_frame(rng, frames[i], rng.choice(donor))
        elif op == 6 and frames:  # a frame dropped or duplicated
            i = rng.randrange(len(frames))
            if rng.random() < 0.5 and len(frames) > 1:
                del frames[i]
            else:
                frames.insert(i, frames[i])
        elif op == 7:  # a frame of another input inserted
            frames.insert(rng.randrange(len(frames) + 1), rng.choice(donor))
        elif op == 8 and len(frames) > 1:  # two frames swapped
            i, j = rng.randrange(len(frames)), rng.randrange(len(frames))
            frames[i], frames[j] = frames[j], frames[i]
        else:  # raw bytes: a flip or a cut anywhere in the stream
            raw = bytearray(b"".join(frames))
            if raw:
                if rng.random() < 0.5:
                    raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
                else:
                    del raw[rng.randrange(len(raw)) :]
            frames = split_frames(bytes(raw))
    out = cfg + b"".join(frames)
    return out[:MAX_INPUT]


MAX_INPUT = 8192  # bytes: enough for a few dozen messages, small enough to stay fast
