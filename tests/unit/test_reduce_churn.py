"""What a reduced network sends its pswitches per tenant rule (issue 9's control bytes).

Three real endpoints in one process, leaf-spine: lf1 (hosts on vports 1, 2) - sp1 - lf2
(hosts on 1, 2), vlinks lf1:3 - sp1:1 and sp1:2 - lf2:3, each on a pswitch session that
records every FLOW_MOD and keeps the table it implies.  The tenant installs TCP
connections h1 -> h3 as the bench does: six-field rules at every vswitch of the path, both
directions, the forward path from its source end (so its packets can reach the spine and
lf2 before their rules there) and the reverse one from its destination end.

Every physical rule should cost one FLOW_MOD: nothing added then removed, nothing sent
twice.  The one exception is what the proof obligation needs while a path is half
installed: an exact drop at a reduced vswitch for a flow whose packets can arrive before
its rule there.  The network's outbox (virtual/outbox.py) holds the rules that make it
necessary instead, so the drop is sent (before them, and deleted when the rule comes) only
if something needs them applied before that rule arrives: a BARRIER, a PACKET_OUT, the
deadline, or a rule there that changes the pswitch.  Sessions record what is *sent*, in
one log for the fabric, so the order across pswitches is checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.openflow import codec, oxm
from tenantvisor.reduce.realize import EXCEPTION_PRIORITY, REDUCED_PRIORITY
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.view import PortMap, VSwitchView
from tenantvisor.virtual.endpoint import VSwitchEndpoint, _Barriers
from tenantvisor.virtual.outbox import DEADLINE, Outbox

from .ofkit import DP, apply, osken_bytes, osken_flow_mod

NET = 1
SWITCHES = {"lf1": 1, "sp1": 2, "lf2": 3}  # dpid; vdpid = 100 + dpid
LINKS = {("lf1", 3): ("sp1", 1), ("sp1", 2): ("lf2", 3)}
HOSTS = {"lf1": (1, 2), "lf2": (1, 2)}


class Rule:
    """A FLOW_MOD as the session builds it: recorded when it is sent, not when decided."""

    def __init__(self, command: int, pf: PhysFlow) -> None:
        self.command, self.pf = command, pf

    def __call__(self, xid: int) -> bytes:
        return b""


class Session:
    """A synced pswitch that records the FLOW_MODs it gets (in `log`, shared by the
    fabric's sessions: the order they left the daemon) and the table they make."""

    def __init__(self, dpid: int, log: list[tuple[int, int, PhysFlow]]) -> None:
        self.dpid = dpid
        self.synced = self.ready = True
        self.is_of10 = False
        self.log = log
        self.sent: list[tuple[int, PhysFlow]] = []
        self.table: dict[tuple[int, int, int, bytes], PhysFlow] = {}
        self.barriers = 0
        self.on_error: dict[tuple[int, int, int, bytes], object] = {}
        self.driver = self  # PACKET_OUTs are built in OpenFlow 1.3 already

    @staticmethod
    def packet_out13(msg: bytes) -> bytes:
        return msg

    def send_flow(
        self, build: Callable[[int], bytes], on_error: Callable[[int, int, bytes], None] | None
    ) -> None:
        if not isinstance(build, Rule):
            return  # a PACKET_OUT
        command, pf = build.command, build.pf
        self.sent.append((command, pf))
        self.log.append((self.dpid, command, pf))
        self.on_error[pf.key] = on_error
        if command == ofp.OFPFC_DELETE_STRICT:
            del self.table[pf.key]
        else:
            self.table[pf.key] = pf

    def rule(self, pf: PhysFlow, command: int) -> Callable[[int], bytes]:
        return Rule(command, pf)

    def barrier(self, done: Callable[[], None]) -> None:
        self.barriers += 1
        done()


class Host:
    max_rules = 1000

    def __init__(self) -> None:
        self.log: list[tuple[int, int, PhysFlow]] = []
        self.sessions = {d: Session(d, self.log) for d in SWITCHES.values()}
        self.eps: dict[int, VSwitchEndpoint] = {}
        self.links: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.outboxes: dict[int, Outbox] = {}

    def session(self, dpid: int) -> Session | None:
        return self.sessions.get(dpid)

    def outbox(self, net_id: int) -> Outbox:
        return self.outboxes.setdefault(net_id, Outbox(self.session))  # type: ignore[arg-type]

    def vlink_peer(self, net_id: int, vdpid: int, vport: int) -> tuple[int, int, int] | None:
        return self.links.get((vdpid, vport))

    def peer_endpoint(self, net_id: int, vdpid: int) -> VSwitchEndpoint | None:
        return self.eps.get(vdpid)

    def alloc_id(self, kind: str, dpid: int, owner: object) -> int | None:
        return 1

    def free_id(self, kind: str, dpid: int, value: int) -> None:
        pass


class Channel:
    version = codec.VERSION

    def __init__(self) -> None:
        self.errors: list[tuple[int, int, int]] = []

    def send(self, msg: bytes) -> None:
        pass

    def send_error(self, xid: int, etype: int, code: int, data: bytes) -> None:
        self.errors.append((xid, etype, code))


class Conn:
    def __init__(self) -> None:
        self.channel = Channel()
        self.touched: set[int] = set()
        self.role = ofp.OFPCR_ROLE_EQUAL
        self.replies: list[int] = []
        self.barriers = _Barriers(self.replies.append)

    def sent_to(self, session: object) -> None:
        pass  # the pswitch window: not under test here


def network(level: str, host: Host | None = None) -> tuple[Host, dict[str, VSwitchEndpoint]]:
    host = host or Host()
    ports: dict[str, dict[int, PortMap]] = {sw: {} for sw in SWITCHES}
    tag = 100
    for (a, pa), (b, pb) in LINKS.items():
        for sw, n, other, on in ((a, pa, b, pb), (b, pb, a, pa)):
            tag += 1
            ports[sw][n] = PortMap(n, n, tag, True, True, exits=((n, tag),))
            host.links[(100 + SWITCHES[sw], n)] = (SWITCHES[other], 100 + SWITCHES[other], on)
    for k, (sw, hosts) in enumerate(HOSTS.items()):
        for n in hosts:  # h1, h2 on lf1; h3, h4 on lf2
            ports[sw][n] = PortMap(n, n, hosts=(f"02:00:00:00:00:{2 * k + n:02x}",))
    eps = {}
    for i, (sw, dpid) in enumerate(SWITCHES.items()):
        view = VSwitchView(NET, i + 1, 100 + dpid, dpid, 8, ports[sw])
        ep = VSwitchEndpoint(host, {dpid: view}, [], "t")  # type: ignore[arg-type]
        ep.set_level(level)
        host.eps[100 + dpid] = eps[sw] = ep
    return host, eps


def tcp_rule(sport: int, dport: int, out: int, forward: bool) -> bytes:
    a, b = ("02:00:00:00:00:01", "02:00:00:00:00:03")
    ia, ib = ("10.0.0.1", "10.0.0.3")
    src, dst, isrc, idst, ps, pd = (a, b, ia, ib, sport, dport) if forward else (
        b, a, ib, ia, dport, sport)  # fmt: skip
    match = p.OFPMatch(eth_src=src, eth_dst=dst, eth_type=0x0800, ipv4_src=isrc,
                       ipv4_dst=idst, ip_proto=6, tcp_src=ps, tcp_dst=pd)  # fmt: skip
    return osken_flow_mod(match, [apply(p.OFPActionOutput(out))], priority=1000)


# (vswitch, output) along h1 -> h3, and back
FORWARD = (("lf1", 3), ("sp1", 2), ("lf2", 1))
REVERSE = (("lf2", 3), ("sp1", 1), ("lf1", 1))


def install(eps: dict[str, VSwitchEndpoint], conns: int, source_first: bool) -> None:
    conn = Conn()
    xid = 0
    for j in range(conns):
        fwd = FORWARD if source_first else FORWARD[::-1]
        back = [(sw, out, False) for sw, out in REVERSE[::-1]]  # from its destination end
        steps = [(sw, out, True) for sw, out in fwd] + back
        for sw, out, forward in steps:
            xid += 1
            eps[sw].handle(conn, ofp.OFPT_FLOW_MOD, xid, tcp_rule(40000 + j, 5000 + j, out,
                                                                  forward))  # fmt: skip
    assert conn.channel.errors == []


def counts(host: Host) -> tuple[int, int, int, int]:
    """(FLOW_MODs sent, rules installed, exception drops added, exception drops left)."""
    sent = [x for s in host.sessions.values() for x in s.sent]
    installed = sum(len(s.table) for s in host.sessions.values())
    exc = sum(1 for c, pf in sent if c == ofp.OFPFC_ADD and pf.priority == EXCEPTION_PRIORITY)
    left = sum(1 for s in host.sessions.values() for pf in s.table.values()
               if pf.priority == EXCEPTION_PRIORITY)  # fmt: skip
    return len(sent), installed, exc, left


@pytest.mark.parametrize("level", ["app", "host", "hop"])
def test_a_path_installed_from_its_destination_costs_one_flow_mod_per_physical_rule(
    level: str,
) -> None:
    host, eps = network(level)
    install(eps, 4, source_first=False)
    sent, installed, exc, _ = counts(host)
    assert exc == 0 and sent == installed
    spine = host.sessions[SWITCHES["sp1"]].table.values()
    assert all(pf.priority == REDUCED_PRIORITY for pf in spine)
    # app: one reduced rule per tenant rule (the one ingress its packets come from); host:
    # one per direction (one host pair); hop: one per direction
    assert len(spine) == {"app": 8, "host": 2, "hop": 2}[level]
    # the leaves keep their own hosts' rules exact (edge ingress, 4 each); the rules for
    # what comes down from the spine (no local host sends it) are reduced like the spine's
    down = {"app": 4, "host": 1, "hop": 1}[level]
    assert installed == 2 * (4 + down) + len(spine)


@pytest.mark.parametrize("level", ["host", "hop"])
def test_a_path_installed_from_its_source_sends_no_drop_when_its_rules_come_together(
    level: str,
) -> None:
    # each later connection's packets can reach the spine's shared rule before the spine
    # has the connection's own rule: the plan wants a drop there meanwhile, but the rule
    # follows before anything needs order, so the outbox sends lf1's rule with it, and no
    # drop ever
    host, eps = network(level)
    install(eps, 4, source_first=True)
    ob = host.outbox(NET)
    assert not ob.busy  # nothing left held once the forward path is complete
    assert ob.held_ops > 0 and ob.flushes == 0  # it was held, and never needed the drops
    sent, installed, exc, left = counts(host)
    # (the leaves reduce what comes down from the spine: 4 + 1 rules each, the spine 2)
    assert (installed, exc, left) == (12, 0, 0)
    assert sent == installed
    conn = Conn()
    eps["lf1"].handle(conn, ofp.OFPT_BARRIER_REQUEST, 99, b"")
    assert conn.replies == [99] and counts(host) == (sent, installed, 0, 0)


@pytest.mark.parametrize("level", ["app", "host", "hop"])
def test_an_exclusive_edge_vport_lets_no_proof_assume_who_sends_there(level: str) -> None:
    """h1's vport on lf1 becomes exclusive (issue 11): table 0 admits every frame of its
    port, whatever the source MAC, so a rule matching h3's source MAC can meet frames from
    that vport too, and keeps its exact rule on lf1 instead of being proven vacuous there
    from the registered hosts' MACs (which say nothing about an exclusive vport)."""
    h3 = int("020000000003", 16)

    def exact_from_h3(exclusive: bool) -> int:
        host, eps = network(level)
        if exclusive:
            ep = eps["lf1"]
            view = ep.view
            ports = dict(view.ports)
            ports[1] = replace(ports[1], exclusive=True)
            ep.set_views({view.dpid: replace(view, ports=ports)}, ep.port_names)
        install(eps, 4, source_first=False)
        table = host.sessions[SWITCHES["lf1"]].table.values()
        fields = [{o.field: codec.oxm_int(o) for o in codec.parse_match(pf.match, 0)[0]}
                  for pf in table if pf.priority != REDUCED_PRIORITY]  # fmt: skip
        return sum(1 for m in fields if m.get(oxm.ETH_SRC) == h3)

    assert exact_from_h3(False) == 0  # h1 and h2 never send h3's MAC: proven vacuous
    assert exact_from_h3(True) == 4  # anything may: every h3 -> h1 rule stays exact


def drop_at_spine(host: Host) -> list[int]:
    """Where in the sending order the spine got an exception drop."""
    return [i for i, (d, c, pf) in enumerate(host.log)
            if d == SWITCHES["sp1"] and c == ofp.OFPFC_ADD
            and pf.priority == EXCEPTION_PRIORITY]  # fmt: skip


def first_at(host: Host, sw: str, since: int) -> int:
    """Where in the sending order `sw` got its first ADD at or after `since`."""
    return next(i for i, (d, c, _) in enumerate(host.log)
                if i >= since and d == SWITCHES[sw] and c == ofp.OFPFC_ADD)  # fmt: skip


def test_a_barrier_between_the_rules_sends_the_drop_before_the_upstream_rule() -> None:
    host, eps = network("hop")
    install(eps, 1, source_first=True)  # the spine holds the shared rule h1 -> h3 now
    conn = Conn()
    start = len(host.log)
    eps["lf1"].handle(conn, ofp.OFPT_FLOW_MOD, 7, tcp_rule(40001, 5001, 3, True))
    assert host.outbox(NET).busy and drop_at_spine(host) == []  # held: sp1's may follow
    barriers = host.sessions[SWITCHES["sp1"]].barriers
    eps["lf1"].handle(conn, ofp.OFPT_BARRIER_REQUEST, 8, b"")
    # the BARRIER needs lf1's rule applied: the drop goes first, and the reply waits for
    # the spine too (the drop counts for the connection whose FLOW_MOD made it necessary)
    (drop,) = drop_at_spine(host)
    assert start <= drop < first_at(host, "lf1", start)
    assert conn.replies == [8] and host.sessions[SWITCHES["sp1"]].barriers == barriers + 1
    # an error for the held rule still reaches the tenant with its own xid
    lf1 = host.sessions[SWITCHES["lf1"]]
    relay = lf1.on_error[lf1.sent[-1][1].key]
    assert callable(relay)
    # the spine's rule arrives, then lf2's (lf2 reduces what comes down from the spine,
    # so it would want a drop of its own meanwhile: held, and spared): the drop goes
    eps["sp1"].handle(conn, ofp.OFPT_FLOW_MOD, 9, tcp_rule(40001, 5001, 2, True))
    eps["lf2"].handle(conn, ofp.OFPT_FLOW_MOD, 10, tcp_rule(40001, 5001, 1, True))
    assert counts(host)[2:] == (1, 0)
    assert (SWITCHES["sp1"], ofp.OFPFC_DELETE_STRICT) in [(d, c) for d, c, _ in host.log[drop:]]
    relay(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, b"")
    assert conn.channel.errors == [(7, ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL)]


def test_the_deadline_sends_the_drop_before_the_upstream_rule() -> None:
    host, eps = network("hop")
    install(eps, 1, source_first=True)
    conn = Conn()
    start = len(host.log)

    async def run() -> None:
        eps["lf1"].handle(conn, ofp.OFPT_FLOW_MOD, 7, tcp_rule(40001, 5001, 3, True))
        assert drop_at_spine(host) == []
        await asyncio.sleep(DEADLINE * 3)
        (drop,) = drop_at_spine(host)
        assert start <= drop < first_at(host, "lf1", start) and not host.outbox(NET).busy
        eps["sp1"].handle(conn, ofp.OFPT_FLOW_MOD, 8, tcp_rule(40001, 5001, 2, True))
        eps["lf2"].handle(conn, ofp.OFPT_FLOW_MOD, 9, tcp_rule(40001, 5001, 1, True))

    asyncio.run(run())
    sent, installed, exc, left = counts(host)
    assert (exc, left) == (1, 0) and sent == installed + 2


def test_a_packet_out_needs_the_held_rules_applied_first() -> None:
    host, eps = network("hop")
    install(eps, 1, source_first=True)
    conn = Conn()
    start = len(host.log)
    eps["lf1"].handle(conn, ofp.OFPT_FLOW_MOD, 7, tcp_rule(40001, 5001, 3, True))
    po = p.OFPPacketOut(DP, ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER,
                        [p.OFPActionOutput(1)], b"\x00" * 60)  # fmt: skip
    eps["lf2"].handle(conn, ofp.OFPT_PACKET_OUT, 8, osken_bytes(po))
    (drop,) = drop_at_spine(host)
    assert start <= drop < first_at(host, "lf1", start) and not host.outbox(NET).busy


def test_a_drop_the_spine_changes_to_resolve_is_sent_before_the_upstream_rule() -> None:
    # the spine's rule for the second connection sends to the controller: it cannot share
    # the hop rule, which must refine.  The drop is no longer wanted once it arrives, but
    # the spine's new rules follow lf1's in the sending order, and lf1's could be applied
    # first: a packet would meet the hop rule, a fate exact never gives.  So the drop goes
    # before lf1's rule after all, and away after the spine's new rules.
    host, eps = network("hop")
    install(eps, 1, source_first=True)
    conn = Conn()
    start = len(host.log)
    eps["lf1"].handle(conn, ofp.OFPT_FLOW_MOD, 7, tcp_rule(40001, 5001, 3, True))
    assert drop_at_spine(host) == []
    match = p.OFPMatch(eth_src="02:00:00:00:00:01", eth_dst="02:00:00:00:00:03",
                       eth_type=0x0800, ipv4_src="10.0.0.1", ipv4_dst="10.0.0.3",
                       ip_proto=6, tcp_src=40001, tcp_dst=5001)  # fmt: skip
    to_controller = osken_flow_mod(
        match, [apply(p.OFPActionOutput(ofp.OFPP_CONTROLLER, 0xFFFF))], priority=1000
    )
    eps["sp1"].handle(conn, ofp.OFPT_FLOW_MOD, 8, to_controller)
    assert not host.outbox(NET).busy
    (drop,) = drop_at_spine(host)
    lf1_rule = first_at(host, "lf1", start)
    spine = [i for i, (d, _, _) in enumerate(host.log) if i > drop and d == SWITCHES["sp1"]]
    assert start <= drop < lf1_rule < spine[0]
    assert host.log[spine[-1]][1] == ofp.OFPFC_DELETE_STRICT  # the drop, last
    assert host.log[spine[-1]][2].priority == EXCEPTION_PRIORITY
    assert conn.channel.errors == [] and counts(host)[3] == 0
