"""The `lite` scalability level in pure parts: tag blocks (mapping/alloc.py), what compile
gives a LITE network (compile/network.py), the tag a tenant rule pushes and the actions of a
LITE rule (translate/flow.py), and the LITE proofs (reduce/prove.py).

The proofs' vswitch is B of tests/unit/test_reduce_prove.py's line: vlink to A on 1 (LITE
tags arrive there), to C on 2, to D on 3.  Hosts 0x10, 0x11 are on C's edge (LITE 1), 0x12
on D's (LITE 2).
"""

from __future__ import annotations

import random

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.network import compile_network
from tenantvisor.mapping.alloc import IdAllocator, IdSpaceExhausted
from tenantvisor.openflow import codec, oxm
from tenantvisor.reduce.prove import EXACT, VACUOUS, Reduced, Reducer, arrivals
from tenantvisor.reduce.realize import LITE_PRIORITY, lite_rule
from tenantvisor.translate.flow import lite_destination, lite_forward, translate_flow
from tenantvisor.translate.view import PortMap, VSwitchView
from tests.unit.test_compile import _actions, _match, line3, two_switch_net
from tests.unit.test_reduce_prove import A, C, D, conn, out, rule

MAC = {0x10: "02:00:00:00:00:10", 0x11: "02:00:00:00:00:11", 0x12: "02:00:00:00:00:12"}
LITE = {MAC[0x10]: 1, MAC[0x11]: 1, MAC[0x12]: 2}
VPORTS = {1: (A, 3), 2: (C, 1), 3: (D, 1)}


# --- tag blocks ------------------------------------------------------------------------------
def test_a_block_is_aligned_owned_id_by_id_and_stable() -> None:
    al = IdAllocator()
    al.get(("tag", 1, 2), "plain")  # id 1
    base = al.get_block(("tag", 1, 2), (7, "lite"), 8)
    assert base == 8 and base % 8 == 0
    assert [al.owner_of(("tag", 1, 2), base + k) for k in range(8)] == [
        (7, "lite", k) for k in range(8)
    ]
    assert al.get_block(("tag", 1, 2), (7, "lite"), 8) == base  # the same owner: the same
    assert al.get_block(("tag", 1, 2), (8, "lite"), 8) == 16
    assert al.get(("tag", 1, 2), "other") == 2  # plain ids fill the gaps below
    small = IdAllocator()
    with pytest.raises(IdSpaceExhausted):
        small.get_block(("tag", 1, 2), (1,), 4096)


# --- compile ---------------------------------------------------------------------------------
def test_compile_gives_a_lite_network_a_tag_block_per_one_hop_vlink_direction() -> None:
    net = two_switch_net((1, 2), (2, 1))
    net.scalability = "lite"
    st = compile_network(net, line3(), IdAllocator(), 4)
    a, b = st.views[(0xA, 1)], st.views[(0xB, 2)]
    assert a.lite == b.lite == {"02:00:00:00:00:01": 1, "02:00:00:00:00:02": 2}
    assert a.lite_size == 4  # two edges: LITEs 1, 2 in blocks of 4
    up, down = a.ports[2], b.ports[2]
    assert up.lite_base is not None and down.lite_in is not None
    assert down.lite_in == (1, up.lite_base)  # arriving on s2 port 1 with A's block
    # the far end classifies the whole block as it does the plain tag
    block = [pf for pf in st.rules.values() if pf.dpid == 2 and 0x1000 | up.lite_base in
             _match(pf).values()]  # fmt: skip
    assert len(block) == 1
    m = codec.parse_match(block[0].match, 0)[0]
    vid = next(o for o in m if o.field == oxm.VLAN_VID)
    assert vid.mask == (0x1000 | 0xFFC).to_bytes(2, "big")
    exact = compile_network(two_switch_net((1, 2), (2, 1)), line3(), IdAllocator(), 4)
    assert exact.views[(0xA, 1)].ports[2].lite_base is None  # only at `lite`
    assert len(st.rules) == len(exact.rules) + 2  # one block rule per direction


def test_a_protected_vlink_carries_no_lite_tags() -> None:
    net = two_switch_net((1, 2), (2, 1), backup_num=1)
    net.scalability = "lite"
    st = compile_network(net, line3(), IdAllocator(), 4)
    assert st.views[(0xA, 1)].ports[2].lite_base is None


# --- translate -------------------------------------------------------------------------------
VIEW = VSwitchView(1, 5, 0xB, 9, 4, {
    1: PortMap(1, 1, 30, True, lite_in=(1, 40)),
    2: PortMap(2, 2, 31, True, exits=((2, 31),), lite_base=44),
    3: PortMap(3, 3, 32, True, exits=((3, 32),)),  # no LITE tags on this one
    4: PortMap(4, 4),  # a host
}, lite=LITE, lite_size=4)  # fmt: skip


def test_only_a_rule_that_forwards_to_a_known_host_carries_its_destination() -> None:
    to_d = conn(1, 0x12, 1000, 80)
    fwd = codec.encode_instructions(apply_actions=out(2))
    assert lite_destination(LITE, to_d, fwd) == 2
    assert lite_destination({}, to_d, fwd) == 0  # not a LITE network
    assert lite_destination(LITE, conn(1, 0x13, 1000, 80), fwd) == 0  # an unknown MAC
    rewrite = codec.encode_instructions(apply_actions=codec.set_field(
        codec.oxm_mac(oxm.ETH_DST, MAC[0x10])) + out(2))  # fmt: skip
    assert lite_destination(LITE, to_d, rewrite) == 0
    later = codec.encode_instructions(apply_actions=out(2), goto_table=1)
    assert lite_destination(LITE, to_d, later) == 0


def test_the_tag_pushed_on_a_lite_link_names_the_destination_and_plain_links_stay_plain() -> None:
    ins = codec.encode_instructions(apply_actions=out(2) + out(3))
    tf = translate_flow(VIEW, 0, conn(1, 0x12, 1000, 80), ins, lite_dst=2)
    ((_, phys),) = tf.flows
    acts = codec.parse_instructions(phys).apply_actions or []
    vids = [codec.oxm_int(a.set_field_oxm()) & 0xFFF for a in acts
            if a.type == ofp.OFPAT_SET_FIELD]  # fmt: skip
    assert vids == [44 | 2, 32]


def test_a_lite_rule_swaps_the_tag_onto_lite_links_and_pops_it_for_the_rest() -> None:
    acts = codec.parse_actions(lite_forward(VIEW, 1, (2, 4, 3), 2))
    kinds = [(a.type, codec.oxm_int(a.set_field_oxm()) & 0xFFF if a.type ==
              ofp.OFPAT_SET_FIELD else None) for a in acts]  # fmt: skip
    assert kinds[:2] == [(ofp.OFPAT_SET_FIELD, 44 | 2), (ofp.OFPAT_OUTPUT, None)]
    assert kinds[2] == (ofp.OFPAT_POP_VLAN, None)  # then the host and the plain link
    assert (ofp.OFPAT_SET_FIELD, 32) in kinds[3:]
    red = Reduced("lite", (), ("out", (2,)), dst=2)
    pf = lite_rule(VIEW, 1, red)
    assert pf is not None and pf.table == 0 and pf.priority == LITE_PRIORITY
    assert {f: v for f, v in _match(pf).items()} == {oxm.IN_PORT: 1,
                                                    oxm.VLAN_VID: 0x1000 | 40 | 2}  # fmt: skip
    assert lite_rule(VIEW, 2, red) is None  # no LITE tags arrive on vport 2
    assert _actions(pf)[0] == (ofp.OFPAT_SET_FIELD, 0x1000 | 44 | 2)


# --- proofs ----------------------------------------------------------------------------------
def _reducer(b_rules: list, a_rules: list, tagged: bool = True) -> Reducer:
    r = Reducer("lite")
    r.set_lite(LITE, {1}, {2, 3})  # B tags what it sends to C and D
    arriving = {1: list(arrivals(a_rules, 3, 1)), 2: [], 3: []}
    plain = {1: [] if tagged else list(arriving[1]), 2: [], 3: []}
    r.rebuild(b_rules, VPORTS, arriving, plain)
    return r


def test_connections_to_one_destination_edge_share_one_lite_rule() -> None:
    conns = [conn(s, d, 1000 + i, 80) for i, (s, d) in
             enumerate([(1, 0x10), (2, 0x10), (1, 0x11), (3, 0x11)])]  # fmt: skip
    b = [rule(m, out(2)) for m in conns]
    r = _reducer(b, [rule(m, out(3)) for m in conns])
    got = {r.plan.part(vf.serial) for vf in b}
    assert {exact for exact, _ in got} == {False}
    reds = {red for _, parts in got for _, red in parts}
    assert {(red.level, red.dst) for red in reds} == {("lite", 1)}  # one physical rule
    assert r.plan.physical_count() == 1


def test_untagged_arrivals_of_the_rule_keep_it_exact() -> None:
    m = conn(1, 0x10, 1000, 80)
    b = [rule(m, out(2))]
    r = _reducer(b, [rule(m, out(3))], tagged=False)
    assert r.plan.part(b[0].serial) == (True, ())


def test_a_destination_whose_arrivals_go_two_ways_is_not_lite() -> None:
    """0x10 and 0x11 share LITE 1, but B sends one to C and the other to D: a rule matching
    the tag alone cannot tell them apart."""
    m1, m2 = conn(1, 0x10, 1000, 80), conn(1, 0x11, 1000, 80)
    b = [rule(m1, out(2)), rule(m2, out(3))]
    r = _reducer(b, [rule(m1, out(3)), rule(m2, out(3))])
    assert all(r.plan.part(vf.serial) == (True, ()) for vf in b)
    assert r._prove_lite(b[0], 1, 1)[0] == EXACT


def test_a_rule_that_tags_nothing_falls_back_to_the_finer_levels() -> None:
    """As at a host's edge: the two hosts of one destination leave by different ports, so
    no LITE rule; with no LITE link among its outputs the rule tags nothing and is tried at
    the finer levels: `hop` fails (what arrives on 1 leaves two ways), `host` holds."""
    m1, m2 = conn(1, 0x10, 1000, 80), conn(1, 0x11, 1000, 80)
    b = [rule(m1, out(2)), rule(m2, out(3))]
    r = Reducer("lite")
    r.set_lite(LITE, {1})  # nothing B sends is tagged
    arriving = {1: list(arrivals([rule(m1, out(3)), rule(m2, out(3))], 3, 1)), 2: [], 3: []}
    r.rebuild(b, VPORTS, arriving, {1: [], 2: [], 3: []})
    parts = [r.plan.part(vf.serial) for vf in b]
    assert all(not exact and [red.level for _, red in reds] == ["host"] for exact, reds in parts)
    r.set_lite(LITE, {1}, {2, 3})  # now B tags what goes to C and D: exact, as before
    r.rebuild(b, VPORTS, arriving, {1: [], 2: [], 3: []})
    assert all(r.plan.part(vf.serial) == (True, ()) for vf in b)


def test_nothing_arriving_for_the_destination_needs_no_rule() -> None:
    b = [rule(conn(1, 0x12, 1000, 80), out(3))]
    r = _reducer(b, [rule(conn(1, 0x10, 1000, 80), out(3))])
    assert r._prove_lite(b[0], 1, 2)[0] == VACUOUS
    assert r.plan.part(b[0].serial) == (False, ())


def test_lite_rule_by_rule_changes_give_the_plan_a_rebuild_gives() -> None:
    """Random adds and removes at B and at A, some of A's sends untagged: the incremental
    plan equals a full rebuild over the same arrivals after every step."""
    rnd = random.Random(5)
    inc = Reducer("lite")
    inc.set_lite(LITE, {1}, {2})
    inc.rebuild([], VPORTS, {1: [], 2: [], 3: []}, {1: [], 2: [], 3: []})
    b_rules: dict[int, object] = {}
    reduced_seen = False
    for step in range(150):
        src, dst = rnd.randrange(1, 4), rnd.choice([0x10, 0x11, 0x12])
        m = conn(src, dst, 1000 + rnd.randrange(4), 80)
        roll = rnd.random()
        if roll < 0.35:
            plain = rnd.random() < 0.15
            inc.arrivals_grew(1, list(arrivals([rule(m, out(3))], 3, 1)), plain)
        elif roll < 0.8 or not b_rules:
            outs = (2,) if dst != 0x12 else (3,)
            vf = rule(m, out(rnd.choice(outs)) if rnd.random() < 0.9 else out(2))
            b_rules[vf.serial] = vf
            inc.rule_changed(None, vf)
        else:
            vf = b_rules.pop(rnd.choice(sorted(b_rules)))
            inc.rule_changed(vf, None)
        full = Reducer("lite")
        full.set_lite(LITE, {1}, {2})
        full.rebuild(list(b_rules.values()), VPORTS,  # type: ignore[arg-type]
                     {1: list(inc.arriving[1]), 2: [], 3: []},
                     {1: list(inc.plain[1]), 2: [], 3: []})  # fmt: skip
        for serial in b_rules:
            assert inc.plan.part(serial) == full.plan.part(serial), (step, serial)
        reduced_seen |= any(r.level == "lite" for r in inc.plan.reduced.values())
    assert reduced_seen, "nothing was ever LITE: the test proves nothing"
