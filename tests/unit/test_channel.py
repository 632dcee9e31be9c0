"""The OpenFlow channel over a real socket pair: negotiation and protection from stuck peers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from tenantvisor.openflow.channel import MAX_BUFFERED, Channel, hello


class Recorder:
    def __init__(self) -> None:
        self.ready = False
        self.closed: str | None = None
        self.messages: list[tuple[int, int]] = []

    def channel_ready(self, ch: Channel) -> None:
        self.ready = True

    def channel_message(self, ch: Channel, msg_type: int, xid: int, msg: bytes) -> None:
        self.messages.append((msg_type, xid))

    def channel_closed(self, ch: Channel, reason: str) -> None:
        self.closed = reason


async def _connected(close_when_stuck: bool) -> tuple[Channel, Recorder, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    rec = Recorder()
    ch = Channel(rec, "test", close_when_stuck=close_when_stuck, echo_interval=0)
    await asyncio.get_running_loop().create_connection(lambda: ch, sock=ours)
    theirs.send(hello(frozenset({4})))
    for _ in range(100):
        await asyncio.sleep(0.01)
        if rec.ready:
            break
    assert rec.ready
    return ch, rec, theirs


def _flood(close_when_stuck: bool) -> tuple[Recorder, Channel]:
    async def run() -> tuple[Recorder, Channel]:
        ch, rec, theirs = await _connected(close_when_stuck)
        big = struct.pack("!BBHI", 4, 10, 65535, 0) + bytes(65535 - 8)  # PACKET_IN-sized
        for _ in range(2 * MAX_BUFFERED // 65535 + 50):  # the peer never reads
            ch.send(big)
            await asyncio.sleep(0)
            if rec.closed:
                break
        theirs.close()
        return rec, ch

    return asyncio.run(run())


def test_a_tenant_controller_that_stops_reading_is_disconnected() -> None:
    rec, _ = _flood(close_when_stuck=True)
    assert rec.closed is not None and "not reading" in rec.closed


def test_a_pswitch_that_stops_reading_is_kept_and_logged() -> None:
    rec, ch = _flood(close_when_stuck=False)
    assert rec.closed is None or "not reading" not in rec.closed
    assert ch._stuck_logged


def test_an_openflow10_only_peer_gets_hello_failed_and_is_closed() -> None:
    async def run() -> tuple[Recorder, bytes]:
        ours, theirs = socket.socketpair()
        rec = Recorder()
        ch = Channel(rec, "test", echo_interval=0)
        await asyncio.get_running_loop().create_connection(lambda: ch, sock=ours)
        theirs.send(struct.pack("!BBHI", 1, 0, 8, 5))
        await asyncio.sleep(0.05)
        theirs.setblocking(False)
        data = theirs.recv(4096)
        theirs.close()
        return rec, data

    rec, data = asyncio.run(run())
    assert not rec.ready and rec.closed is not None
    err = data[16:]  # after our own HELLO (16 bytes with its version bitmap)
    assert err[1] == 1 and struct.unpack_from("!HH", err, 8) == (0, 0)  # HELLO_FAILED


def test_a_message_of_another_version_than_negotiated_gets_bad_version() -> None:
    async def run() -> tuple[Recorder, bytes]:
        _, rec, theirs = await _connected(close_when_stuck=True)
        theirs.send(struct.pack("!BBHI", 1, 14, 8, 77))  # a 1.0 FLOW_MOD on a 1.3 channel
        await asyncio.sleep(0.05)
        data = theirs.recv(4096)
        theirs.close()
        return rec, data

    rec, data = asyncio.run(run())
    err = data[-(8 + 4 + 8) :]  # the last message: ERROR with the 8 bytes it refers to
    assert err[1] == 1 and struct.unpack_from("!IHH", err, 4) == (
        77,
        1,
        0,
    )  # BAD_REQUEST/BAD_VERSION
    assert rec.messages == []  # the owner never saw it


def test_writes_in_a_batch_leave_together_or_when_sent_now() -> None:
    """coalesced(): what a callback writes leaves in one write at its end; send_now()
    sends what is written so far at once (a rollout phase's FLOW_MODs, before the Python
    work that follows them), and what is written after it is batched again."""
    from tenantvisor.openflow.channel import coalesced, send_now

    async def run() -> list[bytes]:
        ch, _, theirs = await _connected(False)
        await asyncio.sleep(0.01)
        with contextlib.suppress(BlockingIOError):
            theirs.recv(65536)  # anything from the handshake

        def got() -> bytes:
            try:
                return theirs.recv(65536)
            except BlockingIOError:
                return b""

        echo = struct.pack("!BBHI", 4, 2, 8, 7)  # ECHO_REQUEST
        seen = []
        with coalesced():
            ch.send(echo)
            ch.send(echo)
            seen.append(got())  # nothing yet: batched
            send_now()
            await asyncio.sleep(0.01)
            seen.append(got())
            ch.send(echo)
            await asyncio.sleep(0.01)
            seen.append(got())  # batched again
        await asyncio.sleep(0.01)
        seen.append(got())
        theirs.close()
        return seen

    assert asyncio.run(run()) == [b"", 2 * struct.pack("!BBHI", 4, 2, 8, 7), b"",
                                  struct.pack("!BBHI", 4, 2, 8, 7)]  # fmt: skip
