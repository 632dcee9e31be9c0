"""Tenant FLOW_MOD / PACKET_OUT -> physical rules, checked through os-ken on both sides.

Tenant messages are built with os-ken, parsed with our codec and translated; the physical
FLOW_MOD (`PhysFlow.flow_mod`) is parsed back with os-ken and compared whole: table t+1,
priority, cookie layout, the tenant's match fields untouched plus the vswitch metadata bits,
and the rewritten instructions.

Table 0 keeps the physical in_port: in the tenant tables it is the physical port of the
ingress vport (CONTROLLER for packets the controller injected without one), and OVS drops
output to it by itself.  So output to a vport is its physical port, except: output to the
pinned ingress vport is left out, output to another vport on the ingress vport's physical port
(a shared port: several vlinks over one uplink) is OFPP_IN_PORT, and a rule that does not pin
in_port but outputs to a shared port is expanded per ingress, like FLOOD / ALL / IN_PORT.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto import ofproto_v1_4 as ofp_v14

from tenantvisor.mapping import layout
from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.codec import FlowMod, OFError, PacketOut
from tenantvisor.translate import infra
from tenantvisor.translate.flow import PhysFlow, translate_flow, translate_packet_out
from tenantvisor.translate.view import PortMap, VSwitchView
from tests.unit.ofkit import (
    DP,
    action_summary,
    apply,
    instruction_summary,
    instruction_types,
    osken_actions,
    osken_bytes,
    osken_flow_mod,
    osken_parse,
    write,
)

NET = 3
INDEX = 5
SERIAL = 42
DPID = 0x2
VIEW = VSwitchView(
    net_id=NET,
    index=INDEX,
    vdpid=(NET << 48) | 1,
    dpid=DPID,
    n_tables=4,
    ports={
        1: PortMap(1, 11),  # edge
        2: PortMap(2, 12),  # edge
        3: PortMap(3, 13, link_tag=7, is_link=True),
        4: PortMap(4, 14, link_tag=9, is_link=True),
        5: PortMap(5, 15, link_tag=None, is_link=True, up=False),  # vlink without a path
    },
)
Out = parser.OFPActionOutput

# Two vlinks over one uplink (vports 2 and 3 on physical port 13) between two edge vports.
SHARED = VSwitchView(
    net_id=NET,
    index=INDEX,
    vdpid=VIEW.vdpid,
    dpid=DPID,
    n_tables=4,
    ports={
        1: PortMap(1, 11),
        2: PortMap(2, 13, link_tag=7, is_link=True),
        3: PortMap(3, 13, link_tag=8, is_link=True),
        4: PortMap(4, 12),
    },
)


def link_out(phys_port: int, tag: int) -> list[tuple[Any, ...]]:
    """What output to a link vport becomes in apply_actions."""
    return [
        ("push_vlan", layout.FABRIC_TPID),
        ("set_field", "vlan_vid", tag | oxm.VLAN_PRESENT),
        ("output", phys_port),
        ("pop_vlan",),
    ]


def via_in_port(actions: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The same port actions sent back out of the physical port the packet came in on."""
    return [("output", ofp.OFPP_IN_PORT) if a[0] == "output" else a for a in actions]


# Output to each vport of VIEW from a packet that did not come in on its physical port.
PORT_ACTIONS: dict[int, list[tuple[Any, ...]]] = {
    1: [("output", 11)],
    2: [("output", 12)],
    3: link_out(13, 7),
    4: link_out(14, 9),
    5: [],  # down: sends nothing, like a real switch
}
SHARED_ACTIONS: dict[int, list[tuple[Any, ...]]] = {
    1: [("output", 11)],
    2: link_out(13, 7),
    3: link_out(13, 8),
    4: [("output", 12)],
}


def meta(vport: int | None = None) -> tuple[int, int]:
    """(value, mask) of the physical metadata match for this vswitch (and ingress vport)."""
    if vport is None:
        return INDEX << layout.VSWITCH_SHIFT, layout.VSWITCH_MASK
    return (
        (INDEX << layout.VSWITCH_SHIFT) | (vport << layout.VPORT_SHIFT),
        layout.VSWITCH_MASK | layout.VPORT_MASK,
    )


def phys_flows(buf: bytes, view: VSwitchView = VIEW) -> list[PhysFlow]:
    fm = FlowMod.parse(buf)
    tf = translate_flow(view, fm.table_id, fm.match, fm.instructions)
    cookie = layout.tenant_cookie(view.net_id, SERIAL)
    return [
        PhysFlow(view.dpid, tf.table, fm.priority, m, i, cookie, fm.idle_timeout, fm.hard_timeout)
        for m, i in tf.flows
    ]


def physical(buf: bytes, view: VSwitchView = VIEW) -> list[Any]:
    """Translate a tenant FLOW_MOD and parse every physical FLOW_MOD back with os-ken."""
    return [osken_parse(pf.flow_mod(0x77)) for pf in phys_flows(buf, view)]


def refusal(buf: bytes, view: VSwitchView = VIEW) -> tuple[int, int]:
    fm = FlowMod.parse(buf)
    with pytest.raises(OFError) as err:
        translate_flow(view, fm.table_id, fm.match, fm.instructions)
    return err.value.type, err.value.code


def by_ingress(rules: list[Any]) -> dict[int, Any]:
    """Physical rules keyed by the ingress vport their metadata pins."""
    out = {}
    for r in rules:
        value, mask = r.match["metadata"]
        assert mask == layout.VSWITCH_MASK | layout.VPORT_MASK
        assert value >> layout.VSWITCH_SHIFT == INDEX
        out[(value & layout.VPORT_MASK) >> layout.VPORT_SHIFT] = r
    assert len(out) == len(rules)
    return out


# --- the physical rule as a whole -------------------------------------------------------------
def test_tenant_rule_becomes_one_rule_in_table_t_plus_1_matching_its_vswitch_and_vport() -> None:
    match = parser.OFPMatch(
        in_port=1,
        eth_type=0x0800,
        ipv4_src=("10.0.0.0", "255.255.255.0"),
        ip_proto=6,
        tcp_dst=80,
    )
    buf = osken_flow_mod(
        match,
        [apply(Out(2))],
        table_id=1,
        priority=100,
        cookie=0xABC,
        idle_timeout=10,
        hard_timeout=20,
    )
    [rule] = physical(buf)
    assert rule.table_id == 2
    assert rule.command == ofp.OFPFC_ADD
    assert rule.priority == 100
    assert (rule.idle_timeout, rule.hard_timeout) == (10, 20)
    assert (rule.buffer_id, rule.out_port, rule.out_group) == (
        ofp.OFP_NO_BUFFER,
        ofp.OFPP_ANY,
        ofp.OFPG_ANY,
    )
    assert rule.cookie >> layout.NET_SHIFT == NET
    assert not rule.cookie & layout.INFRA_BIT
    assert rule.cookie & layout.SERIAL_MASK == SERIAL
    assert dict(rule.match.items()) == {
        "eth_type": 0x0800,
        "ipv4_src": ("10.0.0.0", "255.255.255.0"),
        "ip_proto": 6,
        "tcp_dst": 80,
        "metadata": meta(1),
    }
    assert instruction_summary(rule.instructions) == {"apply": [("output", 12)]}


def test_tenant_match_fields_are_kept_byte_for_byte_and_in_order() -> None:
    match = parser.OFPMatch(
        in_port=2, eth_dst=("02:00:00:00:00:00", "ff:ff:ff:00:00:00"), eth_type=0x86DD
    )
    buf = osken_flow_mod(match, [apply(Out(1))])
    tenant = [o for o in FlowMod.parse(buf).match if o.field != oxm.IN_PORT]
    [pf] = phys_flows(buf)
    phys, _ = codec.parse_match(pf.match, 0)
    assert phys[:-1] == tenant
    assert phys[-1] == codec.oxm_u64(oxm.METADATA, *meta(2))


def test_rule_without_in_port_matches_only_the_vswitch_bits() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(eth_type=0x0806), [apply(Out(1))]))
    assert dict(rule.match.items()) == {"eth_type": 0x0806, "metadata": meta()}


def test_in_port_controller_pins_the_injected_vport_bits() -> None:
    buf = osken_flow_mod(parser.OFPMatch(in_port=ofp.OFPP_CONTROLLER), [apply(Out(1))])
    [rule] = physical(buf)
    assert rule.match["metadata"] == meta(0)


def test_tenant_metadata_match_keeps_its_low_bits_under_the_vswitch_bits() -> None:
    buf = osken_flow_mod(parser.OFPMatch(in_port=3, metadata=(0xA5, 0xFF)), [apply(Out(1))])
    [rule] = physical(buf)
    value, mask = meta(3)
    assert rule.match["metadata"] == (value | 0xA5, mask | 0xFF)


def test_exact_tenant_metadata_becomes_an_exact_match_on_the_low_32_bits() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(metadata=0x1234), [apply(Out(1))]))
    value, mask = meta()
    assert rule.match["metadata"] == (value | 0x1234, mask | layout.TENANT_META_MASK)


def test_exact_zero_metadata_is_accepted_since_the_tenant_high_bits_are_always_zero() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(metadata=0), [apply(Out(1))]))
    value, mask = meta()
    assert rule.match["metadata"] == (value, mask | layout.TENANT_META_MASK)


def test_goto_table_t_becomes_goto_t_plus_1() -> None:
    buf = osken_flow_mod(
        parser.OFPMatch(), [parser.OFPInstructionGotoTable(3)], table_id=1, priority=5
    )
    [rule] = physical(buf)
    assert rule.table_id == 2
    assert instruction_summary(rule.instructions) == {"goto": 4}


def test_write_metadata_in_the_low_32_bits_passes_through() -> None:
    buf = osken_flow_mod(
        parser.OFPMatch(),
        [parser.OFPInstructionWriteMetadata(0xBEEF, 0xFFFF), parser.OFPInstructionGotoTable(1)],
    )
    [rule] = physical(buf)
    assert instruction_summary(rule.instructions) == {
        "write_metadata": (0xBEEF, 0xFFFF),
        "goto": 2,
    }


def test_write_metadata_of_zeros_into_the_high_bits_writes_the_low_ones_only() -> None:
    """The tenant's high 32 metadata bits always read 0 (its matches see them so): a write
    of 0 there (a full mask, as controllers write a whole value) changes nothing of them."""
    buf = osken_flow_mod(
        parser.OFPMatch(),
        [
            parser.OFPInstructionWriteMetadata(0x5, layout.ALL_ONES),
            parser.OFPInstructionGotoTable(1),
        ],
    )
    [rule] = physical(buf)
    assert instruction_summary(rule.instructions)["write_metadata"] == (0x5, 0xFFFFFFFF)


def test_set_field_metadata_loads_the_low_32_bits_only() -> None:
    """OpenFlow 1.3's set_field writes all 64 bits (and OVS will not mask it): Open vSwitch's
    reg_load of bits 0..31 instead, so the vswitch's bits stay; a value with high bits is
    the hypervisor's and refused."""
    [rule] = physical(osken_flow_mod(parser.OFPMatch(), [apply(
        parser.OFPActionSetField(metadata=0xBEEF), Out(1))]))  # fmt: skip
    load = rule.instructions[0].actions[0]
    assert (load.experimenter, load.subtype, load.ofs_nbits, load.dst, load.value) == (
        0x2320, 7, 31, "metadata", 0xBEEF)  # fmt: skip
    with pytest.raises(OFError) as exc:
        physical(osken_flow_mod(parser.OFPMatch(), [apply(
            parser.OFPActionSetField(metadata=1 << 40), Out(1))]))  # fmt: skip
    assert (exc.value.type, exc.value.code) == BAD_SET


def test_instructions_keep_the_order_the_spec_executes_them() -> None:
    buf = osken_flow_mod(
        parser.OFPMatch(),
        [
            parser.OFPInstructionGotoTable(2),
            write(Out(1)),
            parser.OFPInstructionWriteMetadata(1, 1),
            parser.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, []),
            apply(Out(2)),
        ],
    )
    [rule] = physical(buf)
    assert instruction_types(rule.instructions) == [
        ofp.OFPIT_APPLY_ACTIONS,
        ofp.OFPIT_CLEAR_ACTIONS,
        ofp.OFPIT_WRITE_ACTIONS,
        ofp.OFPIT_WRITE_METADATA,
        ofp.OFPIT_GOTO_TABLE,
    ]
    assert instruction_summary(rule.instructions) == {
        "apply": [("output", 12)],
        "clear": True,
        "write": [("output", 11)],
        "write_metadata": (1, 1),
        "goto": 3,
    }


# --- actions ---------------------------------------------------------------------------------
def test_output_to_a_link_vport_pushes_the_fabric_s_tag_outputs_and_pops() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=1), [apply(Out(3), Out(2))]))
    assert instruction_summary(rule.instructions) == {"apply": [*link_out(13, 7), ("output", 12)]}


def test_output_to_a_link_vport_in_write_actions_pushes_and_tags_without_pop() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=1), [write(Out(4))]))
    assert instruction_summary(rule.instructions) == {
        "write": [
            ("push_vlan", layout.FABRIC_TPID),
            ("set_field", "vlan_vid", 9 | oxm.VLAN_PRESENT),
            ("output", 14),
        ]
    }


def test_output_to_an_edge_vport_is_untagged() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=3), [apply(Out(1))]))
    assert instruction_summary(rule.instructions) == {"apply": [("output", 11)]}


def test_output_to_an_edge_vport_with_output_groups_goes_through_them_to_be_counted() -> None:
    counted = VSwitchView(NET, INDEX, VIEW.vdpid, DPID, 4, {
        1: PortMap(1, 11, tx_group=101, hairpin_group=102),
        2: PortMap(2, 11, tx_group=201, hairpin_group=202),
        3: PortMap(3, 13, link_tag=7, is_link=True),
    })  # fmt: skip
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=3), [apply(Out(1))]), counted)
    assert instruction_summary(rule.instructions) == {"apply": [("group", 101)]}
    # the same physical port as the ingress: the hairpin group (output to IN_PORT)
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=1), [apply(Out(2))]), counted)
    assert instruction_summary(rule.instructions) == {"apply": [("group", 202)]}
    # a link vport is counted by its peer's classification, not by a group
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=1), [apply(Out(3))]), counted)
    assert instruction_summary(rule.instructions) == {"apply": link_out(13, 7)}
    # an action set holds one group: a tenant group written there must win over the output
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=3), [write(Out(1))]), counted)
    assert instruction_summary(rule.instructions) == {"write": [("output", 11)]}


def test_output_to_a_down_link_vport_sends_nothing() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=1), [apply(Out(5))]))
    assert instruction_summary(rule.instructions) == {"apply": []}


def test_output_to_controller_keeps_max_len() -> None:
    buf = osken_flow_mod(parser.OFPMatch(), [apply(Out(ofp.OFPP_CONTROLLER, max_len=0x80))])
    [rule] = physical(buf)
    [action] = rule.instructions[0].actions
    assert (action.port, action.max_len) == (ofp.OFPP_CONTROLLER, 0x80)


def test_tenant_header_actions_pass_through_byte_for_byte() -> None:
    header_actions = [
        parser.OFPActionSetField(eth_dst="02:00:00:00:00:09"),
        parser.OFPActionPushVlan(0x8100),
        parser.OFPActionSetField(vlan_vid=0x1064),
        parser.OFPActionDecNwTtl(),
        parser.OFPActionPopVlan(),
        parser.OFPActionSetField(ipv4_dst="10.0.0.9"),
    ]
    buf = osken_flow_mod(parser.OFPMatch(in_port=1, eth_type=0x0800), [apply(*header_actions)])
    ins = codec.parse_instructions(FlowMod.parse(buf).instructions)
    assert ins.apply_actions is not None
    tenant_raw = b"".join(a.raw for a in ins.apply_actions)
    [pf] = phys_flows(buf)
    assert pf.instructions == codec.encode_instructions(apply_actions=tenant_raw)


def test_delete_strict_of_a_physical_rule_names_the_same_table_priority_and_match() -> None:
    buf = osken_flow_mod(parser.OFPMatch(in_port=1, eth_type=0x0800), [apply(Out(2))], priority=9)
    [pf] = phys_flows(buf)
    added = osken_parse(pf.flow_mod(1))
    deleted = osken_parse(pf.delete_strict(2))
    assert deleted.command == ofp.OFPFC_DELETE_STRICT
    assert (deleted.table_id, deleted.priority) == (added.table_id, added.priority)
    assert dict(deleted.match.items()) == dict(added.match.items())
    assert (deleted.out_port, deleted.out_group) == (ofp.OFPP_ANY, ofp.OFPG_ANY)
    assert deleted.instructions == []


# Physical FLOW_MOD of "table 0, priority 10, no match, apply output:3 (link vport, tag 7,
# physical port 13)" for network 3 / serial 1, vswitch index 5, xid 0x21.
GOLDEN_LINK_OUTPUT = bytes.fromhex(
    "040e0080" "00000021"
    "0003000000000001" "0000000000000000"  # cookie: network 3, tenant rule, serial 1
    "01" "00" "0000" "0000" "000a"  # table 1, ADD, idle, hard, priority 10
    "ffffffff" "ffffffff" "ffffffff" "0000" "0000"
    "00010018" "80000510" "0000500000000000" "7ffff00000000000"  # metadata vswitch 5 / mask
    "00040038" "00000000"  # APPLY_ACTIONS, 56 bytes
    "0011000888a80000"  # push_vlan 0x88a8
    "0019001080000c02" "1007000000000000"  # set_field vlan_vid = 7 | 0x1000
    "000000100000000d" "0000000000000000"  # output 13
    "0012000800000000"  # pop_vlan
)  # fmt: skip


def test_physical_output_to_a_link_vport_matches_the_golden_bytes() -> None:
    fm = osken_flow_mod(parser.OFPMatch(), [apply(Out(3))], priority=10)
    tm = FlowMod.parse(fm)
    tf = translate_flow(VIEW, tm.table_id, tm.match, tm.instructions)
    [(m, i)] = tf.flows
    pf = PhysFlow(DPID, tf.table, 10, m, i, layout.tenant_cookie(NET, 1))
    assert pf.flow_mod(0x21) == GOLDEN_LINK_OUTPUT


# --- refusals: the OpenFlow error the spec names ----------------------------------------------
BAD_OUT = (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT)
BAD_SET = (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE)
BAD_FIELD = (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD)
BAD_VALUE = (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_VALUE)
BAD_GOTO = (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_TABLE_ID)
EXPERIMENTER_ACTION = parser.OFPActionExperimenterUnknown(0x2320, b"\0" * 4)


def _raw_flow_mod(match: list[codec.Oxm], instructions: bytes, table_id: int = 0) -> bytes:
    return FlowMod(
        0, 0, table_id, ofp.OFPFC_ADD, 0, 0, 1, ofp.OFP_NO_BUFFER,
        ofp.OFPP_ANY, ofp.OFPG_ANY, 0, match, instructions,
    ).encode(1)  # fmt: skip


def _apply_one(action: Any) -> Callable[[], bytes]:
    return lambda: osken_flow_mod(parser.OFPMatch(), [apply(action)])


def _match(**fields: Any) -> Callable[[], bytes]:
    return lambda: osken_flow_mod(parser.OFPMatch(**fields), [apply(Out(1))])


REFUSALS: dict[str, tuple[Callable[[], bytes], tuple[int, int]]] = {
    "output-local": (_apply_one(Out(ofp.OFPP_LOCAL)), BAD_OUT),
    "output-normal": (_apply_one(Out(ofp.OFPP_NORMAL)), BAD_OUT),
    "output-table-in-flow-mod": (_apply_one(Out(ofp.OFPP_TABLE)), BAD_OUT),
    "output-any": (_apply_one(Out(ofp.OFPP_ANY)), BAD_OUT),
    "output-port-0": (_apply_one(Out(0)), BAD_OUT),
    "output-port-outside-vswitch": (_apply_one(Out(6)), BAD_OUT),
    "output-physical-port-number": (_apply_one(Out(11)), BAD_OUT),
    "write-actions-output-outside": (
        lambda: osken_flow_mod(parser.OFPMatch(), [write(Out(6))]),
        BAD_OUT,
    ),
    "push-vlan-fabric-tpid": (
        _apply_one(parser.OFPActionPushVlan(0x88A8)),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_ARGUMENT),
    ),
    "push-vlan-fabric-tpid-in-write-actions": (
        lambda: osken_flow_mod(parser.OFPMatch(), [write(parser.OFPActionPushVlan(0x88A8))]),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_ARGUMENT),
    ),
    "set-field-in-port": (
        _apply_one(parser.OFPActionSetField(in_port=2)),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_ARGUMENT),  # what Open vSwitch answers
    ),
    "set-field-metadata": (_apply_one(parser.OFPActionSetField(metadata=1 << 44)), BAD_SET),
    "set-field-tunnel-id": (_apply_one(parser.OFPActionSetField(tunnel_id=5)), BAD_SET),
    "set-field-in-phy-port": (_apply_one(parser.OFPActionSetField(in_phy_port=1)), BAD_SET),
    "match-tunnel-id": (_match(tunnel_id=5), BAD_FIELD),
    "match-in-phy-port": (_match(in_port=1, in_phy_port=11), BAD_FIELD),
    "match-metadata-bit-32": (_match(metadata=1 << 32), BAD_VALUE),
    "match-metadata-vswitch-bits-masked": (
        _match(metadata=(INDEX << 44, layout.VSWITCH_MASK)),
        BAD_VALUE,
    ),
    "match-in-port-not-a-vport": (_match(in_port=6), BAD_VALUE),
    "match-in-port-local": (_match(in_port=ofp.OFPP_LOCAL), BAD_VALUE),
    "match-in-port-masked": (
        lambda: _raw_flow_mod(
            [codec.Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.IN_PORT, b"\0\0\0\1", b"\xff" * 4)],
            b"",
        ),
        (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_MASK),
    ),
    "match-duplicate-field": (
        lambda: _raw_flow_mod(
            [
                codec.oxm_mac(oxm.ETH_DST, "02:00:00:00:00:01"),
                codec.oxm_mac(oxm.ETH_DST, "02:00:00:00:00:02"),
            ],
            b"",
        ),
        (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_DUP_FIELD),
    ),
    "match-duplicate-in-port": (
        lambda: _raw_flow_mod(
            [codec.oxm_u32(oxm.IN_PORT, 1), codec.oxm_u32(oxm.IN_PORT, 2)],
            b"",
        ),
        (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_DUP_FIELD),
    ),
    "goto-backwards": (
        lambda: osken_flow_mod(parser.OFPMatch(), [parser.OFPInstructionGotoTable(1)], table_id=2),
        BAD_GOTO,
    ),
    "goto-same-table": (
        lambda: osken_flow_mod(parser.OFPMatch(), [parser.OFPInstructionGotoTable(2)], table_id=2),
        BAD_GOTO,
    ),
    "goto-beyond-n-tables": (
        lambda: osken_flow_mod(parser.OFPMatch(), [parser.OFPInstructionGotoTable(4)]),
        BAD_GOTO,
    ),
    "table-id-beyond-n-tables": (
        lambda: osken_flow_mod(parser.OFPMatch(), [apply(Out(1))], table_id=4),
        (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID),
    ),
    "write-metadata-bit-32": (
        lambda: osken_flow_mod(
            parser.OFPMatch(), [parser.OFPInstructionWriteMetadata(1 << 32, 1 << 32)]
        ),
        (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_METADATA_MASK),
    ),
    "write-metadata-full-mask-high-value": (
        lambda: osken_flow_mod(
            parser.OFPMatch(),
            [parser.OFPInstructionWriteMetadata(layout.ALL_ONES, layout.ALL_ONES)],
        ),
        (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_METADATA_MASK),
    ),
    "group-action": (
        _apply_one(parser.OFPActionGroup(1)),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP),
    ),
    "set-queue-action": (
        _apply_one(parser.OFPActionSetQueue(1)),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_QUEUE),
    ),
    "experimenter-action": (
        _apply_one(EXPERIMENTER_ACTION),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_EXPERIMENTER),
    ),
    "push-pbb-action": (
        _apply_one(parser.OFPActionPushPbb(0x88E7)),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE),
    ),
    "meter-instruction": (
        lambda: osken_flow_mod(parser.OFPMatch(), [parser.OFPInstructionMeter(1, ofp.OFPIT_METER)]),
        (ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_INVALID_METER),
    ),
    "experimenter-instruction": (
        lambda: _raw_flow_mod([], bytes.fromhex("ffff000800002320")),
        (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_INST),
    ),
    # OpenFlow 1.3 defines no code for it; (3, 9) is OFPBIC_DUP_INST from 1.4, the code
    # codec.parse_instructions means to send.
    "duplicate-instruction": (
        lambda: osken_flow_mod(parser.OFPMatch(), [apply(Out(1)), apply(Out(2))]),
        (ofp.OFPET_BAD_INSTRUCTION, ofp_v14.OFPBIC_DUP_INST),
    ),
    "flood-in-write-actions-with-several-targets": (
        lambda: osken_flow_mod(parser.OFPMatch(in_port=1), [write(Out(ofp.OFPP_FLOOD))]),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_UNSUPPORTED_ORDER),
    ),
    "tenant-vlan-set-field-collides-with-fabric-tag-in-action-set": (
        lambda: osken_flow_mod(
            parser.OFPMatch(),
            [write(parser.OFPActionSetField(vlan_vid=0x1064), Out(3))],
        ),
        (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_UNSUPPORTED_ORDER),
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refused_tenant_rule_gets_the_spec_error(case: str) -> None:
    build, expected = REFUSALS[case]
    assert refusal(build()) == expected


TOO_MANY = (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_TOO_MANY)


def test_a_rule_whose_translation_outgrows_an_action_list_is_refused_with_too_many() -> None:
    # 4000 outputs fit the tenant's FLOW_MOD (64 KB); to a link vport each becomes four
    # actions (push, tag, output, pop), three times the bytes: no 16-bit length holds them
    buf = osken_flow_mod(parser.OFPMatch(), [apply(*[Out(3)] * 4000)])
    assert len(buf) <= 0xFFFF
    assert refusal(buf) == TOO_MANY


def test_a_rule_whose_physical_flow_mod_outgrows_its_16_bit_length_is_refused() -> None:
    # 1364 link outputs: 65472 bytes of actions fit their instruction, but not the whole
    # FLOW_MOD with its header, body and the vswitch's metadata match
    buf = osken_flow_mod(parser.OFPMatch(), [apply(*[Out(3)] * 1364)])
    assert refusal(buf) == TOO_MANY
    # ... while one that fits is translated whole
    [rule] = physical(osken_flow_mod(parser.OFPMatch(), [apply(*[Out(3)] * 1300)]))
    assert instruction_summary(rule.instructions) == {"apply": link_out(13, 7) * 1300}


def test_a_packet_out_whose_translation_outgrows_its_16_bit_length_is_refused() -> None:
    po = parser.OFPPacketOut(
        DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
        actions=[Out(3)] * 4000, data=b"x" * 60,
    )  # fmt: skip
    parsed = PacketOut.parse(osken_bytes(po))
    _, actions = translate_packet_out(VIEW, 0, parsed.actions)
    with pytest.raises(OFError) as err:
        codec.packet_out(0, ofp.OFPP_CONTROLLER, actions, parsed.data)
    assert (err.value.type, err.value.code) == TOO_MANY


def test_tenant_vlan_set_field_with_an_edge_output_in_the_action_set_is_fine() -> None:
    buf = osken_flow_mod(
        parser.OFPMatch(), [write(parser.OFPActionSetField(vlan_vid=0x1064), Out(1))]
    )
    [rule] = physical(buf)
    assert instruction_summary(rule.instructions) == {
        "write": [("set_field", "vlan_vid", 0x1064), ("output", 11)]
    }


def test_in_port_of_the_wrong_length_is_refused_with_bad_len() -> None:
    # A 2-byte in_port is a length problem (OFPBMC_BAD_LEN), not a mask problem.
    buf = _raw_flow_mod([codec.oxm_u16(oxm.IN_PORT, 1)], b"")
    assert refusal(buf) == (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_LEN)


# --- output to the ingress vport ---------------------------------------------------------------
def test_output_to_the_pinned_ingress_vport_is_dropped_as_on_a_real_switch() -> None:
    # OpenFlow: an output action to the packet's own ingress port sends nothing; only
    # OFPP_IN_PORT sends it back.  The rule pins the ingress, so the translation leaves the
    # action out (OVS would drop it too: the physical in_port is the ingress vport's port).
    buf = osken_flow_mod(parser.OFPMatch(in_port=1), [apply(Out(1), Out(2))])
    [rule] = physical(buf)
    assert rule.match["metadata"] == meta(1)
    assert instruction_summary(rule.instructions) == {"apply": [("output", 12)]}


def test_output_to_the_pinned_ingress_link_vport_is_dropped_with_its_fabric_tag() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=3), [apply(Out(3), Out(1))]))
    assert instruction_summary(rule.instructions) == {"apply": [("output", 11)]}
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=3), [write(Out(3))]))
    assert instruction_summary(rule.instructions) == {"write": []}


def test_output_to_the_pinned_ingress_vport_is_dropped_on_a_shared_port_too() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=2), [apply(Out(2))]), SHARED)
    assert instruction_summary(rule.instructions) == {"apply": []}


def test_rule_pinning_in_port_controller_outputs_to_physical_ports() -> None:
    # Injected packets without an ingress have in_port CONTROLLER: no vport is the ingress.
    buf = osken_flow_mod(parser.OFPMatch(in_port=ofp.OFPP_CONTROLLER), [apply(Out(2), Out(3))])
    [rule] = physical(buf, SHARED)
    assert rule.match["metadata"] == meta(0)
    assert instruction_summary(rule.instructions) == {
        "apply": [*SHARED_ACTIONS[2], *SHARED_ACTIONS[3]]
    }


# --- vports sharing a physical port (several vlinks over one uplink) --------------------------
def test_view_knows_the_physical_ports_under_several_vports() -> None:
    assert SHARED.shared_ports == frozenset({13})
    assert VIEW.shared_ports == frozenset()
    one = VSwitchView(NET, INDEX, VIEW.vdpid, DPID, 4, {1: PortMap(1, 11)})
    assert one.shared_ports == frozenset()


def test_output_between_vports_sharing_a_physical_port_uses_in_port() -> None:
    # Vport 2 and 3 are both physical port 13: output:13 to a packet that came in on 13 is
    # dropped by OVS, so it must be OFPP_IN_PORT, with vport 3's own fabric tag.
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=2), [apply(Out(3))]), SHARED)
    assert rule.match["metadata"] == meta(2)
    assert instruction_summary(rule.instructions) == {"apply": via_in_port(SHARED_ACTIONS[3])}
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=3), [apply(Out(2))]), SHARED)
    assert instruction_summary(rule.instructions) == {"apply": via_in_port(SHARED_ACTIONS[2])}


def test_output_between_vports_sharing_a_physical_port_in_write_actions_uses_in_port() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=2), [write(Out(3))]), SHARED)
    assert instruction_summary(rule.instructions) == {
        "write": [
            ("push_vlan", layout.FABRIC_TPID),
            ("set_field", "vlan_vid", 8 | oxm.VLAN_PRESENT),
            ("output", ofp.OFPP_IN_PORT),
        ]
    }


def test_output_between_edge_vports_on_one_physical_port_uses_in_port() -> None:
    hub = VSwitchView(NET, INDEX, VIEW.vdpid, DPID, 4, {1: PortMap(1, 11), 2: PortMap(2, 11)})
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=1), [apply(Out(2))]), hub)
    assert instruction_summary(rule.instructions) == {"apply": [("output", ofp.OFPP_IN_PORT)]}


def test_output_from_a_shared_port_to_another_physical_port_is_that_port() -> None:
    buf = osken_flow_mod(parser.OFPMatch(in_port=2), [apply(Out(1), Out(4))])
    [rule] = physical(buf, SHARED)
    assert instruction_summary(rule.instructions) == {"apply": [("output", 11), ("output", 12)]}


def test_unpinned_output_to_an_unshared_port_is_one_rule() -> None:
    # A packet that came in on vport 1 has physical in_port 11, and only those do: OVS drops
    # output:11 for exactly them, so one rule serves every ingress.
    buf = osken_flow_mod(parser.OFPMatch(eth_dst="02:00:00:00:00:01"), [apply(Out(1))])
    [rule] = physical(buf)
    assert dict(rule.match.items()) == {"eth_dst": "02:00:00:00:00:01", "metadata": meta()}
    assert instruction_summary(rule.instructions) == {"apply": [("output", 11)]}
    [rule] = physical(osken_flow_mod(parser.OFPMatch(), [apply(Out(3), Out(2))]))
    assert instruction_summary(rule.instructions) == {"apply": [*link_out(13, 7), ("output", 12)]}
    # On a view with a shared uplink, output to its unshared edge ports stays one rule too.
    [rule] = physical(osken_flow_mod(parser.OFPMatch(), [apply(Out(1), Out(4))]), SHARED)
    assert rule.match["metadata"] == meta()
    assert instruction_summary(rule.instructions) == {"apply": [("output", 11), ("output", 12)]}


def test_unpinned_output_to_an_unshared_port_in_write_actions_is_one_rule() -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(), [write(Out(4))]))
    assert rule.match["metadata"] == meta()
    assert instruction_summary(rule.instructions) == {"write": link_out(14, 9)[:3]}


def test_unpinned_output_to_a_shared_port_expands_per_ingress() -> None:
    buf = osken_flow_mod(parser.OFPMatch(eth_type=0x0800), [apply(Out(3))], priority=7)
    rules = by_ingress(physical(buf, SHARED))
    assert sorted(rules) == [0, 1, 2, 3, 4]  # each vport, and controller-injected (0)
    for rule in rules.values():
        assert rule.match["eth_type"] == 0x0800
        assert rule.priority == 7
    for ingress in (0, 1, 4):  # came in elsewhere (or from the controller): physical port
        assert instruction_summary(rules[ingress].instructions) == {"apply": SHARED_ACTIONS[3]}
    assert instruction_summary(rules[2].instructions) == {"apply": via_in_port(SHARED_ACTIONS[3])}
    assert instruction_summary(rules[3].instructions) == {"apply": []}  # its own ingress


def test_unpinned_rule_with_one_shared_output_expands_all_its_outputs() -> None:
    buf = osken_flow_mod(parser.OFPMatch(), [apply(Out(1), Out(2))])
    rules = by_ingress(physical(buf, SHARED))
    assert sorted(rules) == [0, 1, 2, 3, 4]
    expected = {
        0: [*SHARED_ACTIONS[1], *SHARED_ACTIONS[2]],
        1: SHARED_ACTIONS[2],  # output to its own ingress vport 1 is left out
        2: SHARED_ACTIONS[1],
        3: [*SHARED_ACTIONS[1], *via_in_port(SHARED_ACTIONS[2])],
        4: [*SHARED_ACTIONS[1], *SHARED_ACTIONS[2]],
    }
    for ingress, actions in expected.items():
        assert instruction_summary(rules[ingress].instructions) == {"apply": actions}, ingress


def test_expanded_rules_never_overlap_and_share_the_tenant_match() -> None:
    buf = osken_flow_mod(parser.OFPMatch(ip_proto=17, eth_type=0x0800), [apply(Out(2))])
    flows = phys_flows(buf, SHARED)
    assert len({pf.key for pf in flows}) == len(flows) == 5
    tenant = FlowMod.parse(buf).match
    for pf in flows:
        oxms, _ = codec.parse_match(pf.match, 0)
        assert oxms[:-1] == tenant
        assert oxms[-1].field == oxm.METADATA


# --- FLOOD / ALL / IN_PORT expansion ------------------------------------------------------------
@pytest.mark.parametrize("port", [ofp.OFPP_FLOOD, ofp.OFPP_ALL], ids=["flood", "all"])
def test_flood_without_pinned_in_port_expands_per_ingress_excluding_it(port: int) -> None:
    buf = osken_flow_mod(parser.OFPMatch(eth_dst="ff:ff:ff:ff:ff:ff"), [apply(Out(port))])
    rules = by_ingress(physical(buf))
    assert sorted(rules) == [0, 1, 2, 3, 4, 5]  # each vport, and controller-injected (0)
    for ingress, rule in rules.items():
        assert rule.match["eth_dst"] == "ff:ff:ff:ff:ff:ff"
        expected = [a for n in sorted(PORT_ACTIONS) if n != ingress for a in PORT_ACTIONS[n]]
        assert instruction_summary(rule.instructions) == {"apply": expected}, ingress


@pytest.mark.parametrize("port", [ofp.OFPP_FLOOD, ofp.OFPP_ALL], ids=["flood", "all"])
def test_flood_with_pinned_in_port_is_one_rule_excluding_the_ingress(port: int) -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=3), [apply(Out(port))]))
    assert rule.match["metadata"] == meta(3)
    assert instruction_summary(rule.instructions) == {
        "apply": [*PORT_ACTIONS[1], *PORT_ACTIONS[2], *PORT_ACTIONS[4]]
    }


@pytest.mark.parametrize("port", [ofp.OFPP_FLOOD, ofp.OFPP_ALL], ids=["flood", "all"])
def test_flood_to_a_vport_on_the_ingress_physical_port_uses_in_port(port: int) -> None:
    [rule] = physical(osken_flow_mod(parser.OFPMatch(in_port=2), [apply(Out(port))]), SHARED)
    assert instruction_summary(rule.instructions) == {
        "apply": [*SHARED_ACTIONS[1], *via_in_port(SHARED_ACTIONS[3]), *SHARED_ACTIONS[4]]
    }
    rules = by_ingress(physical(osken_flow_mod(parser.OFPMatch(), [apply(Out(port))]), SHARED))
    assert sorted(rules) == [0, 1, 2, 3, 4]
    assert instruction_summary(rules[0].instructions) == {
        "apply": [a for n in sorted(SHARED_ACTIONS) for a in SHARED_ACTIONS[n]]
    }
    assert instruction_summary(rules[3].instructions) == {
        "apply": [*SHARED_ACTIONS[1], *via_in_port(SHARED_ACTIONS[2]), *SHARED_ACTIONS[4]]
    }
    assert instruction_summary(rules[4].instructions) == {
        "apply": [*SHARED_ACTIONS[1], *SHARED_ACTIONS[2], *SHARED_ACTIONS[3]]
    }


def test_in_port_output_without_pinned_in_port_sends_back_per_ingress() -> None:
    rules = by_ingress(physical(osken_flow_mod(parser.OFPMatch(), [apply(Out(ofp.OFPP_IN_PORT))])))
    assert sorted(rules) == [0, 1, 2, 3, 4, 5]
    assert instruction_summary(rules[0].instructions) == {"apply": []}  # injected: no ingress
    for vport in (1, 2, 3, 4, 5):
        assert instruction_summary(rules[vport].instructions) == {
            "apply": via_in_port(PORT_ACTIONS[vport])
        }, vport


def test_in_port_output_with_pinned_in_port_is_one_rule() -> None:
    # The physical in_port is 12: output:12 would be dropped, OFPP_IN_PORT is what sends back.
    buf = osken_flow_mod(parser.OFPMatch(in_port=2), [apply(Out(ofp.OFPP_IN_PORT))])
    [rule] = physical(buf)
    assert rule.match["metadata"] == meta(2)
    assert instruction_summary(rule.instructions) == {"apply": [("output", ofp.OFPP_IN_PORT)]}


def test_in_port_output_to_a_link_ingress_pushes_its_own_tag() -> None:
    buf = osken_flow_mod(parser.OFPMatch(in_port=3), [apply(Out(ofp.OFPP_IN_PORT))])
    [rule] = physical(buf, SHARED)
    assert instruction_summary(rule.instructions) == {"apply": via_in_port(SHARED_ACTIONS[3])}


def test_expansion_keeps_the_other_instructions_in_every_rule() -> None:
    buf = osken_flow_mod(
        parser.OFPMatch(metadata=(1, 1)),
        [apply(Out(ofp.OFPP_IN_PORT)), parser.OFPInstructionGotoTable(1)],
    )
    rules = by_ingress_with_tenant_bits(physical(buf))
    assert sorted(rules) == [0, 1, 2, 3, 4, 5]
    for rule in rules.values():
        assert instruction_summary(rule.instructions)["goto"] == 2


def by_ingress_with_tenant_bits(rules: list[Any]) -> dict[int, Any]:
    out = {}
    for r in rules:
        value, mask = r.match["metadata"]
        assert mask == layout.VSWITCH_MASK | layout.VPORT_MASK | 1
        assert value & layout.TENANT_META_MASK == 1
        out[(value & layout.VPORT_MASK) >> layout.VPORT_SHIFT] = r
    return out


def test_flood_in_write_actions_with_a_single_target_is_accepted() -> None:
    small = VSwitchView(NET, INDEX, VIEW.vdpid, DPID, 4, {1: VIEW.ports[1], 3: VIEW.ports[3]})
    buf = osken_flow_mod(parser.OFPMatch(in_port=1), [write(Out(ofp.OFPP_FLOOD))])
    [rule] = physical(buf, small)
    assert instruction_summary(rule.instructions) == {"write": link_out(13, 7)[:3]}


# --- PACKET_OUT -------------------------------------------------------------------------------
def packet_out(
    in_vport: int, *actions: Any, view: VSwitchView = VIEW
) -> tuple[int, list[tuple[Any, ...]]]:
    """A tenant PACKET_OUT built by os-ken, parsed and translated: (physical in_port, actions
    read back by os-ken)."""
    po = parser.OFPPacketOut(
        DP,
        buffer_id=ofp.OFP_NO_BUFFER,
        in_port=in_vport or ofp.OFPP_CONTROLLER,
        actions=list(actions),
        data=b"\0" * 60,
    )
    parsed = PacketOut.parse(osken_bytes(po))
    in_port, out = translate_packet_out(view, in_vport, parsed.actions)
    return in_port, action_summary(osken_actions(out))


def packet_out_actions(in_vport: int, *actions: Any, view: VSwitchView = VIEW) -> list[Any]:
    return packet_out(in_vport, *actions, view=view)[1]


def test_packet_out_to_edge_and_link_vports() -> None:
    assert packet_out(0, Out(1), Out(3)) == (
        ofp.OFPP_CONTROLLER,
        [("output", 11), *link_out(13, 7)],
    )


@pytest.mark.parametrize(
    ("in_vport", "in_port"),
    [(0, ofp.OFPP_CONTROLLER), (1, 11), (2, 12), (3, 13), (4, 14)],
    ids=["controller", "edge-1", "edge-2", "link-3", "link-4"],
)
def test_packet_out_leaves_with_the_ingress_vports_physical_port(
    in_vport: int, in_port: int
) -> None:
    assert packet_out(in_vport, Out(ofp.OFPP_CONTROLLER))[0] == in_port
    assert packet_out(in_vport, Out(ofp.OFPP_TABLE))[0] == in_port
    assert packet_out(in_vport)[0] == in_port  # even with nothing to do


@pytest.mark.parametrize("in_vport", [0, 2, 3])
def test_packet_out_to_table_marks_the_packet_injected(in_vport: int) -> None:
    in_port, actions = packet_out(in_vport, Out(ofp.OFPP_TABLE))
    assert in_port == (VIEW.ports[in_vport].phys_port if in_vport else ofp.OFPP_CONTROLLER)
    assert actions == [
        ("set_field", "metadata", layout.INJECTED | layout.vswitch_meta(INDEX, in_vport)),
        ("output", ofp.OFPP_TABLE),
    ]
    # The whole 64 bits are written (no mask): the tenant's low bits start at 0.
    po = parser.OFPPacketOut(
        DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER, actions=[Out(ofp.OFPP_TABLE)],
        data=b"x",
    )  # fmt: skip
    _, raw = translate_packet_out(VIEW, in_vport, PacketOut.parse(osken_bytes(po)).actions)
    set_meta, table = codec.parse_actions(raw)
    assert set_meta.set_field_oxm() == codec.oxm_u64(
        oxm.METADATA, layout.INJECTED | layout.vswitch_meta(INDEX, in_vport)
    )
    assert table.raw == codec.output(ofp.OFPP_TABLE)


def test_a_packet_injected_to_table_meets_the_injected_rule_then_its_tenant_rules() -> None:
    _, actions = packet_out(2, Out(ofp.OFPP_TABLE))
    metadata = actions[0][2]
    [injected] = [
        r
        for r in (osken_parse(pf.flow_mod(1)) for pf in infra.provider_flows(DPID))
        if r.priority == infra.PRIO_INJECTED
    ]
    value, mask = injected.match["metadata"]
    assert metadata & mask == value  # table 0 passes it on to table 1 untouched
    # ... where the tenant rules pinning vport 2, or no vport, match it; vport 1's do not.
    for buf, hits in (
        (osken_flow_mod(parser.OFPMatch(in_port=2), [apply(Out(1))]), True),
        (osken_flow_mod(parser.OFPMatch(), [apply(Out(1))]), True),
        (osken_flow_mod(parser.OFPMatch(in_port=1), [apply(Out(2))]), False),
    ):
        [rule] = physical(buf)
        value, mask = rule.match["metadata"]
        assert not mask & layout.INJECTED  # tenant rules never look at the bit
        assert (metadata & mask == value) is hits


def test_packet_out_flood_from_the_controller_reaches_every_up_vport() -> None:
    expected = [a for n in sorted(PORT_ACTIONS) for a in PORT_ACTIONS[n]]
    assert packet_out_actions(0, Out(ofp.OFPP_FLOOD)) == expected


def test_packet_out_flood_with_an_in_port_excludes_it() -> None:
    expected = [a for n in sorted(PORT_ACTIONS) if n != 4 for a in PORT_ACTIONS[n]]
    assert packet_out_actions(4, Out(ofp.OFPP_FLOOD)) == expected


def test_packet_out_to_in_port_goes_to_the_in_port_or_nowhere_from_the_controller() -> None:
    # The PACKET_OUT leaves with in_port 11: only OFPP_IN_PORT sends it back out of 11.
    assert packet_out(1, Out(ofp.OFPP_IN_PORT)) == (11, [("output", ofp.OFPP_IN_PORT)])
    assert packet_out(3, Out(ofp.OFPP_IN_PORT)) == (13, via_in_port(PORT_ACTIONS[3]))
    assert packet_out(0, Out(ofp.OFPP_IN_PORT)) == (ofp.OFPP_CONTROLLER, [])


def test_packet_out_to_its_own_ingress_vport_sends_nothing_there() -> None:
    assert packet_out(1, Out(1)) == (11, [])
    assert packet_out(1, Out(1), Out(2)) == (11, [("output", 12)])
    assert packet_out(0, Out(1)) == (ofp.OFPP_CONTROLLER, [("output", 11)])


def test_packet_out_between_vports_sharing_a_physical_port_uses_in_port() -> None:
    assert packet_out(2, Out(3), view=SHARED) == (13, via_in_port(SHARED_ACTIONS[3]))
    assert packet_out(2, Out(ofp.OFPP_FLOOD), view=SHARED) == (
        13,
        [*SHARED_ACTIONS[1], *via_in_port(SHARED_ACTIONS[3]), *SHARED_ACTIONS[4]],
    )
    # From the controller there is no ingress port to avoid: physical ports.
    assert packet_out(0, Out(2), Out(3), view=SHARED) == (
        ofp.OFPP_CONTROLLER,
        [*SHARED_ACTIONS[2], *SHARED_ACTIONS[3]],
    )
    # From an unshared vport: the physical uplink.
    assert packet_out(1, Out(3), view=SHARED) == (11, SHARED_ACTIONS[3])


@pytest.mark.parametrize(
    ("in_vport", "in_port"), [(0, ofp.OFPP_CONTROLLER), (2, 12)], ids=["controller", "vport-2"]
)
def test_physical_packet_out_is_byte_identical_to_osken(in_vport: int, in_port: int) -> None:
    po = parser.OFPPacketOut(
        DP,
        buffer_id=ofp.OFP_NO_BUFFER,
        in_port=in_vport or ofp.OFPP_CONTROLLER,
        actions=[Out(1), Out(3)],
        data=b"frame",
    )
    tenant = PacketOut.parse(osken_bytes(po))
    phys_in_port, actions = translate_packet_out(VIEW, in_vport, tenant.actions)
    assert phys_in_port == in_port
    expected = parser.OFPPacketOut(
        DP,
        buffer_id=ofp.OFP_NO_BUFFER,
        in_port=in_port,
        actions=[
            Out(11, max_len=0),
            parser.OFPActionPushVlan(layout.FABRIC_TPID),
            parser.OFPActionSetField(vlan_vid=7 | oxm.VLAN_PRESENT),
            Out(13, max_len=0),
            parser.OFPActionPopVlan(),
        ],
        data=b"frame",
    )
    expected.set_xid(5)
    assert codec.packet_out(5, phys_in_port, actions, b"frame") == osken_bytes(expected)


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Out(ofp.OFPP_LOCAL), BAD_OUT),
        (Out(ofp.OFPP_NORMAL), BAD_OUT),
        (Out(9), BAD_OUT),
        (parser.OFPActionSetField(tunnel_id=1), BAD_SET),
        (parser.OFPActionSetField(metadata=1), BAD_SET),
        (parser.OFPActionPushVlan(0x88A8), (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_ARGUMENT)),
        (parser.OFPActionGroup(1), (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP)),
    ],
    ids=["local", "normal", "outside", "tunnel-id", "metadata", "fabric-tpid", "group"],
)
def test_refused_packet_out_action_gets_the_spec_error(
    action: Any, expected: tuple[int, int]
) -> None:
    po = parser.OFPPacketOut(
        DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER, actions=[action], data=b"x"
    )
    parsed = PacketOut.parse(osken_bytes(po))
    for in_vport in (0, 1):
        with pytest.raises(OFError) as err:
            translate_packet_out(VIEW, in_vport, parsed.actions)
        assert (err.value.type, err.value.code) == expected


# --- bit layouts --------------------------------------------------------------------------------
def test_metadata_layout_leaves_the_tenant_the_low_32_bits() -> None:
    parts = [layout.INJECTED, layout.VSWITCH_MASK, layout.VPORT_MASK, layout.TENANT_META_MASK]
    for i, a in enumerate(parts):
        for b in parts[i + 1 :]:
            assert a & b == 0
    assert sum(parts) == layout.ALL_ONES
    assert layout.HV_META_MASK == layout.INJECTED | layout.VSWITCH_MASK | layout.VPORT_MASK
    assert layout.HV_META_MASK | layout.TENANT_META_MASK == layout.ALL_ONES
    assert layout.vswitch_meta(5, 3) == (5 << 44) | (3 << 32)


def test_metadata_layout_has_the_injected_bit_above_a_19_bit_vswitch_index() -> None:
    assert layout.INJECTED == 1 << 63
    assert layout.MAX_VSWITCH_INDEX == 0x7FFFF == (1 << 19) - 1
    assert layout.VSWITCH_MASK == 0x7FFFF << 44
    assert layout.VPORT_MASK == 0xFFF << 32
    # The largest vswitch and vport fill their fields and leave the injected bit alone.
    top = layout.vswitch_meta(layout.MAX_VSWITCH_INDEX, 0xFFF)
    assert top == layout.VSWITCH_MASK | layout.VPORT_MASK
    assert not top & layout.INJECTED
    assert layout.meta_vswitch(layout.INJECTED | top | 0xFFFFFFFF) == layout.MAX_VSWITCH_INDEX


def test_cookie_layout_separates_network_infra_bit_and_serial() -> None:
    assert layout.tenant_cookie(7, 9) == (7 << 48) | 9
    assert layout.tenant_cookie(7, layout.INFRA_BIT | 9) == (7 << 48) | 9  # serial masked
    assert layout.infra_cookie(7) == (7 << 48) | (1 << 47)
    assert layout.net_cookie(7) & layout.NET_COOKIE_MASK == 7 << 48
    assert layout.DISCOVERY_COOKIE >> layout.NET_SHIFT == 0  # provider rules: network 0
    assert layout.PROVIDER_COOKIE & layout.INFRA_BIT


def test_an_edge_vport_whose_port_is_down_or_gone_is_translated_as_when_it_was_up() -> None:
    """The pswitch drops what is sent to a down or missing port, as a switch does; so the
    rule stays as it was and a port that comes and goes (a VM a live migration re-plugs)
    rewrites no rule.  A vlink without a path, or a moved host's vport with no path to it,
    still sends nothing."""
    from dataclasses import replace

    buf = osken_flow_mod(parser.OFPMatch(in_port=3), [apply(Out(1), Out(5))])
    down = replace(VIEW, ports={**VIEW.ports, 1: replace(VIEW.ports[1], up=False)})
    assert phys_flows(buf, down) == phys_flows(buf, VIEW)
    unreachable = PortMap(1, 11, link_tag=0, up=False, exits=((0, 0),))
    lost = replace(VIEW, ports={**VIEW.ports, 1: unreachable})
    (rule,) = physical(buf, lost)
    assert not rule.instructions or not rule.instructions[0].actions
