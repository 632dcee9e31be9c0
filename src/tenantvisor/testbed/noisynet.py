"""Two tenants over a ring of four pswitches, one of them hostile: the noisy-neighbour
scenario of `tenantvisor bench noisy-neighbour` and its end-to-end test (issue 11).

```
      h1 (A)  h2 (B)                    h3 (A)  h4 (B)
         1      2                          1      2
          [  s1  ]3 ------------------ 4[  s2  ]
              4                             3
              |                             |
              3                             4
          [  s4  ]4 ------------------ 3[  s3  ]
```

* tenant **A** (noisy): vswitch A1 on s1 (host h1, link vports on ports 3 and 4), A2 on s2
  (host h3, link vports on ports 4 and 3); vlink X joins them over the direct link s1-s2,
  vlink Y the long way round (s1-s4-s3-s2), so A's slice holds a cycle.  Its controller
  (:class:`FloodController`) installs ``in_port=P -> FLOOD`` for every vport only while a
  loop is wanted: every broadcast then circulates A1 -> X -> A2 -> Y -> A1 forever, both
  ways, and h1 blasts broadcast frames into it (:meth:`NoisyNet.start_loop`).
* tenant **B** (quiet): vswitch B1 on s1 (host h2, link vport on port 3), B2 on s2 (host h4,
  link vport on port 4), one vlink over the same s1-s2 link as A's X; fixed ``in_port``
  rules from :class:`~tenantvisor.testbed.proactive.ProactiveController`, static ARP.
* every pswitch is a bridge of the same ``ovs-vswitchd`` (one userspace datapath on two
  shared cores): what A's loop costs it, B's packets wait for.

The admin sets A's limits through the API (:meth:`NoisyNet.set_limits`); the daemon's
defaults (``--default-limits``) apply to both tenants unless overridden.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.testbed.controllers import free_tcp_port
from tenantvisor.testbed.daemon import Daemon, DaemonError
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import OFPeer, VSwitchControllers
from tenantvisor.testbed.proactive import ProactiveController, Rule
from tenantvisor.testbed.scenario import VSwitchLayout, connect_hosts, make_vswitches, wait_physical
from tenantvisor.testbed.topo import ring

_DP = ProtocolDesc(ofp.OFP_VERSION)
_HDR = struct.Struct("!BBHI")
BLAST_ETHERTYPE = 0x88B5  # IEEE local experimental: no host stack answers it
BLAST_RATE = 2000.0  # broadcast frames/s h1 sends into A's loop
LINK_S1_S2 = 3  # s1's port facing s2: A's X and B's vlink share it

# vswitch -> (pswitch, host, {vlink name: physical port of its vport})
A_LAYOUT: VSwitchLayout = {
    "A1": ("s1", "h1", {"X": 3, "Y": 4}),
    "A2": ("s2", "h3", {"X": 4, "Y": 3}),
}
B_LAYOUT: VSwitchLayout = {
    "B1": ("s1", "h2", {"L": 3}),
    "B2": ("s2", "h4", {"L": 4}),
}


class FloodController(VSwitchControllers):
    """Tenant A's controller: FLOOD rules on demand, taken away on demand.

    One thread per vswitch does all its socket I/O (sends what is queued, answers ECHOs,
    hands BARRIER replies to whoever waits), so rules can be installed and cleared at any
    time (ProactiveController reads only once its rules are in)."""

    def __init__(self) -> None:
        super().__init__()
        self._replies: dict[int, threading.Event] = {}
        self._outbox: dict[int, list[bytes]] = {}
        self._errors: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def accept(self, vdpids: set[int], timeout: float = 20.0) -> None:
        super().accept(vdpids, timeout)
        for vdpid, peer in self.peers.items():
            th = threading.Thread(target=self._read, args=(vdpid, peer), daemon=True)
            th.start()
            self._threads.append(th)

    def _read(self, vdpid: int, peer: OFPeer) -> None:
        while not self._stop.is_set() and not peer.eof:
            with self._lock:
                out, self._outbox[vdpid] = self._outbox.get(vdpid, []), []
            for msg in out:
                peer.send(msg)
            m = peer.recv(0.05)
            if m is None:
                continue
            with self._lock:
                if m[0] == ofp.OFPT_BARRIER_REPLY and m[1] in self._replies:
                    self._replies[m[1]].set()
                elif m[0] == ofp.OFPT_ERROR:
                    self._errors.append((vdpid, m[2]))

    def _send(self, vdpid: int, msgs: list[Any], timeout: float = 10.0) -> None:
        """Send os-ken messages and a BARRIER; wait for its reply; raise on any ERROR."""
        peer = self.peers[vdpid]
        with self._lock:
            box = self._outbox.setdefault(vdpid, [])
            for msg in msgs:
                msg.set_xid(peer.next_xid())
                msg.serialize()
                box.append(bytes(msg.buf))
            xid = peer.next_xid()
            done = self._replies[xid] = threading.Event()
            box.append(_HDR.pack(ofp.OFP_VERSION, ofp.OFPT_BARRIER_REQUEST, 8, xid))
        if not done.wait(timeout):
            raise RuntimeError(f"vswitch {vdpid:016x}: no BARRIER reply")
        with self._lock:
            del self._replies[xid]
            errors, self._errors = self._errors, []
        if errors:
            etype, code = struct.unpack_from("!HH", errors[0][1], 8)
            raise RuntimeError(f"vswitch {errors[0][0]:016x} refused: type {etype} code {code}")

    def flood(self, vdpid: int, vports: list[int]) -> None:
        """What enters any of `vports` goes out of every other (OFPP_FLOOD)."""
        self._send(vdpid, [
            p.OFPFlowMod(
                _DP, cookie=0xF100D, priority=100, match=p.OFPMatch(in_port=v),
                instructions=[p.OFPInstructionActions(
                    ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(ofp.OFPP_FLOOD)])],
            )
            for v in vports
        ])  # fmt: skip

    def clear(self, vdpid: int) -> None:
        """Every rule of the vswitch deleted (what the loop was made of)."""
        self._send(vdpid, [
            p.OFPFlowMod(_DP, command=ofp.OFPFC_DELETE, table_id=ofp.OFPTT_ALL,
                         out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=p.OFPMatch())
        ])  # fmt: skip

    def close(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(2.0)
        self.listener.close()


_BLASTER = """
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
frame, rate = bytes.fromhex(sys.argv[1]), float(sys.argv[2])
tick, t, n = 0.005, time.monotonic(), 0.0
while True:
    n += rate * tick
    while n >= 1:
        n -= 1
        try:
            s.send(frame)
        except OSError:
            pass
    t += tick
    time.sleep(max(0.0, t - time.monotonic()))
"""


@dataclass
class TenantNet:
    token: str
    net_id: int
    vdpid: dict[str, int]  # vswitch name -> vdpid
    vports: dict[str, dict[str, int]]  # vswitch name -> "host" / vlink name -> vport


@dataclass
class NoisyNet:
    fab: Fabric
    daemon: Daemon
    a: TenantNet
    b: TenantNet
    a_ctl: FloodController
    b_ctl: ProactiveController
    rundir: Path
    hammer_url: str = ""  # where a second controller of A's (a hammer) reaches its vswitch X
    blaster: Any = None
    looping: bool = False
    notes: list[str] = field(default_factory=list)

    def host_ip(self, host: str) -> str:
        return self.fab.topo.host(host).ip

    # --- the hostile tenant -------------------------------------------------------------
    def start_loop(self, rate: float = BLAST_RATE) -> None:
        """A's FLOOD rules in both vswitches (the cycle X-Y closes), then h1 blasts
        broadcast frames into it at `rate` frames/s."""
        for vs, ports in self.a.vports.items():
            self.a_ctl.flood(self.a.vdpid[vs], sorted(ports.values()))
        h1 = self.fab.topo.host("h1")
        mac = bytes.fromhex(h1.mac.replace(":", ""))
        frame = (b"\xff" * 6 + mac + struct.pack("!H", BLAST_ETHERTYPE)).ljust(60, b"\x00")
        self.blaster = self.fab.host("h1").popen(
            [sys.executable, "-c", _BLASTER, frame.hex(), str(rate)]
        )
        self.looping = True

    def stop_loop(self, drain: float = 1.0) -> None:
        """The blast stops and A's rules go (what circulates dies at the next table miss)."""
        if self.blaster is not None and self.blaster.poll() is None:
            self.blaster.terminate()
            try:
                self.blaster.wait(3)
            except Exception:
                self.blaster.kill()
        self.blaster = None
        if self.looping:
            for vs in self.a.vdpid:
                self.a_ctl.clear(self.a.vdpid[vs])
            self.looping = False
            time.sleep(drain)

    # --- the admin ----------------------------------------------------------------------
    def set_limits(self, body: dict[str, int], net: TenantNet | None = None) -> None:
        """The admin's override for A's network (or `net`'s); waits until what the API
        reports in force has one meter per vport and vlink direction the limits name."""
        n = net or self.a
        got = self.daemon.rest("PUT", f"/v1/networks/{n.net_id}/limits", body)
        eff = got["effective"]
        want = (2 if eff["vport_pps"] or eff["vport_kbps"] else 0) + (
            2 * len({k for ports in n.vports.values() for k in ports if k != "host"})
            if eff["vlink_pps"] or eff["vlink_kbps"] else 0
        )  # fmt: skip
        self.daemon.wait_for(
            f"network {n.net_id}'s {want} limit meters",
            lambda _: len(self.limits(n)["meters"]) == want, timeout=10,
        )  # fmt: skip
        time.sleep(0.5)  # the last rollout's BARRIERs: the rules name the meters now

    def limits(self, net: TenantNet | None = None) -> dict[str, Any]:
        n = net or self.a
        return dict(self.daemon.rest("GET", f"/v1/networks/{n.net_id}/limits"))

    # --- measuring ----------------------------------------------------------------------
    def tx_packets(self, switch: str, port: int) -> int:
        out = self.fab.ofctl(switch, "dump-ports", str(port))
        for line in out.splitlines():
            if "tx pkts=" in line:
                return int(line.split("tx pkts=")[1].split(",")[0])
        raise RuntimeError(f"no tx counter for {switch} port {port} in:\n{out}")

    def vswitchd_cpu(self) -> float:
        """CPU seconds ovs-vswitchd (every pswitch's datapath) has used so far."""
        assert self.fab.ovs is not None
        pid = int(self.fab.ovs.pidfile("ovs-vswitchd").read_text().strip())
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def explain(self, msg: str, lines: int = 60) -> str:
        return f"{msg}\n--- tenantvisor log (last {lines} lines) ---\n{self.daemon.log_tail(lines)}"


def _tenant(
    daemon: Daemon, fab: Fabric, name: str, layout: VSwitchLayout,
    ctl_url: str, listen: str | None = None,
) -> TenantNet:  # fmt: skip
    """The tenant's network of two vswitches; `listen` (ptcp:PORT:IP): the first also
    takes controllers there (a second controller of the tenant's, e.g. a hammer)."""
    token = daemon.rest("POST", "/v1/tenants", {"name": name})["token"]
    net_id = daemon.rest("POST", "/v1/networks", {"controller_urls": [ctl_url]}, token)["id"]
    path = f"/v1/networks/{net_id}"
    vdpid, vports = make_vswitches(daemon, fab, net_id, token, layout)
    if listen is not None:
        urls = {"controller_urls": [ctl_url, listen]}
        daemon.rest("PUT", f"{path}/switches/{vdpid[next(iter(layout))]}/controllers", urls,
                    token)  # fmt: skip
    names = sorted({lk for _, _, links in layout.values() for lk in links})
    (v1, v2) = list(layout)
    for lk in names:
        body = {"src_vdpid": vdpid[v1], "src_vport": vports[v1][lk],
                "dst_vdpid": vdpid[v2], "dst_vport": vports[v2][lk]}  # fmt: skip
        daemon.rest("POST", f"{path}/links", body, token)
    connect_hosts(daemon, fab, net_id, token, layout, vdpid, vports)
    daemon.rest("POST", f"{path}/start", None, token)
    return TenantNet(token, net_id, vdpid, vports)


@contextmanager
def noisy_network(
    *, default_limits: str | None = None, log_level: str = "info",
    lldp_interval: float = 0.5,
) -> Iterator[NoisyNet]:  # fmt: skip
    """The scenario of the module docstring, running (A's loop not started); everything is
    removed on the way out, also when setting up failed half way.  `default_limits`: the
    daemon's ``--default-limits`` (None: unlimited)."""
    rundir = Path(tempfile.mkdtemp(prefix="tv-noisy-"))
    topo = ring(4, 2)
    fab = Fabric(topo)
    daemon: Daemon | None = None
    a_ctl, b_ctl = FloodController(), ProactiveController()
    net: NoisyNet | None = None
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        extra = ["--default-limits", default_limits] if default_limits else []
        daemon = Daemon(rundir, sock, lldp_interval=lldp_interval, log_level=log_level,
                        extra_args=extra).start()  # fmt: skip
        fab.set_controller(sock)
        fab.wait_connected(timeout=15)
        wait_physical(daemon, topo)
        hammer_port = free_tcp_port()
        a = _tenant(daemon, fab, "noisy", A_LAYOUT, a_ctl.url,
                    listen=f"ptcp:{hammer_port}:127.0.0.1")  # fmt: skip
        b = _tenant(daemon, fab, "quiet", B_LAYOUT, b_ctl.url)
        a_ctl.accept(set(a.vdpid.values()))
        b_ctl.accept(set(b.vdpid.values()))
        for vs in B_LAYOUT:
            v = b.vports[vs]
            b_ctl.install(b.vdpid[vs], [Rule(v["host"], v["L"]), Rule(v["L"], v["host"])])
        b_ctl.start()
        fab.static_neighbour("h2", "h4")
        fab.static_neighbour("h4", "h2")
        net = NoisyNet(fab, daemon, a, b, a_ctl, b_ctl, rundir,
                       hammer_url=f"tcp:127.0.0.1:{hammer_port}")  # fmt: skip
        if not fab.host("h2").ping(net.host_ip("h4"), timeout=15):
            raise DaemonError(net.explain("h2 cannot reach h4 after setup"))
        yield net
    finally:
        if net is not None:
            try:
                net.stop_loop(drain=0)
            except Exception as exc:  # the fabric goes anyway
                sys.stderr.write(f"noisy scenario: stopping A's loop failed: {exc}\n")
        a_ctl.close()
        b_ctl.close()
        if daemon is not None:
            daemon.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)


__all__ = ["A_LAYOUT", "B_LAYOUT", "FloodController", "NoisyNet", "TenantNet", "noisy_network"]
