"""The compile stage: desired physical state from intent, topology and allocations (pure).

Small intents on hand-built fabrics, with the rules and groups they must give spelled out:
a vlink over a line, backups on a ring and what a link failure changes, a big switch over
three pswitches, manual paths, and determinism (the same inputs give the same state).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.network import NetworkState, compile_network, release_unused, stat_key
from tenantvisor.mapping import layout
from tenantvisor.mapping.alloc import IdAllocator
from tenantvisor.openflow import codec, oxm
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo
from tenantvisor.program import diff
from tenantvisor.translate import infra
from tenantvisor.translate.flow import PhysFlow, translate_flow
from tenantvisor.translate.group import parse_buckets
from tenantvisor.virtual.model import (
    NO_LIMITS,
    Host,
    Limits,
    ManualPath,
    Route,
    VirtualNetwork,
    VLink,
    VLinkEnd,
    VPort,
    VPortKind,
    VSwitch,
)

N_TABLES = 4


def _topo(n: int, links: list[tuple[int, int, int, int]], ports: int = 4) -> PhysicalTopology:
    t = PhysicalTopology()
    for d in range(1, n + 1):
        t.add_switch(PSwitchInfo(d, {p: PPort(p, f"s{d}-eth{p}", "") for p in range(1, ports + 1)}))
    for a, pa, b, pb in links:
        t.add_link(PLink(a, pa, b, pb))
        t.add_link(PLink(b, pb, a, pa))
    return t


def line3() -> PhysicalTopology:
    """s1:2 - 1:s2:2 - 1:s3; hosts on port 3 of every switch."""
    return _topo(3, [(1, 2, 2, 1), (2, 2, 3, 1)])


def ring4() -> PhysicalTopology:
    """s1 -2/1- s2 -2/1- s3 -2/1- s4 -2/1- s1 (port 2 clockwise, port 1 back)."""
    return _topo(4, [(1, 2, 2, 1), (2, 2, 3, 1), (3, 2, 4, 1), (4, 2, 1, 1)])


def two_switch_net(
    src: tuple[int, int], dst: tuple[int, int], backup_num: int = 0
) -> VirtualNetwork:
    """vswitch A on src's pswitch (host on port 3, link vport on src's port), vswitch B on
    dst's pswitch likewise, one vlink between them."""
    net = VirtualNetwork(1, 1, [])
    a = VSwitch(0xA, [src[0]], 1)
    a.ports = {
        1: VPort(1, src[0], 3, VPortKind.EDGE),
        2: VPort(2, src[0], src[1], VPortKind.LINK, 1),
    }
    b = VSwitch(0xB, [dst[0]], 2)
    b.ports = {
        1: VPort(1, dst[0], 3, VPortKind.EDGE),
        2: VPort(2, dst[0], dst[1], VPortKind.LINK, 1),
    }
    net.switches = {0xA: a, 0xB: b}
    net.links = {1: VLink(1, VLinkEnd(0xA, 2), VLinkEnd(0xB, 2), backup_num=backup_num)}
    net.hosts = {
        1: Host(1, 0xA, 1, "02:00:00:00:00:01"),
        2: Host(2, 0xB, 1, "02:00:00:00:00:02"),
    }
    return net


def _compile(
    net: VirtualNetwork, topo: PhysicalTopology, alloc: IdAllocator | None = None
) -> NetworkState:
    return compile_network(net, topo, alloc or IdAllocator(), N_TABLES)


def _rules_on(st: NetworkState, dpid: int) -> list[PhysFlow]:
    return sorted((pf for pf in st.rules.values() if pf.dpid == dpid), key=lambda p: p.key)


def _match(pf: PhysFlow) -> dict[int, int]:
    return {o.field: codec.oxm_int(o) for o in codec.parse_match(pf.match, 0)[0]}


def _actions(pf: PhysFlow) -> list[tuple[int, int | None]]:
    ins = codec.parse_instructions(pf.instructions)
    out = []
    for a in ins.apply_actions or []:
        if a.type == ofp.OFPAT_OUTPUT:
            out.append((a.type, a.output_port))
        elif a.type == ofp.OFPAT_SET_FIELD:
            f = a.set_field_oxm()
            out.append((a.type, codec.oxm_int(f) if f.field == oxm.VLAN_VID else -f.field))
        elif a.type == ofp.OFPAT_GROUP:
            out.append((a.type, codec.u32(a.raw, 4)))
        else:
            out.append((a.type, None))
    return out


# --- a vlink over a line ----------------------------------------------------------------------
def test_a_vlink_over_a_line_classifies_swaps_and_terminates() -> None:
    st = _compile(two_switch_net((1, 2), (3, 1)), line3())
    # s1: the host is classified into (vswitch 1, vport 1); the reverse direction ends here
    s1 = _rules_on(st, 1)
    host = [pf for pf in s1 if oxm.ETH_SRC in _match(pf)]
    assert len(host) == 1 and _match(host[0])[oxm.IN_PORT] == 3
    ins = codec.parse_instructions(host[0].instructions)
    assert ins.write_metadata == (layout.vswitch_meta(1, 1), layout.HV_META_MASK)
    assert ins.goto_table == layout.TABLE_OFFSET
    # s2: transit in both directions, each swapping the tag of the port it enters next
    s2 = _rules_on(st, 2)
    assert len(s2) == 2
    for pf in s2:
        acts = _actions(pf)
        assert acts[0][0] == ofp.OFPAT_SET_FIELD and acts[-1][0] == ofp.OFPAT_OUTPUT
        assert acts[-1][1] == (2 if _match(pf)[oxm.IN_PORT] == 1 else 1)
    # s3: the s1 -> s3 direction ends by popping the tag and classifying into (2, 2)
    end = [pf for pf in _rules_on(st, 3) if _match(pf).get(oxm.IN_PORT) == 1]
    assert len(end) == 1
    assert _actions(end[0]) == [(ofp.OFPAT_POP_VLAN, None)]
    assert codec.parse_instructions(end[0].instructions).write_metadata == (
        layout.vswitch_meta(2, 2), layout.HV_META_MASK,
    )  # fmt: skip
    # every rule says it is this network's infrastructure
    assert {pf.cookie for pf in st.rules.values()} == {layout.infra_cookie(1)}
    # the head end's view: the link vport pushes tag 1 out of port 2, no failover group
    pm = st.views[(0xA, 1)].ports[2]
    assert pm.exits == ((2, pm.link_tag),) and pm.groups == () and pm.up


def test_a_vswitch_gets_a_flood_group_for_floods_in_action_sets_and_buckets() -> None:
    """One ALL group per (vswitch, pswitch), a bucket per vport (an edge vport through its
    counting group, a vlink's tagged): FLOOD where one action must do.  None where output
    to a vport depends on the ingress (here: a protected vlink)."""
    st = _compile(two_switch_net((1, 2), (3, 1)), line3())
    view = st.views[(0xA, 1)]
    assert view.flood_group is not None
    g = st.groups[(1, view.flood_group)]
    assert g.type == ofp.OFPGT_ALL
    buckets = [codec.parse_actions(raw) for *_, raw in parse_buckets(g.buckets)]
    edge, link = view.ports[1], view.ports[2]
    assert [[a.type for a in acts] for acts in buckets] == [
        [ofp.OFPAT_GROUP],
        [ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_SET_FIELD, ofp.OFPAT_OUTPUT],
    ]
    assert codec.u32(buckets[0][0].raw, 4) == edge.tx_group
    assert buckets[1][-1].output_port == link.phys_port
    protected = _compile(two_switch_net((1, 2), (4, 1), backup_num=1), ring4())
    assert protected.views[(0xA, 1)].flood_group is None


def test_the_same_inputs_compile_to_the_same_state() -> None:
    net, topo = two_switch_net((1, 2), (4, 1), backup_num=1), ring4()
    one, two = _compile(net, topo), _compile(net, topo)
    assert one.rules == two.rules and one.groups == two.groups and one.views == two.views


def test_allocations_are_kept_across_compiles_and_released_when_unused() -> None:
    net, topo, alloc = two_switch_net((1, 2), (3, 1)), line3(), IdAllocator()
    first = _compile(net, topo, alloc)
    release_unused(alloc, 1, first.owners)
    again = _compile(net, topo, alloc)
    assert again.rules == first.rules
    release_unused(alloc, 1, set())
    assert len(alloc) == 0


# --- backups on a ring and a link failure -----------------------------------------------------
def test_a_protected_vlink_gets_a_fast_failover_group_over_disjoint_paths() -> None:
    st = _compile(two_switch_net((1, 2), (2, 1), backup_num=1), ring4())
    pm = st.views[(0xA, 1)].ports[2]
    assert [port for port, _ in pm.exits] == [2, 1]  # primary s1->s2 direct, backup s1->s4
    # one group per possible in_port (0: injected, 2 and 3 are the vports' own ports)
    assert [v for v, _ in pm.groups] == [0, 2, 3]
    for variant, gid in pm.groups:
        g = st.groups[(1, gid)]
        assert g.type == ofp.OFPGT_FF
        buckets = parse_buckets(g.buckets)
        assert [b[1] for b in buckets] == [2, 1]  # each bucket watches the port it leaves by
        outs = [codec.parse_actions(b[3])[-1].output_port for b in buckets]
        assert outs == [ofp.OFPP_IN_PORT if p == variant else p for p in (2, 1)]
    # the backup enters s2 through port 2, not the vport's port 1: in_port is made 1
    ends = [pf for pf in _rules_on(st, 2) if _match(pf).get(oxm.IN_PORT) == 2]
    assert len(ends) == 1
    acts = codec.parse_instructions(ends[0].instructions).apply_actions or []
    in_port_sets = [a.raw for a in acts if a.type == ofp.OFPAT_EXPERIMENTER]
    assert in_port_sets == [codec.load_in_port(1)]


def test_a_tenant_rule_to_a_protected_vport_uses_the_group_of_its_in_port() -> None:
    st = _compile(two_switch_net((1, 2), (2, 1), backup_num=1), ring4())
    view = st.views[(0xA, 1)]
    variants = dict(view.ports[2].groups)
    pinned = translate_flow(
        view, 0, [codec.oxm_u32(oxm.IN_PORT, 1)],
        codec.encode_instructions(apply_actions=codec.output(2)),
    )  # fmt: skip
    (flow,) = pinned.flows
    acts = codec.parse_instructions(flow[1]).apply_actions or []
    assert [(a.type, codec.u32(a.raw, 4)) for a in acts] == [(ofp.OFPAT_GROUP, variants[3])]
    # not pinned: one rule per ingress, none back toward the vlink it came from
    loose = translate_flow(view, 0, [], codec.encode_instructions(apply_actions=codec.output(2)))
    assert len(loose.flows) == 1 + len(view.ports)
    groups_used = {
        codec.u32(a.raw, 4)
        for _, ins in loose.flows
        for a in codec.parse_instructions(ins).apply_actions or []
        if a.type == ofp.OFPAT_GROUP
    }
    assert groups_used == {variants[0], variants[3]}  # from the controller, from the host


def test_a_failed_link_keeps_the_backup_rules_and_changes_only_the_group() -> None:
    net, alloc = two_switch_net((1, 2), (2, 1), backup_num=1), IdAllocator()
    before = _compile(net, ring4(), alloc)
    cut = ring4()
    cut.set_port(1, PPort(2, "s1-eth2", "", up=False))  # the primary's first link
    after = _compile(net, cut, alloc)
    pm_b, pm_a = before.views[(0xA, 1)].ports[2], after.views[(0xA, 1)].ports[2]
    assert pm_a.up and [p for p, _ in pm_a.exits] == [1]
    assert pm_a.groups == pm_b.groups  # same group ids: the tenant's rules do not change
    assert pm_a.exits[0] == pm_b.exits[1]  # the backup, with the tag it had
    backup_rules = {k: pf for k, pf in before.rules.items() if k[0] in (3, 4)}
    assert backup_rules.items() <= after.rules.items()  # transit on s4/s3 untouched
    assert not any(
        k[0] == 2 and _match(pf).get(oxm.IN_PORT) == 1
        for k, pf in after.rules.items()
        if oxm.VLAN_VID in _match(pf)
    )
    for _, gid in pm_a.groups:
        assert len(parse_buckets(after.groups[(1, gid)].buckets)) == 1


def test_no_path_left_takes_the_vport_down() -> None:
    topo = line3()
    topo.set_port(2, PPort(2, "s2-eth2", "", up=False))
    st = _compile(two_switch_net((1, 2), (3, 1)), topo)
    assert not st.views[(0xA, 1)].ports[2].up
    assert st.vlink_paths[(1, 0)] == []


# --- manual paths -----------------------------------------------------------------------------
def test_manual_paths_follow_priority_and_fall_back_when_a_link_fails() -> None:
    net = two_switch_net((1, 2), (2, 1))
    lk = net.links[1]
    lk.algorithm = "manual"
    direct = ((1, 2, 2, 1),)
    around = ((1, 1, 4, 2), (4, 1, 3, 2), (3, 1, 2, 2))
    lk.paths = [ManualPath(direct, 10), ManualPath(around, 20)]
    st = _compile(net, ring4())
    assert [len(p) for p in st.vlink_paths[(1, 0)]] == [3, 1]  # highest priority first
    assert st.views[(0xA, 1)].ports[2].groups  # two paths: protected
    cut = ring4()
    cut.set_port(4, PPort(1, "s4-eth1", "", up=False))
    assert [len(p) for p in _compile(net, cut).vlink_paths[(1, 0)]] == [1]


# --- a big switch -----------------------------------------------------------------------------
def big_net(routing: str = "spf", backup_num: int = 0) -> VirtualNetwork:
    """One vswitch over s1, s2, s3 of the line; a host vport on s1 and on s3."""
    net = VirtualNetwork(1, 1, [])
    sw = VSwitch(0xB16, [1, 2, 3], 7, routing=routing, backup_num=backup_num)
    sw.ports = {1: VPort(1, 1, 3, VPortKind.EDGE), 2: VPort(2, 3, 3, VPortKind.EDGE)}
    net.switches = {sw.vdpid: sw}
    net.hosts = {
        1: Host(1, sw.vdpid, 1, "02:00:00:00:00:01"),
        2: Host(2, sw.vdpid, 2, "02:00:00:00:00:02"),
    }
    return net


def test_a_big_switch_reaches_its_other_pswitches_over_internal_routes() -> None:
    st = _compile(big_net(), line3())
    assert set(st.views) == {(0xB16, 1), (0xB16, 2), (0xB16, 3)}
    remote = st.views[(0xB16, 1)].ports[2]
    assert remote.remote and remote.up and remote.exits[0][0] == 2  # toward s2
    local = st.views[(0xB16, 3)].ports[2]
    assert not local.remote and local.phys_port == 3
    # s3 ends the route from s1 by delivering to vport 2's port (through its tx group)
    ends = [
        pf
        for pf in _rules_on(st, 3)
        if _match(pf).get(oxm.IN_PORT) == 1 and oxm.VLAN_VID in _match(pf)
    ]
    assert len(ends) == 1
    assert _actions(ends[0]) == [(ofp.OFPAT_POP_VLAN, None), (ofp.OFPAT_GROUP, local.tx_group)]
    # s2 only carries: no host is on it, its view has only remote vports
    assert all(pm.remote for pm in st.views[(0xB16, 2)].ports.values())
    # a tenant rule on the big switch is installed where packets enter: s1 and s3 (on s2
    # it would match nothing, and pinned to a remote vport it is not installed at all)
    ins = codec.encode_instructions(apply_actions=codec.output(2))
    pinned = translate_flow(st.views[(0xB16, 3)], 0, [codec.oxm_u32(oxm.IN_PORT, 1)], ins)
    assert pinned.flows == ()


def test_manual_internal_routes() -> None:
    net = big_net(routing="manual")
    sw = net.switches[0xB16]
    sw.routes = {1: Route(1, 1, 2, ManualPath(((1, 2, 2, 1), (2, 2, 3, 1)), 5))}
    st = _compile(net, line3())
    assert st.views[(0xB16, 1)].ports[2].up
    assert not st.views[(0xB16, 3)].ports[1].up  # no route back set: that way is down


# --- a host that moved (issue 10) ----------------------------------------------------------------
def _host_rules(st: NetworkState, mac: str) -> list[PhysFlow]:
    want = codec.oxm_mac(oxm.ETH_SRC, mac)
    return [pf for pf in st.rules.values()
            if pf.table == 0 and want in codec.parse_match(pf.match, 0)[0]]  # fmt: skip


def test_a_host_moved_to_another_pswitch_is_reached_over_the_fabric() -> None:
    """Host 1 (vswitch A, vport 1 on s1 port 3) is now on s3 port 3: it is classified there
    and carried to s1 (arriving with in_port 3, its vport's own port); what A sends to vport
    1 is carried to s3 port 3.  The tenant's vport stays as it was."""
    net = two_switch_net((1, 2), (2, 1))
    home = _compile(net, line3())
    net.hosts[1].location = (3, 3)
    st = _compile(net, line3())
    (ingress,) = _host_rules(st, "02:00:00:00:00:01")
    assert ingress.dpid == 3 and _match(ingress)[oxm.IN_PORT] == 3
    acts = _actions(ingress)
    assert acts[-1] == (ofp.OFPAT_OUTPUT, 1)  # toward s2
    tag_in = acts[1][1]
    s1 = [pf for pf in _rules_on(st, 1) if _match(pf).get(oxm.VLAN_VID) is not None
          and pf not in _rules_on(home, 1)]  # fmt: skip
    (arrive,) = [pf for pf in s1 if codec.parse_instructions(pf.instructions).goto_table]
    assert codec.parse_instructions(arrive.instructions).write_metadata is not None
    pm = st.views[(0xA, 1)].ports[1]
    assert pm.link_tag is not None and pm.exits == ((2, pm.link_tag),) and not pm.is_link
    assert pm.phys_port == 3 and pm.hosts == ("02:00:00:00:00:01",)
    # the path out ends on s3 by popping the tag and leaving through port 3
    deliver = [pf for pf in _rules_on(st, 3) if (ofp.OFPAT_OUTPUT, 3) in _actions(pf)
               and (ofp.OFPAT_POP_VLAN, None) in _actions(pf)]  # fmt: skip
    assert len(deliver) == 1 and tag_in != pm.link_tag
    assert st.port_names == home.port_names
    assert not [pf for pf in _host_rules(home, "02:00:00:00:00:01") if pf in st.rules.values()]
    # and home again: exactly the first state
    net.hosts[1].location = None
    assert _compile(net, line3()).rules.keys() == home.rules.keys()


def hub5() -> PhysicalTopology:
    """s1:2 - 1:s2, and s2 a hub: s2:2 - 1:s3, s2:4 - 1:s4 (port 3 of s2 is a host's)."""
    return _topo(4, [(1, 2, 2, 1), (2, 2, 3, 1), (2, 4, 4, 1)], ports=5)


def test_a_host_moving_on_keeps_every_hop_its_new_paths_share_with_the_old() -> None:
    """Host 1 (home s1) moves from s3 to s4: both ways its paths share the hops between
    s1 and the hub s2.  Their rules stay as they are; the one at s2 that sent toward s3
    now sends toward s4 (modified in place); s4's classification and delivery, and s2's
    rule for what arrives from s4, are new; s3's and s2's from s3 go.  The vport's view
    does not change, so no rule of the tenant is re-translated."""
    net = two_switch_net((1, 2), (2, 1))
    topo, alloc = hub5(), IdAllocator()
    net.hosts[1].location = (3, 3)
    at3 = _compile(net, topo, alloc)
    net.hosts[1].location = (4, 3)
    at4 = _compile(net, topo, alloc)
    d = diff.diff_rules(at3.rules, at4.rules)
    assert sorted(pf.dpid for pf in d.add) == [2, 4, 4]
    assert sorted(pf.dpid for pf in d.delete) == [2, 3, 3]
    (mod,) = d.modify
    assert mod.dpid == 2 and _match(mod)[oxm.IN_PORT] == 1  # from home, on toward s4
    assert _actions(mod)[-1] == (ofp.OFPAT_OUTPUT, 4)
    assert _actions(at3.rules[mod.key])[-1] == (ofp.OFPAT_OUTPUT, 2)
    assert _rules_on(at4, 1) == _rules_on(at3, 1)  # home's rules untouched
    assert at4.views == at3.views
    # the ids of the hops it left are no longer owned (given back after the rollout)
    assert at3.owners - at4.owners and at4.owners - at3.owners


def test_a_host_moved_to_another_port_of_its_pswitch_just_changes_the_port() -> None:
    net = two_switch_net((1, 2), (2, 1))
    net.hosts[1].location = (1, 4)
    st = _compile(net, _topo(3, [(1, 2, 2, 1), (2, 2, 3, 1)], ports=4))
    (ingress,) = _host_rules(st, "02:00:00:00:00:01")
    assert (ingress.dpid, _match(ingress)[oxm.IN_PORT]) == (1, 4)
    pm = st.views[(0xA, 1)].ports[1]
    assert pm.phys_port == 4 and pm.link_tag is None and pm.tx_group is not None


# --- the compile cache: the same state as without it ------------------------------------------
def _ring_net() -> VirtualNetwork:
    """A vswitch per pswitch of ring4, vlinks around the ring, a host on port 3 of each."""
    net = VirtualNetwork(1, 1, [])
    for d in range(1, 5):
        sw = VSwitch(0xA0 + d, [d], d)
        sw.ports = {1: VPort(1, d, 1, VPortKind.LINK, 1 + (d + 2) % 4),
                    2: VPort(2, d, 2, VPortKind.LINK, d),
                    3: VPort(3, d, 3, VPortKind.EDGE)}  # fmt: skip
        net.switches[sw.vdpid] = sw
        net.hosts[d] = Host(d, sw.vdpid, 3, f"02:00:00:00:00:0{d}")
    for d in range(1, 5):  # vlink d: vswitch d's port 2 -> the next one's port 1
        net.links[d] = VLink(d, VLinkEnd(0xA0 + d, 2), VLinkEnd(0xA0 + d % 4 + 1, 1))
    return net


def _same_state(a: NetworkState, b: NetworkState) -> None:
    assert list(a.rules.items()) == list(b.rules.items())
    assert a.groups == b.groups and a.views == b.views and a.classify == b.classify
    assert a.meters == b.meters
    assert a.vlink_paths == b.vlink_paths and a.owners == b.owners
    assert a.port_names == b.port_names and a.markers == b.markers


def _big_net() -> VirtualNetwork:
    """A big switch over pswitches 1-3 of ring4 (a host on port 3 of each) and a vlink from
    its port on s3 to a vswitch on s4 (a host on port 3)."""
    net = VirtualNetwork(1, 1, [])
    big = VSwitch(0xB1, [1, 2, 3], 1)
    big.ports = {d: VPort(d, d, 3, VPortKind.EDGE) for d in (1, 2, 3)}
    big.ports[4] = VPort(4, 3, 2, VPortKind.LINK, 1)
    four = VSwitch(0xA4, [4], 2)
    four.ports = {1: VPort(1, 4, 1, VPortKind.LINK, 1), 3: VPort(3, 4, 3, VPortKind.EDGE)}
    net.switches = {0xB1: big, 0xA4: four}
    net.links = {1: VLink(1, VLinkEnd(0xB1, 4), VLinkEnd(0xA4, 1))}
    for d in (1, 2, 3):
        net.hosts[d] = Host(d, 0xB1, d, f"02:00:00:00:00:0{d}")
    net.hosts[4] = Host(4, 0xA4, 3, "02:00:00:00:00:04")
    return net


@pytest.mark.parametrize("make", [_ring_net, _big_net])
def test_a_compile_cache_changes_nothing_but_the_time(make: Callable[[], VirtualNetwork]) -> None:
    """Random changes of intent, fabric, data-plane limits (the network's and the admin's
    defaults) and allocations, each compiled twice from the same start: with the cache kept
    across compiles and without any.  Same state, same ids."""
    import random

    from tenantvisor.compile.network import CompileCache

    rnd = random.Random(7)
    topo = _topo(4, [(1, 2, 2, 1), (2, 2, 3, 1), (3, 2, 4, 1), (4, 2, 1, 1)], ports=5)
    net = make()
    vlinks = dict(net.links)
    cached, plain, cache = IdAllocator(), IdAllocator(), CompileCache()
    defaults = NO_LIMITS

    def limits() -> Limits:
        def one() -> tuple[int | None, int | None]:
            return rnd.choice([(None, None), (0, None), (rnd.choice([100, 200]), 0),
                               (None, rnd.choice([1000, 2000]))])  # fmt: skip

        (vp, vk), (lp, lk) = one(), one()
        return Limits(vp, vk, lp, lk)

    for step in range(400):
        op = rnd.randrange(10)
        if op == 0:  # a host moves, or comes home
            h = net.hosts[rnd.randint(1, 4)]
            h.location = rnd.choice([None, (rnd.randint(1, 4), rnd.choice([3, 4, 5]))])
        elif op == 1:  # a physical port goes down or comes up
            d, p = rnd.randint(1, 4), rnd.choice([1, 2, 3, 4])
            topo.set_port(d, PPort(p, f"s{d}-eth{p}", "", up=rnd.random() < 0.6))
            if all(pp.up for pp in topo.switches[d].ports.values()):
                for a, pa, b, pb in [(1, 2, 2, 1), (2, 2, 3, 1), (3, 2, 4, 1), (4, 2, 1, 1)]:
                    topo.add_link(PLink(a, pa, b, pb))
                    topo.add_link(PLink(b, pb, a, pa))
        elif op == 2:
            net.scalability = rnd.choice(["exact", "lite", "hop"])
        elif op == 3:
            lk = net.links.get(rnd.randint(1, 4))
            if lk is not None:
                lk.backup_num = rnd.choice([0, 1])
            for sw in net.switches.values():
                if sw.is_big and rnd.random() < 0.5:
                    sw.backup_num = rnd.choice([0, 1])
        elif op == 4:  # a vlink goes, or comes back
            d = rnd.choice(list(vlinks))
            if d in net.links:
                del net.links[d]
            else:
                net.links[d] = vlinks[d]
        elif op == 5:  # another instance wins an id the cache's pieces hold
            held = sorted(cached._held.items(), key=repr)
            if held:
                (space, _owner), i = rnd.choice(held)
                for al in (cached, plain):
                    al.hold_foreign(space, ("other", step), i)
        elif op == 6:  # the admin overrides this network's limits, or stops overriding
            net.limits = limits()
        elif op == 7:  # the admin's defaults change (a restart with another config)
            defaults = limits().over(NO_LIMITS)
        elif op == 8:  # an edge vport becomes exclusive (its own meter's rule), or not
            sw = rnd.choice(list(net.switches.values()))
            edges = [vp for vp in sw.ports.values() if vp.kind is VPortKind.EDGE]
            if edges:
                vp = rnd.choice(edges)
                vp.exclusive = not vp.exclusive
        if op in (2, 3, 4, 6, 8):
            # what the manager does for every change but a host's location: the cache
            # then knows the network is not the one it compiled (and, for moves alone,
            # takes its hosts-only way: compared with the whole compile here too)
            net.shape += 1
        a = compile_network(net, topo, cached, N_TABLES, cache, defaults)
        b = compile_network(net, topo, plain, N_TABLES, defaults=defaults)
        _same_state(a, b)
        release_unused(cached, 1, a.owners)
        release_unused(plain, 1, b.owners)


# --- exclusive edge vports (issue 11) ---------------------------------------------------------
def _exclusive_net() -> VirtualNetwork:
    """two_switch_net over line3 with A's edge vport (s1 port 3) exclusive; its host stays
    registered (information only)."""
    net = two_switch_net((1, 2), (3, 1))
    net.switches[0xA].ports[1].exclusive = True
    return net


def test_an_exclusive_vport_has_one_table_0_rule_matching_its_in_port_alone() -> None:
    st = _compile(_exclusive_net(), line3())
    on_port = [pf for pf in _rules_on(st, 1) if pf.table == 0 and _match(pf).get(oxm.IN_PORT) == 3]
    assert len(on_port) == 1  # no host rule beside it: the registered MAC changes nothing
    (pf,) = on_port
    assert _match(pf) == {oxm.IN_PORT: 3}  # any source MAC, any VLAN, any S-tag
    assert pf.priority == infra.PRIO_EXCLUSIVE and pf.cookie == layout.infra_cookie(1)
    ins = codec.parse_instructions(pf.instructions)
    assert ins.apply_actions is None  # nothing popped or pushed: the tenant's tags go as they came
    assert ins.write_metadata == (layout.vswitch_meta(1, 1), layout.HV_META_MASK)
    assert ins.goto_table == layout.TABLE_OFFSET
    assert st.classify[stat_key(pf)] == (0xA, 1, 0)  # the vport's rx counters
    # B's host vport is classified by MAC as before
    (host,) = [pf for pf in _rules_on(st, 3) if oxm.ETH_SRC in _match(pf)]
    assert _match(host) == {oxm.IN_PORT: 3, oxm.ETH_SRC: 0x020000000002}
    view = st.views[(0xA, 1)].ports[1]
    assert view.exclusive and view.hosts == ("02:00:00:00:00:01",)
    assert not st.views[(0xB, 3)].ports[1].exclusive


def test_an_exclusive_rule_sits_below_classification_and_discovery_above_the_punt() -> None:
    """Below every (in_port, ...) classification: were the port ever cabled to a pswitch,
    fabric traffic there stays fabric traffic; below discovery and injected packets (the
    provider's); above the punt, so nothing from the port is taken for a host that moved.
    And no fabric rule ever names the edge port: a frame arriving there with the fabric's
    TPID (0x88a8) and any tag is the tenant's frame, never a tagged one of a vlink."""
    assert infra.PRIO_PUNT < infra.PRIO_EXCLUSIVE < infra.PRIO_CLASSIFY
    assert infra.PRIO_CLASSIFY < infra.PRIO_DISCOVERY < infra.PRIO_INJECTED
    st = _compile(_exclusive_net(), line3())
    tagged = [pf for pf in st.rules.values() if oxm.VLAN_VID in _match(pf)]
    assert tagged and all(_match(pf)[oxm.IN_PORT] != 3 for pf in tagged)
    others = [pf for pf in st.rules.values() if pf.priority < infra.PRIO_CLASSIFY]
    assert [pf.dpid for pf in others] == [1]


def test_an_exclusive_vport_keeps_its_output_groups_and_is_unchanged_when_recompiled() -> None:
    alloc = IdAllocator()
    st = _compile(_exclusive_net(), line3(), alloc)
    pm = st.views[(0xA, 1)].ports[1]
    assert pm.tx_group is not None and pm.hairpin_group is not None
    again = _compile(_exclusive_net(), line3(), alloc)
    assert again.rules == st.rules and again.groups == st.groups


def test_an_exclusive_vport_on_an_openflow_10_pswitch_admits_nothing() -> None:
    """The manager refuses it there; a pswitch that reconnects speaking 1.0 gets no rule
    that would fold the tenant's VLANs into the fabric's one tag."""
    topo = line3()
    topo.switches[1].of_version = 1
    st = _compile(_exclusive_net(), topo)
    assert not [pf for pf in _rules_on(st, 1) if _match(pf).get(oxm.IN_PORT) == 3]
    assert st.views[(0xA, 1)].ports[1].macs == ()


def test_a_moved_host_whose_port_went_keeps_its_paths_until_it_is_found() -> None:
    """A migration unplugs the VM before it is seen elsewhere: its vport is down (to be
    said after the grace) but its paths and classification stay, so the next move
    changes them once instead of dropping them and making them again."""
    net = two_switch_net((1, 2), (2, 1))
    net.hosts[1].location = (3, 3)
    topo = line3()
    there = _compile(net, topo)
    topo.remove_port(3, 3)
    gone = _compile(net, topo)
    assert gone.rules.keys() == there.rules.keys() and gone.groups == there.groups
    pm = gone.views[(0xA, 1)].ports[1]
    assert not pm.up and pm.reaches and pm.exits == there.views[(0xA, 1)].ports[1].exits
