"""Regressions for what `make fuzz` (tenantvisor.bench.fuzz) found, one test per finding.

Each input is what a tenant's controller could send; before its fix each made the vswitch
raise an exception its catch-all turned into a generic EPERM (and logged as a failure)
instead of the OpenFlow answer the spec names.
"""

from __future__ import annotations

import struct

import pytest
from os_ken.ofproto import ofproto_v1_0 as o10
from os_ken.ofproto import ofproto_v1_0_parser as p10
from os_ken.ofproto import ofproto_v1_3 as o13
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.bench.fuzz.harness import Harness, Outcome, config
from tenantvisor.openflow import codec, of10, oxm
from tenantvisor.openflow.codec import OFError

DP10 = ProtocolDesc(o10.OFP_VERSION)


def _run(data: bytes) -> Outcome:
    """One input through a fresh harness: raises Finding for what the fuzzer reports."""
    h = Harness()
    try:
        return h.run(data)
    finally:
        h.close()


def _wire(msg: p10.MsgBase, xid: int = 7) -> bytes:
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def _icmp_flow_mod(tp_src: int, tp_dst: int) -> bytes:
    match = p10.OFPMatch(dl_type=0x0800, nw_proto=1, tp_src=tp_src, tp_dst=tp_dst)
    return _wire(p10.OFPFlowMod(DP10, match, 0, o10.OFPFC_ADD, actions=[
        p10.OFPActionOutput(2)]))  # fmt: skip


def test_an_openflow10_icmp_match_takes_type_and_code_from_the_low_bits_of_the_ports() -> None:
    # OpenFlow 1.0 (5.2.3): "ICMP type / code in the lower 8 bits" of tp_src / tp_dst
    fm = codec.FlowMod.parse(of10.flow_mod_to13(_icmp_flow_mod(0x0308, 0xFF01), 7))
    fields = {o.field: o.value for o in fm.match}
    assert fields[oxm.ICMPV4_TYPE] == b"\x08" and fields[oxm.ICMPV4_CODE] == b"\x01"
    # through a vswitch: installed, no failure logged
    assert _run(config(of10_controller=True) + _icmp_flow_mod(0x0308, 0xFF01)).errors == 0


def test_an_openflow10_flow_mod_with_an_unknown_command_is_bad_command() -> None:
    msg = bytearray(_icmp_flow_mod(0, 0))
    struct.pack_into("!H", msg, 56, 0x0100)  # the 16-bit command; OpenFlow 1.0 has 0..4
    with pytest.raises(OFError) as exc:
        of10.flow_mod_to13(bytes(msg), 7)
    assert (exc.value.type, exc.value.code) == (o13.OFPET_FLOW_MOD_FAILED, o13.OFPFMFC_BAD_COMMAND)
    out = _run(config(of10_controller=True) + bytes(msg))
    assert out.errors == 1 and not out.closed


def _packet_out13(*actions: bytes) -> bytes:
    acts = b"".join(actions)
    body = struct.pack("!IIH6x", o13.OFP_NO_BUFFER, o13.OFPP_CONTROLLER, len(acts)) + acts
    return codec.header(4, o13.OFPT_PACKET_OUT, 9, body + bytes(60))


@pytest.mark.parametrize(
    "action",
    [
        struct.pack("!HHH2x", o13.OFPAT_PUSH_MPLS, 8, 0x8847),
        codec.set_field(codec.Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.VLAN_PCP, b"\x03")),
    ],
    ids=["push_mpls", "set_vlan_pcp"],
)
def test_a_packet_out_an_openflow10_pswitch_cannot_do_is_bad_action(action: bytes) -> None:
    # a 1.3 controller on a vswitch over a 1.0 pswitch: refused as its FLOW_MODs are
    out = _run(config(network="of10") + _packet_out13(action, codec.output(1)))
    assert out.errors == 1 and out.physical == 0
    assert (0, o13.OFPT_ERROR, o13.OFPET_BAD_ACTION, o13.OFPBAC_BAD_TYPE) in out.signature


def _flow_mod13(*oxms: codec.Oxm) -> bytes:
    fm = codec.FlowMod(0, 0, 0, o13.OFPFC_ADD, 0, 0, 10, o13.OFP_NO_BUFFER, o13.OFPP_ANY,
                       o13.OFPG_ANY, 0, list(oxms),
                       codec.encode_instructions(apply_actions=codec.output(1)))  # fmt: skip
    return fm.encode(5)


_B = codec.OXM_CLASS_OPENFLOW_BASIC


@pytest.mark.parametrize(
    ("field", "error"),
    [
        (codec.Oxm(_B, oxm.IP_DSCP, b"\xff"), o13.OFPBMC_BAD_VALUE),  # DSCP is 6 bits
        (codec.Oxm(_B, oxm.TCP_DST, b"\0\0\0\x50"), o13.OFPBMC_BAD_LEN),
        (codec.Oxm(_B, oxm.ETH_TYPE, b"\x08\0", b"\xff\0"), o13.OFPBMC_BAD_MASK),
        (codec.Oxm(_B, oxm.IPV4_DST, b"\x0a\0\0\x01", b"\xff\0\xff\0"), o13.OFPBMC_BAD_MASK),
        (codec.Oxm(_B, oxm.IPV6_SRC, bytes(16)), o13.OFPBMC_BAD_FIELD),  # no 1.0 form
    ],
    ids=["dscp-above-63", "tcp-port-of-4-bytes", "masked-eth-type", "non-prefix-ipv4-mask",
         "ipv6-field"],
)  # fmt: skip
def test_a_match_an_openflow10_pswitch_cannot_hold_is_bad_match(
    field: codec.Oxm, error: int
) -> None:
    # 1.0's ofp_match has fixed-size fields and prefix masks on IPv4 addresses only: what
    # does not fit is refused (it used to raise struct.error, or be dropped or changed)
    eth = codec.Oxm(_B, oxm.ETH_TYPE, b"\x86\xdd" if field.field == oxm.IPV6_SRC else b"\x08\0")
    proto = codec.Oxm(_B, oxm.IP_PROTO, b"\x06")
    extra = (
        [eth, proto] if field.field == oxm.TCP_DST else [] if field.field == oxm.ETH_TYPE else [eth]
    )
    out = _run(config(network="of10") + _flow_mod13(*extra, field))
    assert (0, o13.OFPT_ERROR, o13.OFPET_BAD_MATCH, error) in out.signature
    assert out.physical == 0


def test_an_openflow10_action_of_the_wrong_length_is_bad_len() -> None:
    # set_dl_src is 16 bytes in 1.0; 8 used to become a 4-byte ETH_SRC and, on a 1.0
    # pswitch, a malformed action (a length of 16 over 14 bytes)
    short = struct.pack("!HHHH", o10.OFPAT_SET_DL_SRC, 8, 0xFFFD, 0xFFFF)
    msg = bytearray(_icmp_flow_mod(0, 0)[:72] + short)
    struct.pack_into("!H", msg, 2, len(msg))
    with pytest.raises(OFError) as exc:
        of10.flow_mod_to13(bytes(msg), 7)
    assert (exc.value.type, exc.value.code) == (o13.OFPET_BAD_ACTION, o13.OFPBAC_BAD_LEN)
    out = _run(config(of10_controller=True, network="of10") + bytes(msg))
    assert (0, o10.OFPT_ERROR, o10.OFPET_BAD_ACTION, o10.OFPBAC_BAD_LEN) in out.signature


def test_a_set_field_of_the_wrong_size_over_an_openflow10_pswitch_is_bad_set_len() -> None:
    bad = codec.set_field(codec.Oxm(_B, oxm.ETH_SRC, b"\x02\0\0\x01"))  # 4 bytes, not 6
    out = _run(config(network="of10") + _packet_out13(bad, codec.output(1)))
    assert (0, o13.OFPT_ERROR, o13.OFPET_BAD_ACTION, o13.OFPBAC_BAD_SET_LEN) in out.signature
    assert out.physical == 0


@pytest.mark.parametrize("dscp", [64, 255])
def test_a_dscp_an_openflow10_pswitch_cannot_set_is_bad_set_argument(dscp: int) -> None:
    """Found by `make fuzz` (1M run): a PACKET_OUT setting ip_dscp 64 over a 1.0 pswitch
    raised struct.error in the 1.0 encoder (DSCP << 2 past a byte).  DSCP is 6 bits:
    refused at the edge, as the spec says for a bad set_field value."""
    bad = codec.set_field(codec.Oxm(_B, oxm.IP_DSCP, bytes([dscp])))
    out = _run(config(network="of10") + _packet_out13(bad, codec.output(1)))
    assert (0, o13.OFPT_ERROR, o13.OFPET_BAD_ACTION, o13.OFPBAC_BAD_SET_ARGUMENT) in out.signature
    assert out.physical == 0
