"""Limit hits: what the provider's data-plane limit meters let in and dropped, read from
the pswitches' meter statistics, for Prometheus, the API and `tvctl`.

Polled (`Hypervisor._limits_loop`): OpenFlow has no meter event.  Each meter is known by
what it limits, (network, kind, what, dpid), not by its id, and its counters are kept
monotonic: a reading below the last is a new meter there (a pswitch restarted, a limit
removed and set again), counted from zero.  Per (network, kind) totals keep what removed
meters counted, as Prometheus counters must.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, messages
from tenantvisor.translate.meter import LimitMeter

log = logging.getLogger(__name__)
_BAND_STATS = struct.Struct("!QQ")  # ofp_meter_band_stats: packet_band_count, byte_band_count
MeterKey = tuple[int, str, tuple[int, int], int]  # network, kind, what, dpid


def parse_meter_stats(parts: list[bytes] | None) -> dict[int, tuple[int, int]]:
    """meter id -> (packets that reached it, packets its bands dropped), from OFPMP_METER
    reply bodies (a malformed entry ends its body, as `codec.entries` does)."""
    out: dict[int, tuple[int, int]] = {}
    size = messages.METER_STATS.size
    for body, off, length in codec.entries(parts, size, len_at=4):
        if off + length > len(body):
            break  # an entry longer than what arrived: not counted half
        mid, _, _, packets, *_ = messages.METER_STATS.unpack_from(body, off)
        dropped = sum(
            _BAND_STATS.unpack_from(body, at)[0]
            for at in range(off + size, off + length - _BAND_STATS.size + 1, _BAND_STATS.size)
        )
        out[mid] = (packets, dropped)
    return out


@dataclass
class MeterCount:
    """One limit meter's counters, monotonic across re-creations."""

    packets: int = 0
    dropped: int = 0
    raw: tuple[int, int] = (0, 0)  # the pswitch's counters as last read
    hitting: bool = False  # dropped something since the reading before

    def read(self, packets: int, dropped: int) -> tuple[int, int]:
        """Take a reading; the (packets, dropped) added by it."""
        lp, ld = self.raw
        if packets < lp or dropped < ld:  # a new meter behind the same id
            lp, ld = 0, 0
        self.raw = (packets, dropped)
        self.packets += packets - lp
        self.dropped += dropped - ld
        return packets - lp, dropped - ld


class LimitHits:
    """Every limit meter's counters and each network's totals by kind."""

    def __init__(self) -> None:
        self.meters: dict[MeterKey, MeterCount] = {}
        self.totals: dict[tuple[int, str], list[int]] = {}  # (network, kind) -> [in, dropped]

    def read(self, net_id: int, m: LimitMeter, packets: int, dropped: int) -> None:
        key = (net_id, m.kind, m.what, m.dpid)
        count = self.meters.setdefault(key, MeterCount())
        more, lost = count.read(packets, dropped)
        total = self.totals.setdefault((net_id, m.kind), [0, 0])
        total[0] += more
        total[1] += lost
        if bool(lost) != count.hitting:
            count.hitting = bool(lost)
            what = _describe(m)
            if lost:
                log.warning("network %d: %s on pswitch %016x is over its limit: %d of %d "
                            "packets dropped since the last reading", net_id, what, m.dpid,
                            lost, more)  # fmt: skip
            else:
                log.info("network %d: %s on pswitch %016x is within its limit again",
                         net_id, what, m.dpid)  # fmt: skip

    def taken(self, dpid: int, meters: Iterable[tuple[int, LimitMeter]],
              parts: list[bytes] | None) -> None:  # fmt: skip
        """A pswitch's METER statistics: each of `meters` ((network, meter) on `dpid`)
        it reports is read; the tenants' own meters in the reply are not ours to count."""
        got = parse_meter_stats(parts)
        for net_id, m in meters:
            if m.dpid == dpid and m.meter_id in got:
                self.read(net_id, m, *got[m.meter_id])

    def forget(self, net_id: int) -> None:
        """A removed network: its meters go (its totals stay: counters never go down)."""
        for key in [k for k in self.meters if k[0] == net_id]:
            del self.meters[key]

    def report(self, net_id: int, meters: Iterable[LimitMeter]) -> list[dict[str, Any]]:
        """The network's meters now in force, with what each let in and dropped."""
        out = []
        for m in sorted(meters, key=lambda m: (m.kind, m.what, m.dpid)):
            c = self.meters.get((net_id, m.kind, m.what, m.dpid), MeterCount())
            rate = struct.unpack_from("!I", m.bands, 4)[0]
            entry: dict[str, Any] = {
                "kind": m.kind,
                "rate": rate,
                "unit": "pps" if m.flags & ofp.OFPMF_PKTPS else "kbps",
                "packets": c.packets,
                "dropped": c.dropped,
                "dpid": m.dpid,
                "meter_id": m.meter_id,
            }
            if m.kind == "vport":
                entry["vdpid"], entry["vport"] = m.what
            else:
                entry["link_id"] = m.what[0]
                entry["direction"] = "dst->src" if m.what[1] else "src->dst"
            out.append(entry)
        return out


def _describe(m: LimitMeter) -> str:
    if m.kind == "vport":
        return f"vswitch {m.what[0]:016x} vport {m.what[1]}"
    return f"vlink {m.what[0]} {'dst->src' if m.what[1] else 'src->dst'}"


METER_STATS_ALL = messages.METER_MULTIPART_REQUEST.pack(ofp.OFPM_ALL)
"""The OFPMP_METER request body for every meter of a pswitch."""
