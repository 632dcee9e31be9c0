"""Randomised: hosts of a network laid 1:1 over a fabric move to random edge ports, several
away at once, at every level; after each compile each moved host's two paths are walked
through the compiled rules, tag by tag, and must end where they should: its classification
where it is carries it to its vport's pswitch into the tenant's tables, and its vport's exit
there carries what the vswitch sends to its port.  Hop-owned tags (compile/network.py
`_hop_tags`) keep hops shared between paths, so a tag must still name exactly one rule per
(pswitch, in_port).  A bounded sample here; `python -m tests.unit.test_moved_paths N` runs N
steps per case."""

from __future__ import annotations

import random
import sys

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.network import CompileCache, NetworkState, compile_network
from tenantvisor.errors import TenantvisorError
from tenantvisor.mapping.alloc import IdAllocator
from tenantvisor.openflow import codec, oxm
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo
from tenantvisor.testbed.topo import Topology, fat_tree, two_tier
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.virtual.manager import NetworkManager
from tenantvisor.virtual.model import Host, VirtualNetwork

SPARE = (11, 12)  # ports no vport maps: where hosts move to
Key = tuple[int, int | None, int, int | None]  # pswitch, in_port, tag (0: none), source MAC


def _network(t: Topology, level: str) -> tuple[PhysicalTopology, NetworkManager,
                                               VirtualNetwork, dict[str, Host]]:  # fmt: skip
    pt = PhysicalTopology()
    for name, sw in t.switches.items():
        pt.add_switch(PSwitchInfo(sw.dpid, {p: PPort(p, f"{name}-{p}", "") for p in range(1, 13)}))
    for lk in t.links:
        a, b = t.switch(lk.a).dpid, t.switch(lk.b).dpid
        pt.add_link(PLink(a, lk.pa, b, lk.pb))
        pt.add_link(PLink(b, lk.pb, a, lk.pa))
    m = NetworkManager(pt, "admin")
    net = m.create_network(m.create_tenant("t").id, [], scalability=level)
    vd = {n: m.create_switch(net.id, [sw.dpid]).vdpid for n, sw in t.switches.items()}

    def vport(sw: str, p: int) -> int:
        return m.create_port(net.id, t.switch(sw).dpid, p).number

    for lk in t.links:
        m.create_link(net.id, vd[lk.a], vport(lk.a, lk.pa), vd[lk.b], vport(lk.b, lk.pb))
    hosts = {h.name: m.connect_host(net.id, vd[h.switch], vport(h.switch, h.port), h.mac)
             for h in t.hosts.values()}  # fmt: skip
    m.start_network(net.id)
    return pt, m, net, hosts


def _index(st: NetworkState) -> dict[Key, list[PhysFlow]]:
    idx: dict[Key, list[PhysFlow]] = {}
    for pf in st.rules.values():
        f = {o.field: codec.oxm_int(o) for o in codec.parse_match(pf.match, 0)[0]}
        key = (pf.dpid, f.get(oxm.IN_PORT), f.get(oxm.VLAN_VID, 0) & 0xFFF, f.get(oxm.ETH_SRC))
        idx.setdefault(key, []).append(pf)
    return idx


def _actions(pf: PhysFlow) -> tuple[list[tuple[str, int | None]], bool]:
    ins = codec.parse_instructions(pf.instructions)
    out: list[tuple[str, int | None]] = []
    for a in ins.apply_actions or []:
        if a.type == ofp.OFPAT_OUTPUT:
            out.append(("out", a.output_port))
        elif a.type == ofp.OFPAT_SET_FIELD and a.set_field_oxm().field == oxm.VLAN_VID:
            out.append(("tag", codec.oxm_int(a.set_field_oxm()) & 0xFFF))
        elif a.type == ofp.OFPAT_POP_VLAN:
            out.append(("pop", None))
    return out, ins.goto_table is not None


def _last(acts: list[tuple[str, int | None]], kind: str) -> int:
    got = [v for k, v in acts if k == kind]
    assert got and got[-1] is not None, (kind, acts)
    return got[-1]


def _walk(
    pt: PhysicalTopology, idx: dict[Key, list[PhysFlow]], dpid: int, in_port: int, tag: int
) -> tuple[int, list[tuple[str, int | None]], bool]:
    """From a tagged packet arriving at (dpid, in_port): where its tag is popped, with what
    that rule does then."""
    for _ in range(16):
        (pf,) = idx.get((dpid, in_port, tag, None), [])  # exactly one rule per tag and port
        acts, goto = _actions(pf)
        if ("pop", None) in acts:
            return dpid, acts, goto
        port = _last(acts, "out")
        peer = pt.peer(dpid, in_port if port == ofp.OFPP_IN_PORT else port)
        assert peer is not None
        (dpid, in_port), tag = peer, _last(acts, "tag")
    raise AssertionError("the path does not end")


def _check(topo: Topology, level: str, steps: int, seed: int) -> int:
    rnd = random.Random(seed)
    pt, m, net, hosts = _network(topo, level)
    alloc, cache = IdAllocator(), CompileCache()
    edges = sorted({h.switch for h in topo.hosts.values()})
    walked = 0
    for _ in range(steps):
        name = rnd.choice(sorted(hosts))
        sw = rnd.choice(edges)
        home = topo.hosts[name]
        port = home.port if sw == home.switch and rnd.random() < 0.3 else rnd.choice(SPARE)
        try:
            m.move_host(net.id, hosts[name].id, topo.switch(sw).dpid, port)
        except TenantvisorError:
            continue  # refused (another host's MAC is there): nothing changed
        st = compile_network(net, pt, alloc, 4, cache)
        idx = _index(st)
        for hn, h in hosts.items():
            at_home = topo.switch(topo.hosts[hn].switch).dpid
            if h.location is None or h.location[0] == at_home:
                continue
            where, lp = h.location
            (ingress,) = idx[(where, lp, 0, int(h.mac.replace(":", ""), 16))]
            acts, _ = _actions(ingress)
            first = pt.peer(where, _last(acts, "out"))
            assert first is not None
            end, _, into_tables = _walk(pt, idx, *first, _last(acts, "tag"))
            assert end == at_home and into_tables, (hn, level, end)
            ((exit_port, exit_tag),) = st.views[(h.vdpid, at_home)].ports[h.vport].exits
            there = pt.peer(at_home, exit_port)
            assert there is not None
            end, acts, _ = _walk(pt, idx, *there, exit_tag)
            assert end == where and ("out", lp) in acts, (hn, level, end, acts)
            walked += 1
    return walked


@pytest.mark.parametrize("level", ["exact", "lite", "hop"])
@pytest.mark.parametrize("topo", [fat_tree(4), two_tier(3, 4, 2)], ids=lambda t: t.name)
def test_every_moved_hosts_paths_lead_where_it_is_and_back(topo: Topology, level: str) -> None:
    assert _check(topo, level, steps=25, seed=7) > 0


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    for t in (fat_tree(4), two_tier(3, 4, 2)):
        for lv in ("exact", "lite", "hop"):
            print(t.name, lv, _check(t, lv, n, seed=1), "paths walked")
