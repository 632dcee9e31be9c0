"""Tenant rules folded with classification for a vswitch on an OpenFlow 1.0 pswitch."""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.codec import OFError
from tenantvisor.translate.flow10 import translate_flow10
from tenantvisor.translate.view import PortMap, VSwitchView

MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
VIEW = VSwitchView(
    1, 7, 0x77, 5, 1,
    {1: PortMap(1, 11, macs=(MAC1, MAC2)), 2: PortMap(2, 12, 40, True, in_tag=9)},
    True, {0: (100, 101), 1: (102, 103), 2: (104, 105)},
)  # fmt: skip


def apply(*acts: bytes) -> bytes:
    return codec.encode_instructions(apply_actions=b"".join(acts))


def fields(match: bytes) -> dict[int, int]:
    return {o.field: codec.oxm_int(o) for o in codec.parse_match(match, 0)[0]}


def actions(ins: bytes) -> list[tuple[int, int]]:
    out = []
    for a in codec.parse_instructions(ins).apply_actions or []:
        arg = a.output_port if a.type == ofp.OFPAT_OUTPUT else 0
        if a.type == ofp.OFPAT_SET_FIELD:
            arg = codec.oxm_int(a.set_field_oxm())
        out.append((a.type, arg))
    return out


def test_a_rule_becomes_one_per_host_and_per_arriving_tag() -> None:
    tf = translate_flow10(VIEW, 0, [], apply(codec.output(2)))
    keys = sorted((f[oxm.IN_PORT], f.get(oxm.ETH_SRC), f.get(oxm.VLAN_VID))
                  for f in (fields(m) for m, _ in tf.flows))  # fmt: skip
    assert keys == [(11, 0x020000000001, None), (11, 0x020000000002, None),
                    (12, None, 9 | 0x1000)]  # fmt: skip
    link_rule = next(i for m, i in tf.flows if fields(m)[oxm.IN_PORT] == 12)
    assert actions(link_rule)[0] == (ofp.OFPAT_POP_VLAN, 0)  # the arriving tag comes off
    assert tf.table == 0


def test_output_to_the_ingress_vport_vanishes_and_the_link_gets_its_tag() -> None:
    tf = translate_flow10(VIEW, 0, [codec.oxm_u32(oxm.IN_PORT, 2)], apply(codec.output(2)))
    ((_, ins),) = tf.flows
    assert actions(ins) == [(ofp.OFPAT_POP_VLAN, 0)]  # out of vport 2 into vport 2: nothing
    tf = translate_flow10(VIEW, 0, [codec.oxm_u32(oxm.IN_PORT, 1)], apply(codec.output(2)))
    assert all(
        (ofp.OFPAT_SET_FIELD, 40 | 0x1000) in actions(i) and (ofp.OFPAT_OUTPUT, 12) in actions(i)
        for _, i in tf.flows
    )


def test_a_tenant_eth_src_keeps_only_the_hosts_it_covers() -> None:
    tf = translate_flow10(VIEW, 0, [codec.oxm_mac(oxm.ETH_SRC, MAC2)], apply(codec.output(2)))
    edge = [fields(m) for m, _ in tf.flows if fields(m)[oxm.IN_PORT] == 11]
    assert [f[oxm.ETH_SRC] for f in edge] == [0x020000000002]


@pytest.mark.parametrize(("miss", "marks"), [(False, {102, 104}), (True, {103, 105})])
def test_packets_to_the_controller_carry_their_ingress_and_reason(
    miss: bool, marks: set[int]
) -> None:
    tf = translate_flow10(VIEW, 0, [], apply(codec.output(ofp.OFPP_CONTROLLER, 128)), miss)
    seen = set()
    for _, ins in tf.flows:
        acts = actions(ins)
        i = acts.index((ofp.OFPAT_OUTPUT, ofp.OFPP_CONTROLLER))
        assert acts[i - 1][0] == ofp.OFPAT_SET_FIELD and acts[i + 1] == (ofp.OFPAT_POP_VLAN, 0)
        seen.add(acts[i - 1][1] & 0xFFF)
    assert seen == marks


@pytest.mark.parametrize(
    ("match", "ins", "code"),
    [
        ([codec.oxm_u16(oxm.VLAN_VID, 0x1005)], apply(),
         (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD)),
        ([codec.oxm_u64(oxm.METADATA, 1)], apply(), (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD)),
        ([], codec.encode_instructions(goto_table=1),
         (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_TABLE_ID)),
        ([], codec.encode_instructions(write_actions=codec.output(1)),
         (ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_INST)),
        ([], apply(codec.push_vlan(0x8100)), (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE)),
        ([], apply(codec.set_field(codec.oxm_u16(oxm.VLAN_VID, 0x1001))),
         (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE)),
    ],
    ids=["tenant-vlan", "metadata", "goto", "write-actions", "push-vlan", "set-vlan"],
)  # fmt: skip
def test_what_a_one_table_switch_has_not_is_refused(match: list, ins: bytes, code: tuple) -> None:  # type: ignore[type-arg]
    with pytest.raises(OFError) as exc:
        translate_flow10(VIEW, 0, match, ins)
    assert (exc.value.type, exc.value.code) == code


def test_only_table_0_exists() -> None:
    with pytest.raises(OFError) as exc:
        translate_flow10(VIEW, 1, [], apply())
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID)


def test_a_rule_whose_translation_outgrows_openflow_lengths_is_refused_with_too_many() -> None:
    # 4000 outputs to a link vport fit the tenant's message; tagged, they fit no FLOW_MOD
    with pytest.raises(OFError) as exc:
        translate_flow10(VIEW, 0, [], apply(*[codec.output(2)] * 4000))
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_TOO_MANY)
