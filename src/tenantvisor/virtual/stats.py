"""A vswitch's statistics and descriptions: multipart requests, answered from the
pswitch's counters mapped back to the tenant's rules, ports, groups and meters.

`VSwitchStats` is a part of `VSwitchEndpoint` (virtual/endpoint.py), held as its `stats`;
it reads the vswitch through `StatsContext` and its groups and meters from the groups part,
asks the first pswitch for counters and answers the tenant's connection.  The bodies of the
replies are built by the functions below, which do no I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Container, Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor import __version__
from tenantvisor.mapping import layout
from tenantvisor.openflow import codec
from tenantvisor.openflow import messages as msgs
from tenantvisor.openflow.codec import MalformedMessage, OFError
from tenantvisor.translate.group import parse_buckets
from tenantvisor.virtual.features import table_features
from tenantvisor.virtual.flowtable import VFlow, normalize

if TYPE_CHECKING:
    from tenantvisor.translate.view import VSwitchView
    from tenantvisor.virtual.flowtable import VirtualFlowTable
    from tenantvisor.virtual.groups import VGroup, VMeter, VSwitchGroups

_UNKNOWN = 0xFFFFFFFFFFFFFFFF  # OpenFlow's value for a counter the switch does not have
Counts = dict[int, list[int]]  # rule serial -> [packets, bytes]
Parts = list[bytes] | None  # the bodies of a pswitch's multipart reply (None: no reply)


class StatsSession(Protocol):
    """What the part asks of a pswitch session."""

    @property
    def ready(self) -> bool: ...

    def multipart(self, mtype: int, body: bytes, done: Callable[[Parts], None]) -> None: ...


class StatsHost(Protocol):
    """What the part asks of the daemon."""

    @property
    def max_rules(self) -> int: ...

    def session(self, dpid: int) -> StatsSession | None: ...

    def vlink_peer(self, net_id: int, vdpid: int, vport: int) -> tuple[int, int, int] | None: ...

    def classified_counts(
        self, net_id: int, dpids: set[int], done: Callable[[dict[tuple[int, int], list[int]]], None]
    ) -> None: ...

    def classify_dpids(self, net_id: int, vdpid: int) -> set[int]: ...


class StatsContext(Protocol):
    """What the part reads of its vswitch (read at each request: views change)."""

    @property
    def view(self) -> VSwitchView: ...  # the first pswitch's

    @property
    def views(self) -> Mapping[int, VSwitchView]: ...  # every pswitch's (a big switch: several)

    @property
    def vdpid(self) -> int: ...

    @property
    def label(self) -> str: ...

    @property
    def host(self) -> StatsHost: ...

    @property
    def table(self) -> VirtualFlowTable: ...

    @property
    def port_names(self) -> Mapping[int, str]: ...

    @property
    def created(self) -> float: ...

    def inexact(self) -> set[int]: ...  # serials counted by shared reduced rules

    @property
    def held_down(self) -> Container[int]: ...  # vports down but not reported yet

    @property
    def packet_outs_to_table(self) -> int: ...  # lookups in table 0 the tenant injected


class ReplyChannel(Protocol):
    @property
    def version(self) -> int: ...

    def send(self, msg: bytes) -> None: ...


class TenantConn(Protocol):
    """The tenant connection a request came on."""

    touched: set[int]  # pswitches a later BARRIER reply must wait for

    @property
    def channel(self) -> ReplyChannel: ...


def _group_features() -> bytes:
    """All four group types, weights, liveness and chaining; every action in any bucket."""
    types = sum(1 << t for t in (ofp.OFPGT_ALL, ofp.OFPGT_SELECT, ofp.OFPGT_INDIRECT,
                                 ofp.OFPGT_FF))  # fmt: skip
    caps = ofp.OFPGFC_SELECT_WEIGHT | ofp.OFPGFC_SELECT_LIVENESS | ofp.OFPGFC_CHAINING
    actions = sum(1 << a for a in (
        ofp.OFPAT_OUTPUT, ofp.OFPAT_COPY_TTL_OUT, ofp.OFPAT_COPY_TTL_IN, ofp.OFPAT_SET_MPLS_TTL,
        ofp.OFPAT_DEC_MPLS_TTL, ofp.OFPAT_PUSH_VLAN, ofp.OFPAT_POP_VLAN, ofp.OFPAT_PUSH_MPLS,
        ofp.OFPAT_POP_MPLS, ofp.OFPAT_GROUP, ofp.OFPAT_SET_NW_TTL, ofp.OFPAT_DEC_NW_TTL,
        ofp.OFPAT_SET_FIELD,
    ))  # fmt: skip
    return msgs.GROUP_FEATURES.pack(types, caps, *[65535] * 4, *[actions] * 4)


MAX_REPLY_BODY = 65535 - 16
PORTS_PER_REPLY = 512


# --- reply bodies, without I/O ---------------------------------------------------------------
def port_desc(
    view: VSwitchView, port_names: Mapping[int, str], n: int, held: Container[int] = ()
) -> bytes:
    """The ofp_port of vport `n` (PORT_DESC, PORT_STATUS, OpenFlow 1.0's FEATURES_REPLY);
    `held`: vports down for a moment the tenant is not told of (a host migrating)."""
    pm = view.ports.get(n)
    up = pm is not None and (pm.up or n in held)
    # 02:76 (locally administered), then the vswitch's index (19 bits) and the vport (12
    # bits): unique per vport of the whole fabric, so controllers that tell ports apart by
    # their MAC (LLDP sources) never see two alike
    hw = bytes((0x02, 0x76)) + ((view.index << 12) | (n & 0xFFF)).to_bytes(4, "big")
    name = port_names.get(n, f"vport{n}").encode()[:15]
    state = ofp.OFPPS_LIVE if up else ofp.OFPPS_LINK_DOWN
    curr = ofp.OFPPF_10GB_FD | ofp.OFPPF_COPPER
    return msgs.PORT.pack(n, hw, name, 0, state, curr, curr, curr, 0, 10_000_000, 10_000_000)


def desc_body(view: VSwitchView, vdpid: int, label: str) -> bytes:
    return msgs.DESC.pack(
        b"tenantvisor",
        f"virtual switch over pswitch {view.dpid:016x}".encode(),
        f"tenantvisor {__version__}".encode(),
        f"net{view.net_id}-{vdpid:016x}".encode(),
        label.encode(),
    )


def reply_messages(version: int, xid: int, mtype: int, entries: list[bytes]) -> list[bytes]:
    """Entries in as many MULTIPART_REPLY parts as the 64 KiB message size needs."""
    parts: list[list[bytes]] = [[]]
    size = 0
    for e in entries:
        if size + len(e) > MAX_REPLY_BODY and parts[-1]:
            parts.append([])
            size = 0
        parts[-1].append(e)
        size += len(e)
    return [
        msgs.multipart_reply(version, xid, mtype, b"".join(part), i < len(parts) - 1)
        for i, part in enumerate(parts)
    ]


def flow_counts(parts: Parts) -> Counts:
    """Packet and byte counts by rule serial from a pswitch's flow statistics (the
    expansions of one tenant rule add up)."""
    counts: Counts = {}
    for body, off, _ in codec.entries(parts, msgs.FLOW_STATS.size):
        *_, cookie, packets, nbytes = msgs.FLOW_STATS.unpack_from(body, off)
        c = counts.setdefault(cookie & layout.SERIAL_MASK, [0, 0])
        c[0] += packets
        c[1] += nbytes
    return counts


def flow_stats_entries(selected: Iterable[VFlow], counts: Counts, now: float) -> list[bytes]:
    """An ofp_flow_stats per tenant rule: its own fields and its physical rules' counts."""
    entries = []
    for v in selected:
        pk, by = counts.get(v.serial, (0, 0))
        entries.append(
            msgs.flow_stats_entry(
                v.table, msgs.sec_nsec(now - v.created), v.priority, v.idle_timeout,
                v.hard_timeout, v.flags, v.cookie, pk, by, codec.encode_match(v.match),
                v.instructions,
            )
        )  # fmt: skip
    return entries


def aggregate_body(selected: list[VFlow], counts: Counts) -> bytes:
    got = [counts.get(v.serial, (0, 0)) for v in selected]
    if any(c[0] == _UNKNOWN for c in got):  # one unknown makes the sum unknown
        return msgs.AGGREGATE_STATS_REPLY.pack(_UNKNOWN, _UNKNOWN, len(selected))
    return msgs.AGGREGATE_STATS_REPLY.pack(sum(c[0] for c in got), sum(c[1] for c in got),
                                           len(selected))  # fmt: skip


def _total(values: Iterable[int]) -> int:
    """A sum of counters; unknown (all ones) when one of them is."""
    out = 0
    for v in values:
        if v == _UNKNOWN:
            return _UNKNOWN
        out += v
    return out


def table_stats_entries(
    n_tables: int, rules: Iterable[VFlow], counts: Counts, table0_lookups: int
) -> list[bytes]:
    """Each table's active rules, lookups and matches, all the tenant's own.

    The physical tables are shared, so their own counters say nothing of one tenant; but
    every packet the vswitch looks up is counted somewhere of its own: table 0 looks up what
    the classification rules admitted into the vswitch plus the PACKET_OUTs to TABLE
    (`table0_lookups`), table t what the tenant's rules sent there with goto_table, and a
    lookup is matched when one of the tenant's rules took the packet.  A table-miss rule's
    packets count as matched, as Open vSwitch counts them (its lookup found a rule); so
    lookups - matched are the packets no rule took.  A counter made of an unknown one (a
    rule realised by shared reduced rules) is unknown."""
    by_table: dict[int, list[VFlow]] = {}
    sent_to: dict[int, list[int]] = {}
    for v in rules:
        by_table.setdefault(v.table, []).append(v)
        goto = codec.parse_instructions(v.instructions).goto_table
        if goto is not None:
            sent_to.setdefault(goto, []).append(counts.get(v.serial, (0, 0))[0])
    entries = []
    for t in range(n_tables):
        in_table = by_table.get(t, [])
        matched = _total(counts.get(v.serial, (0, 0))[0] for v in in_table)
        lookups = table0_lookups if t == 0 else _total(sent_to.get(t, []))
        entries.append(msgs.TABLE_STATS.pack(t, len(in_table), lookups, matched))
    return entries


def group_desc_entries(groups: Mapping[int, VGroup]) -> list[bytes]:
    return [
        msgs.GROUP_DESC.pack(msgs.GROUP_DESC.size + len(g.buckets), g.type, gid) + g.buckets
        for gid, g in sorted(groups.items())
    ]


def group_stats_entries(
    wanted: Mapping[int, VGroup], refs: Mapping[int, int], parts: Parts, now: float
) -> list[bytes]:
    """The pswitch's entries of the `wanted` groups under the tenant's ids and ref_counts
    (`refs`); a group the pswitch did not report (it is down) counts nothing."""
    by_phys = {g.phys_id: vid for vid, g in wanted.items()}
    found: dict[int, bytes] = {}
    for body, off, length in codec.entries(parts, msgs.GROUP_STATS.size):
        size, phys, _, packets, nbytes, sec, nsec = msgs.GROUP_STATS.unpack_from(body, off)
        vid = by_phys.get(phys)
        if vid is not None:  # the same entry under the tenant's id and ref_count
            found[vid] = (
                msgs.GROUP_STATS.pack(size, vid, refs[vid], packets, nbytes, sec, nsec)
                + body[off + msgs.GROUP_STATS.size : off + length]
            )
    entries = []
    for vid, g in sorted(wanted.items()):
        if vid in found:
            entries.append(found[vid])
            continue
        n = len(parse_buckets(g.buckets))  # not on the pswitch (it is down): no packets
        age = msgs.sec_nsec(now - g.created)
        entries.append(msgs.group_stats_entry(vid, refs[vid], 0, 0, age, [(0, 0)] * n))
    return entries


def meter_stats_entries(
    by_phys: Mapping[int, int], flows: Callable[[int], int], parts: Parts
) -> list[bytes]:
    """The pswitch's entries of the physical meters `by_phys` names, under the tenant's ids
    and flow_count (`flows` of a tenant id); others' meters are left out."""
    entries = []
    for body, off, length in codec.entries(parts, msgs.METER_STATS.size, len_at=4):
        phys, size, _, pk_in, by_in, sec, nsec = msgs.METER_STATS.unpack_from(body, off)
        vid = by_phys.get(phys)
        if vid is not None:  # the same entry under the tenant's id and flow_count
            entries.append(
                msgs.METER_STATS.pack(vid, size, flows(vid), pk_in, by_in, sec, nsec)
                + body[off + msgs.METER_STATS.size : off + length]
            )
    return entries


def meter_config_entries(wanted: Mapping[int, VMeter], parts: Parts) -> list[bytes]:
    """The `wanted` meters (the tenant's ids) as the pswitch applied them: its
    descriptions of their physical meters under the tenant's ids (Open vSwitch, for one,
    fills in a burst size the tenant left at 0).  A meter the pswitch did not describe (it
    does not answer) is given as the tenant sent it: the only knowledge there is."""
    by_phys = {mt.phys_id: vid for vid, mt in wanted.items()}
    found: dict[int, bytes] = {}
    for body, off, length in codec.entries(parts, msgs.METER_CONFIG.size):
        _, flags, phys = msgs.METER_CONFIG.unpack_from(body, off)
        vid = by_phys.get(phys)
        if vid is not None:
            found[vid] = (
                msgs.METER_CONFIG.pack(length, flags, vid)
                + body[off + msgs.METER_CONFIG.size : off + length]
            )
    return [
        found.get(vid)
        or msgs.METER_CONFIG.pack(msgs.METER_CONFIG.size + len(mt.bands), mt.flags, vid) + mt.bands
        for vid, mt in sorted(wanted.items())
    ]


def meter_features_body(parts: Parts) -> bytes:
    """The pswitch's METER_FEATURES (the vswitch meters are the pswitch's); zeros without."""
    size = msgs.METER_FEATURES.size
    return parts[0][:size] if parts and len(parts[0]) >= size else bytes(size)


# --- the part --------------------------------------------------------------------------------
class VSwitchStats:
    """Multipart requests of one vswitch."""

    def __init__(self, ep: StatsContext, groups: VSwitchGroups) -> None:
        self._ep = ep
        self._groups = groups

    def port_desc(self, n: int) -> bytes:
        ep = self._ep
        return port_desc(ep.view, ep.port_names, n, ep.held_down)

    def multipart(self, conn: TenantConn, xid: int, msg: bytes) -> None:
        if len(msg) < 16:
            raise MalformedMessage("MULTIPART_REQUEST too short")
        ep = self._ep
        view = ep.view
        mtype = codec.u16(msg, 8)
        ch = conn.channel
        if mtype == ofp.OFPMP_DESC:
            ch.send(
                msgs.multipart_reply(ch.version, xid, mtype, desc_body(view, ep.vdpid, ep.label))
            )
        elif mtype == ofp.OFPMP_PORT_DESC:
            ports = sorted(view.ports)
            chunks = [
                ports[i : i + PORTS_PER_REPLY] for i in range(0, len(ports), PORTS_PER_REPLY)
            ] or [[]]
            for i, chunk in enumerate(chunks):
                body = b"".join(self.port_desc(n) for n in chunk)
                ch.send(msgs.multipart_reply(ch.version, xid, mtype, body, i < len(chunks) - 1))
        elif mtype in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE):
            self._flow_stats(conn, xid, msg, mtype)
        elif mtype == ofp.OFPMP_TABLE:
            self._table_stats(conn, xid)
        elif mtype == ofp.OFPMP_PORT_STATS:
            self._port_stats(conn, xid, msg)
        elif mtype == ofp.OFPMP_GROUP_DESC:
            self._reply(conn, xid, mtype, group_desc_entries(self._groups.groups))
        elif mtype == ofp.OFPMP_GROUP_FEATURES:
            ch.send(msgs.multipart_reply(ch.version, xid, mtype, _group_features()))
        elif mtype == ofp.OFPMP_GROUP:
            self._group_stats(conn, xid, msg)
        elif mtype in (ofp.OFPMP_METER, ofp.OFPMP_METER_FEATURES, ofp.OFPMP_METER_CONFIG):
            self._meter_stats(conn, xid, msg, mtype)
        elif mtype == ofp.OFPMP_QUEUE:
            if len(msg) < 24:
                raise MalformedMessage("queue statistics request too short")
            # a vswitch offers no queues (set_queue is refused): no queue has counters
            self._reply(conn, xid, mtype, [])
        elif mtype == ofp.OFPMP_EXPERIMENTER:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER, "no experimenters")
        elif mtype == ofp.OFPMP_TABLE_FEATURES:
            if len(msg) > 16:  # a body asks to change the tables: the pipeline is fixed
                raise OFError(
                    ofp.OFPET_TABLE_FEATURES_FAILED, ofp.OFPTFFC_EPERM, "tables are fixed"
                )
            features = table_features(view.n_tables, view.of10, ep.host.max_rules)
            self._reply(conn, xid, mtype, features)
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART, f"multipart {mtype}")

    @staticmethod
    def _reply(conn: TenantConn, xid: int, mtype: int, entries: list[bytes]) -> None:
        ch = conn.channel
        for m in reply_messages(ch.version, xid, mtype, entries):
            ch.send(m)

    def _counters(self, conn: TenantConn, done: Callable[[Counts], None]) -> None:
        """Packet and byte counts of this vswitch's rules, by serial, for a reply to `conn`
        (a later BARRIER reply must follow it).  A pswitch that is down or does not answer
        has none of the rules: their counts are 0."""

        def honest(counts: Counts | None) -> None:
            counts = dict(counts or {})
            for serial in self._ep.inexact():  # shared reduced rules: not this rule's own
                counts[serial] = [_UNKNOWN, _UNKNOWN]
            done(counts)

        self.counters(honest, conn.touched, strict=False)

    def counters(
        self, done: Callable[[Counts | None], None], touched: set[int] | None = None,
        strict: bool = True,
    ) -> None:  # fmt: skip
        """Packet and byte counts of this vswitch's rules by serial, summed over its
        pswitches (a big switch's rule has a copy on each where packets enter), read with one
        request per pswitch (the network's cookie, infrastructure rules excluded).  `strict`:
        None if a pswitch did not answer (the caller decides later, not on partial counts);
        else what the others counted.  `touched` gets the pswitches asked."""
        ep = self._ep
        sessions = [(d, s) for d in ep.views if (s := ep.host.session(d)) is not None and s.ready]
        if not sessions:
            done({})
            return
        req = msgs.flow_stats_request(
            cookie=layout.net_cookie(ep.view.net_id),
            cookie_mask=layout.NET_COOKIE_MASK | layout.INFRA_BIT,
        )
        total: Counts = {}
        waiting = {d for d, _ in sessions}
        failed = False

        def add(dpid: int, parts: Parts) -> None:
            nonlocal failed
            failed |= parts is None
            for serial, (pk, by) in flow_counts(parts).items():
                c = total.setdefault(serial, [0, 0])
                c[0] += pk
                c[1] += by
            waiting.discard(dpid)
            if not waiting:
                done(None if strict and failed else total)

        for d, s in sessions:
            if touched is not None:
                touched.add(d)
            s.multipart(ofp.OFPMP_FLOW, req, lambda parts, d=d: add(d, parts))  # type: ignore[misc]

    def _flow_stats(self, conn: TenantConn, xid: int, msg: bytes, mtype: int) -> None:
        table_id, out_port, out_group, cookie, mask, match = msgs.parse_flow_stats_request(msg)
        if table_id != ofp.OFPTT_ALL and table_id >= self._ep.view.n_tables:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TABLE_ID, f"table {table_id}")
        selected = self._ep.table.select_stats(
            table_id, out_port, out_group, cookie, mask, normalize(match)
        )
        now = time.monotonic()
        ch = conn.channel

        def reply(counts: Counts) -> None:
            if mtype == ofp.OFPMP_AGGREGATE:
                body = aggregate_body(selected, counts)
                ch.send(msgs.multipart_reply(ch.version, xid, mtype, body))
                return
            self._reply(conn, xid, mtype, flow_stats_entries(selected, counts, now))

        self._counters(conn, reply)

    def _table_stats(self, conn: TenantConn, xid: int) -> None:
        """Lookups of table 0: the packets classified into the vswitch's vports (the
        table-0 rules that admit them count only this tenant's) and its PACKET_OUTs to
        TABLE; unknown where classification has no counter of its own (OpenFlow 1.0
        pswitches fold it into the rules; LITE rules take packets before it)."""
        ep = self._ep
        rules = list(ep.table)
        injected = ep.packet_outs_to_table
        views = list(ep.views.values())
        dpids = set(ep.views) | ep.host.classify_dpids(ep.view.net_id, ep.vdpid)
        conn.touched |= dpids
        uncounted = any(
            v.of10 or any(pm.lite_in is not None for pm in v.ports.values()) for v in views
        )

        def with_counts(classified: dict[tuple[int, int], list[int]]) -> None:
            arrived = sum(c[0] for (vd, _), c in classified.items() if vd == ep.vdpid)
            lookups0 = _UNKNOWN if uncounted else arrived + injected

            def reply(counts: Counts) -> None:
                entries = table_stats_entries(ep.view.n_tables, rules, counts, lookups0)
                self._reply(conn, xid, ofp.OFPMP_TABLE, entries)

            self._counters(conn, reply)

        ep.host.classified_counts(ep.view.net_id, dpids, with_counts)

    def _port_stats(self, conn: TenantConn, xid: int, msg: bytes) -> None:
        """rx: what the table-0 rules that classify into the vport counted; tx of a link
        vport: what its peer received over the vlink; tx of an edge vport: what went through
        the indirect groups every output to it is translated into (1.3 pswitches).  Errors
        and drops have no counter of their own on a shared pswitch: all ones, as OpenFlow
        asks for counters a switch does not have."""
        if len(msg) < 16 + msgs.PORT_STATS_REQUEST.size:
            raise MalformedMessage("port statistics request too short")
        (port_no,) = msgs.PORT_STATS_REQUEST.unpack_from(msg, 16)
        ep = self._ep
        view, vdpid, host = ep.view, ep.vdpid, ep.host
        if port_no == ofp.OFPP_ANY:
            ports = sorted(view.ports)
        elif port_no in view.ports:
            ports = [port_no]
        else:  # a port the vswitch does not have: nothing to count, as Open vSwitch answers
            self._reply(conn, xid, ofp.OFPMP_PORT_STATS, [])
            return
        # each vport as the pswitch it is on sees it (a big switch's vports are on several)
        local = {}
        for n in ports:
            local[n] = next(
                (v for v in ep.views.values() if n in v.ports and not v.ports[n].remote), view
            )
        peers = {
            n: host.vlink_peer(view.net_id, vdpid, n)
            for n in ports
            if local[n].ports[n].is_link and not local[n].ports[n].remote
        }
        dpids = set(ep.views) | {pe[0] for pe in peers.values() if pe is not None}
        dpids |= host.classify_dpids(view.net_id, vdpid)  # a moved host's, elsewhere
        conn.touched |= dpids
        duration = msgs.sec_nsec(time.monotonic() - ep.created)
        edge_groups = {
            n: (local[n].dpid, pm.tx_group, pm.hairpin_group)
            for n in ports
            if (pm := local[n].ports[n]).tx_group is not None and pm.hairpin_group is not None
        }

        def reply(
            counts: dict[tuple[int, int], list[int]], sent: dict[tuple[int, int], list[int]]
        ) -> None:
            entries = []
            for n in ports:
                rx = counts.get((vdpid, n), [0, 0])
                if local[n].of10:  # classification is folded into rules there: no count
                    rx = [_UNKNOWN, _UNKNOWN]
                if n in peers:
                    pe = peers[n]
                    tx = counts.get((pe[1], pe[2]), [0, 0]) if pe is not None else [0, 0]
                elif n in edge_groups:
                    tx = [0, 0]
                    dpid, *gids = edge_groups[n]
                    for gid in gids:
                        got = sent.get((dpid, gid), [0, 0])
                        tx = [a + b for a, b in zip(tx, got, strict=True)]
                else:
                    tx = [_UNKNOWN, _UNKNOWN]
                entries.append(
                    msgs.PORT_STATS.pack(n, rx[0], tx[0], rx[1], tx[1], *[_UNKNOWN] * 8, *duration)
                )
            self._reply(conn, xid, ofp.OFPMP_PORT_STATS, entries)

        def then_groups(counts: dict[tuple[int, int], list[int]]) -> None:
            want: dict[int, set[int]] = {}
            for dpid, tx, hp in edge_groups.values():
                want.setdefault(dpid, set()).update((tx, hp))
            asks = [(d, s) for d in want if (s := host.session(d)) is not None and s.ready]
            if not asks:
                reply(counts, {})
                return
            sent: dict[tuple[int, int], list[int]] = {}
            waiting = {d for d, _ in asks}

            def edge_tx(dpid: int, parts: Parts) -> None:
                for body, off, _ in codec.entries(parts, msgs.GROUP_STATS.size):
                    _, gid, _, packets, nbytes, _, _ = msgs.GROUP_STATS.unpack_from(body, off)
                    if gid in want[dpid]:
                        sent[(dpid, gid)] = [packets, nbytes]
                waiting.discard(dpid)
                if not waiting:
                    reply(counts, sent)

            for d, s in asks:
                s.multipart(ofp.OFPMP_GROUP, msgs.GROUP_STATS_REQUEST.pack(ofp.OFPG_ALL),
                            lambda parts, d=d: edge_tx(d, parts))  # type: ignore[misc]  # fmt: skip

        host.classified_counts(view.net_id, dpids, then_groups)

    def _group_stats(self, conn: TenantConn, xid: int, msg: bytes) -> None:
        """Counters of the physical groups, under the tenant's group ids; ref_count counts
        the tenant's own rules, not their expansions."""
        if len(msg) < 16 + msgs.GROUP_STATS_REQUEST.size:
            raise MalformedMessage("group statistics request too short")
        (gid,) = msgs.GROUP_STATS_REQUEST.unpack_from(msg, 16)
        groups = self._groups.groups
        if gid == ofp.OFPG_ALL:
            wanted = dict(groups)
        elif gid in groups:
            wanted = {gid: groups[gid]}
        else:
            wanted = {}
        table = self._ep.table
        refs = {vid: sum(1 for vf in table if vf.uses_group(vid)) for vid in wanted}
        dpid = self._ep.view.dpid
        session = self._ep.host.session(dpid)
        now = time.monotonic()

        def reply(parts: Parts) -> None:
            entries = group_stats_entries(wanted, refs, parts, now)
            self._reply(conn, xid, ofp.OFPMP_GROUP, entries)

        if not wanted or session is None or not session.ready:
            reply(None)
            return
        conn.touched.add(dpid)
        session.multipart(ofp.OFPMP_GROUP, msgs.GROUP_STATS_REQUEST.pack(ofp.OFPG_ALL), reply)

    def _meter_stats(self, conn: TenantConn, xid: int, msg: bytes, mtype: int) -> None:
        """METER stats under the tenant's ids (flow_count: the tenant's rules); METER_CONFIG
        what the pswitch applied, under the tenant's ids; METER_FEATURES is what the pswitch
        has (the vswitch meters are the pswitch's)."""
        dpid = self._ep.view.dpid
        session = self._ep.host.session(dpid)
        ch = conn.channel
        mid = codec.u32(msg, 16) if len(msg) >= 20 else ofp.OFPM_ALL
        wanted = {v: mt for v, mt in self._groups.meters.items() if mid in (ofp.OFPM_ALL, v)}
        by_phys = {mt.phys_id: v for v, mt in wanted.items()}

        def flows(vid: int) -> int:
            table = self._ep.table
            return sum(1 for vf in table if codec.parse_instructions(vf.instructions).meter == vid)

        def reply(parts: Parts) -> None:
            if mtype == ofp.OFPMP_METER_FEATURES:
                ch.send(msgs.multipart_reply(ch.version, xid, mtype, meter_features_body(parts)))
                return
            if mtype == ofp.OFPMP_METER_CONFIG:
                self._reply(conn, xid, mtype, meter_config_entries(wanted, parts))
                return
            self._reply(conn, xid, ofp.OFPMP_METER, meter_stats_entries(by_phys, flows, parts))

        if session is None or not session.ready or (mtype != ofp.OFPMP_METER_FEATURES
                                                    and not wanted):  # fmt: skip
            reply(None)
            return
        conn.touched.add(dpid)
        body = (
            b""
            if mtype == ofp.OFPMP_METER_FEATURES
            else msgs.METER_MULTIPART_REQUEST.pack(ofp.OFPM_ALL)
        )
        session.multipart(mtype, body, reply)
