"""Three `tenantvisor serve` instances over a 3-member Raft cluster share one fabric.

Leaf-spine (3 leaves, 2 spines); every pswitch connects to all three instances.  Three
tenants each have a network of two vswitches joined by a vlink, with hosts on two leaves and
the test as their controller (rules with cookies of their own).  The instances' names are
picked so that each instance owns one network.  While every tenant pings across its vlink
every 10 ms, the owner of the first network is killed with -9: a survivor takes the network
over within seconds (its vswitches reconnect to the tenant's controller with the same
datapath ids and rules), no ping is lost in any network, and no rule on any pswitch is
re-added (durations keep counting).  The API of every instance serves every tenant.
"""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.cluster import plan
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer, forward_rule
from tenantvisor.testbed.topo import Topology, two_tier

pytestmark = pytest.mark.root
DP = ProtocolDesc(ofp.OFP_VERSION)
LEASE = 2.0
# (host, leaf) pairs of each tenant's network: every leaf carries two networks
PAIRS = [(("h1", "lf1"), ("h3", "lf2")), (("h2", "lf1"), ("h5", "lf3")),
         (("h4", "lf2"), ("h6", "lf3"))]  # fmt: skip


def _names() -> list[str]:
    """Three instance names among which networks 1, 2 and 3 go one to each (rendezvous)."""
    for i in itertools.count():
        names = [f"tv{i}a", f"tv{i}b", f"tv{i}c"]
        owners = [plan.rendezvous(plan.network_key(n), names) for n in (1, 2, 3)]
        if len(set(owners)) == 3:
            return [o for o in owners if o is not None]
    raise AssertionError("unreachable")


@dataclass
class Tenant:
    token: str
    net_id: int
    vdpids: dict[str, int]
    listener: ControllerListener
    peers: dict[int, OFPeer] = field(default_factory=dict)


@dataclass
class Setup:
    fab: Fabric
    topo: Topology
    base: Path
    daemons: dict[str, Daemon]  # instance name -> daemon, in network order
    tenants: list[Tenant]


def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "tenantvisor.main", "store", *args],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def cl() -> Iterator[Setup]:
    topo = two_tier(n_spines=2, n_leaves=3, hosts_per_leaf=2)
    for i in range(1, 7):
        topo.set_host_address(f"h{i}", mac=f"02:00:00:00:77:{i:02x}", ipv4=f"10.77.0.{i}/24")
    base = Path(tempfile.mkdtemp(prefix="tv-cluster3-"))
    fab = Fabric(topo)
    daemons: dict[str, Daemon] = {}
    tenants: list[Tenant] = []
    try:
        remote = _cli("cluster-start", str(base / "raft")).strip()
        fab.build()
        assert fab.ovs is not None
        names = _names()
        socks = []
        token = None
        for name in names:
            sock = f"unix:{fab.ovs.rundir}/tv-{name}.sock"
            socks.append(sock)
            d = Daemon(base / name, sock, admin_token=token, lldp_interval=0.5,
                       extra_args=["--db", remote, "--instance", name,
                                   "--lease", str(LEASE)])  # fmt: skip
            token = d.admin_token
            daemons[name] = d
            d.start()
        fab.set_controllers(socks)
        n_links = 2 * len(topo.links)
        for d in daemons.values():
            d.wait_for("the whole fabric", lambda st: len(st["pswitches"]) == len(topo.switches)
                       and st["links"] == n_links and all(s["synced"] for s in st["pswitches"]),
                       timeout=40)  # fmt: skip
        dp = {n: s.dpid for n, s in topo.switches.items()}
        for k, pair in enumerate(PAIRS):
            api = daemons[names[k % 3]]  # each tenant made through another instance's API
            listener = ControllerListener()
            tok = api.rest("POST", "/v1/tenants", {"name": f"t{k}"})["token"]
            url = f"tcp:127.0.0.1:{listener.port}"
            nid = api.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
            assert nid == k + 1
            vd, host_vp, link_vp = {}, {}, {}
            net = f"/v1/networks/{nid}"
            for host, leaf in pair:
                h = topo.hosts[host]
                vd[leaf] = api.rest("POST", f"{net}/switches", {"dpids": [dp[leaf]]}, tok)["vdpid"]
                port = {"dpid": dp[leaf], "port": h.port}
                host_vp[leaf] = api.rest("POST", f"{net}/ports", port, tok)["number"]
                port = {"dpid": dp[leaf], "port": 3}
                link_vp[leaf] = api.rest("POST", f"{net}/ports", port, tok)["number"]
                host_in = {"vdpid": vd[leaf], "vport": host_vp[leaf], "mac": h.mac}
                api.rest("POST", f"{net}/hosts", host_in, tok)
            (_, la), (_, lb) = pair
            api.rest("POST", f"/v1/networks/{nid}/links", {
                "src_vdpid": vd[la], "src_vport": link_vp[la],
                "dst_vdpid": vd[lb], "dst_vport": link_vp[lb],
            }, tok)  # fmt: skip
            api.rest("POST", f"/v1/networks/{nid}/start", None, tok)
            t = Tenant(tok, nid, vd, listener)
            tenants.append(t)
            t.peers = {pe.dpid: pe for pe in listener.accept(2, timeout=30)}
            for i, leaf in enumerate((la, lb)):
                peer = t.peers[vd[leaf]]
                peer.send_msg(
                    forward_rule(host_vp[leaf], link_vp[leaf], 0xC0DE0 + 16 * k + 2 * i), 10
                )
                peer.send_msg(
                    forward_rule(link_vp[leaf], host_vp[leaf], 0xC0DE1 + 16 * k + 2 * i), 11
                )
                peer.barrier(12)
            (ha, _), (hb, _) = pair
            for a, b in ((ha, hb), (hb, ha)):
                fab.host(a).exec(f"ip neigh replace {topo.hosts[b].ip} "
                                 f"lladdr {topo.hosts[b].mac} dev eth0")  # fmt: skip
            assert fab.host(ha).ping(topo.hosts[hb].ip, timeout=10)
        time.sleep(0.5)  # the tenants' rules reach the store (50 ms batches)
        yield Setup(fab, topo, base, daemons, tenants)
    finally:
        for t in tenants:
            t.listener.close()
        for d in daemons.values():
            d.stop()
        fab.close()
        subprocess.run([sys.executable, "-m", "tenantvisor.main", "store", "cluster-stop",
                        str(base / "raft")], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)


def _owner(cl: Setup, net_id: int) -> str:
    owners = [n for n, d in cl.daemons.items() if d.proc is not None and d.proc.poll() is None
              and net_id in d.rest("GET", "/v1/status")["cluster"]["networks"]]  # fmt: skip
    assert len(owners) == 1, owners
    return owners[0]


def _rules(fab: Fabric, sw: str) -> dict[str, float]:
    """Every rule's duration, by cookie, table, priority and match."""
    out = {}
    for line in fab.ofctl(sw, "dump-flows").splitlines():
        m = re.search(r"cookie=(\S+), duration=([\d.]+)s, table=(\d+).*?priority=(\S+)", line)
        if m:
            out[f"{m.group(1)} {m.group(3)} {m.group(4)}"] = float(m.group(2))
    return out


def test_networks_are_shared_out_one_per_instance(cl: Setup) -> None:
    assert [_owner(cl, t.net_id) for t in cl.tenants] == list(cl.daemons)
    # exactly one instance is master of each pswitch
    masters: dict[int, int] = {}
    for d in cl.daemons.values():
        for s in d.rest("GET", "/v1/status")["pswitches"]:
            masters[s["dpid"]] = masters.get(s["dpid"], 0) + s["master"]
    assert sorted(masters.values()) == [1] * len(cl.topo.switches)


def test_the_api_of_any_instance_serves_any_tenant(cl: Setup) -> None:
    for d in cl.daemons.values():
        for t in cl.tenants:
            net = d.rest("GET", f"/v1/networks/{t.net_id}", None, t.token)
            assert net["started"] and len(net["switches"]) == 2
    # a change made through one instance reaches the others' API at once
    a, b = list(cl.daemons.values())[:2]
    tid = a.rest("POST", "/v1/tenants", {"name": "late"})["id"]
    deadline = time.monotonic() + 5
    while "late" not in [x["name"] for x in b.rest("GET", "/v1/tenants")]:
        assert time.monotonic() < deadline, "the other instance never saw the new tenant"
        time.sleep(0.1)
    assert b.rest("GET", f"/v1/tenants/{tid}")["name"] == "late"


def test_killing_an_instance_moves_its_networks_without_loss(cl: Setup) -> None:
    fab, topo = cl.fab, cl.topo
    victim = _owner(cl, 1)
    before = {sw: _rules(fab, sw) for sw in topo.switches}
    pings = []
    for (ha, _), (hb, _) in PAIRS:
        dst = topo.hosts[hb].ip
        pings.append(fab.host(ha).popen(["ping", "-n", "-i", "0.01", "-c", "1200", dst],
                                        stdout=subprocess.PIPE, text=True))  # fmt: skip
    time.sleep(1.0)
    sent_before = {
        name: {s["dpid"]: s["flow_mods_total"] for s in d.rest("GET", "/v1/status")["pswitches"]}
        for name, d in cl.daemons.items()
        if name != victim
    }
    killed_at = time.monotonic()
    cl.daemons[victim].kill()
    # the tenant's vswitches come back from a survivor, with the same datapath ids
    t = cl.tenants[0]
    back = {pe.dpid: pe for pe in t.listener.accept(2, timeout=LEASE + 15)}
    took = time.monotonic() - killed_at
    assert set(back) == set(t.vdpids.values())
    heir = _owner(cl, 1)
    assert heir != victim
    # with their rules, cookies included
    peer = next(iter(back.values()))
    peer.send_msg(p.OFPFlowStatsRequest(DP), 20)
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == 20)
    assert m is not None
    stats = p.OFPFlowStatsReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2])
    assert len({s.cookie for s in stats.body} & {0xC0DE0, 0xC0DE1, 0xC0DE2, 0xC0DE3}) == 2
    for ping in pings:
        out, _ = ping.communicate(timeout=60)
        mm = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        assert mm is not None, out
        sent, got = int(mm.group(1)), int(mm.group(2))
        assert sent > 100 and got == sent, f"{sent - got} of {sent} pings lost ({took:.1f} s)"
    # nothing on any pswitch was re-added: every rule kept counting, none went, none came
    after = {sw: _rules(fab, sw) for sw in topo.switches}
    for sw in topo.switches:
        assert after[sw].keys() == before[sw].keys(), sw
        assert all(after[sw][k] > before[sw][k] for k in before[sw]), f"{sw}: a rule re-added"
    # and no survivor sent a pswitch anything for it (the heir re-read them, found all right)
    for name, before_sent in sent_before.items():
        st = cl.daemons[name].rest("GET", "/v1/status")
        now = {s["dpid"]: s["flow_mods_total"] for s in st["pswitches"]}
        assert now == before_sent, cl.daemons[name].log_tail(40)
    assert took < LEASE + 8, f"takeover took {took:.1f} s"
