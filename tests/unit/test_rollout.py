"""Make before break without sockets: the order in which a network's changes reach the
pswitches, barrier by barrier (program/networks.py, program/programmer.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.network import NetworkState, compile_network
from tenantvisor.mapping import layout
from tenantvisor.mapping.alloc import IdAllocator
from tenantvisor.openflow import codec, oxm
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.program import diff
from tenantvisor.program.networks import NetworkProgrammer
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.group import GroupSpec, bucket
from tenantvisor.virtual.model import VirtualNetwork
from tests.unit.test_compile import hub5, line3, two_switch_net

COOKIE = layout.infra_cookie(1)


class FakeSession:
    """Records what is sent (as (kind, detail)) and holds barriers until released."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.synced = True
        self.sent: list[tuple[str, object]] = []
        self.msgs: list[bytes] = []  # every message, as sent
        self.barriers: list[Callable[[], None]] = []

    def rule(self, pf: PhysFlow, command: int) -> Callable[[int], bytes]:
        return lambda xid: pf.flow_mod(xid, command)

    def send_flow(self, build: Callable[[int], bytes], on_error: Any) -> None:
        msg = build(0)
        self.msgs.append(msg)
        if msg[1] == ofp.OFPT_GROUP_MOD:
            command, _, gid = codec.struct.unpack_from("!HBxI", msg, 8)
            self.sent.append(({0: "group-add", 1: "group-mod", 2: "group-del"}[command], gid))
        else:
            command, prio = msg[25], codec.u16(msg, 30)
            name = {0: "add", 1: "mod", 2: "mod", 3: "del", 4: "del"}[command]
            self.sent.append((name, prio))

    def barrier(self, done: Callable[[], None]) -> None:
        self.barriers.append(done)

    def release(self) -> None:
        waiting, self.barriers = self.barriers, []
        for done in waiting:
            done()

    def delete_cookie(self, cookie: int, mask: int) -> None:
        self.sent.append(("del-cookie", cookie >> layout.NET_SHIFT))


def _rule(prio: int, out: int = 1) -> PhysFlow:
    match = codec.encode_match([codec.oxm_u32(oxm.IN_PORT, prio)])
    return PhysFlow(1, 0, prio, match, codec.encode_instructions(apply_actions=codec.output(out)),
                    COOKIE)  # fmt: skip


def _state(rules: list[PhysFlow], groups: list[GroupSpec] = ()) -> NetworkState:  # type: ignore[assignment]
    st = NetworkState(1)
    st.rules = {pf.key: pf for pf in rules}
    st.groups = {(g.dpid, g.group_id): g for g in groups}
    return st


def _note(events: list[str], what: str) -> Callable[[NetworkState], list[int]]:
    def step(st: NetworkState) -> list[int]:
        events.append(what)
        return [1]

    return step


def _setup() -> tuple[FakeSession, NetworkProgrammer, list[str]]:
    s = FakeSession(1)
    prog = NetworkProgrammer(cast(dict[int, PSwitchSession], {1: s}), IdAllocator())
    return s, prog, []


def test_additions_then_changes_then_removals_each_after_a_barrier() -> None:
    s, prog, events = _setup()
    a, b = _rule(10), _rule(20)
    g = GroupSpec(1, 5, ofp.OFPGT_FF, bucket(codec.output(2), 2))
    prog.apply(_state([a, b], [g]), _note(events, "views"))
    assert s.sent == [("group-add", 5), ("add", 10), ("add", 20)]  # groups before rules
    s.sent.clear()
    s.release()  # additions confirmed: changes in place, then the endpoints' views
    assert events == ["views"] and s.sent == []
    s.release()
    s.release()
    a2, c = _rule(10, out=2), _rule(30)
    g2 = GroupSpec(1, 5, ofp.OFPGT_FF, bucket(codec.output(3), 3))
    prog.apply(_state([a2, c], [g2]), _note(events, "views2"))
    assert s.sent == [("add", 30)]  # only what is new, at once
    s.release()
    assert s.sent[1:] == [("group-mod", 5), ("mod", 10)] and events[-1] == "views2"
    s.release()
    assert s.sent[3:] == [("del", 20)]  # the old rule goes last


def test_a_later_compile_overtakes_and_nothing_wanted_again_is_deleted() -> None:
    s, prog, _ = _setup()
    a, b, c = _rule(10), _rule(20), _rule(30)
    prog.apply(_state([a, b]), lambda st: [])
    for _ in range(3):
        s.release()
    s.sent.clear()
    prog.apply(_state([a, c]), lambda st: [])  # c added (waits for its barrier), b to go
    prog.apply(_state([a, b, c]), lambda st: [])  # ... but b is wanted again before it went
    for _ in range(4):
        s.release()
    assert ("del", 20) not in s.sent


def test_freed_ids_go_back_only_when_the_last_rollout_is_done() -> None:
    s, prog, _ = _setup()
    alloc = prog.alloc
    owner = (("tag", 1, 1), (1, "path"))
    tag = alloc.get(*owner)
    st = _state([_rule(10), _rule(20)])  # rule 20 is the path's, with its tag
    st.owners = {owner}
    prog.apply(st, lambda _: [])
    for _ in range(3):
        s.release()
    prog.apply(_state([_rule(10)]), lambda _: [])  # the path is gone from the new state
    assert s.sent[-1] == ("del", 20) and alloc.peek(*owner) == tag  # not confirmed yet
    s.release()  # the delete is confirmed: now the tag may serve someone else
    assert alloc.peek(*owner) is None


def test_a_stopped_network_leaves_by_rule_group_and_cookie() -> None:
    s, prog, _ = _setup()
    g = GroupSpec(1, 5, ofp.OFPGT_INDIRECT, bucket(codec.output(2)))
    prog.apply(_state([_rule(10)], [g]), lambda st: [])
    for _ in range(4):
        s.release()
    s.sent.clear()
    prog.remove(1)
    assert s.sent == [("del", 10), ("group-del", 5), ("del-cookie", 1)]
    assert prog.states == {}


def _rolled_out(
    prog: NetworkProgrammer, sessions: dict[int, FakeSession], st: NetworkState,
    installed: Callable[[NetworkState], list[int]],
) -> None:  # fmt: skip
    """`st` applied and every phase's BARRIERs answered; what was sent forgotten."""
    prog.apply(st, installed)
    for _ in range(3):
        for s in sessions.values():
            s.release()
    for s in sessions.values():
        s.sent.clear()


def test_a_host_that_moves_is_reached_over_its_new_paths_before_its_old_place_goes() -> None:
    """Issue 10: host 1 moves from s1 to s3 (compile/network.py `_moved`).  The paths and
    its classification at s3 go in first; after their BARRIERs the tenants' rules move
    (the endpoints' views); after those BARRIERs its classification at s1 goes."""
    sessions = {d: FakeSession(d) for d in (1, 2, 3)}
    alloc = IdAllocator()
    prog = NetworkProgrammer(cast(dict[int, PSwitchSession], sessions), alloc)
    net = two_switch_net((1, 2), (2, 1))
    events: list[str] = []
    _rolled_out(prog, sessions, compile_network(net, line3(), alloc, 4), _note(events, "views"))
    net.hosts[1].location = (3, 3)
    moved = compile_network(net, line3(), alloc, 4)
    prog.apply(moved, _note(events, "moved"))
    sent = {d: list(s.sent) for d, s in sessions.items()}
    assert events == ["views"]  # the tenants' rules wait for the new paths
    assert {kind for d in sent for kind, _ in sent[d]} == {"add"}
    assert sent[3] and sent[2]  # classified at s3, carried over s2
    for s in sessions.values():
        s.release()
    assert events == ["views", "moved"]
    assert not [x for s in sessions.values() for x in s.sent if x[0] == "del"]
    for s in sessions.values():
        s.release()
    gone = [(d, x) for d, s in sessions.items() for x in s.sent if x[0] == "del"]
    assert gone and {d for d, _ in gone} == {1}  # its old classification on s1, last


def _away_at_s3(session: type[FakeSession] = FakeSession) -> tuple[
    dict[int, FakeSession], NetworkProgrammer, VirtualNetwork, NetworkState, list[str]
]:  # fmt: skip
    """test_compile's hub5 with host 1 (home s1) moved to s3, rolled out (its endpoints
    step noted as "at s3")."""
    sessions = {d: session(d) for d in (1, 2, 3, 4)}
    alloc = IdAllocator()
    prog = NetworkProgrammer(cast(dict[int, PSwitchSession], sessions), alloc)
    net = two_switch_net((1, 2), (2, 1))
    net.hosts[1].location = (3, 3)
    events: list[str] = []
    at3 = compile_network(net, hub5(), alloc, 4)
    _rolled_out(prog, sessions, at3, _note(events, "at s3"))
    return sessions, prog, net, at3, events


def test_a_host_moving_on_is_added_at_its_new_end_then_turned_then_its_old_end_goes() -> None:
    """Host 1 (home s1) moves from s3 to s4 over the hub s2 (test_compile's hub5): the new
    end's rules first (s4, and s2's from s4), then the one rule at s2 that turns the way
    out toward s4, then the old end's (s3, and s2's from s3); nothing at home."""
    sessions, prog, net, _, events = _away_at_s3()
    alloc = prog.alloc
    net.hosts[1].location = (4, 3)
    prog.apply(compile_network(net, hub5(), alloc, 4), _note(events, "at s4"))
    assert _phase(sessions) == {2: ["add"], 4: ["add", "add"]}
    assert _phase(sessions) == {2: ["mod"]} and events == ["at s3", "at s4"]
    assert _phase(sessions) == {2: ["del"], 3: ["del", "del"]}


def _phase(sessions: dict[int, FakeSession]) -> dict[int, list[str]]:
    """What each pswitch was sent in this phase; then its BARRIERs answered (the next
    phase's sends are the next call's)."""
    got = {d: [kind for kind, _ in s.sent] for d, s in sessions.items() if s.sent}
    for s in sessions.values():
        s.sent.clear()
    for s in sessions.values():
        s.release()
    return got


class OrderedSession(FakeSession):
    """Also notes where each BARRIER was asked for among what it sent."""

    def barrier(self, done: Callable[[], None]) -> None:
        self.sent.append(("barrier", 0))
        super().barrier(done)


def test_a_move_turns_traffic_and_clears_its_old_place_in_one_phase() -> None:
    """A change that only moves hosts (the daemon's `moves`): the new end first, confirmed;
    then, in one phase, the turn and the old end's removal, each pswitch's removal after
    its turn with a BARRIER between them; the rollout is over when that phase is
    confirmed (two rounds, not three)."""
    sessions, prog, net, _, events = _away_at_s3(OrderedSession)
    net.hosts[1].location = (4, 3)
    ended: list[int] = []
    prog.apply(compile_network(net, hub5(), prog.alloc, 4), _note(events, "at s4"),
               lambda sent, rules: ended.append(rules), moves=True)  # fmt: skip
    assert _phase(sessions) == {2: ["add", "barrier"], 4: ["add", "add", "barrier"]}
    assert not ended
    assert _phase(sessions) == {
        1: ["barrier"],  # the endpoints' step (noted as touching s1)
        2: ["mod", "barrier", "del", "barrier"],
        3: ["del", "del", "barrier"],
    }
    assert events == ["at s3", "at s4"] and ended == [7]  # 3 added, 1 modified, 3 deleted
    assert _phase(sessions) == {}  # nothing after it


def test_a_host_moving_home_is_turned_and_cleared_in_one_phase_too() -> None:
    """line3: host 1 at s3 goes home to s1: its classification at s1 and the way out
    there first; then the tenants' rules turn and what led to s3 goes."""
    sessions = {d: OrderedSession(d) for d in (1, 2, 3)}
    alloc = IdAllocator()
    prog = NetworkProgrammer(cast(dict[int, PSwitchSession], sessions), alloc)
    net = two_switch_net((1, 2), (2, 1))
    net.hosts[1].location = (3, 3)
    events: list[str] = []
    _rolled_out(prog, sessions, compile_network(net, line3(), alloc, 4), _note(events, "away"))
    away = prog.states[1]
    net.hosts[1].location = None
    home = compile_network(net, line3(), alloc, 4)
    plan = diff.diff_rules(away.rules, home.rules)
    prog.apply(home, _note(events, "home"), moves=True)
    first = {d: [k for k, _ in s.sent] for d, s in sessions.items() if s.sent}
    assert "del" not in [k for kinds in first.values() for k in kinds] and events[-1] == "away"
    for s in sessions.values():
        s.sent.clear()
    for s in sessions.values():
        s.release()
    assert events[-1] == "home"
    dels = sorted((d, p) for d, s in sessions.items() for k, p in s.sent if k == "del")
    assert dels == sorted((pf.dpid, pf.priority) for pf in plan.delete) and dels
    for s in sessions.values():
        s.release()
    assert prog.states[1].rules == home.rules and 1 not in prog._inflight


def test_idle_is_done_once_no_rollout_of_the_network_is_under_way() -> None:
    """What the API's move waits for before replying: at once with nothing under way;
    otherwise when the last of the network's rollouts (two overlapping here) is over; a
    waiter that gave up is skipped; a stopped network wakes its waiters."""
    import asyncio

    async def run() -> None:
        s, prog, _ = _setup()
        assert prog.idle(1).done()
        prog.apply(_state([_rule(10)]), lambda _: [])
        first, gave_up = prog.idle(1), prog.idle(1)
        gave_up.cancel()
        prog.apply(_state([_rule(10, out=2), _rule(20)]), lambda _: [])  # before it ends
        second = prog.idle(1)
        s.release()  # the first is over (additions only); the second turns rule 10
        assert s.sent[-1] == ("mod", 10)
        assert not first.done() and not second.done()
        s.release()
        assert first.done() and second.done() and gave_up.cancelled()
        assert prog.idle(1).done() and prog._idle == {}
        prog.apply(_state([_rule(30)]), lambda _: [])
        stopped = prog.idle(1)
        prog.remove(1)
        assert stopped.done()

    asyncio.run(run())


def test_a_vport_moving_physically_leaves_the_reduction_proofs_as_they_are() -> None:
    """A moved host's vport is reached another way (its port, a path over the fabric):
    re-translated, not re-proved.  Its hosts, LITE tags or being a link are proof inputs."""
    from dataclasses import replace

    from tenantvisor.translate.view import PortMap, VSwitchView
    from tenantvisor.virtual.endpoint import proof_inputs

    home = PortMap(1, 3, tx_group=7, hairpin_group=8, hosts=("02:00:00:00:00:01",))
    link = PortMap(2, 2, 40, True, exits=((2, 40),), lite_base=64)
    view = VSwitchView(1, 1, 0xA, 1, 4, {1: home, 2: link}, lite={"02:00:00:00:00:01": 1})

    def with_port(pm: PortMap) -> dict[int, VSwitchView]:
        return {1: replace(view, ports={1: pm, 2: link})}

    before = proof_inputs({1: view})
    away = PortMap(1, 3, 41, False, exits=((2, 41),), hosts=home.hosts)  # over the fabric
    assert proof_inputs(with_port(away)) == before
    assert proof_inputs(with_port(replace(home, phys_port=4, up=False))) == before
    assert proof_inputs(with_port(replace(home, hosts=()))) != before
    assert proof_inputs(with_port(replace(home, is_link=True))) != before
    assert proof_inputs(with_port(replace(home, exclusive=True))) != before
    assert proof_inputs({1: replace(view, ports={1: home, 2: replace(link, lite_base=None)})}) \
        != before  # fmt: skip
    assert proof_inputs({1: replace(view, lite={})}) != before


def test_an_uncommitted_change_runs_only_its_first_phase_within_the_call() -> None:
    """A live migration is announced while the store writes it (manager announce_first):
    its additions go out at once, but nothing that turns traffic may go before the write
    is done, even when there was nothing to add (no BARRIER to wait for).  Committed
    changes run every phase that needs no BARRIER within the call (a restart relies on
    the endpoints having their views before the pswitches are read)."""
    import asyncio

    async def run(uncommitted: bool) -> tuple[list[str], list[str]]:
        s = FakeSession(1)
        s.synced = False  # nothing reaches it: no phase waits for a BARRIER
        prog = NetworkProgrammer(cast(dict[int, PSwitchSession], {1: s}), IdAllocator())
        events: list[str] = []
        st = NetworkState(1)
        prog.apply(st, lambda _: events.append("installed") or [], uncommitted=uncommitted)
        within = list(events)
        await asyncio.sleep(0)
        return within, events

    assert asyncio.run(run(False)) == (["installed"], ["installed"])
    assert asyncio.run(run(True)) == ([], ["installed"])


def test_a_phase_of_joined_steps_waits_for_every_steps_barriers() -> None:
    """The modify phase is two steps: the rules that turn traffic, then the endpoints'
    re-view.  The first step's BARRIERs are asked for before the second runs (the pswitch
    works meanwhile); the next phase starts only when both steps' are answered."""
    from tenantvisor.program.programmer import Rollout

    s1, s2 = FakeSession(1), FakeSession(2)
    ran: list[str] = []

    def step(name: str, dpids: list[int]) -> Callable[[], list[int]]:
        def run() -> list[int]:
            ran.append(f"{name} (s1 barriers asked: {len(s1.barriers)})")
            return dpids

        return run

    r = Rollout(cast(dict[int, PSwitchSession], {1: s1, 2: s2}))
    r.then(step("turn", [1]), joined=True).then(step("views", [2])).then(step("delete", [1]))
    r.start()
    assert ran == ["turn (s1 barriers asked: 0)", "views (s1 barriers asked: 1)"]
    s1.release()
    assert len(ran) == 2  # the views' BARRIER is not answered yet
    s2.release()
    assert ran[-1] == "delete (s1 barriers asked: 0)"


def test_a_move_whose_write_fails_is_programmed_back_and_never_turns_traffic() -> None:
    """A move is rolled out before its store write (manager announce_first); the write
    fails and the host is announced back where it was before any BARRIER reply came.
    The second compile overtakes the first: nothing of the move turns traffic (no rule
    modified to it, its endpoints step never runs), what it added goes, and nothing of
    the old place is deleted."""
    sessions, prog, net, at3, events = _away_at_s3()
    alloc = prog.alloc
    net.hosts[1].location = (4, 3)
    at4 = compile_network(net, hub5(), alloc, 4)
    prog.apply(at4, _note(events, "at s4"), uncommitted=True)
    added = {d: [k for k, _ in s.sent] for d, s in sessions.items() if s.sent}
    assert added == {2: ["add"], 4: ["add", "add"]}
    net.hosts[1].location = (3, 3)  # the write failed: back, announced again
    prog.apply(compile_network(net, hub5(), alloc, 4), _note(events, "back at s3"))
    for _ in range(4):
        for s in sessions.values():
            s.release()
    sent = [(d, k) for d, s in sessions.items() for k, _ in s.sent]
    (turn,) = diff.diff_rules(at3.rules, at4.rules).modify  # s2's, toward s4
    assert turn.flow_mod(0, ofp.OFPFC_MODIFY_STRICT) not in sessions[2].msgs
    assert events == ["at s3", "back at s3"]  # the move's endpoints step never ran
    assert sorted(d for d, k in sent if k == "del") == [2, 4, 4]  # what the move added
    assert prog.states[1].rules == at3.rules


def test_an_uncommitted_changes_first_phase_leaves_before_the_call_returns_inside_a_read() -> None:
    """A move detected from a PACKET_IN is announced from inside that read, whose writes
    leave when the read is handled, after the store's write: the first phase's FLOW_MODs
    and BARRIER must leave at once all the same, so the pswitch takes them while the
    store writes (seen in traces: the additions went out only after the 1-3 ms write)."""
    import asyncio
    import contextlib

    from tenantvisor.openflow.channel import Channel, coalesced
    from tests.unit.test_channel import _connected

    class WiredSession(FakeSession):
        def __init__(self, dpid: int, ch: Channel) -> None:
            super().__init__(dpid)
            self.ch = ch

        def send_flow(self, build: Callable[[int], bytes], on_error: Any) -> None:
            super().send_flow(build, on_error)
            self.ch.send(build(0))

        def barrier(self, done: Callable[[], None]) -> None:
            super().barrier(done)
            self.ch.send(codec.struct.pack("!BBHI", 4, ofp.OFPT_BARRIER_REQUEST, 8, 9))

    async def run(uncommitted: bool) -> list[int]:
        ch, _, theirs = await _connected(False)
        await asyncio.sleep(0.01)
        with contextlib.suppress(BlockingIOError):
            theirs.recv(65536)  # the handshake
        s = WiredSession(1, ch)
        prog = NetworkProgrammer(cast(dict[int, PSwitchSession], {1: s}), IdAllocator())
        got = b""
        with coalesced():  # as inside a PACKET_IN's read
            prog.apply(_state([_rule(5), _rule(6)]), lambda _: [], uncommitted=uncommitted)
            await asyncio.sleep(0.01)
            with contextlib.suppress(BlockingIOError):
                got = theirs.recv(65536)
        theirs.close()
        types, off = [], 0
        while off + 8 <= len(got):
            types.append(got[off + 1])
            off += codec.u16(got, off + 2)
        return types

    flow, barrier = ofp.OFPT_FLOW_MOD, ofp.OFPT_BARRIER_REQUEST
    assert asyncio.run(run(True)) == [flow, flow, barrier]
    assert asyncio.run(run(False)) == []  # a committed change leaves with the read's writes
