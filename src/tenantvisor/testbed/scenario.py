"""The two-tenant scenario of the demo and the end-to-end tests.

Two tenants share every edge pswitch.  On each edge switch tenant A's host and tenant B's
host have the *same* MAC and IPv4 address, on different physical ports.  Their virtual
topologies differ:
- tenant A (configured over the REST API): a star, every edge vswitch joined by a vlink
  to a vswitch on one hub pswitch (its vlinks share physical ports on the hub);
- tenant B (configured over the OpenVirteX JSON-RPC API, as ovxctl does): a chain of edge
  vswitches whose vlinks are multi-hop physical paths through the other uplink, every
  middle vswitch having two vports on the same physical port.
B also has one host with an address A does not have, and an unregistered outsider host sits
on the first edge switch: neither tenant may reach it or be reached by it.
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

from tenantvisor.testbed.controllers import TestController, free_tcp_port
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener
from tenantvisor.testbed.topo import Topology, fat_tree, two_tier

EXTRA_B_IP = "10.0.0.99"
OUTSIDER_IP = "10.0.0.200"


@dataclass(frozen=True)
class Edge:
    switch: str
    host_a: str
    host_b: str
    up_a: int  # uplink port tenant A's vlink leaves through
    up_b: int  # uplink port tenant B's vlinks leave through
    hub_port: int  # port of the hub where tenant A's path from this edge arrives


@dataclass
class Layout:
    topo: Topology
    edges: list[Edge]
    hub: str
    extra_b: str  # host name: tenant B only, unique address
    outsider: str  # host name: registered to nobody


@dataclass
class TenantRun:
    name: str
    token: str
    net_id: int
    hosts: list[str]
    controller: TestController
    vdpids: dict[str, int] = field(default_factory=dict)  # pswitch name -> vdpid


def _address(topo: Topology, host: str, index: int) -> None:
    topo.set_host_address(host, mac=f"02:00:00:00:00:{index:02x}", ipv4=f"10.0.0.{index}/24")


def two_tier_layout(n_leaves: int = 3) -> Layout:
    """Leaf-spine (2 spines): A's hub is spine 1, B's chain runs leaf to leaf over spine 2."""
    topo = two_tier(n_spines=2, n_leaves=n_leaves, hosts_per_leaf=2)
    edges = []
    for i in range(1, n_leaves + 1):
        a, b = f"h{2 * i - 1}", f"h{2 * i}"
        _address(topo, a, i)
        _address(topo, b, i)
        edges.append(Edge(f"lf{i}", a, b, up_a=3, up_b=4, hub_port=i))
    return _finish(topo, edges, "sp1")


def fat_tree_layout() -> Layout:
    """k=4 fat tree: A's hub is core c1 (2-hop vlinks), B's chain crosses pods (up to 4 hops)."""
    topo = fat_tree(4)
    edges = []
    for e in range(1, 9):
        a, b = f"h{2 * e - 1}", f"h{2 * e}"
        _address(topo, a, e)
        _address(topo, b, e)
        pod = (e - 1) // 2
        edges.append(Edge(f"e{e}", a, b, up_a=3, up_b=4, hub_port=pod + 1))
    return _finish(topo, edges, "c1")


def _finish(topo: Topology, edges: list[Edge], hub: str) -> Layout:
    last, first = edges[-1].switch, edges[0].switch
    topo.add_host("hx", last, mac="02:00:00:00:00:99", ipv4=f"{EXTRA_B_IP}/24")
    topo.add_host("ho", first, mac="02:00:00:00:00:c8", ipv4=f"{OUTSIDER_IP}/24")
    return Layout(topo, edges, hub, "hx", "ho")


def wait_physical(daemon: Daemon, topo: Topology, timeout: float = 30.0) -> None:
    n_sw, n_links = len(topo.switches), 2 * len(topo.links)
    daemon.wait_for(
        f"{n_sw} pswitches and {n_links} link directions",
        lambda st: len(st["pswitches"]) == n_sw and st["links"] == n_links,
        timeout,
    )


def restart_after_crash(
    old: Daemon, rundir: Path, daemons: list[Daemon] | None = None, pause: float = 0.0
) -> Daemon:
    """kill -9 `old`, wait `pause` (nobody controls the pswitches: they forward with what
    they have), and start the same hypervisor again: a new process in `rundir` with the
    same OpenFlow socket, admin token, state directory and settings.  It is put in
    `daemons` before it starts, so a fixture stops it whatever happens."""
    old.kill()
    if pause:
        time.sleep(pause)
    new = Daemon(
        rundir, old.of_listen, lldp_interval=old.lldp_interval, log_level=old.log_level,
        extra_args=old.extra_args, admin_token=old.admin_token, state_dir=old.state_dir,
    )  # fmt: skip
    if daemons is not None:
        daemons.append(new)
    return new.start()


def wait_reconciled_silently(
    daemon: Daemon, n_switches: int, timeout: float = 40.0
) -> dict[str, Any]:
    """Wait until every pswitch is back and reconciled, and check that none was sent
    anything to get there (a restart found its rules right); the daemon's status."""
    st: dict[str, Any] = daemon.wait_for(
        "every pswitch reconciled",
        lambda st: len(st["pswitches"]) == n_switches and all(p["synced"] for p in st["pswitches"]),
        timeout=timeout,
    )
    sent = [p["sync_messages"] for p in st["pswitches"]]
    if sent != [0] * n_switches:
        raise AssertionError(f"pswitches were sent {sent} to be reconciled:\n{daemon.log_tail(40)}")
    return st


def setup_tenants(
    fab: Fabric,
    daemon: Daemon,
    layout: Layout,
    rundir: Path,
    started: list[TestController],
    controller_version: str = "OpenFlow13",
    scalability: str = "exact",
) -> tuple[TenantRun, TenantRun]:
    """Create both tenants (both networks at flow-rule reduction level `scalability`);
    every controller started is appended to `started` at once, so the caller can stop them
    even when setup fails half way."""
    topo = layout.topo
    wait_physical(daemon, topo)
    dpid = {name: sw.dpid for name, sw in topo.switches.items()}
    hosts = topo.hosts

    # --- tenant A over REST ---------------------------------------------------------------
    ta = daemon.rest("POST", "/v1/tenants", {"name": "alice"})
    # rules with an idle timeout stay exact (their expiry is watched per rule), so at a
    # reduction level the learning switches install permanent rules (its own flag)
    extra = ["--max-idle=permanent"] if scalability != "exact" else []
    ca = TestController(free_tcp_port(), rundir / "ctl-alice", version=controller_version,
                        extra_args=extra)  # fmt: skip
    started.append(ca)
    ca.start()
    tok = ta["token"]
    net = daemon.rest(
        "POST", "/v1/networks",
        {"controller_urls": [f"tcp:127.0.0.1:{ca.port}"], "scalability": scalability}, tok,
    )  # fmt: skip
    nid = net["id"]
    a = TenantRun("alice", tok, nid, [e.host_a for e in layout.edges], ca)
    for sw in [layout.hub] + [e.switch for e in layout.edges]:
        r = daemon.rest("POST", f"/v1/networks/{nid}/switches", {"dpids": [dpid[sw]]}, tok)
        a.vdpids[sw] = r["vdpid"]
    for e in layout.edges:
        h = hosts[e.host_a]
        edge_vp = daemon.rest(
            "POST", f"/v1/networks/{nid}/ports", {"dpid": dpid[e.switch], "port": h.port}, tok
        )
        up = daemon.rest(
            "POST", f"/v1/networks/{nid}/ports", {"dpid": dpid[e.switch], "port": e.up_a}, tok
        )
        hub = daemon.rest(
            "POST",
            f"/v1/networks/{nid}/ports",
            {"dpid": dpid[layout.hub], "port": e.hub_port},
            tok,
        )
        daemon.rest(
            "POST",
            f"/v1/networks/{nid}/links",
            {
                "src_vdpid": a.vdpids[e.switch],
                "src_vport": up["number"],
                "dst_vdpid": a.vdpids[layout.hub],
                "dst_vport": hub["number"],
            },
            tok,
        )
        daemon.rest(
            "POST",
            f"/v1/networks/{nid}/hosts",
            {"vdpid": a.vdpids[e.switch], "vport": edge_vp["number"], "mac": h.mac},
            tok,
        )
    daemon.rest("POST", f"/v1/networks/{nid}/start", None, tok)

    # --- tenant B over OpenVirteX JSON-RPC ---------------------------------------------------
    tb = daemon.rest("POST", "/v1/tenants", {"name": "bob"})
    cb = TestController(free_tcp_port(), rundir / "ctl-bob", version=controller_version,
                        extra_args=extra)  # fmt: skip
    started.append(cb)
    cb.start()
    tok = tb["token"]
    r = daemon.rpc(
        "tenant",
        "createNetwork",
        {
            "controllerUrls": [f"tcp:127.0.0.1:{cb.port}"],
            "networkAddress": "10.0.0.0",
            "mask": 24,
            "scalability": scalability,
        },
        tok,
    )
    tid = r["tenantId"]
    b = TenantRun("bob", tok, tid, [e.host_b for e in layout.edges] + [layout.extra_b], cb)
    prev: tuple[int, int] | None = None  # (vdpid, vport) of the previous edge's right end
    for i, e in enumerate(layout.edges):
        r = daemon.rpc("tenant", "createSwitch", {"tenantId": tid, "dpids": [dpid[e.switch]]}, tok)
        vdpid = r["vdpid"]
        b.vdpids[e.switch] = vdpid
        attach = [e.host_b] + ([layout.extra_b] if i == len(layout.edges) - 1 else [])
        for hname in attach:
            h = hosts[hname]
            vp = daemon.rpc(
                "tenant",
                "createPort",
                {"tenantId": tid, "dpid": dpid[e.switch], "port": h.port},
                tok,
            )["vport"]
            daemon.rpc(
                "tenant",
                "connectHost",
                {"tenantId": tid, "vdpid": vdpid, "vport": vp, "mac": h.mac},
                tok,
            )
        if prev is not None:
            left = daemon.rpc(
                "tenant",
                "createPort",
                {"tenantId": tid, "dpid": dpid[e.switch], "port": e.up_b},
                tok,
            )["vport"]
            daemon.rpc(
                "tenant",
                "connectLink",
                {
                    "tenantId": tid,
                    "srcDpid": prev[0],
                    "srcPort": prev[1],
                    "dstDpid": vdpid,
                    "dstPort": left,
                    "algorithm": "spf",
                    "backup_num": 0,
                },
                tok,
            )
        if i < len(layout.edges) - 1:
            right = daemon.rpc(
                "tenant",
                "createPort",
                {"tenantId": tid, "dpid": dpid[e.switch], "port": e.up_b},
                tok,
            )["vport"]
            prev = (vdpid, right)
    daemon.rpc("tenant", "startNetwork", {"tenantId": tid}, tok)

    n_vsw = len(a.vdpids) + len(b.vdpids)
    daemon.wait_for(
        f"{n_vsw} vswitches connected to their controllers",
        lambda st: (
            len(st["vswitches"]) == n_vsw
            and all(v["controllers_connected"] for v in st["vswitches"])
        ),
    )
    return a, b


def rx_packets(fab: Fabric, host: str) -> int:
    out = fab.host(host).exec("cat /sys/class/net/eth0/statistics/rx_packets")
    return int(out.stdout.strip() or 0)


@dataclass
class PingResult:
    src: str
    dst: str
    ok: bool


def pingall(fab: Fabric, layout: Layout, names: list[str], count: int = 1) -> list[PingResult]:
    """Every ordered pair; a first failure is retried once (ARP + reactive rules take time)."""
    out = []
    hosts = layout.topo.hosts
    for s in names:
        for d in names:
            if s == d:
                continue
            ok = fab.host(s).ping(hosts[d].ip, count=count, timeout=3)
            if not ok:
                time.sleep(0.2)
                ok = fab.host(s).ping(hosts[d].ip, count=count, timeout=3)
            out.append(PingResult(s, d, ok))
    return out


@dataclass
class Running:
    """A built fabric, the daemon serving it, and the two tenants set up on it."""

    fab: Fabric
    daemon: Daemon
    layout: Layout
    alice: TenantRun
    bob: TenantRun
    rundir: Path


@contextmanager
def two_tenants(
    layout: Layout,
    *,
    protocols: dict[str, str] | None = None,
    controller_version: str = "OpenFlow13",
    daemon_args: list[str] | None = None,
) -> Iterator[Running]:
    """The two-tenant scenario, running; everything it started is stopped and removed on the
    way out, also when setting up failed half way."""
    rundir = Path(tempfile.mkdtemp(prefix="tv-scn-"))
    fab = Fabric(layout.topo, protocols=protocols)
    daemon: Daemon | None = None
    controllers: list[TestController] = []
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir, sock, extra_args=daemon_args).start()
        fab.set_controller(sock)
        a, b = setup_tenants(fab, daemon, layout, rundir, controllers, controller_version)
        yield Running(fab, daemon, layout, a, b, rundir)
    finally:
        if daemon is not None:
            daemon.stop()
        for c in controllers:
            c.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)


@dataclass
class Controlled:
    """A built fabric under one daemon (its state in `rundir`, every link found), and a
    listener the tests' own tenant controllers take their vswitches' connections on."""

    fab: Fabric
    topo: Topology
    daemon: Daemon
    daemons: list[Daemon]  # stopped on the way out: restarted daemons go here too
    listener: ControllerListener
    rundir: Path
    sock: str  # the daemon's OpenFlow socket (a restart listens on the same)


@contextmanager
def controlled_fabric(topo: Topology, prefix: str) -> Iterator[Controlled]:
    """`topo` built and controlled; everything is stopped and removed on the way out, also
    when setting up failed half way (what the e2e modules with their own controller share)."""
    rundir = Path(tempfile.mkdtemp(prefix=prefix))
    fab = Fabric(topo)
    listener = ControllerListener()
    daemons: list[Daemon] = []
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir / "d", sock, state_dir=rundir / "state")
        daemons.append(daemon)
        daemon.start()
        fab.set_controller(sock)
        wait_physical(daemon, topo)
        yield Controlled(fab, topo, daemon, daemons, listener, rundir, sock)
    finally:
        listener.close()
        for d in daemons:
            d.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)


# A tenant's vswitches, one per entry: vswitch name -> (pswitch, its host, {link vport name:
# the pswitch port it maps}).
VSwitchLayout = dict[str, tuple[str, str, dict[str, int]]]


def make_vswitches(
    daemon: Daemon, fab: Fabric, net_id: int, token: str, layout: VSwitchLayout
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Over REST, a vswitch per `layout` entry on its pswitch, with a vport for its host's
    port ("host") and one per named link port: (vdpid by vswitch, vport numbers by
    vswitch and name)."""
    path = f"/v1/networks/{net_id}"
    vdpid: dict[str, int] = {}
    vports: dict[str, dict[str, int]] = {}
    for vs, (sw, host, links) in layout.items():
        dp = fab.dpid(sw)
        vdpid[vs] = daemon.rest("POST", f"{path}/switches", {"dpids": [dp]}, token)["vdpid"]
        ports = {"host": fab.topo.host(host).port, **links}
        vports[vs] = {
            name: daemon.rest("POST", f"{path}/ports", {"dpid": dp, "port": phys}, token)["number"]
            for name, phys in ports.items()
        }
    return vdpid, vports


def connect_hosts(
    daemon: Daemon, fab: Fabric, net_id: int, token: str, layout: VSwitchLayout,
    vdpid: dict[str, int], vports: dict[str, dict[str, int]],
) -> None:  # fmt: skip
    """Each `layout` entry's host on its vswitch's "host" vport (make_vswitches)."""
    for vs, (_, host, _) in layout.items():
        body = {"vdpid": vdpid[vs], "vport": vports[vs]["host"], "mac": fab.topo.host(host).mac}
        daemon.rest("POST", f"/v1/networks/{net_id}/hosts", body, token)
