"""Flow level: the compiler's desired state installed in a real OVS and traced packet by packet.

No daemon: `compile_network` derives the rules and groups of a big switch and of a protected
vlink on a ring fabric, tenant rules are translated against the compiled views, everything
is pushed over each bridge's management socket, and `ofproto/trace` says where a frame goes,
before and after a link of the primary path is cut.

Ring s1..s4 (testbed.topo.ring(4, 1)): host on port 1, port 2 toward the next switch, port 3
toward the previous one.  Network 1: a big switch over s1, s2, s3 with host vports on s1 and
s3.  Network 2: vswitch A on s1 and B on s3 (host on port 1 each) joined by a vlink with one
backup: primary s1 -> s2 -> s3, backup s1 -> s4 -> s3.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.network import NetworkState, compile_network
from tenantvisor.mapping.alloc import IdAllocator
from tenantvisor.openflow import codec, oxm
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import OFPeer
from tenantvisor.testbed.topo import ring
from tenantvisor.translate import infra
from tenantvisor.translate.flow import PhysFlow, translate_flow
from tenantvisor.translate.view import VSwitchView
from tenantvisor.virtual.model import (
    Host,
    VirtualNetwork,
    VLink,
    VLinkEnd,
    VPort,
    VPortKind,
    VSwitch,
)

pytestmark = pytest.mark.root
H1, H3 = "02:00:00:00:00:01", "02:00:00:00:00:03"


def _ring_topology() -> PhysicalTopology:
    t = PhysicalTopology()
    for d in range(1, 5):
        t.add_switch(PSwitchInfo(d, {p: PPort(p, f"s{d}-eth{p}", "") for p in (1, 2, 3)}))
    for d in range(1, 5):
        nxt = d % 4 + 1
        t.add_link(PLink(d, 2, nxt, 3))
        t.add_link(PLink(nxt, 3, d, 2))
    return t


def _big_switch_net() -> VirtualNetwork:
    net = VirtualNetwork(1, 1, [])
    sw = VSwitch(0xB16, [1, 2, 3], 1)
    sw.ports = {1: VPort(1, 1, 1, VPortKind.EDGE), 2: VPort(2, 3, 1, VPortKind.EDGE)}
    net.switches = {sw.vdpid: sw}
    net.hosts = {1: Host(1, sw.vdpid, 1, H1), 2: Host(2, sw.vdpid, 2, H3)}
    return net


def _vlink_net() -> VirtualNetwork:
    net = VirtualNetwork(2, 2, [])
    a, b = VSwitch(0xA, [1], 2), VSwitch(0xB, [3], 3)
    a.ports = {1: VPort(1, 1, 1, VPortKind.EDGE), 2: VPort(2, 1, 2, VPortKind.LINK, 1)}
    b.ports = {1: VPort(1, 3, 1, VPortKind.EDGE), 2: VPort(2, 3, 3, VPortKind.LINK, 1)}
    net.switches = {0xA: a, 0xB: b}
    net.links = {1: VLink(1, VLinkEnd(0xA, 2), VLinkEnd(0xB, 2), backup_num=1)}
    # the same MACs as network 1, on the same ports: another tenant
    net.hosts = {1: Host(1, 0xA, 1, "02:00:00:00:00:0a"), 2: Host(2, 0xB, 1, "02:00:00:00:00:0b")}
    return net


def _tenant_rules(
    view: VSwitchView, serial: int, match: list[codec.Oxm], out: int
) -> list[PhysFlow]:
    ins = codec.encode_instructions(apply_actions=codec.output(out))
    tf = translate_flow(view, 0, match, ins)
    cookie = (view.net_id << 48) | serial
    return [PhysFlow(view.dpid, tf.table, 10, m, i, cookie) for m, i in tf.flows]


@dataclass
class Compiled:
    fab: Fabric
    big: NetworkState
    vlink: NetworkState


def _send_all(fab: Fabric, sw: str, msgs: list[bytes]) -> None:
    assert fab.ovs is not None
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(fab.ovs.rundir / f"{fab.bridge(sw)}.mgmt"))
    peer = OFPeer(s).handshake()
    try:
        for i, m in enumerate(msgs):
            peer.send(codec.set_xid(m, 1000 + i))
        peer.send(struct.pack("!BBHI", 4, ofp.OFPT_BARRIER_REQUEST, 8, 7))
        m = peer.recv_until(lambda m: m[0] in (ofp.OFPT_BARRIER_REPLY, ofp.OFPT_ERROR))
        assert m is not None and m[0] == ofp.OFPT_BARRIER_REPLY, f"{sw} refused: {m}"
    finally:
        peer.close()


@pytest.fixture(scope="module", name="c")
def compiled() -> Iterator[Compiled]:
    if os.geteuid() != 0:
        pytest.fail("flow tests need root (network namespaces, Open vSwitch)")
    topo, alloc = _ring_topology(), IdAllocator()
    big = compile_network(_big_switch_net(), topo, alloc, 8)
    vl = compile_network(_vlink_net(), topo, alloc, 8)
    rules: dict[int, list[PhysFlow]] = {d: infra.provider_flows(d) for d in range(1, 5)}
    groups: dict[int, list[bytes]] = {d: [] for d in range(1, 5)}
    for st in (big, vl):
        for pf in st.rules.values():
            rules[pf.dpid].append(pf)
        for (d, _), g in st.groups.items():
            groups[d].append(g.mod(ofp.OFPGC_ADD))
    # big switch: h1 -> h3 and back, installed where each enters (translated per pswitch)
    for d in (1, 3):
        view = big.views[(0xB16, d)]
        rules[d] += _tenant_rules(view, 1, [codec.oxm_mac(oxm.ETH_DST, H3)], 2)
        rules[d] += _tenant_rules(view, 2, [codec.oxm_mac(oxm.ETH_DST, H1)], 1)
    # vlink: host <-> link vport on each side, pinned to in_port as a proactive app does
    for vd, d in ((0xA, 1), (0xB, 3)):
        view = vl.views[(vd, d)]
        rules[d] += _tenant_rules(view, 1, [codec.oxm_u32(oxm.IN_PORT, 1)], 2)
        rules[d] += _tenant_rules(view, 2, [codec.oxm_u32(oxm.IN_PORT, 2)], 1)
    with Fabric(ring(4, 1)) as fab:
        for d in range(1, 5):
            _send_all(fab, f"s{d}", groups[d] + [pf.flow_mod(0) for pf in rules[d]])
        yield Compiled(fab, big, vl)


def frame(src: str, dst: str, s_tag: int | None = None) -> str:
    tag = b"" if s_tag is None else struct.pack("!HH", 0x88A8, s_tag)
    mac = bytes.fromhex
    ip = bytes.fromhex("4500001c00010000400100000a0000010a000003") + bytes(8)
    return (mac(dst.replace(":", "")) + mac(src.replace(":", "")) + tag + b"\x08\x00" + ip).hex()


def trace(c: Compiled, sw: str, in_port: int, packet: str) -> str:
    assert c.fab.ovs is not None
    return c.fab.ovs.appctl("ofproto/trace", c.fab.bridge(sw), f"in_port={in_port}", packet)


def _outputs(out: str) -> list[str]:
    """The `output:N` / `IN_PORT` lines OVS executed (not the ones it skipped)."""
    lines = [ln.strip() for ln in out.splitlines()]
    done = []
    for i, ln in enumerate(lines):
        if ln.startswith("output:") or ln == "IN_PORT":
            skipped = i + 1 < len(lines) and "skipping" in lines[i + 1]
            if not skipped:
                done.append(ln)
    return done


def _route_tag(st: NetworkState, dpid: int, in_port: int) -> int:
    """The tag of the rule on `dpid` that matches packets arriving on `in_port`."""
    for pf in st.rules.values():
        fields = {o.field: codec.oxm_int(o) for o in codec.parse_match(pf.match, 0)[0]}
        if pf.dpid == dpid and fields.get(oxm.IN_PORT) == in_port and oxm.VLAN_VID in fields:
            return fields[oxm.VLAN_VID] & 0xFFF
    raise AssertionError(f"no tagged rule on {dpid} port {in_port}")


def test_big_switch_entry_applies_the_tenant_rule_and_sends_over_the_route(
    c: Compiled,
) -> None:
    out = trace(c, "s1", 1, frame(H1, H3))
    assert "push_vlan:0x88a8" in out and _outputs(out) == ["output:2"], out


def test_big_switch_transit_swaps_without_a_tenant_table(c: Compiled) -> None:
    tag = _route_tag(c.big, 2, 3)
    out = trace(c, "s2", 3, frame(H1, H3, tag))
    assert _outputs(out) == ["output:2"] and "goto_table" not in out, out


def test_big_switch_exit_delivers_to_the_vport_without_reclassifying(c: Compiled) -> None:
    tag = _route_tag(c.big, 3, 3)
    out = trace(c, "s3", 3, frame(H1, H3, tag))
    assert "pop_vlan" in out and _outputs(out) == ["output:1"], out
    assert "goto_table" not in out, out


def test_protected_vlink_uses_the_primary_then_the_backup_when_its_port_dies(
    c: Compiled,
) -> None:
    src = "02:00:00:00:00:0a"
    out = trace(c, "s1", 1, frame(src, "02:00:00:00:00:0b"))
    assert "type=ff" in out or "group:" in out, out
    assert _outputs(out) == ["output:2"], out
    c.fab.set_link_state("s1", "s2", False)
    try:
        deadline = time.monotonic() + 5
        while True:
            out = trace(c, "s1", 1, frame(src, "02:00:00:00:00:0b"))
            if _outputs(out) == ["output:3"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert _outputs(out) == ["output:3"], out
    finally:
        c.fab.set_link_state("s1", "s2", True)


def test_arriving_over_the_backup_looks_like_arriving_on_the_vports_own_port(
    c: Compiled,
) -> None:
    """B's vport is on s3 port 3 (toward s2); the backup enters s3 on port 2 (from s4).  The
    tenant's rule pinned to that vport must still match, and the host get the frame."""
    tag = _route_tag(c.vlink, 3, 2)
    out = trace(c, "s3", 2, frame("02:00:00:00:00:0a", "02:00:00:00:00:0b", tag))
    assert "load:0x3->NXM_OF_IN_PORT[]" in out or "set_field:3->in_port" in out, out
    assert _outputs(out) == ["output:1"], out
