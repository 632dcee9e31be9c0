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

INTERVAL = 1.0  # grace: 3 intervals + 1 s = 4 s (checks every interval unless told)


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

    def probes(self, secret: bytes) -> list[tuple[int, ProbeKind]]:
        """(port, kind) of each of our probes it has sent and not yet delivered."""
        return [
            (port, got[2])
            for port, frame in self.sent
            if (got := discovery.parse_any_probe(secret, frame)) is not None
        ]

    def matches_discovery_rule(self, frame: bytes) -> bool:
        """Table 0's discovery rule matches the LLDP ethertype, which OVS finds behind two
        tags only when it parses both."""
        tags = 2 if frame[12:14] == b"\x88\xa8" else 0
        return tags < 2 or self.vlan_limit in (0, 2)


class FakeFabric:
    """Switches joined by wires; `deliver` hands every probe sent to the far end's table 0."""

    def __init__(
        self, *switches: FakeSwitch, wires: list[tuple[int, int, int, int]], check_every: int = 1
    ) -> None:
        self.switches = {s.dpid: s for s in switches}
        self.peer: dict[tuple[int, int], tuple[int, int]] = {}
        for a, pa, b, pb in wires:
            self.peer[(a, pa)] = (b, pb)
            self.peer[(b, pb)] = (a, pa)
        self.topo = PhysicalTopology()
        for s in switches:
            self.topo.add_switch(PSwitchInfo(s.dpid, dict(s.ports), 254))
        self.links = LinkDiscovery(self.topo, INTERVAL, lambda: None, set, check_every)
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
    kinds = set(fab.switches[1].probes(fab.links.secret))
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


def _ring(n: int, check_every: int) -> FakeFabric:
    """n pswitches in a ring, each with a host port 1 and ring ports 2 (next) and 3 (prev)."""
    switches = [FakeSwitch(d, [1, 2, 3]) for d in range(1, n + 1)]
    wires = [(d, 2, d % n + 1, 3) for d in range(1, n + 1)]
    return FakeFabric(*switches, wires=wires, check_every=check_every)


def _checks_sent(fab: FakeFabric) -> dict[int, int]:
    """Padded and double-tagged probes each pswitch has sent (and not yet delivered)."""
    return {
        d: sum(1 for _, kind in s.probes(fab.links.secret) if kind is not ProbeKind.LINK)
        for d, s in fab.switches.items()
    }


def test_checks_are_spread_over_the_intervals_each_pswitch_in_its_turn() -> None:
    """Every interval every link port is probed, but a pswitch sends its padded and QinQ
    probes once in `check_every` intervals, a share of the pswitches each interval: no
    interval carries all of them (a burst of ~1.6 KB PACKET_INs the daemon must read)."""
    fab = _ring(7, check_every=3)
    fab.tick(0.0)  # finds the links; from now on every ring port is a link port
    rounds = []
    for k in range(1, 7):
        fab.links.tick(fab.sessions(), float(k))
        rounds.append(_checks_sent(fab))
        links = {d: sum(1 for _, kind in s.probes(fab.links.secret) if kind is ProbeKind.LINK)
                 for d, s in fab.switches.items()}  # fmt: skip
        assert links == dict.fromkeys(fab.switches, 3)  # liveness: every port, every time
        fab.deliver(float(k))
    for r in rounds:  # 7 pswitches over 3 turns: 2 or 3 check each time, 2 probes x 2 ports
        checking = [d for d, n in r.items() if n]
        assert 2 <= len(checking) <= 3 and all(r[d] == 4 for d in checking)
    for d in fab.switches:  # each in exactly one turn of every three
        turns = [k for k, r in enumerate(rounds) if r[d]]
        assert len(turns) == 2 and turns[1] - turns[0] == 3


def test_spread_checks_judge_after_three_check_rounds(caplog: pytest.LogCaptureFixture) -> None:
    """With checks every `check_every` intervals a probe that did not cross is believed
    only after three of them (not three intervals): a sound switch is never blamed in
    between, and a switch at vlan-limit 1 is, once."""
    caplog.set_level(logging.WARNING, logger="tenantvisor.physical.links")
    fab = _ring(5, check_every=4)
    fab.switches[3].vlan_limit = 1
    assert fab.links.check_grace == 3 * INTERVAL * 4 + 1.0
    t = fab.run(0.0, 12.0)  # under the check grace: too early to blame anyone
    assert False not in fab.topo.qinq_ok.values() and False not in fab.topo.mtu_ok.values()
    assert caplog.records == []
    fab.run(t, 30.0)
    assert fab.topo.qinq_ok == {1: True, 2: True, 3: False, 4: True, 5: True}
    assert len(fab.topo.mtu_ok) == 10 and set(fab.topo.mtu_ok.values()) == {True}
    assert [r.getMessage().split(" does not")[0] for r in caplog.records] == [
        "pswitch 0000000000000003"
    ]


def test_a_port_probed_alone_sends_from_that_port_only() -> None:
    """A port coming up is probed at once (a link there is found now, not a tick later),
    and only it: a VM plugged in during a live migration must not have every port of its
    pswitch probed, whose neighbours' replies would arrive in the middle of the move."""
    fab = _ring(3, check_every=1)
    fab.tick(0.0)  # finds the links
    s1 = fab.switches[1]
    s1.sent.clear()
    fab.links.probe(cast(PSwitchSession, s1), only=1)  # the host port
    assert s1.probes(fab.links.secret) == [(1, ProbeKind.LINK)]
    s1.sent.clear()
    fab.links.probe(cast(PSwitchSession, s1), only=2)  # a link port: checked too
    assert sorted(s1.probes(fab.links.secret)) == [
        (2, ProbeKind.LINK), (2, ProbeKind.BIG), (2, ProbeKind.QINQ)
    ]  # fmt: skip
    s1.sent.clear()
    fab.links.probe(cast(PSwitchSession, s1), only=7)  # no such port: nothing
    assert s1.sent == []


def test_the_daemon_probes_a_port_that_comes_up_and_no_other() -> None:
    from os_ken.ofproto import ofproto_v1_3 as ofp

    from tenantvisor.hypervisor import Hypervisor

    hv = Hypervisor("admin")
    sw = FakeSwitch(1, [1, 2, 3])
    hv.topo.add_switch(PSwitchInfo(1, dict(sw.ports), 254))
    sw.ports[4] = PPort(4, "p4", "02:00:00:00:00:04")
    hv.port_status(cast(PSwitchSession, sw), sw.ports[4], ofp.OFPPR_ADD)
    assert {port for port, _ in sw.sent} == {4}
    sw.sent.clear()
    down = PPort(4, "p4", "02:00:00:00:00:04", up=False)
    hv.port_status(cast(PSwitchSession, sw), down, ofp.OFPPR_MODIFY)
    assert sw.sent == []  # a port going down is not probed
