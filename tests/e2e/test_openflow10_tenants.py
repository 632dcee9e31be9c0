"""Tenant controllers that speak only OpenFlow 1.0 (ovs-testcontroller -O OpenFlow10) drive
their vswitches over the OpenFlow 1.3 pswitches: the demo's two tenants, identical addresses,
different virtual topologies."""

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


def test_openflow10_controllers_reach_their_hosts_and_stay_isolated() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (network namespaces, Open vSwitch)")
    rundir = Path(tempfile.mkdtemp(prefix="tv-of10-"))
    layout = two_tier_layout()
    fab = Fabric(layout.topo)
    daemon: Daemon | None = None
    controllers: list[TestController] = []
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir, sock).start()
        fab.set_controller(sock)
        a, b = setup_tenants(fab, daemon, layout, rundir, controllers, "OpenFlow10")
        before = {h: rx_packets(fab, h) for h in b.hosts}
        failed = [(r.src, r.dst) for r in pingall(fab, layout, a.hosts) if not r.ok]
        assert not failed, failed
        assert {h: rx_packets(fab, h) for h in b.hosts} == before
        failed = [(r.src, r.dst) for r in pingall(fab, layout, b.hosts) if not r.ok]
        assert not failed, failed
        assert "OpenFlow 1.0" in daemon.log_text()
        status = daemon.get("/v1/status").json()
        assert sum(v["flows"] for v in status["vswitches"]) > 0
    finally:
        if daemon is not None:
            daemon.stop()
        for c in controllers:
            c.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)
