"""The planner, without OVS: names, Table I rules, diffs, and the paper's equations (1)-(4)."""

from __future__ import annotations

import ipaddress
import itertools
from math import comb

import pytest

from tenantvisor.dedicated import planner
from tenantvisor.dedicated.model import Intent, Mode, Network, Node, PortKind, TenantPort, VmBinding

N_NODES = 5


def _intent(n_nodes: int = N_NODES, nets: dict[str, Mode] | None = None) -> Intent:
    it = Intent()
    for i in range(1, n_nodes + 1):
        ip = ipaddress.IPv4Interface(f"10.123.0.{i}/24")
        it.nodes[f"node{i}"] = Node(f"node{i}", i, f"unix:/tmp/n{i}/db.sock", ip)
    for serial, (nid, mode) in enumerate((nets or {"a": Mode.DEDICATED}).items(), start=1):
        sub = ipaddress.IPv4Network(f"10.124.{serial}.0/24")
        it.networks[nid] = Network(nid, 1, mode, 1000 + serial, serial, sub, serial)
    return it


def _place(it: Intent, placement: dict[str, list[str]]) -> Intent:
    """placement: network -> list of nodes, one VM per entry (repeats = several VMs)."""
    k = 0
    for net, nodes in placement.items():
        for node in nodes:
            k += 1
            mac = f"02:00:00:00:{k >> 8:02x}:{k & 0xFF:02x}"
            ip = ipaddress.IPv4Interface(f"192.168.0.{k}/24")
            it.vms[(net, mac)] = VmBinding(net, node, mac, ip, f"tap{k}")
    return it


PLACEMENTS = [
    {},
    {"a": ["node1"]},
    {"a": ["node1", "node1", "node2"]},
    {"a": ["node1", "node2", "node3", "node4", "node5"]},
    {"a": ["node1", "node2"], "b": ["node2", "node3"], "c": ["node5"]},
    {"a": ["node1", "node3", "node5"], "b": ["node1", "node3", "node5"], "c": ["node2", "node4"]},
    {
        "a": ["node1", "node2", "node3", "node4", "node5"],
        "b": ["node1", "node2", "node3", "node4", "node5"],
        "c": ["node1", "node2", "node3", "node4", "node5", "node5"],
    },
]


@pytest.mark.parametrize("placement", PLACEMENTS, ids=lambda p: str(sum(map(len, p.values()))))
def test_bridge_and_tunnel_counts_follow_equations_1_to_4(placement: dict[str, list[str]]) -> None:
    it = _place(_intent(nets={n: Mode.DEDICATED for n in "abc"}), placement)
    plans = planner.plan(it)
    total_bridges = 0
    for name, p in plans.items():
        tns_c = {n for n, nodes in placement.items() if name in nodes}
        assert len(p.bridges) == 2 * (len(tns_c) + 1) == planner.bridges_expected(it, name)
        total_bridges += len(p.bridges)
    assert total_bridges == planner.total_bridges_expected(it)  # (2), |ons| = 0
    tunnel_ports = [t for p in plans.values() for t in p.dnb_tunnels()]
    assert len(tunnel_ports) % 2 == 0
    total = 0
    for net, nodes in placement.items():
        h = len(set(nodes))
        ports = [t for t in tunnel_ports if t.startswith(f"g-{net}-")]
        assert len(ports) == 2 * comb(h, 2) == 2 * planner.tunnels_of(it, net)
        assert comb(h, 2) <= comb(N_NODES, 2) == planner.tunnel_bound(it)  # (3)
        total += comb(h, 2)
    assert total == len(tunnel_ports) // 2 <= planner.total_tunnel_bound(it)  # (4)


def test_equation_2_counts_network_servers_when_modelled() -> None:
    it = _place(_intent(nets={"a": Mode.DEDICATED, "b": Mode.DEDICATED}), {"a": ["node1"]})
    # one network with a VM: 2*(1+1) on node1, 2 on each of 4 others, + |ons|(2*1+3)
    assert planner.total_bridges_expected(it) == 4 + 8
    assert planner.total_bridges_expected(it, n_network_servers=1) == 12 + 5
    assert planner.tunnel_bound(it, 1) == comb(6, 2)


def test_common_mode_networks_add_no_bridges() -> None:
    it = _place(_intent(nets={"a": Mode.COMMON}), {"a": ["node1", "node2"]})
    plans = planner.plan(it)
    assert all(set(p.bridges) == {planner.BR_INT, planner.BR_TUN} for p in plans.values())
    assert plans["node1"].dnb_tunnels() == []
    ports = plans["node1"].bridges[planner.BR_TUN].port_map()
    assert ports["gre-2"].options == (
        ("key", "flow"),
        ("local_ip", "10.123.0.1"),
        ("remote_ip", "10.123.0.2"),
    )
    assert plans["node1"].bridges[planner.BR_INT].port_map()["tap1"].tag == 1
    kinds = {f.kind for f in plans["node1"].flows}
    assert {planner.CNB_INGRESS, planner.CNB_EGRESS, planner.CNB_FLOOD} <= kinds


def test_every_generated_name_fits_an_interface() -> None:
    nid = "n" * planner.MAX_NETWORK_ID
    it = _intent(n_nodes=5, nets={nid: Mode.DEDICATED})
    it = _place(it, {nid: ["node1", "node2", "node5"]})
    for p in planner.plan(it).values():
        for b in p.bridges.values():
            assert len(b.name) <= planner.IFNAMSIZ
            assert all(len(port.name) <= planner.IFNAMSIZ for port in b.ports)
    assert max(map(len, planner.network_names(nid))) <= planner.IFNAMSIZ


def test_table_i_rules_on_the_tunnel_bridge() -> None:
    it = _place(_intent(), {"a": ["node1", "node2", "node3"]})
    p = planner.plan(it)["node1"]
    net = it.networks["a"]
    tun = p.flows_on("brtun-a")
    ingress = {f.match for f in tun if f.kind == planner.LOCAL_INGRESS}
    assert ingress == {f"in_port=g-a-{k},tun_id={net.segmentation_id}" for k in (2, 3)}
    assert all(
        "push_vlan" in f.actions and "output:pt-a" in f.actions
        for f in tun
        if f.kind == planner.LOCAL_INGRESS
    )
    egress = {(f.match, f.actions) for f in tun if f.kind == planner.EGRESS}
    assert egress == {
        (f"in_port=pt-a,dl_vlan={net.local_vid},dl_dst=02:00:00:00:00:02", "pop_vlan,output:g-a-2"),
        (f"in_port=pt-a,dl_vlan={net.local_vid},dl_dst=02:00:00:00:00:03", "pop_vlan,output:g-a-3"),
    }
    (flood,) = [f for f in tun if f.kind == planner.LOCAL_FLOOD]
    assert flood.actions == "pop_vlan,output:g-a-2,output:g-a-3"
    assert flood.priority < min(f.priority for f in tun if f.kind == planner.EGRESS)
    # the endpoint sits on br-tun with a fixed MAC and may only send to its own subnet
    ex = p.bridges["br-tun"].port_map()["ex-a"]
    assert ex.type == "internal" and ex.mac == planner.endpoint_mac(net, it.nodes["node1"])
    guard = {f.match for f in p.flows_on("br-tun") if f.kind == planner.ENDPOINT_GUARD}
    assert "in_port=ex-a,ip,nw_src=10.124.1.1,nw_dst=10.124.1.0/24" in guard
    assert ("ex-a", "10.124.1.1/24") in p.addresses
    assert planner.Neighbour("br-tun", "10.124.1.2", "02:74:76:00:01:02") in p.neighbours


def test_tunnels_are_keyed_with_the_segmentation_id_and_reach_only_hosting_nodes() -> None:
    it = _place(_intent(), {"a": ["node1", "node4"]})
    plans = planner.plan(it)
    assert plans["node2"].bridges.keys() == {"br-int", "br-tun"}
    (g,) = [p for p in plans["node1"].bridges["brtun-a"].ports if p.type == "gre"]
    assert g.name == "g-a-4"
    assert dict(g.options) == {"key": "1001", "local_ip": "10.124.1.1", "remote_ip": "10.124.1.4"}


def test_provider_cookies_are_marked_and_distinct() -> None:
    it = _place(_intent(nets={"a": Mode.DEDICATED, "b": Mode.COMMON}),
                {"a": ["node1", "node2"], "b": ["node1", "node3"]})  # fmt: skip
    flows = [f for p in planner.plan(it).values() for f in p.flows]
    cookies = [f.cookie for f in flows if f.bridge != "br-int" and not f.bridge.startswith("brint")]
    assert all(c & planner.PROVIDER_COOKIE_MASK == planner.PROVIDER_COOKIE for c in cookies)
    assert len(set(cookies)) == len(cookies)


def test_diff_of_an_attach_touches_the_new_node_and_the_peers_only() -> None:
    before = _place(_intent(), {"a": ["node1", "node2"]})
    after = _place(_intent(), {"a": ["node1", "node2", "node3"]})
    old, new = planner.plan(before), planner.plan(after)
    d3 = planner.diff(old["node3"], new["node3"])
    assert {b.name for b in d3.ovsdb.add_bridges} == {"brint-a", "brtun-a"}
    assert ("br-tun", planner.PortSpec("ex-a", "internal", mac="02:74:76:00:01:03")) in [
        (b, p) for b, p in d3.ovsdb.add_ports
    ]
    d1 = planner.diff(old["node1"], new["node1"])
    assert [p.name for _, p in d1.ovsdb.add_ports] == ["g-a-3"]
    assert {f.kind for f in d1.flows_add} == {
        planner.LOCAL_INGRESS,
        planner.EGRESS,
        planner.LOCAL_FLOOD,
    }
    assert {f.kind for f in d1.flows_del} == {planner.LOCAL_FLOOD}  # re-made with 2 outputs
    assert not planner.diff(old["node4"], new["node4"])
    # detaching it again is the exact inverse
    back = planner.diff(new["node3"], old["node3"])
    assert set(back.ovsdb.del_bridges) == {"brint-a", "brtun-a"}
    assert not back.flows_del or all(f.bridge == "br-tun" for f in back.flows_del)


def test_tenant_ports_and_controller_land_on_the_dedicated_bridges() -> None:
    it = _place(_intent(), {"a": ["node1", "node2"]})
    it.networks["a"] = Network(**{**it.networks["a"].__dict__, "controller": "tcp:1.2.3.4:6653"})
    it.tenant_ports[("node1", "tv1")] = TenantPort(
        "a", "node1", "mytun", PortKind.VXLAN, ipaddress.IPv4Address("10.124.1.2"), 7
    )
    p = planner.plan(it)["node1"]
    assert p.bridges["brint-a"].controller == p.bridges["brtun-a"].controller == "tcp:1.2.3.4:6653"
    assert p.bridges["br-tun"].controller is None and p.bridges["br-int"].controller is None
    t = p.bridges["brtun-a"].port_map()["mytun"]
    assert t.owner == "tenant" and t.type == "vxlan"
    assert dict(t.options) == {"key": "7", "local_ip": "10.124.1.1", "remote_ip": "10.124.1.2"}


def test_plans_are_deterministic() -> None:
    placement = {"a": ["node3", "node1", "node2"], "b": ["node2"]}
    it = _place(_intent(nets={"a": Mode.DEDICATED, "b": Mode.COMMON}), placement)
    assert planner.plan(it) == planner.plan(it)
    for a, b in itertools.pairwise(sorted(planner.plan(it))):
        assert a < b
