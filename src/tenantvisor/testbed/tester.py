"""A packet tester on a switch's ports: raw sockets in the hosts' namespaces, in this process.

Why in-process sockets rather than a helper process per host: a conformance run sends a few
thousand crafted frames and waits for each outcome; a command per frame (``ip netns exec``,
~30 ms) would dominate the run, a helper per namespace would need a protocol of its own.
A socket keeps the namespace it was created in, so a short-lived thread enters the host's
namespace (``setns``, per thread on Linux), opens an ``AF_PACKET`` socket on its ``eth0``
and ends; the socket then works from any thread of this process.

What the kernel does to received frames, undone here: it moves the outermost VLAN tag of a
received frame into metadata before packet sockets see it (in software as well, whatever
the offload settings), so the tag is read back from ``PACKET_AUXDATA`` (TCI and TPID) and
put back where it was, as libpcap does.  Frames this socket sent itself
(``PACKET_OUTGOING``) are not captures.
"""

from __future__ import annotations

import ctypes
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_AUXDATA = 8
PACKET_OUTGOING = 4
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
CLONE_NEWNET = 0x40000000
_AUX = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata


class TesterError(RuntimeError):
    pass


def _socket_in_netns(netns: str, ifname: str) -> socket.socket:
    """A raw packet socket bound to `ifname` inside network namespace `netns`."""
    result: list[socket.socket | BaseException] = []

    def enter() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns({netns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
            s.bind((ifname, 0))
            s.setblocking(False)
            result.append(s)
        except BaseException as exc:
            result.append(exc)

    # the thread ends inside the namespace; this one never leaves its own
    t = threading.Thread(target=enter, name=f"setns-{netns}")
    t.start()
    t.join()
    got = result[0]
    if isinstance(got, BaseException):
        raise TesterError(f"cannot open a packet socket on {ifname} in {netns}: {got}") from got
    return got


def _restore_vlan(data: bytes, ancdata: list[tuple[int, int, bytes]]) -> bytes:
    for level, kind, raw in ancdata:
        if level != SOL_PACKET or kind != PACKET_AUXDATA or len(raw) < _AUX.size:
            continue
        status, _, _, _, _, tci, tpid = _AUX.unpack_from(raw)
        if not status & TP_STATUS_VLAN_VALID:
            continue
        if not status & TP_STATUS_VLAN_TPID_VALID:
            tpid = 0x8100
        return data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
    return data


class Tester:
    """Raw sockets on the host end of a switch's ports, by port alias (any hashable name).

    `ports` maps an alias to (namespace, interface).  `send` injects a frame; `collect`
    returns, per alias, the frames that arrived containing `marker` since the last
    `drain`, in arrival order.
    """

    def __init__(self, ports: Mapping[int, tuple[str, str]]) -> None:
        self.socks: dict[int, socket.socket] = {}
        try:
            for alias, (ns, ifname) in ports.items():
                self.socks[alias] = _socket_in_netns(ns, ifname)
        except BaseException:
            self.close()
            raise
        self._by_fd = {s.fileno(): a for a, s in self.socks.items()}
        self._got: dict[int, list[bytes]] = {a: [] for a in self.socks}

    def send(self, alias: int, frame: bytes) -> None:
        self.socks[alias].send(frame)

    def pump(self, timeout: float, also: Sequence[socket.socket] = ()) -> bool:
        """Read what arrives within `timeout` seconds (at most one wait); whether any of
        the sockets in `also` (the caller's, e.g. an OpenFlow channel) became readable."""
        socks = list(self.socks.values())
        r, _, _ = select.select(socks + list(also), [], [], max(timeout, 0))
        other = False
        for s in r:
            alias = self._by_fd.get(s.fileno())
            if alias is None or s not in socks:
                other = True
                continue
            while True:
                try:
                    data, anc, _, addr = s.recvmsg(65536, socket.CMSG_SPACE(_AUX.size))
                except BlockingIOError:
                    break
                except OSError:  # the interface is down (a case pulled its cable)
                    break
                if addr[2] == PACKET_OUTGOING:
                    continue
                self._got[alias].append(_restore_vlan(data, anc))
        return other

    def _read(self, timeout: float) -> int:
        before = sum(len(v) for v in self._got.values())
        self.pump(timeout)
        return sum(len(v) for v in self._got.values()) - before

    def frames(self, marker: bytes) -> dict[int, list[bytes]]:
        """Frames received since the last `drain` that carry `marker`, per alias."""
        return {a: [f for f in fs if marker in f] for a, fs in self._got.items()}

    def drain(self) -> None:
        """Forget everything received so far."""
        while self._read(0.002):
            pass
        for frames in self._got.values():
            frames.clear()

    def collect(
        self, marker: bytes, expect: int, *, settle: float = 0.04, quiet: float = 0.15,
        limit: float = 1.5,
    ) -> dict[int, list[bytes]]:  # fmt: skip
        """Frames carrying `marker`, per alias.  Waits until `expect` of them arrived and
        then `settle` seconds more (for frames that should not come), or `quiet` seconds
        when none is expected, never more than `limit` in all."""
        t0 = time.monotonic()
        end = t0 + limit

        def marked() -> int:
            return sum(1 for fs in self._got.values() for f in fs if marker in f)

        if expect <= 0:
            end = min(end, t0 + quiet)
        while (now := time.monotonic()) < end:
            if expect > 0 and marked() >= expect:
                end = min(end, now + settle)
                expect = 0  # keep reading until settle is over
            self._read(end - now)
        return self.frames(marker)

    def close(self) -> None:
        for s in self.socks.values():
            s.close()
        self.socks.clear()


def tester_for(hosts: Iterable[tuple[int, str]], ifname: str = "eth0") -> Tester:
    """A tester on hosts given as (alias, namespace), each with `ifname`."""
    return Tester({alias: (ns, ifname) for alias, ns in hosts})


__all__ = ["Tester", "TesterError", "tester_for"]
