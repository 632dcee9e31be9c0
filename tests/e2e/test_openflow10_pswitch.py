"""Open vSwitch bridges restricted to OpenFlow 1.0 as pswitches (one table, the 1.0 driver).

The demo's two-tier scenario with spine sp2 and leaf lf2 speaking OpenFlow 1.0 only: bob's
chain of multi-hop vlinks crosses sp2 (tag swapped there by 1.0 rules) and has its middle
vswitch on lf2 (two vports on one uplink); alice's star has a vswitch on lf2 too, whose
host has the same MAC and IP as bob's there.  Both tenants reach all their hosts and never
each other's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tenantvisor.testbed.controllers import TestController
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.scenario import pingall, rx_packets, setup_tenants, two_tier_layout

pytestmark = pytest.mark.root


def test_openflow10_pswitches_carry_vlinks_and_host_vswitches_of_two_tenants() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (network namespaces, Open vSwitch)")
    rundir = Path(tempfile.mkdtemp(prefix="tv-of10p-"))
    layout = two_tier_layout()
    fab = Fabric(layout.topo, protocols={"sp2": "OpenFlow10", "lf2": "OpenFlow10"})
    daemon: Daemon | None = None
    controllers: list[TestController] = []
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir, sock).start()
        fab.set_controller(sock)
        a, b = setup_tenants(fab, daemon, layout, rundir, controllers)
        assert "OpenFlow 1.0 (transit only)" in daemon.log_text()
        before = {h: rx_packets(fab, h) for h in a.hosts}
        failed = [(r.src, r.dst) for r in pingall(fab, layout, b.hosts) if not r.ok]
        assert not failed, failed  # every one of bob's vlinks crosses sp2
        assert {h: rx_packets(fab, h) for h in a.hosts} == before
        failed = [(r.src, r.dst) for r in pingall(fab, layout, a.hosts) if not r.ok]
        assert not failed, failed
        status = daemon.get("/v1/status").json()
        lf2 = layout.topo.switches["lf2"].dpid
        on_lf2 = [v for v in status["vswitches"] if v["dpid"] == lf2]
        assert len(on_lf2) == 2 and all(v["flows"] for v in on_lf2)
    finally:
        if daemon is not None:
            daemon.stop()
        for c in controllers:
            c.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)
