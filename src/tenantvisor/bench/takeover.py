"""The cluster part of `tenantvisor bench restart`: kill -9 of one of three `tenantvisor serve`
instances sharing one store, timed until the survivors have taken its vswitches over.

Set-up, once per run (everything fresh: a 3-member OVSDB Raft cluster from `tenantvisor store
cluster-start`, the fabric, the instances): leaf-spine, 2 spines x 3 leaves with two hosts on
each (`two_tier(2, 3, 2)`), and three `tenantvisor serve --db CLUSTER --instance NAME --lease
LEASE` processes; every pswitch connects to all three (`Fabric.set_controllers`).  The names
are picked so that rendezvous hashing (`cluster/plan.py`) gives each instance the same share
of the networks (network ids 1..N, as a fresh store numbers them) and one of networks 1-3.
N networks, each with its own tenant and controller (a `ControllerListener` of the bench's
own) and made through another instance's API than the one expected to own it: two vswitches
on two leaves joined by a vlink whose vports sit on uplink port 3 (leaf - sp1 - leaf).
Networks 1-3 carry a ping each (hosts h1/h3, h2/h5, h4/h6, as in
`tests/e2e/test_cluster_takeover.py`), so every instance owns one pinged network.  The
controllers write R rules into every vswitch (`restart.rules_for`: two carry the ping, the
rest match IPv4 destinations nobody uses), and the bench waits until the store holds all of
them (`Tenant_Flow` rows, read from the cluster).

Measured, per run: `ping -n -D -O -i 0.01` in networks 1-3; after `lead` seconds the owner of
pinged network (run mod 3) + 1 -- the victim -- is killed with SIGKILL.  From the kill:

* (a) claim: the survivors' `GET /v1/status` (`cluster.networks`) names every network the
  victim owned (polled every 20 ms); the survivors' logs split it: `claimed networks`, then
  `took over networks` (compiled, vswitches started);
* (b) THE takeover time: every vswitch of the victim's networks has reconnected to its
  tenant's controller (the listeners accept it again), with the same datapath id;
* (c) those controllers see all their rules back: a flow stats request to each vswitch
  returns the R rules of the bench's cookies.

The lease (default 3 s) bounds (a) from below: survivors wait a lease after the last renewal
they saw, so "takeover minus lease" is the hypervisor's own part (it can be slightly below 0:
the victim renewed up to lease/6 before the kill).  Also, per run: pings lost in every pinged
network (goal 0; counted from the echo sequence numbers, the ping being stopped `tail` s after
(c)); FLOW_MODs the survivors sent to pswitches (`flow_mods_total` deltas) and the messages
of the pswitch re-reads after the kill (`reconciled: N messages sent` in their logs, one line
per re-read; goal 0 both); whether any rule on any pswitch was re-added or removed (`dump-flows`
durations, `testbed/flowwatch.py`) and every event `ovs-ofctl monitor` saw on the pswitches
after the kill (goal none); whether the survivors' own networks kept their controller
connections; which survivor took each network, and whether rendezvous predicted it.

Goals: takeover (b) within lease + 5 s ("within seconds", the issue), no ping lost, no
message to a pswitch, every rule kept counting, every vswitch back with its rules.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp

from tenantvisor.bench.dnb import Progress
from tenantvisor.bench.failover import percentile
from tenantvisor.bench.restart import (
    DP,
    STORE_DB,
    Keeper,
    VSw,
    dumps,
    install,
    kept,
    log_events,
    lost_runs,
    parse_ping,
    ping_spacing,
)
from tenantvisor.cluster import plan
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.flowwatch import FlowMonitor
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.topo import Topology, two_tier

INSTANCES = 3
UPLINK = 3  # on every leaf: port 3 goes to spine sp1 (two hosts on ports 1-2)
# (host, leaf) of the pinged networks 1-3: every leaf carries two of them
PINGS = ((("h1", "lf1"), ("h3", "lf2")), (("h2", "lf1"), ("h5", "lf3")),
         (("h4", "lf2"), ("h6", "lf3")))  # fmt: skip
LEAVES = (("lf1", "lf2"), ("lf1", "lf3"), ("lf2", "lf3"))  # of the other networks, in turn
COOKIE_TAG = 0xBE  # restart.rules_for puts it in the top byte of every cookie
_RECONCILED = re.compile(r"pswitch ([0-9a-f]+) reconciled: (\d+) messages sent")


@dataclass
class TakeoverConfig:
    runs: int = 5
    networks: int = 9  # at least 3: one pinged network per instance
    rules: int = 200  # per vswitch
    lease: float = 3.0
    margin: float = 5.0  # goal: every vswitch back within lease + margin seconds of the kill
    interval: float = 0.01  # ping -i
    lead: float = 1.0  # seconds of ping before the kill
    tail: float = 2.0  # seconds of ping after the rules are back
    lldp_interval: float = 0.5
    timeout: float = 30.0  # beyond the lease: how long a takeover is waited for

    @classmethod
    def quick(cls) -> TakeoverConfig:
        return cls(runs=2, networks=3, rules=20)

    @property
    def steps(self) -> int:
        """Progress steps of `run_takeover`."""
        return 3 * self.runs

    def check(self) -> None:
        if not 1 <= self.runs <= 100 or not 3 <= self.networks <= 60:
            raise ValueError("cluster takeover: 1-100 runs, 3-60 networks")
        if not 2 <= self.rules <= 20_000 or self.lease < 1.0:
            raise ValueError("cluster takeover: 2-20000 rules per vswitch, a lease of >= 1 s")


# --- set-up ------------------------------------------------------------------------------------
def topology() -> Topology:
    return two_tier(n_spines=2, n_leaves=3, hosts_per_leaf=2)


def instance_names(networks: int, start: int = 0) -> list[str]:
    """Three instance names, the owner (by rendezvous) of network k+1 at index k for k < 3,
    sharing networks 1..`networks` out as evenly as possible."""
    for i in itertools.count(start):
        names = [f"tv{i}a", f"tv{i}b", f"tv{i}c"]
        owners = [plan.rendezvous(plan.network_key(n), names) for n in range(1, networks + 1)]
        share = Counter(owners)
        if len(set(owners[:INSTANCES])) == INSTANCES and (
            max(share.values()) - min(share.values()) <= 1 and len(share) == INSTANCES
        ):
            return [o for o in owners[:INSTANCES] if o is not None]
    raise AssertionError("unreachable")


def _store_cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "tenantvisor.main", "store", *args],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"tenantvisor store {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def stored_rules(remote: str) -> int | None:
    """Tenant rules the cluster holds now (None: it does not answer)."""
    query = (f'["{STORE_DB}", {{"op": "select", "table": "Tenant_Flow", "where": [], '
             f'"columns": ["_uuid"]}}]')  # fmt: skip
    try:
        r = subprocess.run(["ovsdb-client", "transact", remote, query],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        return len(json.loads(r.stdout)[0]["rows"]) if r.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
        return None


def lease_expiry(remote: str, instance: str) -> float | None:
    """When `instance`'s lease runs out (`time.time()`): its `Instance` row holds the expiry
    it wrote at its last renewal (None: no row, or the store does not answer)."""
    where = json.dumps([["id", "==", instance]])
    query = (f'["{STORE_DB}", {{"op": "select", "table": "Instance", "where": {where}, '
             f'"columns": ["lease_expiry"]}}]')  # fmt: skip
    try:
        r = subprocess.run(["ovsdb-client", "transact", remote, query],
                           capture_output=True, text=True, timeout=30)  # fmt: skip
        rows = json.loads(r.stdout)[0]["rows"] if r.returncode == 0 else []
        return int(rows[0]["lease_expiry"]) / 1e3 if rows else None
    except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError, TypeError):
        return None


def wait_stored(remote: str, want: int, timeout: float = 60.0) -> float:
    t0 = time.monotonic()
    got = None
    while time.monotonic() - t0 < timeout:
        got = stored_rules(remote)
        if got == want:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"the store holds {got} of {want} tenant rules after {timeout:g} s")


@dataclass
class Net:
    k: int  # 0-based, in creation order
    net_id: int
    token: str
    listener: ControllerListener
    vsws: list[VSw]
    ping: tuple[str, str] | None  # the hosts of its ping, if it has one
    peers: list[OFPeer] = field(default_factory=list)


def build_network(api: Daemon, topo: Topology, k: int, listeners: list[ControllerListener]) -> Net:
    """Network k (tenant `takeover{k}`) over `api`'s REST API, started."""
    tok = api.rest("POST", "/v1/tenants", {"name": f"takeover{k}"})["token"]
    lst = ControllerListener()
    listeners.append(lst)
    url = f"tcp:127.0.0.1:{lst.port}"
    nid = int(api.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"])
    base = f"/v1/networks/{nid}"
    if k < len(PINGS):
        ends: tuple[tuple[str | None, str], ...] = PINGS[k]
    else:
        ends = tuple((None, leaf) for leaf in LEAVES[k % len(LEAVES)])
    vsws = []
    for j, (host, leaf) in enumerate(ends):
        dpid = topo.switch(leaf).dpid
        vd = int(api.rest("POST", f"{base}/switches", {"dpids": [dpid]}, tok)["vdpid"])
        v = VSw(k, nid, j, leaf, vd)
        v.links[1 - j] = int(api.rest("POST", f"{base}/ports", {"dpid": dpid, "port": UPLINK},
                                      tok)["number"])  # fmt: skip
        if host is not None:
            h = topo.host(host)
            body = {"dpid": dpid, "port": h.port}
            v.host = int(api.rest("POST", f"{base}/ports", body, tok)["number"])
            host_in = {"vdpid": vd, "vport": v.host, "mac": h.mac}
            api.rest("POST", f"{base}/hosts", host_in, tok)
        vsws.append(v)
    a, b = vsws
    api.rest("POST", f"{base}/links", {
        "src_vdpid": a.vdpid, "src_vport": a.links[1], "dst_vdpid": b.vdpid,
        "dst_vport": b.links[0],
    }, tok)  # fmt: skip
    api.rest("POST", f"{base}/start", None, tok)
    (ha, _), (hb, _) = ends
    return Net(k, nid, tok, lst, vsws, (ha, hb) if ha is not None and hb is not None else None)


# --- the controllers' side of the takeover -----------------------------------------------------
def count_rules(peer: OFPeer, xid: int, timeout: float) -> int | None:
    """The bench's rules in a vswitch's table, from a flow stats request (None: no answer)."""
    req = ofpp.OFPFlowStatsRequest(DP)
    req.set_xid(xid)
    req.serialize()
    peer.send(bytes(req.buf))
    n = 0
    deadline = time.monotonic() + timeout
    while True:
        m = peer.recv_until(
            lambda m: m[1] == xid and m[0] in (ofp.OFPT_MULTIPART_REPLY, ofp.OFPT_ERROR),
            max(0.0, deadline - time.monotonic()),
        )
        if m is None or m[0] == ofp.OFPT_ERROR:
            return None
        reply = ofpp.OFPFlowStatsReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2])
        n += sum(1 for s in reply.body if s.cookie >> 56 == COOKIE_TAG)
        if not reply.flags & ofp.OFPMPF_REPLY_MORE:
            return n


class Back(threading.Thread):
    """A network's vswitches coming back to its controller: when each was accepted
    (`time.time()`) and with which dpid, then when its flow table showed all `rules`."""

    def __init__(self, net: Net, rules: int, keeper: Keeper, timeout: float) -> None:
        super().__init__(daemon=True)
        self.net = net
        self.rules = rules
        self.keeper = keeper
        self.timeout = timeout
        self.accepted: list[tuple[float, int]] = []
        self.rules_back: list[float] = []
        self.rules_seen: list[int | None] = []
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        peers: list[OFPeer] = []
        try:
            n = len(self.net.vsws)
            while len(peers) < n:  # first every vswitch: their accept times are the measure
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(peers)}/{n} vswitches came back")
                peer = self.net.listener.accept(1, timeout=left)[0]
                self.accepted.append((time.time(), peer.dpid))
                peers.append(peer)
            for i, peer in enumerate(peers):
                got = None
                while time.monotonic() < deadline:
                    got = count_rules(peer, 700_000 + i, max(0.1, deadline - time.monotonic()))
                    if got == self.rules:
                        self.rules_back.append(time.time())
                        break
                    time.sleep(0.05)
                self.rules_seen.append(got)
        except (OSError, ValueError, ConnectionError) as exc:
            self.error = str(exc) or type(exc).__name__
        finally:
            self.keeper.add(peers)
            self.net.peers += peers


def _status(d: Daemon) -> dict[str, Any] | None:
    try:
        r = d.get("/v1/status")
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def _owners(daemons: dict[str, Daemon]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, d in daemons.items():
        st = _status(d) if d.alive else None
        for n in (st or {}).get("cluster", {}).get("networks", []):
            out.setdefault(int(n), []).append(name)
    return out


def _ping_lost(text: str, spacing: float) -> dict[str, Any]:
    """Lost echo requests of a ping stopped by SIGINT: every unanswered sequence number up
    to the last answered one, and those after it but the last (still on its way)."""
    p = parse_ping(text)
    replies = p["replies"]
    seqs = {seq for _, seq, _ in replies}
    last = max(seqs, default=0)
    sent = p["sent"] if p["sent"] is not None else last
    lost = (last - len(seqs)) + max(0, sent - last - 1)
    return {"sent": sent, "received": len(seqs), "lost": lost, "replies": replies,
            "runs": lost_runs(replies, last, spacing)}  # fmt: skip


# --- one run -------------------------------------------------------------------------------------
def run_once(cfg: TakeoverConfig, run: int, bar: Progress) -> dict[str, Any]:
    rundir = Path(tempfile.mkdtemp(prefix="tv-bench-takeover-"))
    raft = rundir / "raft"
    topo = topology()
    fab = Fabric(topo)
    keeper = Keeper()
    listeners: list[ControllerListener] = []
    daemons: dict[str, Daemon] = {}
    backs: list[Back] = []
    monitors: list[FlowMonitor] = []
    pings: list[tuple[Net, subprocess.Popen[Any], Path]] = []
    out: dict[str, Any] = {"run": run + 1}
    try:
        remote = _store_cli("cluster-start", str(raft))
        fab.build()
        assert fab.ovs is not None
        names = instance_names(cfg.networks, start=100 * run)
        token = None
        socks = []
        for name in names:
            sock = f"unix:{fab.ovs.rundir}/tv-{name}.sock"
            socks.append(sock)
            d = Daemon(rundir / name, sock, admin_token=token, lldp_interval=cfg.lldp_interval,
                       extra_args=["--db", remote, "--instance", name,
                                   "--lease", f"{cfg.lease:g}"])  # fmt: skip
            token = d.admin_token
            daemons[name] = d
        for d in daemons.values():  # one after the other: each picks a free API port
            d.start(timeout=40)
        fab.set_controllers(socks)
        n_links = 2 * len(topo.links)
        for d in daemons.values():
            d.wait_for("the whole fabric", lambda st: len(st["pswitches"]) == len(topo.switches)
                       and st["links"] == n_links and all(s["synced"] for s in st["pswitches"]),
                       timeout=60)  # fmt: skip
        bar.step(f"takeover run {run + 1}: store, fabric and {INSTANCES} instances up")

        # --- intent, rules ---------------------------------------------------------------------
        nets: list[Net] = []
        for k in range(cfg.networks):
            # made through the instance after the one expected to own it
            api = daemons[names[(k + 1) % INSTANCES]]
            nets.append(build_network(api, topo, k, listeners))
        peers: dict[int, OFPeer] = {}
        for net in nets:
            got = net.listener.accept(len(net.vsws), timeout=60)
            net.peers = list(got)
            peers.update({p.dpid: p for p in got})
        install(peers, [net.vsws for net in nets], cfg.rules)
        keeper.add(list(peers.values()))
        total = sum(len(net.vsws) for net in nets) * cfg.rules
        wait_stored(remote, total)
        time.sleep(0.3)  # a few store flushes more: nothing may still be on its way
        for net in nets:
            if net.ping is None:
                continue
            a, b = (topo.host(h) for h in net.ping)
            for x, y in ((a, b), (b, a)):
                fab.host(x.name).exec(["ip", "neigh", "replace", y.ip, "lladdr", y.mac,
                                       "dev", "eth0", "nud", "permanent"])  # fmt: skip
            if not fab.host(a.name).ping(b.ip, timeout=15):
                raise RuntimeError(f"network {net.net_id}: {a.name} cannot reach {b.name}")
        pinged = [net for net in nets if net.ping is not None]
        first = pinged[0].ping
        assert first is not None
        spacing = ping_spacing(fab, first[0], topo.host(first[1]).ip, cfg.interval)
        owners = _owners(daemons)
        if sorted(owners) != sorted(n.net_id for n in nets) or any(
            len(o) != 1 for o in owners.values()
        ):
            raise RuntimeError(f"networks not owned once each: {owners}")
        owner = {n: o[0] for n, o in owners.items()}
        bar.step(f"takeover run {run + 1}: {cfg.networks} networks, {total} rules stored")

        # --- kill -9 of the owner of one pinged network ----------------------------------------
        target = pinged[run % len(pinged)]
        victim = owner[target.net_id]
        survivors = [n for n in names if n != victim]
        lost_nets = sorted(n for n, o in owner.items() if o == victim)
        by_id = {net.net_id: net for net in nets}
        out.update({
            "instances": names, "victim": victim, "victim_networks": lost_nets,
            "networks_per_instance": {n: sorted(i for i, o in owner.items() if o == n)
                                      for n in names},
            "pinged_networks": {str(net.net_id): owner[net.net_id] for net in pinged},
            "victim_ping_network": target.net_id,
            "victim_masters": [],
        })  # fmt: skip
        st_before = {n: _status(daemons[n]) or {} for n in names}
        out["victim_masters"] = [p["dpid"] for p in st_before[victim].get("pswitches", [])
                                 if p.get("master")]  # fmt: skip
        before = dumps(fab)
        monitors = [FlowMonitor(fab, sw) for sw in topo.switches]
        cover = cfg.lead + cfg.lease + cfg.timeout + cfg.tail + 5
        count = math.ceil(cover / spacing)
        for net in pinged:
            assert net.ping is not None
            a, b = (topo.host(h) for h in net.ping)
            path = rundir / f"ping-{net.net_id}.txt"
            with open(path, "w") as pf:
                proc = fab.host(a.name).popen(
                    ["ping", "-n", "-D", "-O", "-i", f"{cfg.interval:g}", "-c", str(count), b.ip],
                    stdout=pf, stderr=subprocess.STDOUT,
                )  # fmt: skip
            pings.append((net, proc, path))
        time.sleep(cfg.lead)
        backs = [Back(by_id[n], cfg.rules, keeper, cfg.lease + cfg.timeout) for n in lost_nets]
        for bk in backs:
            bk.start()
        t_kill = time.time()
        daemons[victim].kill()
        t_expiry = lease_expiry(remote, victim)  # read before a survivor removes the row
        t_claim: float | None = None
        heirs: dict[int, list[str]] = {}
        deadline = time.monotonic() + cfg.lease + cfg.timeout
        while t_claim is None and time.monotonic() < deadline:
            heirs = _owners({n: daemons[n] for n in survivors})
            if all(n in heirs for n in lost_nets):
                t_claim = time.time()
                break
            time.sleep(0.02)
        for bk in backs:
            bk.join(max(0.0, deadline - time.monotonic()) + 5)
        done = [t for bk in backs for t in bk.rules_back]
        t_done = max([*done, t_claim or t_kill])
        time.sleep(cfg.tail)
        for _, proc, _ in pings:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for _, proc, _ in pings:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        after = dumps(fab)
        events = [e for m in monitors for e in m.since(t_kill)]
        st_after = {n: _status(daemons[n]) or {} for n in survivors}

        # --- what it took ----------------------------------------------------------------------
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - t_kill, 3)

        errors = [f"network {bk.net.net_id}: {bk.error}" for bk in backs if bk.error]
        accepted = [t for bk in backs for t, _ in bk.accepted]
        n_vsw = sum(len(by_id[n].vsws) for n in lost_nets)
        all_back = len(accepted) == n_vsw and not errors
        rules_back = all_back and len(done) == n_vsw
        out["claim_s"] = rel(t_claim)
        out["takeover_s"] = rel(max(accepted)) if all_back else None
        out["rules_back_s"] = rel(max(done)) if rules_back else None
        out["takeover_minus_lease_s"] = (
            None if out["takeover_s"] is None else round(out["takeover_s"] - cfg.lease, 3)
        )
        out["lease_expired_s"] = rel(t_expiry)
        out["takeover_after_expiry_s"] = (
            None
            if out["takeover_s"] is None or t_expiry is None
            else round(out["takeover_s"] - (t_expiry - t_kill), 3)
        )
        out["errors"] = errors
        out["vswitches"] = n_vsw
        out["vswitches_back"] = len(accepted)
        out["same_vdpids"] = all(
            sorted(d for _, d in bk.accepted) == sorted(v.vdpid for v in bk.net.vsws)
            for bk in backs
        )
        out["rules_seen"] = [r for bk in backs for r in bk.rules_seen]
        out["heirs"] = {str(n): heirs.get(n, []) for n in lost_nets}
        out["heirs_as_predicted"] = all(
            heirs.get(n) == [plan.rendezvous(plan.network_key(n), survivors)] for n in lost_nets
        )
        # the survivors' logs, after the kill
        split: dict[str, Any] = {"claimed_log_s": None, "took_over_log_s": None}
        reread: list[tuple[str, str, int]] = []
        for n in survivors:
            for t, msg in log_events(daemons[n].log_text()):
                if t < t_kill - 0.002:  # the log has milliseconds
                    continue
                if " claimed networks " in msg:
                    split["claimed_log_s"] = max(split["claimed_log_s"] or 0.0, rel(t) or 0.0)
                elif msg.startswith("took over networks "):
                    split["took_over_log_s"] = max(split["took_over_log_s"] or 0.0, rel(t) or 0.0)
                elif (hit := _RECONCILED.search(msg)) is not None:
                    reread.append((n, hit.group(1), int(hit.group(2))))
        out["split"] = split
        out["pswitches_reread"] = len(reread)
        out["sync_messages"] = sum(k for _, _, k in reread)

        def fm(st: dict[str, Any]) -> dict[int, int]:
            return {p["dpid"]: p["flow_mods_total"] for p in st.get("pswitches", [])}

        out["flow_mods_by_survivor"] = {
            n: sum(fm(st_after[n]).get(d, 0) - v for d, v in fm(st_before[n]).items())
            for n in survivors
        }
        out["flow_mods"] = sum(out["flow_mods_by_survivor"].values())
        bad = kept(before, after)
        out["rules_not_kept"] = len(bad)
        out["rules_not_kept_examples"] = bad[:3]
        out["pswitch_rules"] = sum(len(f) for _, f in before.values())
        out["flow_events"] = len(events)
        out["flow_events_examples"] = events[:3]
        others = [net for net in nets if net.net_id not in lost_nets]
        out["other_vswitches_dropped"] = sum(1 for net in others for p in net.peers if p.eof)
        # the pings
        per: dict[str, Any] = {}
        for net, _, path in pings:
            p = _ping_lost(path.read_text(), spacing)
            times = [t for t, _, _ in p["replies"]]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            entry: dict[str, Any] = {
                "owner": owner[net.net_id], "sent": p["sent"], "lost": p["lost"],
                "max_gap_ms": round(max(gaps, default=0.0) * 1e3, 1),
                "covered": bool(times) and times[0] <= t_kill and times[-1] >= t_done + 0.5,
                "lost_runs": [(rel(t), n) for t, n in p["runs"][:20]],
            }  # fmt: skip
            if net is target:
                entry["t_ms"] = [round((t - t_kill) * 1e3, 1) for t in times]
                entry["rtt_ms"] = [round(r, 3) for _, _, r in p["replies"]]
            per[str(net.net_id)] = entry
        out["pings"] = per
        out["pings_lost"] = sum(e["lost"] for e in per.values())
        out["pings_covered"] = all(e["covered"] for e in per.values())
        out["ping_spacing_ms"] = round(spacing * 1e3, 2)
        took = "-" if out["takeover_s"] is None else f"{out['takeover_s']:.2f} s"
        bar.step(f"takeover run {run + 1}: {victim}'s networks back in {took}, "
                 f"lost {out['pings_lost']}, {out['flow_mods']} FLOW_MODs")  # fmt: skip
        return out
    finally:
        for _, proc, _ in pings:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        for m in monitors:
            m.close()
        keeper.stop()
        for lst in listeners:
            lst.close()
        for bk in backs:
            bk.join(5)
        for d in daemons.values():
            d.stop()
        fab.close()
        if raft.exists():
            try:
                _store_cli("cluster-stop", str(raft))
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                print(f"tenantvisor bench: {exc}", file=sys.stderr)
        shutil.rmtree(rundir, ignore_errors=True)


# --- all runs ----------------------------------------------------------------------------------
METRICS = (
    "claim_s",
    "takeover_s",
    "rules_back_s",
    "takeover_minus_lease_s",
    "lease_expired_s",
    "takeover_after_expiry_s",
)


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p95": None, "max": None}
    return {"median": round(statistics.median(values), 3), "p95": percentile(values, 95),
            "max": max(values)}  # fmt: skip


def run_takeover(cfg: TakeoverConfig, bar: Progress | None = None) -> dict[str, Any]:
    """`cfg.runs` takeovers, each on fresh instances, store and fabric (see the docstring)."""
    cfg.check()
    t0 = time.monotonic()
    bar = bar or Progress(cfg.steps)
    topo = topology()
    runs: list[dict[str, Any]] = []
    for i in range(cfg.runs):
        steps = bar.done + 3
        try:
            runs.append(run_once(cfg, i, bar))
        except (RuntimeError, OSError, TimeoutError, ValueError) as exc:
            # a run that could not be measured is reported, and the others still run
            runs.append({"run": i + 1, "error": f"{type(exc).__name__}: {exc}"[:3000]})
            while bar.done < steps:
                bar.step(f"takeover run {i + 1}: FAILED ({type(exc).__name__})")
    ok = [r for r in runs if "error" not in r]
    summary = {m: stats([r[m] for r in ok if r.get(m) is not None]) for m in METRICS}
    goal = cfg.lease + cfg.margin
    result: dict[str, Any] = {
        "topology": f"leaf-spine, 2 spines x 3 leaves ({len(topo.switches)} pswitches, "
        f"{len(topo.links)} links)",
        "instances": INSTANCES,
        "store": "3-member OVSDB Raft cluster",
        "networks": cfg.networks,
        "vswitches_per_network": 2,
        "rules_per_vswitch": cfg.rules,
        "pinged_networks": len(PINGS),
        "lease_s": cfg.lease,
        "goal_takeover_s": goal,
        "ping_interval_s": cfg.interval,
        "runs": runs,
        "summary": summary,
    }
    result["goals"] = {
        "within_lease_plus_5s": bool(ok) and len(ok) == len(runs)
        and all(r["takeover_s"] is not None and r["takeover_s"] <= goal for r in ok),
        "no_ping_lost": bool(ok) and len(ok) == len(runs)
        and all(r["pings_lost"] == 0 and r["pings_covered"] for r in ok),
        "no_message_to_pswitches": bool(ok) and len(ok) == len(runs)
        and all(r["flow_mods"] == 0 and r["sync_messages"] == 0 for r in ok),
        "rules_kept_counting": bool(ok) and len(ok) == len(runs)
        and all(r["rules_not_kept"] == 0 and r["flow_events"] == 0 for r in ok),
        "tables_back": bool(ok) and len(ok) == len(runs) and all(
            r["same_vdpids"] and r["vswitches_back"] == r["vswitches"]
            and r["rules_back_s"] is not None for r in ok
        ),
    }  # fmt: skip
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


GOALS = [
    ("within_lease_plus_5s", "takeover within lease + 5 s"),
    ("no_ping_lost", "takeover: no ping lost"),
    ("no_message_to_pswitches", "takeover: no message to a pswitch"),
    ("rules_kept_counting", "takeover: every rule kept counting"),
    ("tables_back", "takeover: vswitches + rules back"),
]


# --- output ------------------------------------------------------------------------------------
def _cell(x: Any, spec: str) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    return format(x, spec)


def table_lines(c: dict[str, Any], width: int = 34) -> list[str]:
    """The cluster section of the restart table: one column per run, then median/p95/max."""
    runs = c["runs"]
    col = 9
    lines = [
        "",
        f"cluster takeover: {c['instances']} instances over a {c['store']}, {c['topology']}; "
        f"{c['networks']} networks x 2 vswitches x {c['rules_per_vswitch']} rules, "
        f"{c['pinged_networks']} pinged (ping -i {c['ping_interval_s']:g}); lease "
        f"{c['lease_s']:g} s; kill -9 of the owner of a pinged network",
        "",
        f"{'run':{width}}" + "".join(f"{r['run']:>{col}}" for r in runs)
        + "".join(f"{h:>{col}}" for h in ("median", "p95", "max")) + f"{'goal':>{col}}",
    ]  # fmt: skip

    def row(label: str, key: str, spec: str = ".2f", goal: str = "", stat: bool = False) -> None:
        def get(r: dict[str, Any]) -> Any:
            return (r.get("split") or {}).get(key) if key.endswith("log_s") else r.get(key)

        cells = "".join(f"{_cell(get(r), spec):>{col}}" for r in runs)
        if stat:
            s = c["summary"][key]
            cells += "".join(f"{_cell(s[q], spec):>{col}}" for q in ("median", "p95", "max"))
        else:
            cells += " " * (3 * col)
        lines.append(f"{label:{width}}{cells}{goal:>{col}}")

    lines.append(f"{'victim (networks it owned)':{width}}" + "".join(
        f"{r.get('victim', 'FAILED'):>{col}}" for r in runs))  # fmt: skip
    lines.append(f"{'':{width}}" + "".join(
        f"{','.join(map(str, r.get('victim_networks', []))):>{col}}" for r in runs))  # fmt: skip
    lines.append("seconds since the kill:")
    row("  the victim's lease ran out", "lease_expired_s", stat=True)
    row("  claimed (log)", "claimed_log_s")
    row("  took over, compiled (log)", "took_over_log_s")
    row("  survivors' status name them", "claim_s", stat=True)
    row("  every vswitch reconnected", "takeover_s", goal=f"<={c['goal_takeover_s']:g}",
        stat=True)  # fmt: skip
    row("  every rule seen by controllers", "rules_back_s", stat=True)
    row("takeover minus the lease (s)", "takeover_minus_lease_s", stat=True)
    row("takeover after the lease ran out", "takeover_after_expiry_s", stat=True)
    row("pings lost (3 networks)", "pings_lost", "d", "0")
    row("FLOW_MODs by the survivors", "flow_mods", "d", "0")
    row("pswitches re-read", "pswitches_reread", "d")
    row("  messages those re-reads sent", "sync_messages", "d", "0")
    row("rules re-added or gone (OVS)", "rules_not_kept", "d", "0")
    row("flow events on pswitches (OVS)", "flow_events", "d", "0")
    row("same vswitches back (dpids)", "same_vdpids", "")
    row("other networks' vswitches dropped", "other_vswitches_dropped", "d", "0")
    row("heirs as rendezvous predicts", "heirs_as_predicted", "")
    for r in runs:
        if "error" in r:
            lines.append(f"  run {r['run']}: {r['error'].splitlines()[0][:200]}")
            continue
        for e in r["errors"]:
            lines.append(f"  run {r['run']}: {e}")
        if not r["pings_covered"]:
            lines.append(f"  run {r['run']}: a ping did not cover the takeover")
        for ex in r["rules_not_kept_examples"] + r["flow_events_examples"]:
            lines.append(f"  run {r['run']}: {ex[:160]}")
    if c.get("plot"):
        lines.append(f"takeover plot: {c['plot']}")
    return lines


def plot(c: dict[str, Any], path: str) -> None:
    """Per run, the takeover's points since the kill; echo replies of the victim's pinged
    network; the zero goals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in c["runs"] if "error" not in r]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.4))
    ax = axes[0]
    lease, goal = c["lease_s"], c["goal_takeover_s"]
    points = [("lease_expired_s", "victim's lease ran out", "c|"),
              ("claimed_log_s", "claimed (log)", "k|"), ("took_over_log_s", "compiled (log)", "b|"),
              ("claim_s", "status names them", "gv"), ("takeover_s", "every vswitch back", "rx"),
              ("rules_back_s", "every rule seen", "m+")]  # fmt: skip
    for y, r in enumerate(runs):
        ax.barh(y, r["takeover_s"] or 0, color="#cde", label="kill -> takeover" if y == 0 else None)
        for key, label, style in points:
            x = r["split"][key] if key.endswith("log_s") else r[key]
            if x is not None:
                ax.plot([x], [y], style, ms=9, mew=2, label=label if y == 0 else None)
    ax.axvline(lease, color="#888", ls="--", lw=1, label=f"lease {lease:g} s")
    ax.axvline(goal, color="#c44", ls=":", lw=1, label=f"goal {goal:g} s")
    ax.set_yticks(range(len(runs)), [f"run {r['run']} ({r['victim']})" for r in runs])
    ax.set(title=f"takeover of a killed instance ({c['networks']} networks, "
           f"{c['rules_per_vswitch']} rules/vswitch)", xlabel="s since the kill -9")  # fmt: skip
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[1]
    for r in runs:
        p = r["pings"][str(r["victim_ping_network"])]
        (line,) = ax.plot([t / 1e3 for t in p["t_ms"]], p["rtt_ms"], ".", ms=2,
                          label=f"run {r['run']}: {p['lost']} lost")  # fmt: skip
        if p["lost_runs"]:
            ax.plot([t for t, _ in p["lost_runs"]], [0] * len(p["lost_runs"]), "v",
                    color=line.get_color(), ms=7)  # fmt: skip
    ax.axvline(0, color="#c44", lw=1, label="kill -9")
    ax.axvline(lease, color="#888", ls="--", lw=1, label="lease")
    ax.set(title=f"echo replies in the victim's pinged network (ping -i {c['ping_interval_s']:g};"
           " v: lost)", xlabel="s since the kill", ylabel="RTT (ms)")  # fmt: skip
    ax.legend(fontsize=7, markerscale=4)
    ax = axes[2]
    bars = [
        ("pings lost (3 networks)", "pings_lost"),
        ("FLOW_MODs by survivors", "flow_mods"),
        ("re-read messages", "sync_messages"),
        ("rules re-added or gone", "rules_not_kept"),
    ]
    width = 0.8 / len(bars)
    top = 1.0
    drawn = False
    for k, (label, key) in enumerate(bars):
        ys = [float(r[key]) for r in runs]
        top = max(top, *ys) if ys else top
        drawn = drawn or any(ys)
        ax.bar([i + (k - 1.5) * width for i in range(len(runs))], ys, width, label=label)
    ax.set_xticks(range(len(runs)), [f"run {r['run']}" for r in runs])
    if not drawn:
        ax.text(0.5, 0.5, "all 0", transform=ax.transAxes, ha="center", color="#2a7")
    ax.set_yscale("symlog", linthresh=1)
    ax.set(title="what the takeover cost (goal 0 each)", ylim=(0, top * 2))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["GOALS", "TakeoverConfig", "plot", "run_takeover", "table_lines"]
