"""A proactive tenant controller that installs its rules once and then only listens.

Why a controller of our own: the failover and reconnect benchmarks ask "did the tenant see
anything?".  A learning switch (ovs-testcontroller) reacts to what it sees and re-sends rules,
so its own traffic would blur the answer.  This one installs fixed forwarding rules with
``in_port`` matches (flagged ``SEND_FLOW_REM``, so a rule the hypervisor dropped would be
reported) and has no table-miss rule, so it gets no PACKET_IN unless something went wrong;
afterwards a reader thread per vswitch answers ECHOs and records every message the vswitch
sends: PORT_STATUS, FLOW_REMOVED, PACKET_IN, ERROR, a closed connection, anything.
"""

from __future__ import annotations

import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.openflow import codec
from tenantvisor.testbed.ofclient import OFPeer, VSwitchControllers

_DP = ProtocolDesc(ofp.OFP_VERSION)

TYPE_NAMES = {
    ofp.OFPT_PORT_STATUS: "PORT_STATUS",
    ofp.OFPT_FLOW_REMOVED: "FLOW_REMOVED",
    ofp.OFPT_PACKET_IN: "PACKET_IN",
    ofp.OFPT_ERROR: "ERROR",
    ofp.OFPT_BARRIER_REPLY: "BARRIER_REPLY",
}
CLOSED = -1
"""Pseudo message type recorded when a vswitch closes its connection."""


@dataclass(frozen=True)
class Rule:
    """``in_port`` (and optionally ``eth_dst``) -> output ``out_port``, in virtual terms."""

    in_port: int
    out_port: int
    eth_dst: str | None = None


@dataclass(frozen=True)
class Event:
    """One message a vswitch sent after the rules were installed."""

    t: float  # time.time() when it was read
    vdpid: int
    type: int
    port_no: int | None = None  # PORT_STATUS: the vport
    reason: int | None = None  # PORT_STATUS / FLOW_REMOVED / PACKET_IN reason
    down: bool | None = None  # PORT_STATUS: LINK_DOWN state or PORT_DOWN config

    @property
    def name(self) -> str:
        if self.type == CLOSED:
            return "CLOSED"
        return TYPE_NAMES.get(self.type, f"type{self.type}")

    def __str__(self) -> str:
        what = f"{self.name} from {self.vdpid:016x}"
        if self.type == ofp.OFPT_PORT_STATUS:
            what += f" vport {self.port_no} {'down' if self.down else 'up'}"
        return what


def _event(vdpid: int, msg: tuple[int, int, bytes]) -> Event:
    t, _, data = msg
    now = time.time()
    if t == ofp.OFPT_PORT_STATUS:
        ps = p.OFPPortStatus.parser(_DP, ofp.OFP_VERSION, t, len(data), 0, data)
        down = bool(ps.desc.state & ofp.OFPPS_LINK_DOWN or ps.desc.config & ofp.OFPPC_PORT_DOWN)
        return Event(now, vdpid, t, ps.desc.port_no, ps.reason, down)
    if t in (ofp.OFPT_FLOW_REMOVED, ofp.OFPT_PACKET_IN) and len(data) > 16:
        # FLOW_REMOVED: reason at offset 18 (after cookie 8 + priority 2); PACKET_IN at 14.
        off = 18 if t == ofp.OFPT_FLOW_REMOVED else 14
        return Event(now, vdpid, t, reason=data[off] if len(data) > off else None)
    return Event(now, vdpid, t)


def _flow_mod(xid: int, rule: Rule, priority: int, cookie: int) -> bytes:
    fields: dict[str, object] = {"in_port": rule.in_port}
    if rule.eth_dst is not None:
        fields["eth_dst"] = rule.eth_dst
    actions = [p.OFPActionOutput(rule.out_port)]
    msg = p.OFPFlowMod(
        _DP,
        cookie=cookie,
        priority=priority,
        flags=ofp.OFPFF_SEND_FLOW_REM,
        match=p.OFPMatch(**fields),
        instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions)],
    )
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


class ProactiveController(VSwitchControllers):
    """Installs its rules once, then records what the vswitches send (`start`)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def install(self, vdpid: int, rules: list[Rule], priority: int = 100) -> None:
        """Send the rules and a BARRIER; raise if the vswitch refuses one."""
        peer = self.peers[vdpid]
        for i, rule in enumerate(rules):
            peer.send(_flow_mod(peer.next_xid(), rule, priority, cookie=0x7E57_0000 + i))
        xid = peer.next_xid()
        peer.send(codec.header(ofp.OFP_VERSION, ofp.OFPT_BARRIER_REQUEST, xid))
        while True:
            m = peer.recv(10.0)
            if m is None:
                raise RuntimeError(f"vswitch {vdpid:016x}: no BARRIER reply to its rules")
            if m[0] == ofp.OFPT_ERROR:
                etype, code = struct.unpack_from("!HH", m[2], 8)
                raise RuntimeError(f"vswitch {vdpid:016x} refused a rule: type {etype} code {code}")
            if m[0] == ofp.OFPT_BARRIER_REPLY and m[1] == xid:
                return

    def start(self) -> None:
        """Start recording: one reader thread per vswitch, until :meth:`close`."""
        for vdpid, peer in self.peers.items():
            th = threading.Thread(target=self._read, args=(vdpid, peer), daemon=True)
            th.start()
            self._threads.append(th)

    def _read(self, vdpid: int, peer: OFPeer) -> None:
        while not self._stop.is_set():
            m = peer.recv(0.2)  # answers ECHO_REQUESTs itself
            if m is not None:
                with self._lock:
                    self.events.append(_event(vdpid, m))
            elif peer.eof:
                with self._lock:
                    self.events.append(Event(time.time(), vdpid, CLOSED))
                return

    def since(self, t: float, until: float | None = None) -> list[Event]:
        """Events recorded at or after ``t`` (``time.time()``), before ``until`` if given."""
        with self._lock:
            return [e for e in self.events if e.t >= t and (until is None or e.t < until)]

    def wait_for(
        self, pred: Callable[[list[Event]], bool], since: float, timeout: float
    ) -> list[Event]:
        """Poll until ``pred(events since)`` is true; returns those events either way."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.since(since)
            if pred(got) or time.monotonic() > deadline:
                return got
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        for th in self._threads:
            th.join(2.0)
        self.listener.close()


__all__ = ["CLOSED", "Event", "ProactiveController", "Rule"]
