"""The reduction proofs (reduce/prove.py) on hand-built tenant tables.

A line of three vswitches, as the paper's core: A (hosts on vports 1, 2; vlink to B on 3),
B (vlink to A on 1, vlink to C on 2, a third vlink on 3 towards D), C (vlink to B on 1,
hosts on 2, 3).  Tenant rules are "TCP connection" rules (eth, IPv4 and TCP src/dst) as the
paper's controller installs at every vswitch on the path.
"""

from __future__ import annotations

import random

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.codec import Oxm
from tenantvisor.reduce import levels
from tenantvisor.reduce.prove import (
    EXACT,
    Reduced,
    arrivals,
    plan_vswitch,
    prove,
    table_of,
)
from tenantvisor.virtual.flowtable import VFlow, normalize

A, B, C, D = 0xA, 0xB, 0xC, 0xD


def conn(src: int, dst: int, sport: int, dport: int) -> list[Oxm]:
    return [
        codec.oxm_mac(oxm.ETH_SRC, f"02:00:00:00:00:{src:02x}"),
        codec.oxm_mac(oxm.ETH_DST, f"02:00:00:00:00:{dst:02x}"),
        codec.oxm_u16(oxm.ETH_TYPE, 0x0800),
        Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.IP_PROTO, bytes([6])),
        Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.IPV4_SRC, bytes([10, 0, 0, src])),
        Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.IPV4_DST, bytes([10, 0, 0, dst])),
        codec.oxm_u16(oxm.TCP_SRC, sport),
        codec.oxm_u16(oxm.TCP_DST, dport),
    ]


_serials = iter(range(1, 1 << 30))


def rule(
    match: list[Oxm],
    *actions: bytes,
    prio: int = 10,
    in_port: int | None = None,
    table: int = 0,
    idle: int = 0,
    goto: int | None = None,
) -> VFlow:
    m = list(match) + ([codec.oxm_u32(oxm.IN_PORT, in_port)] if in_port is not None else [])
    ins = codec.encode_instructions(
        apply_actions=b"".join(actions) if actions or goto is None else None,
        goto_table=goto,
    )
    return VFlow(next(_serials), table, prio, m, normalize(m), ins, 0, idle, 0, 0)


def out(port: int) -> bytes:
    return codec.output(port)


def test_levels_try_the_coarsest_first_and_keep_prerequisites() -> None:
    assert levels.finer("hop") == ["hop", "host", "app"]
    assert levels.finer("host") == ["host", "app"]
    assert levels.finer("exact") == []
    assert oxm.ETH_TYPE in levels.HOST_FIELDS and oxm.IP_PROTO in levels.APP_FIELDS


def test_only_forwarding_rules_are_reducible() -> None:
    m = conn(1, 2, 1000, 80)
    assert levels.outputs(rule(m, out(3))) == (3,)
    assert levels.outputs(rule(m, out(3), out(4))) == (3, 4)
    assert levels.outputs(rule(m)) is None  # a drop
    assert levels.outputs(rule(m, out(ofp.OFPP_CONTROLLER))) is None
    assert levels.outputs(rule(m, out(ofp.OFPP_FLOOD))) is None
    assert levels.outputs(rule(m, out(3), idle=10)) is None
    assert levels.outputs(rule(m, out(3), table=1)) is None
    assert levels.outputs(rule(m, goto=1)) is None
    rewrite = codec.set_field(codec.oxm_u16(oxm.TCP_DST, 81))
    assert levels.outputs(rule(m, rewrite, out(3))) is None
    assert levels.fate(rule(m)) == levels.DROP
    assert levels.fate(rule(m, out(3))) == levels.fate(rule(conn(5, 6, 1, 2), out(3)))


def test_what_arrives_is_what_the_other_end_sends_out_of_the_vlink() -> None:
    a_rules = [rule(conn(1, 9, 1000, 80), out(3)), rule(conn(2, 9, 1001, 80), out(3)),
               rule(conn(2, 8, 1002, 80), out(1))]  # fmt: skip
    got = arrivals(a_rules, 3, 1)  # B's vport 1 faces A's vport 3
    assert len(got) == 2
    rewrite = codec.set_field(codec.oxm_u16(oxm.TCP_DST, 81))
    a_rules.append(rule(conn(3, 9, 1, 1), rewrite, out(3)))
    assert any(c.mask == 0 or (c.get("in_port")[1] and c.get("eth_src") == (0, 0))
               for c in arrivals(a_rules, 3, 1))  # fmt: skip


def test_hop_reduces_a_core_vswitch_whose_traffic_all_goes_one_way() -> None:
    # A sends three connections to B; at B they all go on to C (vport 2)
    conns = [conn(1, 9, 1000 + i, 80) for i in range(3)]
    a_rules = [rule(m, out(3)) for m in conns]
    b_rules = [rule(m, out(2)) for m in conns]
    plan = plan_vswitch(b_rules, {1: (A, 3), 2: (C, 1), 3: (D, 1)}, {A: a_rules}, "hop")
    assert plan.exact == set()
    assert {k[1] for k in plan.reduced} == {1}  # from A: reduced to (in 1 -> out 2)
    assert all(r.level == "hop" and r.kept == () for r in plan.reduced.values())
    assert {k[1] for k in plan.vacuous} == {2, 3}  # nothing of theirs arrives elsewhere
    assert plan.physical_count() == 1  # three tenant rules, one physical rule


def test_a_connection_that_turns_elsewhere_keeps_hop_from_proving_but_host_does() -> None:
    c1, c2 = conn(1, 9, 1000, 80), conn(2, 8, 1001, 80)
    a_rules = [rule(c1, out(3)), rule(c2, out(3))]
    b_rules = [rule(c1, out(2)), rule(c2, out(3))]  # c2 goes towards D
    plan = plan_vswitch(b_rules, {1: (A, 3), 2: (C, 1), 3: (D, 1)}, {A: a_rules}, "hop")
    assert {r.level for r in plan.reduced.values()} == {"host"}
    assert plan.physical_count() == 2


def test_a_higher_rule_with_another_fate_in_the_way_keeps_the_rule_finer_or_exact() -> None:
    c1 = conn(1, 9, 1000, 80)
    c1b = conn(1, 9, 1001, 80)  # same host pair, another connection
    a_rules = [rule(c1, out(3)), rule(c1b, out(3))]
    drop_c1b = rule(c1b, prio=20)  # the tenant drops c1b at B
    b_rules = [rule(c1, out(2)), drop_c1b]
    plan = plan_vswitch(b_rules, {1: (A, 3), 2: (C, 1)}, {A: a_rules}, "hop")
    (r,) = [v for k, v in plan.reduced.items()]
    assert r.level == "app"  # hop and host would also carry c1b onwards: not equivalent
    assert drop_c1b.serial in plan.exact  # a drop is never reduced


def test_a_table_miss_in_the_region_blocks_the_proof() -> None:
    c1, c2 = conn(1, 9, 1000, 80), conn(1, 9, 1001, 80)
    a_rules = [rule(c1, out(3)), rule(c2, out(3))]
    b_rules = [rule(c1, out(2))]  # c2 arrives too, and misses at B (drop)
    table = table_of(b_rules)
    got = prove(b_rules[0], 1, arrivals(a_rules, 3, 1), table, "hop")
    assert isinstance(got, Reduced) and got.level == "app"
    to_ctl = rule([], out(ofp.OFPP_CONTROLLER), prio=0)  # a table-miss rule to the controller
    b_rules.append(to_ctl)
    got = prove(b_rules[0], 1, arrivals(a_rules, 3, 1), table_of(b_rules), "hop")
    assert isinstance(got, Reduced) and got.level == "app"


def test_everything_arriving_after_a_rewrite_upstream_stays_exact_where_it_overlaps() -> None:
    c1 = conn(1, 9, 1000, 80)
    rewrite = codec.set_field(codec.oxm_u16(oxm.TCP_DST, 81))
    a_rules = [rule(c1, out(3)), rule(conn(7, 7, 7, 7), rewrite, out(3))]
    b_rules = [rule(c1, out(2))]
    got = prove(b_rules[0], 1, arrivals(a_rules, 3, 1), table_of(b_rules), "hop")
    # anything may arrive: only c1's own match (app keeps all of a connection rule) holds
    assert isinstance(got, Reduced) and got.level == "app" and len(got.kept) == 8
    b_rules.append(rule(conn(1, 9, 1000, 80)[:2], out(3), prio=5))  # same MACs, lower, elsewhere
    got = prove(b_rules[0], 1, arrivals(a_rules, 3, 1), table_of(b_rules), "hop")
    assert isinstance(got, Reduced) and got.level == "app"
    # a rule without tcp_dst, at the same priority: coarser levels would carry packets the
    # lower MAC rule sends elsewhere (or that miss); its own match is all app keeps of it
    tcp_only = rule(conn(1, 9, 1000, 80)[:-1], out(2))
    b_rules.append(tcp_only)
    got = prove(tcp_only, 1, arrivals(a_rules, 3, 1), table_of(b_rules), "hop")
    assert isinstance(got, Reduced) and got.level == "app" and len(got.kept) == 7
    # and one that outputs elsewhere than a higher rule inside its app projection: exact
    odd = rule(conn(1, 9, 1000, 80)[:-1], out(3), prio=2)
    b_rules.append(odd)
    got = prove(odd, 1, arrivals(a_rules, 3, 1), table_of(b_rules), "hop")
    assert got == EXACT


def test_edge_ingress_always_keeps_the_full_match() -> None:
    c1 = conn(1, 9, 1000, 80)
    a = [rule(c1, out(3))]  # at A, c1 enters from host vport 1 (no in_port pinned)
    plan = plan_vswitch(a, {1: None, 2: None, 3: (B, 1)}, {B: []}, "hop")
    assert plan.exact == {a[0].serial}
    pinned = [rule(c1, out(3), in_port=1)]
    plan = plan_vswitch(pinned, {1: None, 2: None, 3: (B, 1)}, {B: []}, "hop")
    assert plan.exact == {pinned[0].serial} and not plan.reduced


def test_exact_level_reduces_nothing() -> None:
    c1 = conn(1, 9, 1000, 80)
    plan = plan_vswitch([rule(c1, out(2))], {1: (A, 3), 2: (C, 1)}, {A: [rule(c1, out(3))]},
                        "exact")  # fmt: skip
    assert len(plan.exact) == 1 and not plan.reduced


def test_core_of_many_connections_shrinks_by_the_number_that_share_a_direction() -> None:
    """B sees 200 connections from A, half towards C, half towards D: hop cannot hold (two
    directions from one ingress), host can where host pairs go one way."""
    rnd = random.Random(7)
    a_rules, b_rules = [], []
    for i in range(200):
        src, dst = rnd.randrange(1, 5), rnd.randrange(10, 14)
        m = conn(src, dst, 1000 + i, 80)
        a_rules.append(rule(m, out(3)))
        b_rules.append(rule(m, out(2 if dst < 12 else 3)))  # direction by destination host
    plan = plan_vswitch(b_rules, {1: (A, 3), 2: (C, 1), 3: (D, 1)}, {A: a_rules}, "hop")
    assert not plan.exact
    assert {r.level for r in plan.reduced.values()} == {"host"}
    assert plan.physical_count() <= 16  # at most 4 x 4 host pairs instead of 200 rules


# --- the plan as physical rules (reduce/realize.py) -----------------------------------------
def test_a_plan_becomes_one_shared_rule_per_reduced_match_and_injected_packets_miss_it() -> None:
    from tenantvisor.mapping import layout
    from tenantvisor.reduce.realize import REDUCED_PRIORITY, realize
    from tenantvisor.translate.view import PortMap, VSwitchView

    view = VSwitchView(
        net_id=3, index=5, vdpid=B, dpid=0x2, n_tables=4,
        ports={1: PortMap(1, 11, link_tag=7, is_link=True),
               2: PortMap(2, 12, link_tag=9, is_link=True)},
    )  # fmt: skip
    conns = [conn(1, 9, 1000 + i, 80) for i in range(3)]
    a_rules = [rule(m, out(3)) for m in conns]
    b_rules = [rule(m, out(2)) for m in conns]
    plan = plan_vswitch(b_rules, {1: (A, 3), 2: (C, 1)}, {A: a_rules}, "hop")
    got = realize({1: view, 2: view}, {vf.serial: vf for vf in b_rules}, plan)
    assert len(got) == 1
    (pf,) = got.values()
    assert pf.priority == REDUCED_PRIORITY and pf.table == layout.TABLE_OFFSET
    assert pf.cookie >> layout.NET_SHIFT == 3
    assert pf.cookie & layout.SERIAL_MASK not in {vf.serial for vf in b_rules}
    oxms, _ = codec.parse_match(pf.match, 0)
    (meta,) = [o for o in oxms if o.field == oxm.METADATA]
    value, mask = codec.oxm_int(meta), int.from_bytes(meta.mask or b"", "big")
    assert mask & layout.INJECTED and not value & layout.INJECTED  # fabric packets only
    assert value & layout.VSWITCH_MASK == 5 << layout.VSWITCH_SHIFT
    assert (value & layout.VPORT_MASK) >> layout.VPORT_SHIFT == 1
    assert [o.field for o in oxms] == [oxm.METADATA]  # hop keeps nothing of the packet
    # the instructions are the tenant rule's own, translated for ingress 1: out 12 tagged 9
    ins = codec.parse_instructions(pf.instructions)
    outs = [codec.u32(a.raw, 4) for a in ins.apply_actions or [] if a.type == ofp.OFPAT_OUTPUT]
    assert outs == [12]


# --- a frame's fields for looking it up in the exact table (reduce/packet.py) ----------------
def test_frame_fields_are_what_openflow_matches() -> None:
    from os_ken.lib.packet import arp, ethernet, ipv4, ipv6, packet, tcp, udp, vlan

    from tenantvisor.reduce.headerspace import Cube
    from tenantvisor.reduce.packet import fields

    def frame(*protos: object) -> bytes:
        pkt = packet.Packet()
        for x in protos:
            pkt.add_protocol(x)
        pkt.serialize()
        return bytes(pkt.data)

    eth = ethernet.ethernet("02:00:00:00:00:09", "02:00:00:00:00:01", 0x0800)
    got = fields(frame(eth, ipv4.ipv4(src="10.0.0.1", dst="10.0.0.9", proto=6, tos=0xB9),
                       tcp.tcp(src_port=1000, dst_port=80)), 3)  # fmt: skip
    assert got[oxm.IN_PORT] == 3 and got[oxm.ETH_TYPE] == 0x0800
    assert (got[oxm.IPV4_SRC], got[oxm.IPV4_DST]) == (0x0A000001, 0x0A000009)
    assert (got[oxm.IP_PROTO], got[oxm.TCP_SRC], got[oxm.TCP_DST]) == (6, 1000, 80)
    assert (got[oxm.IP_DSCP], got[oxm.IP_ECN]) == (0xB9 >> 2, 1)
    # the connection rule of the tests above contains it (with in_port pinned or not)
    assert Cube.from_match(rule(conn(1, 9, 1000, 80), out(2)).norm).contains_point(got)
    assert not Cube.from_match(rule(conn(1, 9, 1001, 80), out(2)).norm).contains_point(got)
    tagged = frame(ethernet.ethernet("02:00:00:00:00:09", "02:00:00:00:00:01", 0x8100),
                   vlan.vlan(pcp=5, vid=42, ethertype=0x0800),
                   ipv4.ipv4(src="10.0.0.1", dst="10.0.0.9", proto=17), udp.udp(5, 6))  # fmt: skip
    got = fields(tagged, 1)
    assert got[oxm.VLAN_VID] == 42 | oxm.VLAN_PRESENT and got[oxm.VLAN_PCP] == 5
    assert (got[oxm.UDP_SRC], got[oxm.UDP_DST]) == (5, 6)
    got = fields(frame(ethernet.ethernet("ff:ff:ff:ff:ff:ff", "02:00:00:00:00:01", 0x0806),
                       arp.arp(src_mac="02:00:00:00:00:01", src_ip="10.0.0.1",
                               dst_ip="10.0.0.9")), 1)  # fmt: skip
    assert (got[oxm.ARP_OP], got[oxm.ARP_SPA], got[oxm.ARP_TPA]) == (1, 0x0A000001, 0x0A000009)
    v6 = frame(ethernet.ethernet("02:00:00:00:00:09", "02:00:00:00:00:01", 0x86DD),
               ipv6.ipv6(src="fe80::1", dst="fe80::9", nxt=17), udp.udp(7, 8))  # fmt: skip
    got = fields(v6, 1)
    assert got[oxm.IPV6_SRC] == 0xFE80 << 112 | 1 and got[oxm.UDP_DST] == 8
    assert fields(b"\x00" * 5, 2) == {oxm.IN_PORT: 2}  # a runt: nothing but where it came in


# --- the incremental reducer decides what a full rebuild decides ------------------------------
def test_rule_by_rule_changes_give_the_plan_a_rebuild_gives() -> None:
    """Random adds, modifies and removes at B and adds at A (what arrives at B grows): after
    every step the incremental plan equals a full rebuild over the same arrivals."""
    from tenantvisor.reduce.prove import Reducer, arrivals

    rnd = random.Random(11)
    vports = {1: (A, 3), 2: (C, 1), 3: (D, 1)}
    for level in ("hop", "host"):
        inc = Reducer(level)
        a_rules: list[VFlow] = []
        b_rules: dict[int, VFlow] = {}
        inc.rebuild([], vports, {vp: [] for vp, peer in vports.items() if peer})
        for step in range(120):
            src, dst = rnd.randrange(1, 4), rnd.randrange(10, 13)
            m = conn(src, dst, 1000 + rnd.randrange(6), 80)
            if rnd.random() < 0.3:
                m = m[:2] + m[2:6]  # a host-pair rule, wider than connections
            roll = rnd.random()
            if roll < 0.35:  # A sends something more towards B
                a_rules.append(rule(m, out(3)))
                inc.arrivals_grew(1, list(arrivals(a_rules[-1:], 3, 1)))
            elif roll < 0.8 or not b_rules:  # B gets a rule (a drop now and then)
                acts = () if rnd.random() < 0.1 else (out(rnd.choice([2, 3])),)
                vf = rule(m, *acts, prio=rnd.choice([10, 10, 20]))
                b_rules[vf.serial] = vf
                inc.rule_changed(None, vf)
            else:  # B loses one
                vf = b_rules.pop(rnd.choice(sorted(b_rules)))
                inc.rule_changed(vf, None)
            full = Reducer(level)
            full.rebuild(list(b_rules.values()), vports,
                         {1: list(inc.arriving[1]), 2: [], 3: []})  # fmt: skip
            for serial in b_rules:
                assert _plan_of(inc, serial) == _plan_of(full, serial), (level, step, serial)
        assert inc.plan.reduced, f"{level}: nothing was ever reduced: the test proves nothing"


def test_rule_by_rule_changes_keep_every_check_as_a_fresh_one_would_answer() -> None:
    """As above, with more kinds of change: modifications (new outputs, a drop), rules pinned
    to an ingress, wider rules and a catch-all at low priority, arrivals on two vports and
    some that match everything (a rewrite upstream).  After every step the plan, the
    exception drops and the answer of every check kept (they are updated arrival by arrival,
    not recomputed) equal those of a full rebuild over the same arrivals."""
    from tenantvisor.reduce.prove import Reducer, arrivals

    rnd = random.Random(5)
    vports = {1: (A, 3), 2: (C, 1), 3: (D, 1), 4: None}
    for level in ("hop", "host", "app"):
        inc = Reducer(level)
        b_rules: dict[int, VFlow] = {}
        inc.rebuild([], vports, {1: [], 2: [], 3: []})
        seen_reduced = seen_exceptions = False
        for step in range(150):
            src, dst = rnd.randrange(1, 4), rnd.randrange(10, 13)
            m = conn(src, dst, 1000 + rnd.randrange(12), 80)
            shape = rnd.random()
            if shape < 0.2:
                m = m[:2] + m[2:6]  # a host pair
            elif shape < 0.22:
                m = m[2:3]  # all of IPv4
            roll = rnd.random()
            if roll < 0.3:  # something more arrives, from A (vport 1) or C (vport 2)
                vp, far = rnd.choice([(1, 3), (2, 1)])
                acts = [out(far)]
                if rnd.random() < 0.05:
                    acts.insert(0, codec.set_field(codec.oxm_u16(oxm.TCP_DST, 81)))
                got = list(arrivals([rule(m, *acts)], far, vp))
                if rnd.random() < 0.1:
                    got = got + got  # listed twice: counted twice
                inc.arrivals_grew(vp, got)
            elif roll < 0.7 or not b_rules:  # B gets a rule
                acts = () if rnd.random() < 0.1 else (out(rnd.choice([2, 2, 2, 2, 1, 3, 4])),)
                pin = rnd.choice([None, None, None, 1, 2])
                prio = rnd.choice([10, 10, 20, 5])
                if rnd.random() < 0.01:
                    m, prio = [], 0  # a table-miss rule
                vf = rule(m, *acts, prio=prio, in_port=pin)
                b_rules[vf.serial] = vf
                inc.rule_changed(None, vf)
            elif roll < 0.85:  # B's rule gets new instructions (a MODIFY: the same rule)
                vf = b_rules[rnd.choice(sorted(b_rules))]
                old = VFlow(vf.serial, vf.table, vf.priority, vf.match, vf.norm,
                            vf.instructions, 0, 0, 0, 0)  # fmt: skip
                acts = () if rnd.random() < 0.2 else (out(rnd.choice([1, 2, 3])),)
                vf.instructions = codec.encode_instructions(apply_actions=b"".join(acts))
                inc.rule_changed(old, vf)
            else:  # B loses one
                vf = b_rules.pop(rnd.choice(sorted(b_rules)))
                inc.rule_changed(vf, None)
            full = Reducer(level)
            full.rebuild(list(inc.rules.values()), vports,
                         {vp: list(inc.arriving[vp]) for vp in (1, 2, 3)})  # fmt: skip
            for serial in b_rules:
                assert _plan_of(inc, serial) == _plan_of(full, serial), (level, step, serial)
            assert inc.exceptions() == full.exceptions(), (level, step)
            want: dict[int, set[object]] = {}  # those of the checks that decided a reduced rule
            for mine in inc.outcomes.values():
                for o, _ in mine.values():
                    if isinstance(o, Reduced) and (got := inc._memo[o.check].answer[1]):
                        want.setdefault(o.check[0], set()).update(got)
            assert inc.exceptions() == want, (level, step)
            for key, chk in inc._memo.items():
                fresh = full._check(*key)
                assert (chk.answer[0], set(chk.answer[1])) == (fresh[0], set(fresh[1])), (
                    level, step, key,
                )  # fmt: skip
            seen_reduced = seen_reduced or bool(full.plan.reduced)
            seen_exceptions = seen_exceptions or bool(full.exceptions())
        assert seen_reduced, f"{level}: nothing was ever reduced: the test proves nothing"
        assert seen_exceptions or level == "app", f"{level}: no exception drop was needed"


def _plan_of(r: object, serial: int) -> object:
    return r.plan.part(serial)  # type: ignore[attr-defined]


def test_a_rule_change_redoes_a_bounded_number_of_checks_not_a_rebuild() -> None:
    """200 connections through a core vswitch, added one by one (each also arriving from
    A): each change runs a few region checks (shared by every rule projecting onto the same
    region), however many rules there are.  (Time per rule: `tenantvisor bench reduction`.)"""
    from tenantvisor.reduce.prove import Reducer, arrivals

    inc = Reducer("hop")
    vports = {1: (A, 3), 2: (C, 1), 3: (D, 1)}
    inc.rebuild([], vports, {1: [], 2: [], 3: []})
    real = inc._check
    runs: list[int] = []

    def counted(vport: int, region: object, expected: object) -> bool | None:
        if (vport, region, expected) not in inc._memo:
            runs.append(1)
        return real(vport, region, expected)  # type: ignore[arg-type]

    inc._check = counted  # type: ignore[method-assign]
    per_change = []
    for i in range(200):
        m = conn(1 + i % 4, 10 + i % 3, 1000 + i, 80)
        runs.clear()
        if i % 2:  # the path installed from its far end
            inc.rule_changed(None, rule(m, out(2)))
            inc.arrivals_grew(1, list(arrivals([rule(m, out(3))], 3, 1)))
        else:  # from its source end: a moment of a miss here, dropped above the hop rule
            inc.arrivals_grew(1, list(arrivals([rule(m, out(3))], 3, 1)))
            inc.rule_changed(None, rule(m, out(2)))
        per_change.append(len(runs))
    assert inc.plan.physical_count() == 1  # all of them: in 1 -> out 2, no drop left
    assert max(per_change) <= 8, per_change  # not growing with the 200 rules


def test_a_packet_outs_rewrites_are_applied_as_a_switch_would() -> None:
    """What each output of a PACKET_OUT sends, rewrites and checksums included, compared
    with os-ken building the rewritten packet itself."""
    from os_ken.lib.packet import ethernet, ipv4, packet, tcp, udp, vlan

    from tenantvisor.reduce.packet import apply_actions

    def frame(dst_ip: str, dport: int, proto: object, tagged: bool = False) -> bytes:
        pkt = packet.Packet()
        if tagged:
            pkt.add_protocol(ethernet.ethernet("02:00:00:00:00:09", "02:00:00:00:00:01", 0x8100))
            pkt.add_protocol(vlan.vlan(vid=7, ethertype=0x0800))
        else:
            pkt.add_protocol(ethernet.ethernet("02:00:00:00:00:09", "02:00:00:00:00:01", 0x0800))
        p4 = 6 if proto is tcp.tcp else 17
        pkt.add_protocol(ipv4.ipv4(src="10.0.0.1", dst=dst_ip, proto=p4))
        pkt.add_protocol(proto(src_port=1000, dst_port=dport) if p4 == 6 else proto(1000, dport))  # type: ignore[operator]
        pkt.add_protocol(b"payload!")
        pkt.serialize()
        return bytes(pkt.data)

    for proto in (tcp.tcp, udp.udp):
        field = oxm.TCP_DST if proto is tcp.tcp else oxm.UDP_DST
        acts = codec.parse_actions(
            out(1)
            + codec.set_field(
                Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.IPV4_DST, bytes([10, 0, 0, 7]))
            )
            + codec.set_field(codec.oxm_u16(field, 8080))
            + out(2)
        )
        got = apply_actions(frame("10.0.0.9", 80, proto), acts)
        assert got == [(1, frame("10.0.0.9", 80, proto)), (2, frame("10.0.0.7", 8080, proto))]
    pop = codec.parse_actions(codec.pop_vlan() + out(3))
    ((port, popped),) = apply_actions(frame("10.0.0.9", 80, udp.udp, tagged=True), pop) or []
    plain = frame("10.0.0.9", 80, udp.udp)
    size = 14 + 20 + 8 + 8  # Ethernet padding aside
    assert port == 3 and popped[:size] == plain[:size]
    push = codec.parse_actions(codec.push_vlan(0x8100) + out(4))
    ((_, pushed),) = apply_actions(frame("10.0.0.9", 80, udp.udp), push) or []
    assert (
        pushed[12:16] == b"\x81\x00\x00\x00" and pushed[16:] == frame("10.0.0.9", 80, udp.udp)[12:]
    )
    group = codec.parse_actions(struct_group(5))
    assert apply_actions(frame("10.0.0.9", 80, udp.udp), group) is None  # left to the pswitch


def struct_group(gid: int) -> bytes:
    import struct

    return struct.pack("!HHI", ofp.OFPAT_GROUP, 8, gid)


def test_an_arrival_that_misses_is_dropped_above_the_reduced_rule_not_refined_for() -> None:
    """c2 reaches B before B has its rule (its path installed from the source end): at hop
    B keeps one rule and an exact drop for c2 above it; once c2's rule comes, the drop goes.
    A miss for every arrival means the rule is not needed there at all."""
    from tenantvisor.reduce.prove import Reducer
    from tenantvisor.reduce.realize import EXCEPTION_PRIORITY, exception_rule
    from tenantvisor.translate.view import PortMap, VSwitchView

    c1, c2 = conn(1, 9, 1000, 80), conn(2, 9, 1001, 80)
    a_rules = [rule(c1, out(3)), rule(c2, out(3))]
    r1 = rule(c1, out(2))
    plan = plan_vswitch([r1], {1: (A, 3), 2: (C, 1)}, {A: a_rules}, "hop")
    ((vp, red),) = plan.reduced_of(r1.serial)
    assert vp == 1 and red.level == "hop" and len(red.exceptions) == 1
    arrival, winner = red.exceptions[0]
    assert winner is None and arrival.get("tcp_src") == (1001, 0xFFFF)
    view = VSwitchView(net_id=3, index=5, vdpid=B, dpid=2, n_tables=4,
                       ports={1: PortMap(1, 11, link_tag=7, is_link=True),
                              2: PortMap(2, 12, link_tag=9, is_link=True)})  # fmt: skip
    pf = exception_rule(view, arrival, 1, None, {}, {})
    assert pf.priority == EXCEPTION_PRIORITY
    assert codec.parse_instructions(pf.instructions).apply_actions in (None, [])  # a drop
    # the rule for c2 comes: the drop goes
    inc = Reducer("hop")
    inc.rebuild([r1], {1: (A, 3), 2: (C, 1)},
                {1: list(arrivals(a_rules, 3, 1)), 2: []})  # fmt: skip
    assert inc.exceptions() == {1: {(arrival, None)}}  # kept per check, not per rule
    r2 = rule(c2, out(2))
    inc.rule_changed(None, r2)
    assert inc.exceptions() == {}
    assert inc.plan.physical_count() == 1
    # nothing arriving gets this rule's fate: no rule for this ingress
    lonely = rule(conn(5, 5, 5, 5), out(2))
    only_misses = plan_vswitch([lonely], {1: (A, 3), 2: (C, 1)}, {A: a_rules}, "hop")
    assert (lonely.serial, 1) in only_misses.vacuous and not only_misses.reduced


def test_what_an_action_set_sends_may_have_been_rewritten_first() -> None:
    """The action set runs last: after the rule's apply-actions, after later tables (goto),
    and its set-fields before its output whatever their order.  What it sends over a vlink
    is then anything (found by tests/flow/test_reduction_equivalence.py)."""
    from tenantvisor.reduce.prove import EVERYTHING, image_toward

    m = conn(1, 9, 1000, 80)
    rewrite = codec.set_field(codec.oxm_u16(oxm.TCP_DST, 81))

    def write_out(apply: bytes = b"", goto: int | None = None, write: bytes = b"") -> VFlow:
        ins = codec.encode_instructions(
            apply_actions=apply or None, write_actions=write + out(3), goto_table=goto
        )
        return VFlow(next(_serials), 0, 10, m, normalize(m), ins, 0, 0, 0, 0)

    plain = image_toward(write_out(), 3)
    assert plain is not None and plain != EVERYTHING  # its own match: nothing rewrote it
    assert image_toward(write_out(goto=1), 3) == EVERYTHING  # a later table may rewrite
    assert image_toward(write_out(apply=rewrite), 3) == EVERYTHING  # its apply-actions did
    tail = codec.encode_instructions(write_actions=out(3) + rewrite)  # set-field after, still first
    late = VFlow(next(_serials), 0, 10, m, normalize(m), tail, 0, 0, 0, 0)
    assert image_toward(late, 3) == EVERYTHING
    assert image_toward(rule(m, out(3), rewrite), 3) is not None  # apply: rewrite after output
    assert image_toward(rule(m, out(3), rewrite), 3) != EVERYTHING


def test_a_rule_kept_whole_at_several_ingresses_stays_one_exact_rule() -> None:
    """At `app` a connection rule keeps every field; its packets arrive over two vlinks:
    two reduced copies would cost two rules where its exact rule costs one.  At `hop` the
    copies match nothing but the ingress and are shared with every rule of those outputs:
    they stay."""
    from tenantvisor.reduce.prove import Reducer

    m = conn(1, 2, 1000, 80)
    b = rule(m, out(2))
    arriving = {1: list(arrivals([rule(m, out(3))], 3, 1)), 2: [],
                3: list(arrivals([rule(m, out(1))], 1, 3))}  # fmt: skip
    vports = {1: (A, 3), 2: (C, 1), 3: (D, 1)}
    app = Reducer("app")
    app.rebuild([b], vports, arriving)
    assert app.plan.part(b.serial) == (True, ())
    assert app.plan.physical_count() == 1
    hop = Reducer("hop")
    hop.rebuild([b], vports, arriving)
    exact, reds = hop.plan.part(b.serial)
    assert not exact and [vp for vp, _ in reds] == [1, 3]


def test_what_a_table_miss_punts_is_an_exception_not_a_refinement() -> None:
    """A reactive controller's table-miss rule sends c2 (whose rule at B has not come yet)
    to the controller: at hop B keeps one rule and, above it, an exact copy of the table-miss
    rule for c2 (its cookie: the PACKET_IN says NO_MATCH, the miss rule's counters count it);
    once c2's rule comes, the copy goes.  A table-miss rule that does more (a rewrite) is
    not an exception: the rule refines instead."""
    from tenantvisor.reduce.prove import Reducer
    from tenantvisor.reduce.realize import EXCEPTION_PRIORITY, exception_rule
    from tenantvisor.translate.view import PortMap, VSwitchView

    c1, c2 = conn(1, 9, 1000, 80), conn(2, 9, 1001, 80)
    a_rules = [rule(c1, out(3)), rule(c2, out(3))]
    r1 = rule(c1, out(2))
    punt = rule([], codec.output(ofp.OFPP_CONTROLLER, 0xFFFF), prio=0)
    assert levels.punts(punt)
    inc = Reducer("hop")
    inc.rebuild([r1, punt], {1: (A, 3), 2: (C, 1)},
                {1: list(arrivals(a_rules, 3, 1)), 2: []})  # fmt: skip
    ((vp, red),) = inc.plan.reduced_of(r1.serial)
    assert vp == 1 and red.level == "hop"
    ((arrival, winner),) = inc.exceptions()[1]
    assert winner == punt.serial and arrival.get("tcp_src") == (1001, 0xFFFF)
    view = VSwitchView(net_id=3, index=5, vdpid=B, dpid=2, n_tables=4,
                       ports={1: PortMap(1, 11, link_tag=7, is_link=True),
                              2: PortMap(2, 12, link_tag=9, is_link=True)})  # fmt: skip
    pf = exception_rule(view, arrival, 1, punt, {}, {})
    assert pf.priority == EXCEPTION_PRIORITY and pf.cookie & 0xFFFF == punt.serial & 0xFFFF
    (act,) = codec.parse_instructions(pf.instructions).apply_actions or []
    assert codec.u32(act.raw, 4) == ofp.OFPP_CONTROLLER
    inc.rule_changed(None, rule(c2, out(2)))
    assert inc.exceptions() == {} and inc.plan.physical_count() == 2  # the punt stays exact
    rewrite = rule([], codec.set_field(codec.oxm_u16(oxm.VLAN_VID, 0x1005))
                   + codec.output(ofp.OFPP_CONTROLLER, 0xFFFF), prio=0)  # fmt: skip
    assert not levels.punts(rewrite)
    other = Reducer("hop")
    other.rebuild([r1, rewrite], {1: (A, 3), 2: (C, 1)},
                  {1: list(arrivals(a_rules, 3, 1)), 2: []})  # fmt: skip
    assert other.exceptions() == {} and other.plan.reduced_of(r1.serial)[0][1].level != "hop"
