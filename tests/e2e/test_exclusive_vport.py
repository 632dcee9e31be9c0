"""An exclusive edge vport end to end (issue 11): any source MAC, any VLAN, in real OVS.

Leaf-spine, one spine, two leaves, two hosts each (h1, h2 on lf1; h3, h4 on lf2).  Tenant
"appliance" holds h1's port with an exclusive vport (no host registered there) and has h3
behind a plain vport on lf2, joined by a vlink over the spine; tenant "neighbour" has h2
and h4 (plain vports, registered MACs) and its own vlink over the same uplinks.  The test is
both tenants' controller.

h1 sends frames with several random source MACs, one with an 802.1Q tag and one with an
S-tag of the fabric's own TPID (0x88a8): each reaches the appliance's controller on both
vswitches and h3 byte for byte (the tenant's tags untouched, the fabric's gone), and none
reaches the neighbour, whose hosts still reach each other.
"""

from __future__ import annotations

import re
import secrets
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.openflow import codec, oxm
from tenantvisor.testbed.daemon import Daemon, DaemonError
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.scenario import controlled_fabric, rx_packets
from tenantvisor.testbed.topo import Topology, two_tier
from tenantvisor.translate import infra

pytestmark = pytest.mark.root
DP = ProtocolDesc(ofp.OFP_VERSION)
UPLINK = 3  # on both leaves (two hosts per leaf, one spine)
EXPERIMENTAL = 0x88B5  # IEEE 802 local experimental ethertype: no host stack answers it

# h3's side: every frame eth0 receives, its VLAN tag put back from PACKET_AUXDATA (the
# kernel strips a received tag into it), one hex line each, until the time is up
RECEIVER = """
import socket, struct, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(("eth0", 0))
s.setsockopt(263, 8, 1)  # SOL_PACKET, PACKET_AUXDATA
end = time.monotonic() + float(sys.argv[1])
print("ready", flush=True)
while (left := end - time.monotonic()) > 0:
    s.settimeout(left)
    try:
        data, anc, _, addr = s.recvmsg(65535, socket.CMSG_SPACE(32))
    except socket.timeout:
        break
    if addr[2] == socket.PACKET_OUTGOING:
        continue
    for level, kind, raw in anc:
        if level == 263 and kind == 8:
            status, _, _, _, _, tci, tpid = struct.unpack("IIIHHHH", raw[:20])
            if status & 0x10:  # TP_STATUS_VLAN_VALID (0x40: the TPID is valid too)
                tpid = tpid if status & 0x40 else 0x8100
                data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
    print(data.hex(), flush=True)
"""
SENDER = (
    "import socket,sys;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);s.bind(('eth0',0))\n"
    "for f in sys.argv[1:]: s.send(bytes.fromhex(f))"
)


@dataclass
class Bed:
    fab: Fabric
    topo: Topology
    daemon: Daemon
    tokens: dict[str, str]
    nets: dict[str, int]
    vports: dict[tuple[str, str], int]  # (tenant, role) -> vport number
    peers: dict[tuple[str, str], OFPeer]  # (tenant, leaf) -> its vswitch's connection
    rundir: Path
    listener: ControllerListener


def _rule(match: p.OFPMatch, outs: list[int], priority: int = 10) -> p.OFPFlowMod:
    actions = [p.OFPActionOutput(o, ofp.OFPCML_NO_BUFFER) for o in outs]
    return p.OFPFlowMod(
        DP, priority=priority, match=match,
        instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)],
    )  # fmt: skip


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    topo = two_tier(n_spines=1, n_leaves=2, hosts_per_leaf=2)
    for i in range(1, 5):
        topo.set_host_address(f"h{i}", mac=f"02:00:00:00:88:{i:02x}", ipv4=f"10.88.0.{i}/24")
    with controlled_fabric(topo, "tv-exclusive-") as c:
        fab, daemon, listener = c.fab, c.daemon, c.listener
        rundir = c.rundir
        dp = {n: s.dpid for n, s in topo.switches.items()}
        url = f"tcp:127.0.0.1:{listener.port}"
        tokens, nets, vports, vdpids = {}, {}, {}, {}
        # (tenant, leaf) -> the host port there, and whether it is held exclusively
        plan = {("appliance", "lf1"): (1, True), ("appliance", "lf2"): (1, False),
                ("neighbour", "lf1"): (2, False), ("neighbour", "lf2"): (2, False)}  # fmt: skip
        for t in ("appliance", "neighbour"):
            tok = tokens[t] = daemon.rest("POST", "/v1/tenants", {"name": t})["token"]
            n = nets[t] = daemon.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
            for leaf in ("lf1", "lf2"):
                body = {"dpids": [dp[leaf]]}
                vdpids[(t, leaf)] = daemon.rest("POST", f"/v1/networks/{n}/switches", body,
                                                tok)["vdpid"]  # fmt: skip
                port, exclusive = plan[(t, leaf)]
                body = {"dpid": dp[leaf], "port": port, "exclusive": exclusive}
                vp = daemon.rest("POST", f"/v1/networks/{n}/ports", body, tok)
                assert vp["exclusive"] is exclusive
                vports[(t, f"{leaf}-host")] = vp["number"]
                body = {"dpid": dp[leaf], "port": UPLINK}
                vports[(t, f"{leaf}-up")] = daemon.rest("POST", f"/v1/networks/{n}/ports", body,
                                                        tok)["number"]  # fmt: skip
            link = {
                "src_vdpid": vdpids[(t, "lf1")], "src_vport": vports[(t, "lf1-up")],
                "dst_vdpid": vdpids[(t, "lf2")], "dst_vport": vports[(t, "lf2-up")],
            }  # fmt: skip
            daemon.rest("POST", f"/v1/networks/{n}/links", link, tok)
        # hosts: h3 for the appliance (h1's frames go there), h2 and h4 for the neighbour;
        # none on the exclusive vport: its frames need no registration
        for t, leaf, h in (("appliance", "lf2", "h3"), ("neighbour", "lf1", "h2"),
                           ("neighbour", "lf2", "h4")):  # fmt: skip
            body = {"vdpid": vdpids[(t, leaf)], "vport": vports[(t, f"{leaf}-host")],
                    "mac": topo.hosts[h].mac}  # fmt: skip
            daemon.rest("POST", f"/v1/networks/{nets[t]}/hosts", body, tokens[t])
        for t in ("appliance", "neighbour"):
            daemon.rest("POST", f"/v1/networks/{nets[t]}/start", None, tokens[t])
        by_vdpid = {pe.dpid: pe for pe in listener.accept(4)}
        peers = {key: by_vdpid[v] for key, v in vdpids.items()}
        ctl = ofp.OFPP_CONTROLLER
        # the appliance: everything from h1's port to its controller and over the vlink,
        # and at lf2 from the vlink to its controller and h3
        v = vports
        peers[("appliance", "lf1")].send_msg(
            _rule(p.OFPMatch(in_port=v[("appliance", "lf1-host")]),
                  [ctl, v[("appliance", "lf1-up")]]), 11)  # fmt: skip
        peers[("appliance", "lf2")].send_msg(
            _rule(p.OFPMatch(in_port=v[("appliance", "lf2-up")]),
                  [ctl, v[("appliance", "lf2-host")]]), 12)  # fmt: skip
        # the neighbour: a wire between its two hosts, and every other packet to it
        for leaf in ("lf1", "lf2"):
            host, up = v[("neighbour", f"{leaf}-host")], v[("neighbour", f"{leaf}-up")]
            peer = peers[("neighbour", leaf)]
            peer.send_msg(_rule(p.OFPMatch(in_port=host), [up]), 21)
            peer.send_msg(_rule(p.OFPMatch(in_port=up), [host]), 22)
            peer.send_msg(_rule(p.OFPMatch(), [ctl], priority=0), 23)
        for i, peer in enumerate(peers.values()):
            peer.barrier(900 + i)
        yield Bed(fab, topo, daemon, tokens, nets, vports, peers, rundir, listener)


def _frame(src: bytes, dst: str, tag: tuple[int, int] | None, i: int) -> bytes:
    """A frame of the experimental ethertype, optionally tagged (tpid, tci), 64 bytes+."""
    head = bytes.fromhex(dst.replace(":", "")) + src
    if tag is not None:
        head += struct.pack("!HH", *tag)
    body = struct.pack("!H", EXPERIMENTAL) + f"tv-exclusive {i}".encode()
    return (head + body).ljust(64 + (4 if tag else 0), b"\x00")


def _random_mac() -> bytes:
    """A random unicast, locally administered MAC (never one of the testbed's)."""
    first = (secrets.randbits(8) & 0xFC) | 0x02
    return bytes([first]) + secrets.token_bytes(5)


def _packet_ins(peer: OFPeer, quiet: float = 0.5, until: int = 0) -> list[tuple[int, bytes]]:
    """(in_port, data) of the PACKET_INs a vswitch sends, until `until` have come and
    then `quiet` seconds pass without another (or 5 s in all)."""
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        m = peer.recv(timeout=quiet if len(got) >= until else deadline - time.monotonic())
        if m is None:
            if len(got) >= until:
                break
            continue
        if m[0] != ofp.OFPT_PACKET_IN:
            continue
        pi = codec.PacketIn.parse(m[2])
        in_port = next(codec.oxm_int(o) for o in pi.match if o.field == oxm.IN_PORT)
        got.append((in_port, pi.data))
    return got


def test_frames_with_any_mac_and_vlan_reach_the_tenant_and_no_one_else(bed: Bed) -> None:
    h3 = bed.topo.hosts["h3"]
    frames = [_frame(_random_mac(), h3.mac, None, i) for i in range(5)]
    frames.append(_frame(_random_mac(), h3.mac, (0x8100, (3 << 13) | 42), 5))  # a C-tag
    frames.append(_frame(_random_mac(), h3.mac, (0x88A8, 1), 6))  # the fabric's TPID
    for peer in bed.peers.values():
        _packet_ins(peer, quiet=0.1)  # nothing left over
    quiet = {h: rx_packets(bed.fab, h) for h in ("h2", "h4")}
    recv = bed.fab.host("h3").popen([sys.executable, "-c", RECEIVER, "4"],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert recv.stdout is not None and recv.stdout.readline().strip() == "ready"
    bed.fab.host("h1").exec([sys.executable, "-c", SENDER, *(f.hex() for f in frames)])

    v = bed.vports
    at_lf1 = _packet_ins(bed.peers[("appliance", "lf1")], until=len(frames))
    assert sorted(at_lf1) == sorted((v[("appliance", "lf1-host")], f) for f in frames)
    at_lf2 = _packet_ins(bed.peers[("appliance", "lf2")], until=len(frames))
    assert sorted(at_lf2) == sorted((v[("appliance", "lf2-up")], f) for f in frames)
    out, _ = recv.communicate(timeout=10)
    seen = {bytes.fromhex(line) for line in out.split()}  # "ready" was read
    assert set(frames) <= seen, "h3 did not get every frame as it was sent"

    sources = {f[6:12] for f in frames}
    for leaf in ("lf1", "lf2"):
        leaked = [d for _, d in _packet_ins(bed.peers[("neighbour", leaf)]) if d[6:12] in sources]
        assert leaked == [], f"the neighbour's {leaf} vswitch saw the appliance's frames"
    assert {h: rx_packets(bed.fab, h) for h in ("h2", "h4")} == quiet
    assert bed.fab.host("h2").ping(bed.topo.hosts["h4"].ip, count=2, timeout=5)


def test_table_0_holds_the_port_by_in_port_alone(bed: Bed) -> None:
    flows = bed.fab.ofctl("lf1", "dump-flows", "table=0")
    prio = f"priority={infra.PRIO_EXCLUSIVE},"
    lines = [line for line in flows.splitlines() if prio in line]
    assert len(lines) == 1, flows
    match = re.search(rf"{prio}(\S+) actions", lines[0])
    assert match is not None and match.group(1) == "in_port=1", lines[0]


def test_no_other_tenant_may_use_or_move_onto_the_port(bed: Bed) -> None:
    d, t, n = bed.daemon, bed.tokens["neighbour"], bed.nets["neighbour"]
    lf1 = bed.topo.switches["lf1"].dpid
    with pytest.raises(DaemonError, match=r"HTTP 409.*held exclusively by a vport of another"):
        d.rest("POST", f"/v1/networks/{n}/ports", {"dpid": lf1, "port": 1}, t)
    hosts = d.rest("GET", f"/v1/networks/{n}", token=t)["hosts"]
    with pytest.raises(DaemonError, match=r"HTTP 409.*held exclusively"):
        d.rest("POST", f"/v1/networks/{n}/hosts/{hosts[0]['id']}/move", {"dpid": lf1, "port": 1})
    got = d.rest("GET", f"/v1/networks/{bed.nets['appliance']}", token=bed.tokens["appliance"])
    ports = {p["port"]: p["exclusive"] for s in got["switches"] for p in s["ports"]
             if p["dpid"] == lf1}  # fmt: skip
    assert ports == {1: True, UPLINK: False}
