"""A vlink with a backup path survives a cut link without the tenant noticing.

The ring scenario of `testbed/ringnet.py`: vswitches A (s1), B (s2), C (s3); vlink AB's
primary path is the direct link s1-s2, AC's is s1-s4-s3, both created with `backup_num: 1`;
the tenant's controller installed its rules once and records every message it gets after.
Timing is not judged here (`tenantvisor bench failover` measures it): traffic must move to
the backup, come back when the link returns, and the tenant must see nothing, unless no path
is left at all, when the vlink's vports go down and come back up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.testbed.proactive import CLOSED, Event
from tenantvisor.testbed.ringnet import RingNet, ring_network

pytestmark = pytest.mark.root

VISIBLE = {ofp.OFPT_PORT_STATUS, ofp.OFPT_FLOW_REMOVED, ofp.OFPT_PACKET_IN, CLOSED}
"""What a tenant's controller must not get when its vlink merely changes path."""


@pytest.fixture(scope="module")
def net() -> Iterator[RingNet]:
    with ring_network(backup_num=1) as n:
        yield n


def visible(events: list[Event]) -> list[str]:
    return [str(e) for e in events if e.type in VISIBLE]


def tx_packets(net: RingNet, switch: str, port: int) -> int:
    out = net.fab.ofctl(switch, "dump-ports", str(port))
    for line in out.splitlines():
        if "tx pkts=" in line:
            return int(line.split("tx pkts=")[1].split(",")[0])
    raise AssertionError(f"no tx counter for {switch} port {port} in:\n{out}")


def carries(net: RingNet, switch: str, port: int, other: int, timeout: float = 10.0) -> bool:
    """Whether, within `timeout`, one second of the running ping leaves `switch` through
    `port` (at least 20 packets: ping sends ~60/s) while `other` sends almost nothing
    (LLDP probes: a few per second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a0, b0 = tx_packets(net, switch, port), tx_packets(net, switch, other)
        time.sleep(1.0)
        a1, b1 = tx_packets(net, switch, port), tx_packets(net, switch, other)
        if a1 - a0 >= 20 and b1 - b0 < 10:
            return True
    return False


def restore_all(net: RingNet) -> None:
    for a, b in (("s1", "s2"), ("s2", "s3"), ("s3", "s4"), ("s4", "s1")):
        net.restore(a, b)
    net.wait_links()


def test_a_cut_link_moves_traffic_to_the_backup_and_back_without_the_tenant_noticing(
    net: RingNet,
) -> None:
    assert net.path("AB") == [("s1", "s2")], net.explain("AB's primary is not the direct link")
    with net.ping("h1", "h2") as pm:
        assert pm.wait_replies(10, time.time(), timeout=10), net.explain("h1 -> h2 before cut")
        t_cut = net.cut("s1", "s2")
        try:
            assert pm.wait_replies(20, t_cut + 0.1, timeout=10), net.explain(
                "ping h1 -> h2 did not resume after s1-s2 was cut"
            )
            # h1 -> h2 now leaves s1 towards s4 (the long way round), not into the dead link
            assert carries(net, "s1", 3, 2), net.explain("traffic is not on the backup s1-s4")
            path = net.path("AB")
            assert path is not None and ("s1", "s2") not in path, net.explain(
                f"the API still reports AB on the cut link: {path}"
            )
            seen = visible(net.ctl.since(t_cut))
            assert not seen, net.explain(f"the tenant saw the cut: {seen}")
        finally:
            t_restore = net.restore("s1", "s2")
        deadline = time.monotonic() + 15
        while net.path("AB") != [("s1", "s2")] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert net.path("AB") == [("s1", "s2")], net.explain("AB did not revert to s1-s2")
        assert carries(net, "s1", 2, 3), net.explain("traffic did not come back to s1-s2")
        assert pm.wait_replies(20, time.time(), timeout=5), net.explain("ping died on revert")
        seen = visible(net.ctl.since(t_restore))
        assert not seen, net.explain(f"the tenant saw the revert: {seen}")
    net.wait_links()


def test_a_cut_remote_to_the_head_end_moves_traffic_without_the_tenant_noticing(
    net: RingNet,
) -> None:
    primary = net.path("AC")
    assert primary == [("s1", "s4"), ("s4", "s3")], net.explain(f"AC's primary is {primary}")
    with net.ping("h1", "h3") as pm:
        assert pm.wait_replies(10, time.time(), timeout=10), net.explain("h1 -> h3 before cut")
        t_cut = net.cut("s4", "s3")  # not adjacent to s1, the head-end of h1 -> h3
        try:
            assert pm.wait_replies(20, t_cut + 0.1, timeout=10), net.explain(
                "ping h1 -> h3 did not resume after s4-s3 was cut"
            )
            assert carries(net, "s1", 2, 3), net.explain("h1 -> h3 is not on the backup s1-s2")
            seen = visible(net.ctl.since(t_cut))
            assert not seen, net.explain(f"the tenant saw the cut: {seen}")
        finally:
            t_restore = net.restore("s4", "s3")
        assert pm.wait_replies(20, t_restore + 0.1, timeout=10), net.explain("no ping on revert")
        deadline = time.monotonic() + 15
        while net.path("AC") != primary and time.monotonic() < deadline:
            time.sleep(0.1)
        assert net.path("AC") == primary, net.explain("AC did not revert to s1-s4-s3")
        seen = visible(net.ctl.since(t_restore))
        assert not seen, net.explain(f"the tenant saw the revert: {seen}")
    net.wait_links()


def test_without_any_path_the_vlink_ports_go_down_and_come_back_up(net: RingNet) -> None:
    """s1-s2 and s2-s3 cut: s2 (vswitch B) has no link left, so AB has no path; its two
    vports report link down to the tenant.  AC (s1-s4-s3) is untouched and says nothing."""
    a_ab, b_ab = (net.vdpid["A"], net.vports["A"]["AB"]), (net.vdpid["B"], net.vports["B"]["AB"])
    a_ac = (net.vdpid["A"], net.vports["A"]["AC"])

    def status(events: list[Event], down: bool) -> set[tuple[int, int | None]]:
        return {
            (e.vdpid, e.port_no)
            for e in events
            if e.type == ofp.OFPT_PORT_STATUS and e.down is down
        }

    t0 = time.time()
    try:
        net.cut("s1", "s2")
        net.cut("s2", "s3")
        got = net.ctl.wait_for(lambda ev: {a_ab, b_ab} <= status(ev, True), t0, timeout=15)
        assert {a_ab, b_ab} <= status(got, True), net.explain(
            f"AB's vports did not go down: the tenant got {[str(e) for e in got]}"
        )
        assert a_ac not in status(got, True), net.explain("AC's vport went down, it has a path")
        assert not net.fab.host("h1").ping(net.host_ip("h2"), timeout=1)
        t1 = net.restore("s2", "s3")  # the long way round exists again
        got = net.ctl.wait_for(lambda ev: {a_ab, b_ab} <= status(ev, False), t1, timeout=15)
        assert {a_ab, b_ab} <= status(got, False), net.explain(
            f"AB's vports did not come back up: the tenant got {[str(e) for e in got]}"
        )
        assert net.fab.host("h1").ping(net.host_ip("h2"), timeout=10), net.explain(
            "h1 cannot reach h2 over s1-s4-s3-s2"
        )
        unrelated = [e for e in net.ctl.since(t0) if (e.vdpid, e.port_no) == a_ac]
        assert not unrelated, net.explain(f"AC's vport changed: {[str(e) for e in unrelated]}")
    finally:
        restore_all(net)
