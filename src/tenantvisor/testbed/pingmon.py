"""Continuous ping between two hosts, read as it runs, cut into windows around events.

Why ``ping -D -O`` rather than counting ``ping -c`` results: failover and reconnect are
measured as *when* traffic stopped and for how long, around events the caller times itself
(a link cut, a controller flap).  ``-D`` stamps every line with the wall clock, ``-O`` prints
a line for each request left unanswered, so the reader knows which sequence numbers were
sent and when, and which came back.

Numbers a window reports (see :meth:`PingMonitor.window`):

* ``lost``: requests sent inside the window that got no reply (send times of unanswered
  requests are interpolated between answered ones);
* ``outage_ms``: the longest run of consecutive lost requests that began in the window, as
  time: from the send of the last answered request before the run to the send of the first
  answered one after it (exact: reply time - RTT), minus one spacing; 0 when nothing was lost.
  A run still open at the window's end counts up to the end.  ``ping -i 0.01`` sends about
  every 16 ms on these machines (2 cores), ``-i 0.005`` every 5 ms (measured): that is the
  resolution;
* ``max_gap_ms``: the longest time between two successive replies, counting the last reply
  before the window and the first after it.  It also grows when replies are only late, or
  when ping itself was not scheduled (a loaded machine), so it is reported, not judged;
* ``lost_ms``: lost x the run's usual spacing between replies (the median).
"""

from __future__ import annotations

import bisect
import itertools
import re
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from tenantvisor.testbed import netns as nx

_REPLY = re.compile(r"^\[(\d+\.\d+)\] \d+ bytes from [^:]+: icmp_seq=(\d+) .*time=([\d.]+) ms(.*)$")
_NO_ANSWER = re.compile(r"^\[(\d+\.\d+)\] no answer yet for icmp_seq=(\d+)")


@dataclass(frozen=True)
class Window:
    """What the ping saw between two instants (``time.time()``)."""

    start: float
    end: float
    sent: int
    lost: int
    replies: int
    max_gap_ms: float
    outage_ms: float
    lost_ms: float
    resumed_after_ms: float | None  # first reply after the window started, from `start`

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "lost": self.lost,
            "replies": self.replies,
            "max_gap_ms": round(self.max_gap_ms, 2),
            "outage_ms": round(self.outage_ms, 2),
            "lost_ms": round(self.lost_ms, 2),
        }


class PingMonitor:
    """``ping -n -D -O -i INTERVAL DST`` inside ``netns``, parsed by a reader thread."""

    def __init__(self, netns: str, dst: str, interval: float = 0.01) -> None:
        self.netns = netns
        self.dst = dst
        self.interval = interval
        self.replies: dict[int, tuple[float, float]] = {}  # seq -> (reply time, rtt s)
        self.unanswered: dict[int, float] = {}  # seq -> time ping noticed (about its send)
        self.duplicates = 0
        self.max_seq = 0
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self._wrap = 0
        self._last = -1

    def start(self) -> PingMonitor:
        cmd = ["ping", "-n", "-D", "-O", "-i", f"{self.interval:g}", "-W", "1", self.dst]
        self._proc = nx.ns_popen(
            self.netns, cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=1
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        return self

    def _seq(self, raw: int) -> int:
        """Unwrap ping's 16-bit sequence numbers (60 pings/s wrap after 18 minutes): the
        candidate nearest to the highest seen so far."""
        seq = self._wrap + raw
        if self._last >= 0:
            if seq < self._last - 32768:
                seq += 65536
            elif seq > self._last + 32768:
                seq -= 65536
        if seq > self._last:
            self._last = seq
            self._wrap = seq - raw
        return seq

    def _read(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        for line in proc.stdout:
            m = _REPLY.match(line)
            if m is not None:
                t, seq, rtt = float(m.group(1)), self._seq(int(m.group(2))), float(m.group(3))
                with self._lock:
                    if "DUP" in m.group(4) or seq in self.replies:
                        self.duplicates += 1
                        continue
                    self.replies[seq] = (t, rtt / 1e3)
                    self.unanswered.pop(seq, None)
                    self.max_seq = max(self.max_seq, seq)
                continue
            m = _NO_ANSWER.match(line)
            if m is not None:
                t, seq = float(m.group(1)), self._seq(int(m.group(2)))
                with self._lock:
                    if seq not in self.replies:
                        self.unanswered.setdefault(seq, t)
                    self.max_seq = max(self.max_seq, seq)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(3)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(3)
        if self._thread is not None:
            self._thread.join(3)

    def __enter__(self) -> PingMonitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- reading ----------------------------------------------------------------------------
    def reply_times(self) -> list[float]:
        with self._lock:
            return sorted(t for t, _ in self.replies.values())

    def replies_between(self, start: float, end: float) -> list[tuple[float, float]]:
        """``(reply time, rtt seconds)`` of replies received in ``[start, end)``."""
        with self._lock:
            return sorted((t, rtt) for t, rtt in self.replies.values() if start <= t < end)

    def spacing(self) -> float:
        """The usual time between two replies (median), in seconds."""
        times = self.reply_times()
        gaps = [b - a for a, b in itertools.pairwise(times)]
        return statistics.median(gaps) if gaps else self.interval

    def wait_replies(self, n: int, after: float, timeout: float) -> bool:
        """Wait until ``n`` replies arrived after ``after`` (``time.time()``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for t in self.reply_times() if t > after) >= n:
                return True
            time.sleep(0.02)
        return False

    def _send_times(self) -> tuple[list[int], list[float]]:
        """(seqs, send times) of every request seen, send times of answered ones exact
        (reply - rtt), of unanswered ones interpolated by sequence number."""
        with self._lock:
            answered = sorted((s, t - rtt) for s, (t, rtt) in self.replies.items())
            top = self.max_seq
            noticed = dict(self.unanswered)
        if not answered:
            return [], []
        seqs_a = [s for s, _ in answered]
        times_a = [t for _, t in answered]
        step = self.spacing()
        seqs, times = [], []
        for seq in range(seqs_a[0], top + 1):
            i = bisect.bisect_left(seqs_a, seq)
            if i < len(seqs_a) and seqs_a[i] == seq:
                t = times_a[i]
            elif i < len(seqs_a):  # between two answered requests
                s0, t0, s1, t1 = seqs_a[i - 1], times_a[i - 1], seqs_a[i], times_a[i]
                t = t0 + (t1 - t0) * (seq - s0) / (s1 - s0)
            elif seq in noticed:  # after the last answered one: ping noticed it unanswered
                t = noticed[seq] - step  # when it sent the next one
            else:
                t = times_a[-1] + step * (seq - seqs_a[-1])
            seqs.append(seq)
            times.append(t)
        return seqs, times

    def window(self, start: float, end: float) -> Window:
        """What happened to requests sent in ``[start, end)`` (``time.time()`` values)."""
        seqs, sends = self._send_times()
        with self._lock:
            answered = set(self.replies)
        inside = [s for s, t in zip(seqs, sends, strict=True) if start <= t < end]
        lost = sum(1 for s in inside if s not in answered)
        step = self.spacing()
        # runs of lost requests that begin inside the window, timed by the answered ones
        # around them (a run that began before `start` is an earlier event's outage)
        outage = 0.0
        i = 0
        while i < len(seqs):
            if seqs[i] in answered or not start <= sends[i] < end:
                i += 1
                continue
            j = i
            while j < len(seqs) and seqs[j] not in answered:
                j += 1
            if i == 0 or seqs[i - 1] in answered:  # else it began before the window
                before = sends[i - 1] if i > 0 else sends[i] - step
                after = sends[j] if j < len(seqs) else min(end, time.time())
                outage = max(outage, after - before - step)
            i = j
        times = self.reply_times()
        lo = bisect.bisect_left(times, start)
        hi = bisect.bisect_left(times, end)
        edge = times[max(lo - 1, 0) : min(hi + 1, len(times))]
        if hi == len(times):  # no reply since the window ended (or yet): the gap runs on
            edge.append(min(end, time.time()))
        # A gap belongs to the window it began in: one that was already open well before
        # `start` (traffic gone since an earlier event) is that event's outage, not ours.
        gaps = [b - a for a, b in itertools.pairwise(edge) if a >= start - 2 * step and a < end]
        first = times[lo] if lo < len(times) else None
        return Window(
            start=start,
            end=end,
            sent=len(inside),
            lost=lost,
            replies=len(inside) - lost,
            max_gap_ms=max(gaps, default=0.0) * 1e3,
            outage_ms=max(0.0, outage) * 1e3,
            lost_ms=lost * step * 1e3,
            resumed_after_ms=None if first is None else (first - start) * 1e3,
        )


__all__ = ["PingMonitor", "Window"]
