"""`tenantvisor bench migration`: transparent VM migration (issue 10) on a k=4 fat tree of
userspace Open vSwitch bridges, against Libera's 10.5 ms reconfiguration (section V.B).

Set-up (one fabric, one `tenantvisor serve`): one tenant whose network is the physical fat
tree 1:1 (a vswitch per pswitch, a vlink per physical link, an edge vport on every host
port with its host), made over REST, with the bench as its controller
(`ControllerListener`).  The controller installs host-pair rules (eth_type, Ethernet and
IPv4 source and destination; no in_port) at every vswitch on the shortest path, both ways,
for the pinger <-> mover and the TCP sender <-> mover pairs; the hosts have static
neighbours (no ARP crosses the fabric).  The mover's moves are invisible to the tenant: its
vport stays where it was and the rules are never touched again.

The mover (h16, at home on e8 port 2) moves from edge pswitch to edge pswitch: e1..e7 (on a
spare port, 10) and home again, round and round, `--moves` times per scalability level
(`exact`, `lite`, `hop`; set with `PUT /v1/networks/{id}/scalability`) and per mode:

* api: the mover switches to its cable at the new port, then the bench tells the API
  (`POST .../hosts/{id}/move`, as an orchestrator would).  As a cloud does it, the mover is
  plugged in ahead at every place it goes (`Fabric.preplug`: the destination VM's port is
  made, and opened by its hypervisor, before the switch-over; the source's is removed only
  after), so a move changes which cable the host uses and no port changes state; with
  `--replug` its one cable is re-plugged onto the new port instead, one OVSDB transaction
  at the switch-over (`Fabric.move_host`; Open vSwitch then adds and deletes datapath
  ports and re-validates every flow while the move's rollout runs), and the request is
  retried until the daemon has heard of the new port;
* detect (`--detect`): the switch-over, then the mover announces itself as QEMU does after a
  live migration: a gratuitous ARP (`arping -U` when there is one, else a raw frame from a
  helper process in its namespace) at once, then after gaps of 50, 100, 150 and 200 ms and
  every 200 ms after that, while the bench reads the host (`GET .../hosts/{id}`, every 20
  ms) until its `location` is the new one (a frame sent before Open vSwitch has the new
  port in its datapath is simply lost).  When the daemon does not detect it within 3 s,
  the mode is reported as not measured.

Per move:

* reconfiguration time: the daemon's own (GET /v1/status `reconfigurations`): from the
  change of intent (cause `intent`), or for a detected move from the arrival of the frame
  that showed it (cause `detected`: the intent store's write is inside), to the last
  BARRIER reply of the rollout it caused (new rules, BARRIER, modified rules and the
  tenant's re-translated, BARRIER, old rules deleted, BARRIER);
* pings lost: the pinger (h1) pings the mover every 10 ms, one `ping -D` run per move
  (1.5 s, the move 0.3 s in), lost = sent - received; each lost ping's send time is
  interpolated between the replies around it;
* off the wire: the host's own time, lost whatever the hypervisor does: from the cut (the
  first ping lost during the switch-over or re-plug) until the network is
  told (the API request that succeeded is sent; in detect mode the announcement the daemon
  acted on is sent: any before it never reached the pswitch);
* lost beyond it: the pings sent once the network was told and lost all the same, and the
  time from being told to the last of them (+ 10 ms): the hypervisor's part, as the
  traffic sees it (for API moves: the REST call, the intent store's write, compile and
  rollout up to the rules that carry the host being in place).

A TCP stream (iperf3 at `--rate`, or a Python sender when there is no iperf3) runs from h5
to the mover through each block of moves: retransmits are TcpExt RetransSegs (/proc/net/snmp)
of the sender's namespace, before and after.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as ofpp
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.bench.dnb import Progress
from tenantvisor.bench.reduction import log_problems, route
from tenantvisor.bench.report import closing_lines, emit
from tenantvisor.openflow import codec
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.scenario import wait_physical
from tenantvisor.testbed.topo import Host, fat_tree

LEVELS = ("exact", "lite", "hop")
MOVES = 20
QUICK_MOVES = 5
PINGER, MOVER, SENDER = "h1", "h16", "h5"
SPARE_PORT = 10  # where the mover is plugged on an edge pswitch that is not its home
PING_INTERVAL = 0.01
PING_COUNT = 150  # per move: 1.5 s
MOVE_AT = 0.3  # seconds into the ping run
YARDSTICK = (None, True, None, False)  # per move, before it: BARRIER alone, after an ADD...
YARDSTICK_COOKIE = 0x7A4D
YARDSTICK_PRIORITY = 7
YARDSTICK_DST = "10.254.254.254"  # no host has it
DETECT_TIMEOUT = 3.0
# after a live migration QEMU announces the VM (announce-self) several times, 50 ms apart
# and more: one frame sent while the new port is not in the datapath yet is simply lost
ANNOUNCE_EVERY = (0.05, 0.1, 0.15, 0.2)  # then every 0.2 s until detected
DETECT_POLL = 0.02  # how often the bench asks the daemon where the mover is
TCP_RATE = "10M"
PRIORITY = 100
DP = ProtocolDesc(ofp.OFP_VERSION)
PAPER = {"reconfiguration_ms_mean": 10.5}
GOAL = {"reconfiguration_ms_p50": 5.0, "lost_beyond_off_wire": 1.0}
REFERENCE = (
    "Libera (p-NIaaS), section V.B: four OF-DPA white-box switches, the tenant's VN a 4-ary "
    "fat tree, ONOS reactive forwarding (rules on Ethernet and IPv4 source and destination); "
    "a host moved to another edge switch: 10.5 ms on average to reset the forwarding path "
    "(how the move reached Libera and where its clock started are not said)."
)


# --- the tenant's controller ------------------------------------------------------------------
def pair_rule(src: Host, dst: Host, out: int, cookie: int) -> Any:
    match = ofpp.OFPMatch(eth_src=src.mac, eth_dst=dst.mac, eth_type=0x0800,
                          ipv4_src=src.ip, ipv4_dst=dst.ip)  # fmt: skip
    return ofpp.OFPFlowMod(
        DP, cookie=cookie, priority=PRIORITY, match=match,
        instructions=[ofpp.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                 [ofpp.OFPActionOutput(out)])],
    )  # fmt: skip


def yardstick_rule(xid: int, add: bool) -> bytes:
    """A rule of the tenant's that matches nothing the bench sends (an IPv4 destination no
    host has), added and deleted in turn: its FLOW_MOD + BARRIER is one rule install as the
    tenant sees it, through the hypervisor, the pswitch's flow table and back."""
    msg = ofpp.OFPFlowMod(
        DP, cookie=YARDSTICK_COOKIE, priority=YARDSTICK_PRIORITY,
        command=ofp.OFPFC_ADD if add else ofp.OFPFC_DELETE_STRICT,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        match=ofpp.OFPMatch(eth_type=0x0800, ipv4_dst=YARDSTICK_DST),
        instructions=[ofpp.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [])],
    )  # fmt: skip
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


class Listening:
    """Reads the vswitches' channels while the bench moves hosts (answering ECHOs) and counts
    what the tenant is told, by message type; times the BARRIERs the bench sends as the
    tenant (`barrier`), the run's own yardsticks: each goes through the hypervisor to the
    vswitch's pswitch and back, alone or after a FLOW_MOD, as each phase of a move's
    rollout waits for one after its FLOW_MODs."""

    def __init__(self, peers: list[OFPeer]) -> None:
        self.peers = peers
        self.heard: dict[int, int] = {}
        self._sent: dict[int, tuple[float, bool]] = {}  # BARRIER xid -> when, after a rule
        self.barrier_ms: list[float] = []
        self.install_ms: list[float] = []
        self._xid = 0x7B000000
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            live = [p for p in self.peers if not p.eof]
            if not live:
                return
            try:
                r, _, _ = select.select([p.sock for p in live], [], [], 0.2)
            except (OSError, ValueError):
                return
            for p in live:
                if p.sock not in r:
                    continue
                with contextlib.suppress(OSError):
                    m = p.recv(0)
                    while m is not None:
                        sent = self._sent.pop(m[1], None)
                        if m[0] == ofp.OFPT_BARRIER_REPLY and sent is not None:
                            ms = round((time.monotonic() - sent[0]) * 1e3, 3)
                            (self.install_ms if sent[1] else self.barrier_ms).append(ms)
                        else:
                            self.heard[m[0]] = self.heard.get(m[0], 0) + 1
                        m = p.recv(0)

    def barrier(self, peer: OFPeer, rule: bool | None = None, timeout: float = 0.5) -> None:
        """One BARRIER round trip as the tenant, after the yardstick rule's ADD (`rule`
        True) or DELETE (False) or alone (None): its time goes to `install_ms` or
        `barrier_ms`."""
        self._xid += 1
        xid = self._xid
        n = len(self.barrier_ms) + len(self.install_ms)
        self._sent[xid] = (time.monotonic(), rule is not None)
        head = b"" if rule is None else yardstick_rule(xid | 0x800000, rule)
        peer.send(head + codec.header(ofp.OFP_VERSION, ofp.OFPT_BARRIER_REQUEST, xid))
        deadline = time.monotonic() + timeout
        while len(self.barrier_ms) + len(self.install_ms) == n and time.monotonic() < deadline:
            time.sleep(0.001)
        self._sent.pop(xid, None)

    def take_barriers(self) -> tuple[list[float], list[float]]:
        """(bare BARRIERs, rule installs) since the last call."""
        got = (self.barrier_ms, self.install_ms)
        self.barrier_ms, self.install_ms = [], []
        return got

    def take(self) -> dict[str, int]:
        """What the tenant was sent since the last call (PACKET_IN, PORT_STATUS, ...)."""
        names = {ofp.OFPT_PACKET_IN: "packet_in", ofp.OFPT_PORT_STATUS: "port_status",
                 ofp.OFPT_FLOW_REMOVED: "flow_removed", ofp.OFPT_ERROR: "error"}  # fmt: skip
        got, self.heard = self.heard, {}
        return {names.get(t, f"type_{t}"): n for t, n in sorted(got.items())}

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(3)


# --- gratuitous ARP ---------------------------------------------------------------------------
_GARP = r"""
import socket, struct, sys, time
mac = bytes.fromhex(sys.argv[1].replace(":", "")); ip = socket.inet_aton(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((sys.argv[3], 0))
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\0" * 6, ip)
frame = b"\xff" * 6 + mac + b"\x08\x06" + arp
print("ready", flush=True)
for _ in sys.stdin:
    s.send(frame)
    print(time.time(), flush=True)
"""


class Garp:
    """Sends the mover's gratuitous ARP from its namespace: `arping -U -c 1` when installed,
    else a raw frame from a helper kept running there (no interpreter start per move)."""

    def __init__(self, fab: Fabric, host: Host) -> None:
        self.fab, self.host = fab, host
        self.tool = "arping" if shutil.which("arping") else "raw frame (python helper)"
        self.proc: subprocess.Popen[str] | None = None
        if self.tool != "arping":
            self.proc = fab.host(host.name).popen(
                [sys.executable, "-c", _GARP, host.mac, host.ip, fab.addr_dev(host.name)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert self.proc.stdout is not None
            if self.proc.stdout.readline().strip() != "ready":
                raise RuntimeError("the gratuitous ARP helper did not start")

    def send(self) -> float:
        """Send one; when it was sent (time.time)."""
        if self.proc is None:
            dev = self.fab.addr_dev(self.host.name)
            self.fab.host(self.host.name).exec(f"arping -U -c 1 -I {dev} {self.host.ip}",
                                               check=False)  # fmt: skip
            return time.time()
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(3)


# --- the TCP stream ---------------------------------------------------------------------------
_SENDER = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
rate = float(sys.argv[3]) / 8; chunk = b"x" * 8192; t0 = time.monotonic(); sent = 0
while True:
    ahead = sent / rate - (time.monotonic() - t0)
    if ahead > 0:
        time.sleep(ahead)
    s.sendall(chunk); sent += len(chunk)
"""
_SINK = r"""
import socket, sys
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind((sys.argv[1], int(sys.argv[2]))); l.listen(1); print("ready", flush=True)
c, _ = l.accept()
while c.recv(65536):
    pass
"""
TCP_PORT = 5201


def _rate_bps(rate: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]?)", rate.strip(), re.IGNORECASE)
    if m is None:
        raise ValueError(f"--rate: a rate like 10M, not {rate!r}")
    return float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2).upper()]


def retrans_segs(fab: Fabric, name: str) -> int:
    """Tcp RetransSegs of the host's namespace (/proc/net/snmp)."""
    out = fab.host(name).exec("cat /proc/net/snmp").stdout.splitlines()
    tcp = [ln.split() for ln in out if ln.startswith("Tcp:")]
    return int(tcp[1][tcp[0].index("RetransSegs")])


class Stream:
    """A TCP stream from the sender to the mover across one block of moves."""

    def __init__(self, fab: Fabric, sender: Host, receiver: Host, rate: str) -> None:
        self.fab, self.sender = fab, sender
        self.tool = "iperf3" if shutil.which("iperf3") else "python"
        self.before = retrans_segs(fab, sender.name)
        bps = _rate_bps(rate)
        self.rate = rate
        rx, tx = fab.host(receiver.name), fab.host(sender.name)
        if self.tool == "iperf3":
            self.server = rx.popen(["iperf3", "-s", "-1", "-B", receiver.ip, "-p", str(TCP_PORT)])
            time.sleep(0.3)
            self.client = tx.popen(
                ["iperf3", "-c", receiver.ip, "-p", str(TCP_PORT), "-t", "86400",
                 "-b", str(int(bps)), "-J"],
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
        else:
            self.server = rx.popen([sys.executable, "-c", _SINK, receiver.ip, str(TCP_PORT)],
                                   stdout=subprocess.PIPE, text=True)  # fmt: skip
            assert self.server.stdout is not None
            self.server.stdout.readline()
            self.client = tx.popen([sys.executable, "-c", _SENDER, receiver.ip, str(TCP_PORT),
                                    str(bps)])  # fmt: skip
        time.sleep(1.0)  # past slow start

    def stop(self) -> dict[str, Any]:
        alive = self.client.poll() is None
        retrans = retrans_segs(self.fab, self.sender.name) - self.before
        out: dict[str, Any] = {"tool": self.tool, "rate": self.rate, "ran_throughout": alive,
                               "retransmits": retrans}  # fmt: skip
        if alive:
            self.client.send_signal(signal.SIGINT if self.tool == "iperf3" else signal.SIGTERM)
        try:
            text, _ = self.client.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.client.kill()
            text, _ = self.client.communicate()
        if self.tool == "iperf3" and text:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                end = json.loads(text[text.index("{") :])["end"]
                out["iperf3_retransmits"] = end["sum_sent"]["retransmits"]
                out["mbit_s_sent"] = round(end["sum_sent"]["bits_per_second"] / 1e6, 2)
        for p in (self.server,):
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
        return out


# --- the run ----------------------------------------------------------------------------------
@dataclass
class Config:
    moves: int = MOVES
    levels: tuple[str, ...] = LEVELS
    detect: bool = False
    rate: str = TCP_RATE
    lldp_interval: float = 0.5
    store: bool = True  # False: the daemon keeps no intent (--db none): no store write
    # True: each move re-plugs the mover's cable (one OVSDB transaction at the switch-over);
    # False: it is plugged in ahead at every place it goes, as a cloud creates a migrating
    # VM's port before the switch-over, which then only changes the cable the host uses
    replug: bool = False


@dataclass
class Move:
    level: str
    mode: str
    index: int
    src: str
    dst: str
    off_wire_ms: float | None = None
    replug_ms: float | None = None
    told_ms: float | None = None  # the API round trip, or the gratuitous ARP to the location
    reconfiguration_ms: float | None = None
    compile_ms: float | None = None
    # the new end confirmed, the phase that turns traffic (and clears the old end) starts
    new_end_ms: float | None = None
    request_to_intent_ms: float | None = None  # the API request to the change of intent
    reconfiguration_rules: int | None = None
    sent: int = 0
    lost: int | None = None
    lost_after_told: int | None = None  # sent once the network was told, and lost
    outage_after_told_ms: float | None = None  # to the last of them (+ one interval)
    detected: bool | None = None
    announcements: int | None = None  # gratuitous ARPs sent until detected (detect mode)
    error: str | None = None
    topology_reconfigurations: list[float] = field(default_factory=list)

    @property
    def lost_beyond(self) -> float | None:
        return None if self.lost_after_told is None else float(self.lost_after_told)

    @property
    def request_to_done(self) -> float | None:
        if self.request_to_intent_ms is None or self.reconfiguration_ms is None:
            return None
        return round(self.request_to_intent_ms + self.reconfiguration_ms, 3)

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "from": self.src, "to": self.dst,
            "off_wire_ms": self.off_wire_ms, "replug_ms": self.replug_ms,
            "told_ms": self.told_ms, "reconfiguration_ms": self.reconfiguration_ms,
            "compile_ms": self.compile_ms, "new_end_ms": self.new_end_ms,
            "request_to_intent_ms": self.request_to_intent_ms,
            "request_to_last_barrier_ms": self.request_to_done,
            "reconfiguration_rules": self.reconfiguration_rules, "pings_sent": self.sent,
            "pings_lost": self.lost, "lost_beyond_off_wire": self.lost_beyond,
            "outage_after_told_ms": self.outage_after_told_ms,
            "detected": self.detected, "announcements": self.announcements,
            "error": self.error,
            "topology_reconfigurations_ms": self.topology_reconfigurations,
        }  # fmt: skip


CYCLE = [(f"e{i}", SPARE_PORT) for i in range(1, 8)] + [("e8", 2)]


def targets(n: int) -> list[tuple[str, int]]:
    """Where the mover goes, move after move: e1..e7 on the spare port, home (e8 port 2)."""
    return [CYCLE[i % len(CYCLE)] for i in range(n)]


_REPLY = re.compile(r"^\[(\d+\.\d+)\] .*icmp_seq=(\d+) ", re.MULTILINE)


def lost_pings(out: str, interval: float) -> tuple[int, list[float]]:
    """Of `ping -D` output: how many were sent, and when each lost one was sent (time.time;
    interpolated between the replies around it, ping sending every `interval`)."""
    m = re.search(r"(\d+) packets transmitted", out)
    if m is None:
        raise RuntimeError(f"ping: no summary in {out[-200:]!r}")
    sent = int(m.group(1))
    got: dict[int, float] = {}
    for ts, seq in _REPLY.findall(out):
        got.setdefault(int(seq), float(ts))
    if not got:
        return sent, []
    seqs = sorted(got)
    lost_at = []
    for k in range(1, sent + 1):
        if k in got:
            continue
        a = max((s for s in seqs if s < k), default=None)
        b = min((s for s in seqs if s > k), default=None)
        if a is not None and b is not None:
            lost_at.append(got[a] + (k - a) * (got[b] - got[a]) / (b - a))
        elif a is not None:
            lost_at.append(got[a] + (k - a) * interval)
        else:
            assert b is not None
            lost_at.append(got[b] - (b - k) * interval)
    return sent, lost_at


def percentile(xs: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), nearest rank."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]


class Bench:
    def __init__(self, cfg: Config, progress: bool) -> None:
        self.cfg = cfg
        self.topo = fat_tree(4)
        self.rundir = Path(tempfile.mkdtemp(prefix="tv-bench-migration-"))
        self.fab = Fabric(self.topo)
        self.daemon: Daemon | None = None
        self.http: httpx.Client | None = None
        self.listener = ControllerListener()
        self.listening: Listening | None = None
        self.home_peer: OFPeer | None = None  # the mover's home vswitch, as its controller
        self.garp: Garp | None = None
        self.token = ""
        self.net_id = 0
        self.host_id = 0
        self.seen = 0  # the last reconfiguration (seq) read from the daemon
        modes = 2 if cfg.detect else 1
        self.bar = Progress(2 + len(cfg.levels) * (1 + modes * cfg.moves), progress)
        self.at = (self.topo.hosts[MOVER].switch, self.topo.hosts[MOVER].port)

    @property
    def d(self) -> Daemon:
        assert self.daemon is not None
        return self.daemon

    @property
    def api(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    @property
    def net(self) -> str:
        return f"/v1/networks/{self.net_id}"

    # --- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        fab, topo = self.fab, self.topo
        fab.build()
        assert fab.ovs is not None
        if not self.cfg.replug:
            fab.preplug(MOVER, CYCLE)
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        self.daemon = Daemon(
            self.rundir / "d", sock, lldp_interval=self.cfg.lldp_interval,
            extra_args=[] if self.cfg.store else ["--db", "none"],
        )  # fmt: skip
        self.daemon.start()
        # one connection kept open: a client per request costs ~20 ms of its own (httpx
        # builds an SSL context each time), which would count as the hypervisor's
        self.http = httpx.Client(
            base_url=self.daemon.url, timeout=10,
            headers={"Authorization": f"Bearer {self.daemon.admin_token}"},
        )  # fmt: skip
        fab.set_controller(sock)
        fab.wait_connected(timeout=30)
        wait_physical(self.daemon, topo, timeout=60)
        self.bar.step("fat tree and daemon up")
        d = self.d
        self.token = tok = d.rest("POST", "/v1/tenants", {"name": "mover"})["token"]
        body = {"controller_urls": [f"tcp:127.0.0.1:{self.listener.port}"],
                "scalability": self.cfg.levels[0]}  # fmt: skip
        self.net_id = nid = int(d.rest("POST", "/v1/networks", body, tok)["id"])
        net = f"/v1/networks/{nid}"
        vdpid = {name: int(d.rest("POST", f"{net}/switches", {"dpids": [sw.dpid]},
                                  tok)["vdpid"]) for name, sw in topo.switches.items()}  # fmt: skip
        vport: dict[tuple[str, int], int] = {}

        def make_port(sw: str, port: int) -> int:
            got = d.rest("POST", f"{net}/ports", {"dpid": topo.switch(sw).dpid, "port": port},
                         tok)  # fmt: skip
            vport[(sw, port)] = int(got["number"])
            return vport[(sw, port)]

        for lk in topo.links:
            d.rest("POST", f"{net}/links", {
                "src_vdpid": vdpid[lk.a], "src_vport": make_port(lk.a, lk.pa),
                "dst_vdpid": vdpid[lk.b], "dst_vport": make_port(lk.b, lk.pb),
            }, tok)  # fmt: skip
        for h in topo.hosts.values():
            got = d.rest("POST", f"{net}/hosts", {"vdpid": vdpid[h.switch],
                         "vport": make_port(h.switch, h.port), "mac": h.mac}, tok)  # fmt: skip
            if h.name == MOVER:
                self.host_id = int(got["id"])
        d.rest("POST", f"{net}/start", None, tok)
        got = {p.dpid: p for p in self.listener.accept(len(topo.switches), timeout=60)}
        peers = {sw: got[v] for sw, v in vdpid.items()}
        cookie = 0x4D00
        mover = topo.hosts[MOVER]
        for other in (topo.hosts[PINGER], topo.hosts[SENDER]):
            for src, dst in ((other, mover), (mover, other)):
                for sw, port in route(topo, 0, src, dst):
                    cookie += 1
                    peers[sw].send_msg(pair_rule(src, dst, vport[(sw, port)], cookie), cookie)
        for i, peer in enumerate(peers.values()):
            peer.barrier(0x4E00 + i)
        self.listening = Listening(list(peers.values()))
        self.home_peer = peers[mover.switch]
        for a, b in ((PINGER, MOVER), (MOVER, PINGER), (SENDER, MOVER), (MOVER, SENDER)):
            fab.static_neighbour(a, b)
        if not fab.host(PINGER).ping(mover.ip, count=3, timeout=10):
            raise RuntimeError(f"{PINGER} does not reach {MOVER} before any move")
        if self.cfg.detect:
            self.garp = Garp(fab, mover)
        self.seen = self._reconfigs()[-1]["seq"] if self._reconfigs() else 0
        self.bar.step("tenant's fat tree made over REST, host-pair rules installed")

    # --- daemon's view -----------------------------------------------------------------------
    def _reconfigs(self) -> list[dict[str, Any]]:
        got = self.api.get("/v1/status").json().get("reconfigurations")
        if got is None:
            raise RuntimeError("the daemon reports no reconfigurations (GET /v1/status)")
        return [r for r in got if r["net"] == self.net_id]

    def _location(self) -> tuple[int, int] | None:
        """Where the daemon has the mover (polled every DETECT_POLL while a move is
        detected: the one host, not the network's whole view, which would cost the daemon
        ~1 ms each time)."""
        r = self.api.get(f"{self.net}/hosts/{self.host_id}")
        if r.status_code == 404:
            raise RuntimeError(f"host {self.host_id} is gone from network {self.net_id}")
        loc = r.json().get("location")
        return None if loc is None else (int(loc["dpid"]), int(loc["port"]))

    def _expected(self, sw: str, port: int) -> tuple[int, int] | None:
        home = self.topo.hosts[MOVER]
        return None if (sw, port) == (home.switch, home.port) else (self.topo.switch(sw).dpid,
                                                                     port)  # fmt: skip

    def _tell(self, sw: str, port: int, timeout: float = 10.0) -> float:
        """POST .../move until the daemon knows the port; when the request that succeeded
        was sent (time.time, to compare with the daemon's and ping's)."""
        path = f"{self.net}/hosts/{self.host_id}/move"
        body = {"dpid": self.topo.switch(sw).dpid, "port": port}
        deadline = time.monotonic() + timeout
        while True:
            t = time.time()
            r = self.api.post(path, json=body)
            if r.status_code < 400:
                return t
            if r.status_code != 404 or time.monotonic() > deadline:
                raise RuntimeError(f"POST {path}: HTTP {r.status_code}: {r.text[:200]}")
            time.sleep(0.002)

    def _intent_reconfig(self, timeout: float = 5.0) -> tuple[dict[str, Any] | None, list[float]]:
        """The first reconfiguration of intent since the last read, and the topology's."""
        deadline = time.monotonic() + timeout
        while True:
            new = [r for r in self._reconfigs() if r["seq"] > self.seen]
            intent = next((r for r in new if r["cause"] in ("intent", "detected")), None)
            if intent is not None or time.monotonic() > deadline:
                if new:
                    self.seen = max(r["seq"] for r in new)
                return intent, [r["ms"] for r in new if r["cause"] == "topology"]
            time.sleep(0.02)

    # --- moves -------------------------------------------------------------------------------
    def move(self, level: str, mode: str, index: int, sw: str, port: int) -> Move:
        """One move under a `ping -i 0.01` run (times: time.time, as ping's -D and the
        daemon's `at`)."""
        fab, mover = self.fab, self.topo.hosts[MOVER]
        mv = Move(level, mode, index, f"{self.at[0]}:{self.at[1]}", f"{sw}:{port}")
        told: float | None = None  # when the network was told: API request, or ARP sent
        detect_rec: dict[str, Any] | None = None  # a detected move's reconfiguration
        detect_topo: list[float] = []
        t0 = t1 = 0.0
        cmd = ["ping", "-n", "-D", "-i", str(PING_INTERVAL), "-c", str(PING_COUNT), "-W", "1",
               mover.ip]  # fmt: skip
        ping = fab.host(PINGER).popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            self._yardstick(time.monotonic() + MOVE_AT)
            t0 = time.time()
            fab.move_host(MOVER, sw, port)
            t1 = time.time()
            self.at = (sw, port)
            mv.replug_ms = round((t1 - t0) * 1e3, 2)
            if mode == "api":
                told = self._tell(sw, port)
                mv.told_ms = round((time.time() - told) * 1e3, 2)
            else:
                assert self.garp is not None
                sends = [self.garp.send()]
                want = self._expected(sw, port)
                gaps = list(ANNOUNCE_EVERY)
                got = None
                while time.time() < sends[0] + DETECT_TIMEOUT:
                    # asked after the daemon had time to act: a GET in the middle of the
                    # rollout would be timed as part of it (an orchestrator does not poll
                    # a hypervisor every few milliseconds either)
                    time.sleep(DETECT_POLL)
                    if (got := self._location()) == want:
                        break
                    if time.time() >= sends[-1] + (gaps[0] if gaps else ANNOUNCE_EVERY[-1]):
                        gaps = gaps[1:]
                        sends.append(self.garp.send())
                mv.detected = got == want
                mv.announcements = len(sends)
                if mv.detected:
                    # told: the announcement the daemon acted on (the last sent before it
                    # did); any before it never arrived (the port was not in the datapath
                    # yet), which is the host's own time off the wire
                    detect_rec, detect_topo = self._intent_reconfig(timeout=5.0)
                    at = detect_rec["at"] if detect_rec is not None else sends[-1]
                    told = max([x for x in sends if x <= at + 0.001] or sends[:1])
                else:
                    self._tell(sw, port)  # keep the network where the host is
                mv.told_ms = round((time.time() - sends[0]) * 1e3, 2)
        except Exception as exc:
            mv.error = f"{type(exc).__name__}: {exc}"[:300]
        try:
            out, _ = ping.communicate(timeout=PING_COUNT * PING_INTERVAL + 20)
            mv.sent, lost_at = lost_pings(out, PING_INTERVAL)
            mv.lost = len(lost_at)
            if told is not None:
                # the cut is within the re-plug; the first ping lost says when, if any was
                # lost before the network was told
                before = [t for t in lost_at if t0 - PING_INTERVAL <= t < told]
                cut = min(before) if before else t1
                mv.off_wire_ms = round(max(0.0, told - cut) * 1e3, 2)
                mv.lost_after_told = sum(1 for t in lost_at if t >= told)
                mv.outage_after_told_ms = round(
                    max([0.0] + [t + PING_INTERVAL - told for t in lost_at if t >= told]) * 1e3,
                    1,
                )
        except Exception as exc:
            ping.kill()
            mv.error = mv.error or f"ping: {exc}"[:300]
        rec: dict[str, Any] | None = detect_rec
        topo_ms = detect_topo
        if rec is None:
            rec, topo_ms = self._intent_reconfig(timeout=5.0 if mv.detected is not False else 0.5)
        mv.topology_reconfigurations = topo_ms
        if rec is not None and told is not None:
            mv.reconfiguration_ms = rec["ms"]
            mv.compile_ms = rec.get("compile_ms")
            # a move's rollout is two phases (program/networks.py): the second, which
            # turns traffic and clears the old end, starts once the new end is confirmed
            mv.new_end_ms = (rec.get("phases_ms") or {}).get("modify")
            mv.reconfiguration_rules = rec["rules"]
            mv.request_to_intent_ms = round((rec["at"] - told) * 1e3, 3)
        return mv

    def _yardstick(self, until: float) -> None:
        """BARRIERs as the tenant to the mover's home vswitch, alone and after adding or
        deleting a rule, under the same pings and stream, until `until`: what a round
        trip, and one rule install, cost in this run (a move's rollout is two rounds,
        each after FLOW_MODs)."""
        assert self.listening is not None and self.home_peer is not None
        for rule in YARDSTICK:
            if time.monotonic() + 0.06 > until:
                break
            self.listening.barrier(self.home_peer, rule)
            time.sleep(0.05)
        time.sleep(max(0.0, until - time.monotonic()))

    def set_level(self, level: str) -> None:
        r = httpx.put(f"{self.d.url}{self.net}/scalability", json={"level": level}, timeout=60,
                      headers={"Authorization": f"Bearer {self.token}"})  # fmt: skip
        if r.status_code >= 400 or r.json().get("scalability") != level:
            raise RuntimeError(f"PUT scalability {level}: HTTP {r.status_code}: {r.text[:200]}")
        time.sleep(1.0)
        self._intent_reconfig(timeout=0.1)  # the level change is no move
        mover = self.topo.hosts[MOVER]
        if not self.fab.host(PINGER).ping(mover.ip, count=3, timeout=10):
            raise RuntimeError(f"{level}: {PINGER} does not reach {MOVER} after the level change")

    def block(self, level: str, mode: str) -> dict[str, Any]:
        """`moves` moves of one mode at one level, under a TCP stream."""
        assert self.listening is not None
        self.listening.take()
        stream = Stream(self.fab, self.topo.hosts[SENDER], self.topo.hosts[MOVER], self.cfg.rate)
        moves: list[Move] = []
        gave_up = None
        try:
            for i, (sw, port) in enumerate(targets(self.cfg.moves)):
                if (sw, port) == self.at:  # where it is already (the cycle's start)
                    sw, port = ("e1", SPARE_PORT) if sw != "e1" else ("e8", 2)
                mv = self.move(level, mode, i, sw, port)
                moves.append(mv)
                what = f"{level} {mode} move {i + 1}: {mv.src} -> {mv.dst}"
                self.bar.step(f"{what}, {mv.reconfiguration_ms} ms, {mv.lost} lost")
                if mode == "detect" and not mv.detected:
                    gave_up = (f"move {i + 1} ({mv.src} -> {mv.dst}) not detected within "
                               f"{DETECT_TIMEOUT:g} s of the gratuitous ARP")  # fmt: skip
                    for _ in range(self.cfg.moves - i - 1):
                        self.bar.step(f"{level} detect: not measured")
                    break
        finally:
            tcp = stream.stop()
        return summarise_block(moves, tcp, self.listening.take(), gave_up,
                               *self.listening.take_barriers())  # fmt: skip

    def close(self) -> None:
        if self.garp is not None:
            self.garp.close()
        if self.listening is not None:
            self.listening.stop()
        self.listener.close()
        if self.http is not None:
            self.http.close()
        if self.daemon is not None:
            self.daemon.stop()
        self.fab.close()
        shutil.rmtree(self.rundir, ignore_errors=True)


def _stats(xs: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(xs, 50),
        "p99": percentile(xs, 99),
        "mean": round(statistics.mean(xs), 3) if xs else None,
        "max": max(xs) if xs else None,
        "n": len(xs),
    }


def summarise_block(
    moves: list[Move], tcp: dict[str, Any], heard: dict[str, int], gave_up: str | None,
    barriers: list[float] | None = None, installs: list[float] | None = None,
) -> dict[str, Any]:  # fmt: skip
    counted = [m for m in moves if m.error is None and (m.detected is not False)]
    rec = [m.reconfiguration_ms for m in counted if m.reconfiguration_ms is not None]
    lost = [float(m.lost) for m in counted if m.lost is not None]
    beyond = [b for m in counted if (b := m.lost_beyond) is not None]
    off = [m.off_wire_ms for m in counted if m.off_wire_ms is not None]
    told = [m.told_ms for m in counted if m.told_ms is not None]
    topo_ms = [x for m in counted for x in m.topology_reconfigurations]
    measured = bool(counted) and gave_up is None
    out: dict[str, Any] = {
        "measured": measured,
        "moves": len(counted),
        "reconfiguration_ms": _stats(rec),
        # the run's yardsticks: a tenant's BARRIER through the hypervisor, alone and after
        # a FLOW_MOD (one rule install), under the same load
        "tenant_barrier_ms": _stats(list(barriers or [])),
        "tenant_rule_install_ms": _stats(list(installs or [])),
        "reconfiguration_in_rule_installs": (
            round(p / b, 2)
            if (p := percentile(rec, 50)) is not None
            and (b := percentile(list(installs or []), 50))
            else None
        ),
        "compile_ms": _stats([m.compile_ms for m in counted if m.compile_ms is not None]),
        "new_end_ms": _stats([m.new_end_ms for m in counted if m.new_end_ms is not None]),
        "request_to_intent_ms": _stats(
            [m.request_to_intent_ms for m in counted if m.request_to_intent_ms is not None]
        ),
        "request_to_last_barrier_ms": _stats(
            [x for m in counted if (x := m.request_to_done) is not None]
        ),
        "reconfiguration_rules_mean": round(
            statistics.mean(
                [m.reconfiguration_rules for m in counted if m.reconfiguration_rules is not None]
                or [0]
            ),
            1,
        ),
        "pings_lost": {
            "mean": round(statistics.mean(lost), 2) if lost else None,
            "max": max(lost) if lost else None,
        },
        "off_wire_ms": {
            "mean": round(statistics.mean(off), 2) if off else None,
            "max": max(off) if off else None,
        },
        "lost_beyond_off_wire": {
            "mean": round(statistics.mean(beyond), 2) if beyond else None,
            "max": max(beyond) if beyond else None,
        },
        "outage_after_told_ms": _stats(
            [m.outage_after_told_ms for m in counted if m.outage_after_told_ms is not None]
        ),
        "told_ms": _stats(told),
        "topology_reconfigurations": {"count": len(topo_ms), **_stats(topo_ms)},
        "tcp": {
            **tcp,
            "retransmits_per_move": round(tcp["retransmits"] / len(moves), 2) if moves else None,
        },
        "tenant_heard": heard,
        "errors": [f"move {m.index + 1}: {m.error}" for m in moves if m.error][:5],
        "per_move": [m.as_dict() for m in moves],
    }
    if gave_up is not None:
        out["not_measured"] = gave_up
    return out


def run(cfg: Config, progress: bool = True) -> dict[str, Any]:
    t0 = time.monotonic()
    b = Bench(cfg, progress)
    result: dict[str, Any] = {
        "benchmark": "migration",
        "topology": "k=4 fat tree (20 pswitches, 32 links), OpenFlow 1.3, userspace OVS",
        "virtual_topology": "one tenant, the physical fat tree 1:1 (20 vswitches, 32 vlinks, "
        "16 hosts)",
        "rules": "host pairs (eth_type, eth and IPv4 src+dst, no in_port) at every vswitch on "
        f"the path, both ways: {PINGER}<->{MOVER} and {SENDER}<->{MOVER}",
        "mover": f"{MOVER} (home e8 port 2), to e1..e7 port {SPARE_PORT} and home, in turn",
        "pinger": f"{PINGER}, every {PING_INTERVAL * 1e3:g} ms, {PING_COUNT} per move",
        "tcp_sender": SENDER,
        "moves_per_level": cfg.moves,
        "intent_store": "embedded ovsdb-server (the default)" if cfg.store else "none (--db none)",
        "switch_over": "the mover's cable re-plugged (one OVSDB transaction)"
        if cfg.replug
        else "plugged in ahead: the mover has a cable up at every place it goes (as a cloud "
        "creates the destination port before the switch-over and removes the source's "
        "after); a move changes which one it uses, no port changes state",
        "levels": list(cfg.levels),
        "modes": ["api", "detect"] if cfg.detect else ["api"],
        "paper": PAPER,
        "goal": GOAL,
    }
    try:
        b.setup()
        if b.garp is not None:
            result["gratuitous_arp"] = b.garp.tool
        by_level = []
        for lv in cfg.levels:
            b.set_level(lv)
            b.bar.step(f"{lv}: level set, {PINGER} reaches {MOVER}")
            entry: dict[str, Any] = {"level": lv, "api": b.block(lv, "api")}
            if cfg.detect:
                entry["detect"] = b.block(lv, "detect")
            by_level.append(entry)
        result["by_level"] = by_level
        result["daemon_log"] = log_problems(b.d.log_text())
    finally:
        b.close()
    result["seconds"] = round(time.monotonic() - t0, 1)
    result["reference"] = REFERENCE
    goals(result)
    return result


def goals(r: dict[str, Any]) -> None:
    api = [lv["api"] for lv in r["by_level"]]
    p50 = [a["reconfiguration_ms"]["p50"] for a in api]
    beyond = [a["lost_beyond_off_wire"]["mean"] for a in api]
    detect = [lv["detect"] for lv in r["by_level"] if "detect" in lv]
    measured = [d for d in detect if d["measured"]]
    r["goals"] = {
        "reconfiguration_p50": all(
            x is not None and x <= GOAL["reconfiguration_ms_p50"] for x in p50
        ),
        "lost_beyond_off_wire": all(
            x is not None and x <= GOAL["lost_beyond_off_wire"] for x in beyond
        ),
        "detected_p50": bool(measured)
        and len(measured) == len(detect)
        and all(
            (d["reconfiguration_ms"]["p50"] or 1e9) <= GOAL["reconfiguration_ms_p50"]
            and (d["lost_beyond_off_wire"]["mean"] or 0) <= GOAL["lost_beyond_off_wire"]
            for d in measured
        ),
        "tenant_heard_nothing": all(
            not {k: v for k, v in blk["tenant_heard"].items() if k != "packet_in"}
            for lv in r["by_level"]
            for blk in (lv["api"], lv.get("detect"))
            if blk and blk["measured"]
        ),
        "clean_daemon_log": r["daemon_log"]["errors"] == 0,
    }


# --- output ------------------------------------------------------------------------------------
GOALS = [
    ("reconfiguration_p50", f"API moves: p50 <= {GOAL['reconfiguration_ms_p50']:g} ms"),
    (
        "lost_beyond_off_wire",
        f"API moves: <= {GOAL['lost_beyond_off_wire']:g} ping lost once told (mean)",
    ),
    ("detected_p50", "detected moves: the same"),
    ("tenant_heard_nothing", "no PORT_STATUS/FLOW_REMOVED/ERROR to the tenant"),
    ("clean_daemon_log", "no error in the daemon log"),
]


def _f(x: Any, spec: str = ".2f") -> str:
    if x is None:
        return "-"
    return format(x, spec)


def _block_lines(r: dict[str, Any], mode: str, col: int) -> list[str]:
    blocks = [lv.get(mode) for lv in r["by_level"]]

    def row(label: str, cell: Any, paper: str = "") -> str:
        cells = [cell(b) if b and b["measured"] else "-" for b in blocks]
        return f"  {label:40}" + "".join(f"{c:>{col}}" for c in cells) + f"{paper:>{col + 2}}"

    if not any(b and b["measured"] for b in blocks):
        return [f"  {lv['level']}: not measured: {(lv.get(mode) or {}).get('not_measured', '-')}"
                f"; the tenant was sent {(lv.get(mode) or {}).get('tenant_heard') or 'nothing'}"
                for lv in r["by_level"]]  # fmt: skip
    lines = [
        row("reconfiguration p50 (ms)", lambda b: _f(b["reconfiguration_ms"]["p50"])),
        row("reconfiguration p99 (ms)", lambda b: _f(b["reconfiguration_ms"]["p99"])),
        row("reconfiguration mean (ms)", lambda b: _f(b["reconfiguration_ms"]["mean"]), "10.5"),
        row("  of which compiling (ms, p50)", lambda b: _f(b["compile_ms"]["p50"])),
        row("  to the new end confirmed (p50)", lambda b: _f(b["new_end_ms"]["p50"])),
        row("yardstick: tenant BARRIER (ms, p50)", lambda b: _f(b["tenant_barrier_ms"]["p50"])),
        row("  FLOW_MOD + BARRIER (ms, p50)", lambda b: _f(b["tenant_rule_install_ms"]["p50"])),
        row(
            "  reconfiguration p50 in rule installs",
            lambda b: _f(b["reconfiguration_in_rule_installs"], ".1f"),
        ),
        row(
            "compiled rules changed per move", lambda b: _f(b["reconfiguration_rules_mean"], ".1f")
        ),
        row(
            "request/ARP -> intent changed (p50/p99)",
            lambda b: (
                f"{_f(b['request_to_intent_ms']['p50'], '.1f')}/"
                f"{_f(b['request_to_intent_ms']['p99'], '.1f')}"
            ),
        ),
        row(
            "request/ARP -> last BARRIER (p50/p99)",
            lambda b: (
                f"{_f(b['request_to_last_barrier_ms']['p50'], '.1f')}/"
                f"{_f(b['request_to_last_barrier_ms']['p99'], '.1f')}"
            ),
        ),
        row(
            "off the wire (ms, mean / max)",
            lambda b: f"{_f(b['off_wire_ms']['mean'], '.0f')}/{_f(b['off_wire_ms']['max'], '.0f')}",
        ),
        row("told: API call / ARP -> location (ms)", lambda b: _f(b["told_ms"]["p50"], ".1f")),
        row(
            "pings lost per move (mean / max)",
            lambda b: f"{_f(b['pings_lost']['mean'], '.1f')}/{_f(b['pings_lost']['max'], '.0f')}",
        ),
        row(
            "  sent after it was told (mean / max)",
            lambda b: (
                f"{_f(b['lost_beyond_off_wire']['mean'], '.1f')}/"
                f"{_f(b['lost_beyond_off_wire']['max'], '.0f')}"
            ),
        ),
        row(
            "told -> last lost ping + 10 ms (p50/max)",
            lambda b: (
                f"{_f(b['outage_after_told_ms']['p50'], '.0f')}/"
                f"{_f(b['outage_after_told_ms']['max'], '.0f')}"
            ),
        ),
        row(
            "TCP retransmits (total / per move)",
            lambda b: f"{b['tcp']['retransmits']}/{_f(b['tcp']['retransmits_per_move'], '.1f')}",
        ),
        row(
            "topology reconfigurations (n, p50 ms)",
            lambda b: (
                f"{b['topology_reconfigurations']['count']}, "
                f"{_f(b['topology_reconfigurations']['p50'], '.1f')}"
            ),
        ),
        row("moves counted", lambda b: str(b["moves"])),
    ]
    for lv in r["by_level"]:
        b = lv.get(mode)
        if b and not b["measured"]:
            lines.append(f"  {lv['level']}: not measured: {b.get('not_measured', 'no move')}")
        for e in (b or {}).get("errors", []):
            lines.append(f"  {lv['level']}: {e}")
        heard = {k: v for k, v in (b or {}).get("tenant_heard", {}).items()}
        if heard:
            lines.append(f"  {lv['level']}: the tenant was sent {heard}")
    return lines


def table(r: dict[str, Any]) -> str:
    names = [lv["level"] for lv in r["by_level"]]
    col = 12
    head = f"  {'':40}" + "".join(f"{n:>{col}}" for n in names) + f"{'Libera':>{col + 2}}"
    lines = [
        f"tenantvisor bench migration: {r['topology']}",
        f"  {r['virtual_topology']}; rules: {r['rules']}",
        f"  mover {r['mover']}; pinger {r['pinger']}; TCP from {r['tcp_sender']}; "
        f"{r['moves_per_level']} moves per level and mode; intent store: {r['intent_store']}",
        f"  switch-over: {r['switch_over']}",
        "",
        "API-told moves (the switch-over, then POST .../hosts/{id}/move)",
        head,
        *_block_lines(r, "api", col),
    ]
    if "detect" in r["modes"]:
        got = _block_lines(r, "detect", col)
        measured = any("not measured" not in ln for ln in got)
        lines += ["", f"detected moves (the switch-over, then a gratuitous ARP by "
                      f"{r.get('gratuitous_arp', '?')})",
                  *([head] if measured else []), *got]  # fmt: skip
    log = r["daemon_log"]
    lines += ["", f"daemon log: {log['errors']} errors, {log['warnings']} warnings, "
              f"{log['connections_lost']} connections lost"]  # fmt: skip
    lines += [f"  {ln[:160]}" for ln in log["examples"][:4]]
    lines += closing_lines(r, GOALS, width=48)
    return "\n".join(lines)


def plot(r: dict[str, Any], path: str) -> None:
    """Reconfiguration time per level and mode (p50 bars, p99 whiskers, every move as a dot)
    beside Libera's 10.5 ms; pings lost per move, before and after the network was told."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = r["by_level"]
    names = [lv["level"] for lv in levels]
    modes = [m for m in r["modes"] if any((lv.get(m) or {}).get("measured") for lv in levels)]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    width = 0.8 / max(len(modes), 1)
    for k, mode in enumerate(modes):
        xs = [i + (k - (len(modes) - 1) / 2) * width for i in range(len(names))]
        blocks = [b if (b := lv.get(mode)) and b["measured"] else {} for lv in levels]
        rec = [b.get("reconfiguration_ms") or {} for b in blocks]
        ys = [x.get("p50") or 0 for x in rec]
        err = [max(0, (x.get("p99") or 0) - y) for x, y in zip(rec, ys, strict=True)]
        axes[0].bar(xs, ys, width, yerr=[[0] * len(ys), err], capsize=3,
                    label=f"{mode}: p50, whisker p99")  # fmt: skip
        lost = [(b.get("pings_lost") or {}).get("mean") or 0 for b in blocks]
        after = [(b.get("lost_beyond_off_wire") or {}).get("mean") or 0 for b in blocks]
        before = [max(0, x - y) for x, y in zip(lost, after, strict=True)]
        axes[1].bar(
            xs,
            before,
            width,
            color="#bbb",
            label="before the network was told (off the wire)" if k == 0 else None,
        )
        axes[1].bar(xs, after, width, bottom=before, label=f"{mode}: after it was told")
        for x, b in zip(xs, blocks, strict=True):
            for ax, per in ((axes[0], "reconfiguration_ms"), (axes[1], "pings_lost")):
                vals = [m[per] for m in b.get("per_move", []) if m.get(per) is not None]
                ax.scatter([x] * len(vals), vals, s=6, color="#333", alpha=0.5, zorder=4)
    axes[0].axhline(PAPER["reconfiguration_ms_mean"], color="#c44", ls="--", lw=1,
                    label="Libera 10.5 ms (mean, hardware switches)")  # fmt: skip
    axes[0].axhline(GOAL["reconfiguration_ms_p50"], color="#494", ls=":", lw=1,
                    label="goal: p50 5 ms")  # fmt: skip
    axes[1].axhline(GOAL["lost_beyond_off_wire"], color="#494", ls=":", lw=1,
                    label="goal: 1 lost once told")  # fmt: skip
    for ax, title, ylabel in (
        (axes[0], "reconfiguration: change -> last BARRIER reply (daemon)", "ms"),
        (axes[1], "pings lost per move (mean; dots: each move)", "pings (every 10 ms)"),
    ):
        ax.set_xticks(range(len(names)), names)
        ax.set(title=title, ylabel=ylabel)
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_migration(
    quick: bool = False,
    moves: int | None = None,
    detect: bool = False,
    rate: str | None = None,
    store: bool = True,
    replug: bool = False,
    as_json: bool = False,
    plot_path: str | None = None,
) -> int:
    n = moves if moves is not None else (QUICK_MOVES if quick else MOVES)
    if n < 1:
        print("tenantvisor bench: --moves N needs N >= 1", file=sys.stderr)
        return 2
    try:
        _rate_bps(rate or TCP_RATE)
    except ValueError as exc:
        print(f"tenantvisor bench: {exc}", file=sys.stderr)
        return 2
    result = run(Config(moves=n, detect=detect, rate=rate or TCP_RATE, store=store, replug=replug))
    return emit(
        result, plot=plot, table=table, plot_path=plot_path, as_json=as_json,
        default_plot="bench-migration.png",
    )  # fmt: skip


__all__ = ["Config", "percentile", "run", "run_migration", "targets"]
