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
its rule there (added, then deleted when the rule comes).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.openflow import codec
from tenantvisor.reduce.realize import EXCEPTION_PRIORITY, REDUCED_PRIORITY
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.view import PortMap, VSwitchView
from tenantvisor.virtual.endpoint import VSwitchEndpoint

from .ofkit import apply, osken_flow_mod

NET = 1
SWITCHES = {"lf1": 1, "sp1": 2, "lf2": 3}  # dpid; vdpid = 100 + dpid
LINKS = {("lf1", 3): ("sp1", 1), ("sp1", 2): ("lf2", 3)}
HOSTS = {"lf1": (1, 2), "lf2": (1, 2)}


class Session:
    """A synced pswitch that records the FLOW_MODs it gets and the table they make."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.synced = self.ready = True
        self.is_of10 = False
        self.sent: list[tuple[int, PhysFlow]] = []
        self.table: dict[tuple[int, int, int, bytes], PhysFlow] = {}

    def send_flow(
        self, build: Callable[[int], bytes], on_error: Callable[[int, int, bytes], None] | None
    ) -> None:
        pass

    def rule(self, pf: PhysFlow, command: int) -> Callable[[int], bytes]:
        self.sent.append((command, pf))
        if command == ofp.OFPFC_DELETE_STRICT:
            del self.table[pf.key]
        else:
            self.table[pf.key] = pf
        return lambda xid: b""


class Host:
    max_rules = 1000

    def __init__(self) -> None:
        self.sessions = {d: Session(d) for d in SWITCHES.values()}
        self.eps: dict[int, VSwitchEndpoint] = {}
        self.links: dict[tuple[int, int], tuple[int, int, int]] = {}

    def session(self, dpid: int) -> Session | None:
        return self.sessions.get(dpid)

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


def network(level: str) -> tuple[Host, dict[str, VSwitchEndpoint]]:
    host = Host()
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


def test_a_path_installed_from_its_source_costs_only_the_transient_exception_drops() -> None:
    host, eps = network("hop")
    install(eps, 4, source_first=True)
    sent, installed, exc, left = counts(host)
    # the first connection's packets reach no reduced rule before their own; each later
    # one's reach the spine's shared rule before the spine has theirs, then lf2's before
    # lf2 has theirs: one drop at each while the path is half installed
    assert (installed, exc, left) == (12, 6, 0)
    assert sent == installed + 2 * exc
