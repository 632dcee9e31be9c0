"""A host on a big switch moves (issue 10), end to end in real Open vSwitch.

Leaf-spine (one spine, three leaves, one host each).  One tenant: a big switch over lf1,
sp1 and lf2 (h1 on lf1, h2 on lf2) and a vswitch on lf3 (h3), joined by a vlink from the
big switch's port on sp1 to lf3's uplink; the test is their controller (destination-MAC
rules).  h1 is re-plugged onto a spare port of lf2 (another pswitch of its big switch),
of lf1 (its vport's own pswitch), of lf3 (outside its big switch) and home again, the
admin telling the API each time: h2 and h3 reach it wherever it is, and the tenant's
controller hears nothing of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import OFPeer
from tenantvisor.testbed.scenario import controlled_fabric
from tenantvisor.testbed.topo import Topology, two_tier

pytestmark = pytest.mark.root
DP = ProtocolDesc(ofp.OFP_VERSION)
SPARE = 7  # the port h1 is re-plugged onto, on each leaf
TO_TENANT = {ofp.OFPT_PACKET_IN, ofp.OFPT_PORT_STATUS, ofp.OFPT_FLOW_REMOVED}


@dataclass
class Bed:
    fab: Fabric
    topo: Topology
    daemon: Daemon
    net_id: int
    h1: int
    peers: list[OFPeer]


def _to(mac: str, out: int) -> p.OFPFlowMod:
    return p.OFPFlowMod(
        DP, priority=100, match=p.OFPMatch(eth_dst=mac),
        instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(out)])],
    )  # fmt: skip


@pytest.fixture(scope="module")
def bed() -> Iterator[Bed]:
    topo = two_tier(n_spines=1, n_leaves=3, hosts_per_leaf=1)
    for i in range(1, 4):
        topo.set_host_address(f"h{i}", mac=f"02:00:00:00:66:{i:02x}", ipv4=f"10.66.0.{i}/24")
    with controlled_fabric(topo, "tv-migrate-big-") as c:
        fab, daemon, listener = c.fab, c.daemon, c.listener
        dp = {n: s.dpid for n, s in topo.switches.items()}
        tok = daemon.rest("POST", "/v1/tenants", {"name": "bo"})["token"]
        body = {"controller_urls": [f"tcp:127.0.0.1:{listener.port}"]}
        nid = daemon.rest("POST", "/v1/networks", body, tok)["id"]
        net = f"/v1/networks/{nid}"
        big = daemon.rest("POST", f"{net}/switches",
                          {"dpids": [dp["lf1"], dp["sp1"], dp["lf2"]]}, tok)["vdpid"]  # fmt: skip
        leaf = daemon.rest("POST", f"{net}/switches", {"dpids": [dp["lf3"]]}, tok)["vdpid"]

        def port(sw: str, n: int, vdpid: int) -> int:
            got = daemon.rest("POST", f"{net}/ports",
                              {"dpid": dp[sw], "port": n, "vdpid": vdpid}, tok)  # fmt: skip
            return int(got["number"])

        v1, v2, up = port("lf1", 1, big), port("lf2", 1, big), port("sp1", 3, big)
        v3, down = port("lf3", 1, leaf), port("lf3", 2, leaf)
        link = {"src_vdpid": big, "src_vport": up, "dst_vdpid": leaf, "dst_vport": down}
        daemon.rest("POST", f"{net}/links", link, tok)
        ids = {}
        for h, vd, vp in (("h1", big, v1), ("h2", big, v2), ("h3", leaf, v3)):
            body = {"vdpid": vd, "vport": vp, "mac": topo.hosts[h].mac}
            ids[h] = daemon.rest("POST", f"{net}/hosts", body, tok)["id"]
        daemon.rest("POST", f"{net}/start", None, tok)
        by_dpid = {pe.dpid: pe for pe in listener.accept(2)}
        mac = {h: topo.hosts[h].mac for h in ("h1", "h2", "h3")}
        rules = {
            big: [_to(mac["h1"], v1), _to(mac["h2"], v2), _to(mac["h3"], up)],
            leaf: [_to(mac["h3"], v3), _to(mac["h1"], down), _to(mac["h2"], down)],
        }
        for vdpid, mods in rules.items():
            for i, mod in enumerate(mods):
                by_dpid[vdpid].send_msg(mod, 0x500 + i)
            by_dpid[vdpid].barrier(0x600)
        for a in ("h1", "h2", "h3"):
            for b in ("h1", "h2", "h3"):
                if a != b:
                    fab.host(a).exec(f"ip neigh replace {topo.hosts[b].ip} "
                                     f"lladdr {topo.hosts[b].mac} dev eth0")  # fmt: skip
        yield Bed(fab, topo, daemon, nid, ids["h1"], list(by_dpid.values()))


def _heard(bed: Bed) -> list[int]:
    got = []
    for peer in bed.peers:
        while (m := peer.recv(timeout=0.05)) is not None:
            got.append(m[0])
    return [t for t in got if t in TO_TENANT]


def _reached(bed: Bed) -> bool:
    h1 = bed.topo.hosts["h1"].ip
    return all(bed.fab.host(h).ping(h1, count=3, timeout=5) for h in ("h2", "h3"))


@pytest.mark.parametrize(
    "switch,port",
    [("lf2", SPARE), ("lf1", SPARE), ("lf3", SPARE), ("lf1", 1)],
    ids=["other-pswitch-of-its-big-switch", "its-vports-pswitch", "outside", "home"],
)
def test_a_host_of_a_big_switch_is_reached_wherever_it_moves(
    bed: Bed, switch: str, port: int
) -> None:
    _heard(bed)
    bed.fab.move_host("h1", switch, port)
    dpid = bed.topo.switches[switch].dpid
    path = f"/v1/networks/{bed.net_id}/hosts/{bed.h1}/move"
    deadline = time.monotonic() + 10
    while True:  # the daemon learns of the new port from the pswitch
        try:
            got = bed.daemon.rest("POST", path, {"dpid": dpid, "port": port})
            break
        except Exception:
            assert time.monotonic() < deadline, bed.daemon.log_tail(20)
            time.sleep(0.05)
    home = (switch, port) == ("lf1", 1)
    assert got["location"] == (None if home else {"dpid": dpid, "port": port})
    assert _reached(bed), bed.daemon.log_tail(20)
    assert _heard(bed) == []
