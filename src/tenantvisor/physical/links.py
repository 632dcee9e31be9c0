"""Link discovery: authenticated LLDP probes find and age the fabric's links, padded
probes check that each link carries full-size tenant frames with the fabric tag, and
double-tagged probes check that the pswitch at the far end parses a tenant's VLAN tag inside
the fabric tag (see `discovery`).

It writes what it learns into `PhysicalTopology` and calls `changed` when the set of links
changed (the daemon then recompiles); sending goes through the pswitch sessions.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Sequence

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.physical import discovery
from tenantvisor.physical.discovery import ProbeKind
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.physical.topology import PhysicalTopology, PLink

log = logging.getLogger(__name__)

QINQ_ADVICE = "ovs-vsctl set Open_vSwitch . other_config:vlan-limit=2"
# The padded (MTU) and double-tagged (QinQ) probes check settings that change rarely, so a
# pswitch sends them every CHECK_EVERY intervals, a share of the pswitches each interval:
# they are two of every three probes and nearly all their bytes (a padded one is ~1.6 KB),
# and a round of all of them at once keeps the daemon busy for milliseconds, in one burst,
# exactly when a live migration's rollout may be waiting for its BARRIER replies.
CHECK_EVERY = 5


def qinq_verdict(
    into: Sequence[tuple[float, float | None]], now: float, grace: float
) -> bool | None:
    """Whether a pswitch parses a tenant's VLAN tag inside the fabric tag, from its live
    incoming links as (since when the link is known, when a QinQ probe last crossed it).

    True when a probe crossed any of them within `grace`: the setting belongs to the whole
    switch (Open vSwitch's `vlan-limit` is per daemon), so one link proves it.  False when
    none did and one of them has been known for `grace`, long enough for several probes to
    have come back.  None (too early to say) otherwise."""
    if any(seen is not None and now - seen < grace for _, seen in into):
        return True
    if any(now - first >= grace for first, _ in into):
        return False
    return None


class LinkDiscovery:
    def __init__(
        self,
        topo: PhysicalTopology,
        interval: float,
        changed: Callable[[], None],
        edge_ports: Callable[[], set[tuple[int, int]]],
        check_every: int = CHECK_EVERY,
    ) -> None:
        self.topo = topo
        self.interval = interval
        self.check_every = max(1, check_every)
        self._ticks = 0
        self._changed = changed
        self._edge_ports = edge_ports
        # probes are signed with a secret of this instance, so a host cannot forge links
        self.secret = secrets.token_bytes(16)
        self._seen: dict[PLink, float] = {}  # last small probe per link direction
        self._first_seen: dict[PLink, float] = {}
        self._big_seen: dict[PLink, float] = {}  # last big probe per link direction (MTU)
        self._mtu_warned: set[PLink] = set()
        self._qinq_seen: dict[PLink, float] = {}  # last QinQ probe per link direction
        self._qinq_warned: set[int] = set()  # pswitches

    @property
    def grace(self) -> float:
        """How long a link goes without a probe crossing it before it is taken away."""
        return 3 * self.interval + 1.0

    @property
    def check_grace(self) -> float:
        """How long a link must be known before a missing big or QinQ probe is believed:
        three of its check rounds, as links get three probes before they age out."""
        return 3 * self.interval * self.check_every + 1.0

    def tick(self, sessions: Iterable[PSwitchSession], now: float) -> None:
        """Once per interval: probe every pswitch (and let a share of them check their
        links' MTU and QinQ), age links, judge MTUs and QinQ."""
        turn = self._ticks % self.check_every
        self._ticks += 1
        for i, s in enumerate(sessions):
            self.probe(s, checks=i % self.check_every == turn)
        # No probe crosses a link of a pswitch we cannot talk to: its links age only once it
        # is back (or go when a neighbour reports the port down), and are judged (MTU, QinQ)
        # only a grace period after that, when probes had a chance to cross again.
        down = {d for d, sw in self.topo.switches.items() if not sw.connected}
        for lk in self._seen:
            if lk.src_dpid in down or lk.dst_dpid in down:
                self._seen[lk] = now
                self._first_seen.pop(lk, None)
            else:
                self._first_seen.setdefault(lk, now)
        self._check_mtu(now)
        self._check_qinq(now)
        deadline = now - self.grace
        stale = [lk for lk, t in self._seen.items() if t < deadline]
        for lk in stale:
            del self._seen[lk]
            self._big_seen.pop(lk, None)
            self._qinq_seen.pop(lk, None)
            self.topo.remove_link(lk)
            log.info("link %016x:%d -> %016x:%d timed out",
                     lk.src_dpid, lk.src_port, lk.dst_dpid, lk.dst_port)  # fmt: skip
        if stale:
            self._changed()

    def probe(self, s: PSwitchSession, checks: bool = True, only: int | None = None) -> None:
        """LLDP out of every port that may face a pswitch (and, with `checks`, the padded
        and double-tagged probes out of those known to), or out of port `only`.  Ports
        mapped as edge vports are skipped: probes would show tenants' hosts the physical
        dpids and port numbers."""
        if s.dpid is None or not s.ready:
            return
        edge = self._edge_ports()
        ports = s.ports.values() if only is None else [p for p in [s.ports.get(only)] if p]
        for p in ports:
            if p.up and p.port_no < ofp.OFPP_MAX and (s.dpid, p.port_no) not in edge:
                s.probe(p.port_no, discovery.probe(self.secret, s.dpid, p.port_no))
                # the checks only where a pswitch is known to face the port: elsewhere
                # (hosts, 1500-byte ports) the padded probe would only be dropped and logged,
                # and a host has no use for double-tagged LLDP
                if checks and self.topo.is_link_port(s.dpid, p.port_no):
                    for kind in (ProbeKind.BIG, ProbeKind.QINQ):
                        s.probe(p.port_no, discovery.probe(self.secret, s.dpid, p.port_no, kind))

    def probe_in(self, s: PSwitchSession, in_port: int, data: bytes, now: float) -> None:
        """A probe came back to us through pswitch `s`, port `in_port`."""
        src = discovery.parse_any_probe(self.secret, data)
        if src is None or s.dpid is None:
            return
        lk = PLink(src[0], src[1], s.dpid, in_port)
        if src[2] is ProbeKind.QINQ:  # s matched the LLDP ethertype behind both tags
            self._qinq_seen[lk] = now
            if self.topo.qinq_ok.get(s.dpid) is not True:
                self.topo.qinq_ok[s.dpid] = True
                if s.dpid in self._qinq_warned:
                    self._qinq_warned.discard(s.dpid)
                    log.info("pswitch %016x now parses VLAN tags inside the fabric tag", s.dpid)
            return
        if src[2] is ProbeKind.BIG:  # this direction carries full-size tagged frames
            self._big_seen[lk] = now
            if self.topo.mtu_ok.get(lk) is not True:
                self.topo.mtu_ok[lk] = True
                if lk in self._mtu_warned:
                    self._mtu_warned.discard(lk)
                    log.info("link %016x:%d -> %016x:%d now carries full-size frames",
                             *src[:2], s.dpid, in_port)  # fmt: skip
            return
        self._seen[lk] = now
        if self.topo.add_link(lk):
            log.info("link %016x:%d -> %016x:%d discovered", *src[:2], s.dpid, in_port)
            self._changed()

    def _check_mtu(self, now: float) -> None:
        """Warn (once per episode) about links that pass small probes but not big ones: a
        tenant's 1500-byte frame with our 4-byte tag would be dropped there, silently."""
        grace = self.check_grace
        for lk, first in list(self._first_seen.items()):
            if lk not in self._seen:
                del self._first_seen[lk]
                continue
            if now - first < grace or now - self._big_seen.get(lk, 0.0) < grace:
                continue
            self.topo.mtu_ok[lk] = False
            if lk not in self._mtu_warned:
                self._mtu_warned.add(lk)
                log.warning(
                    "link %016x:%d -> %016x:%d drops frames with more than 1500 bytes of "
                    "payload: tenant frames carry a 4-byte fabric tag, so full-size ones will "
                    "be lost; set the MTU of both ends to at least %d",
                    lk.src_dpid, lk.src_port, lk.dst_dpid, lk.dst_port, discovery.BIG_PAYLOAD,
                )  # fmt: skip

    def _check_qinq(self, now: float) -> None:
        """Warn (once per episode) about pswitches that drop our QinQ probes: a tenant's
        VLAN-tagged frame arriving there over the fabric would miss every rule of its own
        (its tag and ethertype invisible) and vanish at the tenant's table miss, silently."""
        into: dict[int, list[tuple[float, float | None]]] = {}
        for lk, first in self._first_seen.items():  # live links only (see tick)
            into.setdefault(lk.dst_dpid, []).append((first, self._qinq_seen.get(lk)))
        for dpid, links in sorted(into.items()):
            ok = qinq_verdict(links, now, self.check_grace)
            if ok is None:
                continue
            self.topo.qinq_ok[dpid] = ok
            if not ok and dpid not in self._qinq_warned:
                self._qinq_warned.add(dpid)
                log.warning(
                    "pswitch %016x does not parse a VLAN tag inside the fabric tag (Open "
                    "vSwitch's other_config:vlan-limit left at its default, 1): tenants' "
                    "VLAN-tagged frames arriving there over the fabric miss their rules and "
                    "are lost; run `%s` (or vlan-limit=0) on that switch's host",
                    dpid, QINQ_ADVICE,
                )  # fmt: skip
