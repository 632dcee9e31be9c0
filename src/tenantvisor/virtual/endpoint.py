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
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor import __version__
from tenantvisor.mapping import layout
from tenantvisor.mapping.frmap import PhysRuleMap
from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.channel import Channel
from tenantvisor.openflow.codec import FlowMod, MalformedMessage, OFError, PacketIn, PacketOut
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.translate.flow import (
    PhysFlow,
    TenantMatch,
    TranslatedFlow,
    physical_match,
    translate_flow,
    translate_packet_out,
)
from tenantvisor.translate.group import GroupMod, delete_group, parse_buckets, translate_group
from tenantvisor.translate.meter import MeterMod, meter_mod
from tenantvisor.translate.view import VSwitchView
from tenantvisor.virtual.features import table_features
from tenantvisor.virtual.flowtable import VFlow, VirtualFlowTable, normalize
from tenantvisor.virtual.of10 import Of10Adapter
from tenantvisor.virtual.urls import ControllerUrl, parse_controller_url

log = logging.getLogger(__name__)
_FEATURES = struct.Struct("!QIBB2xII")
_PORT = struct.Struct(ofp.OFP_PORT_PACK_STR)
_DESC = struct.Struct(ofp.OFP_DESC_PACK_STR)
_MP_REPLY = struct.Struct("!HH4x")
_PI_NO_COOKIE = 0xFFFFFFFFFFFFFFFF
_FLOW_STATS_REQ = struct.Struct("!B3xII4xQQ")  # table, out_port, out_group, cookie, mask
_FLOW_STATS = struct.Struct("!HBxIIHHHH4xQQQ")
_COUNTERS = struct.Struct("!QQQ")  # cookie, packet_count, byte_count in ofp_flow_stats
_AGGREGATE = struct.Struct("!QQI4x")
_TABLE_STATS = struct.Struct("!B3xIQQ")
_UNKNOWN = 0xFFFFFFFFFFFFFFFF
_GROUP_DESC = struct.Struct("!HBxI")
_METER_CONFIG = struct.Struct("!HHI")
_GROUP_STATS = struct.Struct("!H2xII4xQQII")


def _group_features() -> bytes:
    """All four group types, weights, liveness and chaining; every action in any bucket."""
    types = sum(1 << t for t in (ofp.OFPGT_ALL, ofp.OFPGT_SELECT, ofp.OFPGT_INDIRECT,
                                 ofp.OFPGT_FF))  # fmt: skip
    caps = ofp.OFPGFC_SELECT_WEIGHT | ofp.OFPGFC_SELECT_LIVENESS | ofp.OFPGFC_CHAINING
    actions = sum(1 << a for a in (
        ofp.OFPAT_OUTPUT, ofp.OFPAT_COPY_TTL_OUT, ofp.OFPAT_COPY_TTL_IN, ofp.OFPAT_SET_MPLS_TTL,
        ofp.OFPAT_DEC_MPLS_TTL, ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_POP_VLAN, ofp.OFPAT_PUSH_MPLS,
        ofp.OFPAT_POP_MPLS, ofp.OFPAT_GROUP, ofp.OFPAT_SET_NW_TTL, ofp.OFPAT_DEC_NW_TTL,
        ofp.OFPAT_SET_FIELD,
    ))  # fmt: skip
    return struct.pack("!II4I4I", types, caps, *[65535] * 4, *[actions] * 4)


_PORT_STATS = struct.Struct("!I4x" + "Q" * 12 + "II")
MAX_REPLY_BODY = 65535 - 16
PORTS_PER_REPLY = 512
_ROLE_NAMES = {
    ofp.OFPCR_ROLE_EQUAL: "EQUAL",
    ofp.OFPCR_ROLE_MASTER: "MASTER",
    ofp.OFPCR_ROLE_SLAVE: "SLAVE",
}


class EndpointHost(Protocol):
    """What an endpoint needs from the daemon."""

    def session(self, dpid: int) -> PSwitchSession | None: ...

    def deliver_lldp(self, net_id: int, vdpid: int, vport: int, data: bytes) -> None: ...

    def vlink_peer(self, net_id: int, vdpid: int, vport: int) -> tuple[int, int, int] | None: ...

    def classified_counts(
        self, net_id: int, dpids: set[int], done: Callable[[dict[tuple[int, int], list[int]]], None]
    ) -> None: ...

    def alloc_id(self, kind: str, dpid: int) -> int | None: ...

    def free_id(self, kind: str, dpid: int, value: int) -> None: ...


@dataclass(slots=True)
class VGroup:
    """A tenant's group as it sent it, and the physical group standing for it."""

    type: int
    buckets: bytes
    phys_id: int
    created: float


@dataclass(slots=True)
class VMeter:
    """A tenant's meter as it sent it, and the physical meter standing for it."""

    flags: int
    bands: bytes
    phys_id: int


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
_ASYNC = struct.Struct("!IIIIII")
_ROLE = struct.Struct("!I4xQ")
# What a SLAVE controller may not send (OF1.3 6.3.4).
_WRITES = frozenset(
    (ofp.OFPT_FLOW_MOD, ofp.OFPT_PACKET_OUT, ofp.OFPT_GROUP_MOD, ofp.OFPT_PORT_MOD,
     ofp.OFPT_TABLE_MOD, ofp.OFPT_METER_MOD)
)  # fmt: skip


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
        self.of10: Of10Adapter | None = None
        self.touched: set[int] = set()  # pswitches sent to since the last barrier
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.barriers = _Barriers(self._barrier_reply)

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


class VSwitchEndpoint:
    def __init__(self, host: EndpointHost, view: VSwitchView, urls: list[str], tenant: str) -> None:
        self.host = host
        self.view = view
        self.vdpid = view.vdpid
        self.label = (
            f"tenant={tenant} net={view.net_id} vswitch={view.vdpid:016x} dpid={view.dpid:016x}"
        )
        self.urls = [parse_controller_url(u) for u in urls]
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
        self.packet_ins = 0
        self.rx_msgs = 0  # from controllers whose connection has closed
        self.generation: int | None = None  # last MASTER/SLAVE generation id (OF1.3 6.3.5)
        self.groups: dict[int, VGroup] = {}  # the tenant's group id -> its group
        self.meters: dict[int, VMeter] = {}  # the tenant's meter id -> its meter
        self.created = time.monotonic()

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
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
        new = [parse_controller_url(u) for u in urls]
        if new == self.urls:
            return
        self.stop("controller URLs changed")
        self.urls = new
        self._stopped = False
        self.start()

    def stop(self, reason: str = "virtual network stopped") -> None:
        self._stopped = True
        for t in self._tasks:
            t.cancel()
        for s in self._servers:
            s.close()
        for c in list(self.conns):
            c.channel.close(reason)
        self._tasks.clear()
        self._servers.clear()

    # --- view changes and re-programming ---------------------------------------------------
    def set_view(self, view: VSwitchView, port_names: dict[int, str]) -> None:
        """New ports, paths or tags: re-translate every rule and program the difference."""
        old_ports = self.view.ports
        changed = view != self.view
        self.view = view
        self.port_names = port_names
        if not changed:
            return
        for n in set(old_ports) | set(view.ports):
            before, after = old_ports.get(n), view.ports.get(n)
            if before != after:
                self._port_status(n, before is None, after is None)
        session = self.host.session(view.dpid)
        for vf in self.table:
            try:
                tf = translate_flow(
                    view, vf.table, vf.match, vf.instructions, self.group_map, self.meter_map
                )
            except OFError as exc:
                # e.g. the rule outputs to a vport that was removed: the rule goes too.
                log.info("%s: rule %d dropped after a change: %s", self.label, vf.serial, exc)
                self.table.remove(vf)
                self._drop(vf, session, None, None)
                continue
            self._reprogram(session, vf, self._phys(vf, tf.table, tf.flows), None, None)

    def update_of10_miss(self) -> None:
        """OpenFlow 1.0 sends a table miss to the controller, 1.3 drops it.  As OVS does, a
        vswitch with a 1.0 controller connected sends misses to its controllers: an implicit
        priority-0 rule (owner serial 0; a tenant's own table-miss rule takes precedence)."""
        want = any(c.of10 is not None for c in self.conns)
        view = self.view
        match = physical_match(view, TenantMatch((), None, None), None)
        ins = codec.encode_instructions(apply_actions=codec.output(ofp.OFPP_CONTROLLER, 0xFFFF))
        pf = PhysFlow(view.dpid, layout.TABLE_OFFSET, 0, match, ins,
                      layout.tenant_cookie(view.net_id, _IMPLICIT_MISS))  # fmt: skip
        has = _IMPLICIT_MISS in self.rules.owners(pf.key)
        session = self.host.session(view.dpid)
        if want and not has:
            if self.rules.add_fallback(_IMPLICIT_MISS, pf):
                self._send_phys(None, session, pf.flow_mod, None)
        elif has and not want:
            self._release(session, None, _IMPLICIT_MISS, pf, None)

    @property
    def group_map(self) -> dict[int, int]:
        return {gid: g.phys_id for gid, g in self.groups.items()}

    @property
    def meter_map(self) -> dict[int, int]:
        return {mid: m.phys_id for mid, m in self.meters.items()}

    def _translate(self, table: int, match: list[codec.Oxm], instructions: bytes) -> TranslatedFlow:
        """A rule of this vswitch as it stands now: its view, groups and meters."""
        return translate_flow(self.view, table, match, instructions, self.group_map, self.meter_map)

    def reinstall(self, session: PSwitchSession) -> None:
        """The pswitch (re)connected with empty tables: install every group (first, since
        rules refer to them) and every tenant rule again."""
        for m in self.meters.values():
            msg = meter_mod(ofp.OFPMC_ADD, m.flags, m.phys_id, m.bands)
            session.send_flow(lambda x, mm=msg: codec.set_xid(mm, x), None)  # type: ignore[misc]
        gmap = self.group_map
        for gid, g in self.groups.items():
            gm = GroupMod(ofp.OFPGC_ADD, g.type, gid, g.buckets)
            msg = translate_group(self.view, gmap, gm, g.phys_id)
            session.send_flow(lambda x, m=msg: codec.set_xid(m, x), None)  # type: ignore[misc]
        for pf in self.rules.installed():
            session.send_flow(pf.flow_mod, None)

    def drop_all(self, session: PSwitchSession | None) -> None:
        """The vswitch goes away: its rules and groups leave the pswitch."""
        self.table.clear()
        up = session is not None and session.ready
        for pf in self.rules.clear():
            if up:
                assert session is not None
                session.send_flow(pf.delete_strict, None)
        for g in self.groups.values():
            if up:
                assert session is not None
                msg = delete_group(g.phys_id)
                session.send_flow(lambda x, m=msg: codec.set_xid(m, x), None)  # type: ignore[misc]
            self.host.free_id("group", self.view.dpid, g.phys_id)
        self.groups.clear()
        for mt in self.meters.values():
            if up:
                assert session is not None
                msg = meter_mod(ofp.OFPMC_DELETE, 0, mt.phys_id, b"")
                session.send_flow(lambda x, m=msg: codec.set_xid(m, x), None)  # type: ignore[misc]
            self.host.free_id("meter", self.view.dpid, mt.phys_id)
        self.meters.clear()

    # --- tenant messages ---------------------------------------------------------------------
    def handle(self, conn: ControllerConn, t: int, xid: int, msg: bytes) -> None:
        ch = conn.channel
        if t == ofp.OFPT_FLOW_MOD:
            self._flow_mod(conn, xid, msg)
        elif t == ofp.OFPT_PACKET_OUT:
            self._packet_out(conn, xid, msg)
        elif t == ofp.OFPT_BARRIER_REQUEST:
            waits = [s for d in conn.touched if (s := self.host.session(d)) is not None]
            conn.touched.clear()
            conn.barriers.add(xid, waits)
        elif t == ofp.OFPT_FEATURES_REQUEST:
            body = _FEATURES.pack(self.vdpid, 0, self.view.n_tables, 0, 0, 0)
            ch.send(codec.header(ch.version, ofp.OFPT_FEATURES_REPLY, xid, body))
        elif t == ofp.OFPT_GET_CONFIG_REQUEST:
            body = struct.pack("!HH", self.flags, self.miss_send_len)
            ch.send(codec.header(ch.version, ofp.OFPT_GET_CONFIG_REPLY, xid, body))
        elif t == ofp.OFPT_SET_CONFIG:
            if len(msg) < 12:
                raise MalformedMessage("SET_CONFIG too short")
            self.flags, self.miss_send_len = struct.unpack_from("!HH", msg, 8)
        elif t == ofp.OFPT_MULTIPART_REQUEST:
            self._multipart(conn, xid, msg)
        elif t == ofp.OFPT_GROUP_MOD:
            self._group_mod(conn, xid, msg)
        elif t == ofp.OFPT_METER_MOD:
            self._meter_mod(conn, xid, msg)
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

    def _group_mod(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        gm = GroupMod.parse(msg)
        view, dpid, gid = self.view, self.view.dpid, gm.group_id
        session = self.host.session(dpid)
        if gm.command == ofp.OFPGC_ADD:
            if gid > ofp.OFPG_MAX:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_INVALID_GROUP, f"{gid:#x}")
            if gid in self.groups:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_GROUP_EXISTS, str(gid))
            phys = self.host.alloc_id("group", dpid)
            if phys is None:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS, "none left")
            try:
                out = translate_group(view, self.group_map, gm, phys)
            except (OFError, MalformedMessage):
                self.host.free_id("group", dpid, phys)
                raise
            group = VGroup(gm.type, gm.buckets, phys, time.monotonic())
            self.groups[gid] = group

            def undo(etype: int, code: int, data: bytes) -> None:
                if self.groups.get(gid) is group:  # the pswitch refused it: it never existed
                    del self.groups[gid]
                    self.host.free_id("group", dpid, phys)
                conn.channel.send_error(xid, etype, code, msg)

            self._send_phys(conn, session, lambda x: codec.set_xid(out, x), undo)
        elif gm.command == ofp.OFPGC_MODIFY:
            old = self.groups.get(gid)
            if old is None:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_UNKNOWN_GROUP, str(gid))
            out = translate_group(view, self.group_map, gm, old.phys_id)
            old.type, old.buckets = gm.type, gm.buckets
            relay = self._error_relay(conn, xid, msg, None)
            self._send_phys(conn, session, lambda x: codec.set_xid(out, x), relay)
        elif gm.command == ofp.OFPGC_DELETE:
            gone = list(self.groups) if gid == ofp.OFPG_ALL else [gid] if gid in self.groups else []
            for g in gone:
                self._delete_group(conn, session, g)
        else:
            raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_BAD_COMMAND, str(gm.command))

    def _delete_group(self, conn: ControllerConn, session: PSwitchSession | None, gid: int) -> None:
        """The pswitch deletes the group and the rules forwarding to it; rules it will report
        (SEND_FLOW_REM) leave the tenant's table with that report, the others go now."""
        group = self.groups.pop(gid)
        out = delete_group(group.phys_id)
        self._send_phys(conn, session, lambda x: codec.set_xid(out, x), None)
        self.host.free_id("group", self.view.dpid, group.phys_id)
        for vf in self.table:
            if vf.uses_group(gid) and not any(pf.flags & ofp.OFPFF_SEND_FLOW_REM for pf in vf.phys):
                self.table.remove(vf)
                for pf in vf.phys:
                    self._release(session, conn, vf.serial, pf, None, gone=True)

    def _meter_mod(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        mm = MeterMod.parse(msg)
        dpid, mid = self.view.dpid, mm.meter_id
        session = self.host.session(dpid)
        if mm.command == ofp.OFPMC_ADD:
            mm.check_id()
            if mid in self.meters:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_METER_EXISTS, str(mid))
            phys = self.host.alloc_id("meter", dpid)
            if phys is None:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS, "none left")
            meter = VMeter(mm.flags, mm.bands, phys)
            self.meters[mid] = meter
            out = meter_mod(ofp.OFPMC_ADD, mm.flags, phys, mm.bands)

            def undo(etype: int, code: int, data: bytes) -> None:
                if self.meters.get(mid) is meter:  # refused by the pswitch: never existed
                    del self.meters[mid]
                    self.host.free_id("meter", dpid, phys)
                conn.channel.send_error(xid, etype, code, msg)

            self._send_phys(conn, session, lambda x: codec.set_xid(out, x), undo)
        elif mm.command == ofp.OFPMC_MODIFY:
            mm.check_id()
            old = self.meters.get(mid)
            if old is None:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_UNKNOWN_METER, str(mid))
            out = meter_mod(ofp.OFPMC_MODIFY, mm.flags, old.phys_id, mm.bands)
            old.flags, old.bands = mm.flags, mm.bands
            relay = self._error_relay(conn, xid, msg, None)
            self._send_phys(conn, session, lambda x: codec.set_xid(out, x), relay)
        elif mm.command == ofp.OFPMC_DELETE:
            gone = list(self.meters) if mid == ofp.OFPM_ALL else [mid] if mid in self.meters else []
            for m in gone:
                meter = self.meters.pop(m)
                out = meter_mod(ofp.OFPMC_DELETE, 0, meter.phys_id, b"")
                self._send_phys(conn, session, lambda x, o=out: codec.set_xid(o, x), None)  # type: ignore[misc]
                self.host.free_id("meter", dpid, meter.phys_id)
                # the pswitch removes the rules using it; the tenant's table follows
                for vf in self.table:
                    if codec.parse_instructions(vf.instructions).meter == m and not any(
                        pf.flags & ofp.OFPFF_SEND_FLOW_REM for pf in vf.phys
                    ):
                        self.table.remove(vf)
                        for pf in vf.phys:
                            self._release(session, conn, vf.serial, pf, None, gone=True)
        else:
            raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_COMMAND, str(mm.command))

    def _meter_stats(self, conn: ControllerConn, xid: int, msg: bytes, mtype: int) -> None:
        """METER stats under the tenant's ids (flow_count: the tenant's rules); METER_FEATURES
        is what the pswitch has (the vswitch meters are the pswitch's)."""
        session = self.host.session(self.view.dpid)
        ch = conn.channel
        mid = codec.u32(msg, 16) if len(msg) >= 20 else ofp.OFPM_ALL
        wanted = {v: m for v, m in self.meters.items() if mid in (ofp.OFPM_ALL, v)}
        by_phys = {m.phys_id: v for v, m in wanted.items()}

        def reply(parts: list[bytes] | None) -> None:
            if mtype == ofp.OFPMP_METER_FEATURES:
                body = parts[0][:16] if parts and len(parts[0]) >= 16 else bytes(16)
                out = _MP_REPLY.pack(mtype, 0) + body
                ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, out))
                return
            entries = []
            for body in parts or []:
                off = 0
                while off + 40 <= len(body):
                    length = codec.u16(body, off + 4)
                    if length < 40:
                        break
                    vid = by_phys.get(codec.u32(body, off))
                    if vid is not None:
                        flows = sum(
                            1 for vf in self.table
                            if codec.parse_instructions(vf.instructions).meter == vid
                        )  # fmt: skip
                        entries.append(
                            struct.pack("!I", vid) + body[off + 4 : off + 12]
                            + struct.pack("!I", flows) + body[off + 16 : off + length]
                        )  # fmt: skip
                    off += length
            self._multipart_reply(ch, xid, ofp.OFPMP_METER, entries)

        if session is None or not session.ready or (mtype == ofp.OFPMP_METER and not wanted):
            reply(None)
            return
        conn.touched.add(self.view.dpid)
        body = b"" if mtype == ofp.OFPMP_METER_FEATURES else struct.pack("!I4x", ofp.OFPM_ALL)
        session.multipart(mtype, body, reply)

    def _group_stats(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        """Counters of the physical groups, under the tenant's group ids; ref_count counts
        the tenant's own rules, not their expansions."""
        if len(msg) < 24:
            raise MalformedMessage("group statistics request too short")
        gid = codec.u32(msg, 16)
        if gid == ofp.OFPG_ALL:
            wanted = dict(self.groups)
        elif gid in self.groups:
            wanted = {gid: self.groups[gid]}
        else:
            wanted = {}
        by_phys = {g.phys_id: vid for vid, g in wanted.items()}
        refs = {vid: sum(1 for vf in self.table if vf.uses_group(vid)) for vid in wanted}
        session = self.host.session(self.view.dpid)
        ch = conn.channel
        now = time.monotonic()

        def reply(parts: list[bytes] | None) -> None:
            found: dict[int, bytes] = {}
            for body in parts or []:
                off = 0
                while off + 40 <= len(body):
                    length = codec.u16(body, off)
                    if length < 40:
                        break
                    vid = by_phys.get(codec.u32(body, off + 4))
                    if vid is not None:
                        found[vid] = (
                            body[off : off + 4] + struct.pack("!II", vid, refs[vid])
                            + body[off + 12 : off + length]
                        )  # fmt: skip
                    off += length
            entries = []
            for vid, g in sorted(wanted.items()):
                if vid in found:
                    entries.append(found[vid])
                    continue
                age = now - g.created  # not on the pswitch (it is down): no packets yet
                n = len(parse_buckets(g.buckets))
                entries.append(
                    _GROUP_STATS.pack(40 + 16 * n, vid, refs[vid], 0, 0, int(age),
                                      int(age % 1 * 1e9)) + bytes(16 * n)
                )  # fmt: skip
            self._multipart_reply(ch, xid, ofp.OFPMP_GROUP, entries)

        if not wanted or session is None or not session.ready:
            reply(None)
            return
        conn.touched.add(self.view.dpid)
        session.multipart(ofp.OFPMP_GROUP, struct.pack("!I4x", ofp.OFPG_ALL), reply)

    def _role_request(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        """OF1.3 7.3.9: MASTER/SLAVE requests carry a generation id that must not go back;
        a new MASTER makes the previous one SLAVE; EQUAL needs no generation."""
        if len(msg) < 8 + _ROLE.size:
            raise MalformedMessage("ROLE_REQUEST too short")
        role, gen = _ROLE.unpack_from(msg, 8)
        if role not in (ofp.OFPCR_ROLE_NOCHANGE, ofp.OFPCR_ROLE_EQUAL, ofp.OFPCR_ROLE_MASTER,
                        ofp.OFPCR_ROLE_SLAVE):  # fmt: skip
            raise OFError(ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_BAD_ROLE, f"role {role}")
        if role in (ofp.OFPCR_ROLE_MASTER, ofp.OFPCR_ROLE_SLAVE):
            last = self.generation
            if last is not None and ((gen - last) & (1 << 64) - 1) >= 1 << 63:
                raise OFError(ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, "stale generation")
            self.generation = gen
        if role != ofp.OFPCR_ROLE_NOCHANGE:
            if role == ofp.OFPCR_ROLE_MASTER:
                for other in self.conns:
                    if other is not conn and other.role == ofp.OFPCR_ROLE_MASTER:
                        other.role = ofp.OFPCR_ROLE_SLAVE
            conn.role = role
            log.info("%s: controller %s is now %s", self.label, conn.url, _ROLE_NAMES[role])
        ch = conn.channel
        body = _ROLE.pack(conn.role, self.generation or 0)
        ch.send(codec.header(ch.version, ofp.OFPT_ROLE_REPLY, xid, body))

    def _send_phys(
        self, conn: ControllerConn | None, session: PSwitchSession | None,
        build: Callable[[int], bytes], on_error: Callable[[int, int, bytes], None] | None,
    ) -> None:  # fmt: skip
        if session is None or not session.ready:
            return  # re-derived from the virtual table when the pswitch connects
        session.send_flow(build, on_error)
        if conn is not None:
            conn.touched.add(session.dpid or 0)

    def _error_relay(
        self, conn: ControllerConn, xid: int, msg: bytes, rollback: VFlow | None
    ) -> Callable[[int, int, bytes], None]:
        sent = False

        def relay(etype: int, code: int, data: bytes) -> None:
            nonlocal sent
            if rollback is not None and self.table.by_serial.get(rollback.serial) is rollback:
                self.table.remove(rollback)
                self._drop(rollback, self.host.session(self.view.dpid), None, None)
            if not sent:
                sent = True
                log.info(
                    "%s: pswitch refused rule (type=%d code=%d); told the tenant",
                    self.label, etype, code,
                )  # fmt: skip
                conn.channel.send_error(xid, etype, code, msg)

        return relay

    def _phys(
        self, vf: VFlow, table: int, flows: tuple[tuple[bytes, bytes], ...]
    ) -> tuple[PhysFlow, ...]:
        flags = vf.flags & ofp.OFPFF_RESET_COUNTS
        if vf.flags & ofp.OFPFF_SEND_FLOW_REM or vf.idle_timeout or vf.hard_timeout:
            flags |= ofp.OFPFF_SEND_FLOW_REM  # we must hear of expiry to forget the rule
        cookie = layout.tenant_cookie(self.view.net_id, vf.serial)
        dpid = self.view.dpid
        return tuple(
            PhysFlow(
                dpid, table, vf.priority, m, i, cookie, vf.idle_timeout, vf.hard_timeout, flags
            )
            for m, i in flows
        )

    def _flow_mod(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        fm = FlowMod.parse(msg)
        cmd = fm.command
        view = self.view
        session = self.host.session(view.dpid)
        table = self.table
        if cmd == ofp.OFPFC_ADD:
            if fm.buffer_id != ofp.OFP_NO_BUFFER:
                raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN, "no buffers")
            if fm.table_id == ofp.OFPTT_ALL:
                raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID, "table ALL")
            norm = normalize(fm.match)
            tf = translate_flow(
                view, fm.table_id, fm.match, fm.instructions, self.group_map, self.meter_map
            )
            if fm.flags & ofp.OFPFF_CHECK_OVERLAP:
                table.check_overlap(fm, norm)
            old = table.get(fm.table_id, fm.priority, norm)
            vf = VFlow(
                old.serial if old is not None else table.new_serial(),
                fm.table_id, fm.priority, fm.match, norm, fm.instructions, fm.cookie,
                fm.idle_timeout, fm.hard_timeout, fm.flags,
            )  # fmt: skip
            vf.phys = old.phys if old is not None else ()  # what the pswitch has for it now
            table.put(vf)
            relay = self._error_relay(conn, xid, msg, vf)
            new = self._phys(vf, tf.table, tf.flows)
            self._reprogram(session, vf, new, relay, conn, modify=False)
        elif cmd in (ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
            norm = normalize(fm.match)
            targets = table.select(fm, norm, cmd == ofp.OFPFC_MODIFY_STRICT, filter_out=False)
            planned = [
                (
                    vf,
                    translate_flow(
                        view, vf.table, vf.match, fm.instructions, self.group_map, self.meter_map
                    ),
                )
                for vf in targets
            ]
            relay = self._error_relay(conn, xid, msg, None)
            for vf, tf in planned:
                vf.instructions = fm.instructions
                self._reprogram(session, vf, self._phys(vf, tf.table, tf.flows), relay, conn)
        elif cmd in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            norm = normalize(fm.match)
            if fm.table_id != ofp.OFPTT_ALL and fm.table_id >= view.n_tables:
                raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID, "bad table")
            targets = table.select(fm, norm, cmd == ofp.OFPFC_DELETE_STRICT, filter_out=True)
            relay = self._error_relay(conn, xid, msg, None)
            for vf in targets:
                table.remove(vf)
                sent = self._drop(vf, session, conn, relay)
                if vf.flags & ofp.OFPFF_SEND_FLOW_REM:
                    rec = _Dying(vf, sent, ofp.OFPRR_DELETE)
                    if sent:
                        self._dying[vf.serial] = rec  # counters come with the pswitch's replies
                    else:
                        self._flow_removed_to_tenant(rec, 0, 0)
        else:
            raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_COMMAND, f"command {cmd}")

    def _reprogram(
        self, session: PSwitchSession | None, vf: VFlow, new: tuple[PhysFlow, ...],
        relay: Callable[[int, int, bytes], None] | None, conn: ControllerConn | None,
        modify: bool = True,
    ) -> None:  # fmt: skip
        """Move the pswitch from the rules `vf` has to `new`.  With `modify`, a rule whose
        key stays is modified in place (its counters stay, as OpenFlow's MODIFY wants)."""
        old, vf.phys = vf.phys, new
        new_keys = {pf.key for pf in new}
        for pf in old:
            if pf.key not in new_keys:
                self._release(session, conn, vf.serial, pf, None)
        old_keys = {pf.key for pf in old}
        for pf in new:
            was_installed = self.rules.add(vf.serial, pf)
            if modify and was_installed and pf.key in old_keys:
                build: Callable[[int], bytes] = partial(
                    pf.flow_mod, command=ofp.OFPFC_MODIFY_STRICT
                )
            else:
                build = pf.flow_mod  # ADD: also sets our cookie over another owner's rule
            self._send_phys(conn, session, build, relay)

    def _release(
        self, session: PSwitchSession | None, conn: ControllerConn | None, serial: int,
        pf: PhysFlow, relay: Callable[[int, int, bytes], None] | None, gone: bool = False,
    ) -> bool:  # fmt: skip
        """`serial` gives up `pf`: delete it, or put back the rule of the key's next owner.
        `gone`: the pswitch already removed it (expiry).  True when a delete was sent."""
        nxt = self.rules.remove(serial, pf)
        if nxt is None or (nxt is pf and gone):
            return False
        if nxt is pf:
            self._send_phys(conn, session, pf.delete_strict, relay)
            return session is not None and session.ready
        self._send_phys(conn, session, nxt.flow_mod, None)
        return False

    def _drop(
        self, vf: VFlow, session: PSwitchSession | None, conn: ControllerConn | None,
        relay: Callable[[int, int, bytes], None] | None, gone: PhysFlow | None = None,
    ) -> int:  # fmt: skip
        """Take a removed rule's physical rules away; returns how many deletes were sent."""
        sent = 0
        for pf in vf.phys:
            sent += self._release(session, conn, vf.serial, pf, relay, gone=pf is gone)
        return sent

    # --- PACKET_OUT ------------------------------------------------------------------------
    def _packet_out(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        po = PacketOut.parse(msg)
        view = self.view
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
        if po.data[12:14] == b"\x88\xcc":
            self._lldp_out(conn, xid, msg, po, in_vport)
            return
        in_port, actions = translate_packet_out(view, in_vport, po.actions, self.group_map)
        if not actions:
            return
        session = self.host.session(view.dpid)
        out = codec.packet_out(0, in_port, actions, po.data)
        self._send_phys(
            conn, session, lambda x: codec.set_xid(out, x), self._error_relay(conn, xid, msg, None)
        )

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
        edge = b""
        for n in targets:
            pm = view.ports[n]
            if pm.is_link:
                if pm.up:
                    self.host.deliver_lldp(view.net_id, self.vdpid, n, po.data)
            else:
                edge += codec.output(pm.phys_port)
        if edge:
            out = codec.packet_out(0, ofp.OFPP_CONTROLLER, edge, po.data)
            self._send_phys(
                conn, self.host.session(view.dpid), lambda x: codec.set_xid(out, x),
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
        serial = pi.cookie & layout.SERIAL_MASK
        vf = self.table.by_serial.get(serial)
        if vf is None:
            if serial == _IMPLICIT_MISS:  # a table miss, for OpenFlow 1.0 controllers
                match = [codec.oxm_u32(oxm.IN_PORT, vport or ofp.OFPP_CONTROLLER)]
                out = PacketIn(ofp.OFP_NO_BUFFER, pi.total_len, ofp.OFPR_NO_MATCH, 0,
                               _PI_NO_COOKIE, match, pi.data).encode(0)  # fmt: skip
                self.packet_ins += 1
                self._broadcast(out, _PACKET_IN, ofp.OFPR_NO_MATCH)
            return  # else the rule was removed while the packet was on its way
        reason = ofp.OFPR_NO_MATCH if vf.is_table_miss else ofp.OFPR_ACTION
        match = [codec.oxm_u32(oxm.IN_PORT, vport or ofp.OFPP_CONTROLLER)]
        if tmeta:
            match.append(codec.oxm_u64(oxm.METADATA, tmeta))
        out = PacketIn(
            ofp.OFP_NO_BUFFER, pi.total_len, reason, vf.table, vf.cookie, match, pi.data
        ).encode(0)
        self.packet_ins += 1
        self._broadcast(out, _PACKET_IN, reason)

    def lldp_in(self, vport: int, data: bytes) -> None:
        match = [codec.oxm_u32(oxm.IN_PORT, vport)]
        msg = PacketIn(
            ofp.OFP_NO_BUFFER, len(data), ofp.OFPR_ACTION, 0, _PI_NO_COOKIE, match, data
        ).encode(0)
        self._broadcast(msg, _PACKET_IN, ofp.OFPR_ACTION)

    def flow_removed(self, serial: int, fr: codec.FlowRemoved) -> None:
        """A physical rule of ours is gone: a timeout expires the tenant's rule (with all its
        expansions); our own deletes bring the counters of rules the tenant removed."""
        vf = self.table.by_serial.get(serial)
        if vf is not None:
            if fr.reason == ofp.OFPRR_DELETE:
                return  # a re-program replaced it; the virtual rule lives on
            self.table.remove(vf)
            want = normalize(fr.match)
            gone = next(
                (pf for pf in vf.phys if normalize(codec.parse_match(pf.match, 0)[0]) == want),
                None,
            )
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
    def _port_desc(self, n: int) -> bytes:
        pm = self.view.ports.get(n)
        up = pm is not None and pm.up
        hw = struct.pack("!BBIB", 0x02, 0x76, self.view.index, 0)[:5] + bytes([n & 0xFF])
        name = self.port_names.get(n, f"vport{n}").encode()[:15]
        state = ofp.OFPPS_LIVE if up else ofp.OFPPS_LINK_DOWN
        curr = ofp.OFPPF_10GB_FD | ofp.OFPPF_COPPER
        return _PORT.pack(n, hw, name, 0, state, curr, curr, curr, 0, 10_000_000, 10_000_000)

    def _multipart(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        if len(msg) < 16:
            raise MalformedMessage("MULTIPART_REQUEST too short")
        mtype = codec.u16(msg, 8)
        ch = conn.channel
        if mtype == ofp.OFPMP_DESC:
            body = _DESC.pack(
                b"tenantvisor",
                f"virtual switch over pswitch {self.view.dpid:016x}".encode(),
                f"tenantvisor {__version__}".encode(),
                f"net{self.view.net_id}-{self.vdpid:016x}".encode(),
                self.label.encode(),
            )
            ch.send(
                codec.header(
                    ch.version, ofp.OFPT_MULTIPART_REPLY, xid, _MP_REPLY.pack(mtype, 0) + body
                )
            )
        elif mtype == ofp.OFPMP_PORT_DESC:
            ports = sorted(self.view.ports)
            chunks = [
                ports[i : i + PORTS_PER_REPLY] for i in range(0, len(ports), PORTS_PER_REPLY)
            ] or [[]]
            for i, chunk in enumerate(chunks):
                more = ofp.OFPMPF_REPLY_MORE if i < len(chunks) - 1 else 0
                body = _MP_REPLY.pack(mtype, more) + b"".join(self._port_desc(n) for n in chunk)
                ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, body))
        elif mtype in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE):
            self._flow_stats(conn, xid, msg, mtype)
        elif mtype == ofp.OFPMP_TABLE:
            self._table_stats(conn, xid)
        elif mtype == ofp.OFPMP_PORT_STATS:
            self._port_stats(conn, xid, msg)
        elif mtype == ofp.OFPMP_GROUP_DESC:
            entries = [
                _GROUP_DESC.pack(8 + len(g.buckets), g.type, gid) + g.buckets
                for gid, g in sorted(self.groups.items())
            ]
            self._multipart_reply(ch, xid, mtype, entries)
        elif mtype == ofp.OFPMP_GROUP_FEATURES:
            body = _MP_REPLY.pack(mtype, 0) + _group_features()
            ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, body))
        elif mtype == ofp.OFPMP_GROUP:
            self._group_stats(conn, xid, msg)
        elif mtype == ofp.OFPMP_METER_CONFIG:
            mid = codec.u32(msg, 16) if len(msg) >= 20 else ofp.OFPM_ALL
            entries = [
                _METER_CONFIG.pack(8 + len(m.bands), m.flags, vid) + m.bands
                for vid, m in sorted(self.meters.items())
                if mid in (ofp.OFPM_ALL, vid)
            ]
            self._multipart_reply(ch, xid, mtype, entries)
        elif mtype in (ofp.OFPMP_METER, ofp.OFPMP_METER_FEATURES):
            self._meter_stats(conn, xid, msg, mtype)
        elif mtype == ofp.OFPMP_TABLE_FEATURES:
            if len(msg) > 16:  # a body asks to change the tables: the pipeline is fixed
                raise OFError(
                    ofp.OFPET_TABLE_FEATURES_FAILED, ofp.OFPTFFC_EPERM, "tables are fixed"
                )
            self._multipart_reply(ch, xid, mtype, table_features(self.view.n_tables))
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART, f"multipart {mtype}")

    # --- statistics from the pswitch's counters ----------------------------------------------
    def _counters(self, conn: ControllerConn, done: Callable[[dict[int, list[int]]], None]) -> None:
        """Packet and byte counts of this vswitch's rules, by serial, read from the pswitch in
        one request (the network's cookie, infrastructure rules excluded).  A pswitch that is
        down has none of the rules: their counts are 0."""
        session = self.host.session(self.view.dpid)
        if session is None or not session.ready:
            done({})
            return
        conn.touched.add(self.view.dpid)  # a later BARRIER reply must follow this reply

        def parse(parts: list[bytes] | None) -> None:
            counts: dict[int, list[int]] = {}
            for body in parts or []:
                off = 0
                while off + 48 <= len(body):
                    length = codec.u16(body, off)
                    if length < 48:
                        break
                    cookie, packets, nbytes = _COUNTERS.unpack_from(body, off + 24)
                    c = counts.setdefault(cookie & layout.SERIAL_MASK, [0, 0])
                    c[0] += packets
                    c[1] += nbytes
                    off += length
            done(counts)

        req = _FLOW_STATS_REQ.pack(
            ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
            layout.net_cookie(self.view.net_id), layout.NET_COOKIE_MASK | layout.INFRA_BIT,
        )  # fmt: skip
        session.multipart(ofp.OFPMP_FLOW, req + codec.encode_match([]), parse)

    def _flow_stats(self, conn: ControllerConn, xid: int, msg: bytes, mtype: int) -> None:
        if len(msg) < 56:
            raise MalformedMessage("flow statistics request too short")
        table_id, out_port, out_group, cookie, mask = _FLOW_STATS_REQ.unpack_from(msg, 16)
        match, _ = codec.parse_match(msg, 48)
        if table_id != ofp.OFPTT_ALL and table_id >= self.view.n_tables:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TABLE_ID, f"table {table_id}")
        selected = self.table.select_stats(table_id, out_port, cookie, mask, normalize(match))
        if out_group != ofp.OFPG_ANY:
            selected = []  # no rule outputs to a group: groups are not offered yet
        now = time.monotonic()
        ch = conn.channel

        def reply(counts: dict[int, list[int]]) -> None:
            if mtype == ofp.OFPMP_AGGREGATE:
                pk = sum(counts.get(v.serial, (0, 0))[0] for v in selected)
                by = sum(counts.get(v.serial, (0, 0))[1] for v in selected)
                body = _MP_REPLY.pack(mtype, 0) + _AGGREGATE.pack(pk, by, len(selected))
                ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, body))
                return
            entries = []
            for v in selected:
                pk, by = counts.get(v.serial, (0, 0))
                age = now - v.created
                m = codec.encode_match(v.match)
                entries.append(
                    _FLOW_STATS.pack(
                        48 + len(m) + len(v.instructions), v.table, int(age),
                        int(age % 1 * 1e9), v.priority, v.idle_timeout, v.hard_timeout,
                        v.flags, v.cookie, pk, by,
                    ) + m + v.instructions
                )  # fmt: skip
            self._multipart_reply(ch, xid, mtype, entries)

        self._counters(conn, reply)

    def _table_stats(self, conn: ControllerConn, xid: int) -> None:
        """active_count and matched_count are the tenant's own; lookup_count is not knowable
        per tenant (the physical tables are shared), so it says so: -1, not an invention."""
        ch = conn.channel
        by_table: dict[int, list[VFlow]] = {}
        for v in self.table:
            by_table.setdefault(v.table, []).append(v)

        def reply(counts: dict[int, list[int]]) -> None:
            entries = []
            for t in range(self.view.n_tables):
                rules = by_table.get(t, [])
                matched = sum(counts.get(v.serial, (0, 0))[0] for v in rules)
                entries.append(_TABLE_STATS.pack(t, len(rules), _UNKNOWN, matched))
            self._multipart_reply(ch, xid, ofp.OFPMP_TABLE, entries)

        self._counters(conn, reply)

    def _port_stats(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        """rx: what the table-0 rules that classify into the vport counted; tx of a link
        vport: what its peer received over the vlink.  An edge vport's tx has no counter of
        its own on a shared pswitch, nor have errors and drops: all ones, as OpenFlow asks for
        counters a switch does not have."""
        if len(msg) < 24:
            raise MalformedMessage("port statistics request too short")
        port_no = codec.u32(msg, 16)
        view = self.view
        if port_no == ofp.OFPP_ANY:
            ports = sorted(view.ports)
        elif port_no in view.ports:
            ports = [port_no]
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PORT, f"port {port_no}")
        peers = {
            n: self.host.vlink_peer(view.net_id, self.vdpid, n)
            for n in ports
            if view.ports[n].is_link
        }
        dpids = {view.dpid} | {pe[0] for pe in peers.values() if pe is not None}
        conn.touched |= dpids
        age = time.monotonic() - self.created
        ch = conn.channel

        def reply(counts: dict[tuple[int, int], list[int]]) -> None:
            entries = []
            for n in ports:
                rx = counts.get((self.vdpid, n), [0, 0])
                if n in peers:
                    pe = peers[n]
                    tx = counts.get((pe[1], pe[2]), [0, 0]) if pe is not None else [0, 0]
                else:
                    tx = [_UNKNOWN, _UNKNOWN]
                entries.append(
                    _PORT_STATS.pack(n, rx[0], tx[0], rx[1], tx[1], *[_UNKNOWN] * 8,
                                     int(age), int(age % 1 * 1e9))
                )  # fmt: skip
            self._multipart_reply(ch, xid, ofp.OFPMP_PORT_STATS, entries)

        self.host.classified_counts(view.net_id, dpids, reply)

    @staticmethod
    def _multipart_reply(ch: Channel, xid: int, mtype: int, entries: list[bytes]) -> None:
        """Entries in as many reply parts as the 64 KiB message size needs."""
        parts: list[list[bytes]] = [[]]
        size = 0
        for e in entries:
            if size + len(e) > MAX_REPLY_BODY and parts[-1]:
                parts.append([])
                size = 0
            parts[-1].append(e)
            size += len(e)
        for i, part in enumerate(parts):
            more = ofp.OFPMPF_REPLY_MORE if i < len(parts) - 1 else 0
            body = _MP_REPLY.pack(mtype, more) + b"".join(part)
            ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, body))
