"""`tenantvisor bench restart`: kill -9 of the daemon under traffic, then the same hypervisor
started again on its state directory, for growing intents.

Set-up, once per size (a fresh fabric each time, so sizes do not inherit each other's rules):
a k=4 fat tree (`testbed/topo.py: fat_tree`, 20 pswitches, 32 links) or, with `--fabric
leaf-spine`, 2 spines x 8 leaves (`two_tier`, 10 pswitches, 16 links), and `tenantvisor serve`
as its own process with `--state-dir` in the run directory.  One tenant, created over REST,
owns N networks; each has its own controller (a `ControllerListener` of the bench's own) and M
vswitches, one on each of the first M edge pswitches (fat tree: pod by pod, e1, e3, e5, e7, e2,
...; leaf-spine: lf1, lf2, ...), chained by M-1 vlinks whose vports all sit on uplink port 3.
Fat tree: each vlink is 4 hops through core c1 or c2, two paths of equal length; leaf-spine:
2 hops through spine sp1, the only path.  Network 1 also has the hosts of the ping on its
first two vswitches (fat tree h1 on e1 and h5 on e3; leaf-spine h1 on lf1 and h3 on lf2).
Then the controllers write R rules into every vswitch (FLOW_MODs with cookies of their own,
then a BARRIER): on network 1's first two vswitches two of them carry the ping (`in_port`
host <-> vlink), every other rule matches an IPv4 destination nobody uses.  The bench waits
until the store holds every rule (it counts `Tenant_Flow` rows with `ovsdb-client`), since a
rule killed before its flush is rightly removed at restart.

Measured, per size: `ping -n -D -O -i 0.01 -c COUNT` between those hosts is started (a fixed
count, waited for: an interrupted ping counts its last echo as lost); after `lead` seconds the
daemon is killed with SIGKILL, the pswitches go on alone for `down` seconds, and a new daemon is
started with the same state directory and admin token.  From the new process's start:

* (a) the API answers `GET /v1/status`; every pswitch connected; (b) every pswitch `synced`;
  (c) every vswitch has its controller again, from the daemon's status
  (`controllers_connected`) and from the controllers' side (the listeners accept them again,
  with the same datapath ids);
* the split of (b) from the daemon's own log: process start -> store loaded (`restored ...`)
  -> fabric settled (`fabric settled after ...`) -> last pswitch synced (`reconciled: N
  messages sent`);
* what the daemon knew when it declared the fabric settled (pswitches and links: it compiles
  the restored intent on that);
* pings lost (goal 0), the longest run of them, whether the ping outlasted the restart (COUNT
  covers `lead + down + 12 s + 1 s per 2000 rules + 2 s` at the spacing ping really keeps
  here), the longest gap between replies;
* messages the syncs sent to pswitches (`sync_messages`, and the `reconciled` lines; goal 0)
  and every FLOW_MOD the new daemon sent (`flow_mods_total`; goal 0);
* whether every rule on every pswitch kept counting its `duration` (none re-added or gone,
  `testbed/flowwatch.py`: `dump-flows` before the kill and after the restart);
* whether every vswitch got all its rules back (`flows` in the status), and every vlink's path
  before and after (`GET /v1/networks/{id}`).

Open vSwitch (3.1 here) retries a dead controller after 1, 2, 4, then 8 s, whatever the
bridge's `max_backoff` (measured): the pswitches come back 1-16 s after the kill depending
on when the new daemon listens, and the restart is judged with that, as in production.

Then, unless `--no-cluster`, the cluster's answer to the same crash (`bench/takeover.py`):
three instances over a Raft store, one killed with -9 under ping, timed until the survivors
have its vswitches back with their controllers (JSON key "cluster", a section of the table,
and a second figure next to the first, `*-takeover.png`).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.bench.dnb import Progress
from tenantvisor.bench.failover import percentile
from tenantvisor.bench.report import closing_lines, emit
from tenantvisor.openflow import codec
from tenantvisor.store import EmbeddedServer
from tenantvisor.testbed.daemon import Daemon, DaemonError
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.flowwatch import FlowEntry, dump_flows, younger
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.scenario import wait_physical
from tenantvisor.testbed.topo import Topology, fat_tree, two_tier

if TYPE_CHECKING:  # takeover.py builds on this module: imported where it runs
    from tenantvisor.bench.takeover import TakeoverConfig

REFERENCE = (
    "No paper figure to compare with: OpenVirteX (and Libera, built on it) kept virtual "
    "networks in MongoDB and rebuilt them on restart, but not the tenants' flow tables (the "
    "controllers had to install their rules again), and neither paper measures a restart."
)
UPLINK = 3  # every link vport sits on it: fat tree, edge -> the pod's first aggregation
# pswitch; leaf-spine, leaf -> spine sp1
MAX_VSWITCHES = 8


@dataclass(frozen=True)
class Site:
    """A physical fabric, and where the tenant's vswitches (`edges`, in order) and the two
    hosts of the ping (on the first two) go."""

    name: str
    title: str
    edges: tuple[str, ...]
    ping: tuple[str, str]

    def topology(self) -> Topology:
        return fat_tree(4) if self.name == "fat-tree" else two_tier(2, MAX_VSWITCHES, 2)


SITES = {
    # pod by pod: every vlink crosses a core pswitch (4 hops), and has two of equal length
    "fat-tree": Site("fat-tree", "k=4 fat tree", ("e1", "e3", "e5", "e7", "e2", "e4", "e6", "e8"),
                     ("h1", "h5")),
    # every vlink leaf - sp1 - leaf (2 hops, the only path leaving and entering by port 3)
    "leaf-spine": Site("leaf-spine", f"leaf-spine, 2 spines x {MAX_VSWITCHES} leaves",
                       tuple(f"lf{i}" for i in range(1, MAX_VSWITCHES + 1)), ("h1", "h3")),
}  # fmt: skip
DP = ProtocolDesc(ofp.OFP_VERSION)
STORE_DB = "Tenantvisor"


@dataclass(frozen=True)
class Size:
    networks: int
    vswitches: int  # per network
    rules: int  # per vswitch

    @property
    def label(self) -> str:
        return f"{self.networks}x{self.vswitches}x{self.rules}"

    @property
    def total_rules(self) -> int:
        return self.networks * self.vswitches * self.rules

    @classmethod
    def parse(cls, text: str) -> Size:
        """`NxMxR`: N networks, M vswitches each (2-8), R rules per vswitch (>= 2)."""
        m = re.fullmatch(r"\s*(\d+)x(\d+)x(\d+)\s*", text)
        if m is None:
            raise ValueError(f"size {text!r}: want NETWORKSxVSWITCHESxRULES, e.g. 8x8x500")
        size = cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if not 1 <= size.networks <= 32:
            raise ValueError(f"size {text!r}: 1-32 networks")
        if not 2 <= size.vswitches <= MAX_VSWITCHES:
            raise ValueError(f"size {text!r}: 2-{MAX_VSWITCHES} vswitches (one per edge pswitch)")
        if not 2 <= size.rules <= 20_000:
            raise ValueError(f"size {text!r}: 2-20000 rules per vswitch")
        return size


FULL_SIZES = (Size(1, 4, 10), Size(2, 8, 50), Size(4, 8, 200), Size(8, 8, 500))
QUICK_SIZES = FULL_SIZES[:1]


@dataclass
class Config:
    sizes: tuple[Size, ...] = FULL_SIZES
    down: float = 1.0  # seconds between the kill and the new process
    lead: float = 1.0  # seconds of ping before the kill
    budget: float = 12.0  # seconds the ping covers for the restart itself
    tail: float = 2.0  # and after it
    interval: float = 0.01  # ping -i
    lldp_interval: float = 0.5
    site: str = "fat-tree"
    cluster: TakeoverConfig | None = None  # the takeover of a killed instance, after the sizes


# --- the tenant's controllers ----------------------------------------------------------------
class Keeper:
    """Answers the vswitches' ECHO_REQUESTs on idle controller connections (a channel silent
    for three echo intervals is closed) and drops everything else, in a thread.  A peer
    handed over here is used by nobody else."""

    def __init__(self) -> None:
        self._peers: list[OFPeer] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, peers: list[OFPeer]) -> None:
        with self._lock:
            self._peers.extend(peers)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self._peers = peers = [p for p in self._peers if not p.eof]
            if not peers:
                self._stop.wait(0.1)
                continue
            try:
                ready, _, _ = select.select([p.sock for p in peers], [], [], 0.1)
            except (OSError, ValueError):  # a socket closed meanwhile
                self._stop.wait(0.05)
                continue
            for p in peers:
                if p.sock in ready:
                    try:
                        while p.recv(0) is not None:
                            pass
                    except OSError:
                        p.eof = True

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3)


class Acceptor(threading.Thread):
    """Accepts `n` vswitches on a listener, noting when each came (`time.time()`)."""

    def __init__(
        self, listener: ControllerListener, n: int, keeper: Keeper, timeout: float
    ) -> None:
        super().__init__(daemon=True)
        self.listener = listener
        self.n = n
        self.keeper = keeper
        self.timeout = timeout
        self.times: list[float] = []
        self.dpids: list[int] = []
        self.error: str | None = None

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while len(self.times) < self.n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.times)}/{self.n} vswitches came back")
                peer = self.listener.accept(1, timeout=left)[0]
                self.times.append(time.time())
                self.dpids.append(peer.dpid)
                self.keeper.add([peer])
        except (OSError, ValueError, ConnectionError) as exc:
            self.error = str(exc) or type(exc).__name__


# --- intent ------------------------------------------------------------------------------------
@dataclass
class VSw:
    net: int  # index of its network (0: the one with the hosts)
    net_id: int
    index: int  # position in the network's chain
    switch: str
    vdpid: int
    links: dict[int, int] = field(default_factory=dict)  # chain neighbour -> its link vport
    host: int | None = None  # host vport


def build_intent(
    d: Daemon, site: Site, topo: Topology, size: Size, listeners: list[ControllerListener]
) -> tuple[str, list[list[VSw]]]:
    """The tenant, its networks, vswitches, vlinks and hosts over REST; every network started.
    Each listener is appended to `listeners` as soon as it exists (the caller closes them)."""
    tok = d.rest("POST", "/v1/tenants", {"name": "bench"})["token"]
    nets: list[list[VSw]] = []
    for n in range(size.networks):
        lst = ControllerListener()
        listeners.append(lst)
        lst.sock.listen(128)  # every vswitch of the network comes at once after a restart
        url = f"tcp:127.0.0.1:{lst.port}"
        nid = d.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
        base = f"/v1/networks/{nid}"

        def port(v: VSw, phys: int, base: str = base) -> int:
            body = {"dpid": topo.switch(v.switch).dpid, "port": phys}
            return int(d.rest("POST", f"{base}/ports", body, tok)["number"])

        chain = []
        for j, sw in enumerate(site.edges[: size.vswitches]):
            vd = d.rest("POST", f"{base}/switches", {"dpids": [topo.switch(sw).dpid]}, tok)["vdpid"]
            chain.append(VSw(n, int(nid), j, sw, int(vd)))
        for a, b in itertools.pairwise(chain):
            a.links[b.index] = port(a, UPLINK)
            b.links[a.index] = port(b, UPLINK)
            body = {"src_vdpid": a.vdpid, "src_vport": a.links[b.index],
                    "dst_vdpid": b.vdpid, "dst_vport": b.links[a.index]}  # fmt: skip
            d.rest("POST", f"{base}/links", body, tok)
        if n == 0:
            for v, name in zip(chain, site.ping, strict=False):
                h = topo.host(name)
                v.host = port(v, h.port)
                host: dict[str, Any] = {"vdpid": v.vdpid, "vport": v.host, "mac": h.mac}
                d.rest("POST", f"{base}/hosts", host, tok)
        d.rest("POST", f"{base}/start", None, tok)
        nets.append(chain)
    return tok, nets


def vlink_paths(d: Daemon, token: str, nets: list[list[VSw]]) -> dict[str, Any]:
    """Every vlink's physical path as the API reports it, by network and vlink id."""
    out: dict[str, Any] = {}
    for chain in nets:
        nid = chain[0].net_id
        for lk in d.rest("GET", f"/v1/networks/{nid}", None, token)["links"]:
            out[f"{nid}/{lk['id']}"] = lk.get("path")
    return out


def _flow_mod(cookie: int, priority: int, match: Any, out: int, xid: int) -> bytes:
    actions = [ofpp.OFPActionOutput(out)]
    msg = ofpp.OFPFlowMod(
        DP, cookie=cookie, priority=priority, match=match,
        instructions=[ofpp.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)],
    )  # fmt: skip
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def rules_for(v: VSw, rules: int) -> list[bytes]:
    """`rules` FLOW_MODs for vswitch `v`: network 1's first two carry the ping in two of them
    (`in_port` host <-> the vlink between them); the rest match IPv4 destinations nobody
    uses.  Cookies are the controller's own, one per rule."""
    base = (0xBE << 56) | (v.net << 40) | (v.index << 32)
    carry: list[tuple[int, int]] = []
    if v.host is not None:
        link = v.links[1 - v.index]  # the vlink between vswitches 0 and 1
        carry = [(v.host, link), (link, v.host)]
    out = [
        _flow_mod(base | k, 100, ofpp.OFPMatch(in_port=i), o, 1000 + k)
        for k, (i, o) in enumerate(carry)
    ]
    first_link = v.links[min(v.links)]
    for k in range(len(carry), rules):
        match = ofpp.OFPMatch(eth_type=0x0800, ipv4_dst=f"10.{200 + (k >> 16)}.{(k >> 8) & 255}."
                              f"{k & 255}")  # fmt: skip
        out.append(_flow_mod(base | k, 10, match, first_link, 1000 + k))
    return out


def install(peers: dict[int, OFPeer], nets: list[list[VSw]], rules: int) -> None:
    """Every vswitch's rules, then a BARRIER each; an ERROR from any vswitch fails the run."""
    xids: dict[int, int] = {}
    for v in (v for chain in nets for v in chain):
        peer = peers[v.vdpid]
        peer.send(b"".join(rules_for(v, rules)))
        xids[v.vdpid] = xid = 900_000 + v.index
        peer.send(codec.header(ofp.OFP_VERSION, ofp.OFPT_BARRIER_REQUEST, xid))
    for vdpid, xid in xids.items():
        peer = peers[vdpid]
        deadline = time.monotonic() + 120
        while True:
            m = peer.recv(max(0.0, deadline - time.monotonic()))
            if m is None:
                raise RuntimeError(f"vswitch {vdpid:016x}: no BARRIER reply")
            if m[0] == ofp.OFPT_ERROR:
                etype, code = struct.unpack_from("!HH", m[2], 8)
                raise RuntimeError(f"vswitch {vdpid:016x} refused a rule: type={etype} code={code}")
            if m[0] == ofp.OFPT_BARRIER_REPLY and m[1] == xid:
                break


def stored_rules(state_dir: Path) -> int | None:
    """Tenant rules the intent store holds now (None: it does not answer).  By `_uuid`: a
    select returns distinct rows of the columns asked for."""
    query = json.dumps([STORE_DB, {"op": "select", "table": "Tenant_Flow", "where": [],
                                   "columns": ["_uuid"]}])  # fmt: skip
    remote = EmbeddedServer(state_dir).remote
    try:
        r = subprocess.run(["ovsdb-client", "transact", remote, query],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
        return len(json.loads(r.stdout)[0]["rows"]) if r.returncode == 0 else None
    except (subprocess.TimeoutExpired, ValueError, KeyError, IndexError):
        return None


def wait_stored(state_dir: Path, want: int, timeout: float = 120.0) -> float:
    """Seconds until the store holds `want` tenant rules."""
    t0 = time.monotonic()
    got = None
    while time.monotonic() - t0 < timeout:
        got = stored_rules(state_dir)
        if got == want:
            return time.monotonic() - t0
        time.sleep(0.1)
    raise RuntimeError(f"the store holds {got} of {want} tenant rules after {timeout:g} s")


# --- measuring ---------------------------------------------------------------------------------
_LOG = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)$")
_RESTORED = re.compile(r"restored (\d+) tenants, (\d+) networks \((\d+) started\), (\d+) rules")
_SETTLED = re.compile(
    r"fabric settled after ([\d.]+) s: (\d+) pswitches, (\d+) links; "
    r"(\d+) vswitches and (\d+) rules back"
)
_RECONCILED = re.compile(r"pswitch ([0-9a-f]+) reconciled: (\d+) messages sent")
_PS_CONNECTED = re.compile(r"pswitch [0-9a-f]+ connected from")
_CTL_CONNECTED = re.compile(r": controller \S+ connected")
_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+) .*time=([\d.]+) ms")
_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


def log_events(text: str) -> list[tuple[float, str]]:
    """(wall-clock time, message) of every line of the daemon's log."""
    out = []
    for line in text.splitlines():
        m = _LOG.match(line)
        if m is not None:
            t = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append((t, m.group(2)))
    return out


def restart_split(text: str, t_start: float) -> dict[str, Any]:
    """What the new daemon's log says, in seconds since its process started."""

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - t_start, 3)

    ev = log_events(text)
    out: dict[str, Any] = {}
    restored = next(((t, m) for t, msg in ev if (m := _RESTORED.search(msg))), None)
    settled = next(((t, m) for t, msg in ev if (m := _SETTLED.search(msg))), None)
    reconciled = [(t, m) for t, msg in ev if (m := _RECONCILED.search(msg))]
    ps_conn = [t for t, msg in ev if _PS_CONNECTED.search(msg)]
    ctl_conn = [t for t, msg in ev if _CTL_CONNECTED.search(msg)]
    out["first_log_line_s"] = rel(ev[0][0] if ev else None)
    out["store_loaded_s"] = rel(restored[0] if restored else None)
    if restored:
        tenants, networks, started, rules = map(int, restored[1].groups())
        out["restored"] = {"tenants": tenants, "networks": networks, "started": started,
                           "rules": rules}  # fmt: skip
    out["api_log_s"] = rel(next((t for t, msg in ev if msg.startswith("API on ")), None))
    out["first_pswitch_s"] = rel(min(ps_conn, default=None))
    out["last_pswitch_s"] = rel(max(ps_conn, default=None))
    out["fabric_settled_s"] = rel(settled[0] if settled else None)
    if settled:
        g = settled[1].groups()
        out["settled"] = {"wait_s": float(g[0]), "pswitches": int(g[1]), "links": int(g[2]),
                          "vswitches": int(g[3]), "rules": int(g[4])}  # fmt: skip
    out["synced_s"] = rel(max((t for t, _ in reconciled), default=None))
    out["reconciled_pswitches"] = len({m.group(1) for _, m in reconciled})
    out["reconciled_messages"] = sum(int(m.group(2)) for _, m in reconciled)
    out["controllers_log_s"] = rel(max(ctl_conn, default=None))
    return out


@dataclass
class Watch:
    """When the new daemon reached each point (`time.time()`), from `GET /v1/status`."""

    api: float | None = None
    connected: float | None = None  # every pswitch connected
    synced: float | None = None  # every pswitch synced
    vswitches: float | None = None  # every vswitch with its controller
    status: dict[str, Any] = field(default_factory=dict)


def watch_restart(d: Daemon, starter: Starter, n_sw: int, n_vsw: int, timeout: float) -> Watch:
    w = Watch()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if starter.error is not None:
            raise DaemonError(starter.error)
        if not d.api_port:
            time.sleep(0.005)
            continue
        try:
            r = httpx.get(d.url + "/v1/status", timeout=5,
                          headers={"Authorization": f"Bearer {d.admin_token}"})  # fmt: skip
        except httpx.HTTPError:
            time.sleep(0.01)
            continue
        now = time.time()
        if r.status_code != 200:
            time.sleep(0.01)
            continue
        w.api = w.api or now
        st = r.json()
        ps, vs = st["pswitches"], st["vswitches"]
        if w.connected is None and len(ps) == n_sw:
            w.connected = now
        if w.synced is None and len(ps) == n_sw and all(p.get("synced") for p in ps):
            w.synced = now
        if (
            w.vswitches is None
            and len(vs) == n_vsw
            and all(v["controllers_connected"] >= 1 for v in vs)
        ):
            w.vswitches = now
        w.status = st
        if w.synced is not None and w.vswitches is not None:
            return w
        time.sleep(0.02)
    what = "pswitches synced" if w.synced is None else "vswitches reconnected"
    raise DaemonError(f"restart: no {what} after {timeout:g} s:\n{d.log_tail(40)}")


class Starter(threading.Thread):
    """`Daemon.start()` in a thread, so the bench can time the API itself, finely."""

    def __init__(self, d: Daemon, timeout: float) -> None:
        super().__init__(daemon=True)
        self.d = d
        self.timeout = timeout
        self.error: str | None = None

    def run(self) -> None:
        try:
            self.d.start(timeout=self.timeout)
        except Exception as exc:
            self.error = str(exc)


def ping_spacing(fab: Fabric, src: str, dst: str, interval: float) -> float:
    """Seconds between echo requests of `ping -i interval` here (more than asked for on a
    loaded machine); fails when this short ping loses anything (no clean start)."""
    r = fab.host(src).exec(
        ["ping", "-n", "-q", "-c", "50", "-i", f"{interval:g}", dst], timeout=30, check=False
    )
    m = _SUMMARY.search(r.stdout)
    t = re.search(r"time (\d+)ms", r.stdout)
    if m is None or t is None or m.group(1) != m.group(2):
        raise RuntimeError(f"{src} -> {dst} loses pings before any restart:\n{r.stdout}")
    return max(interval, int(t.group(1)) / 1e3 / 49)


def parse_ping(text: str) -> dict[str, Any]:
    replies = []
    for line in text.splitlines():
        m = _REPLY.match(line)
        if m is not None:
            replies.append((float(m.group(1)), int(m.group(2)), float(m.group(3))))
    m = _SUMMARY.search(text)
    sent, got = (int(m.group(1)), int(m.group(2))) if m else (None, None)
    return {"sent": sent, "received": got, "replies": replies}


def lost_runs(
    replies: list[tuple[float, int, float]], sent: int, spacing: float
) -> list[tuple[float, int]]:
    """Runs of consecutive unanswered requests (ping numbers them 1..sent): (about when the
    first was sent, `time.time()`, from the last answered one before it; run length)."""
    sent_at = {seq: t - rtt / 1e3 for t, seq, rtt in replies}
    runs: list[tuple[float, int]] = []
    start: int | None = None
    last: int | None = None  # last answered seq
    for seq in range(1, sent + 2):
        if seq <= sent and seq not in sent_at:
            start = seq if start is None else start
            continue
        if start is not None:
            t = sent_at[last] + (start - last) * spacing if last is not None else 0.0
            runs.append((t, seq - start))
            start = None
        last = seq if seq <= sent else last
    return runs


def dumps(fab: Fabric) -> dict[str, tuple[float, dict[str, FlowEntry]]]:
    return {sw: (time.monotonic(), dump_flows(fab, sw)) for sw in fab.topo.switches}


def kept(
    before: dict[str, tuple[float, dict[str, FlowEntry]]],
    after: dict[str, tuple[float, dict[str, FlowEntry]]],
) -> list[str]:
    """Rules on any pswitch that were re-added (duration restarted) or are gone."""
    bad = []
    for sw, (t0, flows0) in before.items():
        t1, flows1 = after[sw]
        bad += [f"{sw}: {b}" for b in younger(flows0, flows1, t1 - t0)]
    return bad


# --- one size ----------------------------------------------------------------------------------
def run_size(size: Size, cfg: Config, bar: Progress) -> dict[str, Any]:
    rundir = Path(tempfile.mkdtemp(prefix="tv-bench-restart-"))
    state = rundir / "state"
    site = SITES[cfg.site]
    topo = site.topology()
    fab = Fabric(topo)
    keeper = Keeper()
    listeners: list[ControllerListener] = []
    daemons: list[Daemon] = []
    threads: list[threading.Thread] = []
    ping_proc: subprocess.Popen[Any] | None = None
    n_vsw = size.networks * size.vswitches
    out: dict[str, Any] = {
        "size": size.label, "networks": size.networks, "vswitches_per_network": size.vswitches,
        "rules_per_vswitch": size.rules, "vswitches": n_vsw, "virtual_rules": size.total_rules,
    }  # fmt: skip
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        d1 = Daemon(rundir / "d1", sock, state_dir=state, lldp_interval=cfg.lldp_interval)
        daemons.append(d1)
        d1.start()
        fab.set_controller(sock)
        fab.wait_connected(timeout=30)
        wait_physical(d1, topo, timeout=60)
        bar.step(f"{size.label}: fat tree and daemon up")

        token, nets = build_intent(d1, site, topo, size, listeners)
        peers: dict[int, OFPeer] = {}
        for lst in listeners:
            peers.update({p.dpid: p for p in lst.accept(size.vswitches, timeout=60)})
        t0 = time.monotonic()
        install(peers, nets, size.rules)
        out["install_s"] = round(time.monotonic() - t0, 3)
        keeper.add(list(peers.values()))
        d1.wait_for(
            f"{size.total_rules} tenant rules",
            lambda st: sum(v["flows"] for v in st["vswitches"]) == size.total_rules,
            timeout=120,
        )
        out["stored_after_s"] = round(wait_stored(state, size.total_rules), 3)
        time.sleep(0.3)  # a few store flushes more: nothing may still be on its way
        a, b = (topo.host(h) for h in site.ping)
        for x, y in ((a, b), (b, a)):
            fab.host(x.name).exec(["ip", "neigh", "replace", y.ip, "lladdr", y.mac, "dev", "eth0",
                                   "nud", "permanent"])  # fmt: skip
        if not fab.host(a.name).ping(b.ip, timeout=15):
            raise RuntimeError(f"{a.name} cannot reach {b.name} after setup:\n{d1.log_tail(40)}")
        spacing = ping_spacing(fab, a.name, b.ip, cfg.interval)
        paths = vlink_paths(d1, token, nets)
        before = dumps(fab)
        out["pswitch_rules"] = sum(len(f) for _, f in before.values())
        bar.step(f"{size.label}: {size.total_rules} rules installed and stored")

        # --- kill -9 under traffic, restart on the same state directory -----------------------
        budget = cfg.budget + size.total_rules / 2000  # measured: larger stores load longer
        cover = cfg.lead + cfg.down + budget + cfg.tail
        count = math.ceil(cover / spacing)
        ping_file = rundir / "ping.txt"
        with open(ping_file, "w") as pf:  # a file, not a pipe nobody reads while we wait
            ping_proc = fab.host(a.name).popen(
                ["ping", "-n", "-D", "-O", "-i", f"{cfg.interval:g}", "-c", str(count), b.ip],
                stdout=pf, stderr=subprocess.STDOUT,
            )  # fmt: skip
        time.sleep(cfg.lead)
        t_kill = time.time()
        d1.kill()
        time.sleep(cfg.down)
        d2 = Daemon(rundir / "d2", sock, admin_token=d1.admin_token, state_dir=state,
                    lldp_interval=cfg.lldp_interval)  # fmt: skip
        daemons.append(d2)
        acceptors = [Acceptor(lst, size.vswitches, keeper, budget + 60) for lst in listeners]
        starter = Starter(d2, timeout=60)
        threads += [*acceptors, starter]
        for acc in acceptors:
            acc.start()
        t_start = time.time()
        starter.start()
        w = watch_restart(d2, starter, len(topo.switches), n_vsw, timeout=budget + 60)
        for acc in acceptors:
            acc.join(budget + 60)
            if acc.error is not None:
                raise RuntimeError(f"the tenant's controllers: {acc.error}")
        starter.join(60)
        accepted = [t for acc in acceptors for t in acc.times]
        ping_proc.wait(timeout=count * spacing * 3 + 30)
        after = dumps(fab)
        final = d2.get("/v1/status").json()
        paths_after = vlink_paths(d2, token, nets)
        out["vlinks"] = len(paths)
        out["vlink_paths_changed"] = sorted(k for k in paths if paths[k] != paths_after.get(k))

        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - t_start, 3)

        t_back = max(accepted)
        out["restart"] = {
            "api_up_s": rel(w.api),
            "pswitches_connected_s": rel(w.connected),
            "synced_s": rel(w.synced),
            "vswitches_reconnected_s": rel(w.vswitches),
            "controllers_accepted_s": rel(t_back),
            "kill_to_synced_s": round((w.synced or t_start) - t_kill, 3),
        }
        out["split"] = restart_split(d2.log_text(), t_start)
        ps = final["pswitches"]
        out["sync_messages"] = sum(p["sync_messages"] for p in ps)
        out["flow_mods_total"] = sum(p["flow_mods_total"] for p in ps)
        out["synced_pswitches"] = sum(1 for p in ps if p["synced"])
        out["pswitches"] = len(topo.switches)
        vs = final["vswitches"]
        out["vswitch_rules_back"] = sum(v["flows"] for v in vs)
        out["vswitches_back"] = len(vs)
        want = sorted(v.vdpid for chain in nets for v in chain)
        out["same_vdpids"] = sorted(d for acc in acceptors for d in acc.dpids) == want
        bad = kept(before, after)
        out["rules_not_kept"] = len(bad)
        out["rules_not_kept_examples"] = bad[:3]
        p = parse_ping(ping_file.read_text())
        replies = p["replies"]
        times = [t for t, _, _ in replies]
        gaps = [(b - a, a) for a, b in itertools.pairwise(times)]
        gap, gap_at = max(gaps, default=(0.0, t_kill))
        runs = lost_runs(replies, p["sent"] or 0, spacing)
        longest = max((n for _, n in runs), default=0)
        done = max(t for t in (w.synced, w.vswitches, t_back) if t is not None)
        out["ping"] = {
            "count": count,
            "sent": p["sent"],
            "received": p["received"],
            "lost": None if p["sent"] is None else p["sent"] - p["received"],
            "spacing_ms": round(spacing * 1e3, 2),
            "max_gap_ms": round(gap * 1e3, 1),
            "max_gap_at_s": round(gap_at - t_kill, 3),  # since the kill
            "longest_lost_run": longest,
            "longest_lost_run_ms": round(longest * spacing * 1e3, 1),
            "lost_runs": [(round(t - t_kill, 3), n) for t, n in runs[:20]],  # since the kill
            "covered": bool(times) and times[-1] >= done + 0.5 and times[0] <= t_kill,
            "rtt_ms_p50": percentile([r for _, _, r in replies], 50),
            "t_ms": [round((t - t_kill) * 1e3, 1) for t, _, _ in replies],
            "rtt_ms": [round(r, 3) for _, _, r in replies],
        }
        out["down_s"] = round(t_start - t_kill, 3)
        bar.step(
            f"{size.label}: synced {out['restart']['synced_s']} s after start, "
            f"lost {out['ping']['lost']}, {out['sync_messages']} sync messages"
        )
        return out
    finally:
        if ping_proc is not None and ping_proc.poll() is None:
            ping_proc.kill()
            ping_proc.wait(5)
        keeper.stop()
        for lst in listeners:
            lst.close()
        for d in reversed(daemons):
            d.stop()
        for t in threads:
            t.join(5)
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)


def run(cfg: Config, progress: bool = True) -> dict[str, Any]:
    t0 = time.monotonic()
    bar = Progress(3 * len(cfg.sizes) + (cfg.cluster.steps if cfg.cluster else 0), progress)
    site = SITES[cfg.site]
    topo = site.topology()
    result: dict[str, Any] = {
        "benchmark": "restart",
        "fabric": site.name,
        "topology": f"{site.title} ({len(topo.switches)} pswitches, {len(topo.links)} links)",
        "pswitches": len(topo.switches),
        "links": 2 * len(topo.links),  # directions, as the daemon counts them
        "ping": f"{site.ping[0]} -> {site.ping[1]}",
        "ping_interval_s": cfg.interval,
        "down_s": cfg.down,
        "lldp_interval_s": cfg.lldp_interval,
        "sizes": [run_size(s, cfg, bar) for s in cfg.sizes],
    }
    sizes = result["sizes"]
    result["goals"] = {
        "no_ping_lost": all(s["ping"]["lost"] == 0 and s["ping"]["covered"] for s in sizes),
        "no_message_to_pswitches": all(
            s["sync_messages"] == 0 and s["flow_mods_total"] == 0 for s in sizes
        ),
        "rules_kept_counting": all(s["rules_not_kept"] == 0 for s in sizes),
        "tables_back": all(
            s["vswitch_rules_back"] == s["virtual_rules"]
            and s["vswitches_back"] == s["vswitches"]
            and s["same_vdpids"]
            for s in sizes
        ),
    }
    if cfg.cluster is not None:
        from tenantvisor.bench.takeover import run_takeover

        result["cluster"] = cluster = run_takeover(cfg.cluster, bar)
        result["goals"].update({f"takeover_{k}": v for k, v in cluster["goals"].items()})
    result["reference"] = REFERENCE
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


# --- output ------------------------------------------------------------------------------------
def _fmt(x: Any, spec: str = ".2f") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    return format(x, spec)


def _known(s: dict[str, Any]) -> str:
    st = s["split"].get("settled")
    return "-" if st is None else f"{st['pswitches']}/{st['links']}"


def table(r: dict[str, Any]) -> str:
    sizes = r["sizes"]
    col = 12
    lines = [
        f"tenantvisor bench restart: {r['topology']}, kill -9 under ping -i "
        f"{r['ping_interval_s']:g} {r['ping']}, new process {r['down_s']:g} s later on the same "
        f"state dir (LLDP every {r['lldp_interval_s']:g} s)",
        "",
        f"{'networks x vswitches x rules':34}" + "".join(f"{s['size']:>{col}}" for s in sizes)
        + f"{'goal':>8}",
    ]  # fmt: skip

    def row(label: str, get: Any, spec: str = ".2f", goal: str = "") -> None:
        cells = "".join(f"{_fmt(get(s), spec):>{col}}" for s in sizes)
        lines.append(f"{label:34}{cells}{goal:>8}")

    row("tenant rules (vswitches)", lambda s: s["virtual_rules"], "d")
    row("rules on the pswitches", lambda s: s["pswitch_rules"], "d")
    lines.append("seconds since the new process started:")
    row("  store loaded (log)", lambda s: s["split"]["store_loaded_s"])
    row("  API up", lambda s: s["restart"]["api_up_s"])
    row("  every pswitch connected", lambda s: s["restart"]["pswitches_connected_s"])
    row("  fabric settled (log)", lambda s: s["split"]["fabric_settled_s"])
    row("  every pswitch synced (log)", lambda s: s["split"]["synced_s"])
    row("  every pswitch synced (status)", lambda s: s["restart"]["synced_s"])
    row("  every vswitch reconnected", lambda s: s["restart"]["controllers_accepted_s"])
    row("kill -> every pswitch synced (s)", lambda s: s["restart"]["kill_to_synced_s"])
    row("known when settled: pswitches/links", _known, "", f"{r['pswitches']}/{r['links']}")
    row("pings lost", lambda s: s["ping"]["lost"], "d", "0")
    row("  longest run of them (ms)", lambda s: s["ping"]["longest_lost_run_ms"], ".0f")
    row("longest gap between replies (ms)", lambda s: s["ping"]["max_gap_ms"], ".0f")
    row("messages sent by the syncs", lambda s: s["sync_messages"], "d", "0")
    row("FLOW_MODs by the new daemon", lambda s: s["flow_mods_total"], "d", "0")
    row("rules re-added or gone (OVS)", lambda s: s["rules_not_kept"], "d", "0")
    row("vlinks on another path afterwards", lambda s: f"{len(s['vlink_paths_changed'])}"
        f"/{s['vlinks']}", "", "0")  # fmt: skip
    row("tenant rules back in vswitches", lambda s: s["vswitch_rules_back"], "d")
    row("same vswitches back (dpids)", lambda s: s["same_vdpids"], "")
    for s in sizes:
        if not s["ping"]["covered"]:
            lines.append(f"  {s['size']}: the ping ended before the restart was complete")
        for ex in s["rules_not_kept_examples"]:
            lines.append(f"  {s['size']}: {ex}")
    goals = [
        ("no_ping_lost", "no ping lost"),
        ("no_message_to_pswitches", "no message to a pswitch"),
        ("rules_kept_counting", "every rule kept counting"),
        ("tables_back", "every vswitch back with its rules"),
    ]
    if "cluster" in r:
        from tenantvisor.bench import takeover

        lines += takeover.table_lines(r["cluster"], width=34)
        goals += [(f"takeover_{k}", label) for k, label in takeover.GOALS]
    lines += closing_lines(r, goals, width=34)
    return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
    """The restart's phases per size; echo replies around the kill; the zero goals.  The
    cluster's takeover, if measured, in a second figure beside it (`NAME-takeover.png`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = r["sizes"]
    labels = [s["size"] for s in sizes]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.4))
    ax = axes[0]
    phases = [("store_loaded_s", "process start -> store loaded", "#8ab"),
              ("fabric_settled_s", "-> fabric settled", "#e94"),
              ("synced_s", "-> every pswitch synced", "#4a6")]  # fmt: skip
    for y, s in enumerate(sizes):
        left = 0.0
        for key, label, color in phases:
            end = s["split"][key]
            if end is None:
                continue
            ax.barh(y, end - left, left=left, color=color, label=label if y == 0 else None)
            left = end
        api = s["restart"]["api_up_s"]
        back = s["restart"]["controllers_accepted_s"]
        conn = s["restart"]["pswitches_connected_s"]
        ax.plot([api], [y], "k|", ms=18, mew=2, label="API up" if y == 0 else None)
        ax.plot([conn], [y + 0.25], "bv", ms=7, label="every pswitch connected" if y == 0 else None)
        ax.plot([back], [y], "rx", ms=9, mew=2,
                label="every vswitch reconnected" if y == 0 else None)  # fmt: skip
    ax.set_yticks(range(len(sizes)), labels)
    ax.set(title="restart (networks x vswitches x rules)", xlabel="s since the new process started")
    ax.legend(fontsize=7, loc="lower right")
    ax = axes[1]
    for s in sizes:
        (line,) = ax.plot([t / 1e3 for t in s["ping"]["t_ms"]], s["ping"]["rtt_ms"], ".", ms=2,
                          label=f"{s['size']}: {s['ping']['lost']} lost")  # fmt: skip
        runs = s["ping"]["lost_runs"]
        if runs:  # where requests went unanswered, on the axis
            ax.plot([t for t, _ in runs], [0] * len(runs), "v", color=line.get_color(), ms=7)
    ax.axvline(0, color="#c44", lw=1, label="kill -9")
    ax.axvline(r["down_s"], color="#2a7", lw=1, label="new process")
    ax.set(title=f"echo replies {r['ping']} (ping -i {r['ping_interval_s']:g}; v: lost)",
           xlabel="s since the kill", ylabel="RTT (ms)")  # fmt: skip
    ax.legend(fontsize=7, markerscale=4)
    ax = axes[2]
    bars = [("pings lost", lambda s: s["ping"]["lost"] or 0),
            ("messages sent by the syncs", lambda s: s["sync_messages"]),
            ("rules re-added or gone", lambda s: s["rules_not_kept"])]  # fmt: skip
    width = 0.8 / len(bars)
    top = 1.0
    for k, (label, get) in enumerate(bars):
        ys = [float(get(s)) for s in sizes]
        top = max(top, *ys)
        ax.bar([i + (k - 1) * width for i in range(len(sizes))], ys, width, label=label)
    ax.set_xticks(range(len(sizes)), labels)
    ax.set_yscale("symlog", linthresh=1)  # a few lost pings beside thousands of messages
    ax.set(title="what the restart cost (goal 0 each)", ylim=(0, top * 2))
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    if "cluster" in r:
        from tenantvisor.bench import takeover

        where = Path(path)
        second = str(where.with_name(f"{where.stem}-takeover{where.suffix or '.png'}"))
        takeover.plot(r["cluster"], second)
        r["cluster"]["plot"] = second


def run_restart(
    quick: bool = False,
    sizes: str | None = None,
    fabric: str = "fat-tree",
    down: float | None = None,
    as_json: bool = False,
    plot_path: str | None = None,
    interval: float | None = None,
    cluster: bool = True,
) -> int:
    try:
        chosen = (
            tuple(Size.parse(s) for s in sizes.split(",") if s.strip())
            if sizes
            else (QUICK_SIZES if quick else FULL_SIZES)
        )
    except ValueError as exc:
        print(f"tenantvisor bench: {exc}", file=sys.stderr)
        return 2
    if fabric not in SITES:
        print(f"tenantvisor bench: --fabric {fabric}: one of {', '.join(SITES)}", file=sys.stderr)
        return 2
    cfg = Config(sizes=chosen, site=fabric)
    if down is not None:
        cfg.down = down
    if interval is not None:
        cfg.interval = interval
    if not chosen or cfg.down < 0 or not 0.001 <= cfg.interval <= 1:
        print(
            "tenantvisor bench: --sizes needs at least one NxMxR, --down >= 0, "
            "--interval 0.001-1 s",
            file=sys.stderr,
        )
        return 2
    if cluster:
        from tenantvisor.bench.takeover import TakeoverConfig

        cfg.cluster = TakeoverConfig.quick() if quick else TakeoverConfig()
        cfg.cluster.interval = cfg.interval
    result = run(cfg)
    return emit(
        result, plot=plot, table=table, plot_path=plot_path, as_json=as_json,
        default_plot="bench-restart.png",
    )  # fmt: skip


__all__ = ["SITES", "Config", "Size", "restart_split", "run", "run_restart"]
