"""The pswitch drivers (physical/driver*.py): what each one writes is what os-ken writes or
reads back, what each one reads is what os-ken reads, and a session runs the handshake,
statistics and barriers of either through the one interface."""

from __future__ import annotations

import re
import struct
from typing import Any

import pytest
from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_0 as o10
from os_ken.ofproto import ofproto_v1_0_parser as p10
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.openflow import codec, messages, of10, oxm
from tenantvisor.physical import session as session_module
from tenantvisor.physical.driver import Kind, SwitchDriver, TagEncoding
from tenantvisor.physical.driver_of10 import Of10Driver
from tenantvisor.physical.driver_ovs13 import Ovs13Driver
from tenantvisor.physical.session import PSwitchSession, driver_for
from tenantvisor.physical.topology import PPort
from tenantvisor.translate.flow import PhysFlow
from tests.unit.ofkit import DP, instruction_summary, osken_bytes, osken_parse

DP10 = ProtocolDesc(o10.OFP_VERSION)
MAC = bytes.fromhex("027600000003")

# a transit rule as the compiler makes it: in_port + fabric tag -> swap the tag, output
SWAP = PhysFlow(
    dpid=1, table=0, priority=300,
    match=codec.encode_match([codec.oxm_u32(oxm.IN_PORT, 2),
                              codec.oxm_u16(oxm.VLAN_VID, 0x1000 | 7)]),
    instructions=codec.encode_instructions(apply_actions=(
        codec.set_field(codec.oxm_u16(oxm.VLAN_VID, 0x1000 | 9)) + codec.output(3))),
    cookie=0x0001_8000_0000_0005, idle_timeout=0, hard_timeout=0,
)  # fmt: skip


def osken_parse10(buf: bytes) -> Any:
    version, msg_type, msg_len, xid = ofproto_parser.header(buf)
    assert (version, msg_len) == (o10.OFP_VERSION, len(buf))
    msg = ofproto_parser.msg(DP10, version, msg_type, msg_len, xid, buf)
    assert msg is not None, f"os-ken does not parse OpenFlow 1.0 message type {msg_type}"
    return msg


def osken10(msg: Any, xid: int) -> bytes:
    """An os-ken message (either version) serialized with `xid`."""
    msg.set_xid(xid)
    return osken_bytes(msg)


osken13 = osken10


# --- the interface -------------------------------------------------------------------------
def test_each_version_gets_its_driver_with_its_capabilities() -> None:
    ovs, old = driver_for(ofp.OFP_VERSION), driver_for(o10.OFP_VERSION)
    assert isinstance(ovs, Ovs13Driver) and isinstance(old, Of10Driver)
    assert driver_for(4) is not ovs  # one per session: n_tables is the switch's
    caps = ("multi_table", "supports_groups", "supports_meters", "can_rewrite_in_port",
            "can_reconcile", "can_delete_by_cookie", "packet_in_names_rule")  # fmt: skip
    assert all(getattr(ovs, c) for c in caps)
    assert not any(getattr(old, c) for c in caps)
    assert TagEncoding.QINQ in ovs.tag_encodings
    assert old.tag_encodings == {TagEncoding.VLAN}
    assert old.n_tables == 1  # a 1.0 FLOW_MOD names no table, whatever the switch has


@pytest.mark.parametrize("driver", [Ovs13Driver(), Of10Driver()], ids=["ovs13", "of10"])
def test_every_message_a_session_acts_on_has_a_kind(driver: SwitchDriver) -> None:
    o = o10 if driver.version == o10.OFP_VERSION else ofp
    stats = o10.OFPT_STATS_REPLY if o is o10 else ofp.OFPT_MULTIPART_REPLY
    assert {driver.kind(t) for t in (o.OFPT_FEATURES_REPLY, o.OFPT_PORT_STATUS,
            o.OFPT_PACKET_IN, o.OFPT_FLOW_REMOVED, stats, o.OFPT_BARRIER_REPLY,
            o.OFPT_ERROR)} == set(Kind)  # fmt: skip
    assert driver.kind(o.OFPT_ECHO_REQUEST) is None  # the channel answers those


# --- OVS, OpenFlow 1.3: controller -> switch ------------------------------------------------
def test_ovs13_rules_are_flow_mods_os_ken_reads_back() -> None:
    d = Ovs13Driver()
    for command in (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY_STRICT):
        fm = osken_parse(d.rule(SWAP, command)(7))
        assert (fm.xid, fm.command, fm.table_id, fm.priority, fm.cookie) == (
            7, command, 0, 300, SWAP.cookie,
        )  # fmt: skip
        assert dict(fm.match.items()) == {"in_port": 2, "vlan_vid": 0x1007}
        assert instruction_summary(fm.instructions) == {
            "apply": [("set_field", "vlan_vid", 0x1009), ("output", 3)]
        }
        assert d.rule(SWAP, command)(7) == d.flow_mod(7, SWAP, command)
    dl = osken_parse(d.rule(SWAP, ofp.OFPFC_DELETE_STRICT)(8))
    assert (dl.command, dl.priority, dl.instructions, dl.out_port, dl.out_group) == (
        ofp.OFPFC_DELETE_STRICT, 300, [], ofp.OFPP_ANY, ofp.OFPG_ANY,
    )  # fmt: skip
    assert dict(dl.match.items()) == {"in_port": 2, "vlan_vid": 0x1007}


def test_ovs13_deletes_by_cookie_in_one_flow_mod_byte_identical_to_os_ken() -> None:
    theirs = parser.OFPFlowMod(
        DP, 0x1234 << 48, 0xFFFF << 48, ofp.OFPTT_ALL, ofp.OFPFC_DELETE, 0, 0, 0,
        ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, parser.OFPMatch(), [],
    )  # fmt: skip
    assert Ovs13Driver().delete_cookie(5, 0x1234 << 48, 0xFFFF << 48) == osken13(theirs, 5)


def test_ovs13_requests_are_byte_identical_to_os_ken() -> None:
    d = Ovs13Driver()
    assert d.features_request(3) == osken13(parser.OFPFeaturesRequest(DP), 3)
    assert d.set_config(3) == osken13(parser.OFPSetConfig(DP, 0, 0xFFFF), 3)
    # OpenFlow 1.3's default masks, plus PACKET_INs of expiring TTLs (tenants may ask)
    assert d.async_config(3) == osken13(parser.OFPSetAsync(DP, [0b111, 0], [0b111, 0b111],
                                                           [0b1111, 0]), 3)  # fmt: skip
    assert d.barrier_request(3) == osken13(parser.OFPBarrierRequest(DP), 3)
    assert d.port_desc_request(3) == osken13(parser.OFPPortDescStatsRequest(DP, 0), 3)
    flows = parser.OFPFlowStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                       1 << 48, 0xFFFF << 48, parser.OFPMatch())  # fmt: skip
    body = messages.flow_stats_request(cookie=1 << 48, cookie_mask=0xFFFF << 48)
    assert d.stats_request(3, ofp.OFPMP_FLOW, body) == osken13(flows, 3)
    groups = parser.OFPGroupDescStatsRequest(DP, 0)
    assert d.stats_request(3, ofp.OFPMP_GROUP_DESC, b"") == osken13(groups, 3)


def test_ovs13_probe_is_a_controller_packet_out_byte_identical_to_os_ken() -> None:
    frame = bytes(range(60))
    theirs = parser.OFPPacketOut(DP, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                                 [parser.OFPActionOutput(4, 0)], frame)  # fmt: skip
    d = Ovs13Driver()
    wire = osken13(theirs, 9)
    assert d.packet_out(9, 4, frame) == wire
    assert d.packet_out13(wire) == wire  # taken as it is


# --- OVS, OpenFlow 1.3: switch -> controller ------------------------------------------------
def _port13(no: int, name: bytes, state: int = 0, config: int = 0) -> bytes:
    return messages.PORT.pack(no, MAC, name, config, state, 0, 0, 0, 0, 10_000_000, 20_000_000)


def test_ovs13_reads_features_and_ports_as_os_ken_does() -> None:
    d = Ovs13Driver()
    msg = codec.header(4, ofp.OFPT_FEATURES_REPLY, 1,
                       messages.SWITCH_FEATURES.pack(0xABC, 0, 254, 0, 0x4F, 0))  # fmt: skip
    theirs = osken_parse(msg)
    f = d.features(msg)
    assert (f.dpid, f.n_tables, f.ports) == (theirs.datapath_id, theirs.n_tables, None) == (
        0xABC, 254, None,
    )  # fmt: skip
    assert d.n_tables == 254
    body = _port13(1, b"s1-eth1") + _port13(2, b"s1-eth2", state=ofp.OFPPS_LINK_DOWN)
    reply = messages.multipart_reply(4, 2, ofp.OFPMP_PORT_DESC, body)
    ours = d.port_desc(d.stats_reply(reply).body)
    assert [(p.port_no, p.hw_addr, p.name.encode()) for p in ours] == [
        (p.port_no, p.hw_addr, p.name) for p in osken_parse(reply).body
    ]
    assert ours == [
        PPort(1, "s1-eth1", "02:76:00:00:00:03", True, 10_000_000, 20_000_000),
        PPort(2, "s1-eth2", "02:76:00:00:00:03", False, 10_000_000, 20_000_000),
    ]


def test_ovs13_reads_port_status_as_os_ken_does() -> None:
    msg = codec.header(4, ofp.OFPT_PORT_STATUS, 0, messages.port_status(
        ofp.OFPPR_MODIFY, _port13(3, b"vport3", config=ofp.OFPPC_PORT_DOWN)))  # fmt: skip
    theirs = osken_parse(msg)
    reason, port = Ovs13Driver().port_status(msg)
    assert (reason, port.port_no, port.hw_addr, port.up) == (
        theirs.reason, theirs.desc.port_no, theirs.desc.hw_addr, False,
    )  # fmt: skip
    with pytest.raises(codec.MalformedMessage):
        Ovs13Driver().port_status(msg[:40])


def test_ovs13_reads_packet_in_flow_removed_stats_and_errors() -> None:
    d = Ovs13Driver()
    match = [codec.oxm_u32(oxm.IN_PORT, 2), codec.oxm_u64(oxm.METADATA, 5 << 44)]
    pi = codec.PacketIn(ofp.OFP_NO_BUFFER, 64, ofp.OFPR_ACTION, 1, 0xC0FFEE, match, bytes(64))
    msg = pi.encode(4)
    theirs = osken_parse(msg)
    ours = d.packet_in(msg)
    assert ours == pi
    assert (theirs.cookie, theirs.match["in_port"], theirs.data) == (0xC0FFEE, 2, bytes(64))
    fr = codec.FlowRemoved(7, 100, ofp.OFPRR_IDLE_TIMEOUT, 2, 3, 4, 10, 0, 5, 6, match)
    assert d.flow_removed(fr.encode(1)) == fr
    entry = messages.flow_stats_entry(1, (2, 3), 100, 0, 0, 0, 7, 5, 6,
                                      codec.encode_match(match), b"")  # fmt: skip
    reply = d.stats_reply(messages.multipart_reply(4, 1, ofp.OFPMP_FLOW, entry, more=True))
    assert (reply.mtype, reply.more, reply.body) == (ofp.OFPMP_FLOW, True, entry)
    err = codec.error_msg(4, 1, ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, b"abc")
    e = osken_parse(err)
    assert d.error(err) == (e.type, e.code, e.data) == (5, 1, b"abc")


# --- OpenFlow 1.0: controller -> switch -----------------------------------------------------
def test_of10_rules_are_one_table_flow_mods_os_ken_reads_back() -> None:
    d = Of10Driver()
    fm = osken_parse10(d.rule(SWAP, ofp.OFPFC_ADD)(7))
    assert (fm.xid, fm.command, fm.priority, fm.cookie, fm.out_port, fm.flags) == (
        7, o10.OFPFC_ADD, 300, SWAP.cookie, o10.OFPP_NONE, 0,
    )  # fmt: skip
    wild = o10.OFPFW_ALL & ~(o10.OFPFW_IN_PORT | o10.OFPFW_DL_VLAN)
    assert (fm.match.wildcards, fm.match.in_port, fm.match.dl_vlan) == (wild, 2, 7)
    acts = [(type(a), getattr(a, "vlan_vid", getattr(a, "port", None))) for a in fm.actions]
    assert acts == [(p10.OFPActionVlanVid, 9), (p10.OFPActionOutput, 3)]
    theirs = p10.OFPFlowMod(DP10, fm.match, SWAP.cookie, o10.OFPFC_ADD, 0, 0, 300,
                            o10.OFP_NO_BUFFER, o10.OFPP_NONE, 0,
                            [p10.OFPActionVlanVid(9), p10.OFPActionOutput(3, 0)])  # fmt: skip
    assert d.rule(SWAP, ofp.OFPFC_ADD)(7) == osken10(theirs, 7)
    dl = osken_parse10(d.rule(SWAP, ofp.OFPFC_DELETE_STRICT)(8))
    assert (dl.command, dl.priority, dl.actions, dl.match.in_port) == (
        o10.OFPFC_DELETE_STRICT, 300, [], 2,
    )  # fmt: skip


def test_of10_rules_needing_a_second_table_are_a_programming_error() -> None:
    goto = PhysFlow(1, 0, 5, codec.encode_match([]), codec.encode_instructions(goto_table=1), 0)
    with pytest.raises(ValueError):
        Of10Driver().rule(goto, ofp.OFPFC_ADD)(1)


def test_of10_requests_are_byte_identical_to_os_ken() -> None:
    d = Of10Driver()
    assert d.features_request(3) == osken10(p10.OFPFeaturesRequest(DP10), 3)
    assert d.set_config(3) == osken10(p10.OFPSetConfig(DP10, 0, 0xFFFF), 3)
    assert d.barrier_request(3) == osken10(p10.OFPBarrierRequest(DP10), 3)
    flows = p10.OFPFlowStatsRequest(DP10, 0, p10.OFPMatch(), 0xFF, o10.OFPP_NONE)
    # every rule of the one table, whatever the 1.3 request selected
    assert d.stats_request(3, ofp.OFPMP_FLOW, messages.flow_stats_request(cookie=9)) == (
        osken10(flows, 3)
    )


def test_of10_has_no_port_description_cookie_delete_or_other_statistics() -> None:
    d = Of10Driver()
    assert d.port_desc_request(1) is None
    assert d.delete_cookie(1, 1 << 48, 0xFFFF << 48) is None
    for mtype in (ofp.OFPMP_GROUP_DESC, ofp.OFPMP_METER_CONFIG, ofp.OFPMP_PORT_STATS):
        assert d.stats_request(1, mtype, b"") is None


def test_of10_packet_outs_are_byte_identical_to_os_ken() -> None:
    frame = bytes(range(60))
    d = Of10Driver()
    probe = p10.OFPPacketOut(DP10, o10.OFP_NO_BUFFER, o10.OFPP_NONE,
                             [p10.OFPActionOutput(4, 0)], frame)  # fmt: skip
    assert d.packet_out(9, 4, frame) == osken10(probe, 9)
    # a tenant's PACKET_OUT as translation builds it (1.3): in_port and a tag swap kept
    out13 = codec.packet_out(
        9, 2, codec.set_field(codec.oxm_u16(oxm.VLAN_VID, 0x1000 | 9)) + codec.output(3), frame
    )
    actions = [p10.OFPActionVlanVid(9), p10.OFPActionOutput(3, 0)]
    theirs = p10.OFPPacketOut(DP10, o10.OFP_NO_BUFFER, 2, actions, frame)
    assert d.packet_out13(out13) == osken10(theirs, 9)


# --- OpenFlow 1.0: switch -> controller -----------------------------------------------------
def _phy_port(no: int, name: bytes, config: int = 0, state: int = 0) -> bytes:
    return of10.PHY_PORT.pack(no, MAC, name, config, state, 0, 0, 0, 0)


def test_of10_reads_features_with_their_ports_as_os_ken_does() -> None:
    ports = (_phy_port(1, b"sp2-eth1") + _phy_port(2, b"sp2-eth2", state=o10.OFPPS_LINK_DOWN)
             + _phy_port(o10.OFPP_LOCAL, b"sp2"))  # fmt: skip
    fixed = of10.SWITCH_FEATURES10.pack(0xABC, 256, 255, 0xC7, 0xFFF)
    msg = codec.header(1, o10.OFPT_FEATURES_REPLY, 1, fixed + ports)
    theirs = osken_parse10(msg)
    d = Of10Driver()
    f = d.features(msg)
    assert (f.dpid, f.n_tables) == (theirs.datapath_id, theirs.n_tables) == (0xABC, 255)
    assert d.n_tables == 1
    assert sorted(theirs.ports) == [1, 2, o10.OFPP_LOCAL]
    assert f.ports == [  # LOCAL is not a port of the fabric
        PPort(1, "sp2-eth1", "02:76:00:00:00:03", True),
        PPort(2, "sp2-eth2", "02:76:00:00:00:03", False),
    ]
    assert [p.hw_addr for p in f.ports] == [theirs.ports[1].hw_addr, theirs.ports[2].hw_addr]


def test_of10_reads_port_status_as_os_ken_does() -> None:
    body = of10.PORT_STATUS10.pack(o10.OFPPR_ADD) + _phy_port(
        7, b"sp2-eth7", config=o10.OFPPC_PORT_DOWN
    )
    msg = codec.header(1, o10.OFPT_PORT_STATUS, 0, body)
    theirs = osken_parse10(msg)
    reason, port = Of10Driver().port_status(msg)
    assert (reason, port.port_no, port.name, port.up) == (
        theirs.reason, theirs.desc.port_no, theirs.desc.name.decode(), False,
    )  # fmt: skip
    with pytest.raises(codec.MalformedMessage):
        Of10Driver().port_status(msg[:60])


def test_of10_packet_in_gets_the_1_3_shape_with_its_in_port() -> None:
    frame = b"\x01\x80\xc2\x00\x00\x0e" + bytes(54)
    fixed = of10.PACKET_IN10.pack(o10.OFP_NO_BUFFER, 64, 5, o10.OFPR_ACTION)
    msg = codec.header(1, o10.OFPT_PACKET_IN, 0, fixed + frame)
    theirs = osken_parse10(msg)
    pi = Of10Driver().packet_in(msg)
    assert (pi.total_len, pi.reason, pi.data) == (theirs.total_len, theirs.reason, theirs.data)
    assert [(o.field, codec.oxm_int(o)) for o in pi.match] == [(oxm.IN_PORT, theirs.in_port)]
    assert (pi.cookie, pi.table_id) == (0, 0)  # a 1.0 switch names no rule
    local = msg[:14] + struct.pack("!H", o10.OFPP_LOCAL) + msg[16:]
    assert codec.oxm_int(Of10Driver().packet_in(local).match[0]) == ofp.OFPP_LOCAL
    with pytest.raises(codec.MalformedMessage):
        Of10Driver().packet_in(msg[:17])


def test_of10_flow_removed_gets_the_1_3_shape() -> None:
    wild = o10.OFPFW_ALL & ~o10.OFPFW_IN_PORT
    match = of10.MATCH.pack(wild, 3, bytes(6), bytes(6), 0, 0, 0, 0, 0, 0, 0, 0, 0)
    body = match + of10.FLOW_REMOVED10.pack(7, 100, o10.OFPRR_IDLE_TIMEOUT, 2, 3, 10, 5, 6)
    msg = codec.header(1, o10.OFPT_FLOW_REMOVED, 0, body)
    theirs = osken_parse10(msg)
    fr = Of10Driver().flow_removed(msg)
    assert (fr.cookie, fr.priority, fr.reason, fr.packet_count, fr.byte_count) == (
        theirs.cookie, theirs.priority, theirs.reason, theirs.packet_count, theirs.byte_count,
    )  # fmt: skip
    assert (fr.duration_sec, fr.duration_nsec, fr.idle_timeout) == (2, 3, 10)
    assert [(o.field, codec.oxm_int(o)) for o in fr.match] == [(oxm.IN_PORT, 3)]


def test_of10_flow_statistics_come_back_in_the_1_3_shape() -> None:
    match = of10.match_to10([codec.oxm_u32(oxm.IN_PORT, 2)])
    tail = struct.pack("!IIHHH6xQQQ", 2, 3, 300, 0, 0, 0xC0FFEE, 5, 6)
    acts = struct.pack("!HHHH", o10.OFPAT_OUTPUT, 8, 3, 0)
    entry = struct.pack("!HBx", 4 + len(match) + len(tail) + len(acts), 0) + match + tail + acts
    head = of10.STATS_HEADER10.pack(o10.OFPST_FLOW, o10.OFPSF_REPLY_MORE)
    msg = codec.header(1, o10.OFPT_STATS_REPLY, 4, head + entry * 2)
    (theirs, _) = osken_parse10(msg).body
    assert (theirs.cookie, theirs.priority, theirs.packet_count) == (0xC0FFEE, 300, 5)
    reply = Of10Driver().stats_reply(msg)
    assert (reply.mtype, reply.more) == (ofp.OFPMP_FLOW, True)
    stats = osken_parse(messages.multipart_reply(4, 4, ofp.OFPMP_FLOW, reply.body)).body
    rows = [(s.cookie, s.priority, s.packet_count, s.byte_count, s.duration_sec) for s in stats]
    assert rows == [(0xC0FFEE, 300, 5, 6, 2)] * 2
    # the match is left out: a 1.0 match is not comparable with ours
    assert all(not s.match.items() for s in stats)


def test_of10_layouts_are_os_kens_pack_strings() -> None:
    def canonical(fmt: str) -> list[str]:
        out: list[str] = []
        for count, code in re.findall(r"(\d*)([a-zA-Z?])", fmt.lstrip("!")):
            out += [f"{count}s"] if code == "s" else [code] * int(count or 1)
        return out

    match = o10._OFP_MATCH_PACK_STR
    for ours, theirs in [
        (of10.PHY_PORT, o10.OFP_PHY_PORT_PACK_STR),
        (of10.SWITCH_FEATURES10, o10.OFP_SWITCH_FEATURES_PACK_STR),
        (of10.PACKET_IN10, o10.OFP_PACKET_IN_PACK_STR),
        (of10.PACKET_OUT10, o10.OFP_PACKET_OUT_PACK_STR),
        (of10.PORT_STATUS10, o10.OFP_PORT_STATUS_PACK_STR.removesuffix(o10._OFP_PHY_PORT_PACK_STR)),
        (of10.FLOW_MOD10, "!" + o10.OFP_FLOW_MOD_PACK_STR.removeprefix("!" + match)),
        (of10.FLOW_REMOVED10, "!" + o10.OFP_FLOW_REMOVED_PACK_STR.removeprefix("!" + match)),
    ]:
        assert canonical(ours.format) == canonical(theirs), ours.format
        assert ours.size == struct.calcsize(theirs)


# --- a session over either driver -----------------------------------------------------------
class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def switch_ready(self, s: PSwitchSession) -> None:
        self.seen.append(("ready", s.dpid))

    def switch_gone(self, s: PSwitchSession) -> None:
        self.seen.append(("gone", s.dpid))

    def port_status(self, s: PSwitchSession, port: PPort, reason: int) -> None:
        self.seen.append(("port", (port.port_no, reason)))

    def packet_in(self, s: PSwitchSession, pi: codec.PacketIn) -> None:
        self.seen.append(("packet_in", pi))

    def flow_removed(self, s: PSwitchSession, fr: codec.FlowRemoved) -> None:
        self.seen.append(("flow_removed", fr))

    def demoted(self, s: PSwitchSession) -> None:
        self.seen.append(("demoted", s.dpid))


def _session(version: int) -> tuple[PSwitchSession, Events, list[bytes]]:
    events = Events()
    s = PSwitchSession(events)
    sent: list[bytes] = []
    ch = s.channel
    ch.send = sent.append  # type: ignore[method-assign]
    ch.transport = object()  # type: ignore[assignment]
    ch.version = version
    s.channel_ready(ch)
    return s, events, sent


def _deliver(s: PSwitchSession, msg: bytes) -> None:
    s.channel_message(s.channel, msg[1], codec.u32(msg, 4), msg)


def test_a_session_over_ovs13_asks_for_ports_then_is_ready() -> None:
    s, events, sent = _session(4)
    assert isinstance(s.driver, Ovs13Driver) and not s.is_of10
    assert [m[1] for m in sent] == [ofp.OFPT_FEATURES_REQUEST]
    _deliver(s, codec.header(4, ofp.OFPT_FEATURES_REPLY, 1,
                             messages.SWITCH_FEATURES.pack(5, 0, 254, 0, 0, 0)))  # fmt: skip
    assert [m[1] for m in sent[1:]] == [
        ofp.OFPT_SET_CONFIG, ofp.OFPT_SET_ASYNC, ofp.OFPT_MULTIPART_REQUEST,
    ]  # fmt: skip
    assert not s.ready
    part = _port13(1, b"a") + _port13(ofp.OFPP_LOCAL, b"br")
    _deliver(s, messages.multipart_reply(4, 2, ofp.OFPMP_PORT_DESC, part, more=True))
    _deliver(s, messages.multipart_reply(4, 2, ofp.OFPMP_PORT_DESC, _port13(2, b"b")))
    assert s.ready and sorted(s.ports) == [1, 2] and s.n_tables == 254
    assert events.seen == [("ready", 5)]


def test_a_session_over_of10_is_ready_from_the_features_reply() -> None:
    s, events, sent = _session(1)
    assert isinstance(s.driver, Of10Driver) and s.is_of10
    body = of10.SWITCH_FEATURES10.pack(6, 0, 255, 0, 0) + _phy_port(1, b"a")
    _deliver(s, codec.header(1, o10.OFPT_FEATURES_REPLY, 1, body))
    assert [(m[0], m[1]) for m in sent] == [
        (1, o10.OFPT_FEATURES_REQUEST),
        (1, o10.OFPT_SET_CONFIG),
    ]
    assert s.ready and list(s.ports) == [1] and events.seen == [("ready", 6)]
    gone = of10.PORT_STATUS10.pack(o10.OFPPR_DELETE) + _phy_port(1, b"a")
    _deliver(s, codec.header(1, o10.OFPT_PORT_STATUS, 0, gone))
    assert s.ports == {} and events.seen[-1] == ("port", (1, ofp.OFPPR_DELETE))


@pytest.mark.parametrize("version", [1, 4])
def test_statistics_barriers_and_errors_through_either_driver(version: int) -> None:
    s, _, sent = _session(version)
    s.ready = True
    got: list[Any] = []
    s.multipart(ofp.OFPMP_GROUP_DESC, b"", got.append)
    assert got == ([None] if version == 1 else [])  # 1.0: flow statistics only
    del got[:]
    s.multipart(ofp.OFPMP_FLOW, messages.flow_stats_request(), got.append)
    xid = codec.u32(sent[-1], 4)
    if version == 1:
        reply = codec.header(1, o10.OFPT_STATS_REPLY, xid, of10.STATS_HEADER10.pack(1, 0))
    else:
        reply = messages.multipart_reply(4, xid, ofp.OFPMP_FLOW, b"")
    _deliver(s, reply)
    assert got == [[b""]]
    done: list[bool] = []
    s.barrier(lambda: done.append(True))
    assert sent[-1][1] == (o10.OFPT_BARRIER_REQUEST if version == 1 else ofp.OFPT_BARRIER_REQUEST)
    errors: list[tuple[int, int, bytes]] = []
    s.send_flow(s.rule(SWAP, ofp.OFPFC_ADD), lambda *e: errors.append(e))
    flow_xid = codec.u32(sent[-1], 4)
    _deliver(s, codec.error_msg(version, flow_xid, 5, 1, sent[-1][:16]))
    assert errors == [(5, 1, sent[-1][:16])]
    _deliver(s, codec.header(version, sent[-2][1] + 1, codec.u32(sent[-2], 4)))  # reply
    assert done == [True]


def test_a_malformed_message_from_a_pswitch_is_dropped_not_the_channel() -> None:
    s, events, _ = _session(1)
    _deliver(s, codec.header(1, o10.OFPT_PACKET_IN, 0, b"\0" * 4))
    _deliver(s, codec.header(1, o10.OFPT_ERROR, 0, b""))
    assert events.seen == [] and s.channel.is_open


@pytest.mark.parametrize("how", ["send_flow", "send"])
def test_error_records_stay_bounded_when_no_barrier_comes(
    how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "MAX_RECORDS", 64)
    s, _, sent = _session(4)
    s.ready = True
    done: list[bool] = []
    s.barrier(lambda: done.append(True))  # still waited for: kept
    barrier = sent[-1]
    stats: list[Any] = []
    s.multipart(ofp.OFPMP_FLOW, messages.flow_stats_request(), stats.append)  # kept too
    request = sent[-1]
    errors: list[tuple[int, int, bytes]] = []
    for _ in range(1000):  # a tenant that never sends a BARRIER
        if how == "send_flow":
            s.send_flow(s.rule(SWAP, ofp.OFPFC_ADD), lambda *e: errors.append(e))
        else:
            s.send(codec.header(4, ofp.OFPT_GROUP_MOD, 0, b""), lambda *e: errors.append(e))
    assert len(s._records) <= 64 + 1
    _deliver(s, codec.error_msg(4, codec.u32(sent[-1], 4), 5, 1, b""))
    assert errors == [(5, 1, b"")]  # the latest ones are still mapped back
    _deliver(s, codec.error_msg(4, codec.u32(request, 4), 1, 2, b""))
    assert stats == [None]
    _deliver(s, codec.header(4, ofp.OFPT_BARRIER_REPLY, codec.u32(barrier, 4)))
    assert done == [True]
