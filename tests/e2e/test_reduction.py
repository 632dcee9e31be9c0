"""Flow-rule reduction at `hop`, end to end, in a real Open vSwitch fabric.

Leaf-spine (one spine, two leaves, two hosts each).  One tenant: vswitches on lf1, sp1 and
lf2 joined by vlinks (lf1:3 - sp1:1, sp1:2 - lf2:3), the test as its controller, installing
host-pair rules (eth and IPv4 src/dst) at every vswitch on the path for h1<->h3 and h2<->h4.
At `hop`, the spine's vswitch is core: everything arriving from lf1 goes to lf2 and back, so
its four tenant rules are two physical rules; the leaves keep their own hosts' rules exact
(the ingress edge) and reduce the ones for what comes down from the spine.  Pings flow at
every level; switching the level re-derives the physical rules while traffic runs, without
the controller noticing; the reduced rules' counters read unknown.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.bench.migration import pair_rule
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.scenario import (
    controlled_fabric,
    restart_after_crash,
    wait_reconciled_silently,
)
from tenantvisor.testbed.topo import Topology, two_tier

pytestmark = pytest.mark.root
DP = ProtocolDesc(ofp.OFP_VERSION)
UNKNOWN = 0xFFFFFFFFFFFFFFFF
PAIRS = (("h1", "h3"), ("h2", "h4"))


@dataclass
class Bed:
    fab: Fabric
    topo: Topology
    daemon: Daemon
    token: str
    net_id: int
    peers: dict[str, OFPeer]  # by the vswitch's leaf/spine name
    rundir: Path
    sock: str
    listener: ControllerListener
    daemons: list[Daemon]


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    topo = two_tier(n_spines=1, n_leaves=2, hosts_per_leaf=2)
    for i in range(1, 5):
        topo.set_host_address(f"h{i}", mac=f"02:00:00:00:99:{i:02x}", ipv4=f"10.99.0.{i}/24")
    with controlled_fabric(topo, "tv-reduce-") as c:
        fab, daemon, listener = c.fab, c.daemon, c.listener
        rundir, sock, daemons = c.rundir, c.sock, c.daemons
        dp = {n: s.dpid for n, s in topo.switches.items()}
        tok = daemon.rest("POST", "/v1/tenants", {"name": "rita"})["token"]
        url = f"tcp:127.0.0.1:{listener.port}"
        body = {"controller_urls": [url], "scalability": "hop"}
        nid = daemon.rest("POST", "/v1/networks", body, tok)["id"]
        net = f"/v1/networks/{nid}"
        vd, vp = {}, {}  # vdpid by switch; vport by (switch, physical port)
        for sw in ("lf1", "sp1", "lf2"):
            vd[sw] = daemon.rest("POST", f"{net}/switches", {"dpids": [dp[sw]]}, tok)["vdpid"]
        ports = {"lf1": [1, 2, 3], "sp1": [1, 2], "lf2": [1, 2, 3]}
        for sw, nums in ports.items():
            for n in nums:
                got = daemon.rest("POST", f"{net}/ports", {"dpid": dp[sw], "port": n}, tok)
                vp[(sw, n)] = got["number"]
        for h in ("h1", "h2", "h3", "h4"):
            host = topo.hosts[h]
            body = {"vdpid": vd[host.switch], "vport": vp[(host.switch, host.port)],
                    "mac": host.mac}  # fmt: skip
            daemon.rest("POST", f"{net}/hosts", body, tok)
        for (a, pa), (b, pb) in ((("lf1", 3), ("sp1", 1)), (("sp1", 2), ("lf2", 3))):
            daemon.rest("POST", f"{net}/links", {
                "src_vdpid": vd[a], "src_vport": vp[(a, pa)],
                "dst_vdpid": vd[b], "dst_vport": vp[(b, pb)],
            }, tok)  # fmt: skip
        daemon.rest("POST", f"{net}/start", None, tok)
        by_dpid = {pe.dpid: pe for pe in listener.accept(3)}
        peers = {sw: by_dpid[vd[sw]] for sw in vd}
        cookie = 0xB00
        for x, y in PAIRS:
            hx, hy = topo.hosts[x], topo.hosts[y]
            for src, dst in ((hx, hy), (hy, hx)):
                right = src.switch == "lf1"
                hops = {
                    src.switch: vp[(src.switch, 3)],
                    "sp1": vp[("sp1", 2 if right else 1)],
                    dst.switch: vp[(dst.switch, dst.port)],
                }
                for sw, out in hops.items():
                    cookie += 1
                    peers[sw].send_msg(pair_rule(src, dst, out, cookie), cookie)
        for i, peer in enumerate(peers.values()):
            peer.barrier(900 + i)
        for x, y in PAIRS:
            for a, b in ((x, y), (y, x)):
                fab.host(a).exec(f"ip neigh replace {topo.hosts[b].ip} "
                                 f"lladdr {topo.hosts[b].mac} dev eth0")  # fmt: skip
        yield Bed(fab, topo, daemon, tok, nid, peers, rundir, sock, listener, daemons)


def _tenant_rules(fab: Fabric, sw: str, net_id: int) -> list[str]:
    """The network's rules in the tenant tables (physical table 1) of a pswitch."""
    out = []
    for line in fab.ofctl(sw, "dump-flows").splitlines():
        m = re.search(r"cookie=0x([0-9a-f]+),.*table=1,", line)
        if m and int(m.group(1), 16) >> 48 == net_id:
            out.append(line)
    return out


def _pings(bed: Bed) -> bool:
    return all(
        bed.fab.host(a).ping(bed.topo.hosts[b].ip, count=3, timeout=5)
        for x, y in PAIRS for a, b in ((x, y), (y, x))
    )  # fmt: skip


def _flow_counts(peer: OFPeer, xid: int) -> set[int]:
    peer.send_msg(p.OFPFlowStatsRequest(DP), xid)
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    stats = p.OFPFlowStatsReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2])
    return {s.packet_count for s in stats.body}


def _wait_rules(bed: Bed, sw: str, n: int) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        got = _tenant_rules(bed.fab, sw, bed.net_id)
        if len(got) == n or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_the_core_holds_one_rule_per_direction_and_traffic_flows(bed: Bed) -> None:
    assert _pings(bed)
    core = _wait_rules(bed, "sp1", 2)
    assert len(core) == 2, "\n".join(core)
    assert all("priority=65534" in line for line in core)
    assert not any("nw_src" in line or "dl_src" in line for line in core)  # hop: no fields
    for leaf in ("lf1", "lf2"):
        # the ingress edge keeps its own hosts' two rules exactly; the two for what comes
        # down from the spine (no host of the leaf sends it: table 0 admits only their
        # MACs) are reduced like the spine's, one per output
        rules = _tenant_rules(bed.fab, leaf, bed.net_id)
        assert len(rules) == 4
        assert len([r for r in rules if "priority=65534" in r]) == 2, rules
    # the reduced rules share physical rules: their counters are unknown; the ingress
    # edges' are their own
    assert _flow_counts(bed.peers["sp1"], 50) == {UNKNOWN}
    edge = _flow_counts(bed.peers["lf1"], 51)
    assert UNKNOWN in edge and edge - {UNKNOWN}


def test_changing_the_level_while_traffic_runs_re_derives_the_rules(bed: Bed) -> None:
    d, net = bed.daemon, f"/v1/networks/{bed.net_id}"
    h3 = bed.topo.hosts["h3"]
    ping = bed.fab.host("h1").popen(["ping", "-n", "-i", "0.01", "-c", "400", h3.ip],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(0.5)
    assert (
        d.rest("PUT", f"{net}/scalability", {"level": "exact"}, bed.token)["scalability"] == "exact"
    )
    assert len(_wait_rules(bed, "sp1", 4)) == 4  # back to one physical rule per tenant rule
    time.sleep(0.5)
    d.rest("PUT", f"{net}/scalability", {"level": "host"}, bed.token)
    core = _wait_rules(bed, "sp1", 4)  # host: one per host pair and direction (4 pairs)
    assert all("priority=65534" in line and "nw_src" in line for line in core), core
    time.sleep(0.5)
    d.rest("PUT", f"{net}/scalability", {"level": "hop"}, bed.token)
    assert len(_wait_rules(bed, "sp1", 2)) == 2
    out, _ = ping.communicate(timeout=30)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m is not None, out
    assert int(m.group(1)) == int(m.group(2)), f"pings lost across level changes: {out[-200:]}"
    assert _flow_counts(bed.peers["sp1"], 60) == {UNKNOWN}
    assert _pings(bed)


def _udp(src: object, dst: object, ip_src: str) -> bytes:
    """A UDP datagram from `src`'s MAC to `dst`'s, with `ip_src` as its source address."""
    from os_ken.lib.packet import ethernet, ipv4, packet, udp

    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst.mac, src.mac, 0x0800))  # type: ignore[attr-defined]
    pkt.add_protocol(ipv4.ipv4(src=ip_src, dst=dst.ip, proto=17))  # type: ignore[attr-defined]
    pkt.add_protocol(udp.udp(4000, 4001))
    pkt.add_protocol(b"tenantvisor")
    pkt.serialize()
    return bytes(pkt.data)


def _rx(bed: Bed, host: str) -> int:
    out = bed.fab.host(host).exec("cat /sys/class/net/eth0/statistics/rx_packets")
    return int(out.stdout.strip())


def test_a_packet_the_controller_injects_meets_the_exact_tables_not_the_reduced_ones(
    bed: Bed,
) -> None:
    """The hop rule at the core would carry anything from lf1 to lf2; the tenant's exact
    table at the core has no rule for this packet (its IPv4 source is not h1's), so it must
    be dropped there.  lf2 holds a catch-all for h3's MAC, so a packet wrongly carried by
    the reduced rule would reach h3 and show."""
    h1, h3 = bed.topo.hosts["h1"], bed.topo.hosts["h3"]
    d, net = bed.daemon, f"/v1/networks/{bed.net_id}"
    switches = d.rest("GET", net, None, bed.token)["switches"]
    vports = {(vp["dpid"], vp["port"]): vp["number"] for sw in switches for vp in sw["ports"]}
    dp = {n: s.dpid for n, s in bed.topo.switches.items()}
    to_h3 = vports[(dp["lf2"], h3.port)]
    catch_all = p.OFPFlowMod(
        DP, cookie=0xCA7, priority=1, match=p.OFPMatch(eth_dst=h3.mac),
        instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                              [p.OFPActionOutput(to_h3)])],
    )  # fmt: skip
    bed.peers["lf2"].send_msg(catch_all, 70)
    bed.peers["lf2"].barrier(71)
    assert len(_wait_rules(bed, "sp1", 2)) == 2  # the core is still reduced
    uplink = vports[(dp["lf1"], 3)]

    def inject(data: bytes, xid: int) -> int:
        before = _rx(bed, "h3")
        for i in range(5):
            po = p.OFPPacketOut(DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
                                actions=[p.OFPActionOutput(uplink)], data=data)  # fmt: skip
            bed.peers["lf1"].send_msg(po, xid + i)
        bed.peers["lf1"].barrier(xid + 9)
        time.sleep(0.5)
        return _rx(bed, "h3") - before

    assert inject(_udp(h1, h3, h1.ip), 80) >= 5  # the core's exact rule for h1->h3 carries it
    assert inject(_udp(h1, h3, "10.99.0.77"), 90) == 0  # no exact rule at the core: dropped


def test_new_arrivals_refine_the_core_and_their_removal_lets_it_coarsen_again(bed: Bed) -> None:
    """lf1 starts sending h2->h3 to the spine, where the tenant has no rule for it (a table
    miss, a drop): `hop` (everything from lf1 to lf2) would carry it, so an exact drop for
    it goes above the hop rule (held in the network's outbox until the tenant's BARRIER,
    then sent before lf1's rule); when that rule goes, the drop goes a moment later.
    A pair that reaches the spine and goes elsewhere than the rest refines the core to
    `host` (the unit tests show it)."""
    h2, h3 = bed.topo.hosts["h2"], bed.topo.hosts["h3"]
    d, net = bed.daemon, f"/v1/networks/{bed.net_id}"
    switches = d.rest("GET", net, None, bed.token)["switches"]
    vports = {(vp["dpid"], vp["port"]): vp["number"] for sw in switches for vp in sw["ports"]}
    uplink = vports[(bed.topo.switches["lf1"].dpid, 3)]
    stray = pair_rule(h2, h3, uplink, 0x5EA)
    bed.peers["lf1"].send_msg(stray, 100)
    bed.peers["lf1"].barrier(101)
    # changed before the barrier reply (the BARRIER flushed the outbox: the drop went first,
    # and counts for the connection whose rule made it necessary, so the reply waited for
    # the spine too): the two hop rules stay, the stray pair is dropped above them
    core = _tenant_rules(bed.fab, "sp1", bed.net_id)
    drops = [line for line in core if "priority=65535" in line]
    assert len(core) == 3 and len(drops) == 1, core
    assert "nw_src=10.99.0.2,nw_dst=10.99.0.3" in drops[0] and "actions=drop" in drops[0]
    h2_to_h3 = bed.fab.host("h2").ping(h3.ip, count=2, timeout=2)
    assert not h2_to_h3  # the tenant's core drops it (no rule there), reduced or not
    assert _pings(bed)
    gone = p.OFPFlowMod(
        DP, command=ofp.OFPFC_DELETE_STRICT, priority=100, match=stray.match,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
    )  # fmt: skip
    bed.peers["lf1"].send_msg(gone, 102)
    bed.peers["lf1"].barrier(103)
    assert len(_wait_rules(bed, "sp1", 2)) == 2
    assert _pings(bed)


def _lite_rules(fab: Fabric, sw: str, net_id: int) -> list[str]:
    """The network's LITE rules: table 0, above the classification of their tag block."""
    out = []
    for line in fab.ofctl(sw, "dump-flows", "table=0").splitlines():
        m = re.search(r"cookie=0x([0-9a-f]+),", line)
        if m and int(m.group(1), 16) >> 48 == net_id and "priority=32769" in line:
            out.append(line)
    return out


def test_lite_carries_the_destination_in_the_tag_and_the_core_matches_only_it(bed: Bed) -> None:
    """At `lite` the leaves' rules that send toward the spine tag packets with their
    destination's edge; the spine holds one rule per (ingress, destination edge), matching
    the fabric tag alone, and nothing in its tenant tables.  Switching hop -> lite -> hop
    under a ping loses nothing."""
    d, net = bed.daemon, f"/v1/networks/{bed.net_id}"
    h3 = bed.topo.hosts["h3"]
    leaves = {leaf: len(_tenant_rules(bed.fab, leaf, bed.net_id)) for leaf in ("lf1", "lf2")}
    ping = bed.fab.host("h1").popen(["ping", "-n", "-i", "0.01", "-c", "300", h3.ip],
                                    stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(0.5)
    assert d.rest("PUT", f"{net}/scalability", {"level": "lite"}, bed.token)["scalability"] == (
        "lite"
    )
    assert _wait_rules(bed, "sp1", 0) == []
    deadline = time.monotonic() + 10
    while len(lite := _lite_rules(bed.fab, "sp1", bed.net_id)) != 2:
        assert time.monotonic() < deadline, lite
        time.sleep(0.1)
    assert all("dl_vlan=" in line and "nw_src" not in line and "dl_dst" not in line
               for line in lite), lite  # fmt: skip
    for leaf, n in leaves.items():  # ingress edges: every rule exact, as at hop
        assert len(_tenant_rules(bed.fab, leaf, bed.net_id)) == n
    lf1 = _tenant_rules(bed.fab, "lf1", bed.net_id)
    up = [line for line in lf1 if "dl_dst=02:00:00:00:99:03" in line]
    assert up and all("set_field:" in line for line in up), lf1  # h1->h3 leaves tagged
    assert _pings(bed)
    assert _flow_counts(bed.peers["sp1"], 110) == {UNKNOWN}
    time.sleep(0.5)
    d.rest("PUT", f"{net}/scalability", {"level": "hop"}, bed.token)
    assert len(_wait_rules(bed, "sp1", 2)) == 2
    out, _ = ping.communicate(timeout=30)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m is not None, out
    # entering lite the senders tag first and the core changes after their BARRIERs;
    # leaving it the core's rules for untagged packets go in before any sender stops
    assert int(m.group(1)) == int(m.group(2)), f"pings lost across lite: {out[-200:]}"
    assert _lite_rules(bed.fab, "sp1", bed.net_id) == []


def test_a_restart_finds_the_reduced_rules_right_and_sends_nothing(bed: Bed) -> None:
    """Last in the module: kill -9 and a new daemon on the same state.  The proofs are
    redone once every vswitch has its rules back, before any pswitch is synced: the
    reduced rules on the pswitches are what it would install."""
    before = _tenant_rules(bed.fab, "sp1", bed.net_id)
    again = restart_after_crash(bed.daemon, bed.rundir / "d2", bed.daemons)
    wait_reconciled_silently(again, len(bed.topo.switches))
    assert len(_tenant_rules(bed.fab, "sp1", bed.net_id)) == len(before) == 2
    bed.listener.accept(3, timeout=20)
    assert _pings(bed)


def test_a_restart_at_lite_finds_the_tag_rules_right_and_sends_nothing(bed: Bed) -> None:
    """After the restart above: the network at lite, then kill -9 again.  The tag blocks
    come back with the same ids (the store holds them), the LITE rules are what the proofs
    give again, and no pswitch is sent anything."""
    d, net = bed.daemons[-1], f"/v1/networks/{bed.net_id}"
    d.rest("PUT", f"{net}/scalability", {"level": "lite"}, bed.token)
    deadline = time.monotonic() + 10
    while len(lite := _lite_rules(bed.fab, "sp1", bed.net_id)) != 2:
        assert time.monotonic() < deadline, lite
        time.sleep(0.1)
    assert _pings(bed)
    again = restart_after_crash(d, bed.rundir / "d3", bed.daemons)
    wait_reconciled_silently(again, len(bed.topo.switches))

    def bare(lines: list[str]) -> list[str]:
        return sorted(re.sub(r"(duration|n_packets|n_bytes|idle_age|hard_age)=[^ ,]+,? ?", "",
                             ln) for ln in lines)  # fmt: skip

    assert bare(_lite_rules(bed.fab, "sp1", bed.net_id)) == bare(lite)
    bed.listener.accept(3, timeout=20)
    assert _pings(bed)
