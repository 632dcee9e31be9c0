"""Link discovery's checks without sockets: a fake fabric carries the probes the way Open
vSwitch does, and the topology must say which links carry full-size frames (mtu_ok) and
which pswitches parse a tenant's VLAN tag inside the fabric tag (qinq_ok), warning once."""

from __future__ import annotations

import logging
from typing import cast

import pytest

from tenantvisor.physical import discovery
from tenantvisor.physical.discovery import ProbeKind
from tenantvisor.physical.links import QINQ_ADVICE, LinkDiscovery, qinq_verdict
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo

INTERVAL = 1.0  # grace: 3 intervals + 1 s = 4 s


class FakeSwitch:
    """The parts of a PSwitchSession discovery uses, plus how its switch parses frames."""

    def __init__(self, dpid: int, ports: list[int], vlan_limit: int = 0) -> None:
        self.dpid = dpid
        self.ready = True
        self.ports = {p: PPort(p, f"p{p}", "02:00:00:00:00:01") for p in ports}
        self.vlan_limit = vlan_limit  # Open vSwitch's: 0 parses every tag, 1 only the outer
        self.sent: list[tuple[int, bytes]] = []

    def probe(self, port: int, frame: bytes) -> None:
        self.sent.append((port, frame))

    def matches_discovery_rule(self, frame: bytes) -> bool:
        """Table 0's discovery rule matches the LLDP ethertype, which OVS finds behind two
        tags only when it parses both."""
        tags = 2 if frame[12:14] == b"\x88\xa8" else 0
        return tags < 2 or self.vlan_limit in (0, 2)


class FakeFabric:
    """Switches joined by wires; `deliver` hands every probe sent to the far end's table 0."""

    def __init__(self, *switches: FakeSwitch, wires: list[tuple[int, int, int, int]]) -> None:
        self.switches = {s.dpid: s for s in switches}
        self.peer: dict[tuple[int, int], tuple[int, int]] = {}
        for a, pa, b, pb in wires:
            self.peer[(a, pa)] = (b, pb)
            self.peer[(b, pb)] = (a, pa)
        self.topo = PhysicalTopology()
        for s in switches:
            self.topo.add_switch(PSwitchInfo(s.dpid, dict(s.ports), 254))
        self.links = LinkDiscovery(self.topo, INTERVAL, lambda: None, set)
        self.cut: set[tuple[int, int]] = set()  # (dpid, port) whose frames are lost
        self.max_frame = 10_000  # bytes a wire carries

    def sessions(self) -> list[PSwitchSession]:
        return [cast(PSwitchSession, s) for s in self.switches.values()]

    def tick(self, now: float) -> None:
        """One discovery interval: probes out, every one that arrives back in."""
        self.links.tick(self.sessions(), now)
        self.deliver(now)

    def deliver(self, now: float) -> None:
        for s in self.switches.values():
            sent, s.sent = s.sent, []
            for port, frame in sent:
                far = self.peer.get((s.dpid, port))
                if far is None or (s.dpid, port) in self.cut or len(frame) > self.max_frame:
                    continue
                dst = self.switches[far[0]]
                if self.topo.switches[dst.dpid].connected and dst.matches_discovery_rule(frame):
                    self.links.probe_in(cast(PSwitchSession, dst), far[1], frame, now)

    def run(self, start: float, end: float) -> float:
        t = start
        while t < end:
            self.tick(t)
            t += INTERVAL
        return t


def two_switches(limit2: int = 0) -> FakeFabric:
    return FakeFabric(
        FakeSwitch(1, [1, 2]), FakeSwitch(2, [1, 2], vlan_limit=limit2), wires=[(1, 2, 2, 2)]
    )


def test_qinq_verdict() -> None:
    grace = 4.0
    assert qinq_verdict([], 10.0, grace) is None
    assert qinq_verdict([(9.0, None)], 10.0, grace) is None  # too early to say
    assert qinq_verdict([(5.0, None)], 10.0, grace) is False
    assert qinq_verdict([(5.0, 9.5)], 10.0, grace) is True
    assert qinq_verdict([(0.0, 5.0)], 10.0, grace) is False  # none lately: it was turned off
    assert qinq_verdict([(0.0, None), (9.0, 9.9)], 10.0, grace) is True  # one link proves it


def test_probes_of_every_kind_leave_link_ports_only() -> None:
    fab = two_switches()
    fab.tick(0.0)  # finds the link
    fab.links.tick(fab.sessions(), 1.0)
    s1 = fab.switches[1]
    kinds = {
        (port, got[2])
        for port, frame in s1.sent
        if (got := discovery.parse_any_probe(fab.links.secret, frame)) is not None
    }
    # port 1 faces no pswitch (a host, say): link probes only, no padded or tagged frames
    assert kinds == {(1, ProbeKind.LINK), (2, ProbeKind.LINK), (2, ProbeKind.BIG),
                     (2, ProbeKind.QINQ)}  # fmt: skip


def test_switches_that_parse_both_tags_are_qinq_ok() -> None:
    fab = two_switches()
    assert fab.topo.qinq_ok == {}  # not probed: unknown
    fab.run(0.0, 10.0)
    assert fab.topo.qinq_ok == {1: True, 2: True}
    assert set(fab.topo.mtu_ok.values()) == {True}


def test_a_switch_at_vlan_limit_1_is_reported_and_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="tenantvisor.physical.links")
    fab = two_switches(limit2=1)
    t = fab.run(0.0, 3.0)
    assert fab.topo.qinq_ok == {1: True}  # 2: too early to blame the switch
    t = fab.run(t, 12.0)
    assert fab.topo.qinq_ok == {1: True, 2: False}
    assert fab.topo.mtu_ok == {PLink(1, 2, 2, 2): True, PLink(2, 2, 1, 2): True}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "pswitch 0000000000000002" in warnings[0] and QINQ_ADVICE in warnings[0]
    # the operator sets vlan-limit=2: the next probe says so
    fab.switches[2].vlan_limit = 2
    fab.run(t, t + 2.0)
    assert fab.topo.qinq_ok == {1: True, 2: True}
    assert "pswitch 0000000000000002 now parses VLAN tags" in caplog.text


def test_a_switch_that_stops_parsing_is_reported_after_the_grace() -> None:
    fab = two_switches()
    t = fab.run(0.0, 10.0)
    fab.switches[2].vlan_limit = 1
    t = fab.run(t, t + 3.0)
    assert fab.topo.qinq_ok[2] is True  # a probe crossed lately
    fab.run(t, t + 3.0)
    assert fab.topo.qinq_ok[2] is False


def test_small_links_are_reported_but_not_as_qinq() -> None:
    fab = two_switches()
    fab.max_frame = 1500
    fab.run(0.0, 10.0)
    assert fab.topo.qinq_ok == {1: True, 2: True}  # the QinQ probe is small
    assert set(fab.topo.mtu_ok.values()) == {False}


def test_a_disconnected_switch_is_not_judged(caplog: pytest.LogCaptureFixture) -> None:
    """No probe reaches a pswitch we cannot talk to, nor leaves it: its links say nothing
    about its MTU or parser, before it is back and probes had time to cross again."""
    caplog.set_level(logging.WARNING, logger="tenantvisor.physical.links")
    fab = two_switches()
    t = fab.run(0.0, 10.0)
    fab.topo.switches[2].connected = False
    del fab.switches[2]
    fab.peer = {}
    t = fab.run(t, t + 10.0)
    assert fab.topo.qinq_ok == {1: True, 2: True}
    assert set(fab.topo.mtu_ok.values()) == {True}
    assert len(fab.topo.links()) == 2  # kept while it cannot be probed
    assert caplog.records == []
