"""A pswitch whose control connection flaps keeps forwarding, and the daemon re-adds nothing.

The ring scenario of `testbed/ringnet.py`, `ping -i 0.01` h1 -> h3 over vlink AC (s1, s4, s3).
The connection of s1 (head-end, hosting vswitch A) or s4 (transit) drops for a second:
the bridge is pointed at a socket nobody listens on, then back (`del-controller` would make
Open vSwitch itself flush the flows).  In fail_mode=secure the pswitch keeps its rules; when
it is back, the daemon must find them right and leave them alone.  Three witnesses: the
daemon's own `flow_mods_sent`, `ovs-ofctl monitor` on the bridge (every flow added, deleted,
modified), and rule durations from `dump-flows` (an identical re-ADD restarts them).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tenantvisor.bench.reconnect import flow_mods_for_reconnect, role_switches
from tenantvisor.testbed.flowwatch import FlowMonitor, dump_flows, younger
from tenantvisor.testbed.ringnet import RingNet, ring_network

pytestmark = pytest.mark.root

DOWN_S = 1.0  # how long the connection stays away
SETTLE_S = 1.5  # after the daemon has the pswitch back, before judging


@pytest.fixture(scope="module")
def net() -> Iterator[RingNet]:
    # backups are not what this test is about: without them (an API that refuses
    # backup_num) the vlinks are plain shortest paths, which is as good for a flap
    with ring_network(backup_num=1, strict_backup=False) as n:
        yield n


@pytest.mark.parametrize("role", ["edge", "transit"])
def test_a_control_flap_loses_no_packet_and_re_adds_no_rule(net: RingNet, role: str) -> None:
    sw = role_switches(net)[role]
    with net.ping("h1", "h3") as pm, FlowMonitor(net.fab, sw) as mon:
        assert pm.wait_replies(10, time.time(), timeout=10), net.explain("h1 -> h3 before flap")
        before = dump_flows(net.fab, sw)
        t_dump0 = time.time()
        sent0 = net.flow_mods_sent(sw)
        assert before and sent0 is not None, net.explain(f"{sw} has no rules or no status")
        t0 = time.time()
        net.fab.disconnect_controller([sw])
        try:
            gone = net.wait_pswitch(sw, present=False, timeout=5)
            time.sleep(DOWN_S)
        finally:
            net.fab.reconnect_controller([sw])
        assert gone is not None, net.explain(f"the daemon never saw {sw}'s connection drop")
        assert net.wait_pswitch(sw, present=True, timeout=20) is not None, net.explain(
            f"the daemon did not take {sw} back"
        )
        time.sleep(SETTLE_S)
        sent1 = net.flow_mods_sent(sw)
        after = dump_flows(net.fab, sw)
        t_dump1 = t_end = time.time()
        time.sleep(0.3)  # the last replies of the window
        w = pm.window(t0, t_end)
        # every witness is checked before failing, so one run tells everything that went wrong
        problems = []
        if w.sent == 0 or w.lost:
            problems.append(
                f"{w.lost} of {w.sent} pings lost while {sw} ({role}) flapped "
                f"(outage {w.outage_ms:.0f} ms)"
            )
        flow_mods = flow_mods_for_reconnect(sent0, sent1)
        if flow_mods != 0:
            problems.append(
                f"the daemon sent {flow_mods} FLOW_MODs to {sw} for the reconnect "
                f"(flow_mods_sent {sent0} -> {sent1})"
            )
        changes = mon.since(t0)
        if changes:
            problems.append(f"{sw}'s flow table changed ({len(changes)}): {changes[:5]}")
        not_kept = younger(before, after, t_dump1 - t_dump0)
        if not_kept:
            problems.append(
                f"{len(not_kept)} rules of {sw} re-added or gone (durations restarted): "
                f"{not_kept[:3]}"
            )
        assert not problems, net.explain("\n".join(problems))
