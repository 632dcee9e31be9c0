"""`tenantvisor bench reduction`: Libera's flow-rule reduction (section V.A, V.C; Fig. 4 and
5) on a k=4 fat tree of userspace Open vSwitch bridges (20 pswitches, OpenFlow 1.3).

Set-up (one fabric, one `tenantvisor serve` process for the whole run): five tenants, each
with a network whose virtual topology is the physical fat tree 1:1, made over REST as an
operator would: a vswitch on every pswitch, a vport on each end of every physical link and a
vlink between them, and an edge vport on every host port with the tenant's own host on it.
The 16 host ports are shared: every tenant has a host on each (its own MAC and IPv4, the
manager refuses only two hosts with one MAC on one physical port), and in each host's
namespace a macvlan per tenant carries that tenant's address, so tenants really send
through the same ports.  Each network's controller is the bench's own (`ControllerListener`,
as in tests/e2e/test_reduction.py).

Connections: tenant t's clients sit in pod t mod 4 and its servers in pod (t + 2) mod 4;
connection j joins host pair (j // 2) mod 16 of the 4 x 4 pairs (two connections per pair,
then the next pair) with TCP ports 40000+j -> 5000+j.  The controller routes as a
shortest-path controller without ECMP does: one fixed path per tenant through aggregation
switch t mod 2 of each pod and core (t // 2) mod 2 of that aggregation's group (the five
tenants use c1, c3, c2, c4, c1).  Every connection's rules are installed at every vswitch on
its path in both directions (10 per connection: two edges, two aggregations and a core each
way), matching the six fields of the paper (Ethernet, IPv4 and TCP source and destination,
with the eth_type and ip_proto they need) and no in_port, as in the paper.

Per level (exact, app, host, hop, lite), the networks' level
is set (`PUT /v1/networks/{id}/scalability`, on empty tables), the connections are
installed one at a time and tenant after tenant (a connection's rules to each vswitch on
its path, a BARRIER to each, timed from the first FLOW_MOD to the last BARRIER reply), and
at each checkpoint (6 connections per tenant, the paper's scalability setting, then every
`--connections` value):

* (a) Fig. 4: the tenants' physical rules on every bridge (`ovs-ofctl dump-flows`, the
  networks' cookies without the infrastructure bit: the tenant tables, and the LITE rules in
  table 0; shared reduced rules, LITE rules and their exception drops have serial 2^47-1),
  per layer (edge, aggregation, core), normalised to exact;
* (b) Fig. 5: FR processing time (per rule, the batches since the previous checkpoint) and
  the daemon's RSS (`VmRSS`) and CPU time;
* (c) control bytes: what the tenants' controllers sent to their vswitches (FLOW_MOD bytes,
  counted as sent) against what the hypervisor sent to the pswitches, counted on the wire by
  a relay of the bench's own between the bridges and the daemon (a process that parses the
  OpenFlow framing of both directions; the daemon counts bytes but exposes only message
  counts, `flow_mods_total`, which is cross-checked);
* traffic: TCP connections (bound to the connection's ports, so they meet its rules) between
  the tenants' macvlans, at the paper's setting and at the last checkpoint.

Then every tenant rule is deleted (FLOW_MOD DELETE of all tables): the pswitches must keep
none of the networks' rules.  After the last level, with its rules in place, the level is
changed under the rules (to two other levels, then back), and the rules counted again: a re-derived
table must equal the incrementally built one.  The daemon's log is searched for errors.
`--verify N` runs `tenantvisor.testbed.equivalence.verify(N, seed)` instead, when that exists.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import itertools
import json
import multiprocessing
import os
import re
import selectors
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.bench.dnb import Progress
from tenantvisor.bench.report import closing_lines, emit
from tenantvisor.openflow import codec
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.scenario import wait_physical
from tenantvisor.testbed.topo import Host, Topology, fat_tree

LEVELS = ("exact", "app", "host", "hop", "lite")
LAYERS = ("edge", "aggregation", "core")
TENANTS = 5
PAPER_CONNECTIONS = 6  # per tenant, Libera's scalability experiment (V.A)
FULL_CONNECTIONS = (2, 10, 50, 100, 150, 200)  # Fig. 5
QUICK_CONNECTIONS = (2, 10, 20)
TRAFFIC_SAMPLE = 6  # TCP connections checked per tenant at a checkpoint
PRIORITY = 1000
DP = ProtocolDesc(ofp.OFP_VERSION)
PAPER = {
    "core_hop_reduction_x": 8.0,  # Fig. 4: "up to eight times" with wildcard_hop at the core
    "fr_time_added_ms_max": 2.18,  # Fig. 5: Libera (wildcard) over OVX, at most
    "rss_mb_mean": 436.7,  # Fig. 5: the four settings' average
    "control_bytes_overhead_pct": {"hop": 11.0, "host": 25.0},  # V.C.2, wildcard_hop / _end
}
GOAL = {"core_hop_x": 8.0, "fr_added_ms": 0.5, "bytes_overhead_hop_pct": 5.0}
REFERENCE = (
    "Libera (p-NIaaS), sections V.A and V.C: 5 tenants x 6 TCP connections on a k=4 fat tree, "
    "6-field rules at every vswitch; up to 8x fewer rules at the core with wildcard_hop "
    "(Fig. 4); at most +2.18 ms FR processing time over OVX and ~436.7 MB of memory at "
    "2-200 connections (Fig. 5); +11% (hop) and +25% (end) control bytes."
)


# --- a relay that counts what crosses the control channel of the pswitches -------------------
_TYPES = 256
_DOWN, _DOWN_N, _UP, _UP_N = 0, _TYPES, 2 * _TYPES, 3 * _TYPES  # offsets in the counters
_FM_CMD = 4 * _TYPES  # + command: FLOW_MODs to the pswitches by command (add, modify, ...)
_COUNTERS = _FM_CMD + 8
FM_COMMANDS = ("add", "modify", "modify_strict", "delete", "delete_strict")


def _relay_loop(listener: socket.socket, target: str, counters: Any) -> None:
    """Accept bridges on `listener`, connect each to the daemon's Unix socket `target`, pass
    bytes both ways and count them per OpenFlow message type (the daemon -> pswitch direction
    at _DOWN/_DOWN_N, the other at _UP/_UP_N).  Ends when its parent does."""
    parent = os.getppid()
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    peer: dict[socket.socket, socket.socket] = {}
    pending: dict[socket.socket, bytearray] = {}
    frames: dict[socket.socket, bytearray] = {}  # bytes read from a socket, not yet counted
    down: set[socket.socket] = set()  # sockets whose reads go to the pswitch

    def close_pair(s: socket.socket) -> None:
        for x in (s, peer.get(s)):
            if x is None or x not in peer:
                continue
            sel.unregister(x)
            x.close()
            peer.pop(x, None)
            pending.pop(x, None)
            frames.pop(x, None)
            down.discard(x)

    def count(s: socket.socket, data: bytes) -> None:
        buf = frames[s]
        buf += data
        base, nbase = (_DOWN, _DOWN_N) if s in down else (_UP, _UP_N)
        off = 0
        while len(buf) - off >= 8:
            length = (buf[off + 2] << 8) | buf[off + 3]
            if length < 8 or len(buf) - off < length:
                break
            t = buf[off + 1]
            counters[base + t] += length
            counters[nbase + t] += 1
            if t == ofp.OFPT_FLOW_MOD and base == _DOWN and length > 25:
                counters[_FM_CMD + min(buf[off + 25], 7)] += 1
            off += length
        del buf[:off]

    def update(s: socket.socket) -> None:
        if s not in peer:
            return
        events = selectors.EVENT_READ if len(pending[peer[s]]) < (1 << 20) else 0
        if pending[s]:
            events |= selectors.EVENT_WRITE
        sel.modify(s, events or selectors.EVENT_READ)

    while os.getppid() == parent:
        for key, events in sel.select(timeout=0.5):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if s is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                out = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    out.connect(target)
                except OSError:
                    out.close()
                    conn.close()
                    continue
                for x in (conn, out):
                    x.setblocking(False)
                    pending[x] = bytearray()
                    frames[x] = bytearray()
                    sel.register(x, selectors.EVENT_READ)
                peer[conn], peer[out] = out, conn
                down.add(out)  # what the daemon writes goes to the bridge
                continue
            if s not in peer:
                continue
            try:
                if events & selectors.EVENT_WRITE and pending[s]:
                    sent = s.send(pending[s])
                    del pending[s][:sent]
                if events & selectors.EVENT_READ:
                    data = s.recv(1 << 16)
                    if not data:
                        close_pair(s)
                        continue
                    count(s, data)
                    other = peer[s]
                    if not pending[other]:
                        try:
                            sent = other.send(data)
                        except BlockingIOError:
                            sent = 0
                        data = data[sent:]
                    pending[other] += data
                    update(other)
                update(s)
            except OSError:
                close_pair(s)


class CountingRelay:
    """The bridges' controller: a Unix socket in OVS's run directory, relayed to the daemon's
    socket by a forked process that counts bytes per message type in shared memory."""

    def __init__(self, path: Path, target: Path) -> None:
        ctx = multiprocessing.get_context("fork")
        self.path = path
        self.counters = ctx.Array("Q", _COUNTERS, lock=False)
        path.unlink(missing_ok=True)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(128)
        self.proc = ctx.Process(
            target=_relay_loop, args=(self._listener, str(target), self.counters), daemon=True
        )
        self.proc.start()
        self._listener.close()  # the child has its own

    def snapshot(self) -> list[int]:
        return list(self.counters)

    def stop(self) -> None:
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.path.unlink(missing_ok=True)


def _delta(after: list[int], before: list[int]) -> dict[str, int]:
    d = [a - b for a, b in zip(after, before, strict=True)]
    fm = ofp.OFPT_FLOW_MOD
    return {
        "flow_mod_bytes": d[_DOWN + fm],
        "flow_mods": d[_DOWN_N + fm],
        "flow_mod_commands": {
            c: d[_FM_CMD + i] for i, c in enumerate(FM_COMMANDS) if d[_FM_CMD + i]
        },
        "barrier_bytes": d[_DOWN + ofp.OFPT_BARRIER_REQUEST],
        "all_bytes_down": sum(d[_DOWN : _DOWN + _TYPES]),
        "packet_out_bytes": d[_DOWN + ofp.OFPT_PACKET_OUT],  # LLDP, mostly
        "all_bytes_up": sum(d[_UP : _UP + _TYPES]),
    }


# --- the tenants ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Addr:
    """A tenant's host: the physical host (port) it sits on, its MAC and IPv4."""

    phys: str
    mac: str
    ip: str


@dataclass
class Tenant:
    index: int
    token: str
    net_id: int
    listener: ControllerListener
    vdpid: dict[str, int] = field(default_factory=dict)  # pswitch name -> vdpid
    vport: dict[tuple[str, int], int] = field(default_factory=dict)  # (pswitch, port) -> vport
    peers: dict[str, OFPeer] = field(default_factory=dict)  # pswitch name -> the vswitch
    hosts: dict[str, Addr] = field(default_factory=dict)  # physical host -> its address

    @property
    def ifname(self) -> str:
        return f"tv{self.index}"


def tenant_addr(t: int, host: Host) -> Addr:
    i = int(host.name[1:])
    return Addr(host.name, f"02:00:00:00:{t + 1:02x}:{i:02x}", f"10.{101 + t}.0.{i}")


def layer(switch: str) -> str:
    return {"e": "edge", "a": "aggregation", "c": "core"}[switch[0]]


def pod_hosts(topo: Topology, pod: int) -> list[Host]:
    """The k=4 fat tree's pod `pod` (0-3): edges e(2p+1), e(2p+2), two hosts each."""
    return [h for h in topo.hosts.values() if (int(h.switch[1:]) - 1) // 2 == pod]


# --- connections and their rules -------------------------------------------------------------
@dataclass(frozen=True)
class Conn:
    tenant: int
    index: int
    client: Host
    server: Host
    cport: int
    sport: int


def connection(topo: Topology, t: int, j: int) -> Conn:
    """Tenant t's connection j (module docstring)."""
    clients, servers = pod_hosts(topo, t % 4), pod_hosts(topo, (t + 2) % 4)
    p = (j // 2) % 16
    return Conn(t, j, clients[p % 4], servers[(p + p // 4) % 4], 40000 + j, 5000 + j)


def _links(topo: Topology) -> dict[tuple[str, str], int]:
    out = {}
    for lk in topo.links:
        out[(lk.a, lk.b)] = lk.pa
        out[(lk.b, lk.a)] = lk.pb
    return out


def route(topo: Topology, t: int, src: Host, dst: Host) -> list[tuple[str, int]]:
    """(pswitch, output port) at every switch from src to dst: up through aggregation
    t mod 2 of the pod and core (t // 2) mod 2 of that aggregation's group."""
    m, c = t % 2, (t // 2) % 2
    sp, dp = (int(src.switch[1:]) - 1) // 2, (int(dst.switch[1:]) - 1) // 2
    hops = [src.switch]
    if src.switch != dst.switch:
        hops.append(f"a{sp * 2 + m + 1}")
        if sp != dp:
            hops += [f"c{m * 2 + c + 1}", f"a{dp * 2 + m + 1}"]
        hops.append(dst.switch)
    ports = _links(topo)
    out = [(a, ports[(a, b)]) for a, b in itertools.pairwise(hops)]
    return [*out, (dst.switch, dst.port)]


def _flow_mod(src: Addr, dst: Addr, sport: int, dport: int, out: int, xid: int) -> bytes:
    match = ofpp.OFPMatch(
        eth_src=src.mac, eth_dst=dst.mac, eth_type=0x0800, ipv4_src=src.ip, ipv4_dst=dst.ip,
        ip_proto=6, tcp_src=sport, tcp_dst=dport,
    )  # fmt: skip
    msg = ofpp.OFPFlowMod(
        DP, cookie=0xBE00_0000 | xid, priority=PRIORITY, match=match,
        instructions=[ofpp.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                 [ofpp.OFPActionOutput(out)])],
    )  # fmt: skip
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


@dataclass
class Batch:
    """One connection's FLOW_MODs, by the pswitch of the vswitch they go to."""

    conn: Conn
    by_switch: dict[str, list[bytes]]

    @property
    def rules(self) -> int:
        return sum(len(v) for v in self.by_switch.values())

    @property
    def nbytes(self) -> int:
        return sum(len(m) for v in self.by_switch.values() for m in v)


class Xids:
    def __init__(self) -> None:
        self.n = 1000

    def __call__(self) -> int:
        self.n += 1
        return self.n


def batch(topo: Topology, tn: Tenant, conn: Conn, xid: Xids) -> Batch:
    c, s = tn.hosts[conn.client.name], tn.hosts[conn.server.name]
    by: dict[str, list[bytes]] = {}
    for src, dst, h_src, h_dst, sp, dp in (
        (c, s, conn.client, conn.server, conn.cport, conn.sport),
        (s, c, conn.server, conn.client, conn.sport, conn.cport),
    ):
        for sw, port in route(topo, tn.index, h_src, h_dst):
            out = tn.vport[(sw, port)]
            by.setdefault(sw, []).append(_flow_mod(src, dst, sp, dp, out, xid()))
    return Batch(conn, by)


def _barrier(xid: int) -> bytes:
    return codec.header(ofp.OFP_VERSION, ofp.OFPT_BARRIER_REQUEST, xid)


def _wait_barrier(peer: OFPeer, xid: int, errors: list[str], timeout: float = 600.0) -> bool:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        m = peer.recv(left)
        if m is None:
            return False
        if m[0] == ofp.OFPT_ERROR:
            etype, code = struct.unpack_from("!HH", m[2], 8)
            errors.append(f"vswitch {peer.dpid:016x}: ERROR type={etype} code={code} xid={m[1]}")
        elif m[0] == ofp.OFPT_BARRIER_REPLY and m[1] == xid:
            return True
    return False


def send_batch(tn: Tenant, b: Batch, xid: Xids, errors: list[str]) -> float:
    """Every FLOW_MOD of the batch and a BARRIER to each vswitch; seconds until the last
    BARRIER reply."""
    waits = []
    t0 = time.perf_counter()
    for sw, msgs in b.by_switch.items():
        x = xid()
        tn.peers[sw].send(b"".join(msgs) + _barrier(x))
        waits.append((tn.peers[sw], x))
    for peer, x in waits:
        if not _wait_barrier(peer, x, errors):
            raise RuntimeError(f"vswitch {peer.dpid:016x}: no BARRIER reply")
    return time.perf_counter() - t0


def _wait_all(
    waits: list[tuple[OFPeer, int]], everyone: list[OFPeer], errors: list[str], timeout: float
) -> bool:
    """BARRIER replies of `waits`, reading every peer of `everyone` meanwhile (what the
    daemon sends on their idle channels is answered or dropped: a long wait must not leave
    any vswitch silent for 15 s)."""
    want = dict(waits)
    live = list({id(p): p for p in [*everyone, *want]}.values())
    deadline = time.monotonic() + timeout
    while want and time.monotonic() < deadline:
        ready, _, _ = select_read([p for p in live if not p.eof], 0.5)
        for p in ready:
            while (m := p.recv(0)) is not None:
                if m[0] == ofp.OFPT_ERROR:
                    etype, code = struct.unpack_from("!HH", m[2], 8)
                    errors.append(f"vswitch {p.dpid:016x}: ERROR type={etype} code={code}")
                elif m[0] == ofp.OFPT_BARRIER_REPLY and want.get(p) == m[1]:
                    del want[p]
        if any(p.eof for p in want):
            return False
    return not want


def delete_all(tn: Tenant, xid: Xids, errors: list[str], everyone: list[OFPeer]) -> None:
    """FLOW_MOD DELETE of every table at every vswitch, then a BARRIER each."""
    waits = []
    for peer in tn.peers.values():
        msg = ofpp.OFPFlowMod(DP, table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                              out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
                              match=ofpp.OFPMatch())  # fmt: skip
        msg.set_xid(xid())
        msg.serialize()
        x = xid()
        peer.send(bytes(msg.buf) + _barrier(x))
        waits.append((peer, x))
    if not _wait_all(waits, everyone, errors, 900):
        raise RuntimeError(f"tenant {tn.index + 1}: no BARRIER reply to the delete")


class Keeper:
    """Answers the vswitches' ECHO_REQUESTs while the bench does something else (a channel
    silent for 15 s is closed); `hold()` stops it while the bench talks to them itself."""

    def __init__(self) -> None:
        self.peers: list[OFPeer] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def add(self, peers: list[OFPeer]) -> None:
        with self.lock:
            self.peers.extend(peers)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self.lock:
            yield

    def drain(self, timeout: float = 0.0) -> None:
        """Read every peer's waiting messages, answering ECHO_REQUESTs (the holder of
        `hold()` calls it now and then: idle vswitches are echoed during long batches)."""
        live = [p for p in self.peers if not p.eof]
        ready, _, _ = select_read(live, timeout)
        for p in ready:
            with contextlib.suppress(OSError):
                while p.recv(0) is not None:
                    pass

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.lock.acquire(timeout=0.2):
                try:
                    self.drain(0.05)
                finally:
                    self.lock.release()
            self._stop.wait(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3)


def select_read(peers: list[OFPeer], timeout: float) -> tuple[list[OFPeer], list[Any], list[Any]]:
    import select

    if not peers:
        return [], [], []
    try:
        r, _, _ = select.select([p.sock for p in peers], [], [], timeout)
    except (OSError, ValueError):
        return [], [], []
    return [p for p in peers if p.sock in r], [], []


# --- what the pswitches hold -------------------------------------------------------------------
def rules_now(fab: Fabric, nets: set[int]) -> dict[str, tuple[int, int]]:
    """Per pswitch, (exact, reduced) rules of the networks (`Fabric.tenant_rules`)."""
    return fab.tenant_rules(nets)


def settled_rules(
    fab: Fabric, d: Daemon, nets: set[int], timeout: float = 60.0
) -> dict[str, tuple[int, int]]:
    """`rules_now` once the daemon is idle (it answers its API, a single event loop, and
    sent no FLOW_MOD since the last read) and two reads 0.3 s apart agree: re-proofs at the
    other end of a vlink are not covered by the tenant's BARRIER, a level change by none."""
    deadline = time.monotonic() + timeout
    last, sent = rules_now(fab, nets), flow_mods_total(d)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now, now_sent = rules_now(fab, nets), flow_mods_total(d)
        if now == last and now_sent == sent:
            return now
        last, sent = now, now_sent
    return last


def by_layer(per_switch: dict[str, tuple[int, int]]) -> dict[str, dict[str, int]]:
    out = {ly: {"exact": 0, "reduced": 0, "total": 0} for ly in LAYERS}
    for sw, (e, r) in per_switch.items():
        d = out[layer(sw)]
        d["exact"] += e
        d["reduced"] += r
        d["total"] += e + r
    return out


def proc_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def flow_mods_total(d: Daemon) -> int:
    return sum(p["flow_mods_total"] for p in d.get("/v1/status").json()["pswitches"])


# --- traffic ---------------------------------------------------------------------------------
_SERVER = r"""
import json, selectors, socket, sys, time
sel = selectors.DefaultSelector()
for ip, port in json.loads(sys.argv[1]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port)); s.listen(16); s.setblocking(False); sel.register(s, 1, "l")
print("ready", flush=True)
end = time.time() + float(sys.argv[2])
while time.time() < end:
    for key, _ in sel.select(0.2):
        s = key.fileobj
        if key.data == "l":
            c, _ = s.accept(); sel.register(c, 1, "c")
            continue
        try:
            d = s.recv(4096)
        except OSError:
            d = b""
        if d:
            s.sendall(d)
        else:
            sel.unregister(s); s.close()
"""
_CLIENT = r"""
import json, socket, struct, sys, time
out = []
for sip, sport, dip, dport in json.loads(sys.argv[1]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(float(sys.argv[2])); t0 = time.time(); err = None
    try:
        s.bind((sip, sport)); s.connect((dip, dport)); s.sendall(b"tenantvisor")
        got = b""
        while len(got) < 11:
            d = s.recv(64)
            if not d:
                break
            got += d
        if got != b"tenantvisor":
            err = "no echo"
    except OSError as exc:
        err = str(exc) or type(exc).__name__
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); s.close()
    out.append([sip, sport, dip, dport, err, round((time.time() - t0) * 1e3, 1)])
print(json.dumps(out))
"""


def setup_hosts(fab: Fabric, tenants: list[Tenant]) -> None:
    """A macvlan per tenant in every host's namespace, with the tenant's MAC and IPv4 and
    static neighbours (the tenants' rules match IPv4 only: no ARP crosses the fabric)."""
    for name in fab.topo.hosts:
        lines = []
        for tn in tenants:
            a = tn.hosts[name]
            lines += [
                f"link add {tn.ifname} link eth0 address {a.mac} type macvlan mode private",
                f"addr add {a.ip}/24 dev {tn.ifname}",
                f"link set {tn.ifname} up",
            ]
            lines += [f"neigh replace {b.ip} lladdr {b.mac} dev {tn.ifname} nud permanent"
                      for b in tn.hosts.values() if b is not a]  # fmt: skip
        script = "ip -batch - <<'EOF'\n" + "\n".join(lines) + "\nEOF\n"
        fab.host(name).exec(script, timeout=30)


def tcp_check(
    fab: Fabric, tenants: list[Tenant], conns: list[Conn], timeout: float = 3.0
) -> dict[str, Any]:
    """Each connection once: connect from its client port, echo a few bytes, reset."""
    servers: dict[str, list[tuple[str, int]]] = {}
    clients: dict[str, list[tuple[str, int, str, int]]] = {}
    for c in conns:
        tn = tenants[c.tenant]
        sa, ca = tn.hosts[c.server.name], tn.hosts[c.client.name]
        servers.setdefault(c.server.name, []).append((sa.ip, c.sport))
        clients.setdefault(c.client.name, []).append((ca.ip, c.cport, sa.ip, c.sport))
    budget = timeout * (max(len(v) for v in clients.values()) + 2) + 5
    procs: list[subprocess.Popen[str]] = []
    results: list[list[Any]] = []
    try:
        for name, addrs in servers.items():
            p = fab.host(name).popen([sys.executable, "-c", _SERVER, json.dumps(addrs),
                                      str(budget)], stdout=subprocess.PIPE, text=True)  # fmt: skip
            procs.append(p)
            assert p.stdout is not None
            if p.stdout.readline().strip() != "ready":
                raise RuntimeError(f"TCP server on {name} did not start")
        runs = [fab.host(name).popen([sys.executable, "-c", _CLIENT, json.dumps(pairs),
                                      str(timeout)], stdout=subprocess.PIPE, text=True)
                for name, pairs in clients.items()]  # fmt: skip
        procs += runs
        for p in runs:
            out, _ = p.communicate(timeout=budget + 10)
            results += json.loads(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
    failed = [r for r in results if r[4] is not None]
    ms = [r[5] for r in results if r[4] is None]
    return {
        "tried": len(results),
        "ok": len(results) - len(failed),
        "failed": [f"{r[0]}:{r[1]} -> {r[2]}:{r[3]}: {r[4]}" for r in failed][:10],
        "ms_p50": round(statistics.median(ms), 1) if ms else None,
    }


def sample(conns: Sequence[Conn], k: int) -> list[Conn]:
    if len(conns) <= k:
        return list(conns)
    step = (len(conns) - 1) / (k - 1)
    return [conns[round(i * step)] for i in range(k)]


# --- the run -------------------------------------------------------------------------------
@dataclass
class Config:
    connections: tuple[int, ...] = FULL_CONNECTIONS
    tenants: int = TENANTS
    levels: tuple[str, ...] = LEVELS
    lldp_interval: float = 0.5

    @property
    def checkpoints(self) -> list[int]:
        return sorted({PAPER_CONNECTIONS, *self.connections})


class Bench:
    def __init__(self, cfg: Config, progress: bool) -> None:
        self.cfg = cfg
        self.topo = fat_tree(4)
        self.rundir = Path(tempfile.mkdtemp(prefix="tv-bench-reduction-"))
        self.fab = Fabric(self.topo)
        self.daemon: Daemon | None = None
        self.relay: CountingRelay | None = None
        self.keeper: Keeper | None = None
        self.tenants: list[Tenant] = []
        self.xid = Xids()
        self.errors: list[str] = []
        self.failed = False
        steps = 3 + len(cfg.levels) * (len(cfg.checkpoints) + 1) + 1
        self.bar = Progress(steps, progress)

    @property
    def d(self) -> Daemon:
        assert self.daemon is not None
        return self.daemon

    @property
    def nets(self) -> set[int]:
        return {tn.net_id for tn in self.tenants}

    # --- set-up --------------------------------------------------------------------------
    def setup(self) -> None:
        fab, topo = self.fab, self.topo
        fab.build()
        assert fab.ovs is not None
        sock = fab.ovs.rundir / "tenantvisor.sock"
        # forked before any thread of ours exists
        self.relay = CountingRelay(fab.ovs.rundir / "tv-bench-relay.sock", sock)
        self.daemon = Daemon(
            self.rundir / "d", f"unix:{sock}", lldp_interval=self.cfg.lldp_interval
        )
        self.daemon.start()
        fab.set_controller(f"unix:{self.relay.path}")
        fab.wait_connected(timeout=30)
        wait_physical(self.daemon, topo, timeout=60)
        self.bar.step("fat tree, relay and daemon up")
        self.keeper = keeper = Keeper()
        for t in range(self.cfg.tenants):
            tn = self._tenant(t)
            self.tenants.append(tn)
            # at once: a vswitch left unanswered for 15 s is closed
            got = {p.dpid: p for p in tn.listener.accept(len(topo.switches), timeout=60)}
            tn.peers = {sw: got[v] for sw, v in tn.vdpid.items()}
            keeper.add(list(tn.peers.values()))
        self.bar.step(f"{len(self.tenants)} tenants' fat trees made over REST and started")
        setup_hosts(fab, self.tenants)
        self.bar.step("controllers connected, tenants' hosts on the shared ports")

    def _tenant(self, t: int) -> Tenant:
        d, topo = self.d, self.topo
        tok = d.rest("POST", "/v1/tenants", {"name": f"libera{t + 1}"})["token"]
        lst = ControllerListener()
        lst.sock.listen(64)
        create: dict[str, Any] = {
            "controller_urls": [f"tcp:127.0.0.1:{lst.port}"],
            "scalability": self.cfg.levels[0],  # the level at creation; later ones by PUT
        }
        nid = int(d.rest("POST", "/v1/networks", create, tok)["id"])
        tn = Tenant(t, tok, nid, lst)
        net = f"/v1/networks/{nid}"
        for name, sw in topo.switches.items():
            tn.vdpid[name] = int(d.rest("POST", f"{net}/switches", {"dpids": [sw.dpid]},
                                        tok)["vdpid"])  # fmt: skip

        def vport(sw: str, port: int) -> int:
            body = {"dpid": topo.switch(sw).dpid, "port": port}
            tn.vport[(sw, port)] = n = int(d.rest("POST", f"{net}/ports", body, tok)["number"])
            return n

        for lk in topo.links:
            link = {"src_vdpid": tn.vdpid[lk.a], "src_vport": vport(lk.a, lk.pa),
                    "dst_vdpid": tn.vdpid[lk.b], "dst_vport": vport(lk.b, lk.pb)}  # fmt: skip
            d.rest("POST", f"{net}/links", link, tok)
        for h in topo.hosts.values():
            a = tn.hosts[h.name] = tenant_addr(t, h)
            host = {"vdpid": tn.vdpid[h.switch], "vport": vport(h.switch, h.port), "mac": a.mac}
            d.rest("POST", f"{net}/hosts", host, tok)
        d.rest("POST", f"{net}/start", None, tok)
        return tn

    def _vswitch_rules(self, status: dict[str, Any]) -> int:
        return sum(v["flows"] for v in status["vswitches"] if v["network"] in self.nets)

    def _sample(self, conns: list[Conn]) -> list[Conn]:
        """TRAFFIC_SAMPLE connections of each tenant, spread over its connections."""
        out = []
        for t in range(len(self.tenants)):
            out += sample([c for c in conns if c.tenant == t], TRAFFIC_SAMPLE)
        return out

    def set_level(self, level: str) -> list[str]:
        """Every network to `level`; what the API answered for each."""
        out = []
        for tn in self.tenants:
            r = httpx.put(f"{self.d.url}/v1/networks/{tn.net_id}/scalability",
                          json={"level": level}, timeout=120,
                          headers={"Authorization": f"Bearer {tn.token}"})  # fmt: skip
            out.append(
                r.json().get("scalability", "?") if r.status_code < 400
                else f"HTTP {r.status_code}: {r.text[:200]}"
            )  # fmt: skip
        return out

    # --- one level -----------------------------------------------------------------------
    def run_level(self, level: str) -> dict[str, Any]:
        assert self.relay is not None and self.keeper is not None
        d, relay = self.d, self.relay
        pid = d.proc.pid if d.proc is not None else 0
        answers = self.set_level(level)
        if any(a != level for a in answers):
            raise RuntimeError(f"PUT scalability {level}: {answers}")
        out: dict[str, Any] = {"level": level, "checkpoints": [], "wall": [clock()]}
        time.sleep(0.5)
        bytes0, fm0, cpu0 = relay.snapshot(), flow_mods_total(d), proc_cpu_s(pid)
        out["rss_mb_start"] = proc_rss_mb(pid)
        tenant_bytes = tenant_rules = 0
        done = 0
        conns: list[Conn] = []
        for n in self.cfg.checkpoints:
            window: list[float] = []  # seconds per rule, per batch
            w_rules = 0
            w_secs = 0.0
            cpu_w = proc_cpu_s(pid)
            batches = [batch(self.topo, tn, connection(self.topo, tn.index, j), self.xid)
                       for j in range(done, n) for tn in self.tenants]  # fmt: skip
            with self.keeper.hold():
                drained = time.monotonic()
                for b in batches:
                    if time.monotonic() - drained > 2:  # between batches, never in one
                        self.keeper.drain()
                        drained = time.monotonic()
                    dt = send_batch(self.tenants[b.conn.tenant], b, self.xid, self.errors)
                    window.append(dt / b.rules)
                    w_rules += b.rules
                    w_secs += dt
                    tenant_bytes += b.nbytes
                    tenant_rules += b.rules
                    conns.append(b.conn)
            cpu_used = proc_cpu_s(pid) - cpu_w
            done = n
            per_switch = settled_rules(self.fab, self.d, self.nets)
            snap = relay.snapshot()
            wire = _delta(snap, bytes0)
            st = d.get("/v1/status").json()
            cp: dict[str, Any] = {
                "connections": n,
                "tenant_rules": tenant_rules,
                "vswitch_rules": self._vswitch_rules(st),
                "rules": by_layer(per_switch),
                "rules_total": sum(e + r for e, r in per_switch.values()),
                "fr_ms_mean": round(w_secs / w_rules * 1e3, 4),
                "fr_ms_p50": round(statistics.median(window) * 1e3, 4),
                "fr_ms_p95": round(_pct(window, 95) * 1e3, 4),
                "daemon_cpu_ms_per_fr": round(cpu_used / w_rules * 1e3, 4),
                "rss_mb": proc_rss_mb(pid),
                "tenant_flow_mod_bytes": tenant_bytes,
                "pswitch": wire,
                "flow_mods_total": sum(p["flow_mods_total"] for p in st["pswitches"]) - fm0,
            }
            # Libera's reading (V.C.2): the control traffic the hypervisor adds to the
            # tenants' own, as a share of it (100%: every message twice)
            cp["bytes_overhead_pct"] = round(wire["flow_mod_bytes"] / tenant_bytes * 100, 1)
            cp["flow_mods_per_tenant_rule"] = round(wire["flow_mods"] / tenant_rules, 3)
            cp["flow_mods_per_pswitch_rule"] = round(
                wire["flow_mods"] / max(1, cp["rules_total"]), 3
            )
            if n == PAPER_CONNECTIONS or n == self.cfg.checkpoints[-1]:
                mine = [c for c in conns if c.index < n]
                pick = self._sample(mine)
                cp["traffic"] = tcp_check(self.fab, self.tenants, pick)
            out["checkpoints"].append(cp)
            self.bar.step(
                f"{level}: {n} connections/tenant, {cp['rules_total']} pswitch rules, "
                f"{cp['fr_ms_mean']:.2f} ms/FR"
            )
        out["daemon_cpu_s"] = round(proc_cpu_s(pid) - cpu0, 2)
        out["wall"].append(clock())
        return out

    def clear(self) -> dict[str, Any]:
        """Every tenant rule deleted: what stays on the pswitches (goal: nothing)."""
        assert self.keeper is not None
        pid = self.d.proc.pid if self.d.proc is not None else 0
        secs, cpu = [], []
        wall = [clock()]
        with self.keeper.hold():
            for tn in self.tenants:
                t0, c0 = time.perf_counter(), proc_cpu_s(pid)
                delete_all(tn, self.xid, self.errors, self.keeper.peers)
                secs.append(round(time.perf_counter() - t0, 3))
                cpu.append(round(proc_cpu_s(pid) - c0, 2))
        deadline = time.monotonic() + 20
        left = rules_now(self.fab, self.nets)
        while sum(e + r for e, r in left.values()) and time.monotonic() < deadline:
            time.sleep(0.3)
            left = rules_now(self.fab, self.nets)
        st = self.d.get("/v1/status").json()
        return {
            "wall": [*wall, clock()],
            "delete_s_per_tenant": secs,  # FLOW_MOD DELETE at its 20 vswitches -> BARRIERs
            "delete_daemon_cpu_s_per_tenant": cpu,
            "pswitch_rules_left": {sw: v for sw, v in left.items() if sum(v)},
            "vswitch_rules_left": self._vswitch_rules(st),
        }

    def level_changes(self, incremental: dict[str, Any], level: str) -> dict[str, Any]:
        """With `level`'s rules in place: the level changed under them (two others, back to
        `level`), rules counted after each; traffic checked at the end."""
        out: dict[str, Any] = {"from": level, "steps": [], "wall": [clock()]}
        conns = [connection(self.topo, tn.index, j) for tn in self.tenants
                 for j in range(self.cfg.checkpoints[-1])]  # fmt: skip
        for lv in [*[x for x in ("exact", "hop", "lite") if x != level][:2], level]:
            t0 = time.monotonic()
            answers = self.set_level(lv)
            put_s = time.monotonic() - t0
            per_switch = settled_rules(self.fab, self.d, self.nets, timeout=120)
            out["steps"].append({
                "level": lv, "api": sorted(set(answers)), "put_s": round(put_s, 2),
                "settled_s": round(time.monotonic() - t0, 2),
                "rules": by_layer(per_switch),
                "rules_total": sum(e + r for e, r in per_switch.values()),
            })  # fmt: skip
        out["back_equals_incremental"] = out["steps"][-1]["rules"] == incremental["rules"]
        out["wall"].append(clock())
        out["traffic"] = tcp_check(self.fab, self.tenants, self._sample(conns))
        return out

    def close(self) -> None:
        if self.keeper is not None:
            self.keeper.stop()
        for tn in self.tenants:
            tn.listener.close()
        if self.daemon is not None:
            self.daemon.stop()
        if self.relay is not None:
            self.relay.stop()
        self.fab.close()
        if self.failed and self.daemon is not None:
            print(f"tenantvisor bench: the daemon's log is kept: {self.daemon.log_path}",
                  file=sys.stderr)  # fmt: skip
        else:
            shutil.rmtree(self.rundir, ignore_errors=True)


def clock() -> str:
    """Wall-clock time as the daemon's log writes it (to place its lines in the run)."""
    return time.strftime("%H:%M:%S")


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))] if s else 0.0


_LOG_BAD = re.compile(r" (ERROR|CRITICAL|WARNING) |Traceback")


_LOG_LOST = re.compile(r"disconnected|connection lost|echo timeout|closed", re.IGNORECASE)
_LOG_LINK_DOWN = re.compile(r"links: link \S+ -> \S+ timed out")
_LOG_VLINK_DOWN = re.compile(r"vlink \d+ is down")


def log_problems(text: str) -> dict[str, Any]:
    """Errors and warnings in the daemon's log, and lost connections (a long stall of the
    event loop shows as pswitches or controllers dropped)."""
    lines = text.splitlines()
    bad = [ln for ln in lines if _LOG_BAD.search(ln)]
    errors = [ln for ln in bad if " WARNING " not in ln]
    lost = [ln for ln in lines if _LOG_LOST.search(ln)]
    down = [ln for ln in lines if _LOG_LINK_DOWN.search(ln)]
    return {"errors": len(errors), "warnings": len(bad) - len(errors),
            "examples": (errors or bad)[:8], "connections_lost": len(lost),
            "lost_examples": lost[:5], "physical_links_timed_out": len(down),
            "links_timed_out_at": sorted({ln[:19] for ln in down})[:10],
            "vlink_down_lines": sum(1 for ln in lines if _LOG_VLINK_DOWN.search(ln)),
            "warning_examples": [ln for ln in bad if " WARNING " in ln][:3]}  # fmt: skip


def run(cfg: Config, progress: bool = True) -> dict[str, Any]:
    t0 = time.monotonic()
    b = Bench(cfg, progress)
    result: dict[str, Any] = {
        "benchmark": "reduction",
        "topology": "k=4 fat tree (20 pswitches, 32 links, 16 host ports), OpenFlow 1.3, "
        "userspace OVS",
        "tenants": cfg.tenants,
        "virtual_topology": "the physical fat tree 1:1 per tenant (20 vswitches, 32 vlinks, "
        "16 hosts on the shared host ports)",
        "rule_fields": "eth_src, eth_dst, eth_type, ipv4_src, ipv4_dst, ip_proto, tcp_src, "
        "tcp_dst; no in_port",
        "rules_per_connection": 10,
        "paper_connections": PAPER_CONNECTIONS,
        "checkpoints": cfg.checkpoints,
        "levels": list(cfg.levels),
        "paper": PAPER,
    }
    try:
        b.setup()
        levels = []
        for i, lv in enumerate(cfg.levels):
            got = b.run_level(lv)
            if i == len(cfg.levels) - 1:
                got["level_changes"] = b.level_changes(got["checkpoints"][-1], lv)
                b.bar.step(f"{lv}: level changed under {got['checkpoints'][-1]['rules_total']} "
                           "rules and back")  # fmt: skip
            got["cleared"] = b.clear()
            b.bar.step(f"{lv}: every tenant rule deleted")
            levels.append(got)
        result["by_level"] = levels
        result["tenant_errors"] = b.errors[:10]
        result["tenant_error_count"] = len(b.errors)
        result["daemon_log"] = log_problems(b.d.log_text())
    except BaseException:
        b.failed = True
        raise
    finally:
        b.close()
    summarise(result)
    result["reference"] = REFERENCE
    result["seconds"] = round(time.monotonic() - t0, 1)
    return result


def _cp(level: dict[str, Any], n: int) -> dict[str, Any] | None:
    return next((c for c in level["checkpoints"] if c["connections"] == n), None)


def summarise(r: dict[str, Any]) -> None:
    """Fig. 4 ratios, Fig. 5 differences to exact, the control-byte overheads and the goals."""
    levels = {lv["level"]: lv for lv in r.get("by_level", [])}
    if "exact" not in levels:
        return
    exact = levels["exact"]
    fig4: dict[str, Any] = {}
    for n in r["checkpoints"]:
        base = _cp(exact, n)
        if base is None:
            continue
        row: dict[str, Any] = {}
        for name, lv in levels.items():
            cp = _cp(lv, n)
            if cp is None:
                continue
            row[name] = {
                ly: round(cp["rules"][ly]["total"] / base["rules"][ly]["total"], 4)
                if base["rules"][ly]["total"] else None
                for ly in LAYERS
            }  # fmt: skip
        fig4[str(n)] = row
    r["fig4_normalised"] = fig4
    paper = fig4.get(str(PAPER_CONNECTIONS), {})
    r["core_reduction_x"] = {
        name: round(1 / v["core"], 2) if v.get("core") else None for name, v in paper.items()
    }
    last = r["checkpoints"][-1]
    base = _cp(exact, last)
    added = {}
    for name, lv in levels.items():
        cp = _cp(lv, last)
        if name == "exact" or cp is None or base is None:
            continue
        added[name] = {
            "fr_ms_added": round(cp["fr_ms_mean"] - base["fr_ms_mean"], 4),
            "fr_ratio": round(cp["fr_ms_mean"] / base["fr_ms_mean"], 3),
            "cpu_ms_added": round(cp["daemon_cpu_ms_per_fr"] - base["daemon_cpu_ms_per_fr"], 4),
        }
    r["fr_time_vs_exact"] = {"connections": last, **added}
    r["bytes_overhead_pct"] = {
        name: {str(c["connections"]): c["bytes_overhead_pct"] for c in lv["checkpoints"]}
        for name, lv in levels.items()
    }
    # what the ingress edges' full-match rules alone cost (the issue keeps them exact): the
    # edge layer's exact rules at the size of an exact physical rule, as a share of the
    # tenants' bytes; no reduction goes below it
    floor = {}
    for name, lv in levels.items():
        per = {}
        for c in lv["checkpoints"]:
            base_cp = _cp(exact, c["connections"]) if exact else None
            if not base_cp or not base_cp["pswitch"]["flow_mods"] or not c["tenant_flow_mod_bytes"]:
                continue
            size = base_cp["pswitch"]["flow_mod_bytes"] / base_cp["pswitch"]["flow_mods"]
            edge = c["rules"]["edge"]["exact"] * size
            per[str(c["connections"])] = round(edge / c["tenant_flow_mod_bytes"] * 100, 1)
        floor[name] = per
    r["bytes_ingress_edge_floor_pct"] = floor
    traffic = [cp["traffic"] for lv in levels.values() for cp in lv["checkpoints"]
               if "traffic" in cp]  # fmt: skip
    traffic += [lv["level_changes"]["traffic"] for lv in levels.values() if "level_changes" in lv]
    changes = [lv["level_changes"] for lv in levels.values() if "level_changes" in lv]
    hop6 = _cp(levels["hop"], PAPER_CONNECTIONS) if "hop" in levels else None
    r["goals"] = {
        "core_hop_8x": (r["core_reduction_x"].get("hop") or 0) >= GOAL["core_hop_x"],
        "fr_time_added": bool(added)
        and all(v["fr_ms_added"] < GOAL["fr_added_ms"] for v in added.values()),
        "bytes_overhead_hop": hop6 is not None
        and hop6["bytes_overhead_pct"] <= GOAL["bytes_overhead_hop_pct"],
        "traffic_flows": bool(traffic) and all(t["ok"] == t["tried"] for t in traffic),
        "nothing_left": all(
            not lv["cleared"]["pswitch_rules_left"] and not lv["cleared"]["vswitch_rules_left"]
            for lv in levels.values()
        ),
        "level_change_consistent": all(c["back_equals_incremental"] for c in changes),
        "no_tenant_errors": r.get("tenant_error_count", 1) == 0,
        "clean_daemon_log": r.get("daemon_log", {}).get("errors", 1) == 0,
        "fabric_stable": r.get("daemon_log", {}).get("physical_links_timed_out", 1) == 0,
    }


# --- output --------------------------------------------------------------------------------
GOALS = [
    ("core_hop_8x", f"hop at the core >= {GOAL['core_hop_x']:g}x fewer"),
    ("fr_time_added", f"FR time added < {GOAL['fr_added_ms']:g} ms"),
    ("bytes_overhead_hop", f"hop control bytes <= +{GOAL['bytes_overhead_hop_pct']:g}%"),
    ("traffic_flows", "TCP flows at every level"),
    ("nothing_left", "deletes leave no pswitch rule"),
    ("level_change_consistent", "level change = incremental"),
    ("no_tenant_errors", "no OpenFlow error to tenants"),
    ("clean_daemon_log", "no error in the daemon log"),
    ("fabric_stable", "no fabric link timed out (LLDP)"),
]


def _f(x: Any, spec: str = ".2f") -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    return format(x, spec)


def table(r: dict[str, Any]) -> str:
    levels = r["by_level"]
    names = [lv["level"] for lv in levels]
    col = 11
    head = f"{'':44}" + "".join(f"{n:>{col}}" for n in names) + f"{'Libera':>{col + 4}}"
    lines = [
        f"tenantvisor bench reduction: {r['topology']}; {r['tenants']} tenants, each a "
        f"virtual fat tree 1:1; rules: {r['rule_fields']}",
        "",
        f"Fig. 4: pswitch rules at {r['paper_connections']} connections per tenant "
        "(normalised to exact)",
        head,
    ]
    n6 = str(r["paper_connections"])
    for ly in LAYERS:
        cells = []
        for lv in levels:
            cp = _cp(lv, r["paper_connections"])
            v = r["fig4_normalised"][n6].get(lv["level"], {}).get(ly)
            cells.append(f"{cp['rules'][ly]['total'] if cp else '-'} ({_f(v)})")
        paper = "1/8 (hop)" if ly == "core" else ""
        lines.append(f"  {ly:42}" + "".join(f"{c:>{col}}" for c in cells) + f"{paper:>{col + 4}}")
    lines.append(f"  {'core: x fewer than exact':42}"
                 + "".join(f"{_f(r['core_reduction_x'].get(n)):>{col}}" for n in names)
                 + f"{'8 (hop)':>{col + 4}}")  # fmt: skip
    last = r["checkpoints"][-1]
    lines += ["", "Fig. 5: FR processing time (ms per rule, FLOW_MOD -> BARRIER reply, mean) / "
              "daemon RSS (MB)"]  # fmt: skip
    lines.append(f"{'  connections per tenant':44}" + "".join(f"{n:>{col}}" for n in names))
    for n in r["checkpoints"]:
        cells = []
        for lv in levels:
            cp = _cp(lv, n)
            cells.append(f"{_f(cp['fr_ms_mean'])}/{_f(cp['rss_mb'], '.0f')}" if cp else "-")
        lines.append(f"  {n:<42}" + "".join(f"{c:>{col}}" for c in cells))
    added = r["fr_time_vs_exact"]
    lines.append(
        f"  {'added over exact at ' + str(last) + ' (ms/FR)':42}{'':>{col}}"
        + "".join(f"{_f(added.get(n, {}).get('fr_ms_added'), '+.3f'):>{col}}" for n in names[1:])
        + f"{'+2.18 max':>{col + 4}}"
    )
    lines.append(
        f"  {'daemon CPU ms per FR at ' + str(last):42}"
        + "".join(
            f"{_f((_cp(lv, last) or {}).get('daemon_cpu_ms_per_fr'), '.3f'):>{col}}"
            for lv in levels
        )
    )
    lines.append(f"  {'RSS mean (MB)':42}" + "".join(
        f"{_f(statistics.mean(c['rss_mb'] or 0 for c in lv['checkpoints']), '.0f'):>{col}}"
        for lv in levels) + f"{'436.7':>{col + 4}}")  # fmt: skip
    lines += ["", "control bytes added: hypervisor -> pswitches FLOW_MOD bytes as a share of "
              "the tenants' FLOW_MOD bytes"]  # fmt: skip
    for n in r["checkpoints"]:
        cells = [f"+{r['bytes_overhead_pct'][lv['level']].get(str(n), 0):.0f}%" for lv in levels]
        paper = "+11% hop, +25% end" if n == r["paper_connections"] else ""
        lines.append(f"  {n:<42}" + "".join(f"{c:>{col}}" for c in cells) + f"  {paper}")
    lines.append("  of which the edges' exact rules (reduced: the ingress edges', a floor)")
    for n in r["checkpoints"]:
        cells = [f"+{r['bytes_ingress_edge_floor_pct'].get(lv['level'], {}).get(str(n), 0):.0f}%"
                 for lv in levels]  # fmt: skip
        lines.append(f"  {n:<42}" + "".join(f"{c:>{col}}" for c in cells))
    lines.append("FLOW_MODs to pswitches per tenant rule (relay count = daemon flow_mods_total)")
    for n in r["checkpoints"]:
        cells = [_f((_cp(lv, n) or {}).get("flow_mods_per_tenant_rule")) for lv in levels]
        lines.append(f"  {n:<42}" + "".join(f"{c:>{col}}" for c in cells))
    lines.append("pswitch rules at the core, x fewer than exact")
    for n in r["checkpoints"]:
        base = _cp(levels[0], n)
        cells = []
        for lv in levels:
            cp = _cp(lv, n)
            ok = cp and base and cp["rules"]["core"]["total"]
            cells.append(_f(base["rules"]["core"]["total"] / cp["rules"]["core"]["total"])
                         if ok and base and cp else "-")  # fmt: skip
        lines.append(f"  {n:<42}" + "".join(f"{c:>{col}}" for c in cells))
    lines += ["", "traffic (TCP connect + echo, sampled connections):"]
    for lv in levels:
        for cp in lv["checkpoints"]:
            if "traffic" in cp:
                t = cp["traffic"]
                lines.append(f"  {lv['level']:6} at {cp['connections']:>3}: {t['ok']}/{t['tried']}"
                             + (f"  {t['failed'][:2]}" if t["failed"] else ""))  # fmt: skip
    for lv in levels:
        if "level_changes" in lv:
            lc = lv["level_changes"]
            steps = ", ".join(f"{s['level']} {s['rules_total']} ({s['settled_s']:.1f} s)"
                              for s in lc["steps"])  # fmt: skip
            lines.append(f"level changed under the rules ({lc['from']}): {steps}; "
                         f"back = incremental: {_f(lc['back_equals_incremental'])}; "
                         f"TCP {lc['traffic']['ok']}/{lc['traffic']['tried']}")  # fmt: skip
    label = "deleting a tenant's rules (s, slowest)"
    lines.append(
        f"{label:44}"
        + "".join(f"{max(lv['cleared']['delete_s_per_tenant']):>{col}.2f}" for lv in levels)
    )
    for lv in levels:
        left = lv["cleared"]["pswitch_rules_left"]
        if left:
            lines.append(f"  {lv['level']}: rules left after deleting everything: {left}")
    log = r["daemon_log"]
    at = ", ".join(t[11:] for t in log["links_timed_out_at"])
    lines.append(
        f"daemon log: {log['errors']} errors, {log['warnings']} warnings, "
        f"{log['physical_links_timed_out']} physical link directions timed out"
        f"{f' (at {at})' if at else ''}, {log['vlink_down_lines']} 'vlink is down' lines, "
        f"{log['connections_lost']} connections lost"
    )
    lines += [f"  {ln[:160]}" for ln in log["examples"][:4]]
    lines += closing_lines(r, GOALS, width=34)
    return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
    """Fig. 4 (bars per layer per level, normalised to exact), Fig. 5 (line: ms per FR;
    bars: RSS) and the control bytes per level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = r["by_level"]
    names = [lv["level"] for lv in levels]
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    ax = axes[0]
    n6 = str(r["paper_connections"])
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        ys = [r["fig4_normalised"][n6].get(name, {}).get(ly) or 0 for ly in LAYERS]
        bars = ax.bar([i + (k - (len(names) - 1) / 2) * width for i in range(len(LAYERS))], ys,
                      width, label=name)  # fmt: skip
        ax.bar_label(bars, fmt="%.2f", fontsize=6)
    ax.axhline(1 / 8, color="#c44", lw=1, ls="--", label="Libera: 1/8 at the core (hop)")
    ax.set_xticks(range(len(LAYERS)), LAYERS)
    ax.set(title=f"Fig. 4: pswitch rules, {r['tenants']} tenants x {n6} connections",
           ylabel="rules / rules at exact", ylim=(0, 1.3))  # fmt: skip
    ax.legend(fontsize=7, loc="upper center", ncol=3)
    ax = axes[1]
    xs = r["checkpoints"]
    pos = range(len(xs))
    for k, lv in enumerate(levels):
        rss = [(_cp(lv, n) or {}).get("rss_mb") or 0 for n in xs]
        ax.bar([i + (k - (len(names) - 1) / 2) * width for i in pos], rss, width, alpha=0.35,
               label=f"RSS {lv['level']}")  # fmt: skip
    ax.axhline(PAPER["rss_mb_mean"], color="#c44", lw=1, ls="--", label="Libera RSS 436.7 MB")
    ax.set_xticks(list(pos), [str(n) for n in xs])
    ax.set(title="Fig. 5: FR processing time and daemon memory", xlabel="connections per tenant",
           ylabel="RSS (MB)")  # fmt: skip
    ax2 = ax.twinx()
    for lv in levels:
        ax2.plot(list(pos), [(_cp(lv, n) or {}).get("fr_ms_mean") for n in xs], "o-",
                 label=f"ms/FR {lv['level']}")  # fmt: skip
    ax2.set_ylabel("ms per FR (FLOW_MOD -> BARRIER reply)")
    ax2.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=6, loc="upper left", ncol=2)
    ax = axes[2]
    for k, lv in enumerate(levels):
        ys = [r["bytes_overhead_pct"][lv["level"]].get(str(n), 0) for n in xs]
        ax.bar([i + (k - (len(names) - 1) / 2) * width for i in pos], ys, width, label=lv["level"])
    ax.axhline(11, color="#c44", lw=1, ls="--", label="Libera hop +11%")
    ax.axhline(25, color="#e94", lw=1, ls=":", label="Libera end (host) +25%")
    ax.set_xticks(list(pos), [str(n) for n in xs])
    ax.set_yscale("log")  # exact's +135% beside hop's thousands
    ax.set(title="control bytes added (hypervisor->pswitches / tenants)",
           xlabel="connections per tenant", ylabel="% of the tenants' FLOW_MOD bytes")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def verify_equivalence(n_packets: int, as_json: bool) -> int:
    """`--verify N`: the randomised equivalence test (testbed/equivalence.py); exit 1 when a
    packet's fate differs from exact at some level."""
    if importlib.util.find_spec("tenantvisor.testbed.equivalence") is None:
        print(
            "tenantvisor bench reduction --verify: not available yet "
            "(tenantvisor.testbed.equivalence is not built)",
            file=sys.stderr,
        )
        return 2
    mod = importlib.import_module("tenantvisor.testbed.equivalence")
    seed = int(time.time())
    got = mod.verify(n_packets, seed)
    out = {"benchmark": "reduction", "verify": n_packets, "seed": seed, "result": got}
    print(json.dumps(out, default=str) if as_json else f"equivalence (seed {seed}): {got}")
    differences = got.get("differences", 0) if isinstance(got, dict) else 0
    if differences:
        print(f"tenantvisor bench reduction --verify: {differences} packets changed fate "
              f"(seed {seed})", file=sys.stderr)  # fmt: skip
        return 1
    return 0


def parse_connections(text: str) -> tuple[int, ...]:
    got = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    if not got or not all(1 <= n <= 1000 for n in got):
        raise ValueError("--connections: a list of 1-1000, e.g. 2,10,50,100,150,200")
    return got


def run_reduction(
    quick: bool = False,
    connections: str | None = None,
    as_json: bool = False,
    plot_path: str | None = None,
    verify: int | None = None,
) -> int:
    if verify is not None:
        if verify < 1:
            print("tenantvisor bench: --verify N needs N >= 1 packets", file=sys.stderr)
            return 2
        return verify_equivalence(verify, as_json)
    try:
        chosen = (
            parse_connections(connections)
            if connections
            else (QUICK_CONNECTIONS if quick else FULL_CONNECTIONS)
        )
    except ValueError as exc:
        print(f"tenantvisor bench: {exc}", file=sys.stderr)
        return 2
    result = run(Config(connections=chosen))
    return emit(
        result, plot=plot, table=table, plot_path=plot_path, as_json=as_json,
        default_plot="bench-reduction.png",
    )  # fmt: skip


__all__ = ["Config", "connection", "route", "run", "run_reduction"]
