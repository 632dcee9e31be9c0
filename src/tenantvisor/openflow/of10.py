"""OpenFlow 1.0 controllers on a vswitch: conversion at the edge, to and from OpenFlow 1.3.

A 1.0 connection's messages are turned into the OpenFlow 1.3 messages the vswitch already
handles (so translation, isolation, barriers and statistics are the same code), and what the
vswitch sends back is turned into 1.0.  A 1.0 controller sees a one-table switch.  Pure
functions on bytes plus a small per-connection adapter; no I/O.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable

from os_ken.ofproto import ofproto_v1_0 as o10
from os_ken.ofproto import ofproto_v1_3 as o13

from tenantvisor.openflow import codec, messages, oxm
from tenantvisor.openflow.codec import MalformedMessage, OFError, Oxm

V10 = o10.OFP_VERSION
MATCH = struct.Struct(o10.OFP_MATCH_PACK_STR)  # 40 bytes
FLOW_MOD10 = struct.Struct("!QHHHHIHH")
"""OpenFlow 1.0 ofp_flow_mod after its 40-byte ofp_match: cookie, command, idle_timeout,
hard_timeout, priority, buffer_id, out_port, flags; the actions follow (offset 72)."""
PACKET_OUT10 = struct.Struct("!IHH")
"""OpenFlow 1.0 ofp_packet_out body: buffer_id, in_port, actions_len; the actions, then the
frame, follow (offset 16)."""
PACKET_IN10 = struct.Struct("!IHHBx")
"""OpenFlow 1.0 ofp_packet_in body: buffer_id, total_len, in_port, reason, pad; the frame
follows (offset 18)."""
PHY_PORT = struct.Struct(o10.OFP_PHY_PORT_PACK_STR)
"""OpenFlow 1.0 ofp_phy_port (FEATURES_REPLY entries, PORT_STATUS): port_no, hw_addr, name,
config, state, curr, advertised, supported, peer (48 bytes)."""
PORT_STATUS10 = struct.Struct("!B7x")
"""OpenFlow 1.0 ofp_port_status body before its ofp_phy_port: reason (OFPPR_*), 7 pad."""
_PORT13 = struct.Struct(o13.OFP_PORT_PACK_STR)
SWITCH_FEATURES10 = struct.Struct("!QIB3xII")
"""OpenFlow 1.0 ofp_switch_features (FEATURES_REPLY body): datapath_id, n_buffers, n_tables,
3 pad, capabilities, actions; one PHY_PORT per port follows (offset 32)."""
FLOW_REMOVED10 = struct.Struct("!QHBxIIH2xQQ")
"""OpenFlow 1.0 ofp_flow_removed after its 40-byte ofp_match: cookie, priority, reason, pad,
duration_sec, duration_nsec, idle_timeout, 2 pad, packet_count, byte_count (offset 48)."""
_FLOW_STATS = struct.Struct("!HBx")
_FLOW_STATS_TAIL = struct.Struct("!IIHHH6xQQQ")
_TABLE_STATS = struct.Struct("!B3x32sIIIQQ")
STATS_HEADER10 = struct.Struct("!HH")
"""OpenFlow 1.0 ofp_stats_request / ofp_stats_reply after the ofp_header: type (OFPST_*),
flags; the body follows at offset 12."""
FLOW_STATS_REQUEST10 = struct.Struct("!BxH")
"""OpenFlow 1.0 ofp_flow_stats_request after its 40-byte ofp_match: table_id (0xff: all),
pad, out_port (OFPP_NONE: any)."""
_B = codec.OXM_CLASS_OPENFLOW_BASIC
_EMPTY_MATCH13 = codec.encode_match([])
# 1.0 actions a vswitch offers: OUTPUT .. SET_TP_DST
ACTIONS_OFFERED = (1 << (o10.OFPAT_SET_TP_DST + 1)) - 1
CAPABILITIES = o10.OFPC_FLOW_STATS | o10.OFPC_TABLE_STATS | o10.OFPC_PORT_STATS


# --- ports ---------------------------------------------------------------------------------
def port_to13(p: int) -> int:
    if p == o10.OFPP_NONE:
        return o13.OFPP_ANY
    if p >= o10.OFPP_MAX:
        return 0xFFFF0000 | p  # reserved ports keep their low bits (IN_PORT, FLOOD, ...)
    return p


def port_to10(p: int) -> int:
    if p == o13.OFPP_ANY:
        return o10.OFPP_NONE
    if p >= o13.OFPP_MAX:
        return p & 0xFFFF
    return p if p < o10.OFPP_MAX else o10.OFPP_NONE


# --- matches -------------------------------------------------------------------------------
def _oxm(field: int, value: int, size: int, mask: int | None = None) -> Oxm:
    return Oxm(_B, field, value.to_bytes(size, "big"),
               None if mask is None else mask.to_bytes(size, "big"))  # fmt: skip


def _prefix_mask(wild_bits: int) -> int | None:
    """OF1.0 counts wildcarded low bits of nw_src/nw_dst; None: exact."""
    if wild_bits <= 0:
        return None
    return (0xFFFFFFFF << min(wild_bits, 32)) & 0xFFFFFFFF


def match_to13(buf: bytes, off: int) -> tuple[list[Oxm], int | None, bool | None]:
    """(OXMs, ip protocol if the match fixes it, whether the packet is known untagged)."""
    if len(buf) - off < MATCH.size:
        raise MalformedMessage("truncated OpenFlow 1.0 match")
    (w, in_port, dl_src, dl_dst, dl_vlan, dl_pcp, dl_type, nw_tos, nw_proto, nw_src, nw_dst,
     tp_src, tp_dst) = MATCH.unpack_from(buf, off)  # fmt: skip
    out: list[Oxm] = []
    proto: int | None = None
    untagged: bool | None = None
    if not w & o10.OFPFW_IN_PORT:
        out.append(_oxm(oxm.IN_PORT, port_to13(in_port), 4))
    if not w & o10.OFPFW_DL_SRC:
        out.append(Oxm(_B, oxm.ETH_SRC, dl_src))
    if not w & o10.OFPFW_DL_DST:
        out.append(Oxm(_B, oxm.ETH_DST, dl_dst))
    if not w & o10.OFPFW_DL_VLAN:
        untagged = dl_vlan == o10.OFP_VLAN_NONE
        out.append(_oxm(oxm.VLAN_VID, 0 if untagged else (dl_vlan & 0xFFF) | oxm.VLAN_PRESENT, 2))
        if not untagged and not w & o10.OFPFW_DL_VLAN_PCP:
            out.append(_oxm(oxm.VLAN_PCP, dl_pcp & 7, 1))
    if not w & o10.OFPFW_DL_TYPE:
        out.append(_oxm(oxm.ETH_TYPE, dl_type, 2))
        src_mask = _prefix_mask((w & o10.OFPFW_NW_SRC_MASK) >> o10.OFPFW_NW_SRC_SHIFT)
        dst_mask = _prefix_mask((w & o10.OFPFW_NW_DST_MASK) >> o10.OFPFW_NW_DST_SHIFT)
        src_all = (w & o10.OFPFW_NW_SRC_MASK) >> o10.OFPFW_NW_SRC_SHIFT >= 32
        dst_all = (w & o10.OFPFW_NW_DST_MASK) >> o10.OFPFW_NW_DST_SHIFT >= 32
        if dl_type == 0x0800:
            if not w & o10.OFPFW_NW_TOS:
                out.append(_oxm(oxm.IP_DSCP, nw_tos >> 2, 1))
            if not w & o10.OFPFW_NW_PROTO:
                proto = nw_proto
                out.append(_oxm(oxm.IP_PROTO, nw_proto, 1))
            if not src_all:
                out.append(_oxm(oxm.IPV4_SRC, nw_src & (src_mask or 0xFFFFFFFF), 4, src_mask))
            if not dst_all:
                out.append(_oxm(oxm.IPV4_DST, nw_dst & (dst_mask or 0xFFFFFFFF), 4, dst_mask))
            fields = {6: (oxm.TCP_SRC, oxm.TCP_DST, 2), 17: (oxm.UDP_SRC, oxm.UDP_DST, 2),
                      1: (oxm.ICMPV4_TYPE, oxm.ICMPV4_CODE, 1)}.get(proto or -1)  # fmt: skip
            if fields is not None:
                # ICMP type and code are the low 8 bits of tp_src and tp_dst (1.0, 5.2.3);
                # the high bits are no part of them (a 16-bit value does not fit the OXM)
                bits = (1 << 8 * fields[2]) - 1
                if not w & o10.OFPFW_TP_SRC:
                    out.append(_oxm(fields[0], tp_src & bits, fields[2]))
                if not w & o10.OFPFW_TP_DST:
                    out.append(_oxm(fields[1], tp_dst & bits, fields[2]))
        elif dl_type == 0x0806:
            if not w & o10.OFPFW_NW_PROTO:
                out.append(_oxm(oxm.ARP_OP, nw_proto, 2))
            if not src_all:
                out.append(_oxm(oxm.ARP_SPA, nw_src & (src_mask or 0xFFFFFFFF), 4, src_mask))
            if not dst_all:
                out.append(_oxm(oxm.ARP_TPA, nw_dst & (dst_mask or 0xFFFFFFFF), 4, dst_mask))
    return out, proto, untagged


def _wild_bits(mask: bytes | None) -> int:
    if mask is None:
        return 0
    m = int.from_bytes(mask, "big")
    return 32 - bin(m).count("1")


def match_to10(oxms: list[Oxm]) -> bytes:
    """A 1.0 ofp_match for what a 1.3 match says (fields 1.0 cannot express are dropped)."""
    w = o10.OFPFW_ALL
    f = {o.field: o for o in oxms if o.oxm_class == _B}
    v: dict[str, int | bytes] = {
        "in_port": 0, "dl_src": bytes(6), "dl_dst": bytes(6), "dl_vlan": 0, "dl_pcp": 0,
        "dl_type": 0, "nw_tos": 0, "nw_proto": 0, "nw_src": 0, "nw_dst": 0, "tp_src": 0,
        "tp_dst": 0,
    }  # fmt: skip

    def num(o: Oxm) -> int:
        return codec.oxm_int(o)

    if oxm.IN_PORT in f:
        w &= ~o10.OFPFW_IN_PORT
        v["in_port"] = port_to10(num(f[oxm.IN_PORT]))
    if oxm.ETH_SRC in f:
        w &= ~o10.OFPFW_DL_SRC
        v["dl_src"] = f[oxm.ETH_SRC].value
    if oxm.ETH_DST in f:
        w &= ~o10.OFPFW_DL_DST
        v["dl_dst"] = f[oxm.ETH_DST].value
    if oxm.VLAN_VID in f:
        w &= ~o10.OFPFW_DL_VLAN
        vid = num(f[oxm.VLAN_VID])
        v["dl_vlan"] = vid & 0xFFF if vid & oxm.VLAN_PRESENT else o10.OFP_VLAN_NONE
    if oxm.VLAN_PCP in f:
        w &= ~o10.OFPFW_DL_VLAN_PCP
        v["dl_pcp"] = num(f[oxm.VLAN_PCP])
    if oxm.ETH_TYPE in f:
        w &= ~o10.OFPFW_DL_TYPE
        v["dl_type"] = num(f[oxm.ETH_TYPE])
    if oxm.IP_DSCP in f:
        w &= ~o10.OFPFW_NW_TOS
        v["nw_tos"] = num(f[oxm.IP_DSCP]) << 2
    for proto_field in (oxm.IP_PROTO, oxm.ARP_OP):
        if proto_field in f:
            w &= ~o10.OFPFW_NW_PROTO
            v["nw_proto"] = num(f[proto_field]) & 0xFF
    for fields, key, shift, mask in (
        ((oxm.IPV4_SRC, oxm.ARP_SPA), "nw_src", o10.OFPFW_NW_SRC_SHIFT, o10.OFPFW_NW_SRC_MASK),
        ((oxm.IPV4_DST, oxm.ARP_TPA), "nw_dst", o10.OFPFW_NW_DST_SHIFT, o10.OFPFW_NW_DST_MASK),
    ):
        for fld in fields:
            if fld in f:
                w = (w & ~mask) | (_wild_bits(f[fld].mask) << shift)
                v[key] = num(f[fld])
    for src, dst in ((oxm.TCP_SRC, oxm.TCP_DST), (oxm.UDP_SRC, oxm.UDP_DST),
                     (oxm.ICMPV4_TYPE, oxm.ICMPV4_CODE)):  # fmt: skip
        if src in f:
            w &= ~o10.OFPFW_TP_SRC
            v["tp_src"] = num(f[src])
        if dst in f:
            w &= ~o10.OFPFW_TP_DST
            v["tp_dst"] = num(f[dst])
    return MATCH.pack(w, *v.values())


# --- actions -------------------------------------------------------------------------------
def _bad_action(code: int, why: str) -> OFError:
    return OFError(o13.OFPET_BAD_ACTION, code, why)


# Each 1.0 action's exact length (OpenFlow 1.0, 5.2.4): a shorter one would be read short
_ACTION10_LEN = {
    o10.OFPAT_OUTPUT: 8, o10.OFPAT_SET_VLAN_VID: 8, o10.OFPAT_SET_VLAN_PCP: 8,
    o10.OFPAT_STRIP_VLAN: 8, o10.OFPAT_SET_DL_SRC: 16, o10.OFPAT_SET_DL_DST: 16,
    o10.OFPAT_SET_NW_SRC: 8, o10.OFPAT_SET_NW_DST: 8, o10.OFPAT_SET_NW_TOS: 8,
    o10.OFPAT_SET_TP_SRC: 8, o10.OFPAT_SET_TP_DST: 8, o10.OFPAT_ENQUEUE: 16,
}  # fmt: skip


def actions_to13(buf: bytes, proto: int | None, untagged: bool | None) -> bytes:
    out: list[bytes] = []
    off = 0
    while off < len(buf):
        if len(buf) - off < 8:
            raise MalformedMessage("truncated OpenFlow 1.0 action")
        t, length = struct.unpack_from("!HH", buf, off)
        if length < 8 or length % 8 or off + length > len(buf):
            raise MalformedMessage(f"bad OpenFlow 1.0 action length {length}")
        want = _ACTION10_LEN.get(t)
        if want is not None and length != want:
            raise _bad_action(o13.OFPBAC_BAD_LEN, f"OpenFlow 1.0 action {t}: {length} bytes")
        a = buf[off : off + length]
        off += length
        arg16 = int(struct.unpack_from("!H", a, 4)[0])

        if t == o10.OFPAT_OUTPUT:
            port, max_len = struct.unpack_from("!HH", a, 4)
            out.append(codec.output(port_to13(port), max_len))
        elif t in (o10.OFPAT_SET_VLAN_VID, o10.OFPAT_SET_VLAN_PCP):
            if untagged:  # 1.0 adds a tag when there is none; 1.3 needs the push
                out.append(codec.push_vlan(0x8100))
            if t == o10.OFPAT_SET_VLAN_VID:
                out.append(codec.set_field(_oxm(oxm.VLAN_VID, (arg16 & 0xFFF) | 0x1000, 2)))
            else:
                out.append(codec.set_field(_oxm(oxm.VLAN_PCP, a[4] & 7, 1)))
        elif t == o10.OFPAT_STRIP_VLAN:
            out.append(codec.pop_vlan())
        elif t in (o10.OFPAT_SET_DL_SRC, o10.OFPAT_SET_DL_DST):
            field = oxm.ETH_SRC if t == o10.OFPAT_SET_DL_SRC else oxm.ETH_DST
            out.append(codec.set_field(Oxm(_B, field, a[4:10])))
        elif t in (o10.OFPAT_SET_NW_SRC, o10.OFPAT_SET_NW_DST):
            field = oxm.IPV4_SRC if t == o10.OFPAT_SET_NW_SRC else oxm.IPV4_DST
            out.append(codec.set_field(Oxm(_B, field, a[4:8])))
        elif t == o10.OFPAT_SET_NW_TOS:
            out.append(codec.set_field(_oxm(oxm.IP_DSCP, a[4] >> 2, 1)))
        elif t in (o10.OFPAT_SET_TP_SRC, o10.OFPAT_SET_TP_DST):
            fields = {6: (oxm.TCP_SRC, oxm.TCP_DST), 17: (oxm.UDP_SRC, oxm.UDP_DST)}.get(
                proto or -1
            )
            if fields is None:
                raise _bad_action(o13.OFPBAC_BAD_ARGUMENT, "set tp port needs nw_proto tcp/udp")
            field = fields[0] if t == o10.OFPAT_SET_TP_SRC else fields[1]
            out.append(codec.set_field(_oxm(field, arg16, 2)))
        elif t == o10.OFPAT_ENQUEUE:
            raise _bad_action(o13.OFPBAC_BAD_QUEUE, "queues are not offered")
        elif t == o10.OFPAT_VENDOR:
            raise _bad_action(o13.OFPBAC_BAD_EXPERIMENTER, "vendor actions")
        else:
            raise _bad_action(o13.OFPBAC_BAD_TYPE, f"action type {t}")
    return b"".join(out)


def actions_to10(instructions: bytes) -> bytes:
    """The apply-actions of a 1.3 rule in 1.0 terms (what a 1.0 flow stats reply shows)."""
    ins = codec.parse_instructions(instructions)
    out = []
    for a in ins.apply_actions or []:
        if a.type == o13.OFPAT_OUTPUT:
            out.append(struct.pack("!HHHH", o10.OFPAT_OUTPUT, 8, port_to10(a.output_port),
                                   a.max_len))  # fmt: skip
        elif a.type == o13.OFPAT_POP_VLAN:
            out.append(struct.pack("!HH4x", o10.OFPAT_STRIP_VLAN, 8))
        elif a.type == o13.OFPAT_SET_FIELD:
            o = a.set_field_oxm()
            if o.field == oxm.VLAN_VID:
                out.append(struct.pack("!HHH2x", o10.OFPAT_SET_VLAN_VID, 8,
                                       codec.oxm_int(o) & 0xFFF))  # fmt: skip
            elif o.field in (oxm.ETH_SRC, oxm.ETH_DST):
                t = o10.OFPAT_SET_DL_SRC if o.field == oxm.ETH_SRC else o10.OFPAT_SET_DL_DST
                out.append(struct.pack("!HH", t, 16) + o.value + bytes(6))
            elif o.field in (oxm.IPV4_SRC, oxm.IPV4_DST):
                t = o10.OFPAT_SET_NW_SRC if o.field == oxm.IPV4_SRC else o10.OFPAT_SET_NW_DST
                out.append(struct.pack("!HH", t, 8) + o.value)
    return b"".join(out)


# --- messages, tenant -> vswitch ---------------------------------------------------------------
def _h13(msg_type: int, xid: int, body: bytes) -> bytes:
    return codec.header(o13.OFP_VERSION, msg_type, xid, body)


def flow_mod_to13(msg: bytes, xid: int) -> bytes:
    if len(msg) < 72:
        raise MalformedMessage("OpenFlow 1.0 FLOW_MOD shorter than 72 bytes")
    match, proto, untagged = match_to13(msg, 8)
    cookie, command, idle, hard, prio, buffer_id, out_port, flags = FLOW_MOD10.unpack_from(msg, 48)
    if command > o10.OFPFC_DELETE_STRICT:  # 16 bits in 1.0, one byte in 1.3: same 0..4
        raise OFError(o13.OFPET_FLOW_MOD_FAILED, o13.OFPFMFC_BAD_COMMAND, f"command {command}")
    if flags & o10.OFPFF_EMERG:
        raise OFError(o13.OFPET_FLOW_MOD_FAILED, o13.OFPFMFC_BAD_FLAGS, "no emergency table")
    actions = actions_to13(msg[72:], proto, untagged)
    table = o13.OFPTT_ALL if command in (o13.OFPFC_DELETE, o13.OFPFC_DELETE_STRICT) else 0
    fm = codec.FlowMod(
        cookie, 0, table, command, idle, hard, prio, buffer_id, port_to13(out_port),
        o13.OFPG_ANY, flags & (o10.OFPFF_SEND_FLOW_REM | o10.OFPFF_CHECK_OVERLAP), match,
        codec.encode_instructions(apply_actions=actions),
    )  # fmt: skip
    return fm.encode(xid)


def packet_out_to13(msg: bytes, xid: int) -> bytes:
    if len(msg) < 16:
        raise MalformedMessage("OpenFlow 1.0 PACKET_OUT shorter than 16 bytes")
    buffer_id, in_port, alen = PACKET_OUT10.unpack_from(msg, 8)
    if 16 + alen > len(msg):
        raise MalformedMessage("OpenFlow 1.0 PACKET_OUT actions overrun the message")
    actions = actions_to13(msg[16 : 16 + alen], None, None)
    body = struct.pack("!IIH6x", buffer_id, port_to13(in_port), len(actions))
    return _h13(o13.OFPT_PACKET_OUT, xid, body + actions + msg[16 + alen :])


def stats_request_to13(msg: bytes, xid: int) -> bytes:
    if len(msg) < 12:
        raise MalformedMessage("OpenFlow 1.0 STATS_REQUEST too short")
    stype = struct.unpack_from("!H", msg, 8)[0]
    body = msg[12:]
    if stype in (o10.OFPST_DESC, o10.OFPST_TABLE):
        req = b""
    elif stype in (o10.OFPST_FLOW, o10.OFPST_AGGREGATE):
        if len(body) < 44:
            raise MalformedMessage("OpenFlow 1.0 flow statistics request too short")
        match, _, _ = match_to13(body, 0)
        table_id, out_port = struct.unpack_from("!BxH", body, 40)
        req = struct.pack("!B3xII4xQQ", table_id, port_to13(out_port), o13.OFPG_ANY, 0, 0)
        req += codec.encode_match(match)
    elif stype == o10.OFPST_PORT:
        port = struct.unpack_from("!H", body, 0)[0] if len(body) >= 2 else o10.OFPP_NONE
        req = struct.pack("!I4x", port_to13(port))
    else:
        raise OFError(o13.OFPET_BAD_REQUEST, o13.OFPBRC_BAD_MULTIPART, f"stats type {stype}")
    return _h13(o13.OFPT_MULTIPART_REQUEST, xid, struct.pack("!HH4x", stype, 0) + req)


def flow_stats_request10(table_id: int = 0xFF, out_port: int = o10.OFPP_NONE) -> bytes:
    """OpenFlow 1.0 STATS_REQUEST body (OFPST_FLOW) for every rule: the stats header, an
    all-wildcard ofp_match, table_id and out_port (OFPP_NONE: any)."""
    return (
        STATS_HEADER10.pack(o10.OFPST_FLOW, 0)
        + match_to10([])
        + FLOW_STATS_REQUEST10.pack(table_id, out_port)
    )


# --- messages, vswitch -> tenant -------------------------------------------------------------
def _h10(msg_type: int, xid: int, body: bytes) -> bytes:
    return codec.header(V10, msg_type, xid, body)


def phy_port(port13: bytes) -> bytes:
    (port_no, hw, name, config, state, _curr, _adv, _sup, _peer, _cs, _ms) = _PORT13.unpack(port13)
    state10 = o10.OFPPS_LINK_DOWN if state & o13.OFPPS_LINK_DOWN else 0
    feats = o10.OFPPF_10GB_FD | o10.OFPPF_COPPER
    return PHY_PORT.pack(port_to10(port_no), hw, name, config & 0x7F, state10, feats, feats,
                          feats, 0)  # fmt: skip


def features_reply(xid: int, dpid: int, ports13: list[bytes]) -> bytes:
    body = SWITCH_FEATURES10.pack(dpid, 0, 1, CAPABILITIES, ACTIONS_OFFERED)
    return _h10(o10.OFPT_FEATURES_REPLY, xid, body + b"".join(phy_port(p) for p in ports13))


_ERRORS = {  # (1.3 type, code) -> (1.0 type, code) where the meaning differs
    o13.OFPET_BAD_MATCH: (o10.OFPET_FLOW_MOD_FAILED, o10.OFPFMFC_EPERM),
    o13.OFPET_BAD_INSTRUCTION: (o10.OFPET_BAD_ACTION, o10.OFPBAC_EPERM),
    o13.OFPET_GROUP_MOD_FAILED: (o10.OFPET_BAD_REQUEST, o10.OFPBRC_EPERM),
    o13.OFPET_PORT_MOD_FAILED: (o10.OFPET_PORT_MOD_FAILED, o10.OFPPMFC_BAD_PORT),
    o13.OFPET_TABLE_MOD_FAILED: (o10.OFPET_BAD_REQUEST, o10.OFPBRC_EPERM),
    o13.OFPET_QUEUE_OP_FAILED: (o10.OFPET_QUEUE_OP_FAILED, o10.OFPQOFC_EPERM),
    o13.OFPET_SWITCH_CONFIG_FAILED: (o10.OFPET_BAD_REQUEST, o10.OFPBRC_EPERM),
    o13.OFPET_ROLE_REQUEST_FAILED: (o10.OFPET_BAD_REQUEST, o10.OFPBRC_EPERM),
    o13.OFPET_METER_MOD_FAILED: (o10.OFPET_BAD_REQUEST, o10.OFPBRC_EPERM),
    o13.OFPET_TABLE_FEATURES_FAILED: (o10.OFPET_BAD_REQUEST, o10.OFPBRC_EPERM),
}
_FLOW_MOD_FAILED = {
    o13.OFPFMFC_TABLE_FULL: o10.OFPFMFC_ALL_TABLES_FULL,
    o13.OFPFMFC_OVERLAP: o10.OFPFMFC_OVERLAP,
    o13.OFPFMFC_BAD_COMMAND: o10.OFPFMFC_BAD_COMMAND,
}


def error_code10(etype: int, code: int) -> tuple[int, int]:
    if etype == o13.OFPET_HELLO_FAILED:
        return etype, code
    if etype == o13.OFPET_BAD_REQUEST:
        return etype, code if code <= o10.OFPBRC_BUFFER_UNKNOWN else o10.OFPBRC_EPERM
    if etype == o13.OFPET_BAD_ACTION:
        return etype, code if code <= o10.OFPBAC_BAD_QUEUE else o10.OFPBAC_EPERM
    if etype == o13.OFPET_FLOW_MOD_FAILED:
        return o10.OFPET_FLOW_MOD_FAILED, _FLOW_MOD_FAILED.get(code, o10.OFPFMFC_EPERM)
    return _ERRORS.get(etype, (o10.OFPET_BAD_REQUEST, o10.OFPBRC_EPERM))


class Of10Adapter:
    """One OpenFlow 1.0 connection: converts in both directions and remembers the tenant's
    recent messages by xid, so an error comes back with the tenant's own bytes."""

    RECENT = 1024
    VERSION = V10

    def __init__(self, ports13: Callable[[], list[bytes]], dpid: Callable[[], int]) -> None:
        self._ports13 = ports13
        self._dpid = dpid
        self._sent: OrderedDict[int, bytes] = OrderedDict()

    def inbound(self, msg_type: int, xid: int, msg: bytes) -> tuple[int, bytes] | bytes | None:
        """A 1.0 message as (1.3 type, 1.3 message) for the vswitch; bytes: a 1.0 reply to
        send as is; None: nothing to do."""
        self._sent[xid] = msg[:64]
        if len(self._sent) > self.RECENT:
            self._sent.popitem(last=False)
        if msg_type == o10.OFPT_FEATURES_REQUEST:
            return features_reply(xid, self._dpid(), self._ports13())
        if msg_type == o10.OFPT_FLOW_MOD:
            return o13.OFPT_FLOW_MOD, flow_mod_to13(msg, xid)
        if msg_type == o10.OFPT_PACKET_OUT:
            return o13.OFPT_PACKET_OUT, packet_out_to13(msg, xid)
        if msg_type in (o10.OFPT_GET_CONFIG_REQUEST, o10.OFPT_SET_CONFIG):
            return msg_type, bytes([o13.OFP_VERSION]) + msg[1:]  # same numbers and layout
        if msg_type == o10.OFPT_BARRIER_REQUEST:
            return o13.OFPT_BARRIER_REQUEST, _h13(o13.OFPT_BARRIER_REQUEST, xid, b"")
        if msg_type == o10.OFPT_STATS_REQUEST:
            return o13.OFPT_MULTIPART_REQUEST, stats_request_to13(msg, xid)
        if msg_type == o10.OFPT_VENDOR:
            raise OFError(o13.OFPET_BAD_REQUEST, o13.OFPBRC_BAD_EXPERIMENTER, "no vendor messages")
        raise OFError(o13.OFPET_BAD_REQUEST, o13.OFPBRC_BAD_TYPE, f"message type {msg_type}")

    def outbound(self, msg: bytes) -> bytes | None:
        """What the vswitch sends (OpenFlow 1.3), for the 1.0 controller."""
        if msg[0] == V10:
            return msg
        t = msg[1]
        xid = codec.u32(msg, 4)
        if t == o13.OFPT_ERROR:
            etype, code = error_code10(*struct.unpack_from("!HH", msg, 8))
            data = self._sent.get(xid, msg[12:])
            return _h10(o10.OFPT_ERROR, xid, struct.pack("!HH", etype, code) + data)
        if t in (o13.OFPT_ECHO_REQUEST, o13.OFPT_ECHO_REPLY, o13.OFPT_GET_CONFIG_REPLY):
            return bytes([V10]) + msg[1:]
        if t == o13.OFPT_BARRIER_REPLY:
            return _h10(o10.OFPT_BARRIER_REPLY, xid, b"")
        if t == o13.OFPT_PACKET_IN:
            pi = codec.PacketIn.parse(msg)
            in_port = next((codec.oxm_int(o) for o in pi.match if o.field == oxm.IN_PORT), 0)
            reason = o10.OFPR_NO_MATCH if pi.reason == o13.OFPR_NO_MATCH else o10.OFPR_ACTION
            body = PACKET_IN10.pack(o10.OFP_NO_BUFFER, pi.total_len, port_to10(in_port), reason)
            return _h10(o10.OFPT_PACKET_IN, xid, body + pi.data)
        if t == o13.OFPT_FLOW_REMOVED:
            fr = codec.FlowRemoved.parse(msg)
            reason = min(fr.reason, o10.OFPRR_DELETE)
            body = match_to10(fr.match) + FLOW_REMOVED10.pack(
                fr.cookie, fr.priority, reason, fr.duration_sec, fr.duration_nsec,
                fr.idle_timeout, fr.packet_count, fr.byte_count,
            )  # fmt: skip
            return _h10(o10.OFPT_FLOW_REMOVED, xid, body)
        if t == o13.OFPT_PORT_STATUS:
            return _h10(o10.OFPT_PORT_STATUS, xid, msg[8:16] + phy_port(msg[16:80]))
        if t == o13.OFPT_MULTIPART_REPLY:
            return self._stats_reply(msg, xid)
        return None  # nothing else has a 1.0 form

    def _stats_reply(self, msg: bytes, xid: int) -> bytes | None:
        stype, flags = struct.unpack_from("!HH", msg, 8)
        body = msg[16:]
        head = struct.pack("!HH", stype, flags)
        if stype in (o13.OFPMP_DESC, o13.OFPMP_AGGREGATE):
            return _h10(o10.OFPT_STATS_REPLY, xid, head + body)
        if stype == o13.OFPMP_TABLE:
            if len(body) < 24:
                return None
            t, active, lookup, matched = struct.unpack_from("!B3xIQQ", body, 0)
            row = _TABLE_STATS.pack(t, b"table0", o10.OFPFW_ALL, 1_000_000, active, lookup,
                                    matched)  # fmt: skip
            return _h10(o10.OFPT_STATS_REPLY, xid, head + row)
        if stype == o13.OFPMP_PORT_STATS:
            rows = []
            for off in range(0, len(body) - 111, 112):
                port, *counters = struct.unpack_from("!I4x12Q", body, off)
                rows.append(struct.pack("!H6x12Q", port_to10(port), *counters))
            return _h10(o10.OFPT_STATS_REPLY, xid, head + b"".join(rows))
        if stype == o13.OFPMP_FLOW:
            rows = []
            off = 0
            while off + 56 <= len(body):
                length, table = struct.unpack_from("!HB", body, off)
                if length < 56 or off + length > len(body):
                    break
                dsec, dnsec, prio, idle, hard, _flags, cookie, pk, by = struct.unpack_from(
                    "!IIHHHH4xQQQ", body, off + 4
                )
                match, end = codec.parse_match(body[: off + length], off + 48)
                acts = actions_to10(body[end : off + length])
                row = match_to10(match) + _FLOW_STATS_TAIL.pack(
                    dsec, dnsec, prio, idle, hard, cookie, pk, by
                ) + acts  # fmt: skip
                rows.append(_FLOW_STATS.pack(4 + len(row), table) + row)
                off += length
            return _h10(o10.OFPT_STATS_REPLY, xid, head + b"".join(rows))
        return None


# --- the hypervisor's own rules on an OpenFlow 1.0 pswitch ------------------------------------
def rule_actions10(instructions: bytes) -> bytes:
    """The apply-actions of a physical rule (encoded for 1.3) for a 1.0 pswitch.  Only what
    such rules use exists there; anything else is a programming error."""
    ins = codec.parse_instructions(instructions)
    if ins.goto_table is not None or ins.write_metadata is not None or ins.write_actions:
        raise ValueError("an OpenFlow 1.0 pswitch has one table and no metadata")
    return actions10(ins.apply_actions or [])


def actions10(actions: list[codec.Action]) -> bytes:
    out = []
    for a in actions:
        if a.type == o13.OFPAT_OUTPUT:
            out.append(struct.pack("!HHHH", o10.OFPAT_OUTPUT, 8, port_to10(a.output_port),
                                   min(a.max_len, 0xFFFF)))  # fmt: skip
        elif a.type == o13.OFPAT_PUSH_VLAN:
            continue  # 1.0's SET_VLAN_VID adds the tag itself when there is none
        elif a.type == o13.OFPAT_POP_VLAN:
            out.append(struct.pack("!HH4x", o10.OFPAT_STRIP_VLAN, 8))
        elif a.type == o13.OFPAT_SET_FIELD:
            out.append(_set_field10(a.set_field_oxm()))
        else:
            raise ValueError(f"action {a.type} has no OpenFlow 1.0 form here")
    return b"".join(out)


def _set_field10(o: Oxm) -> bytes:
    f = o.field
    if f == oxm.VLAN_VID:
        return struct.pack("!HHH2x", o10.OFPAT_SET_VLAN_VID, 8, codec.oxm_int(o) & 0xFFF)
    if f in (oxm.ETH_SRC, oxm.ETH_DST):
        t = o10.OFPAT_SET_DL_SRC if f == oxm.ETH_SRC else o10.OFPAT_SET_DL_DST
        return struct.pack("!HH", t, 16) + o.value + bytes(6)
    if f in (oxm.IPV4_SRC, oxm.IPV4_DST):
        t = o10.OFPAT_SET_NW_SRC if f == oxm.IPV4_SRC else o10.OFPAT_SET_NW_DST
        return struct.pack("!HH", t, 8) + o.value
    if f == oxm.IP_DSCP:
        return struct.pack("!HHB3x", o10.OFPAT_SET_NW_TOS, 8, codec.oxm_int(o) << 2)
    if f in (oxm.TCP_SRC, oxm.UDP_SRC, oxm.TCP_DST, oxm.UDP_DST):
        t = o10.OFPAT_SET_TP_SRC if f in (oxm.TCP_SRC, oxm.UDP_SRC) else o10.OFPAT_SET_TP_DST
        return struct.pack("!HHH2x", t, 8, codec.oxm_int(o))
    raise ValueError(f"set_field {f} has no OpenFlow 1.0 form")


def flow_mod10(
    xid: int, command: int, priority: int, match: bytes, instructions: bytes, cookie: int,
    out_port: int = o10.OFPP_NONE,
) -> bytes:  # fmt: skip
    """A 1.0 FLOW_MOD for a rule given in the OpenFlow 1.3 encoding (`match` an ofp_match)."""
    oxms, _ = codec.parse_match(match, 0)
    acts = (
        b""
        if command in (o10.OFPFC_DELETE, o10.OFPFC_DELETE_STRICT)
        else rule_actions10(instructions)
    )
    body = match_to10(oxms) + FLOW_MOD10.pack(cookie, command, 0, 0, priority, o10.OFP_NO_BUFFER,
                                             out_port, 0)  # fmt: skip
    return _h10(o10.OFPT_FLOW_MOD, xid, body + acts)


def packet_out10(xid: int, port: int, data: bytes) -> bytes:
    """A PACKET_OUT sending `data` out of one port of a 1.0 pswitch."""
    action = struct.pack("!HHHH", o10.OFPAT_OUTPUT, 8, port_to10(port), 0)
    body = PACKET_OUT10.pack(o10.OFP_NO_BUFFER, o10.OFPP_NONE, len(action)) + action + data
    return _h10(o10.OFPT_PACKET_OUT, xid, body)


def packet_out13_to10(msg: bytes) -> bytes:
    """A PACKET_OUT built for 1.3 (by the vswitch's translation) for a 1.0 pswitch."""
    po = codec.PacketOut.parse(msg)
    acts = actions10(po.actions)
    body = PACKET_OUT10.pack(o10.OFP_NO_BUFFER, port_to10(po.in_port), len(acts)) + acts
    return _h10(o10.OFPT_PACKET_OUT, codec.u32(msg, 4), body + po.data)


def features10(msg: bytes) -> tuple[int, int, list[tuple[int, bytes, bytes, int, int]]]:
    """(dpid, n_tables, ports as (port_no, hw_addr, name, config, state)) of a 1.0
    FEATURES_REPLY."""
    if len(msg) < 32:
        raise MalformedMessage("OpenFlow 1.0 FEATURES_REPLY too short")
    dpid, _, n_tables, _, _ = SWITCH_FEATURES10.unpack_from(msg, 8)
    ports = []
    for off in range(32, len(msg) - PHY_PORT.size + 1, PHY_PORT.size):
        no, hw, name, config, state, *_ = PHY_PORT.unpack_from(msg, off)
        ports.append((no, hw, name, config, state))
    return dpid, n_tables, ports


def flow_stats_to13(body: bytes) -> bytes:
    """1.0 flow statistics entries in the shape of 1.3 ones (counters and cookie at 1.3's
    offsets, an empty match), so one parser reads both."""
    out = []
    off = 0
    while off + 88 <= len(body):
        length, table = struct.unpack_from("!HB", body, off)
        if length < 88 or off + length > len(body):
            break
        dsec, dnsec, prio, idle, hard, cookie, pk, by = _FLOW_STATS_TAIL.unpack_from(body, off + 44)
        out.append(
            messages.flow_stats_entry(table, (dsec, dnsec), prio, idle, hard, 0, cookie, pk, by,
                                      _EMPTY_MATCH13, b"")
        )  # fmt: skip
        off += length
    return b"".join(out)


def packet_in10_to13(msg: bytes) -> codec.PacketIn:
    """A 1.0 pswitch's PACKET_IN in the shape of a 1.3 one: the in_port as an IN_PORT match
    field; cookie, table and metadata 0 (a 1.0 switch names neither its rule nor a table)."""
    if len(msg) < 8 + PACKET_IN10.size:
        raise MalformedMessage("OpenFlow 1.0 PACKET_IN too short")
    buffer_id, total_len, in_port, reason = PACKET_IN10.unpack_from(msg, 8)
    match = [_oxm(oxm.IN_PORT, port_to13(in_port), 4)]
    return codec.PacketIn(buffer_id, total_len, reason, 0, 0, match, msg[8 + PACKET_IN10.size :])


def flow_removed10_to13(msg: bytes) -> codec.FlowRemoved:
    """A 1.0 pswitch's FLOW_REMOVED in the shape of a 1.3 one (table 0, no hard timeout)."""
    if len(msg) < 8 + MATCH.size + FLOW_REMOVED10.size:
        raise MalformedMessage("OpenFlow 1.0 FLOW_REMOVED too short")
    match, _, _ = match_to13(msg, 8)
    cookie, prio, reason, dsec, dnsec, idle, pk, by = FLOW_REMOVED10.unpack_from(msg, 48)
    return codec.FlowRemoved(cookie, prio, reason, 0, dsec, dnsec, idle, 0, pk, by, match)


def port_status10(msg: bytes) -> tuple[int, tuple[int, bytes, bytes, int, int]]:
    """(reason, (port_no, hw_addr, name, config, state)) of a 1.0 PORT_STATUS."""
    if len(msg) < 8 + PORT_STATUS10.size + PHY_PORT.size:
        raise MalformedMessage("OpenFlow 1.0 PORT_STATUS too short")
    (reason,) = PORT_STATUS10.unpack_from(msg, 8)
    no, hw, name, config, state, *_ = PHY_PORT.unpack_from(msg, 8 + PORT_STATUS10.size)
    return reason, (no, hw, name, config, state)
