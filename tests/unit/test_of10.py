"""OpenFlow 1.0 <-> 1.3 conversion at a vswitch's edge, checked against os-ken's parsers."""

from __future__ import annotations

import struct

import pytest
from os_ken.ofproto import ofproto_v1_0 as o10
from os_ken.ofproto import ofproto_v1_0_parser as p10
from os_ken.ofproto import ofproto_v1_3 as o13
from os_ken.ofproto import ofproto_v1_3_parser as p13
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.openflow import codec, of10, oxm
from tenantvisor.openflow.codec import OFError

DP10, DP13 = ProtocolDesc(o10.OFP_VERSION), ProtocolDesc(o13.OFP_VERSION)


def wire10(msg: p10.MsgBase, xid: int = 7) -> bytes:
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def match10(**kw: object) -> bytes:
    buf = bytearray()
    p10.OFPMatch(**kw).serialize(buf, 0)
    return bytes(buf)


def fields(oxms: list[codec.Oxm]) -> dict[int, tuple[int, int | None]]:
    return {
        o.field: (codec.oxm_int(o), None if o.mask is None else int.from_bytes(o.mask, "big"))
        for o in oxms
    }


def test_an_exact_tcp_match_becomes_oxm_fields_with_their_prerequisites() -> None:
    wild = o10.OFPFW_ALL & ~(o10.OFPFW_IN_PORT | o10.OFPFW_DL_TYPE | o10.OFPFW_NW_PROTO
                             | o10.OFPFW_TP_DST | o10.OFPFW_NW_SRC_MASK)  # fmt: skip
    buf = match10(wildcards=wild, in_port=3, dl_type=0x0800, nw_proto=6, nw_src=0x0A000001,
                  tp_dst=80)  # fmt: skip
    oxms, proto, untagged = of10.match_to13(buf, 0)
    assert fields(oxms) == {
        oxm.IN_PORT: (3, None), oxm.ETH_TYPE: (0x0800, None), oxm.IP_PROTO: (6, None),
        oxm.IPV4_SRC: (0x0A000001, None), oxm.TCP_DST: (80, None),
    }  # fmt: skip
    assert proto == 6 and untagged is None


def test_a_prefix_wildcard_becomes_a_mask_and_arp_fields_their_own() -> None:
    wild = (o10.OFPFW_ALL & ~(o10.OFPFW_DL_TYPE | o10.OFPFW_NW_SRC_MASK)) | (
        8 << o10.OFPFW_NW_SRC_SHIFT
    )
    oxms, _, _ = of10.match_to13(match10(wildcards=wild, dl_type=0x0806, nw_src=0x0A0000FF), 0)
    assert fields(oxms)[oxm.ARP_SPA] == (0x0A000000, 0xFFFFFF00)


def test_no_vlan_means_untagged() -> None:
    wild = o10.OFPFW_ALL & ~o10.OFPFW_DL_VLAN
    oxms, _, untagged = of10.match_to13(match10(wildcards=wild, dl_vlan=o10.OFP_VLAN_NONE), 0)
    assert untagged is True and fields(oxms)[oxm.VLAN_VID] == (0, None)


def test_a_match_survives_the_round_trip() -> None:
    wild = o10.OFPFW_ALL & ~(o10.OFPFW_IN_PORT | o10.OFPFW_DL_SRC | o10.OFPFW_DL_TYPE
                             | o10.OFPFW_NW_DST_MASK)  # fmt: skip
    buf = match10(wildcards=wild, in_port=2, dl_src=b"\x02\x00\x00\x00\x00\x01",
                  dl_type=0x0800, nw_dst=0x0A000005)  # fmt: skip
    oxms, _, _ = of10.match_to13(buf, 0)
    again, _, _ = of10.match_to13(of10.match_to10(oxms), 0)
    assert fields(again) == fields(oxms)


def test_a_flow_mod_becomes_a_table0_rule_os_ken_reads_back() -> None:
    wild = o10.OFPFW_ALL & ~o10.OFPFW_IN_PORT
    msg = wire10(p10.OFPFlowMod(
        DP10, p10.OFPMatch(wildcards=wild, in_port=1), 0xAB, o10.OFPFC_ADD, 5, 0, 77,
        0xFFFFFFFF, o10.OFPP_NONE, o10.OFPFF_SEND_FLOW_REM,
        [p10.OFPActionOutput(o10.OFPP_FLOOD, 0), p10.OFPActionStripVlan()],
    ))  # fmt: skip
    out = of10.flow_mod_to13(msg, 7)
    fm = p13.OFPFlowMod.parser(DP13, 4, o13.OFPT_FLOW_MOD, len(out), 7, out)
    assert (fm.cookie, fm.table_id, fm.idle_timeout, fm.priority) == (0xAB, 0, 5, 77)
    assert fm.flags == o13.OFPFF_SEND_FLOW_REM and fm.match["in_port"] == 1
    acts = fm.instructions[0].actions
    assert acts[0].port == o13.OFPP_FLOOD and isinstance(acts[1], p13.OFPActionPopVlan)


@pytest.mark.parametrize(
    ("action", "code"),
    [
        (p10.OFPActionSetTpSrc(80), o13.OFPBAC_BAD_ARGUMENT),
        (p10.OFPActionEnqueue(1, 1), o13.OFPBAC_BAD_QUEUE),
    ],
    ids=["tp-port-without-protocol", "enqueue"],
)  # fmt: skip
def test_actions_1_0_cannot_express_here_are_refused(action: object, code: int) -> None:
    buf = bytearray()
    action.serialize(buf, 0)  # type: ignore[attr-defined]
    with pytest.raises(OFError) as exc:
        of10.actions_to13(bytes(buf), None, None)
    assert (exc.value.type, exc.value.code) == (o13.OFPET_BAD_ACTION, code)


def test_a_vlan_id_set_on_an_untagged_packet_pushes_a_tag_first() -> None:
    buf = bytearray()
    p10.OFPActionVlanVid(5).serialize(buf, 0)
    acts = codec.parse_actions(of10.actions_to13(bytes(buf), None, True))
    assert [a.type for a in acts] == [o13.OFPAT_PUSH_VLAN, o13.OFPAT_SET_FIELD]


def test_reserved_ports_map_both_ways() -> None:
    for p in (o10.OFPP_IN_PORT, o10.OFPP_FLOOD, o10.OFPP_ALL, o10.OFPP_CONTROLLER):
        assert of10.port_to10(of10.port_to13(p)) == p
    assert of10.port_to13(o10.OFPP_NONE) == o13.OFPP_ANY


def test_errors_get_1_0_types_and_codes() -> None:
    assert of10.error_code10(o13.OFPET_BAD_ACTION, o13.OFPBAC_BAD_OUT_PORT) == (
        o10.OFPET_BAD_ACTION, o10.OFPBAC_BAD_OUT_PORT)  # fmt: skip
    assert of10.error_code10(o13.OFPET_BAD_MATCH, o13.OFPBMC_BAD_FIELD) == (
        o10.OFPET_FLOW_MOD_FAILED, o10.OFPFMFC_EPERM)  # fmt: skip
    assert of10.error_code10(o13.OFPET_FLOW_MOD_FAILED, o13.OFPFMFC_OVERLAP) == (
        o10.OFPET_FLOW_MOD_FAILED, o10.OFPFMFC_OVERLAP)  # fmt: skip


def test_an_error_carries_the_tenants_own_1_0_message() -> None:
    ad = of10.Of10Adapter(lambda: [], lambda: 1)
    original = wire10(p10.OFPFlowMod(DP10, p10.OFPMatch(), 0, o10.OFPFC_ADD, 0, 0, 1,
                                     0xFFFFFFFF, o10.OFPP_NONE, 0, []), xid=9)  # fmt: skip
    ad.inbound(o10.OFPT_FLOW_MOD, 9, original)
    err13 = codec.error_msg(4, 9, o13.OFPET_BAD_ACTION, o13.OFPBAC_BAD_OUT_PORT, b"1.3 bytes")
    out = ad.outbound(err13)
    assert out is not None and out[0] == 1 and out[1] == o10.OFPT_ERROR
    assert struct.unpack_from("!HH", out, 8) == (o10.OFPET_BAD_ACTION, o10.OFPBAC_BAD_OUT_PORT)
    assert out[12:] == original[:64]
