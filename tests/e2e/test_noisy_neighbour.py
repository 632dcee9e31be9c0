"""Data-plane limits in real Open vSwitch: a tenant's forwarding loop costs another tenant
sharing its fabric links no ping (issue 11).

The scenario of `testbed/noisynet.py`: tenant A's slice holds a cycle (vswitches on s1 and
s2 joined by two vlinks) and its controller floods; h1 blasts broadcast frames into it, so
every frame circulates forever.  Tenant B pings across the same s1-s2 link.  The daemon
runs with the admin's default limits (1000 packets/s per edge vport and per vlink
direction): the loop is bounded where each lap enters A's slice, B loses nothing, and the
limit hits show in the API and the metrics.  (What the loop does without limits, and B's
RTT and TCP, is `tenantvisor bench noisy-neighbour`'s to measure.)
"""

from __future__ import annotations

import re
import time

import pytest

from tenantvisor.testbed.noisynet import LINK_S1_S2, noisy_network
from tenantvisor.testbed.pingmon import PingMonitor

pytestmark = pytest.mark.root

LIMITS = "vport_pps=1000,vlink_pps=1000"


def test_with_limits_a_tenants_loop_costs_another_tenant_no_ping() -> None:
    with noisy_network(default_limits=LIMITS) as net:
        got = net.limits()
        # the defaults are in force: a meter per edge vport, two per vlink (one each way)
        assert got["override"] == {} and got["effective"]["vlink_pps"] == 1000
        assert sorted(m["kind"] for m in got["meters"]) == ["vlink"] * 4 + ["vport"] * 2
        pm = PingMonitor(net.fab.host("h2").netns, net.host_ip("h4"), 0.01).start()
        try:
            assert pm.wait_replies(10, time.time(), timeout=10), net.explain("no ping before")
            start = time.time()
            net.start_loop()
            time.sleep(2.0)  # the loop fills up to its limits
            tx0, t0 = net.tx_packets("s1", LINK_S1_S2), time.time()
            time.sleep(6.0)
            tx1, t1 = net.tx_packets("s1", LINK_S1_S2), time.time()
            time.sleep(1.2)  # the last requests answered or given up on (ping -W 1)
            win = pm.window(start, t1)
        finally:
            pm.stop()
            net.stop_loop()
        assert win.sent > 300 and win.lost == 0, net.explain(f"B lost pings: {win.as_dict()}")
        # on the shared link A's loop is bounded by its limits: what h1 sends (1000/s
        # admitted) and what comes back round the cycle (1000/s admitted); without limits
        # it is tens of thousands (the bench measures it)
        pps = (tx1 - tx0) / (t1 - t0)
        assert pps < 3000, net.explain(f"{pps:.0f} packets/s on s1 -> s2 with limits")
        time.sleep(2.5)  # the daemon reads its limit meters every 2 s
        a, b = net.limits(), net.limits(net.b)
        assert a["dropped"] > 1000, a  # the loop ran, over its limits, and they held it
        assert b["dropped"] == 0, b  # B, under the same defaults, was never limited
        # h1's vport (blasting 2000/s) and the vlinks the loop goes round were over theirs
        over = {(m["kind"], m.get("vdpid")) for m in a["meters"] if m["dropped"]}
        assert {("vport", net.a.vdpid["A1"]), ("vlink", None)} <= over, a["meters"]
        metrics = net.daemon.get("/metrics").text
        line = re.search(
            rf'tenantvisor_limit_dropped_packets_total\{{kind="vlink",network="{net.a.net_id}",'
            r'tenant="noisy"\} (\d+)', metrics
        )  # fmt: skip
        assert line is not None and int(line.group(1)) > 1000, metrics
