"""A restart without loss: `kill -9` of the daemon under traffic, then a new daemon on the
same state directory.

Leaf-spine fabric; tenant carol has a vswitch on lf1 and one on lf2 joined by a vlink, hosts
h1 (lf1) and h3 (lf2), and a controller that is the test itself: it installs the rules (with
cookies of its own) and then watches.  While h1 pings h3 every 10 ms the daemon is killed
and started again.  The pswitches keep forwarding throughout, the new daemon finds on them
exactly what it would install and sends nothing, the rules' durations keep counting, the
vswitches come back to the controller with the same datapath ids and the tenant's rules
(cookies included), and the API knows the tenant and its network by the same token.
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

from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, forward_rule
from tenantvisor.testbed.scenario import (
    controlled_fabric,
    restart_after_crash,
    two_tier_layout,
    wait_reconciled_silently,
)
from tenantvisor.testbed.topo import Topology

pytestmark = pytest.mark.root
DP = ProtocolDesc(ofp.OFP_VERSION)
ALL_ONES = 0xFFFFFFFFFFFFFFFF


@dataclass
class Restart:
    fab: Fabric
    topo: Topology
    rundir: Path
    sock: str
    daemon: Daemon
    listener: ControllerListener
    token: str
    net_id: int
    vdpids: dict[str, int]
    daemons: list[Daemon]


@pytest.fixture(scope="module")
def rs() -> Iterator[Restart]:
    layout = two_tier_layout(n_leaves=2)
    topo = layout.topo
    with controlled_fabric(topo, "tv-restart-") as c:
        fab, daemon, listener = c.fab, c.daemon, c.listener
        rundir, sock, daemons = c.rundir, c.sock, c.daemons
        dp = {n: s.dpid for n, s in topo.switches.items()}
        tok = daemon.rest("POST", "/v1/tenants", {"name": "carol"})["token"]
        url = f"tcp:127.0.0.1:{listener.port}"
        nid = daemon.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
        vd, host_vp, link_vp = {}, {}, {}
        for sw, host in (("lf1", "h1"), ("lf2", "h3")):
            vd[sw] = daemon.rest("POST", f"/v1/networks/{nid}/switches", {"dpids": [dp[sw]]},
                                 tok)["vdpid"]  # fmt: skip
            h = topo.hosts[host]
            host_vp[sw] = daemon.rest("POST", f"/v1/networks/{nid}/ports",
                                      {"dpid": dp[sw], "port": h.port}, tok)["number"]  # fmt: skip
            link_vp[sw] = daemon.rest("POST", f"/v1/networks/{nid}/ports",
                                      {"dpid": dp[sw], "port": 3}, tok)["number"]  # fmt: skip
            daemon.rest("POST", f"/v1/networks/{nid}/hosts",
                        {"vdpid": vd[sw], "vport": host_vp[sw], "mac": h.mac}, tok)  # fmt: skip
        daemon.rest("POST", f"/v1/networks/{nid}/links", {
            "src_vdpid": vd["lf1"], "src_vport": link_vp["lf1"],
            "dst_vdpid": vd["lf2"], "dst_vport": link_vp["lf2"],
        }, tok)  # fmt: skip
        daemon.rest("POST", f"/v1/networks/{nid}/start", None, tok)
        peers = {pe.dpid: pe for pe in listener.accept(2)}
        for i, sw in enumerate(("lf1", "lf2")):
            peer = peers[vd[sw]]
            peer.send_msg(forward_rule(host_vp[sw], link_vp[sw], 0xC0DE0 + 2 * i), 10)
            peer.send_msg(forward_rule(link_vp[sw], host_vp[sw], 0xC0DE1 + 2 * i), 11)
            peer.barrier(12)
        # a group and a meter on lf1's vswitch, and a rule using both (IPv6 only: not in
        # the way of the test's pings): they must come back on their physical ids too
        peer = peers[vd["lf1"]]
        bucket = p.OFPBucket(actions=[p.OFPActionOutput(host_vp["lf1"])])
        peer.send_msg(p.OFPGroupMod(DP, ofp.OFPGC_ADD, ofp.OFPGT_INDIRECT, 7, [bucket]), 13)
        band = p.OFPMeterBandDrop(rate=1_000_000, burst_size=0)
        peer.send_msg(p.OFPMeterMod(DP, ofp.OFPMC_ADD, ofp.OFPMF_KBPS, 3, [band]), 14)
        peer.send_msg(p.OFPFlowMod(
            DP, cookie=0xC0DE9, priority=50, match=p.OFPMatch(eth_type=0x86DD),
            instructions=[p.OFPInstructionMeter(3, ofp.OFPIT_METER),
                          p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                  [p.OFPActionGroup(7)])],
        ), 15)  # fmt: skip
        peer.barrier(16)
        for a, b in (("h1", "h3"), ("h3", "h1")):
            fab.host(a).exec(f"ip neigh replace {topo.hosts[b].ip} lladdr {topo.hosts[b].mac} "
                             "dev eth0")  # fmt: skip
        assert fab.host("h1").ping(topo.hosts["h3"].ip, timeout=10)
        yield Restart(fab, topo, rundir, sock, daemon, listener, tok, nid, vd, daemons)


def _durations(fab: Fabric, sw: str) -> dict[str, float]:
    """Each rule's duration by its cookie and match (what identifies it on the switch)."""
    out = {}
    for line in fab.ofctl(sw, "dump-flows").splitlines():
        m = re.search(r"cookie=(\S+), duration=([\d.]+)s.*?priority=(\S+)", line)
        if m:
            out[f"{m.group(1)} {m.group(3)}"] = float(m.group(2))
    return out


def test_kill_9_and_restart_loses_nothing(rs: Restart) -> None:
    fab, topo = rs.fab, rs.topo
    before = _durations(fab, "lf1")
    assert before
    # a fixed count, waited for: interrupting ping would count its last, unanswered echo
    ping = fab.host("h1").popen(["ping", "-n", "-i", "0.01", "-c", "600", topo.hosts["h3"].ip],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
    time.sleep(1.0)
    # a second of nobody controlling the pswitches: they forward with what they have
    again = restart_after_crash(rs.daemon, rs.rundir / "d2", rs.daemons, pause=1.0)
    rs.daemon = again
    wait_reconciled_silently(again, len(topo.switches), timeout=30)  # nothing to send
    peers = {pe.dpid: pe for pe in rs.listener.accept(2, timeout=20)}
    assert set(peers) == set(rs.vdpids.values())  # the same vswitches came back
    out, _ = ping.communicate(timeout=60)
    assert ping.returncode is not None
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m is not None, out
    sent, got = int(m.group(1)), int(m.group(2))
    assert sent > 100 and got == sent, f"{sent - got} of {sent} pings lost across the restart"
    after = _durations(fab, "lf1")
    assert after.keys() == before.keys()
    assert all(after[k] > before[k] for k in before), "a rule was re-added (duration reset)"
    # the tenant's controller sees its own rules, with its cookies
    peer = peers[rs.vdpids["lf1"]]
    peer.send_msg(p.OFPFlowStatsRequest(DP), 20)
    m2 = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == 20)
    assert m2 is not None
    stats = p.OFPFlowStatsReply.parser(DP, 4, m2[0], len(m2[2]), m2[1], m2[2])
    assert sorted(s.cookie for s in stats.body) == [0xC0DE0, 0xC0DE1, 0xC0DE9]
    # and its group and meter, under its own ids
    peer.send_msg(p.OFPGroupDescStatsRequest(DP), 21)
    m3 = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == 21)
    assert m3 is not None
    groups = p.OFPGroupDescStatsReply.parser(DP, 4, m3[0], len(m3[2]), m3[1], m3[2])
    assert [g.group_id for g in groups.body] == [7]


def test_the_api_knows_everything_by_the_same_token(rs: Restart) -> None:
    net = rs.daemon.rest("GET", f"/v1/networks/{rs.net_id}", None, rs.token)
    assert net["started"] and len(net["switches"]) == 2 and len(net["links"]) == 1
    assert sorted(sw["vdpid"] for sw in net["switches"]) == sorted(rs.vdpids.values())
    assert len(net["hosts"]) == 2
    # a new change works and survives too (ids continue where they were)
    tid = rs.daemon.rest("POST", "/v1/tenants", {"name": "dave"})["id"]
    assert tid == 2


def test_a_store_that_does_not_answer_is_a_503_and_the_data_plane_runs_on(rs: Restart) -> None:
    """Last in this module: it takes the store away from the running daemon."""
    ctl = rs.rundir / "state" / "ovsdb-server.ctl"
    subprocess.run(["ovs-appctl", "-t", str(ctl), "exit"], check=True, timeout=10)
    deadline = time.monotonic() + 10
    while True:
        r = rs.daemon.post("/v1/tenants", {"name": "erin"})
        if r.status_code == 503 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 503, r.text
    assert "store" in r.json()["error"]
    net = rs.daemon.rest("GET", f"/v1/networks/{rs.net_id}", None, rs.token)  # reads still work
    assert net["started"]
    assert rs.fab.host("h1").ping(rs.topo.hosts["h3"].ip, count=3, timeout=5)
    names = [t["name"] for t in rs.daemon.rest("GET", "/v1/tenants")]
    assert "erin" not in names  # nothing half-made
