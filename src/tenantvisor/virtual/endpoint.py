"""One vswitch as its tenant's controllers see it: an OpenFlow 1.3 switch.

It answers the handshake and configuration itself, keeps the tenant's flow table, translates
FLOW_MOD and PACKET_OUT into physical messages for the vswitch's pswitch, relays PACKET_IN
back in virtual terms, and answers BARRIER only when the pswitch has answered its own.
Anything wrong in what a tenant sends ends as an OpenFlow error to that tenant (or, for
malformed bytes, a closed channel); it never reaches another tenant or the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.limits import MeterCount
from tenantvisor.mapping import layout
from tenantvisor.mapping.alloc import tenant_owner
from tenantvisor.mapping.frmap import PhysRuleMap
from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.channel import QUANTUM, Channel
from tenantvisor.openflow.codec import FlowMod, MalformedMessage, OFError, PacketIn, PacketOut
from tenantvisor.openflow.of10 import Of10Adapter
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.quotas import TokenBucket
from tenantvisor.reduce.headerspace import Cube
from tenantvisor.reduce.levels import KEPT, outputs
from tenantvisor.reduce.packet import apply_actions, fields
from tenantvisor.reduce.prove import Reducer, VSwitchPlan, arrivals, rule_cube
from tenantvisor.reduce.realize import (
    exception_rule,
    lite_exception_rule,
    lite_rule,
    reduced_rule,
)
from tenantvisor.translate.flow import (
    PhysFlow,
    TenantMatch,
    TranslatedFlow,
    lite_destination,
    physical_match,
    translate_flow,
    translate_packet_out,
)
from tenantvisor.translate.flow10 import check_actions as check_actions10
from tenantvisor.translate.flow10 import translate_flow10
from tenantvisor.translate.group import GroupSpec, parse_buckets
from tenantvisor.translate.meter import meter_mod
from tenantvisor.translate.view import PortMap, VSwitchView
from tenantvisor.virtual.budget import TenantBudget
from tenantvisor.virtual.decide import (
    Added,
    Modified,
    PhysOp,
    decide_flow_mod,
    decide_role,
    drop,
    release,
    reprogram,
    roll_back,
    split_exceptions,
)
from tenantvisor.virtual.flowtable import VFlow, VirtualFlowTable, normalize
from tenantvisor.virtual.groups import VGroup, VMeter, VSwitchGroups
from tenantvisor.virtual.outbox import Outbox, Touches
from tenantvisor.virtual.stats import VSwitchStats
from tenantvisor.virtual.urls import ControllerUrl, parse_controller_url

log = logging.getLogger(__name__)
_FEATURES = struct.Struct("!QIBB2xII")
# the statistics a vswitch answers from its own counters (FEATURES_REPLY capabilities);
# not QUEUE_STATS (no queues), IP_REASM nor PORT_BLOCKED
CAPABILITIES = (
    ofp.OFPC_FLOW_STATS | ofp.OFPC_TABLE_STATS | ofp.OFPC_PORT_STATS | ofp.OFPC_GROUP_STATS
)
_PORT = struct.Struct(ofp.OFP_PORT_PACK_STR)
_PI_NO_COOKIE = 0xFFFFFFFFFFFFFFFF
IDLE_POLL = 1.0  # seconds between counter reads of rules whose idle timeout is emulated
MAX_INJECTED_HOPS = 32  # vlinks an injected packet is carried over in software at most
EDGE_DOWN_GRACE = 2.0  # s an edge vport with hosts may be down before its tenant is told
COMPACT_DELAY = 1.0  # seconds after a removal before the neighbours re-plan (batched)
BATCH_REPLAN = 16  # rules changed by one FLOW_MOD beyond which the vswitch re-plans whole
# Messages one controller connection may have sent a pswitch beyond the last of them the
# pswitch is known to have done (a BARRIER answered); at twice this many, the connection is
# read no further until it has: a tenant's work queued in a pswitch every tenant shares is
# bounded, however slow the pswitch (a hardware switch may take a millisecond per rule).
PSWITCH_WINDOW = 64
_ROLE_NAMES = {
    ofp.OFPCR_ROLE_EQUAL: "EQUAL",
    ofp.OFPCR_ROLE_MASTER: "MASTER",
    ofp.OFPCR_ROLE_SLAVE: "SLAVE",
}


class EndpointHost(Protocol):
    """What an endpoint needs from the daemon."""

    max_rules: int  # rules one vswitch may hold (all tables)

    def session(self, dpid: int) -> PSwitchSession | None: ...

    def deliver_lldp(self, net_id: int, vdpid: int, vport: int, data: bytes) -> None: ...

    def vlink_peer(self, net_id: int, vdpid: int, vport: int) -> tuple[int, int, int] | None: ...

    def peer_endpoint(self, net_id: int, vdpid: int) -> VSwitchEndpoint | None: ...

    def classified_counts(
        self, net_id: int, dpids: set[int], done: Callable[[dict[tuple[int, int], list[int]]], None]
    ) -> None: ...

    def classify_dpids(self, net_id: int, vdpid: int) -> set[int]: ...

    def alloc_id(self, kind: str, dpid: int, owner: Hashable) -> int | None: ...

    def free_id(self, kind: str, dpid: int, value: int) -> None: ...

    def outbox(self, net_id: int) -> Outbox: ...


class Relay(Protocol):
    """Where the pswitches' errors for a tenant message go (`VSwitchEndpoint._error_relay`):
    an error callback that may also be told which physical operation was refused."""

    def __call__(self, etype: int, code: int, data: bytes, op: PhysOp | None = None) -> None: ...


@dataclass(slots=True)
class _Dying:
    """A removed rule whose physical FLOW_REMOVED messages are still to come."""

    vflow: VFlow
    remaining: int
    reason: int
    packets: int = 0
    bytes: int = 0
    duration: tuple[int, int] = (0, 0)


class _Barriers:
    """Tenant barriers of one connection, replied strictly in the order they arrived."""

    def __init__(self, send: Callable[[int], None]) -> None:
        self._send = send
        self._queue: deque[list[int]] = deque()  # [xid, outstanding]

    def add(self, xid: int, waits: list[PSwitchSession]) -> None:
        entry = [xid, len(waits)]
        self._queue.append(entry)

        def done() -> None:
            entry[1] -= 1
            self._flush()

        for s in waits:
            s.barrier(done)
        self._flush()

    def _flush(self) -> None:
        q = self._queue
        while q and q[0][1] <= 0:
            self._send(q.popleft()[0])


# Asynchronous messages a connection gets by default (OF1.3 7.3.10), as
# (master/equal mask, slave mask) bitmaps of reasons.
_DEFAULT_ASYNC = (
    ((1 << ofp.OFPR_NO_MATCH) | (1 << ofp.OFPR_ACTION), 0),  # PACKET_IN
    (0b111, 0b111),  # PORT_STATUS: add, delete, modify
    (0b1111, 0),  # FLOW_REMOVED: idle, hard, delete, group delete
)
_PACKET_IN, _PORT_STATUS, _FLOW_REMOVED = range(3)
_VERSIONS = frozenset({1, codec.VERSION})  # controllers may speak OpenFlow 1.0 or 1.3
_IMPLICIT_MISS = 0  # rule serial of the table miss OpenFlow 1.0 controllers expect
ARRIVALS_KEPT = 256  # frames carried in from a neighbour, remembered (1 s) for PACKET_IN
ARRIVAL_KEY = 128  # bytes of a frame that name it
_EXCEPTIONS = -1  # owner of the exact drops above reduced rules (no tenant rule's)
_ASYNC = struct.Struct("!IIIIII")
_ROLE = struct.Struct("!I4xQ")
# What needs the network's held operations applied first (a BARRIER: their replies).
_ORDERED = frozenset(
    (ofp.OFPT_PACKET_OUT, ofp.OFPT_BARRIER_REQUEST, ofp.OFPT_MULTIPART_REQUEST,
     ofp.OFPT_ROLE_REQUEST, ofp.OFPT_GROUP_MOD, ofp.OFPT_METER_MOD)
)  # fmt: skip
# Statistics answered from the pswitch's counters (a request to it for each of the tenant's).
_FROM_PSWITCH = frozenset(
    (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE, ofp.OFPMP_TABLE, ofp.OFPMP_PORT_STATS,
     ofp.OFPMP_GROUP, ofp.OFPMP_METER, ofp.OFPMP_QUEUE)
)  # fmt: skip
# What a SLAVE controller may not send (OF1.3 6.3.4).
_WRITES = frozenset(
    (ofp.OFPT_FLOW_MOD, ofp.OFPT_PACKET_OUT, ofp.OFPT_GROUP_MOD, ofp.OFPT_PORT_MOD,
     ofp.OFPT_TABLE_MOD, ofp.OFPT_METER_MOD)
)  # fmt: skip


def _port_changed(before: PortMap | None, after: PortMap | None) -> bool:
    """Whether a vport changed as the tenant sees it (added, removed, up or down); a new
    path, tag or failover group under it is the hypervisor's business."""
    if before is None or after is None:
        return True
    return before.up != after.up


class ControllerConn:
    """One connection to one tenant controller."""

    def __init__(self, ep: VSwitchEndpoint, url: str) -> None:
        self.ep = ep
        self.url = url
        self.role = ofp.OFPCR_ROLE_EQUAL
        self.async_masks = [list(m) for m in _DEFAULT_ASYNC]
        self.channel = Channel(
            self, f"vswitch {ep.vdpid:016x}", versions=_VERSIONS, close_when_stuck=True
        )
        if ep.budget is not None:  # the tenant's message rate: back-pressure beyond it
            lim = ep.budget.limits
            self.channel.bucket = TokenBucket(lim.msg_rate, lim.msg_burst, time.monotonic())
            self.channel.quantum = QUANTUM
        self.of10: Of10Adapter | None = None
        self.touched: set[int] = set()  # pswitches sent to since the last barrier
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.barriers = _Barriers(self._barrier_reply)
        self._unconfirmed: dict[int, int] = {}  # dpid -> messages sent since a checkpoint
        self._checkpoints = 0  # BARRIERs asked of pswitches for this window, unanswered

    def sent_to(self, session: PSwitchSession) -> None:
        """One more message sent to `session` for this connection (PSWITCH_WINDOW)."""
        if self.ep.budget is None:
            return
        d = session.dpid or 0
        n = self._unconfirmed.get(d, 0) + 1
        if n < PSWITCH_WINDOW:
            self._unconfirmed[d] = n
            return
        self._unconfirmed[d] = 0
        self._checkpoints += 1
        if self._checkpoints > 1:
            self.channel.block()
        session.barrier(self._confirmed)

    def _confirmed(self) -> None:
        self._checkpoints -= 1
        if self._checkpoints <= 1:
            self.channel.unblock()

    def _barrier_reply(self, xid: int) -> None:
        ch = self.channel
        ch.send(codec.header(ch.version, ofp.OFPT_BARRIER_REPLY, xid))

    def channel_ready(self, ch: Channel) -> None:
        ep = self.ep
        if ch.version == Of10Adapter.VERSION:
            self.of10 = Of10Adapter(
                lambda: [ep._port_desc(n) for n in sorted(ep.view.ports)], lambda: ep.vdpid
            )
            ch.outbound = self.of10.outbound
        name = "1.0" if self.of10 is not None else "1.3"
        log.info("%s: controller %s connected (OpenFlow %s)", ep.label, self.url, name)
        ep.conns.add(self)
        ep.update_of10_miss()

    def channel_closed(self, ch: Channel, reason: str) -> None:
        self.ep.conns.discard(self)
        if self.of10 is not None:
            self.ep.update_of10_miss()
        self.ep.rx_msgs += ch.rx_msgs  # keep the count of closed connections
        self.ep.delayed_msgs += ch.delayed_msgs
        self.ep.throttled_s += ch.throttled_s + ch.blocked_s
        if ch.version:
            log.info("%s: controller %s disconnected: %s", self.ep.label, self.url, reason)
        if not self.closed.done():
            self.closed.set_result(reason)

    def wants(self, kind: int, reason: int) -> bool:
        """Whether this connection's role and SET_ASYNC ask for this asynchronous message."""
        mask = self.async_masks[kind][1 if self.role == ofp.OFPCR_ROLE_SLAVE else 0]
        return bool(mask >> reason & 1)

    def channel_message(self, ch: Channel, msg_type: int, xid: int, msg: bytes) -> None:
        try:
            if self.of10 is not None:  # an OpenFlow 1.0 controller: convert at the edge
                converted = self.of10.inbound(msg_type, xid, msg)
                if isinstance(converted, bytes):
                    ch.send(converted)
                    return
                if converted is None:
                    return
                msg_type13, msg13 = converted
                self.ep.handle(self, msg_type13, xid, msg13)
                return
            if msg_type in _WRITES and self.role == ofp.OFPCR_ROLE_SLAVE:
                raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, "controller is slave")
            self.ep.handle(self, msg_type, xid, msg)
        except OFError as exc:
            log.debug("%s: refused message type %d: %s", self.ep.label, msg_type, exc)
            ch.send_error(xid, exc.type, exc.code, msg)
        except MalformedMessage as exc:
            log.warning("%s: closing %s: malformed message: %s", self.ep.label, self.url, exc)
            ch.close(f"malformed message: {exc}")
        except Exception:
            log.exception("%s: failed on message type %d", self.ep.label, msg_type)
            ch.send_error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_EPERM, msg)


def proof_inputs(views: dict[int, VSwitchView]) -> list[object]:
    """What the reduction proofs of a vswitch, and of its vlink neighbours, read of its
    views (replan, _links, pushes_lite, Reducer.set_lite): which vports are there and
    local, which face vlinks, their LITE tags, the hosts on edge vports (or any sender, on
    an exclusive one), OpenFlow 1.0.
    Where a vport is physically (its port, the path to a moved host) is not among them:
    that is re-translated, not re-proved."""
    return [
        (d, v.of10, v.lite, [(n, pm.remote, pm.is_link, pm.lite_in, pm.lite_base, pm.hosts,
                              pm.exclusive) for n, pm in v.ports.items()])
        for d, v in views.items()
    ]  # fmt: skip


class VSwitchEndpoint:
    def __init__(
        self, host: EndpointHost, views: dict[int, VSwitchView], urls: list[str], tenant: str,
        budget: TenantBudget | None = None,
        resync: bool = False,
    ) -> None:  # fmt: skip
        """`resync`: the caller re-reads every pswitch of the vswitch next (a takeover),
        whose sync installs the PACKET_IN meters only where they are missing; otherwise
        they are sent at once to the pswitches already synced."""
        self.host = host
        # the tenant's limits (quotas.py), shared by its vswitches; None: none applied
        self.budget = budget
        # one view per pswitch the vswitch spans (several: a big switch); the first is its
        # primary, where controller-injected packets enter and groups/meters live
        self.views = dict(views)
        self.proofs_stale = True  # what the proofs read of the views changed (set_views)
        self.view = next(iter(self.views.values()))
        view = self.view
        self.vdpid = view.vdpid
        dpids = ",".join(f"{d:016x}" for d in self.views)
        self.label = f"tenant={tenant} net={view.net_id} vswitch={view.vdpid:016x} dpid={dpids}"
        self.urls = [parse_controller_url(u) for u in urls]
        self._url_texts = list(urls)  # as given: every recompile passes them again
        self.table = VirtualFlowTable()
        self.rules = PhysRuleMap()  # physical rules and the virtual rules behind each
        self.conns: set[ControllerConn] = set()
        self.flags = 0
        self.miss_send_len = 128
        self.port_names: dict[int, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._servers: list[asyncio.Server] = []
        self._stopped = False
        self._dying: dict[int, _Dying] = {}  # removed rules whose FLOW_REMOVED is pending
        self._idle_watch: dict[int, VFlow] = {}  # rules whose idle timeout we emulate
        self.groups_dirty = False  # groups or meters changed since the store took them
        self.packet_ins = 0
        # table-0 lookups the tenant injected (PACKET_OUT to TABLE), for TABLE statistics;
        # the packets from the wire are counted by the classification rules
        self.packet_outs_to_table = 0
        self.rx_msgs = 0  # from controllers whose connection has closed
        self.delayed_msgs = 0  # of those, handled after waiting for tokens
        self.throttled_s = 0.0  # and the time they waited
        # PACKET_INs to the controllers beyond the tenant's rate are dropped (counted); the
        # pswitches meter them first, per vswitch (`pin_meters`: dpid -> physical meter id)
        self.pin_bucket: TokenBucket | None = None
        self.packet_ins_dropped = 0
        self.pin_meters: dict[int, int] = {}
        self.pin_metered: dict[int, MeterCount] = {}  # dpid -> what its meter let in, dropped
        self.generation: int | None = None  # last MASTER/SLAVE generation id (OF1.3 6.3.5)
        self.created = time.monotonic()
        # parts: the tenant's groups and meters (GROUP_MOD, METER_MOD), statistics (MULTIPART)
        self.groups_meters = VSwitchGroups(self)
        self.stats = VSwitchStats(self, self.groups_meters)
        # flow-rule reduction (reduce/): the network's level and this vswitch's plan (None:
        # every rule exact, as at level exact)
        self.level = "exact"
        self.reducer: Reducer | None = None
        self.plan: VSwitchPlan | None = None
        self._compact: asyncio.TimerHandle | None = None  # a re-plan after removals
        self.held_down: dict[int, asyncio.TimerHandle] = {}  # vports down, not yet said
        self._exceptions: tuple[PhysFlow, ...] = ()  # exact drops above reduced rules
        # the network's physical operations, held while drops are pending (outbox.py):
        # drops the plan wants that are not sent (nor in the rule map), and the tenant
        # connections whose FLOW_MODs made them wanted (their BARRIERs wait for them)
        self.outbox = host.outbox(view.net_id)
        self._pending: tuple[PhysFlow, ...] = ()
        self._pending_since = 0  # where in the outbox's held operations they became pending
        self._pending_conns: set[Touches] = set()
        self._cubes: dict[int, tuple[VFlow, Cube]] = {}  # table-0 matches for lookups
        # frames a neighbour's PACKET_OUT (reduced: carried in the daemon) made enter here
        # over a vlink, by (vport, frame start): injected to the pswitch, but arrived
        self._arrivals: dict[tuple[int, bytes], float] = {}
        if budget is not None:
            lim = budget.limits
            self.pin_bucket = TokenBucket(lim.packet_in_rate, lim.packet_in_burst,
                                          time.monotonic())  # fmt: skip
            self._add_pin_meters(send=not resync)

    @property
    def group_map(self) -> dict[int, int]:
        """The tenant's group ids -> physical ids, on the first pswitch."""
        return self.groups_meters.group_map

    @property
    def meter_map(self) -> dict[int, int]:
        return self.groups_meters.meter_map

    def _port_desc(self, n: int) -> bytes:
        return self.stats.port_desc(n)

    # --- limits (quotas.py): the tenant's budget as this vswitch applies it ----------------
    def quota_full(self, kind: str) -> str | None:
        """Why the tenant may not add one more rule, group or meter (its quota over all
        its vswitches is reached), or None."""
        return None if self.budget is None else self.budget.full(kind)

    def _pin_meter_config(self) -> tuple[int, bytes]:
        """(flags, bands) of this vswitch's PACKET_IN meter on its pswitches."""
        assert self.budget is not None
        lim = self.budget.limits
        band = struct.pack("!HHIIxxxx", ofp.OFPMBT_DROP, 16, lim.packet_in_meter_rate,
                           lim.packet_in_meter_burst)  # fmt: skip
        return ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, band

    def _add_pin_meters(self, send: bool = True) -> None:
        """A PACKET_IN meter on each pswitch that can meter outputs to the controller: the
        tenant's rules that send there pass it (translate_flow's `pin_meter`), so a
        flooding tenant's packets are dropped on the pswitch, before they cost the control
        channel every tenant shares, or the daemon, anything."""
        for dpid, view in self.views.items():
            s = self.host.session(dpid)
            if view.of10 or (s is not None and not s.driver.meters_packet_ins):
                continue
            owner = tenant_owner(view.net_id, view.vdpid, "pin", 0)
            phys = self.host.alloc_id("meter", dpid, owner)
            if phys is None:
                log.warning("%s: no meter id left on pswitch %016x: its PACKET_INs are limited "
                            "by the daemon alone", self.label, dpid)  # fmt: skip
                continue
            self.pin_meters[dpid] = phys
            if send:
                self._send_pin_meter(dpid, ofp.OFPMC_ADD)

    def _send_pin_meter(self, dpid: int, command: int) -> None:
        """Now, to a synced pswitch (one that syncs later reads it from `desired_meters`)."""
        flags, bands = self._pin_meter_config()
        msg = meter_mod(command, flags, self.pin_meters[dpid], bands)
        s = self.host.session(dpid)
        if s is not None and s.synced:
            s.send_flow(lambda x: codec.set_xid(msg, x), None)

    def apply_limits(self) -> None:
        """The tenant's limits changed: its connections' and this vswitch's buckets and
        meters take the new rates at once (tokens earned stay, up to the new burst)."""
        if self.budget is None:
            return
        lim = self.budget.limits
        now = time.monotonic()
        for c in self.conns:
            if c.channel.bucket is not None:
                c.channel.bucket.set(lim.msg_rate, lim.msg_burst, now)
        if self.pin_bucket is not None:
            self.pin_bucket.set(lim.packet_in_rate, lim.packet_in_burst, now)
        for dpid in self.pin_meters:
            self._send_pin_meter(dpid, ofp.OFPMC_MODIFY)

    def limit_counters(self) -> dict[str, float]:
        """What the limits did here (budget.COUNTERS): connections closed and open."""
        chans = [c.channel for c in self.conns]
        return {
            "messages": self.rx_msgs + sum(ch.rx_msgs for ch in chans),
            "messages_delayed": self.delayed_msgs + sum(ch.delayed_msgs for ch in chans),
            "throttled_seconds": self.throttled_s
            + sum(ch.throttled_s + ch.blocked_s for ch in chans),
            "packet_ins": self.packet_ins,
            "packet_ins_dropped": self.packet_ins_dropped,
            "packet_ins_metered": sum(c.dropped for c in self.pin_metered.values()),
        }

    def _pin_allowed(self) -> bool:
        """Whether one more PACKET_IN may go to the controllers now (else it is dropped
        and counted)."""
        b = self.pin_bucket
        if b is None or b.take(time.monotonic()):
            return True
        self.packet_ins_dropped += 1
        return False

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks.append(asyncio.ensure_future(self._idle_loop()))
        for url in self.urls:
            self._tasks.append(asyncio.ensure_future(self._run(url)))

    async def _run(self, url: ControllerUrl) -> None:
        loop = asyncio.get_running_loop()
        if not url.active:
            try:
                server = await loop.create_server(
                    lambda: ControllerConn(self, str(url)).channel, url.host, url.port
                )
            except OSError as exc:
                log.error("%s: cannot listen on %s: %s", self.label, url, exc)
                return
            self._servers.append(server)
            log.info("%s: listening for controllers on %s", self.label, url)
            return
        delay = 0.5
        warned = False
        while not self._stopped:
            conn = ControllerConn(self, str(url))
            try:
                await loop.create_connection(lambda c=conn: c.channel, url.host, url.port)  # type: ignore[misc]
            except OSError as exc:
                if not warned:
                    log.warning("%s: controller %s unreachable: %s", self.label, url, exc)
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 8.0)
                continue
            warned = False
            delay = 0.5
            await conn.closed
            if not self._stopped:
                await asyncio.sleep(1.0)

    def set_controllers(self, urls: list[str]) -> None:
        """New controller URLs: drop the old connections and listeners, connect anew."""
        if urls == self._url_texts:
            return  # the usual case (each recompile of the network): nothing to parse
        new = [parse_controller_url(u) for u in urls]
        self._url_texts = list(urls)
        if new == self.urls:
            return
        self.stop("controller URLs changed")
        self.urls = new
        self._stopped = False
        self.start()

    def stop(self, reason: str = "virtual network stopped") -> None:
        self._settle()
        self._stopped = True
        if self._compact is not None:
            self._compact.cancel()
            self._compact = None
        for h in self.held_down.values():
            h.cancel()
        self.held_down.clear()
        for t in self._tasks:
            t.cancel()
        for s in self._servers:
            s.close()
        for c in list(self.conns):
            c.channel.close(reason)
        self._tasks.clear()
        self._servers.clear()

    # --- view changes and re-programming ---------------------------------------------------
    def set_views(
        self, views: dict[int, VSwitchView], port_names: dict[int, str], replan: bool = True
    ) -> bool:
        """New ports, paths or tags: re-translate every rule and program the difference
        (whether anything changed; `replan` False: the caller re-plans once every vswitch of
        the network has its new views, since the proofs read the neighbours').  Whether
        what the reduction proofs read of the views changed too is `proofs_stale`: a host
        that moved changes where its vport is, not what the proofs rest on."""
        self._settle()
        old_ports = self.view.ports
        changed = views != self.views
        self.proofs_stale = changed and proof_inputs(views) != proof_inputs(self.views)
        self.views = dict(views)
        self.view = next(iter(self.views.values()))
        self.port_names = port_names
        if not changed:
            return False
        view = self.view
        for n in set(old_ports) | set(view.ports):
            before, after = old_ports.get(n), view.ports.get(n)
            if before != after and _port_changed(before, after) and not self._hold(n, after):
                self._port_status(n, before is None, after is None)
        for vf in self.table:
            try:
                tf = self._translate(vf.table, vf.match, vf.instructions, vf.priority)
            except OFError as exc:
                # e.g. the rule outputs to a vport that was removed: the rule goes too.
                log.info("%s: rule %d dropped after a change: %s", self.label, vf.serial, exc)
                self.table.remove(vf)
                self._drop(vf, None, None, None)
                continue
            self._reprogram(None, vf, self._phys(vf, tf), None, None)
        if self.reducer is not None and replan and self.proofs_stale:
            self.replan()  # vports and vlinks are what the proofs rest on
        return True

    def _hold(self, n: int, after: PortMap | None) -> bool:
        """Whether a change of edge vport `n` stays unsaid for now: a host's port that
        goes down is held EDGE_DOWN_GRACE (a live migration unplugs the host before the
        orchestrator or its gratuitous ARP says where it went; the vport then follows it
        and comes back up), and coming back up within it says nothing at all."""
        held = self.held_down.pop(n, None)
        if held is not None:
            held.cancel()
            # never reported down: back up, nothing to tell; anything else is said now
            return after is not None and after.up
        if after is None or after.up or after.is_link or not after.hosts or after.exclusive:
            return False  # an exclusive vport is its port: it never follows a host
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.held_down[n] = loop.call_later(EDGE_DOWN_GRACE, self._held_down_now, n)
        return True

    def _held_down_now(self, n: int) -> None:
        """The grace is over and the vport is still down: say so now."""
        self.held_down.pop(n, None)
        pm = self.view.ports.get(n)
        if not self._stopped and pm is not None and not pm.up:
            self._port_status(n, False, False)

    def view_of(self, vport: int) -> VSwitchView:
        """The view of the pswitch where `vport` is (the primary for 0, the controller)."""
        for v in self.views.values():
            pm = v.ports.get(vport)
            if pm is not None and not pm.remote:
                return v
        return self.view

    def update_of10_miss(self) -> None:
        """OpenFlow 1.0 sends a table miss to the controller, 1.3 drops it.  As OVS does, a
        vswitch with a 1.0 controller connected sends misses to its controllers: an implicit
        priority-0 rule (owner serial 0; a tenant's own table-miss rule takes precedence)."""
        self._settle()
        want = any(c.of10 is not None for c in self.conns)
        for pf in self._implicit_miss():
            session = self.host.session(pf.dpid)
            has = _IMPLICIT_MISS in self.rules.owners(pf.key)
            if want and not has:
                if self.rules.add_fallback(_IMPLICIT_MISS, pf):
                    self._send_phys(None, session, self._rule(session, pf), None)
            elif has and not want:
                self._release(session, None, _IMPLICIT_MISS, pf, None)

    def _implicit_miss(self) -> list[PhysFlow]:
        cookie = layout.tenant_cookie(self.view.net_id, _IMPLICIT_MISS)
        ins = codec.encode_instructions(apply_actions=codec.output(ofp.OFPP_CONTROLLER, 0xFFFF))
        out = []
        for view in self.views.values():
            if view.of10:  # folded per ingress like any rule, at the tenant's lowest priority
                tf = translate_flow10(view, 0, [], ins, table_miss=True)
                out += [PhysFlow(view.dpid, 0, 1, m, i, cookie) for m, i in tf.flows]
                continue
            pin = self.pin_meters.get(view.dpid)
            act = codec.output(ofp.OFPP_CONTROLLER, 0xFFFF) if pin is None else (
                codec.controller_metered(0xFFFF, pin))  # fmt: skip
            match = physical_match(view, TenantMatch((), None, None), None)
            out.append(PhysFlow(view.dpid, layout.TABLE_OFFSET, 0, match,
                                codec.encode_instructions(apply_actions=act), cookie))  # fmt: skip
        return out

    @staticmethod
    def _rule(
        session: PSwitchSession | None, pf: PhysFlow, command: int = ofp.OFPFC_ADD
    ) -> Callable[[int], bytes]:
        """A FLOW_MOD builder for `pf` in the pswitch's OpenFlow version."""
        if session is not None:
            return session.rule(pf, command)
        return pf.delete_strict if command == ofp.OFPFC_DELETE_STRICT else pf.flow_mod

    @staticmethod
    def _packet_out_bytes(session: PSwitchSession | None, out13: bytes) -> bytes:
        """A PACKET_OUT built in OpenFlow 1.3, as the pswitch's driver takes it."""
        return out13 if session is None else session.driver.packet_out13(out13)

    def _translate(
        self, table: int, match: list[codec.Oxm], instructions: bytes, priority: int = 1
    ) -> list[tuple[int, TranslatedFlow]]:
        """A rule of this vswitch as it stands now, on each of its pswitches: their views,
        groups and meters.  Raises OFError for what the tenant may not do."""
        out = []
        for dpid, view in self.views.items():
            if view is not self.view and not view.ingress_ports:
                continue  # a big switch's pswitch with no vport of its own: nothing enters
            if view.of10:
                miss = priority == 0 and not normalize(match)
                out.append((dpid, translate_flow10(view, table, match, instructions, miss)))
            else:
                # the tenant's groups and meters exist on the first pswitch only: their
                # physical ids mean nothing (or someone else's) on the others
                primary = view is self.view
                groups = self.group_map if primary else {}
                meters = self.meter_map if primary else {}
                lite = lite_destination(view.lite, match, instructions) if table == 0 else 0
                out.append((dpid, translate_flow(view, table, match, instructions, groups,
                                                 meters, lite_dst=lite,
                                                 pin_meter=self.pin_meters.get(dpid))))  # fmt: skip
        return out

    def pushes_lite(self, vf: VFlow, vport: int) -> bool:
        """Whether what `vf` sends out of link `vport` carries a LITE tag (its physical rules
        tag it: the far end's proofs count it among the tagged arrivals, not the plain)."""
        if vf.table != 0:
            return False
        view = self.view_of(vport)
        pm = view.ports.get(vport)
        if pm is None or pm.lite_base is None:
            return False
        return lite_destination(view.lite, vf.match, vf.instructions) != 0

    def restore(
        self, flows: list[VFlow], groups: dict[int, VGroup], meters: dict[int, VMeter]
    ) -> None:
        """The vswitch's tables as the store kept them (a restart): groups and meters on
        their physical ids (the allocator has them back), rules with their serials (so their
        physical cookies are the ones on the pswitches), translated against the views.
        Nothing is sent: each pswitch's sync compares them with what it has."""
        self.groups_meters.groups.update(groups)
        self.groups_meters.meters.update(meters)
        self.table.restore(flows)
        for vf in sorted(flows, key=lambda v: v.serial):  # the latest owner wins a shared key
            try:
                tf = self._translate(vf.table, vf.match, vf.instructions, vf.priority)
            except OFError as exc:
                log.warning("%s: stored rule %d no longer fits: %s", self.label, vf.serial, exc)
                self.table.remove(vf)
                continue
            vf.phys = self._phys(vf, tf)
            for pf in vf.phys:
                self.rules.add(vf.serial, pf)

    def desired_groups(self, dpid: int) -> list[GroupSpec]:
        """The tenant's groups as pswitch `dpid` should hold them (for reconciliation)."""
        return self.groups_meters.desired_groups(dpid)

    def desired_meters(self, dpid: int) -> dict[int, tuple[int, bytes]]:
        out = self.groups_meters.desired_meters(dpid)
        pin = self.pin_meters.get(dpid)
        if pin is not None:
            out[pin] = self._pin_meter_config()
        return out

    def drop_all(self) -> None:
        """The vswitch goes away: its rules, groups and meters leave the pswitches."""
        self._settle()
        self.table.clear()
        for pf in self.rules.clear():
            s = self.host.session(pf.dpid)
            if s is not None and s.synced:
                s.send_flow(s.rule(pf, ofp.OFPFC_DELETE_STRICT), None)
        session = self.host.session(self.view.dpid)
        deletes = self.groups_meters.clear()  # forgotten, their ids freed
        if session is not None and session.synced:
            for msg in deletes:
                session.send_flow(lambda x, m=msg: codec.set_xid(m, x), None)  # type: ignore[misc]
        for dpid, phys in self.pin_meters.items():  # after the rules that passed them
            s = self.host.session(dpid)
            if s is not None and s.synced:
                gone = meter_mod(ofp.OFPMC_DELETE, 0, phys, b"")
                s.send_flow(lambda x, m=gone: codec.set_xid(m, x), None)  # type: ignore[misc]
            self.host.free_id("meter", dpid, phys)
        self.pin_meters.clear()

    # --- tenant messages ---------------------------------------------------------------------
    def handle(self, conn: ControllerConn, t: int, xid: int, msg: bytes) -> None:
        ch = conn.channel
        if t == ofp.OFPT_FLOW_MOD:
            self._flow_mod(conn, xid, msg)
            return
        if t in _ORDERED and self.outbox.busy:
            # the network's operations are held for pending drops (outbox.py): this one
            # needs them applied, so the drops go first, then what was held; a BARRIER at
            # the end of this event-loop turn, when what was read meanwhile is handled
            if t == ofp.OFPT_BARRIER_REQUEST:
                self.outbox.flush_soon(lambda: self._barrier(conn, xid))
                return
            self.outbox.flush()
        if t == ofp.OFPT_PACKET_OUT:
            self._packet_out(conn, xid, msg)
        elif t == ofp.OFPT_BARRIER_REQUEST:
            self._barrier(conn, xid)
        elif t == ofp.OFPT_FEATURES_REQUEST:
            body = _FEATURES.pack(self.vdpid, 0, self.view.n_tables, 0, CAPABILITIES, 0)
            ch.send(codec.header(ch.version, ofp.OFPT_FEATURES_REPLY, xid, body))
        elif t == ofp.OFPT_QUEUE_GET_CONFIG_REQUEST:
            if len(msg) < 16:
                raise MalformedMessage("QUEUE_GET_CONFIG_REQUEST too short")
            port = codec.u32(msg, 8)
            if port != ofp.OFPP_ANY and port not in self.view.ports:
                raise OFError(ofp.OFPET_QUEUE_OP_FAILED, ofp.OFPQOFC_BAD_PORT, f"port {port}")
            # no queues are offered (set_queue is refused): a port with none
            body = struct.pack("!I4x", port)
            ch.send(codec.header(ch.version, ofp.OFPT_QUEUE_GET_CONFIG_REPLY, xid, body))
        elif t == ofp.OFPT_GET_CONFIG_REQUEST:
            body = struct.pack("!HH", self.flags, self.miss_send_len)
            ch.send(codec.header(ch.version, ofp.OFPT_GET_CONFIG_REPLY, xid, body))
        elif t == ofp.OFPT_SET_CONFIG:
            if len(msg) < 12:
                raise MalformedMessage("SET_CONFIG too short")
            self.flags, self.miss_send_len = struct.unpack_from("!HH", msg, 8)
        elif t == ofp.OFPT_MULTIPART_REQUEST:
            self.stats.multipart(conn, xid, msg)
            if len(msg) >= 10 and codec.u16(msg, 8) in _FROM_PSWITCH:
                s = self.host.session(self.view.dpid)
                if s is not None:
                    conn.sent_to(s)  # its counters are read from the pswitch
        elif t == ofp.OFPT_GROUP_MOD:
            self.groups_dirty = True  # for the store
            self.groups_meters.group_mod(conn, xid, msg)
        elif t == ofp.OFPT_METER_MOD:
            self.groups_dirty = True
            self.groups_meters.meter_mod(conn, xid, msg)
        elif t == ofp.OFPT_ROLE_REQUEST:
            self._role_request(conn, xid, msg)
        elif t == ofp.OFPT_GET_ASYNC_REQUEST:
            masks = [m for kind in conn.async_masks for m in kind]
            ch.send(codec.header(ch.version, ofp.OFPT_GET_ASYNC_REPLY, xid, _ASYNC.pack(*masks)))
        elif t == ofp.OFPT_SET_ASYNC:
            if len(msg) < 8 + _ASYNC.size:
                raise MalformedMessage("SET_ASYNC too short")
            pi0, pi1, ps0, ps1, fr0, fr1 = _ASYNC.unpack_from(msg, 8)
            conn.async_masks = [[pi0, pi1], [ps0, ps1], [fr0, fr1]]
        elif t == ofp.OFPT_HELLO:
            pass
        elif t == ofp.OFPT_EXPERIMENTER:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER, "no experimenters")
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, f"message type {t}")

    def _barrier(self, conn: ControllerConn, xid: int) -> None:
        """Answered when every pswitch the connection sent to has answered its own."""
        waits = [s for d in conn.touched if (s := self.host.session(d)) is not None]
        conn.touched.clear()
        conn.barriers.add(xid, waits)

    def _role_request(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        """OF1.3 7.3.9, decided by decide.decide_role."""
        if len(msg) < 8 + _ROLE.size:
            raise MalformedMessage("ROLE_REQUEST too short")
        role, gen = _ROLE.unpack_from(msg, 8)
        roles, self.generation = decide_role(
            {c: c.role for c in self.conns}, self.generation, conn, role, gen
        )
        for c, r in roles.items():
            assert isinstance(c, ControllerConn)
            c.role = r
        if role != ofp.OFPCR_ROLE_NOCHANGE:
            log.info("%s: controller %s is now %s", self.label, conn.url, _ROLE_NAMES[role])
        ch = conn.channel
        body = _ROLE.pack(conn.role, self.generation or 0)
        ch.send(codec.header(ch.version, ofp.OFPT_ROLE_REPLY, xid, body))

    def _send_phys(
        self, conn: ControllerConn | None, session: PSwitchSession | None,
        build: Callable[[int], bytes], on_error: Callable[[int, int, bytes], None] | None,
    ) -> None:  # fmt: skip
        if session is None or not session.synced:
            return  # the pswitch's sync reads it from the virtual table when it connects
        ob = self.outbox
        if ob.staging:
            ob.hold(session, build, on_error, conn)  # a tenant FLOW_MOD's: see outbox.py
            if conn is not None:
                conn.sent_to(session)  # (counted now: it leaves with the network's next flush)
            return
        if ob.busy:
            ob.flush()  # not a tenant FLOW_MOD's: what was held goes first, drops before it
        session.send_flow(build, on_error)
        if conn is not None:
            conn.touched.add(session.dpid or 0)
            conn.sent_to(session)

    def _settle(self) -> None:
        """Something not from a tenant FLOW_MOD is about to change the pswitches or the
        rule map: what the network's outbox holds goes first (drops before it)."""
        ob = self.outbox
        if not ob.staging and ob.busy:
            ob.flush()

    def _error_relay(
        self, conn: ControllerConn, xid: int, msg: bytes, rollback: VFlow | None
    ) -> Relay:
        """What the pswitches refuse of the tenant message `msg`: the first error reaches
        the tenant as the error to its own message.  `rollback`, a rule the message added,
        is taken back at the first (_roll_back); the operation each error is for (`op`,
        from _send_ops) says which of its physical rules the pswitch never took."""
        sent = False
        refused: dict[PhysFlow, PhysOp] | None = None

        def relay(etype: int, code: int, data: bytes, op: PhysOp | None = None) -> None:
            nonlocal sent, refused
            if refused is not None:
                if op is not None:
                    refused[op.pf] = op
            elif rollback is not None and self.table.by_serial.get(rollback.serial) is rollback:
                refused = {} if op is None else {op.pf: op}
                self._roll_back(rollback, refused)
            if not sent:
                sent = True
                log.info(
                    "%s: pswitch refused rule (type=%d code=%d); told the tenant",
                    self.label, etype, code,
                )  # fmt: skip
                conn.channel.send_error(xid, etype, code, msg)

        return relay

    def _roll_back(self, vf: VFlow, refused: dict[PhysFlow, PhysOp]) -> None:
        """A rule the pswitch refused leaves the tenant's table now (OpenFlow: a refused ADD
        adds nothing); its physical rules leave when each pswitch they are on has answered
        a barrier, so every error for them has come and `refused` (filled meanwhile) is
        whole: the ones it took are deleted, the ones it refused are not (decide.roll_back)."""
        self.table.remove(vf)
        dpids = sorted({pf.dpid for pf in vf.phys})
        waiting = set(dpids)

        def answered(dpid: int) -> None:
            waiting.discard(dpid)
            if not waiting:
                self._send_ops(roll_back(self.rules, vf, refused), None, None)

        if not dpids:
            answered(0)
        for dpid in dpids:
            s = self.host.session(dpid)
            if s is not None and s.synced:
                s.barrier(lambda d=dpid: answered(d))  # type: ignore[misc]
            else:
                answered(dpid)  # what it is sent is not sent: its sync reads the rule map

    def _phys(
        self, vf: VFlow, translated: list[tuple[int, TranslatedFlow]]
    ) -> tuple[PhysFlow, ...]:
        flags = vf.flags & ofp.OFPFF_RESET_COUNTS
        if vf.flags & ofp.OFPFF_SEND_FLOW_REM or vf.idle_timeout or vf.hard_timeout:
            flags |= ofp.OFPFF_SEND_FLOW_REM  # we must hear of expiry to forget the rule
        cookie = layout.tenant_cookie(self.view.net_id, vf.serial)
        # A rule with several physical copies (expanded per ingress, or on each pswitch of a
        # big switch) is idle only when all of them are: the copies get no idle timeout of
        # their own and the endpoint watches their counters instead (_idle_loop).
        copies = sum(len(tf.flows) for _, tf in translated)
        idle = vf.idle_timeout
        if idle and copies > 1:
            self._idle_watch[vf.serial] = vf
            idle = 0
        else:
            self._idle_watch.pop(vf.serial, None)
        out: list[PhysFlow] = []
        plan = self.plan
        if plan is None or vf.serial in plan.exact or not plan.knows(vf.serial):
            for dpid, tf in translated:
                # on an OpenFlow 1.0 pswitch the tenant's priorities sit above its drop-all
                prio = min(vf.priority + 1, 0xFFFF) if self.views[dpid].of10 else vf.priority
                out.extend(
                    PhysFlow(dpid, tf.table, prio, m, i, cookie, idle, vf.hard_timeout, flags)
                    for m, i in tf.flows
                )
        if plan is not None:
            for vport, red in plan.reduced_of(vf.serial):
                if red.level == "lite":
                    got = lite_rule(self.view_of(vport), vport, red)
                    if got is not None:
                        out.append(got)
                    continue
                out.append(reduced_rule(self.view_of(vport), vf, vport, red, self.group_map))
        return tuple(out)

    # --- flow-rule reduction ---------------------------------------------------------------
    def set_level(self, level: str) -> None:
        """The network's scalability level: every rule is realised again under it."""
        if level == self.level:
            return
        self.level = level
        self.replan()

    def inexact(self) -> set[int]:
        """Serials whose packets are (partly) counted by shared reduced rules: their flow
        counters are unknown (OpenFlow's all ones), never made up."""
        plan = self.plan
        if plan is None:
            return set()
        return {serial for serial, _ in plan.reduced}

    def _reducible(self) -> bool:
        return (
            self.level in KEPT
            and self.level != "exact"
            and not any(v.of10 for v in self.views.values())
        )

    def replan(self) -> None:
        """Every proof again (reduce/prove.py: a new level, new vports or vlinks, tables
        restored) and the pswitches moved to the result, rule by rule (adds before deletes,
        decide.reprogram).  Exact level (or an OpenFlow 1.0 pswitch): every rule exact."""
        self._settle()
        old = self.plan
        if not self._reducible():
            if self.reducer is None:
                return
            self.reducer, self.plan = None, None
            assert old is not None
            changed = {vf.serial for vf in self.table if old.part(vf.serial) != (True, ())}
        else:
            if self.reducer is None:
                self.reducer = Reducer(self.level)
            self.reducer.level = self.level
            vports, arriving, plain = self._links()
            ports = [(n, pm) for v in self.views.values() for n, pm in v.ports.items()]
            self.reducer.set_lite(
                self.view.lite,
                {n for n, pm in ports if pm.lite_in},
                {n for n, pm in ports if pm.lite_base is not None},
            )
            # what can enter each edge vport from the wire: its hosts' source MACs, or
            # anything at all on an exclusive vport (table 0 admits its port whole)
            hosts = {
                n: [Cube.from_fields({oxm.IN_PORT: n})] if pm.exclusive else
                   [Cube.from_fields({oxm.IN_PORT: n, oxm.ETH_SRC: int(m.replace(":", ""), 16)})
                    for m in pm.hosts]
                for v in self.views.values() for n, pm in v.ports.items()
                if vports.get(n, 0) is None
            }  # fmt: skip
            changed = self.reducer.rebuild(list(self.table), vports, arriving, plain, hosts)
            self.plan = self.reducer.plan
        by_serial = self.table.by_serial
        self._cubes = {k: c for k, c in self._cubes.items() if by_serial.get(k) is c[0]}
        self._realize(changed)
        self._sync_exceptions()

    def _link_peers(self) -> Iterator[tuple[int, int, int, VSwitchEndpoint | None]]:
        """(local link vport, peer vdpid, peer vport, peer endpoint) of each of its vlinks."""
        for view in self.views.values():
            for number, pm in view.ports.items():
                if pm.remote or not pm.is_link:
                    continue
                got = self.host.vlink_peer(view.net_id, self.vdpid, number)
                if got is not None:
                    yield number, got[1], got[2], self.host.peer_endpoint(view.net_id, got[1])

    def neighbours(self) -> list[VSwitchEndpoint]:
        """The endpoints at the other ends of this vswitch's vlinks."""
        out: list[VSwitchEndpoint] = []
        for _, _, _, peer in self._link_peers():
            if peer is not None and peer is not self and peer not in out:
                out.append(peer)
        return out

    def _links(
        self,
    ) -> tuple[dict[int, tuple[int, int] | None], dict[int, list[Cube]], dict[int, list[Cube]]]:
        """Each local vport's vlink peer (None: an edge vport), what can arrive on each link
        vport (what the peer's rules send out of its end of the vlink), and what of that
        arrives without a LITE tag."""
        vports: dict[int, tuple[int, int] | None] = {
            n: None for v in self.views.values() for n, pm in v.ports.items() if not pm.remote
        }
        arriving: dict[int, list[Cube]] = {}
        plain: dict[int, list[Cube]] = {}
        for number, peer_vdpid, peer_vport, ep in self._link_peers():
            vports[number] = (peer_vdpid, peer_vport)
            peer_rules = [] if ep is None else list(ep.table)
            arriving[number] = list(arrivals(peer_rules, peer_vport, number))
            untagged = [vf for vf in peer_rules if ep is None or not ep.pushes_lite(vf, peer_vport)]
            plain[number] = (
                arriving[number] if len(untagged) == len(peer_rules)
                else list(arrivals(untagged, peer_vport, number))
            )  # fmt: skip
        return vports, arriving, plain

    def _realize(self, serials: set[int]) -> None:
        """Move the pswitches to what the plan now says of these rules."""
        for serial in sorted(serials):
            vf = self.table.by_serial.get(serial)
            phys = None if vf is None else self._rephys(vf)
            if vf is not None and phys is not None:  # else it went, or goes with a view change
                self._reprogram(None, vf, phys, None, None)

    def _rule_changed(self, old: VFlow | None, new: VFlow | None) -> set[int]:
        """A tenant rule came, changed or went: redo the proofs it can affect, here (the
        rules whose realisation changed are returned, for the caller to move) and, for what
        it sends over vlinks, at the vswitches at their other ends (moved there)."""
        if self.reducer is None:
            self.replan()  # the first rule of a reduced vswitch: every proof, realised
            if self.reducer is None:
                return set()
            changed: set[int] = set()
        else:
            changed = self.reducer.rule_changed(old, new)
        if new is None:
            # fewer arrivals at the other ends of its vlinks: their proofs stay sound, and a
            # re-plan there a little later may reduce more (arrivals are not shrunk at once)
            self._compact_later()
            return changed
        for number, _, peer_vport, peer in self._link_peers():
            cubes = list(arrivals([new], number, peer_vport))
            if cubes and peer is not None and peer is not self:
                peer.arrivals_grew(peer_vport, cubes, not self.pushes_lite(new, number))
        return changed

    def _sync_exceptions(self) -> None:
        """The exact drops above the reduced rules (flows that reach them before their rule
        here): owned by the vswitch, not by a tenant rule, as the reducer says now."""
        want: list[PhysFlow] = []
        if self.reducer is not None:
            for vport, drops in sorted(self.reducer.exceptions().items()):
                view = self.view_of(vport)
                for arrival, winner in sorted(drops, key=repr):
                    vf = None if winner is None else self.table.by_serial.get(winner)
                    try:
                        want.append(
                            exception_rule(
                                view, arrival, vport, vf, {}, {}, self.pin_meters.get(view.dpid)
                            )
                        )
                    except OFError:  # a punt's copy translates (levels.punts); never here
                        log.warning("%s: exception for rule %s not translated", self.label,
                                    winner)  # fmt: skip
            for (vport, dst), drops in sorted(self.reducer.lite_exceptions().items()):
                view = self.view_of(vport)
                for arrival, _ in sorted(drops, key=repr):
                    got = lite_exception_rule(view, arrival, vport, dst)
                    if got is not None:
                        want.append(got)
        new = tuple(want)
        ob = self.outbox
        if ob.staging:
            # a tenant FLOW_MOD's consequence: new drops wait in the outbox, with everything
            # the network sends after them, in case the rule that makes them unnecessary
            # follows (outbox.py); drops no longer wanted go as any operation
            kept, pending = split_exceptions(self._exceptions, new)
            gone = {pf.dpid for pf in self._pending if pf not in pending}
            if gone and ob.sends_to(gone, self._pending_since):
                # the drops are no longer wanted, but what made them unwanted changes their
                # pswitch after the rules that made them necessary: those could be applied
                # first, so the drops go now (before everything held), as without an
                # outbox, and go again after those changes
                self.commit_drops()
                kept, pending = split_exceptions(self._exceptions, new)
            new = kept
            if pending and not self._pending:
                self._pending_since = len(ob.held)
            self._pending = pending
            if pending:
                if ob.cause is not None:
                    self._pending_conns.add(ob.cause)
            else:
                self._pending_conns.clear()
            ob.want(self, bool(pending))
        elif ob.busy:
            ob.flush()  # pending drops are installed (and reconsidered below)
        if new != self._exceptions:
            old, self._exceptions = self._exceptions, new
            self._send_ops(reprogram(self.rules, _EXCEPTIONS, old, new), None, None)

    def commit_drops(self) -> None:
        """The network's outbox flushes: this vswitch's pending drops go now, before what
        it held, and count for the connections whose FLOW_MODs made them wanted."""
        pending, self._pending = self._pending, ()
        conns, self._pending_conns = self._pending_conns, set()
        if not pending:
            return
        old = self._exceptions
        self._exceptions = old + pending
        for op in reprogram(self.rules, _EXCEPTIONS, old, self._exceptions):
            s = self.host.session(op.pf.dpid)
            if s is None or not s.synced:
                continue
            s.send_flow(self._rule(s, op.pf, op.command), None)
            for c in conns:
                c.touched.add(s.dpid or 0)

    def _rephys(self, vf: VFlow) -> tuple[PhysFlow, ...] | None:
        """`vf`'s physical rules as the plan now says (None: it cannot be translated)."""
        try:
            return self._phys(vf, self._translate(vf.table, vf.match, vf.instructions,
                                                  vf.priority))  # fmt: skip
        except OFError:
            return None

    def _planned(self, vf: VFlow, translated: tuple[PhysFlow, ...]) -> tuple[PhysFlow, ...]:
        """`vf`'s physical rules as the plan says, `translated` (exact) only when it cannot
        be translated: no physical rule at all (vacuous at every ingress) is an answer, not a
        failure, or the rule would go in exact and out again when its packets first arrive."""
        phys = self._rephys(vf)
        return translated if phys is None else phys

    def _replan_neighbours(self) -> None:
        for _, _, _, peer in self._link_peers():
            if peer is not None and peer is not self and peer.reducer is not None:
                peer.replan()

    def _compact_later(self) -> None:
        if self._compact is not None or self._stopped:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._compact = loop.call_later(COMPACT_DELAY, self._compact_now)

    def _compact_now(self) -> None:
        """Re-plan the vswitches at the other ends of this one's vlinks (after removals)."""
        self._compact = None
        if not self._stopped:
            self._replan_neighbours()

    def arrivals_grew(self, vport: int, cubes: list[Cube], plain: bool = True) -> None:
        """Packets in `cubes` can now arrive on link `vport` (a rule at its other end;
        `plain`: without a LITE tag)."""
        if self.reducer is not None:
            self._realize(self.reducer.arrivals_grew(vport, cubes, plain))
            self._sync_exceptions()

    async def _idle_loop(self) -> None:
        """Idle timeouts of rules with several copies: expire the virtual rule when the sum
        of its copies' packet counts has not moved for its idle_timeout (checked every
        second, so within a second of when a switch would)."""
        last: dict[int, tuple[int, int, float]] = {}  # serial -> packets, bytes, since
        while not self._stopped:
            await asyncio.sleep(IDLE_POLL)
            watched = {s: vf for s, vf in self._idle_watch.items()
                       if self.table.by_serial.get(s) is vf}  # fmt: skip
            self._idle_watch = watched
            if not watched:
                last.clear()
                continue
            counts = await self._read_counts()
            if counts is None:
                continue  # a pswitch did not answer: decide next time
            now = time.monotonic()
            for serial, vf in watched.items():
                pk, by = counts.get(serial, (0, 0))
                seen = last.get(serial)
                if seen is None or seen[0] != pk:
                    last[serial] = (pk, by, now)
                elif now - seen[2] >= vf.idle_timeout:
                    del last[serial]
                    self._expire(vf, ofp.OFPRR_IDLE_TIMEOUT, pk, by)
            for serial in [s for s in last if s not in watched]:
                del last[serial]

    async def _read_counts(self) -> dict[int, list[int]] | None:
        """Packet and byte counts of this vswitch's rules by serial, over its pswitches (None
        if one did not answer)."""
        fut: asyncio.Future[dict[int, list[int]] | None] = (
            asyncio.get_running_loop().create_future()
        )

        def got(counts: dict[int, list[int]] | None) -> None:
            if not fut.done():
                fut.set_result(counts)

        self.stats.counters(got)
        return await fut

    def _expire(self, vf: VFlow, reason: int, packets: int, nbytes: int) -> None:
        """A rule's time is up (emulated idle timeout): it leaves the table and the
        pswitches; the tenant hears of it (send_flow_rem) with its copies' last counts."""
        log.debug("%s: rule %d idle for %d s", self.label, vf.serial, vf.idle_timeout)
        self._settle()
        self.table.remove(vf)
        self._idle_watch.pop(vf.serial, None)
        sent = self._drop(vf, None, None, None)
        if vf.flags & ofp.OFPFF_SEND_FLOW_REM:
            rec = _Dying(vf, sent, reason)
            if sent:
                self._dying[vf.serial] = rec  # the deletes' FLOW_REMOVEDs bring the counts
            else:
                rec.packets, rec.bytes = packets, nbytes
                elapsed = time.monotonic() - vf.created
                self._flow_removed_to_tenant(rec, int(elapsed), int(elapsed % 1 * 1e9))

    def _flow_mod(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        """Decide (virtual/decide.py), then apply: the table, the rule map, the pswitches
        (in a reduced network through its outbox: held while drops are pending)."""
        if self.level == "exact":
            self._apply_flow_mod(conn, xid, msg)
            return
        ob = self.outbox
        ob.begin(conn)
        try:
            self._apply_flow_mod(conn, xid, msg)
        finally:
            ob.end()

    def _apply_flow_mod(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        fm = FlowMod.parse(msg)

        def translate(
            vf: VFlow, table: int, match: list[codec.Oxm], instructions: bytes, priority: int
        ) -> tuple[PhysFlow, ...]:
            return self._phys(vf, self._translate(table, match, instructions, priority))

        changes = decide_flow_mod(fm, self.table, self.view.n_tables, self.host.max_rules,
                                  translate, lambda: self.quota_full("rules"))  # fmt: skip
        table = self.table
        reduced = self.level != "exact"
        # many rules at once (a non-strict DELETE, say): one re-plan after, not a proof each
        batch = reduced and len(changes) > BATCH_REPLAN
        touched: set[int] = set()  # rules whose realisation the proofs changed
        for ch in changes:
            if isinstance(ch, Added):
                vf = ch.vflow
                old = table.get(vf.table, vf.priority, vf.norm)
                vf.phys = old.phys if old is not None else ()  # what the pswitch has now
                table.put(vf)
                phys = ch.phys
                if reduced and not batch:  # realised as the proofs say at once, not exact first
                    touched |= self._rule_changed(old, vf)
                    phys = self._planned(vf, phys)
                relay = self._error_relay(conn, xid, msg, vf)
                self._reprogram(None, vf, phys, relay, conn, modify=False)
            elif isinstance(ch, Modified):
                ch.vflow.instructions = ch.instructions
                table.touch(ch.vflow)
                phys = ch.phys
                if reduced and not batch:
                    touched |= self._rule_changed(ch.vflow, ch.vflow)
                    phys = self._planned(ch.vflow, phys)
                relay = self._error_relay(conn, xid, msg, None)
                self._reprogram(None, ch.vflow, phys, relay, conn, reset=ch.reset)
            else:
                vf = ch.vflow
                table.remove(vf)
                sent = self._drop(vf, None, conn, self._error_relay(conn, xid, msg, None))
                if vf.flags & ofp.OFPFF_SEND_FLOW_REM:
                    rec = _Dying(vf, sent, ofp.OFPRR_DELETE)
                    if sent:
                        self._dying[vf.serial] = rec  # counters come with the pswitch's replies
                    else:
                        self._flow_removed_to_tenant(rec, 0, 0)
                if reduced and not batch:
                    touched |= self._rule_changed(vf, None)
        if batch:
            self.replan()
            self._replan_neighbours()
        elif reduced:
            self._realize(touched - {ch.vflow.serial for ch in changes})
            self._sync_exceptions()

    def _send_ops(
        self, ops: list[PhysOp], conn: ControllerConn | None,
        relay: Relay | None,
    ) -> int:  # fmt: skip
        """Send what a decision returned; the number of deletes that reached a pswitch.
        The tenant's operations' errors go to `relay`, each with the operation it is for."""
        deletes = 0
        for op in ops:
            s = self.host.session(op.pf.dpid)
            on_error = partial(relay, op=op) if op.tenant and relay is not None else None
            self._send_phys(conn, s, self._rule(s, op.pf, op.command), on_error)
            if op.command == ofp.OFPFC_DELETE_STRICT and s is not None and s.synced:
                deletes += 1
        return deletes

    def _reprogram(
        self, session: PSwitchSession | None, vf: VFlow, new: tuple[PhysFlow, ...],
        relay: Relay | None, conn: ControllerConn | None, modify: bool = True,
        reset: bool = False,
    ) -> None:  # fmt: skip
        """Move the pswitches from the rules `vf` has to `new` (see decide.reprogram)."""
        old, vf.phys = vf.phys, new
        self._send_ops(reprogram(self.rules, vf.serial, old, new, modify, reset), conn, relay)

    def _release(
        self, session: PSwitchSession | None, conn: ControllerConn | None, serial: int,
        pf: PhysFlow, relay: Relay | None, gone: bool = False,
    ) -> bool:  # fmt: skip
        """`serial` gives up `pf` (see decide.release).  True when a delete was sent."""
        return self._send_ops(release(self.rules, serial, pf, gone), conn, relay) > 0

    def _drop(
        self, vf: VFlow, session: PSwitchSession | None, conn: ControllerConn | None,
        relay: Relay | None, gone: PhysFlow | None = None,
    ) -> int:  # fmt: skip
        """Take a removed rule's physical rules away; returns how many deletes were sent."""
        return self._send_ops(drop(self.rules, vf, gone), conn, relay)

    # --- PACKET_OUT ------------------------------------------------------------------------
    def _packet_out(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        po = PacketOut.parse(msg)
        view = self.view_of(po.in_port) if po.in_port in self.view.ports else self.view
        if po.buffer_id != ofp.OFP_NO_BUFFER:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN, "no buffers")
        if po.in_port in (ofp.OFPP_CONTROLLER, ofp.OFPP_ANY):
            in_vport = 0
        elif po.in_port in view.ports:
            in_vport = po.in_port
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PORT, f"in_port {po.in_port}")
        if not po.data:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN, "PACKET_OUT without data")
        # Translated before any way of carrying it is chosen: the LLDP and reduced paths
        # below carry the packet themselves, and must refuse exactly what this refuses (the
        # fabric's S-tag, the hypervisor's fields, ...) rather than drop or apply it.
        gmap = self.group_map if view is self.view else {}
        in_port, actions = translate_packet_out(view, in_vport, po.actions, gmap)
        self.packet_outs_to_table += sum(
            1 for a in po.actions if a.type == ofp.OFPAT_OUTPUT and a.output_port == ofp.OFPP_TABLE
        )
        if po.data[12:14] == b"\x88\xcc":
            self._lldp_out(conn, xid, msg, po, in_vport)
            return
        if view.of10 and any(
            a.type == ofp.OFPAT_OUTPUT and a.output_port == ofp.OFPP_TABLE for a in po.actions
        ):
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT,
                          "output:TABLE on a vswitch over an OpenFlow 1.0 pswitch")  # fmt: skip
        if view.of10:
            check_actions10(po.actions)  # what its driver could not encode: refused here
        if self.plan is not None and self._packet_out_reduced(conn, xid, msg, po, in_vport):
            return
        if not actions:
            return
        session = self.host.session(view.dpid)
        out = self._packet_out_bytes(session, codec.packet_out(0, in_port, actions, po.data))
        self._send_phys(
            conn, session, lambda x: codec.set_xid(out, x), self._error_relay(conn, xid, msg, None)
        )

    # --- injected packets in a reduced network (docs/design.md, flow-rule reduction) ---------
    def _packet_out_reduced(
        self, conn: ControllerConn, xid: int, msg: bytes, po: PacketOut, in_vport: int
    ) -> bool:
        """A PACKET_OUT whose actions are outputs only, carried where the tenant's exact
        tables send it: reduced rules are proven for what arrives over the fabric, not for
        what a controller injects, so the packet is looked up here (and at each vswitch a
        vlink takes it to) and only ever meets exact rules or leaves by explicit outputs.
        Header rewrites before an output are applied here (reduce/packet.py).  False: an
        action not done here (a group, an unmasked field it does not write): the usual way."""
        steps = apply_actions(po.data, po.actions)
        if steps is None:
            return False
        relay = self._error_relay(conn, xid, msg, None)
        ports = set().union(*(v.ports for v in self.views.values()))
        for port, frame in steps:
            if port == ofp.OFPP_TABLE:
                self._arrive(conn, relay, in_vport, frame, 0)
            elif port in (ofp.OFPP_FLOOD, ofp.OFPP_ALL):
                for n in sorted(ports):
                    if n != in_vport or port == ofp.OFPP_ALL:
                        self._emit(conn, relay, n, in_vport, frame, 0)
            elif port == ofp.OFPP_IN_PORT and in_vport:
                self._emit(conn, relay, in_vport, in_vport, frame, 0, hairpin=True)
            elif port in ports:
                if port != in_vport:
                    self._emit(conn, relay, port, in_vport, frame, 0)
            elif port == ofp.OFPP_CONTROLLER:  # what the pswitch would send back, said here
                pin = PacketIn(ofp.OFP_NO_BUFFER, len(frame), ofp.OFPR_ACTION, 0, _PI_NO_COOKIE,
                               [], frame)  # fmt: skip
                self._packet_in(pin, ofp.OFPR_ACTION, 0, _PI_NO_COOKIE, in_vport, 0)
            else:
                raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT, f"port {port:#x}")
        return True

    def lookup(self, point: dict[int, int]) -> VFlow | None:
        """The rule of table 0 a packet with these header fields meets (the exact table)."""
        best: VFlow | None = None
        for vf in self.table:
            if vf.table != 0 or (best is not None and vf.priority <= best.priority):
                continue
            cube = self._cubes.get(vf.serial)
            if cube is None or cube[0] is not vf:
                c = rule_cube(vf)
                cube = self._cubes[vf.serial] = (vf, c if c is not None else Cube.all())
            if cube[1].contains_point(point):
                best = vf
        return best

    def _arrive(
        self, conn: ControllerConn | None, relay: Callable[[int, int, bytes], None] | None,
        in_vport: int, data: bytes, depth: int,
    ) -> None:  # fmt: skip
        """`data` enters this vswitch's table on `in_vport` (0: from the controller)."""
        plan = self.plan
        vf = None
        if plan is not None:
            vf = self.lookup(fields(data, in_vport or ofp.OFPP_CONTROLLER))
            if vf is None:
                return  # a table miss: dropped, as OpenFlow 1.3 does
        if plan is None or vf is None or vf.serial in plan.exact or not plan.knows(vf.serial):
            # its exact winner is on the pswitch: through the table there (INJECTED, so the
            # reduced rules are not met; what it sends on arrives as they were proven for)
            if depth:  # from a neighbour: a table miss here is NO_MATCH, as on the wire
                self._note_arrival(in_vport, data)
            view = self.view_of(in_vport) if in_vport else self.view
            table = codec.parse_actions(codec.output(ofp.OFPP_TABLE))
            in_port, actions = translate_packet_out(view, in_vport, table)
            self._phys_packet_out(conn, relay, view.dpid, in_port, actions, data)
            return
        for o in outputs(vf) or ():
            if o != in_vport:
                self._emit(conn, relay, o, in_vport, data, depth)

    def _emit(
        self, conn: ControllerConn | None, relay: Callable[[int, int, bytes], None] | None,
        out_vport: int, in_vport: int, data: bytes, depth: int, hairpin: bool = False,
    ) -> None:  # fmt: skip
        """`data` leaves this vswitch by `out_vport`: to its hosts, or over its vlink into
        the vswitch at the other end (looked up there when that one is reduced)."""
        view = self.view_of(out_vport)
        pm = view.ports.get(out_vport)
        if pm is None or (pm.is_link and not pm.up):
            return
        if pm.is_link and depth < MAX_INJECTED_HOPS:
            got = self.host.vlink_peer(view.net_id, self.vdpid, out_vport)
            peer = None if got is None else self.host.peer_endpoint(view.net_id, got[1])
            if got is not None and peer is not None and peer.plan is not None:
                peer._arrive(conn, relay, got[2], data, depth + 1)
                return
        action = codec.parse_actions(codec.output(ofp.OFPP_IN_PORT if hairpin else out_vport))
        in_port, actions = translate_packet_out(view, in_vport, action)
        self._phys_packet_out(conn, relay, view.dpid, in_port, actions, data)

    def _phys_packet_out(
        self, conn: ControllerConn | None, relay: Callable[[int, int, bytes], None] | None,
        dpid: int, in_port: int, actions: bytes, data: bytes,
    ) -> None:  # fmt: skip
        if not actions:
            return
        session = self.host.session(dpid)
        out = self._packet_out_bytes(session, codec.packet_out(0, in_port, actions, data))
        self._send_phys(conn, session, lambda x: codec.set_xid(out, x), relay)

    def _lldp_out(
        self, conn: ControllerConn, xid: int, msg: bytes, po: PacketOut, in_vport: int
    ) -> None:
        """LLDP to a link vport arrives at the peer vswitch as PACKET_IN (virtual discovery)."""
        view = self.view
        targets: list[int] = []
        for a in po.actions:
            if a.type != ofp.OFPAT_OUTPUT:
                continue
            p = a.output_port
            if p in view.ports:
                if p != in_vport:  # never back out of the ingress port, as on a switch
                    targets.append(p)
            elif p in (ofp.OFPP_FLOOD, ofp.OFPP_ALL):
                targets.extend(n for n in view.ports if n != in_vport)
            elif p == ofp.OFPP_IN_PORT and in_vport:
                targets.append(in_vport)
            elif p != ofp.OFPP_CONTROLLER:
                raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT, f"port {p:#x}")
        edge: dict[int, bytes] = {}
        for n in targets:
            local = self.view_of(n)
            pm = local.ports[n]
            if pm.is_link:
                if pm.up:
                    self.host.deliver_lldp(view.net_id, self.vdpid, n, po.data)
            else:
                edge[local.dpid] = edge.get(local.dpid, b"") + codec.output(pm.phys_port)
        for dpid, acts in edge.items():
            session = self.host.session(dpid)
            out = self._packet_out_bytes(
                session, codec.packet_out(0, ofp.OFPP_CONTROLLER, acts, po.data)
            )
            self._send_phys(
                conn, session, lambda x, o=out: codec.set_xid(o, x),  # type: ignore[misc]
                self._error_relay(conn, xid, msg, None),
            )  # fmt: skip

    # --- toward the controllers --------------------------------------------------------------
    def _broadcast(self, msg: bytes, kind: int, reason: int) -> None:
        """An asynchronous message to every connection whose role and SET_ASYNC want it."""
        for c in self.conns:
            if c.wants(kind, reason):
                c.channel.send(msg)

    def packet_in(self, pi: PacketIn, meta: int) -> None:
        """A physical PACKET_IN that metadata says is ours, in virtual terms."""
        vport = (meta >> layout.VPORT_SHIFT) & 0xFFF
        tmeta = meta & layout.TENANT_META_MASK
        if pi.cookie == _PI_NO_COOKIE and meta & layout.INJECTED:
            # a PACKET_OUT's output to CONTROLLER: no rule sent it (what OVS says: ACTION,
            # table 0, no cookie)
            self._packet_in(pi, ofp.OFPR_ACTION, 0, _PI_NO_COOKIE, vport, 0)
            return
        if pi.cookie & layout.INFRA_BIT:
            # an output to CONTROLLER from the action set: OVS names the rule its first table
            # took the packet with, here the hypervisor's classification; the tenant's is
            # told when the frame says which one it was
            vf = self._first_rule(pi.data, vport)
            self._packet_in(pi, ofp.OFPR_ACTION, 0, _PI_NO_COOKIE if vf is None else vf.cookie,
                            vport, tmeta)  # fmt: skip
            return
        serial = pi.cookie & layout.SERIAL_MASK
        vf = self.table.by_serial.get(serial)
        if vf is None:
            if serial == _IMPLICIT_MISS and self._pin_allowed():  # a miss, for 1.0 controllers
                match = [codec.oxm_u32(oxm.IN_PORT, vport or ofp.OFPP_CONTROLLER)]
                out = PacketIn(ofp.OFP_NO_BUFFER, pi.total_len, ofp.OFPR_NO_MATCH, 0,
                               _PI_NO_COOKIE, match, pi.data).encode(0)  # fmt: skip
                self.packet_ins += 1
                self._broadcast(out, _PACKET_IN, ofp.OFPR_NO_MATCH)
            return  # else the rule was removed while the packet was on its way
        if pi.reason == ofp.OFPR_INVALID_TTL:
            reason = ofp.OFPR_INVALID_TTL
        elif vf.is_table_miss and (not meta & layout.INJECTED or self._arrived(vport, pi.data)):
            reason = ofp.OFPR_NO_MATCH
        else:  # a PACKET_OUT's packet a table-miss rule sends is ACTION too, as OVS says
            reason = ofp.OFPR_ACTION
        self._packet_in(pi, reason, vf.table, vf.cookie, vport, tmeta)

    def _note_arrival(self, vport: int, data: bytes) -> None:
        now = time.monotonic()
        if len(self._arrivals) >= ARRIVALS_KEPT:
            self._arrivals = {k: t for k, t in self._arrivals.items() if now - t < 1.0}
        self._arrivals[(vport, data[:ARRIVAL_KEY])] = now

    def _arrived(self, vport: int, data: bytes) -> bool:
        """Whether an injected frame missing the tables here had come from a neighbour
        over a vlink (a reduced network carries a PACKET_OUT's frame across vswitches in
        the daemon, and injects it where it arrives): a learning controller must see it
        as the table miss (NO_MATCH) it would be on the wire, not as its own PACKET_OUT's
        (ACTION, which ovs-testcontroller ignores)."""
        return self._arrivals.pop((vport, data[:ARRIVAL_KEY]), None) is not None

    def _packet_in(
        self, pi: PacketIn, reason: int, table: int, cookie: int, vport: int, tmeta: int
    ) -> None:
        """A PACKET_IN to the controllers, within the vswitch's PACKET_IN rate (the excess
        is dropped and counted), whichever way it came."""
        if not self._pin_allowed():
            return
        match = [codec.oxm_u32(oxm.IN_PORT, vport or ofp.OFPP_CONTROLLER)]
        if tmeta:
            match.append(codec.oxm_u64(oxm.METADATA, tmeta))
        out = PacketIn(ofp.OFP_NO_BUFFER, pi.total_len, reason, table, cookie, match,
                       pi.data).encode(0)  # fmt: skip
        self.packet_ins += 1
        self._broadcast(out, _PACKET_IN, reason)

    def _first_rule(self, frame: bytes, vport: int) -> VFlow | None:
        """The rule of table 0 that took `frame` entering on `vport`, when the frame can
        say: no rule or group of the vswitch rewrites headers (so it is the frame that
        entered), and every rule of table 0 at or above the winner's priority matches only
        fields the frame was read for.  None otherwise: no rule is named rather than a
        wrong one."""
        if self._rewrites():
            return None
        point = fields(frame, vport or ofp.OFPP_CONTROLLER)
        zero = {oxm.VLAN_VID, oxm.VLAN_PCP, oxm.METADATA}  # absent: 0 (no tag; table 0)
        best: VFlow | None = None
        for vf in sorted((v for v in self.table if v.table == 0), key=lambda v: -v.priority):
            if best is not None and vf.priority < best.priority:
                break
            verdict: bool | None = True  # matches; False: does not; None: cannot tell
            for (cls, fld), value, mask, _ in vf.norm:
                if cls != codec.OXM_CLASS_OPENFLOW_BASIC:
                    verdict = None
                elif fld in point or fld in zero:
                    if (point.get(fld, 0) ^ value) & mask:
                        verdict = False
                        break
                else:
                    verdict = None
            if verdict is None or (verdict and best is not None):
                return None  # unreadable, or two of one priority: OpenFlow leaves it open
            if verdict:
                best = vf
        return best

    def _rewrites(self) -> bool:
        """Whether any rule or group of the vswitch changes a packet's header fields."""
        changing = {ofp.OFPAT_SET_FIELD, ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_POP_VLAN,
                    ofp.OFPAT_PUSH_MPLS, ofp.OFPAT_POP_MPLS, ofp.OFPAT_PUSH_PBB,
                    ofp.OFPAT_POP_PBB}  # fmt: skip
        lists: list[list[codec.Action]] = []
        for vf in self.table:
            ins = codec.parse_instructions(vf.instructions)
            lists += [ins.apply_actions or [], ins.write_actions or []]
        for g in self.groups_meters.groups.values():
            lists += [codec.parse_actions(raw) for *_, raw in parse_buckets(g.buckets)]
        return any(a.type in changing for acts in lists for a in acts)

    def packet_in_marked(self, vport: int, data: bytes, total_len: int, reason: int) -> None:
        """A PACKET_IN from an OpenFlow 1.0 pswitch, its ingress and reason known from its
        mark (the rule it came from is not: no cookie there)."""
        if not self._pin_allowed():
            return
        match = [codec.oxm_u32(oxm.IN_PORT, vport or ofp.OFPP_CONTROLLER)]
        out = PacketIn(ofp.OFP_NO_BUFFER, total_len, reason, 0, _PI_NO_COOKIE, match,
                       data).encode(0)  # fmt: skip
        self.packet_ins += 1
        self._broadcast(out, _PACKET_IN, reason)

    def lldp_in(self, vport: int, data: bytes) -> None:
        match = [codec.oxm_u32(oxm.IN_PORT, vport)]
        msg = PacketIn(
            ofp.OFP_NO_BUFFER, len(data), ofp.OFPR_ACTION, 0, _PI_NO_COOKIE, match, data
        ).encode(0)
        self._broadcast(msg, _PACKET_IN, ofp.OFPR_ACTION)

    def flow_removed(self, serial: int, fr: codec.FlowRemoved, dpid: int = 0) -> None:
        """A physical rule of ours on pswitch `dpid` is gone: a timeout expires the tenant's
        rule (with all its copies); our own deletes bring the counters of rules the tenant
        removed."""
        self._settle()
        vf = self.table.by_serial.get(serial)
        if vf is not None:
            if fr.reason == ofp.OFPRR_DELETE:
                return  # a re-program replaced it; the virtual rule lives on
            self.table.remove(vf)
            self._idle_watch.pop(serial, None)
            want = (dpid or self.view.dpid, fr.table_id, fr.priority, normalize(fr.match))
            gone = next(
                (
                    pf for pf in vf.phys
                    if (pf.dpid, pf.table, pf.priority,
                        normalize(codec.parse_match(pf.match, 0)[0])) == want
                ),
                None,
            )  # fmt: skip
            sent = self._drop(vf, self.host.session(self.view.dpid), None, None, gone)
            if vf.flags & ofp.OFPFF_SEND_FLOW_REM:
                self._dying[serial] = _Dying(vf, sent + 1, fr.reason)
        rec = self._dying.get(serial)
        if rec is None:
            return
        rec.remaining -= 1
        rec.packets += fr.packet_count
        rec.bytes += fr.byte_count
        rec.duration = max(rec.duration, (fr.duration_sec, fr.duration_nsec))
        if rec.remaining > 0:
            return
        del self._dying[serial]
        self._flow_removed_to_tenant(rec, *rec.duration)

    def _flow_removed_to_tenant(self, rec: _Dying, sec: int, nsec: int) -> None:
        v = rec.vflow
        out = codec.FlowRemoved(
            v.cookie, v.priority, rec.reason, v.table, sec, nsec,
            v.idle_timeout, v.hard_timeout, rec.packets, rec.bytes, v.match,
        ).encode(0)  # fmt: skip
        self._broadcast(out, _FLOW_REMOVED, rec.reason)

    def _port_status(self, number: int, added: bool, deleted: bool) -> None:
        if not self.conns:
            return
        reason = ofp.OFPPR_ADD if added else ofp.OFPPR_DELETE if deleted else ofp.OFPPR_MODIFY
        body = struct.pack("!B7x", reason) + self._port_desc(number)
        self._broadcast(
            codec.header(codec.VERSION, ofp.OFPT_PORT_STATUS, 0, body), _PORT_STATUS, reason
        )

    # --- multipart -------------------------------------------------------------------------
    # --- statistics from the pswitch's counters ----------------------------------------------
