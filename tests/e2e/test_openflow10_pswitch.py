"""An Open vSwitch bridge restricted to OpenFlow 1.0 as a pswitch: it carries vlinks.

The demo's two-tier scenario with spine sp2 speaking OpenFlow 1.0 only: bob's chain of
multi-hop vlinks crosses sp2 (tag swapped there by OpenFlow 1.0 rules), alice's star uses
sp1.  Mapping a vswitch onto sp2 is refused with a clear error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tenantvisor.testbed.controllers import TestController
from tenantvisor.testbed.daemon import Daemon, DaemonError
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.scenario import pingall, rx_packets, setup_tenants, two_tier_layout

pytestmark = pytest.mark.root


def test_an_openflow10_spine_carries_vlinks_between_openflow13_leaves() -> None:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (network namespaces, Open vSwitch)")
    rundir = Path(tempfile.mkdtemp(prefix="tv-of10p-"))
    layout = two_tier_layout()
    fab = Fabric(layout.topo, protocols={"sp2": "OpenFlow10"})
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
        sp2 = layout.topo.switches["sp2"].dpid
        with pytest.raises(DaemonError, match=r"OpenFlow 1\.0"):
            daemon.rest("POST", f"/v1/networks/{a.net_id}/switches", {"dpids": [sp2]}, a.token)
    finally:
        if daemon is not None:
            daemon.stop()
        for c in controllers:
            c.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)
