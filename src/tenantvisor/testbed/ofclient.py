"""A minimal, synchronous OpenFlow peer for tests: a controller that tests drive by hand.

Real tenant controllers (ovs-testcontroller, Faucet) never send forbidden or malformed
messages; tests need a controller that does, and that reads exactly what comes back.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

_HDR = struct.Struct("!BBHI")
Message = tuple[int, int, bytes]  # (type, xid, whole message)


def forward_rule(in_port: int, out: int, cookie: int, priority: int = 100) -> Any:
    """An OpenFlow 1.3 FLOW_MOD: what enters on `in_port` leaves by `out`."""
    return parser.OFPFlowMod(
        ProtocolDesc(ofp.OFP_VERSION), cookie=cookie, priority=priority,
        match=parser.OFPMatch(in_port=in_port),
        instructions=[parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                   [parser.OFPActionOutput(out)])],
    )  # fmt: skip


class OFPeer:
    """One OpenFlow connection (we are the controller side)."""

    def __init__(self, sock: socket.socket, version: int = ofp.OFP_VERSION) -> None:
        self.sock = sock
        self.version = version
        self.buf = b""
        self.dpid = 0
        self.xid = 100
        self.eof = False

    def send(self, msg: bytes) -> None:
        self.sock.sendall(msg)

    def next_xid(self) -> int:
        self.xid += 1
        return self.xid

    def send_msg(self, msg: Any, xid: int) -> None:
        """An os-ken message, with this xid (each message object is sent once)."""
        msg.set_xid(xid)
        msg.serialize()
        self.send(bytes(msg.buf))

    def barrier(self, xid: int) -> None:
        """A BARRIER round trip (AssertionError when no reply comes)."""
        self.send(_HDR.pack(self.version, ofp.OFPT_BARRIER_REQUEST, _HDR.size, xid))
        m = self.recv_until(lambda m: m[0] == ofp.OFPT_BARRIER_REPLY and m[1] == xid)
        assert m is not None, "no BARRIER reply"

    def _fill(self, timeout: float) -> bool:
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return False
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def recv(self, timeout: float = 5.0) -> Message | None:
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 8:
                _, t, length, xid = _HDR.unpack_from(self.buf)
                if len(self.buf) >= length:
                    msg, self.buf = self.buf[:length], self.buf[length:]
                    if t == ofp.OFPT_ECHO_REQUEST:
                        self.send(_HDR.pack(msg[0], ofp.OFPT_ECHO_REPLY, length, xid) + msg[8:])
                        continue
                    return t, xid, msg
            if self.eof or not self._fill(deadline - time.monotonic()):
                return None

    def unread(self, msgs: list[Message]) -> None:
        """Put messages back in front of what is still unread, in their order."""
        self.buf = b"".join(m[2] for m in msgs) + self.buf

    def recv_until(self, pred: Callable[[Message], bool], timeout: float = 5.0) -> Message | None:
        """First message for which pred holds; others are dropped."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            m = self.recv(left)
            if m is None:
                return None
            if pred(m):
                return m
        return None

    def handshake(self) -> OFPeer:
        self.send(_HDR.pack(self.version, ofp.OFPT_HELLO, 8, 1))
        m = self.recv_until(lambda m: m[0] == ofp.OFPT_HELLO)
        if m is None:
            raise ConnectionError("no HELLO from the switch")
        self.send(_HDR.pack(self.version, ofp.OFPT_FEATURES_REQUEST, 8, 2))
        m = self.recv_until(lambda m: m[0] == ofp.OFPT_FEATURES_REPLY)
        if m is None:
            raise ConnectionError("no FEATURES_REPLY from the switch")
        (self.dpid,) = struct.unpack_from("!Q", m[2], 8)
        return self

    def closed(self, timeout: float = 5.0) -> bool:
        """True once the other side has closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.eof and time.monotonic() < deadline:
            self.recv(deadline - time.monotonic())
        return self.eof

    def close(self) -> None:
        self.sock.close()


class ControllerListener:
    """Listens where a vswitch (or pswitch) connects, as a controller would."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.peers: list[OFPeer] = []

    def accept(self, n: int = 1, timeout: float = 15.0) -> list[OFPeer]:
        out: list[OFPeer] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            r, _, _ = select.select([self.sock], [], [], max(deadline - time.monotonic(), 0))
            if not r:
                raise TimeoutError(f"{len(out)}/{n} switches connected")
            s, _ = self.sock.accept()
            # as real controllers do: without it, a small message sent right after another
            # waits for a delayed ACK (40 ms)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = OFPeer(s).handshake()
            out.append(peer)
            self.peers.append(peer)
        return out

    def close(self) -> None:
        for p in self.peers:
            p.close()
        self.sock.close()


class VSwitchControllers:
    """The controller of a tenant's vswitches (one connection each, by vdpid), listening on
    127.0.0.1: ``url`` is what the tenant network gets as its controller."""

    def __init__(self) -> None:
        self.listener = ControllerListener()
        self.peers: dict[int, OFPeer] = {}

    @property
    def url(self) -> str:
        return f"tcp:127.0.0.1:{self.listener.port}"

    def accept(self, vdpids: set[int], timeout: float = 20.0) -> None:
        """Wait until every vswitch in ``vdpids`` has connected and answered FEATURES."""
        deadline = time.monotonic() + timeout
        while not vdpids <= set(self.peers):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(f"{v:016x}" for v in vdpids - set(self.peers))
                raise TimeoutError(f"vswitches {missing} did not connect")
            for peer in self.listener.accept(1, timeout=left):
                self.peers[peer.dpid] = peer
