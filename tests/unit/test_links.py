"""Link discovery's checks without sockets: a fake fabric carries the probes the way Open
vSwitch does, and the topology must say which links carry full-size frames (mtu_ok)."""

from __future__ import annotations

import logging
from typing import cast

import pytest

from tenantvisor.physical.links import LinkDiscovery
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo

INTERVAL = 1.0  # grace: 3 intervals + 1 s = 4 s


class FakeSwitch:
    """The parts of a PSwitchSession discovery uses, plus how its switch parses frames."""

    def __init__(self, dpid: int, ports: list[int]) -> None:
        self.dpid = dpid
        self.ready = True
        self.ports = {p: PPort(p, f"p{p}", "02:00:00:00:00:01") for p in ports}
        self.sent: list[tuple[int, bytes]] = []

    def probe(self, port: int, frame: bytes) -> None:
        self.sent.append((port, frame))


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
                if self.topo.switches[dst.dpid].connected:
                    self.links.probe_in(cast(PSwitchSession, dst), far[1], frame, now)

    def run(self, start: float, end: float) -> float:
        t = start
        while t < end:
            self.tick(t)
            t += INTERVAL
        return t


def two_switches() -> FakeFabric:
    return FakeFabric(FakeSwitch(1, [1, 2]), FakeSwitch(2, [1, 2]), wires=[(1, 2, 2, 2)])


def test_links_that_carry_full_size_frames_are_mtu_ok() -> None:
    fab = two_switches()
    fab.run(0.0, 10.0)
    assert fab.topo.mtu_ok == {PLink(1, 2, 2, 2): True, PLink(2, 2, 1, 2): True}


def test_small_links_are_reported() -> None:
    fab = two_switches()
    fab.max_frame = 1500
    fab.run(0.0, 10.0)
    assert set(fab.topo.mtu_ok.values()) == {False}


def test_a_disconnected_switch_is_not_judged(caplog: pytest.LogCaptureFixture) -> None:
    """No probe reaches a pswitch we cannot talk to, nor leaves it: its links say nothing
    about its MTU before it is back and probes had time to cross again."""
    caplog.set_level(logging.WARNING, logger="tenantvisor.physical.links")
    fab = two_switches()
    t = fab.run(0.0, 10.0)
    fab.topo.switches[2].connected = False
    del fab.switches[2]
    fab.peer = {}
    t = fab.run(t, t + 10.0)
    assert set(fab.topo.mtu_ok.values()) == {True}
    assert len(fab.topo.links()) == 2  # kept while it cannot be probed
    assert caplog.records == []
