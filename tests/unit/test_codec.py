"""OpenFlow 1.3 codec: byte layouts checked against os-ken and literal golden bytes.

Also the HELLO version-bitmap helpers of the channel, and a seeded fuzz proving that bytes a
tenant controller sends can only ever raise MalformedMessage (close the channel) or OFError
(answer with an error) on the FLOW_MOD and PACKET_OUT paths, never a traceback.
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Callable
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_0 as ofp_v10
from os_ken.ofproto import ofproto_v1_0_parser as parser_v10
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto import ofproto_v1_4 as ofp_v14
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.openflow import codec, messages, of10, oxm
from tenantvisor.openflow.channel import _peer_versions, hello
from tenantvisor.openflow.codec import (
    FlowMod,
    FlowRemoved,
    MalformedMessage,
    OFError,
    Oxm,
    PacketIn,
    PacketOut,
)
from tenantvisor.translate.flow import translate_flow, translate_packet_out
from tenantvisor.translate.view import PortMap, VSwitchView
from tests.unit.ofkit import DP, apply, osken_bytes, osken_flow_mod, osken_parse, write

BASIC = codec.OXM_CLASS_OPENFLOW_BASIC
DP10 = ProtocolDesc(ofp_v10.OFP_VERSION)

# --- literal golden bytes ------------------------------------------------------------------
# FLOW_MOD xid=0x11, cookie=0x0102030405060708, priority=0x8000, match in_port=1,
# apply_actions output:2 (max_len 0).
GOLDEN_FLOW_MOD = bytes.fromhex(
    "040e0058" "00000011"  # header: v4, FLOW_MOD, 88 bytes, xid
    "0102030405060708" "0000000000000000"  # cookie, cookie_mask
    "00" "00" "0000" "0000" "8000"  # table, ADD, idle, hard, priority
    "ffffffff" "ffffffff" "ffffffff" "0000" "0000"  # buffer, out_port, out_group, flags, pad
    "0001000c" "80000004" "00000001" "00000000"  # OXM match in_port=1, padded to 16
    "00040018" "00000000"  # APPLY_ACTIONS, 24 bytes
    "00000010" "00000002" "0000" "000000000000"  # OUTPUT port 2 max_len 0
)  # fmt: skip


def golden_flow_mod() -> FlowMod:
    return FlowMod(
        cookie=0x0102030405060708,
        cookie_mask=0,
        table_id=0,
        command=ofp.OFPFC_ADD,
        idle_timeout=0,
        hard_timeout=0,
        priority=0x8000,
        buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        flags=0,
        match=[codec.oxm_u32(oxm.IN_PORT, 1)],
        instructions=codec.encode_instructions(apply_actions=codec.output(2)),
    )


def test_flow_mod_encoding_matches_the_literal_golden_bytes() -> None:
    assert golden_flow_mod().encode(0x11) == GOLDEN_FLOW_MOD


def test_osken_serializes_the_golden_flow_mod_to_the_same_bytes() -> None:
    fm = parser.OFPFlowMod(
        DP,
        cookie=0x0102030405060708,
        priority=0x8000,
        out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch(in_port=1),
        instructions=[apply(parser.OFPActionOutput(2, max_len=0))],
    )
    fm.set_xid(0x11)
    assert osken_bytes(fm) == GOLDEN_FLOW_MOD


def test_golden_flow_mod_parses_back_to_the_same_object() -> None:
    assert FlowMod.parse(GOLDEN_FLOW_MOD) == golden_flow_mod()


@pytest.mark.parametrize(
    ("encoded", "golden"),
    [
        (codec.output(2), "00000010000000020000000000000000"),
        (codec.output(ofp.OFPP_CONTROLLER, 0xFFFF), "00000010fffffffdffff000000000000"),
        (codec.push_vlan(0x88A8), "0011000888a80000"),
        (codec.pop_vlan(), "0012000800000000"),
        # set_field vlan_vid=0x1007: 4 + 6 bytes, padded to 16
        (codec.set_field(codec.oxm_u16(oxm.VLAN_VID, 0x1007)), "0019001080000c021007000000000000"),
        (codec.encode_match([]), "0001000400000000"),
        (
            codec.encode_match([codec.oxm_u64(oxm.METADATA, 5 << 44, 0xFFFFF << 44)]),
            "00010018800005100000500000000000fffff00000000000",
        ),
    ],
    ids=["output", "output-controller", "push-qinq", "pop", "set-vlan-vid", "empty", "metadata"],
)
def test_action_and_match_encodings_match_golden_bytes(encoded: bytes, golden: str) -> None:
    assert encoded == bytes.fromhex(golden)


def test_oxm_header_layout_is_class_field_hasmask_length() -> None:
    assert codec.oxm_header(oxm.IN_PORT, 4) == 0x80000004
    assert codec.oxm_header(oxm.METADATA, 16, has_mask=True) == 0x80000510
    assert codec.oxm_u64(oxm.METADATA, 1, 3).encode()[:4] == bytes.fromhex("80000510")


# --- tenant FLOW_MODs built by os-ken, parsed by us -----------------------------------------
def test_flow_mod_built_by_osken_parses_field_by_field() -> None:
    match = parser.OFPMatch(
        in_port=1,
        metadata=(0x5, 0xFF),
        eth_type=0x0800,
        ipv4_dst=("10.0.0.0", "255.0.0.0"),
    )
    instructions = [
        apply(
            parser.OFPActionOutput(2, max_len=128),
            parser.OFPActionSetField(eth_dst="02:00:00:00:00:09"),
        ),
        parser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, []),
        write(parser.OFPActionOutput(4)),
        parser.OFPInstructionWriteMetadata(0x10, 0xF0),
        parser.OFPInstructionGotoTable(3),
    ]
    buf = osken_flow_mod(
        match,
        instructions,
        cookie=0xAABB,
        cookie_mask=0xFF00,
        table_id=2,
        command=ofp.OFPFC_MODIFY_STRICT,
        idle_timeout=30,
        hard_timeout=60,
        priority=1234,
        buffer_id=0x55,
        out_port=7,
        out_group=9,
        flags=ofp.OFPFF_SEND_FLOW_REM | ofp.OFPFF_CHECK_OVERLAP,
    )
    fm = FlowMod.parse(buf)
    assert (fm.cookie, fm.cookie_mask, fm.table_id, fm.command) == (
        0xAABB,
        0xFF00,
        2,
        ofp.OFPFC_MODIFY_STRICT,
    )
    assert (fm.idle_timeout, fm.hard_timeout, fm.priority) == (30, 60, 1234)
    assert (fm.buffer_id, fm.out_port, fm.out_group) == (0x55, 7, 9)
    assert fm.flags == ofp.OFPFF_SEND_FLOW_REM | ofp.OFPFF_CHECK_OVERLAP
    by_field = {o.field: o for o in fm.match}
    assert all(o.oxm_class == BASIC for o in fm.match)
    assert sorted(by_field) == [oxm.IN_PORT, oxm.METADATA, oxm.ETH_TYPE, oxm.IPV4_DST]
    assert by_field[oxm.IN_PORT] == Oxm(BASIC, oxm.IN_PORT, struct.pack("!I", 1))
    assert by_field[oxm.METADATA] == Oxm(
        BASIC, oxm.METADATA, struct.pack("!Q", 5), struct.pack("!Q", 0xFF)
    )
    assert by_field[oxm.ETH_TYPE] == Oxm(BASIC, oxm.ETH_TYPE, b"\x08\x00")
    assert by_field[oxm.IPV4_DST] == Oxm(BASIC, oxm.IPV4_DST, bytes([10, 0, 0, 0]), b"\xff\0\0\0")

    ins = codec.parse_instructions(fm.instructions)
    assert ins.goto_table == 3
    assert ins.write_metadata == (0x10, 0xF0)
    assert ins.clear_actions is True
    assert ins.meter is None and ins.other == []
    assert ins.apply_actions is not None and ins.write_actions is not None
    out, sf = ins.apply_actions
    assert (out.type, out.output_port, out.max_len) == (ofp.OFPAT_OUTPUT, 2, 128)
    assert sf.type == ofp.OFPAT_SET_FIELD
    assert sf.set_field_oxm() == Oxm(BASIC, oxm.ETH_DST, bytes.fromhex("020000000009"))
    assert [(a.type, a.output_port) for a in ins.write_actions] == [(ofp.OFPAT_OUTPUT, 4)]


def test_flow_mod_we_encode_is_read_identically_by_osken() -> None:
    fm = FlowMod(
        cookie=0x1122334455667788,
        cookie_mask=0xFFFF,
        table_id=3,
        command=ofp.OFPFC_DELETE,
        idle_timeout=5,
        hard_timeout=6,
        priority=7,
        buffer_id=ofp.OFP_NO_BUFFER,
        out_port=4,
        out_group=ofp.OFPG_ANY,
        flags=ofp.OFPFF_SEND_FLOW_REM,
        match=[
            codec.oxm_mac(oxm.ETH_SRC, "02:00:00:00:00:01"),
            codec.oxm_u16(oxm.VLAN_VID, 0x1000, 0x1000),
        ],
        instructions=codec.encode_instructions(
            goto_table=4,
            write_metadata=(1, 1),
            apply_actions=codec.push_vlan(0x8100) + codec.output(1),
        ),
    )
    buf = fm.encode(0x99)
    m = osken_parse(buf)
    assert m.xid == 0x99
    assert (m.cookie, m.cookie_mask, m.table_id, m.command) == (
        0x1122334455667788,
        0xFFFF,
        3,
        ofp.OFPFC_DELETE,
    )
    assert (m.idle_timeout, m.hard_timeout, m.priority, m.buffer_id) == (5, 6, 7, ofp.OFP_NO_BUFFER)
    assert (m.out_port, m.out_group, m.flags) == (4, ofp.OFPG_ANY, ofp.OFPFF_SEND_FLOW_REM)
    assert dict(m.match.items()) == {"eth_src": "02:00:00:00:00:01", "vlan_vid": (0x1000, 0x1000)}
    apply_i, wm, goto = m.instructions
    assert [type(a) for a in apply_i.actions] == [
        parser.OFPActionPushVlan,
        parser.OFPActionOutput,
    ]
    assert (wm.metadata, wm.metadata_mask) == (1, 1)
    assert goto.table_id == 4
    assert FlowMod.parse(buf) == fm


def test_instructions_are_encoded_in_the_order_the_spec_executes_them() -> None:
    buf = codec.encode_instructions(
        goto_table=2,
        write_metadata=(1, 1),
        write_actions=codec.output(1),
        apply_actions=codec.output(2),
        clear_actions=True,
    )
    types = []
    off = 0
    while off < len(buf):
        t, n = struct.unpack_from("!HH", buf, off)
        types.append(t)
        off += n
    assert types == [
        ofp.OFPIT_APPLY_ACTIONS,
        ofp.OFPIT_CLEAR_ACTIONS,
        ofp.OFPIT_WRITE_ACTIONS,
        ofp.OFPIT_WRITE_METADATA,
        ofp.OFPIT_GOTO_TABLE,
    ]


def test_duplicate_instruction_is_refused_with_dup_inst() -> None:
    # OpenFlow 1.3 has no standard code for this; OFPBIC_DUP_INST (3, 9) is the one 1.4 added
    # and what the codec means to send (os-ken's ofproto_v1_3 does not define it).
    one = codec.encode_instructions(apply_actions=codec.output(1))
    with pytest.raises(OFError) as err:
        codec.parse_instructions(one + one)
    assert (err.value.type, err.value.code) == (ofp.OFPET_BAD_INSTRUCTION, ofp_v14.OFPBIC_DUP_INST)
    assert codec.OFPBIC_DUP_INST == ofp_v14.OFPBIC_DUP_INST == 9


def test_non_oxm_match_is_refused_with_bad_match_type() -> None:
    buf = bytearray(GOLDEN_FLOW_MOD)
    struct.pack_into("!H", buf, 48, ofp.OFPMT_STANDARD)
    with pytest.raises(OFError) as err:
        FlowMod.parse(bytes(buf))
    assert (err.value.type, err.value.code) == (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_TYPE)


# --- PACKET_OUT / PACKET_IN / FLOW_REMOVED / ERROR ------------------------------------------
def test_packet_out_built_by_osken_parses_field_by_field() -> None:
    po = parser.OFPPacketOut(
        DP,
        buffer_id=ofp.OFP_NO_BUFFER,
        in_port=3,
        actions=[parser.OFPActionOutput(1), parser.OFPActionOutput(ofp.OFPP_FLOOD)],
        data=b"\x01\x02\x03frame",
    )
    got = PacketOut.parse(osken_bytes(po))
    assert (got.buffer_id, got.in_port, got.data) == (ofp.OFP_NO_BUFFER, 3, b"\x01\x02\x03frame")
    assert [(a.type, a.output_port) for a in got.actions] == [
        (ofp.OFPAT_OUTPUT, 1),
        (ofp.OFPAT_OUTPUT, ofp.OFPP_FLOOD),
    ]


def test_packet_out_we_build_is_byte_identical_to_osken() -> None:
    actions = [parser.OFPActionOutput(7, max_len=0)]
    po = parser.OFPPacketOut(
        DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER, actions=actions, data=b"xyz"
    )
    po.set_xid(42)
    assert codec.packet_out(42, ofp.OFPP_CONTROLLER, codec.output(7), b"xyz") == osken_bytes(po)


def test_packet_in_we_encode_is_read_identically_by_osken_and_parses_back() -> None:
    pi = PacketIn(
        buffer_id=ofp.OFP_NO_BUFFER,
        total_len=60,
        reason=ofp.OFPR_ACTION,
        table_id=2,
        cookie=0x0003000000000009,
        match=[codec.oxm_u32(oxm.IN_PORT, 3), codec.oxm_u64(oxm.METADATA, 5 << 44)],
        data=b"\xff" * 60,
    )
    buf = pi.encode(7)
    m = osken_parse(buf)
    assert (m.buffer_id, m.total_len, m.reason, m.table_id, m.cookie) == (
        ofp.OFP_NO_BUFFER,
        60,
        ofp.OFPR_ACTION,
        2,
        0x0003000000000009,
    )
    assert dict(m.match.items()) == {"in_port": 3, "metadata": 5 << 44}
    assert m.data == b"\xff" * 60
    assert PacketIn.parse(buf) == pi


def test_flow_removed_we_encode_is_read_identically_by_osken_and_parses_back() -> None:
    fr = FlowRemoved(
        cookie=0xC0FFEE,
        priority=10,
        reason=ofp.OFPRR_HARD_TIMEOUT,
        table_id=1,
        duration_sec=2,
        duration_nsec=3,
        idle_timeout=4,
        hard_timeout=5,
        packet_count=6,
        byte_count=7,
        match=[codec.oxm_mac(oxm.ETH_DST, "02:00:00:00:00:02")],
    )
    buf = fr.encode(3)
    m = osken_parse(buf)
    assert (m.cookie, m.priority, m.reason, m.table_id) == (0xC0FFEE, 10, ofp.OFPRR_HARD_TIMEOUT, 1)
    assert (m.duration_sec, m.duration_nsec, m.idle_timeout, m.hard_timeout) == (2, 3, 4, 5)
    assert (m.packet_count, m.byte_count) == (6, 7)
    assert dict(m.match.items()) == {"eth_dst": "02:00:00:00:00:02"}
    assert FlowRemoved.parse(buf) == fr


def test_error_message_carries_type_code_and_the_first_64_bytes() -> None:
    offending = bytes(range(100))
    buf = codec.error_msg(4, 0x1234, ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT, offending)
    m = osken_parse(buf)
    assert (m.xid, m.type, m.code) == (0x1234, ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT)
    assert m.data == offending[:64]


def test_set_xid_rewrites_only_the_xid() -> None:
    out = codec.set_xid(GOLDEN_FLOW_MOD, 0xDEADBEEF)
    assert out[4:8] == bytes.fromhex("deadbeef")
    assert out[:4] == GOLDEN_FLOW_MOD[:4] and out[8:] == GOLDEN_FLOW_MOD[8:]


def test_of_error_keeps_type_and_code() -> None:
    e = OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_DUP_FIELD, "dup")
    assert (e.type, e.code, e.reason) == (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_DUP_FIELD, "dup")


# --- malformed input -------------------------------------------------------------------------
def _flow_mod_with(match: bytes, instructions: bytes) -> bytes:
    """A FLOW_MOD built from raw match and instruction bytes (header length kept honest)."""
    body = GOLDEN_FLOW_MOD[8:48] + match + instructions
    return codec.header(4, ofp.OFPT_FLOW_MOD, 1, body)


def _apply_raw(actions: bytes) -> bytes:
    return struct.pack("!HH4x", ofp.OFPIT_APPLY_ACTIONS, 8 + len(actions)) + actions


MATCH_IN_PORT_1 = codec.encode_match([codec.oxm_u32(oxm.IN_PORT, 1)])
MALFORMED: dict[str, Callable[[], object]] = {
    "flow-mod-truncated-header": lambda: FlowMod.parse(GOLDEN_FLOW_MOD[:40]),
    "flow-mod-empty": lambda: FlowMod.parse(b""),
    "match-length-below-4": lambda: FlowMod.parse(
        _flow_mod_with(bytes.fromhex("0001000200000000"), b"")
    ),
    "match-overruns-message": lambda: FlowMod.parse(
        _flow_mod_with(bytes.fromhex("000100ff80000004"), b"")
    ),
    "match-padding-missing": lambda: FlowMod.parse(
        _flow_mod_with(bytes.fromhex("0001000c8000000400000001"), b"")
    ),
    "oxm-overruns-match": lambda: FlowMod.parse(
        # OXM claims 8 value bytes, the match holds 4
        _flow_mod_with(bytes.fromhex("0001000c800000080000000100000000"), b"")
    ),
    "oxm-header-truncated": lambda: FlowMod.parse(
        _flow_mod_with(bytes.fromhex("0001000680000000"), b"")
    ),
    "odd-masked-oxm-length": lambda: codec.parse_oxms(bytes.fromhex("80000503") + b"\0\0\0"),
    "action-length-not-multiple-of-8": lambda: codec.parse_actions(
        struct.pack("!HHI4x", ofp.OFPAT_OUTPUT, 12, 1)
    ),
    "action-zero-length": lambda: codec.parse_actions(struct.pack("!HH4x", ofp.OFPAT_OUTPUT, 0)),
    "action-truncated-header": lambda: codec.parse_actions(b"\0\0\0"),
    "action-overruns-list": lambda: codec.parse_actions(codec.output(1)[:8]),
    "instruction-overruns": lambda: codec.parse_instructions(_apply_raw(codec.output(1))[:16]),
    "instruction-zero-length": lambda: codec.parse_instructions(
        struct.pack("!HH4x", ofp.OFPIT_GOTO_TABLE, 0)
    ),
    "instruction-truncated-header": lambda: codec.parse_instructions(b"\0\x01\0"),
    "write-metadata-wrong-length": lambda: codec.parse_instructions(
        struct.pack("!HH4xQ", ofp.OFPIT_WRITE_METADATA, 16, 1)
    ),
    "packet-out-truncated": lambda: PacketOut.parse(b"\x04\x0d\x00\x10" + b"\0" * 12),
    "packet-out-actions-overrun": lambda: PacketOut.parse(
        codec.header(4, ofp.OFPT_PACKET_OUT, 1, struct.pack("!IIH6x", 0, 0, 64) + codec.output(1))
    ),
    "packet-in-truncated": lambda: PacketIn.parse(b"\x04\x0a\x00\x10" + b"\0" * 12),
    "flow-removed-truncated": lambda: FlowRemoved.parse(b"\x04\x0b\x00\x10" + b"\0" * 12),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_input_raises_malformed_message(case: str) -> None:
    with pytest.raises(MalformedMessage):
        MALFORMED[case]()


# --- per-type action lengths: well-formed TLVs the switch refuses ------------------------------
BAD_LEN = (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_LEN)
BAD_SET_LEN = (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_LEN)


def _sized(atype: int, length: int) -> bytes:
    """An action TLV of `atype` with an honest header `length` and zero body."""
    return struct.pack("!HH", atype, length) + b"\0" * (length - 4)


def _refused(buf: bytes) -> tuple[int, int]:
    with pytest.raises(OFError) as err:
        codec.parse_actions(buf)
    return err.value.type, err.value.code


def test_output_of_8_bytes_is_refused_with_bad_len() -> None:
    # ofp_action_output is 16 bytes; 8 is a legal TLV length, so this is BAD_LEN, not a
    # framing problem, and max_len is never read past the end.
    short = struct.pack("!HHI", ofp.OFPAT_OUTPUT, 8, 2)
    assert _refused(short) == BAD_LEN
    assert _refused(codec.output(1) + short) == BAD_LEN  # wherever it sits in the list


@pytest.mark.parametrize(
    ("atype", "length"),
    [
        (ofp.OFPAT_OUTPUT, 24),
        (ofp.OFPAT_POP_VLAN, 16),
        (ofp.OFPAT_PUSH_VLAN, 16),
        (ofp.OFPAT_GROUP, 16),
        (ofp.OFPAT_SET_QUEUE, 16),
        (ofp.OFPAT_DEC_NW_TTL, 16),
        (ofp.OFPAT_COPY_TTL_OUT, 16),
        (ofp.OFPAT_POP_PBB, 16),
    ],
    ids=["output-24", "pop-vlan-16", "push-vlan-16", "group-16", "set-queue-16", "dec-ttl-16",
         "copy-ttl-out-16", "pop-pbb-16"],
)  # fmt: skip
def test_fixed_size_action_of_another_size_is_refused_with_bad_len(atype: int, length: int) -> None:
    assert _refused(_sized(atype, length)) == BAD_LEN


def test_every_fixed_size_action_os_ken_builds_has_the_length_the_codec_wants() -> None:
    actions = [
        parser.OFPActionOutput(1),
        parser.OFPActionCopyTtlOut(),
        parser.OFPActionCopyTtlIn(),
        parser.OFPActionSetMplsTtl(5),
        parser.OFPActionDecMplsTtl(),
        parser.OFPActionPushVlan(0x8100),
        parser.OFPActionPopVlan(),
        parser.OFPActionPushMpls(0x8847),
        parser.OFPActionPopMpls(0x0800),
        parser.OFPActionSetQueue(1),
        parser.OFPActionGroup(1),
        parser.OFPActionSetNwTtl(9),
        parser.OFPActionDecNwTtl(),
        parser.OFPActionPushPbb(0x88E7),
        parser.OFPActionPopPbb(),
    ]
    po = parser.OFPPacketOut(
        DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER, actions=actions, data=b"x"
    )
    got = PacketOut.parse(osken_bytes(po)).actions
    assert [a.type for a in got] == [a.type for a in actions]
    assert [len(a.raw) for a in got] == [a.len for a in actions]


def test_set_field_whose_oxm_overruns_the_action_is_refused_with_bad_set_len() -> None:
    # An 8-byte set_field holds the OXM header only; eth_dst claims 6 more bytes.
    overrun = struct.pack("!HHI", ofp.OFPAT_SET_FIELD, 8, codec.oxm_header(oxm.ETH_DST, 6))
    assert _refused(overrun) == BAD_SET_LEN
    # 16 bytes hold 4 + 4 + 8: an 8-byte value fits, a masked one (16) does not.
    fits = codec.set_field(codec.oxm_u64(oxm.METADATA, 1))
    assert len(fits) == 16 and len(codec.parse_actions(fits)) == 1
    masked = struct.pack("!HHI", ofp.OFPAT_SET_FIELD, 16, codec.oxm_header(oxm.METADATA, 16, True))
    assert _refused(masked + b"\0" * 8) == BAD_SET_LEN


def test_set_field_os_ken_builds_parses_and_keeps_its_oxm() -> None:
    po = parser.OFPPacketOut(
        DP,
        buffer_id=ofp.OFP_NO_BUFFER,
        in_port=ofp.OFPP_CONTROLLER,
        actions=[
            parser.OFPActionSetField(eth_dst="02:00:00:00:00:09"),
            parser.OFPActionSetField(ipv6_dst="fe80::1"),
        ],
        data=b"x",
    )
    mac, ip6 = PacketOut.parse(osken_bytes(po)).actions
    assert mac.set_field_oxm() == Oxm(BASIC, oxm.ETH_DST, bytes.fromhex("020000000009"))
    assert ip6.set_field_oxm().value == bytes.fromhex("fe80" + "00" * 13 + "01")


def test_length_refusals_reach_the_tenant_through_flow_mod_and_packet_out() -> None:
    short = struct.pack("!HHI", ofp.OFPAT_OUTPUT, 8, 2)
    with pytest.raises(OFError) as err:
        _flow_mod_path(_flow_mod_with(codec.encode_match([]), _apply_raw(short)))
    assert (err.value.type, err.value.code) == BAD_LEN
    body = struct.pack("!IIH6x", ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, len(short)) + short
    with pytest.raises(OFError) as err:
        PacketOut.parse(codec.header(4, ofp.OFPT_PACKET_OUT, 1, body + b"frame"))
    assert (err.value.type, err.value.code) == BAD_LEN


# --- fuzz: FLOW_MOD + translate_flow, PACKET_OUT + translate_packet_out --------------------------
FUZZ_VIEW = VSwitchView(
    net_id=1,
    index=2,
    vdpid=0x0001000000000001,
    dpid=7,
    n_tables=4,
    # vports 2 and 3: two vlinks over one uplink (a shared physical port)
    ports={
        1: PortMap(1, 11),
        2: PortMap(2, 12, link_tag=5, is_link=True),
        3: PortMap(3, 12, link_tag=6, is_link=True),
    },
)
_PORTS = [
    0,
    1,
    2,
    3,
    4,
    ofp.OFPP_IN_PORT,
    ofp.OFPP_TABLE,
    ofp.OFPP_NORMAL,
    ofp.OFPP_FLOOD,
    ofp.OFPP_ALL,
    ofp.OFPP_CONTROLLER,
    ofp.OFPP_LOCAL,
    ofp.OFPP_ANY,
]
_ACTION_TYPES = [*range(0, 30), 0xFFFF]


def _rand_oxm(rng: random.Random) -> bytes:
    field_no = rng.choice([*range(0, 42), rng.randrange(128)])
    masked = rng.random() < 0.3
    n = rng.choice([0, 1, 2, 3, 4, 6, 8, 16, rng.randrange(32)])
    cls = BASIC if rng.random() < 0.95 else rng.randrange(1 << 16)
    hdr = (cls << 16) | (field_no << 9) | (int(masked) << 8) | n
    body = bytes(rng.randrange(256) for _ in range(n))
    if field_no == oxm.IN_PORT and n == 4 and rng.random() < 0.7:
        body = struct.pack("!I", rng.choice(_PORTS))
    return struct.pack("!I", hdr) + body


def _rand_action(rng: random.Random) -> bytes:
    t = rng.choice([ofp.OFPAT_OUTPUT] * 6 + [ofp.OFPAT_SET_FIELD] * 3 + _ACTION_TYPES)
    if t == ofp.OFPAT_OUTPUT and rng.random() < 0.8:
        length = rng.choice([16, 16, 16, 8, 24])
        body = struct.pack("!I", rng.choice(_PORTS)) + struct.pack("!H", rng.randrange(1 << 16))
    elif t == ofp.OFPAT_SET_FIELD and rng.random() < 0.8:
        body = _rand_oxm(rng)
        length = (4 + len(body) + 7) // 8 * 8
        if rng.random() < 0.2:
            length = rng.choice([8, 16])
    else:
        length = rng.choice([8, 8, 16, 0, 4, 12, rng.randrange(64)])
        body = bytes(rng.randrange(256) for _ in range(max(0, length - 4)))
    if t == ofp.OFPAT_PUSH_VLAN and rng.random() < 0.8:
        body = struct.pack("!H", rng.choice([0x8100, 0x88A8, 0x0800]))
    raw = struct.pack("!HH", t, length) + body
    raw = raw[: max(length, 4)] if rng.random() < 0.9 else raw
    return raw + b"\0" * max(0, length - len(raw))


def _rand_instructions(rng: random.Random) -> bytes:
    out = b""
    for _ in range(rng.randrange(4)):
        t = rng.choice([1, 2, 3, 4, 5, 6, 7, 0xFFFF, rng.randrange(1 << 16)])
        if t in (ofp.OFPIT_APPLY_ACTIONS, ofp.OFPIT_WRITE_ACTIONS):
            acts = b"".join(_rand_action(rng) for _ in range(rng.randrange(4)))
            length = 8 + len(acts) if rng.random() < 0.9 else rng.randrange(64)
            out += struct.pack("!HH4x", t, length) + acts
        elif t == ofp.OFPIT_GOTO_TABLE:
            out += struct.pack("!HHB3x", t, rng.choice([8, 8, 4, 16]), rng.randrange(8))
        elif t == ofp.OFPIT_WRITE_METADATA:
            mask = rng.choice([0xFF, 0xFFFFFFFF, 1 << 40, rng.randrange(1 << 64)])
            out += struct.pack("!HH4xQQ", t, rng.choice([24, 24, 16, 32]), 1, mask)
        else:
            n = rng.choice([8, 0, 4, 12, 16])
            out += struct.pack("!HH", t, n) + bytes(max(0, n - 4))
    return out


def _rand_flow_mod(rng: random.Random) -> bytes:
    match_body = b"".join(_rand_oxm(rng) for _ in range(rng.randrange(4)))
    mlen = 4 + len(match_body)
    if rng.random() < 0.1:
        mlen = rng.randrange(64)
    match = struct.pack("!HH", rng.choice([1, 1, 1, 0]), mlen) + match_body
    match += b"\0" * (-len(match) % 8)
    body = struct.pack(
        "!QQBBHHHIIIH2x",
        0,
        0,
        rng.choice([0, 1, 3, 4, 255]),
        0,
        0,
        0,
        1,
        ofp.OFP_NO_BUFFER,
        ofp.OFPP_ANY,
        ofp.OFPG_ANY,
        0,
    )
    return codec.header(4, ofp.OFPT_FLOW_MOD, 1, body + match + _rand_instructions(rng))


def _mutate(rng: random.Random, buf: bytes) -> bytes:
    b = bytearray(buf)
    for _ in range(rng.randrange(1, 4)):
        choice = rng.random()
        if choice < 0.3 and b:
            del b[rng.randrange(len(b)) :]
        elif choice < 0.8 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        else:
            b += bytes(rng.randrange(256) for _ in range(rng.randrange(16)))
    return bytes(b)


def _flow_mod_path(buf: bytes) -> None:
    fm = FlowMod.parse(buf)
    translate_flow(FUZZ_VIEW, fm.table_id, fm.match, fm.instructions)


def _packet_out_path(buf: bytes) -> None:
    po = PacketOut.parse(buf)
    for in_vport in (0, 1, 2, 3):
        translate_packet_out(FUZZ_VIEW, in_vport, po.actions)


def _fuzz(path: Callable[[bytes], None], cases: list[bytes]) -> list[str]:
    failures = []
    for buf in cases:
        try:
            path(buf)
        except (MalformedMessage, OFError):
            pass
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc} <- {buf.hex()}")
    return failures


def test_random_flow_mods_only_raise_malformed_message_or_of_error() -> None:
    rng = random.Random(20240613)
    cases = [_rand_flow_mod(rng) for _ in range(3000)]
    cases += [_mutate(rng, rng.choice(cases)) for _ in range(2000)]
    cases += [_mutate(rng, GOLDEN_FLOW_MOD) for _ in range(500)]
    cases += [bytes(rng.randrange(256) for _ in range(rng.randrange(120))) for _ in range(500)]
    failures = _fuzz(_flow_mod_path, cases)
    assert not failures, f"{len(failures)} inputs escaped; first: {failures[0]}"


def test_random_packet_outs_only_raise_malformed_message_or_of_error() -> None:
    rng = random.Random(4242)
    cases = []
    for _ in range(3000):
        acts = b"".join(_rand_action(rng) for _ in range(rng.randrange(5)))
        alen = len(acts) if rng.random() < 0.9 else rng.randrange(80)
        body = struct.pack("!IIH6x", ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER, alen) + acts + b"x"
        cases.append(codec.header(4, ofp.OFPT_PACKET_OUT, 1, body))
    cases += [_mutate(rng, rng.choice(cases)) for _ in range(2000)]
    failures = _fuzz(_packet_out_path, cases)
    assert not failures, f"{len(failures)} inputs escaped; first: {failures[0]}"


def test_output_action_too_short_for_max_len_is_bad_len_not_a_crash() -> None:
    # An 8-byte OUTPUT (a legal length multiple of 8, but ofp_action_output is 16 bytes)
    # to CONTROLLER: reading max_len must not escape as struct.error.
    short_output = struct.pack("!HHI", ofp.OFPAT_OUTPUT, 8, ofp.OFPP_CONTROLLER)
    buf = _flow_mod_with(codec.encode_match([]), _apply_raw(short_output))
    with pytest.raises(OFError) as err:
        _flow_mod_path(buf)
    assert (err.value.type, err.value.code) == BAD_LEN


# --- HELLO version bitmap (openflow/channel.py) ------------------------------------------------
def test_hello_for_openflow13_matches_golden_bytes() -> None:
    assert hello(frozenset({4}), xid=7) == bytes.fromhex(
        "04000010" "00000007" "0001" "0008" "00000010"
    )  # fmt: skip


def test_hello_bitmap_is_read_by_osken() -> None:
    m = osken_parse(hello(frozenset({1, 4})))
    assert m.version == 4
    assert m.elements[0].versions == [1, 4]


def test_peer_versions_reads_our_own_bitmap() -> None:
    assert _peer_versions(hello(frozenset({1, 4}))) == {1, 4}
    assert _peer_versions(hello(frozenset({4, 5, 6}))) == {4, 5, 6}


def test_peer_versions_reads_bitmap_words_beyond_the_first() -> None:
    # versions 4 and 33: bit 4 of word 0, bit 1 of word 1 (element length 12, padded to 16)
    msg = bytes.fromhex("04000018000000000001000c000000100000000200000000")
    assert _peer_versions(msg) == {4, 33}


def test_peer_versions_skips_unknown_elements_by_their_padded_length() -> None:
    # an unknown element of length 5 (padded to 8), then the bitmap
    unknown = bytes.fromhex("00070005aa000000")
    bitmap = bytes.fromhex("0001000800000012")
    msg = codec.header(4, 0, 0, unknown + bitmap)
    assert _peer_versions(msg) == {1, 4}


def test_peer_versions_without_bitmap_means_every_version_up_to_the_header() -> None:
    assert _peer_versions(codec.header(4, 0, 0)) == {1, 2, 3, 4}
    assert _peer_versions(codec.header(1, 0, 0)) == {1}


def test_multipart_entries_walk_every_body_and_stop_at_a_bogus_length() -> None:
    e1 = struct.pack("!H", 8) + bytes(6)
    e2 = struct.pack("!H", 10) + bytes(8)
    bogus = struct.pack("!H", 2) + bytes(6)  # shorter than an entry: the rest is unreadable
    got = list(codec.entries([e1 + e2, e2 + bogus + e1, b"\x00"], 8))
    assert [(off, length) for _, off, length in got] == [(0, 8), (8, 10), (0, 10)]
    # the length field may sit further in (meter statistics: after the meter id)
    meter = bytes(4) + struct.pack("!H", 12) + bytes(6)
    assert [(o, n) for _, o, n in codec.entries([meter * 2], 12, len_at=4)] == [(0, 12), (12, 12)]
    assert list(codec.entries(None, 8)) == []


def test_tenant_elements_must_be_whole_aligned_and_at_least_16_bytes() -> None:
    ok = struct.pack("!H", 16) + bytes(14) + struct.pack("!H", 24) + bytes(22)
    assert list(codec.elements(ok, 0, "bucket")) == [(0, 16), (16, 24)]
    for bad, says in [
        (ok + bytes(8), "truncated bucket"),
        (struct.pack("!H", 12) + bytes(14), "bad bucket length 12"),
        (struct.pack("!H", 20) + bytes(18), "bad bucket length 20"),
        (struct.pack("!H", 32) + bytes(14), "bad bucket length 32"),
    ]:
        with pytest.raises(codec.MalformedMessage, match=says):
            list(codec.elements(bad, 0, "bucket"))


# --- message bodies (openflow/messages.py) against os-ken ------------------------------------
# Each layout of ours, and the os-ken pack string(s) of the same OpenFlow structure.
LAYOUTS: list[tuple[str, struct.Struct, list[str]]] = [
    ("HEADER", codec.HEADER, [ofp.OFP_HEADER_PACK_STR]),
    ("FLOW_MOD_BODY", codec.FLOW_MOD_BODY, [ofp.OFP_FLOW_MOD_PACK_STR0]),
    ("ERROR_MSG", codec.ERROR_MSG, [ofp.OFP_ERROR_MSG_PACK_STR]),
    (
        "MULTIPART_HEADER",
        messages.MULTIPART_HEADER,
        [ofp.OFP_MULTIPART_REQUEST_PACK_STR, ofp.OFP_MULTIPART_REPLY_PACK_STR],
    ),
    ("DESC", messages.DESC, [ofp.OFP_DESC_PACK_STR]),
    ("PORT", messages.PORT, [ofp.OFP_PORT_PACK_STR]),
    (
        "PORT_STATUS",
        messages.PORT_STATUS,
        [ofp.OFP_PORT_STATUS_PACK_STR.removesuffix(ofp._OFP_PORT_PACK_STR)],
    ),
    ("SWITCH_FEATURES", messages.SWITCH_FEATURES, [ofp.OFP_SWITCH_FEATURES_PACK_STR]),
    ("SWITCH_CONFIG", messages.SWITCH_CONFIG, [ofp.OFP_SWITCH_CONFIG_PACK_STR]),
    ("ROLE", messages.ROLE, [ofp.OFP_ROLE_REQUEST_PACK_STR]),
    ("ASYNC_CONFIG", messages.ASYNC_CONFIG, [ofp.OFP_ASYNC_CONFIG_PACK_STR]),
    (
        "FLOW_STATS_REQUEST",
        messages.FLOW_STATS_REQUEST,
        [ofp.OFP_FLOW_STATS_REQUEST_0_PACK_STR, ofp.OFP_AGGREGATE_STATS_REQUEST_0_PACK_STR],
    ),
    ("FLOW_STATS", messages.FLOW_STATS, [ofp.OFP_FLOW_STATS_0_PACK_STR]),
    (
        "AGGREGATE_STATS_REPLY",
        messages.AGGREGATE_STATS_REPLY,
        [ofp.OFP_AGGREGATE_STATS_REPLY_PACK_STR],
    ),
    ("TABLE_STATS", messages.TABLE_STATS, [ofp.OFP_TABLE_STATS_PACK_STR]),
    ("PORT_STATS_REQUEST", messages.PORT_STATS_REQUEST, [ofp.OFP_PORT_STATS_REQUEST_PACK_STR]),
    ("PORT_STATS", messages.PORT_STATS, [ofp.OFP_PORT_STATS_PACK_STR]),
    ("GROUP_MOD", messages.GROUP_MOD, [ofp.OFP_GROUP_MOD_PACK_STR]),
    ("BUCKET", messages.BUCKET, [ofp.OFP_BUCKET_PACK_STR]),
    ("GROUP_STATS_REQUEST", messages.GROUP_STATS_REQUEST, [ofp.OFP_GROUP_STATS_REQUEST_PACK_STR]),
    ("GROUP_STATS", messages.GROUP_STATS, [ofp.OFP_GROUP_STATS_PACK_STR]),
    ("BUCKET_COUNTER", messages.BUCKET_COUNTER, [ofp.OFP_BUCKET_COUNTER_PACK_STR]),
    ("GROUP_DESC", messages.GROUP_DESC, [ofp.OFP_GROUP_DESC_STATS_PACK_STR]),
    ("GROUP_FEATURES", messages.GROUP_FEATURES, [ofp.OFP_GROUP_FEATURES_PACK_STR]),
    ("METER_MOD", messages.METER_MOD, [ofp.OFP_METER_MOD_PACK_STR]),
    (
        "METER_MULTIPART_REQUEST",
        messages.METER_MULTIPART_REQUEST,
        [ofp.OFP_METER_MULTIPART_REQUEST_PACK_STR],
    ),
    ("METER_STATS", messages.METER_STATS, [ofp.OFP_METER_STATS_PACK_STR]),
    ("METER_CONFIG", messages.METER_CONFIG, [ofp.OFP_METER_CONFIG_PACK_STR]),
    ("METER_FEATURES", messages.METER_FEATURES, [ofp.OFP_METER_FEATURES_PACK_STR]),
    ("of10.STATS_HEADER10", of10.STATS_HEADER10, [ofp_v10.OFP_STATS_MSG_PACK_STR]),
    (
        "of10.FLOW_STATS_REQUEST10",
        of10.FLOW_STATS_REQUEST10,
        [ofp_v10.OFP_FLOW_STATS_REQUEST_ID_PORT_STR],
    ),
]


def _canonical(fmt: str) -> list[str]:
    """A struct format as one token per field and pad byte: '!2I4x' == '!IIxxxx'."""
    assert fmt[0] == "!", f"{fmt!r} is not network byte order"
    out: list[str] = []
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", fmt[1:]):
        n = int(count or 1)
        out += [f"{n}s"] if code == "s" else [code] * n
    return out


@pytest.mark.parametrize(("name", "ours", "osken"), LAYOUTS, ids=[n for n, _, _ in LAYOUTS])
def test_each_layout_is_os_kens_pack_string(
    name: str, ours: struct.Struct, osken: list[str]
) -> None:
    for reference in osken:
        assert _canonical(ours.format) == _canonical(reference), name
        assert ours.size == struct.calcsize(reference), name


def test_every_layout_in_messages_is_checked_against_os_ken() -> None:
    layouts = {n for n in messages.__all__ if isinstance(getattr(messages, n), struct.Struct)}
    assert layouts == {n for n, _, _ in LAYOUTS if not n.startswith("of10.")}
    assert not [n for n in messages.__all__ if not hasattr(messages, n)]


def test_multipart_request_is_byte_identical_to_osken() -> None:
    ours = messages.multipart_request(
        4, 9, ofp.OFPMP_PORT_STATS, messages.PORT_STATS_REQUEST.pack(5)
    )
    theirs = parser.OFPPortStatsRequest(DP, 0, 5)
    theirs.set_xid(9)
    assert ours == osken_bytes(theirs)
    for mtype, body, request in [
        (ofp.OFPMP_GROUP, messages.GROUP_STATS_REQUEST.pack(ofp.OFPG_ALL),
         parser.OFPGroupStatsRequest(DP, 0, ofp.OFPG_ALL)),
        (ofp.OFPMP_METER, messages.METER_MULTIPART_REQUEST.pack(7),
         parser.OFPMeterStatsRequest(DP, 0, 7)),
    ]:  # fmt: skip
        assert messages.multipart_request(4, 0, mtype, body) == osken_bytes(request)


def test_flow_stats_request_is_byte_identical_to_osken_and_parses_back() -> None:
    match = [codec.oxm_u32(oxm.IN_PORT, 3), codec.oxm_u16(oxm.ETH_TYPE, 0x800)]
    body = messages.flow_stats_request(1, 2, 3, 0xC0FFEE, 0xFFFF, match)
    theirs = parser.OFPFlowStatsRequest(
        DP, 0, 1, 2, 3, 0xC0FFEE, 0xFFFF, parser.OFPMatch(in_port=3, eth_type=0x800)
    )
    assert messages.multipart_request(4, 0, ofp.OFPMP_FLOW, body) == osken_bytes(theirs)
    assert messages.parse_flow_stats_request(osken_bytes(theirs)) == (
        1, 2, 3, 0xC0FFEE, 0xFFFF, match,
    )  # fmt: skip
    agg = parser.OFPAggregateStatsRequest(
        DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0, parser.OFPMatch()
    )
    assert messages.multipart_request(
        4, 0, ofp.OFPMP_AGGREGATE, messages.flow_stats_request()
    ) == osken_bytes(agg)
    with pytest.raises(MalformedMessage, match="too short"):
        messages.parse_flow_stats_request(osken_bytes(agg)[:55])


def _reply(mtype: int, body: bytes) -> Any:
    return osken_parse(messages.multipart_reply(4, 5, mtype, body))


def test_multipart_reply_flags_and_desc_read_by_osken() -> None:
    body = messages.DESC.pack(b"mfr", b"hw", b"sw", b"serial", b"dp")
    m = _reply(ofp.OFPMP_DESC, body)
    assert (m.xid, m.flags) == (5, 0)
    assert (m.body.mfr_desc, m.body.serial_num, m.body.dp_desc) == (b"mfr", b"serial", b"dp")
    more = osken_parse(messages.multipart_reply(4, 5, ofp.OFPMP_DESC, body, more=True))
    assert more.flags == ofp.OFPMPF_REPLY_MORE


def test_flow_stats_entry_read_by_osken() -> None:
    match = codec.encode_match([codec.oxm_u32(oxm.IN_PORT, 3)])
    ins = codec.encode_instructions(apply_actions=codec.output(2))
    entry = messages.flow_stats_entry(
        2, messages.sec_nsec(5.25), 100, 6, 7, ofp.OFPFF_SEND_FLOW_REM, 0xAB, 11, 1100, match, ins
    )
    (s,) = _reply(ofp.OFPMP_FLOW, entry).body
    assert (s.length, s.table_id, s.duration_sec, s.duration_nsec, s.priority) == (
        len(entry), 2, 5, 250_000_000, 100,
    )  # fmt: skip
    assert (s.idle_timeout, s.hard_timeout, s.flags, s.cookie) == (6, 7, 1, 0xAB)
    assert (s.packet_count, s.byte_count, dict(s.match.items())) == (11, 1100, {"in_port": 3})
    assert s.instructions[0].actions[0].port == 2
    assert messages.FLOW_STATS.unpack_from(entry)[-3:] == (0xAB, 11, 1100)


def test_statistics_entries_read_by_osken() -> None:
    agg = _reply(ofp.OFPMP_AGGREGATE, messages.AGGREGATE_STATS_REPLY.pack(1, 2, 3)).body
    assert (agg.packet_count, agg.byte_count, agg.flow_count) == (1, 2, 3)
    (t,) = _reply(ofp.OFPMP_TABLE, messages.TABLE_STATS.pack(4, 5, 2**64 - 1, 6)).body
    assert (t.table_id, t.active_count, t.lookup_count, t.matched_count) == (4, 5, 2**64 - 1, 6)
    (p,) = _reply(ofp.OFPMP_PORT_STATS, messages.PORT_STATS.pack(7, *range(1, 13), 8, 9)).body
    assert (p.port_no, p.rx_packets, p.tx_packets, p.rx_bytes, p.tx_bytes) == (7, 1, 2, 3, 4)
    assert (p.collisions, p.duration_sec, p.duration_nsec) == (12, 8, 9)
    entry = messages.group_stats_entry(3, 4, 5, 6, (7, 8), [(1, 2), (3, 4)])
    (g,) = _reply(ofp.OFPMP_GROUP, entry).body
    assert (g.length, g.group_id, g.ref_count, g.packet_count, g.byte_count) == (72, 3, 4, 5, 6)
    assert (g.duration_sec, g.duration_nsec) == (7, 8)
    assert [(b.packet_count, b.byte_count) for b in g.bucket_stats] == [(1, 2), (3, 4)]
    band = struct.pack("!QQ", 9, 10)
    meter = messages.METER_STATS.pack(2, 56, 3, 4, 5, 6, 7) + band
    (ms,) = _reply(ofp.OFPMP_METER, meter).body
    assert (ms.meter_id, ms.len, ms.flow_count, ms.packet_in_count, ms.byte_in_count) == (
        2, 56, 3, 4, 5,
    )  # fmt: skip
    assert (ms.duration_sec, ms.duration_nsec, ms.band_stats[0].packet_band_count) == (6, 7, 9)


def test_group_and_meter_descriptions_read_by_osken() -> None:
    bucket = messages.BUCKET.pack(16 + 16, 0, ofp.OFPP_ANY, ofp.OFPG_ANY) + codec.output(3)
    desc = messages.GROUP_DESC.pack(8 + len(bucket), ofp.OFPGT_ALL, 9) + bucket
    (d,) = _reply(ofp.OFPMP_GROUP_DESC, desc).body
    assert (d.type, d.group_id, d.buckets[0].actions[0].port) == (ofp.OFPGT_ALL, 9, 3)
    feats = messages.GROUP_FEATURES.pack(15, 7, 1, 2, 3, 4, 5, 6, 7, 8)
    f = _reply(ofp.OFPMP_GROUP_FEATURES, feats).body
    assert (f.types, f.capabilities, f.max_groups, f.actions) == (15, 7, [1, 2, 3, 4], [5, 6, 7, 8])
    band = struct.pack("!HHII4x", ofp.OFPMBT_DROP, 16, 1000, 10)
    (c,) = _reply(ofp.OFPMP_METER_CONFIG, messages.METER_CONFIG.pack(24, 1, 4) + band).body
    assert (c.length, c.flags, c.meter_id, c.bands[0].rate) == (24, 1, 4, 1000)
    mf = _reply(ofp.OFPMP_METER_FEATURES, messages.METER_FEATURES.pack(100, 2, 3, 4, 5)).body
    assert (mf[0].max_meter, mf[0].band_types, mf[0].max_bands, mf[0].max_color) == (100, 2, 4, 5)


def test_group_and_meter_mods_are_byte_identical_to_osken() -> None:
    bucket = parser.OFPBucket(weight=3, watch_port=ofp.OFPP_ANY, watch_group=ofp.OFPG_ANY,
                              actions=[parser.OFPActionOutput(4, max_len=0)])  # fmt: skip
    gm = parser.OFPGroupMod(DP, ofp.OFPGC_ADD, ofp.OFPGT_SELECT, 6, [bucket])
    ours = (
        messages.GROUP_MOD.pack(ofp.OFPGC_ADD, ofp.OFPGT_SELECT, 6)
        + messages.BUCKET.pack(32, 3, ofp.OFPP_ANY, ofp.OFPG_ANY)
        + codec.output(4)
    )
    assert codec.header(4, ofp.OFPT_GROUP_MOD, 0, ours) == osken_bytes(gm)
    mm = parser.OFPMeterMod(DP, ofp.OFPMC_DELETE, 0, ofp.OFPM_ALL, [])
    ours = messages.METER_MOD.pack(ofp.OFPMC_DELETE, 0, ofp.OFPM_ALL)
    assert codec.header(4, ofp.OFPT_METER_MOD, 0, ours) == osken_bytes(mm)


def test_switch_messages_read_and_written_like_osken() -> None:
    feats = messages.SWITCH_FEATURES.pack(0x0102030405060708, 0, 64, 0, 0x4F, 0)
    f = osken_parse(codec.header(4, ofp.OFPT_FEATURES_REPLY, 1, feats))
    assert (f.datapath_id, f.n_buffers, f.n_tables, f.capabilities) == (
        0x0102030405060708, 0, 64, 0x4F,
    )  # fmt: skip
    c = osken_parse(
        codec.header(4, ofp.OFPT_GET_CONFIG_REPLY, 1, messages.SWITCH_CONFIG.pack(1, 128))
    )
    assert (c.flags, c.miss_send_len) == (1, 128)
    sc = parser.OFPSetConfig(DP, 1, 0xFFFF)
    assert codec.header(4, ofp.OFPT_SET_CONFIG, 0, messages.SWITCH_CONFIG.pack(1, 0xFFFF)) == (
        osken_bytes(sc)
    )
    rr = parser.OFPRoleRequest(DP, ofp.OFPCR_ROLE_MASTER, 0x1122334455667788)
    role = messages.ROLE.pack(ofp.OFPCR_ROLE_MASTER, 0x1122334455667788)
    assert codec.header(4, ofp.OFPT_ROLE_REQUEST, 0, role) == osken_bytes(rr)
    reply = osken_parse(codec.header(4, ofp.OFPT_ROLE_REPLY, 2, role))
    assert (reply.role, reply.generation_id) == (ofp.OFPCR_ROLE_MASTER, 0x1122334455667788)
    sa = parser.OFPSetAsync(DP, [1, 2], [3, 4], [5, 6])
    assert codec.header(4, ofp.OFPT_SET_ASYNC, 0, messages.ASYNC_CONFIG.pack(1, 2, 3, 4, 5, 6)) == (
        osken_bytes(sa)
    )
    ga = osken_parse(
        codec.header(4, ofp.OFPT_GET_ASYNC_REPLY, 3, messages.ASYNC_CONFIG.pack(1, 2, 3, 4, 5, 6))
    )
    assert (ga.packet_in_mask, ga.port_status_mask, ga.flow_removed_mask) == (
        [1, 2],
        [3, 4],
        [5, 6],
    )


def test_port_status_and_port_description_read_by_osken() -> None:
    port = messages.PORT.pack(3, bytes.fromhex("027600000003"), b"vport3", 0, ofp.OFPPS_LIVE,
                              1, 2, 3, 4, 10_000_000, 20_000_000)  # fmt: skip
    ps = osken_parse(
        codec.header(4, ofp.OFPT_PORT_STATUS, 0, messages.port_status(ofp.OFPPR_MODIFY, port))
    )
    assert (ps.reason, ps.desc.port_no, ps.desc.hw_addr, ps.desc.name) == (
        ofp.OFPPR_MODIFY, 3, "02:76:00:00:00:03", b"vport3",
    )  # fmt: skip
    assert (ps.desc.state, ps.desc.curr_speed, ps.desc.max_speed) == (
        ofp.OFPPS_LIVE, 10_000_000, 20_000_000,
    )  # fmt: skip
    (pd,) = _reply(ofp.OFPMP_PORT_DESC, port).body
    assert (pd.port_no, pd.name) == (3, b"vport3")


def test_openflow10_flow_stats_request_is_byte_identical_to_osken() -> None:
    theirs = parser_v10.OFPFlowStatsRequest(DP10, 0, parser_v10.OFPMatch(), 0xFF, ofp_v10.OFPP_NONE)
    assert codec.header(1, ofp_v10.OFPT_STATS_REQUEST, 0, of10.flow_stats_request10()) == (
        osken_bytes(theirs)
    )


def test_sec_nsec_splits_a_duration() -> None:
    assert messages.sec_nsec(3.5) == (3, 500_000_000)
    assert messages.sec_nsec(0) == (0, 0)
