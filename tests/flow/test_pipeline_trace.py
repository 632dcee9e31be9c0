"""Flow level: the rules our translator emits, installed in a real OVS, traced packet by packet.

No daemon and no controller: rules are encoded by `translate/` exactly as the daemon would
send them, pushed over each bridge's management socket, and `ofproto/trace` with real frames
(S-tagged where they cross the fabric) says where each packet goes.

Fabric: s1 - s2 - s3 (linear, 2 hosts each).  Tenant A: vswitch on s1 (vport 1 = edge
port 1, vport 2 = link port 3) and on s3 (vport 1 = edge port 1, vport 2 = link port 3),
joined by a vlink over s1 -> s2 -> s3.  Tenant B: vswitch on s1 with vport 1 = edge port 2,
whose host has the *same* MAC as A's host on port 1.
"""

from __future__ import annotations

import os
import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping.paths import Hop
from tenantvisor.mapping.tags import TagAllocator
from tenantvisor.openflow import codec, oxm
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import OFPeer
from tenantvisor.testbed.topo import linear
from tenantvisor.translate import infra
from tenantvisor.translate.flow import PhysFlow, translate_flow
from tenantvisor.translate.view import PortMap, VSwitchView

pytestmark = pytest.mark.root
MAC_A1 = "02:00:00:00:00:01"  # A's host on s1 port 1 and B's host on s1 port 2
MAC_A3 = "02:00:00:00:00:05"  # A's host on s3 port 1
NET_A, NET_B = 1, 2


@dataclass
class Pipeline:
    fab: Fabric
    t1: int  # tag on hop s1 -> s2
    t2: int  # tag on hop s2 -> s3


def _peer(fab: Fabric, sw: str) -> OFPeer:
    assert fab.ovs is not None
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(fab.ovs.rundir / f"{fab.bridge(sw)}.mgmt"))
    return OFPeer(s).handshake()


def _install(fab: Fabric, sw: str, flows: list[PhysFlow]) -> None:
    peer = _peer(fab, sw)
    try:
        for i, pf in enumerate(flows):
            peer.send(pf.flow_mod(1000 + i))
        peer.send(struct.pack("!BBHI", 4, ofp.OFPT_BARRIER_REQUEST, 8, 7))
        m = peer.recv_until(lambda m: m[0] in (ofp.OFPT_BARRIER_REPLY, ofp.OFPT_ERROR))
        assert m is not None and m[0] == ofp.OFPT_BARRIER_REPLY, f"{sw} refused a rule: {m}"
    finally:
        peer.close()


def _tenant_rule(view: VSwitchView, serial: int, prio: int, match: list[codec.Oxm],
                 actions: bytes, table: int = 0) -> list[PhysFlow]:  # fmt: skip
    tf = translate_flow(view, table, match, codec.encode_instructions(apply_actions=actions))
    cookie = (view.net_id << 48) | serial
    return [PhysFlow(view.dpid, tf.table, prio, m, i, cookie) for m, i in tf.flows]


@pytest.fixture(scope="module")
def pipe() -> Iterator[Pipeline]:
    if os.geteuid() != 0:
        pytest.fail("flow tests need root (network namespaces, Open vSwitch)")
    topo = linear(3, 2)
    d = {n: s.dpid for n, s in topo.switches.items()}
    tags = TagAllocator()
    tags.get((d["s3"], 3), "another vlink")  # so the two hops' tags differ and a swap shows
    hops = [Hop(d["s1"], 3, d["s2"], 3), Hop(d["s2"], 4, d["s3"], 3)]
    t = [tags.get((h.dst_dpid, h.dst_port), ("A", i)) for i, h in enumerate(hops)]
    a1 = VSwitchView(NET_A, 1, 0xA1, d["s1"], 8, {1: PortMap(1, 1), 2: PortMap(2, 3, t[0], True)})
    a3 = VSwitchView(NET_A, 3, 0xA3, d["s3"], 8, {1: PortMap(1, 1), 2: PortMap(2, 3, None, True)})
    b1 = VSwitchView(NET_B, 2, 0xB1, d["s1"], 8, {1: PortMap(1, 2)})
    per_switch: dict[str, list[PhysFlow]] = {n: infra.provider_flows(d[n]) for n in d}
    per_switch["s1"] += [
        infra.host_flow(NET_A, infra.HostBinding(d["s1"], 1, MAC_A1, 1, 1)),
        infra.host_flow(NET_B, infra.HostBinding(d["s1"], 2, MAC_A1, 2, 1)),
        *_tenant_rule(a1, 1, 10, [codec.oxm_mac(oxm.ETH_DST, MAC_A3)], codec.output(2)),
        *_tenant_rule(b1, 1, 10, [], codec.output(ofp.OFPP_CONTROLLER, 128)),
    ]
    per_switch["s3"] += [
        infra.host_flow(NET_A, infra.HostBinding(d["s3"], 1, MAC_A3, 3, 1)),
        *_tenant_rule(a3, 1, 0, [], codec.output(1)),
    ]
    for f in infra.link_flows(NET_A, infra.LinkPath(tuple(hops), tuple(t), 3, 2)):
        sw = next(n for n, v in d.items() if v == f.dpid)
        per_switch[sw].append(f)
    with Fabric(topo) as fab:
        for sw, flows in per_switch.items():
            _install(fab, sw, flows)
        yield Pipeline(fab, t[0], t[1])


def frame(src: str, dst: str, s_tag: int | None = None, ethertype: int = 0x0800) -> str:
    def mac(m: str) -> bytes:
        return bytes.fromhex(m.replace(":", ""))

    tag = b"" if s_tag is None else struct.pack("!HH", 0x88A8, s_tag)
    ip = bytes.fromhex("4500001c00010000400100000a0000010a000005") + bytes(8)
    return (mac(dst) + mac(src) + tag + struct.pack("!H", ethertype) + ip).hex()


def trace(p: Pipeline, sw: str, in_port: int, packet: str) -> tuple[str, str]:
    """(datapath actions with OpenFlow port numbers, whole trace)."""
    assert p.fab.ovs is not None
    br = p.fab.bridge(sw)
    out = p.fab.ovs.appctl("ofproto/trace", br, f"in_port={in_port}", packet)
    dp_ports = {}
    for line in p.fab.ovs.appctl("dpif/show").splitlines():
        m = re.match(rf"\s+{re.escape(br)}?\S* (\d+)/(\d+):", line)
        if m and line.strip().startswith(p.fab.port_ifname(sw, int(m.group(1)))):
            dp_ports[m.group(2)] = m.group(1)
    actions = out.split("Datapath actions:")[-1].strip().splitlines()[0]
    named = re.sub(r"(?<![\w=])(\d+)(?![\w)])", lambda m: f"of{dp_ports.get(m.group(1), '?')}",
                   actions)  # fmt: skip
    return named, out


def test_tenant_rule_to_a_link_vport_pushes_the_fabric_tag(pipe: Pipeline) -> None:
    actions, out = trace(pipe, "s1", 1, frame(MAC_A1, MAC_A3))
    assert f"push_vlan(tpid=0x88a8,vid={pipe.t1}" in actions, out
    assert "of3" in actions, out


def test_transit_pswitch_swaps_the_tag_and_forwards(pipe: Pipeline) -> None:
    actions, out = trace(pipe, "s2", 3, frame(MAC_A1, MAC_A3, s_tag=pipe.t1))
    assert f"vid={pipe.t2}" in actions and "of4" in actions, out
    assert "goto_table:1" not in out  # never enters a tenant table on the way


def test_far_end_pops_the_tag_and_runs_the_tenant_pipeline(pipe: Pipeline) -> None:
    actions, out = trace(pipe, "s3", 3, frame(MAC_A1, MAC_A3, s_tag=pipe.t2))
    assert actions.startswith("pop_vlan") and "of1" in actions, out
    assert "metadata=0x300200000000" in out  # vswitch 3, ingress vport 2


def test_same_mac_on_another_port_is_the_other_tenant(pipe: Pipeline) -> None:
    actions, out = trace(pipe, "s1", 2, frame(MAC_A1, MAC_A3))
    assert "push_vlan" not in actions and "userspace" in actions, out
    assert "metadata=0x200100000000" in out  # tenant B's vswitch 2, vport 1


def test_unknown_host_is_dropped(pipe: Pipeline) -> None:
    actions, out = trace(pipe, "s1", 1, frame("02:00:00:00:00:42", MAC_A3))
    assert actions == "drop", out


def test_a_host_cannot_inject_into_a_vlink_by_forging_its_tag(pipe: Pipeline) -> None:
    actions, out = trace(pipe, "s2", 1, frame("02:00:00:00:00:03", MAC_A3, s_tag=pipe.t1))
    assert actions == "drop", out
