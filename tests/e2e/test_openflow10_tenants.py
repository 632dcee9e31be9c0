"""Tenant controllers that speak only OpenFlow 1.0 (ovs-testcontroller -O OpenFlow10) drive
their vswitches over the OpenFlow 1.3 pswitches: the demo's two tenants, identical addresses,
different virtual topologies."""

from __future__ import annotations

import pytest

from tenantvisor.testbed.scenario import pingall, rx_packets, two_tenants, two_tier_layout

pytestmark = pytest.mark.root


def test_openflow10_controllers_reach_their_hosts_and_stay_isolated() -> None:
    layout = two_tier_layout()
    with two_tenants(layout, controller_version="OpenFlow10") as run:
        fab, a, b = run.fab, run.alice, run.bob
        before = {h: rx_packets(fab, h) for h in b.hosts}
        failed = [(r.src, r.dst) for r in pingall(fab, layout, a.hosts) if not r.ok]
        assert not failed, failed
        assert {h: rx_packets(fab, h) for h in b.hosts} == before
        failed = [(r.src, r.dst) for r in pingall(fab, layout, b.hosts) if not r.ok]
        assert not failed, failed
        assert "OpenFlow 1.0" in run.daemon.log_text()
        status = run.daemon.get("/v1/status").json()
        assert sum(v["flows"] for v in status["vswitches"]) > 0
