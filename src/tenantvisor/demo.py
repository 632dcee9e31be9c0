"""`tenantvisor demo`: two tenants with overlapping addresses over one emulated fabric.

Builds the fabric (Open vSwitch userspace datapath, hosts in network namespaces), starts the
daemon as `tenantvisor serve` would run, lets each tenant lay out its own virtual network
(tenant A over REST, tenant B over the OpenVirteX JSON-RPC API) controlled by its own
unmodified `ovs-testcontroller -O OpenFlow13`, pings all pairs inside each tenant, shows that
nothing crosses between tenants, prints a summary and removes everything it created.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tenantvisor.testbed.controllers import TestController
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.scenario import (
    EXTRA_B_IP,
    OUTSIDER_IP,
    Layout,
    fat_tree_layout,
    pingall,
    rx_packets,
    setup_tenants,
    two_tier_layout,
)


def _say(msg: str) -> None:
    print(msg, flush=True)


def run_demo(
    topology: str = "fat-tree", keep_logs: bool = False, scalability: str = "exact"
) -> int:
    if os.geteuid() != 0:
        print("tenantvisor demo: run as root (network namespaces, Open vSwitch)", file=sys.stderr)
        return 1
    for tool in ("ovs-vswitchd", "ovsdb-server", "ovs-testcontroller", "ip"):
        if shutil.which(tool) is None:
            print(f"tenantvisor demo: {tool} not found (run `make demo`)", file=sys.stderr)
            return 1
    layout: Layout = fat_tree_layout() if topology == "fat-tree" else two_tier_layout()
    rundir = Path(tempfile.mkdtemp(prefix="tenantvisor-demo-"))
    t0 = time.monotonic()
    topo = layout.topo
    _say(
        f"== building the physical fabric: {topo.name}, {len(topo.switches)} Open vSwitch "
        f"bridges (userspace datapath), {len(topo.links)} links, {len(topo.hosts)} hosts"
    )
    fab = Fabric(topo)
    daemon: Daemon | None = None
    controllers: list[TestController] = []
    ok = False
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir, sock).start()
        _say(f"== tenantvisor serving: API {daemon.url}, pswitches on {sock}")
        fab.set_controller(sock)
        a, b = setup_tenants(fab, daemon, layout, rundir, controllers, scalability=scalability)
        if scalability != "exact":
            _say(f"== both networks at flow-rule reduction level {scalability}")
        phys = daemon.get("/v1/physical/topology").json()
        _say(
            f"== discovered {len(phys['switches'])} pswitches and {len(phys['links'])} link "
            f"directions by LLDP"
        )
        for t, shape in ((a, "star through a hub vswitch"), (b, "chain of multi-hop vlinks")):
            net = daemon.rest("GET", f"/v1/networks/{t.net_id}", token=t.token)
            _say(
                f"== tenant {t.name}: network {t.net_id}, {len(net['switches'])} vswitches, "
                f"{len(net['links'])} vlinks ({shape}), hosts {', '.join(t.hosts)}"
            )
        hosts = topo.hosts
        shared = [
            f"{e.host_a}/{e.host_b}={hosts[e.host_a].ip},{hosts[e.host_a].mac}"
            for e in layout.edges
        ]
        _say("== same IP and MAC in both tenants: " + "  ".join(shared))

        results = {}
        b_hosts = b.hosts
        before = {h: rx_packets(fab, h) for h in b_hosts}
        results["alice"] = pingall(fab, layout, a.hosts)
        leaked_into_b = {h: rx_packets(fab, h) - before[h] for h in b_hosts}
        results["bob"] = pingall(fab, layout, b.hosts)
        for name, rs in results.items():
            good = sum(r.ok for r in rs)
            _say(f"== tenant {name}: pingall {good}/{len(rs)} pairs reachable")
            for r in rs:
                if not r.ok:
                    _say(f"   FAILED {r.src} -> {r.dst}")
        cross = [
            ("alice " + layout.edges[0].host_a, EXTRA_B_IP, "bob's host hx"),
            ("alice " + layout.edges[0].host_a, OUTSIDER_IP, "unregistered host"),
            ("bob " + layout.edges[0].host_b, OUTSIDER_IP, "unregistered host"),
        ]
        cross_ok = True
        for who, ip, what in cross:
            reached = fab.host(who.split()[1]).ping(ip, count=2, timeout=2)
            cross_ok &= not reached
            _say(f"== isolation: {who} -> {ip} ({what}): {'REACHED' if reached else 'blocked'}")
        leaks = sum(leaked_into_b.values())
        _say(f"== isolation: packets bob's hosts received during alice's pingall: {leaks}")
        all_ok = all(r.ok for rs in results.values() for r in rs)
        ok = all_ok and cross_ok and leaks == 0
        st = daemon.get("/v1/status").json()
        flows = sum(v["flows"] for v in st["vswitches"])
        sent = sum(p["flow_mods_sent"] for p in st["pswitches"])
        phys, n_shared = _tenant_rules(fab, {a.net_id, b.net_id})
        _say(
            f"== summary: {'PASS' if ok else 'FAIL'} in {time.monotonic() - t0:.1f}s — "
            f"{flows} virtual rules installed by the tenants' controllers, "
            f"{phys} physical rules for them on the pswitches ({n_shared} shared: reduced or "
            f"LITE), {sent} FLOW_MODs sent to pswitches"
        )
    except Exception as exc:  # a demo reports, cleans up, and exits non-zero
        _say(f"== demo failed: {exc}")
        if daemon is not None:
            _say(daemon.log_tail(30))
    finally:
        _cleanup(fab, daemon, controllers, rundir, keep_logs)
    return 0 if ok else 1


def _tenant_rules(fab: Fabric, nets: set[int]) -> tuple[int, int]:
    """The networks' physical rules standing for tenant rules, and of those the shared
    ones (reduced and LITE rules, and their exception drops)."""
    per = fab.tenant_rules(nets).values()
    return sum(own + shared for own, shared in per), sum(shared for _, shared in per)


def _cleanup(
    fab: Fabric,
    daemon: Daemon | None,
    controllers: list[TestController],
    rundir: Path,
    keep_logs: bool,
) -> None:
    if daemon is not None:
        daemon.stop()
    for c in controllers:
        c.stop()
    fab.close()
    if keep_logs:
        _say(f"== logs kept in {rundir}")
    else:
        shutil.rmtree(rundir, ignore_errors=True)
    _say("== cleaned up: fabric, namespaces, daemons and controllers removed")
