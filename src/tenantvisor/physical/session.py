"""One session per pswitch: the channel, the switch's identity and ports, xids and barriers.

After version negotiation the session picks the switch's driver (`physical/driver.py`:
OVS over OpenFlow 1.3, or OpenFlow 1.0) and leaves every encoding and decoding to it.  It
learns the dpid and ports, is reconciled by the program stage when it starts (never wiped:
what is right on the switch stays), sends what the hypervisor asks, keeps the xid of every
message sent for a tenant so an error can be mapped back, and runs barriers with synchronous
callbacks so a tenant's BARRIER reply is ordered exactly after the errors that precede it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, of10
from tenantvisor.openflow.channel import Channel
from tenantvisor.physical.driver import Features, Kind, StatsReply, SwitchDriver
from tenantvisor.physical.driver_of10 import Of10Driver
from tenantvisor.physical.driver_ovs13 import Ovs13Driver
from tenantvisor.physical.topology import PPort
from tenantvisor.translate.flow import PhysFlow

log = logging.getLogger(__name__)
_T = TypeVar("_T")
MAX_RECORDS = 65536
ErrorCallback = Callable[[int, int, bytes], None]  # (error type, code, data)
DRIVERS: dict[int, type[SwitchDriver]] = {d.version: d for d in (Of10Driver, Ovs13Driver)}


def driver_for(version: int) -> SwitchDriver:
    """A fresh driver for a switch that speaks OpenFlow `version` (a negotiated one)."""
    return DRIVERS[version]()


@dataclass(slots=True)
class XidRecord:
    """Who to tell if the pswitch refuses the message sent with this xid."""

    on_error: ErrorCallback | None
    on_barrier: Callable[[], None] | None = None


class SessionEvents(Protocol):
    def switch_ready(self, s: PSwitchSession) -> None: ...

    def switch_gone(self, s: PSwitchSession) -> None: ...

    def port_status(self, s: PSwitchSession, port: PPort, reason: int) -> None: ...

    def packet_in(self, s: PSwitchSession, pi: codec.PacketIn) -> None: ...

    def flow_removed(self, s: PSwitchSession, fr: codec.FlowRemoved) -> None: ...

    def demoted(self, s: PSwitchSession) -> None:
        """The switch refused a write because another controller made itself MASTER: this
        one is a SLAVE there now (several instances)."""


class PSwitchSession:
    def __init__(self, events: SessionEvents) -> None:
        self.events = events
        self.channel = Channel(self, "pswitch", versions=frozenset(DRIVERS))
        # replaced by the negotiated version's driver before anything is sent or read
        self.driver: SwitchDriver = Ovs13Driver()
        self.dpid: int | None = None
        self.ports: dict[int, PPort] = {}
        self.n_tables = 0  # as the switch reports them (the driver knows how many we use)
        self.ready = False
        # the program stage has read the switch and sent the difference: until then, rule
        # and group changes are not sent (the sync reads them from the desired state)
        self.synced = False
        self._records: dict[int, XidRecord] = {}
        self._port_parts: list[PPort] = []
        # multipart requests made for tenants: xid -> (reply bodies so far, done callback)
        self._multipart: dict[int, tuple[list[bytes], Callable[[list[bytes] | None], None]]] = {}
        self.flow_mods_sent = 0
        # OpenFlow role we asked for (several instances: one MASTER per pswitch, the others
        # EQUAL, which every switch starts a controller as)
        self.role = ofp.OFPCR_ROLE_EQUAL
        self._demoted = False

    def __repr__(self) -> str:
        return (
            f"pswitch {self.dpid:016x}" if self.dpid is not None else f"pswitch {self.channel.peer}"
        )

    # --- ChannelOwner --------------------------------------------------------------------
    def channel_ready(self, ch: Channel) -> None:
        self.driver = driver_for(ch.version)
        ch.send(self.driver.features_request(ch.next_xid()))

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
        """An OpenFlow 1.0 pswitch (convenience: ask `driver` what it can do instead)."""
        return self.driver.version == of10.V10

    def channel_message(self, ch: Channel, msg_type: int, xid: int, msg: bytes) -> None:
        d = self.driver
        kind = d.kind(msg_type)
        if kind is Kind.PACKET_IN:
            if (pi := self._read(d.packet_in, msg)) is not None:
                self.events.packet_in(self, pi)
        elif kind is Kind.BARRIER_REPLY:
            self._barrier_reply(xid)
        elif kind is Kind.ERROR:
            if (err := self._read(d.error, msg)) is not None:
                self._error(xid, *err)
        elif kind is Kind.STATS_REPLY:
            if (reply := self._read(d.stats_reply, msg)) is not None:
                self._stats_reply(xid, reply)
        elif kind is Kind.FLOW_REMOVED:
            if (fr := self._read(d.flow_removed, msg)) is not None:
                self.events.flow_removed(self, fr)
        elif kind is Kind.PORT_STATUS:
            if (ps := self._read(d.port_status, msg)) is not None:
                self._port_status(*ps)
        elif kind is Kind.FEATURES_REPLY:
            self._features(ch, d.features(msg))  # a malformed one closes the channel

    def _read(self, parse: Callable[[bytes], _T], msg: bytes) -> _T | None:
        """`parse(msg)`, or None (logged) if the switch sent something malformed: one bad
        message from a switch every tenant depends on is not worth its channel."""
        try:
            return parse(msg)
        except (codec.MalformedMessage, codec.OFError) as exc:
            log.warning("%r: bad message of type %d: %s", self, msg[1], exc)
            return None

    def _port_status(self, reason: int, port: PPort) -> None:
        if reason == ofp.OFPPR_DELETE:
            self.ports.pop(port.port_no, None)
        else:
            self.ports[port.port_no] = port
        if self.ready:
            self.events.port_status(self, port, reason)

    def _features(self, ch: Channel, f: Features) -> None:
        self.dpid, self.n_tables = f.dpid, f.n_tables
        ch.send(self.driver.set_config(ch.next_xid()))
        asked = self.driver.async_config(ch.next_xid())
        if asked is not None:
            ch.send(asked)
        if f.ports is None:  # listed in a port description reply: see _stats_reply
            req = self.driver.port_desc_request(ch.next_xid())
            if req is not None:
                ch.send(req)
            return
        self.ports = {p.port_no: p for p in f.ports}
        self._now_ready(ch)

    def _stats_reply(self, xid: int, reply: StatsReply) -> None:
        pending = self._multipart.get(xid)
        if pending is not None:
            pending[0].append(reply.body)
            if not reply.more:
                del self._multipart[xid]
                self._records.pop(xid, None)
                pending[1](pending[0])
        elif reply.mtype == ofp.OFPMP_PORT_DESC:
            self._port_parts += self.driver.port_desc(reply.body)
            if not reply.more:
                parts, self._port_parts = self._port_parts, []
                self.ports = {p.port_no: p for p in parts if p.port_no < ofp.OFPP_MAX}
                self._now_ready(self.channel)

    def _now_ready(self, ch: Channel) -> None:
        if self.ready:
            return
        self.ready = True
        log.info("%r connected from %s: %d ports, %s",
                 self, ch.peer, len(self.ports), self.driver.describe())  # fmt: skip
        self.events.switch_ready(self)

    # --- sending -------------------------------------------------------------------------
    def send(self, msg: bytes, on_error: ErrorCallback | None = None) -> int:
        """Send with a fresh xid; remember who to tell about an error.  Returns the xid."""
        ch = self.channel
        xid = ch.next_xid()
        if on_error is not None:
            self._remember(xid, on_error)
        ch.send(codec.set_xid(msg, xid))
        return xid

    def _remember(self, xid: int, on_error: ErrorCallback) -> None:
        """Keep who to tell if the switch refuses message `xid`.  A barrier reply forgets
        what came before it; a tenant that never sends a BARRIER must not grow the records
        without limit, so beyond MAX_RECORDS the oldest quarter is forgotten (an error for
        one of those is then only logged), except what still waits for a reply: barriers
        and statistics requests, whose callers would otherwise never hear back."""
        records = self._records
        records[xid] = XidRecord(on_error)
        if len(records) > MAX_RECORDS:
            for old in list(records)[: MAX_RECORDS // 4]:
                if records[old].on_barrier is None and old not in self._multipart:
                    del records[old]

    def send_flow(
        self,
        build: Callable[[int], bytes],
        on_error: Callable[[int, int, bytes], None] | None = None,
    ) -> None:
        ch = self.channel
        xid = ch.next_xid()
        if on_error is not None:
            self._remember(xid, on_error)
        self.flow_mods_sent += 1
        ch.send(build(xid))

    def multipart(
        self, mtype: int, body: bytes, done: Callable[[list[bytes] | None], None]
    ) -> None:
        """Ask the switch for statistics (OpenFlow 1.3's type and request body); `done` gets
        the bodies of every reply part in 1.3's shape, or None when the switch has no such
        statistics, refused or went away."""
        ch = self.channel
        if not ch.is_open or not self.ready:
            done(None)
            return
        xid = ch.next_xid()
        req = self.driver.stats_request(xid, mtype, body)
        if req is None:
            done(None)
            return
        self._multipart[xid] = ([], done)

        def refused(etype: int, code: int, data: bytes) -> None:
            if self._multipart.pop(xid, None) is not None:
                log.warning("%r refused statistics request %d: type=%d code=%d", self, mtype,
                            etype, code)  # fmt: skip
                done(None)

        self._records[xid] = XidRecord(refused)
        ch.send(req)

    def barrier(self, done: Callable[[], None]) -> None:
        """Call `done` (synchronously) when the switch has processed everything sent so far."""
        if not self.channel.is_open:
            done()
            return
        xid = self.channel.next_xid()
        self._records[xid] = XidRecord(None, done)
        self.channel.send(self.driver.barrier_request(xid))

    @property
    def demoted(self) -> bool:
        """A write was refused since the last role request: another controller is MASTER."""
        return self._demoted

    def request_role(self, role: int, generation: int = 0) -> bool:
        """Ask for an OpenFlow role (False: the switch speaks none, or is not connected)."""
        if not self.channel.is_open:
            return False
        xid = self.channel.next_xid()
        msg = self.driver.role_request(xid, role, generation)
        if msg is None:
            return False

        def refused(etype: int, code: int, data: bytes) -> None:
            log.warning("%r refused role %d (generation %d): type=%d code=%d",
                        self, role, generation, etype, code)  # fmt: skip

        self._records[xid] = XidRecord(refused)
        self.role = role
        self._demoted = False
        self.channel.send(msg)
        return True

    def rule(self, pf: PhysFlow, command: int) -> Callable[[int], bytes]:
        """A builder (xid -> bytes) of a FLOW_MOD for `pf`, as this switch takes it."""
        return self.driver.rule(pf, command)

    def send_rule(self, pf: PhysFlow, on_error: ErrorCallback | None) -> None:
        """Install one of the hypervisor's rules."""
        self.send_flow(self.driver.rule(pf, ofp.OFPFC_ADD), on_error)

    def delete_rule(self, pf: PhysFlow) -> None:
        self.send_flow(self.driver.rule(pf, ofp.OFPFC_DELETE_STRICT), None)

    def probe(self, port: int, frame: bytes) -> None:
        """Send `frame` out of `port` (discovery)."""
        self.send(self.driver.packet_out(0, port, frame))

    def delete_cookie(self, cookie: int, mask: int) -> None:
        """Delete every rule whose cookie matches, if the switch can in one message (where
        it cannot, rules are deleted one by one)."""
        msg = self.driver.delete_cookie(0, cookie, mask)
        if msg is not None:
            self.send(msg)

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

    def _error(self, xid: int, etype: int, code: int, data: bytes) -> None:
        if etype == ofp.OFPET_BAD_REQUEST and code == ofp.OFPBRC_IS_SLAVE:
            if not self._demoted:  # once per demotion: the writes after it fail alike
                self._demoted = True
                log.warning("%r: another controller is MASTER here: writes refused", self)
                self.events.demoted(self)
            return
        rec = self._records.get(xid)
        if rec is not None and rec.on_error is not None:
            rec.on_error(etype, code, data)
        else:
            log.warning("%r error type=%d code=%d for xid %#x", self, etype, code, xid)
