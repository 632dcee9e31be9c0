"""An OpenFlow connection over asyncio: framing, HELLO negotiation, ECHO, keepalive.

One `Channel` per TCP connection, in either direction (pswitches connect to us; vswitches
connect to tenant controllers or accept them).  Messages after the handshake go to the
owner as (version, type, xid, bytes) without further parsing: the owner decides what needs
decoding.  A malformed frame closes the connection; the owner is told why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec
from tenantvisor.quotas import TokenBucket

log = logging.getLogger(__name__)

OFPT_HELLO = 0
OFPT_ERROR = 1
OFPT_ECHO_REQUEST = 2
OFPT_ECHO_REPLY = 3
OFPET_HELLO_FAILED = 0
OFPHFC_INCOMPATIBLE = 0
_HDR = struct.Struct("!BBHI")
MAX_BUFFERED = 4 << 20  # bytes of unsent output before a peer counts as stuck
# A throttled channel (a tenant controller's) handles at most this many messages, and for at
# most TURN_SLICE seconds, per turn of the event loop, then lets every other ready connection
# have its turn: one tenant's 256 KiB read (~3,000 FLOW_MODs, ~60 ms of work) never holds the
# others up for more than about half a millisecond.
QUANTUM = 64
TURN_SLICE = 0.0005
# Waiting for tokens: at least this long (no wake-up per token at high rates), and for at
# most QUANTUM tokens (no long sleep to collect a whole quantum at low rates).
MIN_WAIT = 0.001
WAIT_SLICE = 0.005
# A throttled peer's socket receive buffer (Linux doubles it): what it sends beyond its rate
# waits in a small kernel queue, then in its own (its sends block), not in megabytes of
# autotuned buffer that would take the daemon minutes to work through at the peer's rate.
RCVBUF = 64 << 10


class _Batch:
    """Writes made while channels handle a read (one event-loop callback), per thread."""

    def __init__(self) -> None:
        self.depth = 0
        self.pending: list[Channel] = []


_batch = _Batch()


def _flush_pending() -> None:
    pending, _batch.pending = _batch.pending, []
    for ch in pending:
        ch._flush()


def send_now() -> None:
    """Inside a batch, send what was written so far now (what is written next is batched
    again): a rollout phase's FLOW_MODs go out before the Python work that follows them
    in the same callback, so the switch works on them meanwhile."""
    if _batch.pending:
        _flush_pending()


@contextlib.contextmanager
def coalesced() -> Iterator[None]:
    """Writes made inside leave at its end, one write per channel, as those made while a
    read is handled do: a rollout phase started outside any read (an API call) sends
    several FLOW_MODs and a BARRIER to each of several pswitches, and each would otherwise
    be a syscall of its own that wakes the switch for one message."""
    _batch.depth += 1
    try:
        yield
    finally:
        _batch.depth -= 1
        if not _batch.depth and _batch.pending:
            _flush_pending()


class ChannelOwner(Protocol):
    def channel_ready(self, ch: Channel) -> None: ...

    def channel_message(self, ch: Channel, msg_type: int, xid: int, msg: bytes) -> None: ...

    def channel_closed(self, ch: Channel, reason: str) -> None: ...


def hello(versions: frozenset[int], xid: int = 0) -> bytes:
    """HELLO with a version bitmap element (OF1.3+) so the peer can pick exactly."""
    bitmap = 0
    for v in versions:
        bitmap |= 1 << v
    elem = struct.pack("!HHI", 1, 8, bitmap)
    return _HDR.pack(max(versions), OFPT_HELLO, 16, xid) + elem


def _peer_versions(msg: bytes) -> set[int]:
    version = msg[0]
    off = 8
    while off + 4 <= len(msg):
        etype, elen = struct.unpack_from("!HH", msg, off)
        if elen < 4:
            break
        if etype == 1:
            words = msg[off + 4 : off + elen]
            found = set()
            for i in range(0, len(words) - 3, 4):
                (w,) = struct.unpack_from("!I", words, i)
                found |= {i * 8 + b for b in range(32) if w >> b & 1}
            return found
        off += (elen + 7) // 8 * 8
    return {v for v in range(1, version + 1)}


class Channel(asyncio.Protocol):
    def __init__(
        self,
        owner: ChannelOwner,
        name: str,
        versions: frozenset[int] = frozenset({codec.VERSION}),
        echo_interval: float = 5.0,
        close_when_stuck: bool = False,
    ) -> None:
        self.owner = owner
        self.name = name
        self.versions = versions
        self.version = 0  # negotiated; 0 until HELLO
        self.echo_interval = echo_interval
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self._buf = bytearray()
        self._out: list[bytes] = []
        self.outbound: Callable[[bytes], bytes | None] | None = None
        self.close_when_stuck = close_when_stuck
        self._stuck_logged = False
        self._flush_scheduled = False
        self._xid = 0x10000
        self._closed = False
        self._rx_since_tick = False
        self._idle_ticks = 0
        self._timer: asyncio.TimerHandle | None = None
        self.rx_msgs = 0
        self.tx_msgs = 0
        self.rx_bytes = 0
        self.tx_bytes = 0
        # Back-pressure on what the peer sends (set by the owner; None / 0: none): a token
        # bucket of messages, and QUANTUM messages per event-loop turn.  Reading stops
        # while either is spent, so TCP flow control slows the peer down and nothing is
        # lost (docs/design.md, "Limits and quotas").
        self.bucket: TokenBucket | None = None
        self.quantum = 0
        self._hold: asyncio.Handle | None = None  # the resume scheduled while reading waits
        self._waiting_since = 0.0  # when reading last stopped for tokens (0: it did not)
        self.throttled = 0  # times reading stopped for tokens
        self.throttled_s = 0.0  # seconds spent so
        self.delayed_msgs = 0  # messages handled after such a wait, before catching up
        self._behind = False
        # the owner's own hold (`block`): e.g. until the pswitches have done what this peer
        # asked of them so far
        self._blocked = False
        self._stalled_since = 0.0  # when reading stopped for it (0: it did not)
        self.blocked_s = 0.0  # seconds spent so

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        sock = transport.get_extra_info("socket")
        if self.bucket is not None and sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            except OSError as exc:  # not a socket that has one: nothing to bound
                log.debug("%s %s: SO_RCVBUF not set: %s", self.name, self.peer, exc)
        self._write(hello(self.versions))
        self._schedule_tick()

    def data_received(self, data: bytes) -> None:
        self._batched(self._receive, data)

    @staticmethod
    def _batched(fn: Callable[..., None], *args: object) -> None:
        _batch.depth += 1
        try:
            fn(*args)
        finally:
            _batch.depth -= 1
            if not _batch.depth and _batch.pending:
                _flush_pending()

    def _receive(self, data: bytes) -> None:
        self._rx_since_tick = True
        self._buf += data
        self.rx_bytes += len(data)
        if self._hold is None and not self._stalled_since:  # else it is handled in its turn
            self._drain()

    def _drain(self) -> None:
        """Handle the whole messages in the buffer: all of them, or, when throttled, as
        many as the quantum and the tokens allow; then reading stops until the next turn
        (quantum) or until there are tokens again (`_wait`)."""
        buf = self._buf
        off = 0
        n = len(buf)
        left = -1  # messages still allowed now (-1: not throttled, or not asked yet)
        used = 0
        turn_ends = 0.0
        try:
            while n - off >= 8:
                length = (buf[off + 2] << 8) | buf[off + 3]
                if length < 8:
                    raise codec.MalformedMessage(f"frame length {length} < 8")
                if n - off < length:
                    break
                if self.version and self._blocked:
                    self._stall()
                    break
                if self.version and (self.bucket is not None or self.quantum):
                    if left < 0:
                        left = self._allowance()
                        turn_ends = time.monotonic() + TURN_SLICE
                    elif time.monotonic() >= turn_ends:
                        left = 0  # this turn's time is up: the others' turn
                    if left == 0:
                        self._wait()
                        break
                    left -= 1
                    used += 1
                msg = bytes(buf[off : off + length])
                off += length
                self._dispatch(msg)
                if self._closed:
                    return
        except codec.MalformedMessage as exc:
            self.close(f"malformed message: {exc}")
            return
        finally:
            if used:
                self._rx_since_tick = True  # handled late is still heard from
                if self.bucket is not None:
                    self.bucket.consume(used)
                if self._behind:
                    self.delayed_msgs += used
        del buf[:off]
        if self._hold is None and not self._stalled_since:
            self._behind = False  # caught up with what was read

    def _allowance(self) -> int:
        allowed = self.quantum or (1 << 30)
        if self.bucket is not None:
            allowed = min(allowed, self.bucket.available(time.monotonic()))
        return allowed

    def _wait(self) -> None:
        """Stop reading: until the next turn of the event loop if the quantum is spent,
        until there are tokens again if the bucket is empty.  The peer's further messages
        stay in the socket: TCP's window closes and a well-behaved peer simply slows down."""
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        b = self.bucket
        if b is not None and b.available(now) == 0:
            want = max(1, min(self.quantum or 1, int(b.rate * WAIT_SLICE)))
            self._hold = loop.call_later(max(MIN_WAIT, b.wait(now, want)), self._resume)
            self._waiting_since = now
            self.throttled += 1
            self._behind = True
        else:
            self._hold = loop.call_soon(self._resume)
        t = self.transport
        if t is not None and not t.is_closing() and t.is_reading():
            t.pause_reading()

    def block(self) -> None:
        """Handle none of the peer's messages until `unblock`: the owner's back-pressure
        (reading stops before the next message, as for want of tokens)."""
        self._blocked = True

    def unblock(self) -> None:
        self._blocked = False
        if self._stalled_since and not self._closed:
            self.blocked_s += time.monotonic() - self._stalled_since
            self._stalled_since = 0.0
            if self._hold is None:
                self._hold = asyncio.get_running_loop().call_soon(self._resume)

    def _stall(self) -> None:
        self._stalled_since = time.monotonic()
        t = self.transport
        if t is not None and not t.is_closing() and t.is_reading():
            t.pause_reading()

    def _resume(self) -> None:
        self._hold = None
        if self._waiting_since:
            self.throttled_s += time.monotonic() - self._waiting_since
            self._waiting_since = 0.0
        if self._closed:
            return
        if self._stalled_since:
            return  # blocked meanwhile: `unblock` resumes
        self._batched(self._drain)
        t = self.transport
        if (self._hold is None and not self._stalled_since and t is not None
                and not t.is_closing() and not t.is_reading()):  # fmt: skip
            t.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish("connection lost" + (f": {exc}" if exc else ""))

    # --- sending -------------------------------------------------------------------------
    def next_xid(self) -> int:
        self._xid = (self._xid + 1) & 0xFFFFFFFF or 1
        return self._xid

    def send(self, msg: bytes) -> None:
        if self._closed or self.transport is None:
            return
        if self.outbound is not None:  # e.g. OpenFlow 1.3 -> 1.0 for an older controller
            converted = self.outbound(msg)
            if converted is None:
                return
            msg = converted
        self.tx_msgs += 1
        self._write(msg)

    def _write(self, msg: bytes) -> None:
        """While any channel is handling a read, writes are queued and each channel's queue
        leaves in one write when that read is done: a 64 KiB read from a controller holds
        ~680 FLOW_MODs, so one syscall instead of 680, without waiting a loop turn."""
        self.tx_bytes += len(msg)
        self._out.append(msg)
        if _batch.depth:
            if not self._flush_scheduled:
                self._flush_scheduled = True
                _batch.pending.append(self)
        else:
            self._flush()

    def _flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []  # taken first: close() flushes, and _stuck() closes
        t = self.transport
        if out and t is not None and not t.is_closing():
            t.write(b"".join(out))
            if t.get_write_buffer_size() > MAX_BUFFERED:
                self._stuck()

    def _stuck(self) -> None:
        """The peer stopped reading.  A tenant controller's channel is closed (it reconnects);
        a pswitch's is not (every tenant depends on it): it is logged once per episode."""
        if self.close_when_stuck:
            self.close(f"peer not reading: over {MAX_BUFFERED >> 20} MiB unsent")
        elif not self._stuck_logged:
            self._stuck_logged = True
            log.warning("%s %s: over %d MiB unsent", self.name, self.peer, MAX_BUFFERED >> 20)

    def send_error(self, xid: int, type_: int, code: int, data: bytes) -> None:
        """An OFPT_ERROR with OpenFlow 1.3 type and code (an outbound converter maps them)."""
        version = codec.VERSION if self.outbound is not None else self.version or codec.VERSION
        self.send(codec.error_msg(version, xid, type_, code, data))

    @property
    def is_open(self) -> bool:
        return not self._closed and self.transport is not None

    def close(self, reason: str) -> None:
        if self._closed:
            return
        if self.transport is not None:
            self._flush()  # an ERROR sent just before closing must still leave
            self.transport.close()
        self._finish(reason)

    # --- internals -----------------------------------------------------------------------
    def _finish(self, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        self.owner.channel_closed(self, reason)

    def _dispatch(self, msg: bytes) -> None:
        version, msg_type = msg[0], msg[1]
        xid = (msg[4] << 24) | (msg[5] << 16) | (msg[6] << 8) | msg[7]
        self.rx_msgs += 1
        if not self.version:
            if msg_type != OFPT_HELLO:
                raise codec.MalformedMessage(f"expected HELLO, got type {msg_type}")
            common = self.versions & _peer_versions(msg)
            if not common:
                self._write(
                    codec.error_msg(
                        min(version, max(self.versions)),
                        xid,
                        OFPET_HELLO_FAILED,
                        OFPHFC_INCOMPATIBLE,
                        b"tenantvisor speaks OpenFlow 1.3",
                    )
                )
                self.close(f"no common OpenFlow version (peer offers version {version})")
                return
            self.version = max(common)
            self.owner.channel_ready(self)
            return
        if version != self.version:
            self.send_error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_VERSION, msg)
            return
        if msg_type == OFPT_ECHO_REQUEST:
            self.send(_HDR.pack(version, OFPT_ECHO_REPLY, len(msg), xid) + msg[8:])
            return
        if msg_type == OFPT_ECHO_REPLY:
            return
        try:
            self.owner.channel_message(self, msg_type, xid, msg)
        except codec.MalformedMessage:
            raise
        except Exception:
            # A bug handling one message must not take the whole connection (a pswitch
            # carries every tenant's traffic) down with it.
            log.exception("%s %s: failed to handle message type %d", self.name, self.peer, msg_type)

    def _schedule_tick(self) -> None:
        if self.echo_interval > 0:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.echo_interval, self._tick)

    def _tick(self) -> None:
        """Probe an idle peer with ECHO; give up after three silent intervals."""
        if self._closed:
            return
        if self._rx_since_tick or self._hold is not None or self._stalled_since:
            self._idle_ticks = 0  # (a peer we do not read is not silent: we are)
        else:
            self._idle_ticks += 1
            if self._idle_ticks >= 3:
                self.close("echo timeout: peer silent for 3 intervals")
                return
            if self.version:
                self.send(_HDR.pack(self.version, OFPT_ECHO_REQUEST, 8, self.next_xid()))
        self._rx_since_tick = False
        self._schedule_tick()
