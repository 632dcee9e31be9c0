"""One tenant network over a ring of four pswitches: the failover and reconnect scenario.

```
        h1                         vswitch A on s1: host h1, vport AB (port 2, faces s2),
        s1 --2------3-- s2 -- h2                     vport AC (port 3, faces s4)
        |3              |2     vswitch B on s2: host h2, vport BA (port 3, faces s1)
        |2              |3     vswitch C on s3: host h3, vport CA (port 2, faces s4)
        s4 --3------2-- s3 -- h3
```

* vlink **AB** (A-B, adjacent pswitches): primary path the direct link s1-s2, which is local
  to the head-end of both directions; its backup goes the long way, s1-s4-s3-s2.
* vlink **AC** (A-C, opposite pswitches): primary s1-s4-s3 (it leaves through AC's port),
  backup s1-s2-s3.  Link s4-s3 is remote to s1, the head-end of h1 -> h3.
* Every vlink is created with ``algorithm: "spf"`` and ``backup_num`` (1 by default).
* The tenant's controller is :class:`~tenantvisor.testbed.proactive.ProactiveController`:
  ``in_port`` rules host <-> vlink (A also matches ``eth_dst``, it has two vlinks), then it
  only records what the vswitches send.  Hosts have static neighbour entries, so no ARP and
  no flooding: every message the tenant gets afterwards is news.
* s4 hosts no vswitch: it is a pure transit pswitch of AC's primary path.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tenantvisor.testbed.daemon import Daemon, DaemonError
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.pingmon import PingMonitor
from tenantvisor.testbed.proactive import ProactiveController, Rule
from tenantvisor.testbed.scenario import VSwitchLayout, connect_hosts, make_vswitches, wait_physical
from tenantvisor.testbed.topo import ring

# vswitch name -> (pswitch, host, {vlink name: physical port of its vport})
LAYOUT: VSwitchLayout = {
    "A": ("s1", "h1", {"AB": 2, "AC": 3}),
    "B": ("s2", "h2", {"AB": 3}),
    "C": ("s3", "h3", {"AC": 2}),
}
VLINKS = {"AB": ("A", "B"), "AC": ("A", "C")}


class BackupRefused(DaemonError):
    """The API refused ``backup_num``/``algorithm`` on a vlink (no backup paths yet)."""


@dataclass
class RingNet:
    fab: Fabric
    daemon: Daemon
    ctl: ProactiveController
    token: str
    net_id: int
    vdpid: dict[str, int]  # vswitch name -> vdpid
    vports: dict[str, dict[str, int]]  # vswitch name -> "host" / vlink name -> vport number
    links: dict[str, int]  # vlink name -> id
    backup_num: int  # what the vlinks were created with (0 when the API refused more)
    rundir: Path
    notes: list[str] = field(default_factory=list)

    # --- names ------------------------------------------------------------------------------
    def switch_of(self, dpid: int) -> str:
        return self.fab.topo.switch_by_dpid(dpid).name

    def dpid(self, switch: str) -> int:
        return self.fab.dpid(switch)

    def host_ip(self, host: str) -> str:
        return self.fab.topo.host(host).ip

    # --- API --------------------------------------------------------------------------------
    def network(self) -> dict[str, Any]:
        return dict(self.daemon.rest("GET", f"/v1/networks/{self.net_id}", None, self.token))

    def vlink(self, name: str) -> dict[str, Any]:
        for lk in self.network()["links"]:
            if lk["id"] == self.links[name]:
                return dict(lk)
        raise KeyError(f"vlink {name} not in the network any more")

    def path(self, name: str) -> list[tuple[str, str]] | None:
        """The vlink's current physical path as ``[(switch, switch), ...]`` hops, src to dst,
        as the API reports it (``None``: no path now)."""
        hops = self.vlink(name).get("path")
        if hops is None:
            return None
        return [(self.switch_of(h["src_dpid"]), self.switch_of(h["dst_dpid"])) for h in hops]

    def pswitch(self, switch: str) -> dict[str, Any] | None:
        """The daemon's status entry of ``switch``; None while it is not connected (absent,
        or listed with ``connected: false``)."""
        dpid = self.dpid(switch)
        for ps in self.daemon.get("/v1/status").json()["pswitches"]:
            if ps["dpid"] == dpid and ps.get("connected", True):
                return dict(ps)
        return None

    def wait_pswitch(self, switch: str, present: bool, timeout: float = 15.0) -> float | None:
        """Wait until the daemon has ``switch`` connected (and synced, when its status says
        so), or no longer connected; the time it took, or None."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            ps = self.pswitch(switch)
            if present and ps is not None and ps.get("synced", True):
                return time.monotonic() - t0
            if not present and ps is None:
                return time.monotonic() - t0
            time.sleep(0.02)
        return None

    def wait_links(self, timeout: float = 20.0) -> None:
        """Wait until the daemon knows every fabric link again (both directions)."""
        want = 2 * len(self.fab.topo.links)
        self.daemon.wait_for(f"{want} link directions", lambda st: st["links"] == want, timeout)

    def flow_mods_sent(self, switch: str) -> int | None:
        ps = self.pswitch(switch)
        return None if ps is None else int(ps.get("flow_mods_sent", 0))

    def metric_flow_mods(self, switch: str) -> float | None:
        """``tenantvisor_pswitch_flow_mods_sent`` of ``switch`` from ``/metrics`` (None: absent)."""
        r = httpx.get(
            self.daemon.url + "/metrics",
            headers={"Authorization": f"Bearer {self.daemon.admin_token}"},
            timeout=10,
        )
        if r.status_code != 200:
            return None
        label = f'dpid="{self.dpid(switch):016x}"'
        for line in r.text.splitlines():
            if line.startswith("tenantvisor_pswitch_flow_mods_sent") and label in line:
                if "_created" in line.split("{")[0]:
                    continue
                return float(line.rsplit(" ", 1)[1])
        return None

    # --- events -----------------------------------------------------------------------------
    def cut(self, a: str, b: str) -> float:
        """Take link ``a``-``b`` down; returns ``time.time()`` just before."""
        t = time.time()
        self.fab.set_link_state(a, b, up=False)
        return t

    def restore(self, a: str, b: str) -> float:
        t = time.time()
        self.fab.set_link_state(a, b, up=True)
        return t

    def ping(self, src: str, dst: str, interval: float = 0.01) -> PingMonitor:
        return PingMonitor(self.fab.host(src).netns, self.host_ip(dst), interval).start()

    def explain(self, msg: str, lines: int = 60) -> str:
        """``msg`` with the daemon's last log lines, for assertion messages."""
        return f"{msg}\n--- tenantvisor log (last {lines} lines) ---\n{self.daemon.log_tail(lines)}"


def _create_link(
    daemon: Daemon, net_id: int, token: str, body: dict[str, Any], backup_num: int, strict: bool
) -> tuple[dict[str, Any], int]:
    """POST the vlink with ``algorithm``/``backup_num``; if the API refuses those fields and
    ``strict`` is off, create it without them (today's shortest path only)."""
    full = {**body, "algorithm": "spf", "backup_num": backup_num}
    r = daemon.post(f"/v1/networks/{net_id}/links", full, token)
    if r.status_code < 400:
        return r.json(), backup_num
    refused = r.status_code == 422 and ("backup_num" in r.text or "algorithm" in r.text)
    if not refused:
        raise DaemonError(f"POST links: HTTP {r.status_code}: {r.text}")
    if strict:
        raise BackupRefused(f"POST links with backup_num={backup_num}: HTTP 422: {r.text}")
    return dict(daemon.rest("POST", f"/v1/networks/{net_id}/links", body, token)), 0


@contextmanager
def ring_network(
    *,
    backup_num: int = 1,
    strict_backup: bool = True,
    lldp_interval: float = 0.5,
    log_level: str = "info",
    daemon_args: list[str] | None = None,
) -> Iterator[RingNet]:
    """The scenario of the module docstring, running; everything is removed on the way out,
    also when setting up failed half way.  ``strict_backup=False`` creates the vlinks without
    backups when the API refuses ``backup_num`` (see :attr:`RingNet.backup_num`)."""
    rundir = Path(tempfile.mkdtemp(prefix="tv-ring-"))
    topo = ring(4, 1)
    fab = Fabric(topo)
    daemon: Daemon | None = None
    ctl = ProactiveController()
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(
            rundir, sock, lldp_interval=lldp_interval, log_level=log_level, extra_args=daemon_args
        ).start()
        fab.set_controller(sock)
        fab.wait_connected(timeout=15)
        wait_physical(daemon, topo)
        token = daemon.rest("POST", "/v1/tenants", {"name": "ring"})["token"]
        net_id = daemon.rest("POST", "/v1/networks", {"controller_urls": [ctl.url]}, token)["id"]
        vdpid, vports = make_vswitches(daemon, fab, net_id, token, LAYOUT)
        link_ids: dict[str, int] = {}
        made_with = backup_num
        for name, (src, dst) in VLINKS.items():
            body: dict[str, Any] = {
                "src_vdpid": vdpid[src],
                "src_vport": vports[src][name],
                "dst_vdpid": vdpid[dst],
                "dst_vport": vports[dst][name],
            }
            lk, made_with = _create_link(daemon, net_id, token, body, backup_num, strict_backup)
            link_ids[name] = lk["id"]
        connect_hosts(daemon, fab, net_id, token, LAYOUT, vdpid, vports)
        daemon.rest("POST", f"/v1/networks/{net_id}/start", None, token)
        ctl.accept(set(vdpid.values()))
        a = vports["A"]
        ctl.install(
            vdpid["A"],
            [
                Rule(a["host"], a["AB"], eth_dst=topo.host("h2").mac),
                Rule(a["host"], a["AC"], eth_dst=topo.host("h3").mac),
                Rule(a["AB"], a["host"]),
                Rule(a["AC"], a["host"]),
            ],
        )
        for vs, name in (("B", "AB"), ("C", "AC")):
            v = vports[vs]
            ctl.install(vdpid[vs], [Rule(v["host"], v[name]), Rule(v[name], v["host"])])
        ctl.start()
        for host, peer in (("h1", "h2"), ("h1", "h3"), ("h2", "h1"), ("h3", "h1")):
            fab.static_neighbour(host, peer)
        net = RingNet(fab, daemon, ctl, token, net_id, vdpid, vports, link_ids, made_with, rundir)
        if made_with != backup_num:
            net.notes.append(
                f"the API refused backup_num={backup_num}: vlinks made without backups"
            )
        for dst in ("h2", "h3"):
            if not fab.host("h1").ping(net.host_ip(dst), timeout=15):
                raise DaemonError(net.explain(f"h1 cannot reach {dst} after setup"))
        yield net
    finally:
        ctl.close()
        if daemon is not None:
            daemon.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)


__all__ = ["LAYOUT", "VLINKS", "BackupRefused", "RingNet", "ring_network"]
