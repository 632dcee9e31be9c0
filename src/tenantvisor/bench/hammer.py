"""A tenant controller that hammers its vswitch's control channel ("A hammers").

For the noisy-neighbour bench and tests: one OpenFlow 1.3 connection to a vswitch sends
messages of one kind as fast as it can, or at a given rate, for a given time, and reads
(and counts) every reply, as a real controller must (one that stops reading is closed by
the vswitch: openflow/channel.py).  Kinds:

* ``echo``: ECHO_REQUEST, answered by the channel itself: the cheapest message there is;
* ``flow_mod``: ADD then DELETE_STRICT of 64 drop rules in turn (each one is translated
  and sent to the pswitch; the table never grows);
* ``flow_stats``: FLOW statistics of every table (each one a multipart request to the
  pswitch and its reply mapped back);
* ``port_desc``: PORT_DESC, answered by the vswitch from its view.

    python -m tenantvisor.bench.hammer tcp:127.0.0.1:6634 --seconds 5 --kind echo --json

`target`: ``tcp:HOST:PORT`` (a vswitch's passive listener, `ptcp:PORT`), ``ptcp:PORT[:HOST]``
(listen; the first vswitch that connects is hammered: a network whose controller is this),
or an already connected socket.  The result says what was sent and answered, and what the
vswitch's back-pressure did to the sender: how long its sends were blocked by TCP.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm

KINDS = ("echo", "flow_mod", "flow_stats", "port_desc")
_HDR = struct.Struct("!BBHI")
_V = codec.VERSION
_BATCH_S = 0.005  # at a given rate, messages are sent in batches this often
_RULES = 64


@dataclass
class HammerResult:
    kind: str
    seconds: float  # from the first message sent to the last reply read (or the end)
    sent: int  # messages sent
    replies: int  # messages the vswitch sent back (ECHO_REPLY, BARRIER_REPLY, ...)
    errors: int  # of which OFPT_ERROR
    blocked_s: float  # time the sender waited for its socket to take more (back-pressure)
    closed: bool  # the vswitch closed the connection
    sent_per_s: float
    replies_per_s: float


def _messages(kind: str, n: int, start: int) -> bytes:
    """`n` messages of `kind` (xids from `start`), serialized back to back."""
    out = []
    for i in range(n):
        xid = (start + i) & 0xFFFFFFFF or 1
        if kind == "echo":
            out.append(_HDR.pack(_V, ofp.OFPT_ECHO_REQUEST, 8, xid))
        elif kind == "port_desc":
            body = struct.pack("!HH4x", ofp.OFPMP_PORT_DESC, 0)
            out.append(codec.header(_V, ofp.OFPT_MULTIPART_REQUEST, xid, body))
        elif kind == "flow_stats":
            body = struct.pack("!HH4x", ofp.OFPMP_FLOW, 0) + struct.pack(
                "!B3xII4xQQ", ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0
            )
            out.append(
                codec.header(_V, ofp.OFPT_MULTIPART_REQUEST, xid, body + codec.encode_match([]))
            )
        elif kind == "flow_mod":
            k = start + i
            mac = (0x02 << 40) | (0xBEEF << 16) | (k // 2 % _RULES)
            cmd = ofp.OFPFC_ADD if k % 2 == 0 else ofp.OFPFC_DELETE_STRICT
            match = [codec.Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, oxm.ETH_DST, mac.to_bytes(6, "big"))]
            fm = codec.FlowMod(0, 0, 0, cmd, 0, 0, 100, ofp.OFP_NO_BUFFER, ofp.OFPP_ANY,
                               ofp.OFPG_ANY, 0, match, b"")  # fmt: skip
            out.append(fm.encode(xid))
        else:
            raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    return b"".join(out)


def _connect(target: str | socket.socket, timeout: float) -> socket.socket:
    if isinstance(target, socket.socket):
        return target
    kind, _, rest = target.partition(":")
    if kind == "tcp":
        host, _, port = rest.rpartition(":")
        return socket.create_connection((host, int(port)), timeout=timeout)
    if kind == "ptcp":
        port, _, host = rest.partition(":")
        with socket.create_server((host or "127.0.0.1", int(port))) as srv:
            srv.settimeout(timeout)
            sock, _ = srv.accept()
            return sock
    raise ValueError(f"target {target!r}: tcp:HOST:PORT, ptcp:PORT[:HOST] or a socket")


class _Reader:
    """Counts the frames the vswitch sends (their types), answering its ECHOs."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.replies = 0
        self.errors = 0
        self.hello = False
        self.eof = False
        self.out = bytearray()  # our ECHO_REPLYs, sent with the next batch

    def read(self) -> None:
        try:
            data = self.sock.recv(1 << 18)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return
        buf = self.buf
        buf += data
        off, n = 0, len(buf)
        while n - off >= 8:
            length = (buf[off + 2] << 8) | buf[off + 3]
            if length < 8 or n - off < length:
                break
            t = buf[off + 1]
            if t == ofp.OFPT_HELLO:
                self.hello = True
            elif t == ofp.OFPT_ECHO_REQUEST:
                xid = struct.unpack_from("!I", buf, off + 4)[0]
                self.out += _HDR.pack(buf[off], ofp.OFPT_ECHO_REPLY, 8, xid)
            else:
                self.replies += 1
                if t == ofp.OFPT_ERROR:
                    self.errors += 1
            off += length
        del buf[:off]


def hammer(
    target: str | socket.socket,
    seconds: float,
    rate: float | None = None,
    kind: str = "echo",
    drain: float = 5.0,
) -> HammerResult:
    """Send messages of `kind` to a vswitch for `seconds`, at `rate` per second (None: as
    fast as the connection takes them), reading every reply; then wait up to `drain`
    seconds for the replies still due.  Blocking: run it in its own process (or thread) so
    it competes with the daemon as a separate controller would."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}: one of {', '.join(KINDS)}")
    sock = _connect(target, timeout=30.0)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # a small send buffer: what counts as sent has (nearly) reached the vswitch, and the
    # time a send waits is the vswitch's back-pressure, not our own kernel's queue
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 10)
    sock.setblocking(False)
    reader = _Reader(sock)
    _send_all(sock, _HDR.pack(_V, ofp.OFPT_HELLO, 8, 1), reader)
    deadline = time.monotonic() + 10
    while not reader.hello and not reader.eof and time.monotonic() < deadline:
        select.select([sock], [], [], 0.1)
        reader.read()
    per_batch = 512 if rate is None else max(1, int(rate * _BATCH_S))
    sent = 0
    blocked = 0.0
    pending = b""
    t0 = time.monotonic()
    end = t0 + seconds
    next_at = t0
    while not reader.eof:  # a batch begun is sent whole (the count stays exact)
        now = time.monotonic()
        if now >= end and not pending:
            break
        if not pending and now >= next_at:
            pending = bytes(reader.out) + _messages(kind, per_batch, sent + 2)
            reader.out.clear()
            sent += per_batch
            if rate is not None:
                next_at += per_batch / rate
        wait = 0.05 if rate is None or pending else max(0.0, min(next_at, end) - now)
        r, w, _ = select.select([sock], [sock] if pending else [], [], wait)
        if r:
            reader.read()
        if pending:
            if w:
                try:
                    n = sock.send(pending)
                except BlockingIOError:
                    n = 0
                except OSError:
                    reader.eof = True
                    break
                pending = pending[n:]
            else:
                blocked += time.monotonic() - now  # the socket took nothing: back-pressure
    expect = sent if kind != "flow_mod" else 0  # FLOW_MODs are answered only by errors
    stop = time.monotonic() + drain
    while not reader.eof and reader.replies < expect and time.monotonic() < stop:
        select.select([sock], [], [], 0.05)
        reader.read()
        if reader.out:
            _send_all(sock, bytes(reader.out), reader)
            reader.out.clear()
    elapsed = time.monotonic() - t0
    closed = reader.eof
    sock.close()
    return HammerResult(kind, elapsed, sent, reader.replies, reader.errors, blocked, closed,
                        sent / elapsed, reader.replies / elapsed)  # fmt: skip


def _send_all(sock: socket.socket, data: bytes, reader: _Reader) -> None:
    """Send all of `data` on the non-blocking socket, reading meanwhile (never deadlock
    with a vswitch that waits for us to read)."""
    while data and not reader.eof:
        r, w, _ = select.select([sock], [sock], [], 1.0)
        if r:
            reader.read()
        if w:
            try:
                data = data[sock.send(data) :]
            except BlockingIOError:
                continue
            except OSError:
                reader.eof = True


class HammerProcess:
    """`hammer` in a process of its own, started now: a hammering controller must not share
    the measuring side's interpreter (one GIL would make the measurement its victim too).
    The environment (PYTHONPATH) is the caller's."""

    def __init__(
        self, target: str, seconds: float, rate: float | None = None, kind: str = "echo",
        drain: float = 5.0,
    ) -> None:  # fmt: skip
        cmd = [sys.executable, "-m", "tenantvisor.bench.hammer", target, "--seconds",
               str(seconds), "--kind", kind, "--drain", str(drain), "--json"]  # fmt: skip
        if rate is not None:
            cmd += ["--rate", str(rate)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self, timeout: float | None = None) -> HammerResult:
        """What it did, once it is done (RuntimeError if it failed)."""
        out, err = self.proc.communicate(timeout=timeout)
        if self.proc.returncode != 0:
            raise RuntimeError(f"hammer failed ({self.proc.returncode}): {err.strip()}")
        return HammerResult(**json.loads(out))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tenantvisor.bench.hammer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("target", help="tcp:HOST:PORT (a vswitch's ptcp listener) or ptcp:PORT[:HOST]")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rate", type=float, help="messages per second (default: as fast as taken)")
    p.add_argument("--kind", choices=KINDS, default="echo")
    p.add_argument("--drain", type=float, default=5.0, help="seconds to wait for late replies")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    a = p.parse_args(argv)
    res = hammer(a.target, a.seconds, a.rate, a.kind, a.drain)
    if a.json:
        print(json.dumps(asdict(res)))
    else:
        print(f"{res.kind}: sent {res.sent} ({res.sent_per_s:.0f}/s), {res.replies} replies "
              f"({res.replies_per_s:.0f}/s), {res.errors} errors, blocked {res.blocked_s:.2f} s"
              f"{', closed by the vswitch' if res.closed else ''}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
