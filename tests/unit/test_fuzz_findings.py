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
