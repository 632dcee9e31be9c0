"""One OpenFlow 1.3 session per pswitch (the "OVS 1.3" switch driver).

It learns the dpid and ports, is reconciled by the program stage when it starts (never
wiped: what is right on the switch stays), sends what the hypervisor asks, keeps the xid of
every message sent
for a tenant so an error can be mapped back, and runs barriers with synchronous callbacks so
a tenant's BARRIER reply is ordered exactly after the errors that precede it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.openflow import codec, of10
from tenantvisor.openflow.channel import Channel
from tenantvisor.physical.topology import PPort
from tenantvisor.translate.flow import PhysFlow

log = logging.getLogger(__name__)
_DP = ProtocolDesc(ofp.OFP_VERSION)
MAX_RECORDS = 65536
ErrorCallback = Callable[[int, int, bytes], None]  # (error type, code, data)


@dataclass(slots=True)
class XidRecord:
    """Who to tell if the pswitch refuses the message sent with this xid."""

    on_error: ErrorCallback | None
    on_barrier: Callable[[], None] | None = None


class SessionEvents(Protocol):
    def switch_ready(self, s: PSwitchSession) -> None: ...

    def switch_gone(self, s: PSwitchSession) -> None: ...

    def port_status(self, s: PSwitchSession, port: PPort, reason: int) -> None: ...

    def packet_in(self, s: PSwitchSession, msg: bytes) -> None: ...

    def flow_removed(self, s: PSwitchSession, msg: bytes) -> None: ...


def _port(p: parser.OFPPort) -> PPort:
    up = not (p.state & ofp.OFPPS_LINK_DOWN) and not (p.config & ofp.OFPPC_PORT_DOWN)
    name = p.name.decode(errors="replace") if isinstance(p.name, bytes) else str(p.name)
    return PPort(p.port_no, name.rstrip("\0"), p.hw_addr, up, p.curr_speed, p.max_speed)


def _port10(no: int, hw: bytes, name: bytes, config: int, state: int) -> PPort:
    up = not (state & of10.o10.OFPPS_LINK_DOWN) and not (config & of10.o10.OFPPC_PORT_DOWN)
    mac = ":".join(f"{b:02x}" for b in hw)
    text = name.decode(errors="replace").rstrip("\0")
    return PPort(of10.port_to13(no), text, mac, up)


class PSwitchSession:
    def __init__(self, events: SessionEvents) -> None:
        self.events = events
        self.channel = Channel(self, "pswitch", versions=frozenset({of10.V10, codec.VERSION}))
        self.dpid: int | None = None
        self.ports: dict[int, PPort] = {}
        self.n_tables = 0
        self.ready = False
        # the program stage has read the switch and sent the difference: until then, rule
        # and group changes are not sent (the sync reads them from the desired state)
        self.synced = False
        self._records: dict[int, XidRecord] = {}
        self._port_parts: list[PPort] = []
        # multipart requests made for tenants: xid -> (reply bodies so far, done callback)
        self._multipart: dict[int, tuple[list[bytes], Callable[[list[bytes] | None], None]]] = {}
        self.flow_mods_sent = 0

    def __repr__(self) -> str:
        return (
            f"pswitch {self.dpid:016x}" if self.dpid is not None else f"pswitch {self.channel.peer}"
        )

    # --- ChannelOwner --------------------------------------------------------------------
    def channel_ready(self, ch: Channel) -> None:
        ch.send(codec.header(ch.version, ofp.OFPT_FEATURES_REQUEST, ch.next_xid()))

    def channel_closed(self, ch: Channel, reason: str) -> None:
        log.info("%r disconnected: %s", self, reason)
        for rec in list(self._records.values()):
            if rec.on_barrier is not None:
                rec.on_barrier()  # nothing more will come; do not leave tenants waiting
        self._records.clear()
        for _, done in list(self._multipart.values()):
            done(None)
        self._multipart.clear()
        if self.dpid is not None:
            self.events.switch_gone(self)

    @property
    def is_of10(self) -> bool:
        """An OpenFlow 1.0 pswitch: one table, no metadata; it carries vlinks (transit)."""
        return self.channel.version == of10.V10

    def _message10(self, ch: Channel, msg_type: int, xid: int, msg: bytes) -> None:
        """The OpenFlow 1.0 messages a transit pswitch sends us."""
        if msg_type == of10.o10.OFPT_PACKET_IN:
            self.events.packet_in(self, msg)
        elif msg_type == of10.o10.OFPT_BARRIER_REPLY:
            self._barrier_reply(xid)
        elif msg_type == of10.o10.OFPT_ERROR:
            self._error(xid, msg)
        elif msg_type == of10.o10.OFPT_STATS_REPLY and len(msg) >= 12:
            pending = self._multipart.get(xid)
            if pending is not None:
                pending[0].append(of10.flow_stats_to13(msg[12:]))
                if not codec.u16(msg, 10) & ofp.OFPMPF_REPLY_MORE:
                    del self._multipart[xid]
                    self._records.pop(xid, None)
                    pending[1](pending[0])
        elif msg_type == of10.o10.OFPT_PORT_STATUS and len(msg) >= 64:
            reason = msg[8]
            no, hw, name, config, state = of10.features10(msg[:8] + bytes(24) + msg[16:64])[2][0]
            port = _port10(no, hw, name, config, state)
            if reason == ofp.OFPPR_DELETE:
                self.ports.pop(port.port_no, None)
            else:
                self.ports[port.port_no] = port
            if self.ready:
                self.events.port_status(self, port, reason)
        elif msg_type == of10.o10.OFPT_FEATURES_REPLY:
            dpid, n_tables, ports = of10.features10(msg)
            self.dpid, self.n_tables = dpid, n_tables
            self.ports = {p.port_no: p for p in (_port10(*x) for x in ports)
                          if p.port_no < of10.o10.OFPP_MAX}  # fmt: skip
            ch.send(codec.header(ch.version, of10.o10.OFPT_SET_CONFIG, ch.next_xid(),
                                 b"\0\0\xff\xff"))  # fmt: skip
            if not self.ready:
                self.ready = True
                log.info("%r connected from %s: %d ports, OpenFlow 1.0 (one table)",
                         self, ch.peer, len(self.ports))  # fmt: skip
                self.events.switch_ready(self)

    def channel_message(self, ch: Channel, msg_type: int, xid: int, msg: bytes) -> None:
        if ch.version == of10.V10:
            self._message10(ch, msg_type, xid, msg)
        elif msg_type == ofp.OFPT_PACKET_IN:
            self.events.packet_in(self, msg)
        elif msg_type == ofp.OFPT_BARRIER_REPLY:
            self._barrier_reply(xid)
        elif msg_type == ofp.OFPT_ERROR:
            self._error(xid, msg)
        elif msg_type == ofp.OFPT_FLOW_REMOVED:
            self.events.flow_removed(self, msg)
        elif msg_type == ofp.OFPT_PORT_STATUS:
            p = parser.OFPPortStatus.parser(_DP, ch.version, msg_type, len(msg), xid, msg)
            port = _port(p.desc)
            if p.reason == ofp.OFPPR_DELETE:
                self.ports.pop(port.port_no, None)
            else:
                self.ports[port.port_no] = port
            if self.ready:
                self.events.port_status(self, port, p.reason)
        elif msg_type == ofp.OFPT_FEATURES_REPLY:
            dpid, _, n_tables = struct.unpack_from("!QIB", msg, 8)
            self.dpid, self.n_tables = dpid, n_tables
            ch.send(codec.header(ch.version, ofp.OFPT_SET_CONFIG, ch.next_xid(), b"\0\0\xff\xff"))
            body = struct.pack("!HH4x", ofp.OFPMP_PORT_DESC, 0)
            ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REQUEST, ch.next_xid(), body))
        elif msg_type == ofp.OFPT_MULTIPART_REPLY:
            mtype, flags = struct.unpack_from("!HH", msg, 8)
            pending = self._multipart.get(xid)
            if pending is not None:
                pending[0].append(msg[16:])
                if not flags & ofp.OFPMPF_REPLY_MORE:
                    del self._multipart[xid]
                    self._records.pop(xid, None)
                    pending[1](pending[0])
            elif mtype == ofp.OFPMP_PORT_DESC:
                off = 16
                while off + 64 <= len(msg):
                    self._port_parts.append(_port(parser.OFPPort.parser(msg, off)))
                    off += 64
                if not flags & ofp.OFPMPF_REPLY_MORE:
                    self.ports = {
                        p.port_no: p for p in self._port_parts if p.port_no < ofp.OFPP_MAX
                    }
                    self._port_parts = []
                    if not self.ready:
                        self.ready = True
                        log.info(
                            "%r connected from %s: %d ports, %d tables",
                            self, ch.peer, len(self.ports), self.n_tables,
                        )  # fmt: skip
                        self.events.switch_ready(self)

    # --- sending -------------------------------------------------------------------------
    def send(self, msg: bytes, on_error: ErrorCallback | None = None) -> int:
        """Send with a fresh xid; remember who to tell about an error.  Returns the xid."""
        ch = self.channel
        xid = ch.next_xid()
        if on_error is not None:
            records = self._records
            records[xid] = XidRecord(on_error)
            if len(records) > MAX_RECORDS:  # no barrier for a long time: forget the oldest
                for old in list(records)[: MAX_RECORDS // 4]:
                    if records[old].on_barrier is None:
                        del records[old]
        ch.send(codec.set_xid(msg, xid))
        return xid

    def send_flow(
        self,
        build: Callable[[int], bytes],
        on_error: Callable[[int, int, bytes], None] | None = None,
    ) -> None:
        ch = self.channel
        xid = ch.next_xid()
        if on_error is not None:
            self._records[xid] = XidRecord(on_error)
        self.flow_mods_sent += 1
        ch.send(build(xid))

    def multipart(
        self, mtype: int, body: bytes, done: Callable[[list[bytes] | None], None]
    ) -> None:
        """Ask the switch for statistics; `done` gets the bodies of every reply part, or None
        when the switch refused or went away."""
        ch = self.channel
        if not ch.is_open or not self.ready or (self.is_of10 and mtype != ofp.OFPMP_FLOW):
            done(None)  # a 1.0 pswitch has flow statistics only
            return
        xid = ch.next_xid()
        self._multipart[xid] = ([], done)

        def refused(etype: int, code: int, data: bytes) -> None:
            if self._multipart.pop(xid, None) is not None:
                log.warning("%r refused statistics request %d: type=%d code=%d", self, mtype,
                            etype, code)  # fmt: skip
                done(None)

        self._records[xid] = XidRecord(refused)
        if self.is_of10:  # every rule of the one table; the replies are given 1.3's shape
            req10 = struct.pack("!HH", of10.o10.OFPST_FLOW, 0) + of10.match_to10([])
            req10 += struct.pack("!BxH", 0xFF, of10.o10.OFPP_NONE)
            ch.send(codec.header(ch.version, of10.o10.OFPT_STATS_REQUEST, xid, req10))
            return
        req = struct.pack("!HH4x", mtype, 0) + body
        ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REQUEST, xid, req))

    def barrier(self, done: Callable[[], None]) -> None:
        """Call `done` (synchronously) when the switch has processed everything sent so far."""
        if not self.channel.is_open:
            done()
            return
        xid = self.channel.next_xid()
        self._records[xid] = XidRecord(None, done)
        btype = of10.o10.OFPT_BARRIER_REQUEST if self.is_of10 else ofp.OFPT_BARRIER_REQUEST
        self.channel.send(codec.header(self.channel.version, btype, xid))

    def rule(self, pf: PhysFlow, command: int) -> Callable[[int], bytes]:
        """A builder (xid -> bytes) of a FLOW_MOD for `pf`, in this switch's version."""
        if self.is_of10:
            acts = b"" if command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT) else None
            return lambda x: of10.flow_mod10(
                x, command, pf.priority, pf.match, pf.instructions if acts is None else b"",
                pf.cookie,
            )  # fmt: skip
        if command == ofp.OFPFC_DELETE_STRICT:
            return pf.delete_strict
        return lambda x: pf.flow_mod(x, command)

    def send_rule(self, pf: PhysFlow, on_error: ErrorCallback | None) -> None:
        """Install one of the hypervisor's rules in this switch's OpenFlow version."""
        if self.is_of10:
            self.send_flow(
                lambda x: of10.flow_mod10(x, of10.o10.OFPFC_ADD, pf.priority, pf.match,
                                          pf.instructions, pf.cookie), on_error,
            )  # fmt: skip
        else:
            self.send_flow(pf.flow_mod, on_error)

    def delete_rule(self, pf: PhysFlow) -> None:
        if self.is_of10:
            self.send_flow(
                lambda x: of10.flow_mod10(x, of10.o10.OFPFC_DELETE_STRICT, pf.priority, pf.match,
                                          b"", 0), None,
            )  # fmt: skip
        else:
            self.send_flow(pf.delete_strict, None)

    def probe(self, port: int, frame: bytes) -> None:
        """Send `frame` out of `port` (discovery)."""
        if self.is_of10:
            self.send(of10.packet_out10(0, port, frame))
        else:
            self.send(codec.packet_out(0, ofp.OFPP_CONTROLLER, codec.output(port), frame))

    def delete_cookie(self, cookie: int, mask: int) -> None:
        if self.is_of10:
            return  # no cookie masks in 1.0; its rules are deleted one by one
        body = codec.FLOW_MOD_BODY.pack(
            cookie, mask, ofp.OFPTT_ALL, ofp.OFPFC_DELETE, 0, 0, 0,
            ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0,
        )  # fmt: skip
        self.send(codec.header(codec.VERSION, ofp.OFPT_FLOW_MOD, 0, body + codec.encode_match([])))

    # --- replies -------------------------------------------------------------------------
    def _barrier_reply(self, xid: int) -> None:
        records = self._records
        if xid not in records:
            return
        # Everything sent before this barrier has been processed: its errors came already
        # (a statistics request still collecting reply parts keeps its record).
        for old in list(records):
            if old in self._multipart:
                continue
            rec = records.pop(old)
            if old == xid:
                if rec.on_barrier is not None:
                    rec.on_barrier()
                break

    def _error(self, xid: int, msg: bytes) -> None:
        etype, code = struct.unpack_from("!HH", msg, 8)
        rec = self._records.get(xid)
        if rec is not None and rec.on_error is not None:
            rec.on_error(etype, code, msg[12:])
        else:
            log.warning("%r error type=%d code=%d for xid %#x", self, etype, code, xid)
