"""Tenant limits: the token bucket, back-pressure on a controller's connection, quotas with
the spec's errors, PACKET_INs dropped beyond a vswitch's rate and metered on the pswitch."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from types import SimpleNamespace
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.errors import InvalidRequest, QuotaExceeded
from tenantvisor.mapping import layout
from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.channel import QUANTUM, Channel, hello
from tenantvisor.openflow.codec import FlowMod, OFError, PacketIn
from tenantvisor.quotas import KEYS, TenantLimits, TokenBucket, check_overrides
from tenantvisor.translate.flow import translate_flow
from tenantvisor.translate.view import PortMap, VSwitchView
from tenantvisor.virtual.budget import TenantBudget
from tenantvisor.virtual.decide import decide_flow_mod
from tenantvisor.virtual.endpoint import PSWITCH_WINDOW, ControllerConn, VSwitchEndpoint
from tenantvisor.virtual.flowtable import VirtualFlowTable
from tenantvisor.virtual.manager import NetworkManager
from tenantvisor.virtual.model import Tenant
from tests.api.conftest import ADMIN, build_topology

from .ofkit import apply, osken_flow_mod, write
from .test_vswitch_groups import DPID, VIEW, Conn, Host, group_mod, meter

_HDR = struct.Struct("!BBHI")


# --- the token bucket ------------------------------------------------------------------------
def test_a_bucket_lets_a_burst_through_then_its_rate() -> None:
    b = TokenBucket(rate=10, burst=5, now=100.0)
    assert [b.take(100.0) for _ in range(6)] == [True] * 5 + [False]
    assert b.wait(100.0) == pytest.approx(0.1)
    assert not b.take(100.05)  # half a token
    assert b.take(100.1) and not b.take(100.1)
    assert b.available(110.0) == 5  # never more than the burst


def test_fractions_of_a_token_add_up() -> None:
    b = TokenBucket(rate=3, burst=2, now=0.0)
    b.consume(2)
    got = sum(b.take(i / 100) for i in range(1, 101))  # one second in 10 ms steps
    assert got == 3


def test_new_bounds_keep_the_tokens_earned_up_to_the_new_burst() -> None:
    b = TokenBucket(rate=10, burst=100, now=0.0)
    b.set(rate=1, burst=3, now=0.0)
    assert b.available(0.0) == 3 and b.wait(0.0, 10) == 0.0
    b.consume(3)
    assert b.wait(0.0, 10) == pytest.approx(3.0)  # a wait is capped at the burst
    with pytest.raises(ValueError):
        TokenBucket(0, 1, 0.0)


def test_overrides_are_checked_like_the_defaults() -> None:
    assert check_overrides({"rules": 0, "msg_rate": 5, "hosts": None}) == {
        "rules": 0,
        "msg_rate": 5,
    }
    for bad, why in (
        ({"rulez": 1}, "unknown limit 'rulez'"),
        ({"msg_rate": 0}, "msg_rate must be within 1-"),
        ({"rules": -1}, "rules must be within 0-"),
        ({"rules": True}, "whole number"),
        ({"rules": "5"}, "whole number"),
    ):
        with pytest.raises(ValueError, match=why):
            check_overrides(bad)
    assert TenantLimits().with_overrides({"vswitches": 2}).vswitches == 2
    assert set(TenantLimits().model_dump()) == set(KEYS)


# --- back-pressure on a connection -----------------------------------------------------------
class Recorder:
    def __init__(self, log: list[str] | None = None, name: str = "") -> None:
        self.log = log if log is not None else []
        self.name = name
        self.ready = False

    def channel_ready(self, ch: Channel) -> None:
        self.ready = True

    def channel_message(self, ch: Channel, msg_type: int, xid: int, msg: bytes) -> None:
        self.log.append(self.name)

    def channel_closed(self, ch: Channel, reason: str) -> None:
        pass


async def _pair(owner: Recorder) -> tuple[Channel, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    ch = Channel(owner, "test", echo_interval=0)
    await asyncio.get_running_loop().create_connection(lambda: ch, sock=ours)
    theirs.send(hello(frozenset({4})))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if owner.ready:
            break
    assert owner.ready
    return ch, theirs


def _echo(xid: int) -> bytes:
    return _HDR.pack(4, ofp.OFPT_ECHO_REQUEST, 8, xid)


def _replies(sock: socket.socket) -> int:
    got = b""
    while True:
        try:
            chunk = sock.recv(1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        got += chunk
    return len(got) // 8  # ECHO_REPLYs of 8 bytes (the vswitch's HELLO read before)


def test_a_connection_beyond_its_rate_waits_in_its_socket_and_loses_nothing() -> None:
    """200 messages/s, burst 20: 100 ECHOs sent at once are all answered, the last ~0.4 s
    later; meanwhile reading stops (the peer's bytes wait in the socket), and the channel
    counts the wait and the messages that waited."""

    async def run() -> tuple[Channel, int, int, float, bool]:
        ch, theirs = await _pair(Recorder())
        _replies(theirs)  # our HELLO
        ch.bucket = TokenBucket(200, 20, time.monotonic())
        ch.quantum = QUANTUM
        t0 = time.monotonic()
        theirs.send(b"".join(_echo(i) for i in range(100)))
        await asyncio.sleep(0.05)
        early = _replies(theirs)
        paused = ch.transport is not None and not ch.transport.is_reading()
        total = early
        while total < 100 and time.monotonic() - t0 < 5:
            await asyncio.sleep(0.02)
            total += _replies(theirs)
        elapsed = time.monotonic() - t0
        theirs.close()
        return ch, early, total, elapsed, paused

    ch, early, total, elapsed, paused = asyncio.run(run())
    assert early <= 20 + 15  # the burst, and 50 ms at 200/s (with slack)
    assert paused
    assert total == 100  # nothing lost
    assert 0.3 < elapsed < 2.0
    assert ch.throttled > 0 and ch.throttled_s > 0.2 and ch.delayed_msgs >= 60


def test_a_flooding_peer_is_slowed_by_tcp_itself() -> None:
    """While the bucket is empty nothing is read: the socket fills and the peer's own
    sends stop (a controller that floods blocks, as on a slow switch)."""

    async def run() -> tuple[int, int]:
        ch, theirs = await _pair(Recorder())
        ch.bucket = TokenBucket(100, 10, time.monotonic())
        ch.quantum = QUANTUM
        sent = 0
        batch = b"".join(_echo(i) for i in range(512))
        for _ in range(400):
            try:
                sent += theirs.send(batch)
            except BlockingIOError:
                break
            await asyncio.sleep(0)
        handled = ch.rx_msgs
        theirs.close()
        return sent // 8, handled

    sent, handled = asyncio.run(run())
    assert sent < 400 * 512  # the peer was stopped by a full socket
    assert handled < 200  # and the daemon read no more than its rate allowed


def test_a_quantum_per_turn_interleaves_two_busy_connections() -> None:
    """Two connections with thousands of messages each: the first is not handled whole
    before the second gets a turn (each gets QUANTUM messages per event-loop turn)."""

    async def run() -> list[str]:
        log: list[str] = []
        a, sa = await _pair(Recorder(log, "a"))
        b, sb = await _pair(Recorder(log, "b"))
        for ch in (a, b):
            ch.quantum = QUANTUM
        barrier = _HDR.pack(4, ofp.OFPT_BARRIER_REQUEST, 8, 1)
        sa.send(barrier * 2000)
        sb.send(barrier * 200)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(log) == 2200:
                break
        sa.close()
        sb.close()
        return log

    log = asyncio.run(run())
    assert len(log) == 2200
    last_b = max(i for i, who in enumerate(log) if who == "b")
    assert last_b < 1000  # b was done while a still had more than half its messages


# --- quotas: the spec's errors -----------------------------------------------------------------
VIEW2 = VSwitchView(2, 4, 0x44, DPID, 8, {1: PortMap(1, 13), 2: PortMap(2, 14)})


class MeteringSession:
    """The groups tests' synced session, over a pswitch that meters PACKET_INs."""

    driver = SimpleNamespace(meters_packet_ins=True)


def tenant(limits: TenantLimits, views: tuple[VSwitchView, ...] = (VIEW, VIEW2)) -> tuple[
    TenantBudget, list[VSwitchEndpoint], Host, Conn
]:  # fmt: skip
    """One tenant's vswitches (all on pswitch DPID) sharing one budget."""
    host = Host()
    host.sessions[DPID].driver = MeteringSession.driver  # type: ignore[attr-defined]
    budget = TenantBudget(1, "alice", limits)
    eps = []
    for v in views:
        ep = VSwitchEndpoint(host, {DPID: v}, [], "alice", budget)  # type: ignore[arg-type]
        budget.endpoints.append(ep)
        eps.append(ep)
    return budget, eps, host, Conn()


def send(ep: VSwitchEndpoint, conn: Conn, t: int, xid: int, msg: bytes) -> None:
    """As ControllerConn.channel_message does: what the tenant may not do is an error."""
    try:
        ep.handle(conn, t, xid, msg)  # type: ignore[arg-type]
    except OFError as exc:
        conn.channel.send_error(xid, exc.type, exc.code, msg)


def rule(eth_dst: str, out: int = 1, **kw: Any) -> bytes:
    return osken_flow_mod(p.OFPMatch(eth_dst=eth_dst), [apply(p.OFPActionOutput(out))], **kw)


def test_rules_beyond_the_tenants_quota_find_the_table_full_on_any_of_its_vswitches() -> None:
    budget, (a, b), _, conn = tenant(TenantLimits(rules=3))
    for i, ep in enumerate((a, a, b)):
        send(ep, conn, ofp.OFPT_FLOW_MOD, i, rule(f"02:00:00:00:00:0{i}"))
    assert conn.channel.errors == [] and budget.used("rules") == 3
    one_more = rule("02:00:00:00:00:09")
    for ep in (a, b):
        send(ep, conn, ofp.OFPT_FLOW_MOD, 7, one_more)
    assert [(x, t, c) for x, t, c, _ in conn.channel.errors] == [
        (7, ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL)
    ] * 2
    assert budget.refused["rules"] == 2 and budget.used("rules") == 3
    # replacing a rule it has (same table, priority, match) takes no room
    send(a, conn, ofp.OFPT_FLOW_MOD, 8, rule("02:00:00:00:00:00", out=2))
    assert len(conn.channel.errors) == 2
    # a delete makes room again
    gone = osken_flow_mod(p.OFPMatch(eth_dst="02:00:00:00:00:02"), command=ofp.OFPFC_DELETE)
    send(b, conn, ofp.OFPT_FLOW_MOD, 9, gone)
    send(b, conn, ofp.OFPT_FLOW_MOD, 10, one_more)
    assert len(conn.channel.errors) == 2 and budget.used("rules") == 3


def test_the_decision_refuses_a_new_rule_only() -> None:
    table = VirtualFlowTable()
    fm = FlowMod.parse(rule("02:00:00:00:00:01"))

    def translate(*_: Any) -> tuple[()]:
        return ()

    def full() -> str:
        return "tenant t holds 5 rules: its quota of rules is 5"

    with pytest.raises(OFError) as err:
        decide_flow_mod(fm, table, 8, 100, translate, full)
    assert (err.value.type, err.value.code) == (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL)
    assert "quota of rules" in str(err.value)
    (added,) = decide_flow_mod(fm, table, 8, 100, translate, lambda: None)
    table.put(added.vflow)  # type: ignore[union-attr]
    assert decide_flow_mod(fm, table, 8, 100, translate, full)  # the same rule again: fine


def test_groups_and_meters_beyond_the_quota_are_out_of_groups_and_out_of_meters() -> None:
    budget, (a, b), host, conn = tenant(TenantLimits(groups=1, meters=1))
    send(a, conn, ofp.OFPT_GROUP_MOD, 1, group_mod(ofp.OFPGC_ADD, 1))
    send(b, conn, ofp.OFPT_METER_MOD, 2, meter(ofp.OFPMC_ADD, 1))
    assert conn.channel.errors == []
    send(b, conn, ofp.OFPT_GROUP_MOD, 3, group_mod(ofp.OFPGC_ADD, 2))
    send(a, conn, ofp.OFPT_METER_MOD, 4, meter(ofp.OFPMC_ADD, 2))
    # the spec's own error first: a group that exists is GROUP_EXISTS, quota or not
    send(a, conn, ofp.OFPT_GROUP_MOD, 5, group_mod(ofp.OFPGC_ADD, 1))
    assert [(x, t, c) for x, t, c, _ in conn.channel.errors] == [
        (3, ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS),
        (4, ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS),
        (5, ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_GROUP_EXISTS),
    ]
    assert dict(budget.refused) == {"groups": 1, "meters": 1}
    assert b.groups_meters.groups == {} and a.groups_meters.meters == {}  # nothing half made
    assert host.holds("group") == {a.groups_meters.groups[1].phys_id}


# --- PACKET_INs: dropped beyond the rate in the daemon, metered on the pswitch ---------------
class FakeConn:
    """A controller connection that wants every asynchronous message."""

    def __init__(self) -> None:
        self.channel = SimpleNamespace(sent=[], send=None, rx_msgs=0, delayed_msgs=0, blocked_s=0,
                                       throttled_s=0.0)  # fmt: skip
        self.channel.send = self.channel.sent.append

    def wants(self, kind: int, reason: int) -> bool:
        return True


def _packet_in(ep: VSwitchEndpoint, serial: int) -> None:
    meta = layout.vswitch_meta(ep.view.index, 1)
    pi = PacketIn(ofp.OFP_NO_BUFFER, 60, ofp.OFPR_ACTION, 1, layout.tenant_cookie(2, serial),
                  [codec.oxm_u64(oxm.METADATA, meta)], bytes(60))  # fmt: skip
    ep.packet_in(pi, meta)


def test_packet_ins_beyond_the_vswitchs_rate_are_dropped_and_counted() -> None:
    budget, (_, b), _, conn = tenant(TenantLimits(packet_in_rate=1, packet_in_burst=3))
    miss = osken_flow_mod(p.OFPMatch(), [apply(p.OFPActionOutput(ofp.OFPP_CONTROLLER))])
    send(b, conn, ofp.OFPT_FLOW_MOD, 1, miss)
    ctl = FakeConn()
    b.conns.add(ctl)  # type: ignore[arg-type]
    (vf,) = b.table
    for _ in range(10):
        _packet_in(b, vf.serial)
    assert len(ctl.channel.sent) == 3  # the burst
    assert (b.packet_ins, b.packet_ins_dropped) == (3, 7)
    assert budget.counters()["packet_ins_dropped"] == 7


def _sent_meter_mods(host: Host) -> list[tuple[int, int, int, bytes]]:
    out = []
    for msg, _ in host.sessions[DPID].sent:
        if msg[1] == ofp.OFPT_METER_MOD:
            cmd, flags, mid = struct.unpack_from("!HHI", msg, 8)
            out.append((cmd, flags, mid, msg[16:]))
    return out


def test_each_vswitch_has_a_packet_in_meter_on_its_pswitch_and_its_punts_pass_it() -> None:
    lim = TenantLimits(packet_in_meter_rate=50, packet_in_meter_burst=10)
    budget, (a, b), host, conn = tenant(lim)
    mods = _sent_meter_mods(host)
    assert [(c, f) for c, f, _, _ in mods] == [
        (ofp.OFPMC_ADD, ofp.OFPMF_PKTPS | ofp.OFPMF_BURST)
    ] * 2
    band = struct.pack("!HHIIxxxx", ofp.OFPMBT_DROP, 16, 50, 10)
    assert all(bands == band for *_, bands in mods)
    assert {m for _, _, m, _ in mods} == {a.pin_meters[DPID], b.pin_meters[DPID]}
    assert len(set(host.holds("meter"))) == 2  # one physical meter per vswitch
    pin = b.pin_meters[DPID]
    assert b.desired_meters(DPID) == {pin: (ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, band)}
    # a rule to the controller and a port: only the PACKET_IN passes the meter
    both = osken_flow_mod(p.OFPMatch(eth_type=0x0806),
                          [apply(p.OFPActionOutput(ofp.OFPP_CONTROLLER, 128),
                                 p.OFPActionOutput(2))])  # fmt: skip
    send(b, conn, ofp.OFPT_FLOW_MOD, 1, both)
    (vf,) = b.table
    (pf,) = vf.phys
    assert codec.controller_metered(128, pin) + codec.output(14) in pf.instructions
    assert codec.output(ofp.OFPP_CONTROLLER, 128) not in pf.instructions
    # new limits: the meter is modified in place, the buckets take the new rate
    host.sessions[DPID].sent.clear()
    budget.limits = TenantLimits(packet_in_meter_rate=7, packet_in_meter_burst=7, msg_rate=5)
    b.apply_limits()
    ((cmd, _, mid, bands),) = _sent_meter_mods(host)
    assert (cmd, mid) == (ofp.OFPMC_MODIFY, pin) and struct.unpack_from("!I", bands, 4) == (7,)
    # the vswitch goes: its meter goes after its rules, and its id is free again
    host.sessions[DPID].sent.clear()
    b.drop_all()
    kinds = [m[1] for m, _ in host.sessions[DPID].sent]
    assert kinds[-1] == ofp.OFPT_METER_MOD and ofp.OFPT_FLOW_MOD in kinds
    assert pin not in host.holds("meter") and b.pin_meters == {}


def test_output_to_the_controller_in_an_action_set_is_not_metered() -> None:
    """OVS's controller action cannot be in an action set: there the daemon's bucket is
    the only limit."""
    ins = codec.encode_instructions(write_actions=codec.output(ofp.OFPP_CONTROLLER, 128))
    tf = translate_flow(VIEW, 0, [], ins, pin_meter=9)
    ((_, phys),) = tf.flows
    assert codec.output(ofp.OFPP_CONTROLLER, 128) in phys
    w = osken_flow_mod(p.OFPMatch(), [write(p.OFPActionOutput(ofp.OFPP_CONTROLLER))])
    assert FlowMod.parse(w).instructions  # (os-ken builds the same shape)


def test_the_metered_controller_action_is_what_open_vswitch_reports() -> None:
    """Bytes OVS 3.1 itself reports in flow statistics for controller(max_len=128,
    meter_id=7) and controller(meter_id=7): a rule re-read at a reconnect is the same."""
    assert codec.controller_metered(128, 7).hex() == (
        "ffff002000002320002500000000000000000008008000000005000800000007"
    )
    assert codec.controller_metered(0xFFFF, 7).hex() == (
        "ffff00180000232000250000000000000005000800000007"
    )


# --- the API's quotas, in the intent layer ----------------------------------------------------
def test_the_api_refuses_one_more_than_the_quota_with_403_naming_it() -> None:
    m = NetworkManager(build_topology(), ADMIN, TenantLimits(networks=1, vswitches=2, vports=2,
                                                       vlinks=0, hosts=1))  # fmt: skip
    t = m.create_tenant("alice")
    net = m.create_network(t.id, [])
    with pytest.raises(QuotaExceeded) as err:
        m.create_network(t.id, [])
    assert err.value.http_status == 403 and err.value.quota == "networks"
    assert "quota networks exceeded: tenant alice holds 1 networks, its quota is 1" in str(
        err.value
    )
    s1 = m.create_switch(net.id, [1])
    s2 = m.create_switch(net.id, [2])
    with pytest.raises(QuotaExceeded, match="quota vswitches"):
        m.create_switch(net.id, [3])
    a = m.create_port(net.id, 1, 3)
    b = m.create_port(net.id, 2, 3)
    with pytest.raises(QuotaExceeded, match="quota vports"):
        m.create_port(net.id, 1, 1)
    with pytest.raises(QuotaExceeded, match="quota vlinks"):
        m.create_link(net.id, s1.vdpid, a.number, s2.vdpid, b.number)
    assert m.usage(t.id) == {"networks": 1, "vswitches": 2, "vports": 2, "vlinks": 0, "hosts": 0}
    assert m.quota_refused[(t.id, "vports")] == 1 and m.quota_refused[(t.id, "vlinks")] == 1
    # the admin raises one quota for this tenant: the next request passes
    seen: list[Tenant] = []
    m.tenant_listeners.append(seen.append)
    m.set_tenant_limits(t.id, {"vports": 3, "vlinks": 1})
    assert m.limits_of(t.id).vports == 3
    assert [x.limits for x in seen] == [{"vports": 3, "vlinks": 1}]
    m.create_port(net.id, 1, 1)
    m.create_link(net.id, s1.vdpid, a.number, s2.vdpid, b.number)
    # lowering it below what the tenant holds takes nothing away
    m.set_tenant_limits(t.id, {"vports": 1})
    assert m.usage(t.id)["vports"] == 3
    with pytest.raises(InvalidRequest, match="unknown limit"):
        m.set_tenant_limits(t.id, {"vport": 1})
    with pytest.raises(InvalidRequest, match="msg_rate must be within 1-"):
        m.set_tenant_limits(t.id, {"msg_rate": 0})
    assert m.tenants[t.id].limits == {"vports": 1}


# --- the pswitch window: a tenant's work queued in a shared pswitch is bounded ----------------
class SlowSession:
    """A pswitch that answers BARRIERs only when told (as a slow one would, late)."""

    dpid = DPID

    def __init__(self) -> None:
        self.barriers: list[Any] = []

    def barrier(self, done: Any) -> None:
        self.barriers.append(done)


def test_a_connection_waits_when_a_pswitch_has_two_windows_of_its_work_undone() -> None:
    async def run() -> None:
        _, (a, _), _, _ = tenant(TenantLimits())
        conn = ControllerConn(a, "tcp:127.0.0.1:1")
        s = SlowSession()
        for _ in range(PSWITCH_WINDOW):
            conn.sent_to(s)  # type: ignore[arg-type]
        assert len(s.barriers) == 1 and not conn.channel._blocked  # a checkpoint asked
        for _ in range(PSWITCH_WINDOW):
            conn.sent_to(s)  # type: ignore[arg-type]
        assert len(s.barriers) == 2 and conn.channel._blocked  # two windows undone: wait
        s.barriers.pop(0)()
        assert not conn.channel._blocked  # the pswitch caught up with the first
        conn.channel.close("test done")

    asyncio.run(run())


def test_a_blocked_channel_handles_nothing_until_unblocked() -> None:
    async def run() -> tuple[int, int, float]:
        log: list[str] = []
        ch, theirs = await _pair(Recorder(log, "a"))
        ch.quantum = QUANTUM
        ch.block()
        barrier = _HDR.pack(4, ofp.OFPT_BARRIER_REQUEST, 8, 1)
        theirs.send(barrier * 10)
        await asyncio.sleep(0.05)
        before = len(log)
        ch.unblock()
        await asyncio.sleep(0.05)
        theirs.close()
        return before, len(log), ch.blocked_s

    before, after, waited = asyncio.run(run())
    assert (before, after) == (0, 10) and waited >= 0.04
