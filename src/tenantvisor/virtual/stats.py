"""A vswitch's statistics and descriptions: multipart requests, answered from the
pswitch's counters mapped back to the tenant's rules, ports, groups and meters.

Kept apart from the switch itself (virtual/endpoint.py) as a mixin of `VSwitchEndpoint`;
every method works on one endpoint (`self`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor import __version__
from tenantvisor.mapping import layout
from tenantvisor.openflow import codec
from tenantvisor.openflow import messages as msgs
from tenantvisor.openflow.channel import Channel
from tenantvisor.openflow.codec import MalformedMessage, OFError
from tenantvisor.translate.group import parse_buckets
from tenantvisor.virtual.features import table_features
from tenantvisor.virtual.flowtable import VFlow, normalize

if TYPE_CHECKING:
    from tenantvisor.translate.view import VSwitchView
    from tenantvisor.virtual.endpoint import ControllerConn, EndpointHost
    from tenantvisor.virtual.flowtable import VirtualFlowTable
    from tenantvisor.virtual.groups import VGroup, VMeter

_UNKNOWN = 0xFFFFFFFFFFFFFFFF  # OpenFlow's value for a counter the switch does not have


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


class StatsMixin:
    """Multipart requests of a vswitch."""

    # provided by VSwitchEndpoint
    view: VSwitchView
    vdpid: int
    label: str
    host: EndpointHost
    table: VirtualFlowTable
    groups: dict[int, VGroup]
    meters: dict[int, VMeter]
    port_names: dict[int, str]
    created: float

    def _port_desc(self, n: int) -> bytes:
        pm = self.view.ports.get(n)
        up = pm is not None and pm.up
        # 02:76, then the top three bytes of the vswitch's index (as it always was), vport
        hw = bytes((0x02, 0x76)) + self.view.index.to_bytes(4, "big")[:3] + bytes([n & 0xFF])
        name = self.port_names.get(n, f"vport{n}").encode()[:15]
        state = ofp.OFPPS_LIVE if up else ofp.OFPPS_LINK_DOWN
        curr = ofp.OFPPF_10GB_FD | ofp.OFPPF_COPPER
        return msgs.PORT.pack(n, hw, name, 0, state, curr, curr, curr, 0, 10_000_000, 10_000_000)

    def _multipart(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        if len(msg) < 16:
            raise MalformedMessage("MULTIPART_REQUEST too short")
        mtype = codec.u16(msg, 8)
        ch = conn.channel
        if mtype == ofp.OFPMP_DESC:
            body = msgs.DESC.pack(
                b"tenantvisor",
                f"virtual switch over pswitch {self.view.dpid:016x}".encode(),
                f"tenantvisor {__version__}".encode(),
                f"net{self.view.net_id}-{self.vdpid:016x}".encode(),
                self.label.encode(),
            )
            ch.send(msgs.multipart_reply(ch.version, xid, mtype, body))
        elif mtype == ofp.OFPMP_PORT_DESC:
            ports = sorted(self.view.ports)
            chunks = [
                ports[i : i + PORTS_PER_REPLY] for i in range(0, len(ports), PORTS_PER_REPLY)
            ] or [[]]
            for i, chunk in enumerate(chunks):
                body = b"".join(self._port_desc(n) for n in chunk)
                ch.send(msgs.multipart_reply(ch.version, xid, mtype, body, i < len(chunks) - 1))
        elif mtype in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE):
            self._flow_stats(conn, xid, msg, mtype)
        elif mtype == ofp.OFPMP_TABLE:
            self._table_stats(conn, xid)
        elif mtype == ofp.OFPMP_PORT_STATS:
            self._port_stats(conn, xid, msg)
        elif mtype == ofp.OFPMP_GROUP_DESC:
            entries = [
                msgs.GROUP_DESC.pack(msgs.GROUP_DESC.size + len(g.buckets), g.type, gid) + g.buckets
                for gid, g in sorted(self.groups.items())
            ]
            self._multipart_reply(ch, xid, mtype, entries)
        elif mtype == ofp.OFPMP_GROUP_FEATURES:
            ch.send(msgs.multipart_reply(ch.version, xid, mtype, _group_features()))
        elif mtype == ofp.OFPMP_GROUP:
            self._group_stats(conn, xid, msg)
        elif mtype == ofp.OFPMP_METER_CONFIG:
            mid = codec.u32(msg, 16) if len(msg) >= 20 else ofp.OFPM_ALL
            entries = [
                msgs.METER_CONFIG.pack(msgs.METER_CONFIG.size + len(mc.bands), mc.flags, vid)
                + mc.bands
                for vid, mc in sorted(self.meters.items())
                if mid in (ofp.OFPM_ALL, vid)
            ]
            self._multipart_reply(ch, xid, mtype, entries)
        elif mtype in (ofp.OFPMP_METER, ofp.OFPMP_METER_FEATURES):
            self._meter_stats(conn, xid, msg, mtype)
        elif mtype == ofp.OFPMP_TABLE_FEATURES:
            if len(msg) > 16:  # a body asks to change the tables: the pipeline is fixed
                raise OFError(
                    ofp.OFPET_TABLE_FEATURES_FAILED, ofp.OFPTFFC_EPERM, "tables are fixed"
                )
            features = table_features(self.view.n_tables, self.view.of10, self.host.max_rules)
            self._multipart_reply(ch, xid, mtype, features)
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART, f"multipart {mtype}")

    def _counters(self, conn: ControllerConn, done: Callable[[dict[int, list[int]]], None]) -> None:
        """Packet and byte counts of this vswitch's rules, by serial, read from the pswitch in
        one request (the network's cookie, infrastructure rules excluded).  A pswitch that is
        down has none of the rules: their counts are 0."""
        session = self.host.session(self.view.dpid)
        if session is None or not session.ready:
            done({})
            return
        conn.touched.add(self.view.dpid)  # a later BARRIER reply must follow this reply

        def parse(parts: list[bytes] | None) -> None:
            counts: dict[int, list[int]] = {}
            for body, off, _ in codec.entries(parts, msgs.FLOW_STATS.size):
                *_, cookie, packets, nbytes = msgs.FLOW_STATS.unpack_from(body, off)
                c = counts.setdefault(cookie & layout.SERIAL_MASK, [0, 0])
                c[0] += packets
                c[1] += nbytes
            done(counts)

        req = msgs.flow_stats_request(
            cookie=layout.net_cookie(self.view.net_id),
            cookie_mask=layout.NET_COOKIE_MASK | layout.INFRA_BIT,
        )
        session.multipart(ofp.OFPMP_FLOW, req, parse)

    def _flow_stats(self, conn: ControllerConn, xid: int, msg: bytes, mtype: int) -> None:
        table_id, out_port, out_group, cookie, mask, match = msgs.parse_flow_stats_request(msg)
        if table_id != ofp.OFPTT_ALL and table_id >= self.view.n_tables:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TABLE_ID, f"table {table_id}")
        selected = self.table.select_stats(table_id, out_port, cookie, mask, normalize(match))
        if out_group != ofp.OFPG_ANY:
            selected = []  # no rule outputs to a group: groups are not offered yet
        now = time.monotonic()
        ch = conn.channel

        def reply(counts: dict[int, list[int]]) -> None:
            if mtype == ofp.OFPMP_AGGREGATE:
                pk = sum(counts.get(v.serial, (0, 0))[0] for v in selected)
                by = sum(counts.get(v.serial, (0, 0))[1] for v in selected)
                body = msgs.AGGREGATE_STATS_REPLY.pack(pk, by, len(selected))
                ch.send(msgs.multipart_reply(ch.version, xid, mtype, body))
                return
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
            self._multipart_reply(ch, xid, mtype, entries)

        self._counters(conn, reply)

    def _table_stats(self, conn: ControllerConn, xid: int) -> None:
        """active_count and matched_count are the tenant's own; lookup_count is not knowable
        per tenant (the physical tables are shared), so it says so: -1, not an invention."""
        ch = conn.channel
        by_table: dict[int, list[VFlow]] = {}
        for v in self.table:
            by_table.setdefault(v.table, []).append(v)

        def reply(counts: dict[int, list[int]]) -> None:
            entries = []
            for t in range(self.view.n_tables):
                rules = by_table.get(t, [])
                matched = sum(counts.get(v.serial, (0, 0))[0] for v in rules)
                entries.append(msgs.TABLE_STATS.pack(t, len(rules), _UNKNOWN, matched))
            self._multipart_reply(ch, xid, ofp.OFPMP_TABLE, entries)

        self._counters(conn, reply)

    def _port_stats(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        """rx: what the table-0 rules that classify into the vport counted; tx of a link
        vport: what its peer received over the vlink; tx of an edge vport: what went through
        the indirect groups every output to it is translated into (1.3 pswitches).  Errors
        and drops have no counter of their own on a shared pswitch: all ones, as OpenFlow
        asks for counters a switch does not have."""
        if len(msg) < 16 + msgs.PORT_STATS_REQUEST.size:
            raise MalformedMessage("port statistics request too short")
        (port_no,) = msgs.PORT_STATS_REQUEST.unpack_from(msg, 16)
        view = self.view
        if port_no == ofp.OFPP_ANY:
            ports = sorted(view.ports)
        elif port_no in view.ports:
            ports = [port_no]
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_PORT, f"port {port_no}")
        peers = {
            n: self.host.vlink_peer(view.net_id, self.vdpid, n)
            for n in ports
            if view.ports[n].is_link
        }
        dpids = {view.dpid} | {pe[0] for pe in peers.values() if pe is not None}
        conn.touched |= dpids
        duration = msgs.sec_nsec(time.monotonic() - self.created)
        ch = conn.channel
        edge_groups = {
            n: (pm.tx_group, pm.hairpin_group)
            for n in ports
            if (pm := view.ports[n]).tx_group is not None and pm.hairpin_group is not None
        }

        def reply(counts: dict[tuple[int, int], list[int]], sent: dict[int, list[int]]) -> None:
            entries = []
            for n in ports:
                rx = counts.get((self.vdpid, n), [0, 0])
                if self.view.of10:  # classification is folded into rules there: no count
                    rx = [_UNKNOWN, _UNKNOWN]
                if n in peers:
                    pe = peers[n]
                    tx = counts.get((pe[1], pe[2]), [0, 0]) if pe is not None else [0, 0]
                elif n in edge_groups:
                    tx = [0, 0]
                    for gid in edge_groups[n]:
                        tx = [a + b for a, b in zip(tx, sent.get(gid, [0, 0]), strict=True)]
                else:
                    tx = [_UNKNOWN, _UNKNOWN]
                entries.append(
                    msgs.PORT_STATS.pack(n, rx[0], tx[0], rx[1], tx[1], *[_UNKNOWN] * 8, *duration)
                )
            self._multipart_reply(ch, xid, ofp.OFPMP_PORT_STATS, entries)

        def then_groups(counts: dict[tuple[int, int], list[int]]) -> None:
            s = self.host.session(view.dpid)
            if not edge_groups or s is None or not s.ready:
                reply(counts, {})
                return
            s.multipart(ofp.OFPMP_GROUP, msgs.GROUP_STATS_REQUEST.pack(ofp.OFPG_ALL),
                        lambda parts: edge_tx(counts, parts))  # fmt: skip

        def edge_tx(counts: dict[tuple[int, int], list[int]], parts: list[bytes] | None) -> None:
            wanted = {g for pair in edge_groups.values() for g in pair}
            sent: dict[int, list[int]] = {}
            for body, off, _ in codec.entries(parts, msgs.GROUP_STATS.size):
                _, gid, _, packets, nbytes, _, _ = msgs.GROUP_STATS.unpack_from(body, off)
                if gid in wanted:
                    sent[gid] = [packets, nbytes]
            reply(counts, sent)

        self.host.classified_counts(view.net_id, dpids, then_groups)

    @staticmethod
    def _multipart_reply(ch: Channel, xid: int, mtype: int, entries: list[bytes]) -> None:
        """Entries in as many reply parts as the 64 KiB message size needs."""
        parts: list[list[bytes]] = [[]]
        size = 0
        for e in entries:
            if size + len(e) > MAX_REPLY_BODY and parts[-1]:
                parts.append([])
                size = 0
            parts[-1].append(e)
            size += len(e)
        for i, part in enumerate(parts):
            ch.send(
                msgs.multipart_reply(ch.version, xid, mtype, b"".join(part), i < len(parts) - 1)
            )

    def _group_stats(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        """Counters of the physical groups, under the tenant's group ids; ref_count counts
        the tenant's own rules, not their expansions."""
        if len(msg) < 16 + msgs.GROUP_STATS_REQUEST.size:
            raise MalformedMessage("group statistics request too short")
        (gid,) = msgs.GROUP_STATS_REQUEST.unpack_from(msg, 16)
        if gid == ofp.OFPG_ALL:
            wanted = dict(self.groups)
        elif gid in self.groups:
            wanted = {gid: self.groups[gid]}
        else:
            wanted = {}
        by_phys = {g.phys_id: vid for vid, g in wanted.items()}
        refs = {vid: sum(1 for vf in self.table if vf.uses_group(vid)) for vid in wanted}
        session = self.host.session(self.view.dpid)
        ch = conn.channel
        now = time.monotonic()

        def reply(parts: list[bytes] | None) -> None:
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
            self._multipart_reply(ch, xid, ofp.OFPMP_GROUP, entries)

        if not wanted or session is None or not session.ready:
            reply(None)
            return
        conn.touched.add(self.view.dpid)
        session.multipart(ofp.OFPMP_GROUP, msgs.GROUP_STATS_REQUEST.pack(ofp.OFPG_ALL), reply)

    def _meter_stats(self, conn: ControllerConn, xid: int, msg: bytes, mtype: int) -> None:
        """METER stats under the tenant's ids (flow_count: the tenant's rules); METER_FEATURES
        is what the pswitch has (the vswitch meters are the pswitch's)."""
        session = self.host.session(self.view.dpid)
        ch = conn.channel
        mid = codec.u32(msg, 16) if len(msg) >= 20 else ofp.OFPM_ALL
        wanted = {v: mt for v, mt in self.meters.items() if mid in (ofp.OFPM_ALL, v)}
        by_phys = {mt.phys_id: v for v, mt in wanted.items()}

        def reply(parts: list[bytes] | None) -> None:
            if mtype == ofp.OFPMP_METER_FEATURES:
                size = msgs.METER_FEATURES.size
                body = parts[0][:size] if parts and len(parts[0]) >= size else bytes(size)
                ch.send(msgs.multipart_reply(ch.version, xid, mtype, body))
                return
            entries = []
            for body, off, length in codec.entries(parts, msgs.METER_STATS.size, len_at=4):
                phys, size, _, pk_in, by_in, sec, nsec = msgs.METER_STATS.unpack_from(body, off)
                vid = by_phys.get(phys)
                if vid is not None:  # the same entry under the tenant's id and flow_count
                    flows = sum(
                        1 for vf in self.table
                        if codec.parse_instructions(vf.instructions).meter == vid
                    )  # fmt: skip
                    entries.append(
                        msgs.METER_STATS.pack(vid, size, flows, pk_in, by_in, sec, nsec)
                        + body[off + msgs.METER_STATS.size : off + length]
                    )
            self._multipart_reply(ch, xid, ofp.OFPMP_METER, entries)

        if session is None or not session.ready or (mtype == ofp.OFPMP_METER and not wanted):
            reply(None)
            return
        conn.touched.add(self.view.dpid)
        body = (
            b""
            if mtype == ofp.OFPMP_METER_FEATURES
            else msgs.METER_MULTIPART_REQUEST.pack(ofp.OFPM_ALL)
        )
        session.multipart(mtype, body, reply)
