"""A tenant rule the pswitch refuses, rolled back through a real endpoint.

The rule leaves the tenant's table at the first refusal (the tenant gets one error, with
its own xid); its physical rules the pswitch took are deleted, once a barrier says which
it took, and the ones it refused are not: a delete of a rule it never took is refused
too (the same bad match), which is only noise in the log.  The pswitch session here
records what it is sent, with the error callback of each, and answers barriers on demand.
"""

from __future__ import annotations

from collections.abc import Callable

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.translate.flow import PhysFlow
from tenantvisor.virtual.endpoint import VSwitchEndpoint

from .ofkit import apply, osken_flow_mod
from .test_vswitch_groups import DPID, VIEW, Conn, Ids
from .test_vswitch_groups import Host as GroupsHost

ErrorCallback = Callable[[int, int, bytes], None]


class Op:
    """A FLOW_MOD builder that says what it builds."""

    def __init__(self, pf: PhysFlow, command: int) -> None:
        self.pf, self.command = pf, command

    def __call__(self, xid: int) -> bytes:
        return self.pf.flow_mod(xid, self.command)


class Session:
    """A synced pswitch that records FLOW_MODs and holds barriers until `answer`."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.synced = self.ready = True
        self.is_of10 = False
        self.sent: list[tuple[int, PhysFlow, ErrorCallback | None]] = []
        self.barriers: list[Callable[[], None]] = []

    def send_flow(self, build: Callable[[int], bytes], on_error: ErrorCallback | None) -> None:
        assert isinstance(build, Op)
        self.sent.append((build.command, build.pf, on_error))

    def rule(self, pf: PhysFlow, command: int) -> Callable[[int], bytes]:
        return Op(pf, command)

    def barrier(self, done: Callable[[], None]) -> None:
        self.barriers.append(done)

    def answer(self) -> None:
        done, self.barriers = self.barriers, []
        for d in done:
            d()


class Host(GroupsHost):
    def __init__(self) -> None:
        Ids.__init__(self)
        self.sessions = {DPID: Session(DPID)}  # type: ignore[dict-item]


def setup() -> tuple[VSwitchEndpoint, Session, Conn]:
    host = Host()
    ep = VSwitchEndpoint(host, {DPID: VIEW}, [], "t")  # type: ignore[arg-type]
    return ep, host.sessions[DPID], Conn()  # type: ignore[return-value]


# FLOOD without in_port: one physical rule per ingress (the controller, vports 1 and 2)
FLOOD = osken_flow_mod(p.OFPMatch(eth_type=0x0800), [apply(p.OFPActionOutput(ofp.OFPP_FLOOD))],
                       priority=10)  # fmt: skip
REFUSED = (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_PREREQ, b"")


def added(
    ep: VSwitchEndpoint, session: Session, conn: Conn
) -> list[tuple[PhysFlow, ErrorCallback]]:
    """The tenant's FLOOD rule added: its physical rules, each with its error callback."""
    ep.handle(conn, ofp.OFPT_FLOW_MOD, 42, FLOOD)  # type: ignore[arg-type]
    assert [c for c, _, _ in session.sent] == [ofp.OFPFC_ADD] * 3 and len(ep.table) == 1
    out = [(pf, e) for _, pf, e in session.sent if e is not None]
    assert len(out) == 3
    session.sent.clear()
    return out


def test_a_rule_the_pswitch_refuses_whole_is_rolled_back_without_a_delete() -> None:
    ep, session, conn = setup()
    for _, refused in added(ep, session, conn):
        refused(*REFUSED)
    assert len(ep.table) == 0  # gone from the tenant's table at once
    assert conn.channel.errors == [(42, ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_PREREQ, FLOOD)]
    session.answer()
    assert session.sent == [] and len(ep.rules) == 0


def test_the_physical_rules_the_pswitch_took_go_once_the_barrier_says_which() -> None:
    ep, session, conn = setup()
    (_, first), (taken, _), (_, third) = added(ep, session, conn)
    first(*REFUSED)
    assert len(ep.table) == 0 and session.sent == []  # the other errors may still come
    third(*REFUSED)
    session.answer()
    assert [(c, pf) for c, pf, _ in session.sent] == [(ofp.OFPFC_DELETE_STRICT, taken)]
    assert len(ep.rules) == 0 and len(conn.channel.errors) == 1
