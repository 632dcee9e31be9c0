"""Open vSwitch bridges restricted to OpenFlow 1.0 as pswitches (one table, the 1.0 driver).

The demo's two-tier scenario with spine sp2 and leaf lf2 speaking OpenFlow 1.0 only: bob's
chain of multi-hop vlinks crosses sp2 (tag swapped there by 1.0 rules) and has its middle
vswitch on lf2 (two vports on one uplink); alice's star has a vswitch on lf2 too, whose
host has the same MAC and IP as bob's there.  Both tenants reach all their hosts and never
each other's.
"""

from __future__ import annotations

import pytest

from tenantvisor.testbed.scenario import pingall, rx_packets, two_tenants, two_tier_layout

pytestmark = pytest.mark.root


def test_openflow10_pswitches_carry_vlinks_and_host_vswitches_of_two_tenants() -> None:
    layout = two_tier_layout()
    with two_tenants(layout, protocols={"sp2": "OpenFlow10", "lf2": "OpenFlow10"}) as run:
        fab, a, b = run.fab, run.alice, run.bob
        assert "OpenFlow 1.0 (one table)" in run.daemon.log_text()
        before = {h: rx_packets(fab, h) for h in a.hosts}
        failed = [(r.src, r.dst) for r in pingall(fab, layout, b.hosts) if not r.ok]
        assert not failed, failed  # every one of bob's vlinks crosses sp2
        assert {h: rx_packets(fab, h) for h in a.hosts} == before
        failed = [(r.src, r.dst) for r in pingall(fab, layout, a.hosts) if not r.ok]
        assert not failed, failed
        status = run.daemon.get("/v1/status").json()
        lf2 = layout.topo.switches["lf2"].dpid
        on_lf2 = [v for v in status["vswitches"] if v["dpid"] == lf2]
        assert len(on_lf2) == 2 and all(v["flows"] for v in on_lf2)
