"""Big switches end to end: one vswitch over four pswitches, hosts on three of them.

Two tenants, each with a big switch over the three leaves and one spine of a leaf-spine
fabric (alice over spine 1, bob over spine 2), identical host MACs and addresses, each driven
by an unmodified ovs-testcontroller that believes it runs one switch.  Hosts of one tenant
reach each other across the internal routes; nothing reaches the other tenant.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.testbed.controllers import TestController, free_tcp_port
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.scenario import Layout, rx_packets, two_tier_layout, wait_physical

pytestmark = pytest.mark.root
DP = ProtocolDesc(ofp.OFP_VERSION)
ALL_ONES = 0xFFFFFFFFFFFFFFFF


@dataclass
class BigEnv:
    fab: Fabric
    daemon: Daemon
    layout: Layout
    nets: dict[str, tuple[str, int, int]]  # tenant -> (token, network id, vdpid)
    hosts: dict[str, list[str]]  # tenant -> host names
    controllers: dict[str, TestController]


def _tenant(
    daemon: Daemon, layout: Layout, name: str, spine: str, which: str, ctl: TestController
) -> tuple[str, int, int, list[str]]:
    topo = layout.topo
    dpid = {n: s.dpid for n, s in topo.switches.items()}
    tok = daemon.rest("POST", "/v1/tenants", {"name": name})["token"]
    url = f"tcp:127.0.0.1:{ctl.port}"
    nid = daemon.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
    dpids = [dpid[e.switch] for e in layout.edges] + [dpid[spine]]
    sw = daemon.rest("POST", f"/v1/networks/{nid}/switches", {"dpids": dpids}, tok)
    hosts = []
    for e in layout.edges:
        hname = e.host_a if which == "a" else e.host_b
        h = topo.hosts[hname]
        vp = daemon.rest(
            "POST", f"/v1/networks/{nid}/ports",
            {"dpid": dpid[e.switch], "port": h.port, "vdpid": sw["vdpid"]}, tok,
        )  # fmt: skip
        daemon.rest(
            "POST", f"/v1/networks/{nid}/hosts",
            {"vdpid": sw["vdpid"], "vport": vp["number"], "mac": h.mac}, tok,
        )  # fmt: skip
        hosts.append(hname)
    daemon.rest("POST", f"/v1/networks/{nid}/start", None, tok)
    return tok, nid, sw["vdpid"], hosts


@pytest.fixture(scope="module")
def big() -> Iterator[BigEnv]:
    layout = two_tier_layout()
    rundir = Path(tempfile.mkdtemp(prefix="tv-big-"))
    fab = Fabric(layout.topo)
    daemon: Daemon | None = None
    ctls: dict[str, TestController] = {}
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir, sock).start()
        fab.set_controller(sock)
        wait_physical(daemon, layout.topo)
        nets, hosts = {}, {}
        for name, spine, which in (("alice", "sp1", "a"), ("bob", "sp2", "b")):
            ctls[name] = TestController(free_tcp_port(), rundir / f"ctl-{name}")
            ctls[name].start()
            tok, nid, vdpid, hs = _tenant(daemon, layout, name, spine, which, ctls[name])
            nets[name] = (tok, nid, vdpid)
            hosts[name] = hs
        yield BigEnv(fab, daemon, layout, nets, hosts, ctls)
    finally:
        if daemon is not None:
            daemon.stop()
        for c in ctls.values():
            c.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)


def _ping_ok(fab: Fabric, src: str, dst: str, tries: int = 4) -> bool:
    ip = fab.host(dst).ip
    return any(fab.host(src).ping(ip, count=1, timeout=2.0) for _ in range(tries))


def _tables(big: BigEnv) -> str:
    """What the pswitches hold, for a failure message."""
    out = []
    for sw in ("lf1", "lf2", "sp1"):
        out.append(f"--- {sw}")
        out.append(big.fab.ofctl(sw, "dump-flows"))
        out.append(big.fab.ofctl(sw, "dump-groups"))
    return "\n".join(out) + "\n--- log\n" + big.daemon.log_tail(40)


def test_hosts_on_three_pswitches_of_one_big_switch_reach_each_other(big: BigEnv) -> None:
    for tenant in ("alice", "bob"):
        hs = big.hosts[tenant]
        for src in hs:
            for dst in hs:
                if src != dst:
                    assert _ping_ok(big.fab, src, dst), f"{tenant}: {src} -> {dst}\n{_tables(big)}"


def test_the_tenant_controller_sees_one_switch_with_every_vport(big: BigEnv) -> None:
    for tenant, (tok, nid, vdpid) in big.nets.items():
        net = big.daemon.rest("GET", f"/v1/networks/{nid}", None, tok)
        (sw,) = net["switches"]
        assert sw["vdpid"] == vdpid
        assert len(sw["dpids"]) == 4, tenant
        assert len(sw["ports"]) == 3, tenant
    status = big.daemon.rest("GET", "/v1/status", None, big.daemon.admin_token)
    mine = [v for v in status["vswitches"] if v["vdpid"] in {n[2] for n in big.nets.values()}]
    assert len(mine) == 2
    assert all(v["controllers_connected"] == 1 and len(v["dpids"]) == 4 for v in mine)


def test_big_switches_of_two_tenants_with_the_same_addresses_stay_apart(big: BigEnv) -> None:
    """alice's h1 and bob's h2 share MAC and IP; each tenant's ping must reach only its own
    host, so the other tenant's twin receives nothing."""
    fab = big.fab
    a_src, a_dst = big.hosts["alice"][0], big.hosts["alice"][2]
    b_twin = big.hosts["bob"][2]
    before = rx_packets(fab, b_twin)
    assert _ping_ok(fab, a_src, a_dst)
    for _ in range(5):
        fab.host(a_src).ping(fab.host(a_dst).ip, count=1, timeout=1.0)
    assert rx_packets(fab, b_twin) == before, "alice's pings reached bob's twin host"


def test_each_big_switch_routes_through_its_own_spine_only(big: BigEnv) -> None:
    """alice's big switch spans sp1, bob's sp2: internal routes stay inside each switch's
    own pswitches, so sp1 carries only alice's network and sp2 only bob's."""
    nets = {name: nid for name, (_, nid, _) in big.nets.items()}

    def networks_on(sw: str) -> set[int]:
        found = set()
        for line in big.fab.ofctl(sw, "dump-flows").splitlines():
            if "cookie=" in line:
                cookie = int(line.split("cookie=")[1].split(",")[0], 16)
                if cookie >> 48:
                    found.add(cookie >> 48)
        return found

    assert networks_on("sp1") == {nets["alice"]}
    assert networks_on("sp2") == {nets["bob"]}


def test_an_idle_timeout_counts_the_traffic_of_every_copy(big: BigEnv) -> None:
    """carol's big switch over lf1, lf3 and sp1 carries ho -> hx.  Her rule toward hx has a
    2 s idle timeout and no in_port, so it has a copy on lf1 (where the traffic enters) and
    on lf3 (where none does).  As on one switch, it must live while traffic flows and expire
    (FLOW_REMOVED, reason IDLE_TIMEOUT, the packets counted) once it stops."""
    daemon, fab, topo = big.daemon, big.fab, big.layout.topo
    dpid = {n: s.dpid for n, s in topo.switches.items()}
    ho, hx = topo.hosts["ho"], topo.hosts["hx"]
    listener = ControllerListener()
    try:
        tok = daemon.rest("POST", "/v1/tenants", {"name": "carol"})["token"]
        url = f"tcp:127.0.0.1:{listener.port}"
        nid = daemon.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
        dpids = [dpid["lf1"], dpid["lf3"], dpid["sp1"]]
        vdpid = daemon.rest("POST", f"/v1/networks/{nid}/switches", {"dpids": dpids}, tok)["vdpid"]
        vport = {}
        for name, sw in (("ho", "lf1"), ("hx", "lf3")):
            h = topo.hosts[name]
            vport[name] = daemon.rest(
                "POST", f"/v1/networks/{nid}/ports",
                {"dpid": dpid[sw], "port": h.port, "vdpid": vdpid}, tok,
            )["number"]  # fmt: skip
            daemon.rest("POST", f"/v1/networks/{nid}/hosts",
                        {"vdpid": vdpid, "vport": vport[name], "mac": h.mac}, tok)  # fmt: skip
        daemon.rest("POST", f"/v1/networks/{nid}/start", None, tok)
        (peer,) = listener.accept(1)
        to_hx = p.OFPFlowMod(
            DP, match=p.OFPMatch(eth_dst=hx.mac), priority=10, idle_timeout=2,
            flags=ofp.OFPFF_SEND_FLOW_REM, cookie=0xC0FFEE,
            instructions=[p.OFPInstructionActions(
                ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(vport["hx"])])],
        )  # fmt: skip
        to_ho = p.OFPFlowMod(
            DP, match=p.OFPMatch(eth_dst=ho.mac), priority=10,
            instructions=[p.OFPInstructionActions(
                ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(vport["ho"])])],
        )  # fmt: skip
        for xid, fm in ((10, to_hx), (11, to_ho)):
            fm.set_xid(xid)
            fm.serialize()
            peer.send(bytes(fm.buf))
        peer.send(struct.pack("!BBHI", 4, ofp.OFPT_BARRIER_REQUEST, 8, 13))
        assert peer.recv_until(lambda m: m[0] == ofp.OFPT_BARRIER_REPLY) is not None
        for a, b in (("ho", hx), ("hx", ho)):
            fab.host(a).exec(f"ip neigh replace {b.ip} lladdr {b.mac} dev eth0")
        # 4 s of traffic: twice the idle timeout, all of it through lf1's copy
        r = fab.host("ho").exec(["ping", "-n", "-q", "-c", "20", "-i", "0.2", hx.ip],
                                timeout=15, check=False)  # fmt: skip
        assert r.returncode == 0, r.stdout
        early = [m for m in _drain(peer, 0.1) if m[0] == ofp.OFPT_FLOW_REMOVED]
        assert early == [], "the rule expired while its traffic was flowing"
        # and the vswitch still holds it, with the packets counted where they entered
        req = p.OFPFlowStatsRequest(DP, cookie=0xC0FFEE, cookie_mask=ALL_ONES)
        req.set_xid(12)
        req.serialize()
        peer.send(bytes(req.buf))
        reply = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY, timeout=5)
        assert reply is not None
        stats = p.OFPFlowStatsReply.parser(DP, 4, reply[0], len(reply[2]), reply[1], reply[2])
        # (OVS folds datapath counters into its rules about once a second: the last pings
        # may not be counted yet)
        assert [s.packet_count >= 10 for s in stats.body] == [True], stats.body
        m = peer.recv_until(lambda m: m[0] == ofp.OFPT_FLOW_REMOVED, timeout=8)
        assert m is not None, "the rule never expired after its traffic stopped"
        fr = p.OFPFlowRemoved.parser(DP, 4, m[0], len(m[2]), m[1], m[2])
        assert fr.cookie == 0xC0FFEE and fr.reason == ofp.OFPRR_IDLE_TIMEOUT
        assert fr.packet_count >= 20
    finally:
        listener.close()


def _drain(peer: OFPeer, timeout: float) -> list[tuple[int, int, bytes]]:
    out = []
    while (m := peer.recv(timeout)) is not None:
        out.append(m)
    return out
