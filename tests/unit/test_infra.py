"""Table-0 rules the hypervisor owns: provider rules, host classification, vlink transit.

Every rule is encoded with `PhysFlow.flow_mod` and read back with os-ken.  Table 0 keeps the
physical in_port (OVS then drops output to the ingress port, as OpenFlow wants of the vswitch),
and packets a tenant injected with PACKET_OUT to output:TABLE skip classification.  The last
tests walk a tagged packet hop by hop through the rules derived from a real path and real tag
allocation.
"""

from __future__ import annotations

from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.mapping.paths import Hop, vlink_path
from tenantvisor.mapping.tags import TagAllocator
from tenantvisor.openflow import codec, oxm
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo
from tenantvisor.translate import infra
from tenantvisor.translate.flow import PhysFlow
from tests.unit.ofkit import instruction_summary, osken_parse

NET = 4


def parsed(pf: PhysFlow) -> Any:
    return osken_parse(pf.flow_mod(1))


def classify(index: int, vport: int, *pre: tuple[Any, ...]) -> dict[str, Any]:
    """Instructions of a rule that hands a packet to a vswitch's tenant tables.

    Only a link end has apply-actions (popping the fabric tag); in_port is left alone.
    """
    out: dict[str, Any] = {"apply": list(pre)} if pre else {}
    out["write_metadata"] = (layout.vswitch_meta(index, vport), layout.HV_META_MASK)
    out["goto"] = layout.TABLE_OFFSET
    return out


def tag(t: int) -> int:
    return t | oxm.VLAN_PRESENT


# --- provider rules ---------------------------------------------------------------------------
def test_provider_rules_send_our_lldp_to_the_controller_and_admit_injected_packets() -> None:
    lldp, injected = (parsed(pf) for pf in infra.provider_flows(0x9))
    assert (lldp.table_id, lldp.priority, lldp.cookie) == (
        0,
        infra.PRIO_DISCOVERY,
        layout.DISCOVERY_COOKIE,
    )
    assert dict(lldp.match.items()) == {
        "eth_src": infra.DISCOVERY_MAC,
        "eth_type": infra.LLDP_ETHERTYPE,
    }
    [to_ctl] = lldp.instructions[0].actions
    assert (to_ctl.port, to_ctl.max_len) == (ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)

    assert (injected.table_id, injected.priority, injected.cookie) == (
        0,
        infra.PRIO_INJECTED,
        layout.PROVIDER_COOKIE,
    )
    # Marked by the metadata bit a PACKET_OUT to output:TABLE sets, not by in_port: such a
    # packet leaves the controller with the physical in_port of its ingress vport.
    assert dict(injected.match.items()) == {"metadata": (layout.INJECTED, layout.INJECTED)}
    # No write_metadata: the packet keeps the vswitch and vport bits the PACKET_OUT set.
    assert instruction_summary(injected.instructions) == {"goto": layout.TABLE_OFFSET}


def test_provider_rules_are_on_the_requested_pswitch_and_belong_to_network_0() -> None:
    for pf in infra.provider_flows(0x9):
        assert pf.dpid == 0x9
        assert pf.cookie >> layout.NET_SHIFT == 0
        assert pf.cookie & layout.INFRA_BIT


def test_injected_packets_outrank_discovery_which_outranks_classification() -> None:
    assert infra.PRIO_INJECTED == 0xF800
    assert infra.PRIO_INJECTED > infra.PRIO_DISCOVERY > infra.PRIO_CLASSIFY


# --- host classification ----------------------------------------------------------------------
def test_host_rule_classifies_by_port_and_mac_and_only_writes_metadata() -> None:
    h = infra.HostBinding(dpid=1, port=2, mac="02:00:00:00:00:0a", index=8, vport=1)
    pf = infra.host_flow(NET, h)
    assert pf.dpid == 1
    rule = parsed(pf)
    assert (rule.table_id, rule.priority) == (0, infra.PRIO_CLASSIFY)
    assert rule.cookie == layout.infra_cookie(NET)
    assert rule.cookie >> layout.NET_SHIFT == NET and rule.cookie & layout.INFRA_BIT
    assert dict(rule.match.items()) == {"in_port": 2, "eth_src": "02:00:00:00:00:0a"}
    assert instruction_summary(rule.instructions) == classify(8, 1)


def test_host_rule_has_no_apply_actions_at_all() -> None:
    # The old pipeline cleared OVS's 16-bit NXM in_port here; the physical in_port now stays
    # the port the packet came in on.
    h = infra.HostBinding(dpid=1, port=2, mac="02:00:00:00:00:0a", index=8, vport=1)
    ins = codec.parse_instructions(infra.host_flow(NET, h).instructions)
    assert ins.apply_actions is None
    assert ins.write_actions is None and not ins.clear_actions
    assert ins.write_metadata == (layout.vswitch_meta(8, 1), layout.HV_META_MASK)
    assert ins.goto_table == layout.TABLE_OFFSET


def test_classification_clears_the_injected_bit_and_never_sets_it() -> None:
    h = infra.HostBinding(1, 2, "02:00:00:00:00:0a", index=layout.MAX_VSWITCH_INDEX, vport=0xFFF)
    rule = parsed(infra.host_flow(NET, h))
    value, mask = instruction_summary(rule.instructions)["write_metadata"]
    assert mask == layout.HV_META_MASK
    assert mask & layout.INJECTED
    assert not value & layout.INJECTED  # the largest vswitch index stays below bit 63
    assert value == layout.VSWITCH_MASK | layout.VPORT_MASK


def test_hosts_with_the_same_mac_on_different_ports_get_distinct_rules() -> None:
    a = infra.host_flow(1, infra.HostBinding(1, 1, "02:00:00:00:00:01", 3, 1))
    b = infra.host_flow(2, infra.HostBinding(1, 2, "02:00:00:00:00:01", 4, 1))
    assert a.key != b.key


# --- vlinks ---------------------------------------------------------------------------------
THREE_HOPS = (Hop(1, 3, 2, 1), Hop(2, 2, 3, 1), Hop(3, 2, 4, 1))


def test_three_hop_vlink_swaps_the_tag_at_each_transit_and_terminates_at_the_far_end() -> None:
    lp = infra.LinkPath(THREE_HOPS, (10, 20, 30), dst_index=8, dst_vport=2)
    flows = infra.link_flows(NET, lp)
    assert [pf.dpid for pf in flows] == [2, 3, 4]
    s2, s3, s4 = (parsed(pf) for pf in flows)
    for rule in (s2, s3, s4):
        assert (rule.table_id, rule.priority) == (0, infra.PRIO_CLASSIFY)
        assert rule.cookie == layout.infra_cookie(NET)

    assert dict(s2.match.items()) == {"in_port": 1, "vlan_vid": tag(10)}
    assert instruction_summary(s2.instructions) == {
        "apply": [("set_field", "vlan_vid", tag(20)), ("output", 2)]
    }
    assert dict(s3.match.items()) == {"in_port": 1, "vlan_vid": tag(20)}
    assert instruction_summary(s3.instructions) == {
        "apply": [("set_field", "vlan_vid", tag(30)), ("output", 2)]
    }
    assert dict(s4.match.items()) == {"in_port": 1, "vlan_vid": tag(30)}
    assert instruction_summary(s4.instructions) == classify(8, 2, ("pop_vlan",))


def test_one_hop_vlink_is_a_single_terminating_rule() -> None:
    lp = infra.LinkPath((Hop(1, 3, 2, 3),), (5,), dst_index=9, dst_vport=4)
    [pf] = infra.link_flows(NET, lp)
    rule = parsed(pf)
    assert pf.dpid == 2
    assert dict(rule.match.items()) == {"in_port": 3, "vlan_vid": tag(5)}
    assert instruction_summary(rule.instructions) == classify(9, 4, ("pop_vlan",))


def test_transit_that_leaves_by_the_port_it_entered_outputs_to_in_port() -> None:
    # s1:3 -> s2:3, s2:4 -> s3:3, s3:3 -> s2:4: s3 must send the packet back where it came from
    hops = (Hop(1, 3, 2, 3), Hop(2, 4, 3, 3), Hop(3, 3, 2, 4))
    s2_transit, s3_hairpin, s2_end = (
        parsed(pf) for pf in infra.link_flows(NET, infra.LinkPath(hops, (1, 2, 3), 6, 1))
    )
    assert instruction_summary(s2_transit.instructions)["apply"][-1] == ("output", 4)
    assert instruction_summary(s3_hairpin.instructions) == {
        "apply": [("set_field", "vlan_vid", tag(3)), ("output", ofp.OFPP_IN_PORT)]
    }
    assert dict(s2_end.match.items()) == {"in_port": 4, "vlan_vid": tag(3)}


def test_no_table_0_rule_rewrites_in_port() -> None:
    """Host, transit and link-end rules: in_port is matched, never set (neither the OXM
    in_port nor OVS's 16-bit NXM in_port the old pipeline cleared)."""
    hops = (Hop(1, 3, 2, 3), Hop(2, 4, 3, 3), Hop(3, 3, 2, 4))
    flows = [
        *infra.provider_flows(2),
        infra.host_flow(NET, infra.HostBinding(2, 1, "02:00:00:00:00:0a", 8, 1)),
        *infra.link_flows(NET, infra.LinkPath(THREE_HOPS, (10, 20, 30), 8, 2)),
        *infra.link_flows(NET, infra.LinkPath(hops, (1, 2, 3), 6, 1)),
    ]
    for pf in flows:
        summary = instruction_summary(parsed(pf).instructions)
        for action in summary.get("apply", []):
            assert action[0] != "set_field" or action[1] == "vlan_vid", action
        ins = codec.parse_instructions(pf.instructions)
        for a in ins.apply_actions or []:
            if a.type == ofp.OFPAT_SET_FIELD:
                assert a.set_field_oxm().field == oxm.VLAN_VID


# --- table 0 as a whole: which rule a packet meets ---------------------------------------------
def _field_matches(want: Any, got: Any) -> bool:
    if isinstance(want, tuple):
        value, mask = want
        return got is not None and got & mask == value & mask
    return bool(got == want)


def table0(rules: list[Any], packet: dict[str, Any]) -> Any:
    """The rule of table 0 a packet meets: the highest priority whose every field matches
    (None: the table miss drops it).  `packet` holds in_port, eth_src, eth_type, vlan_vid and
    metadata (0 for a packet from a wire) in os-ken's value forms."""
    packet = {"metadata": 0, **packet}
    hits = [r for r in rules if all(_field_matches(v, packet.get(k)) for k, v in r.match.items())]
    hits.sort(key=lambda r: r.priority, reverse=True)
    assert len(hits) < 2 or hits[0].priority != hits[1].priority, "two rules tie for the packet"
    return hits[0] if hits else None


HOST = infra.HostBinding(dpid=1, port=2, mac="02:00:00:00:00:0a", index=8, vport=1)


def table0_rules() -> list[Any]:
    """Table 0 of pswitch 1: provider rules, a host on port 2, a vlink ending on port 3."""
    flows = [
        *infra.provider_flows(1),
        infra.host_flow(NET, HOST),
        *infra.link_flows(NET, infra.LinkPath((Hop(2, 3, 1, 3),), (5,), 8, 2)),
    ]
    assert {pf.dpid for pf in flows} == {1}
    return [parsed(pf) for pf in flows]


def test_injected_packets_skip_classification_in_table_0() -> None:
    rules = table0_rules()
    wire = {"in_port": 2, "eth_src": HOST.mac, "eth_type": 0x0800}
    # From the wire: classified by (in_port, eth_src).
    classified = table0(rules, wire)
    assert instruction_summary(classified.instructions) == classify(8, 1)
    # The same frame injected by the tenant as if from vport 1: PACKET_OUT with the physical
    # in_port of vport 1 and metadata INJECTED | (vswitch, vport), then output:TABLE.
    injected = table0(rules, {**wire, "metadata": layout.INJECTED | layout.vswitch_meta(8, 1)})
    assert (injected.priority, injected.cookie) == (infra.PRIO_INJECTED, layout.PROVIDER_COOKIE)
    assert instruction_summary(injected.instructions) == {"goto": layout.TABLE_OFFSET}
    # Injected from the controller with no ingress: no classification rule would take it.
    from_ctl = {"in_port": ofp.OFPP_CONTROLLER, "eth_src": "02:00:00:00:00:99"}
    assert table0(rules, from_ctl) is None
    injected = table0(rules, {**from_ctl, "metadata": layout.INJECTED | layout.vswitch_meta(8)})
    assert injected.priority == infra.PRIO_INJECTED


def test_an_injected_frame_with_our_lldp_source_goes_to_the_tenant_not_to_discovery() -> None:
    rules = table0_rules()
    lldp = {"in_port": 3, "eth_src": infra.DISCOVERY_MAC, "eth_type": infra.LLDP_ETHERTYPE}
    assert table0(rules, lldp).priority == infra.PRIO_DISCOVERY
    injected = table0(rules, {**lldp, "metadata": layout.INJECTED | layout.vswitch_meta(8, 2)})
    assert injected.priority == infra.PRIO_INJECTED


def test_a_tagged_frame_from_the_wire_is_classified_at_its_link_end() -> None:
    rules = table0_rules()
    rule = table0(rules, {"in_port": 3, "eth_src": "02:00:00:00:00:77", "vlan_vid": tag(5)})
    assert instruction_summary(rule.instructions) == classify(8, 2, ("pop_vlan",))
    assert table0(rules, {"in_port": 2, "eth_src": "02:00:00:00:00:77", "vlan_vid": tag(5)}) is None


# --- a tagged packet walked through rules derived from a real path ---------------------------
def line_topology(n: int) -> PhysicalTopology:
    """s1 .. sn in a line: port 2 of s(i) faces port 1 of s(i+1); port 3 of s1/sn too."""
    topo = PhysicalTopology()
    for d in range(1, n + 1):
        topo.add_switch(PSwitchInfo(dpid=d, n_tables=254))
        for p in (1, 2, 3):
            topo.set_port(d, PPort(p, f"s{d}-eth{p}", f"02:00:00:00:{d:02x}:{p:02x}"))
    for d in range(1, n):
        topo.add_link(PLink(d, 2, d + 1, 1))
        topo.add_link(PLink(d + 1, 1, d, 2))
    return topo


def walk(
    topo: PhysicalTopology, flows: list[PhysFlow], start: tuple[int, int], vid: int
) -> tuple[list[int], tuple[int, int], tuple[int, int]]:
    """Send a frame tagged `vid` out of port `start`; follow table 0 until it is classified.

    Returns the pswitches visited, the (metadata, mask) the terminating rule writes and the
    (dpid, physical in_port) the packet has when it enters the tenant tables.
    """
    rules = {}
    for pf in flows:
        r = parsed(pf)
        rules[(pf.dpid, r.match["in_port"], r.match["vlan_vid"])] = r
    visited = []
    out = start
    for _ in range(16):
        peer = topo.peer(*out)
        assert peer is not None, f"port {out} faces nothing"
        dpid, in_port = peer
        visited.append(dpid)
        rule = rules.get((dpid, in_port, vid))
        assert rule is not None, f"no rule for tag {vid:#x} on s{dpid} port {in_port}"
        summary = instruction_summary(rule.instructions)
        if "goto" in summary:
            assert summary["apply"] == [("pop_vlan",)]  # in_port is kept
            return visited, summary["write_metadata"], (dpid, in_port)
        for action in summary["apply"]:
            if action[0] == "set_field":
                vid = action[2]
            elif action[0] == "output":
                port = in_port if action[1] == ofp.OFPP_IN_PORT else action[1]
                out = (dpid, port)
    raise AssertionError("packet loops")


def test_a_packet_tagged_at_the_source_vport_arrives_classified_at_the_far_vswitch() -> None:
    topo = line_topology(4)
    hops = vlink_path(topo, (1, 2), (4, 1))
    assert len(hops) == 3
    tags = TagAllocator()
    tag_list = tuple(tags.get((h.dst_dpid, h.dst_port), (NET, 1, 0, i)) for i, h in enumerate(hops))
    flows = infra.link_flows(NET, infra.LinkPath(tuple(hops), tag_list, dst_index=7, dst_vport=3))
    visited, metadata, ingress = walk(topo, flows, (1, 2), tag(tag_list[0]))
    assert visited == [2, 3, 4]
    assert metadata == (layout.vswitch_meta(7, 3), layout.HV_META_MASK)
    # The tenant tables see the far vport's own physical port as in_port, so OVS drops output
    # back to it by itself, as a switch must.
    assert ingress == (4, 1)


def test_both_directions_of_a_vlink_are_classified_at_their_own_far_end() -> None:
    topo = line_topology(3)
    tags = TagAllocator()
    flows = []
    firsts = {}
    for d, (a, b, index, vport) in enumerate((((1, 2), (3, 1), 30, 1), ((3, 1), (1, 2), 10, 2))):
        hops = vlink_path(topo, a, b)
        ts = tuple(tags.get((h.dst_dpid, h.dst_port), (NET, 1, d, i)) for i, h in enumerate(hops))
        firsts[a] = ts[0]
        flows += infra.link_flows(NET, infra.LinkPath(tuple(hops), ts, index, vport))
    assert walk(topo, flows, (1, 2), tag(firsts[(1, 2)]))[1][0] == layout.vswitch_meta(30, 1)
    assert walk(topo, flows, (3, 1), tag(firsts[(3, 1)]))[1][0] == layout.vswitch_meta(10, 2)
