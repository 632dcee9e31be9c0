"""A vswitch's statistics and descriptions: multipart requests, answered from the
pswitch's counters mapped back to the tenant's rules, ports, groups and meters.

Kept apart from the switch itself (virtual/endpoint.py) as a mixin of `VSwitchEndpoint`;
every method works on one endpoint (`self`).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor import __version__
from tenantvisor.mapping import layout
from tenantvisor.openflow import codec
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

_PORT = struct.Struct(ofp.OFP_PORT_PACK_STR)
_DESC = struct.Struct(ofp.OFP_DESC_PACK_STR)
_MP_REPLY = struct.Struct("!HH4x")
_FLOW_STATS_REQ = struct.Struct("!B3xII4xQQ")  # table, out_port, out_group, cookie, mask
_FLOW_STATS = struct.Struct("!HBxIIHHHH4xQQQ")
_COUNTERS = struct.Struct("!QQQ")  # cookie, packet_count, byte_count in ofp_flow_stats
_AGGREGATE = struct.Struct("!QQI4x")
_TABLE_STATS = struct.Struct("!B3xIQQ")
_UNKNOWN = 0xFFFFFFFFFFFFFFFF
_PK_BY = struct.Struct("!QQ")
_GROUP_DESC = struct.Struct("!HBxI")
_METER_CONFIG = struct.Struct("!HHI")
_GROUP_STATS = struct.Struct("!H2xII4xQQII")


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
    return struct.pack("!II4I4I", types, caps, *[65535] * 4, *[actions] * 4)


_PORT_STATS = struct.Struct("!I4x" + "Q" * 12 + "II")
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
        hw = struct.pack("!BBIB", 0x02, 0x76, self.view.index, 0)[:5] + bytes([n & 0xFF])
        name = self.port_names.get(n, f"vport{n}").encode()[:15]
        state = ofp.OFPPS_LIVE if up else ofp.OFPPS_LINK_DOWN
        curr = ofp.OFPPF_10GB_FD | ofp.OFPPF_COPPER
        return _PORT.pack(n, hw, name, 0, state, curr, curr, curr, 0, 10_000_000, 10_000_000)

    def _multipart(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        if len(msg) < 16:
            raise MalformedMessage("MULTIPART_REQUEST too short")
        mtype = codec.u16(msg, 8)
        ch = conn.channel
        if mtype == ofp.OFPMP_DESC:
            body = _DESC.pack(
                b"tenantvisor",
                f"virtual switch over pswitch {self.view.dpid:016x}".encode(),
                f"tenantvisor {__version__}".encode(),
                f"net{self.view.net_id}-{self.vdpid:016x}".encode(),
                self.label.encode(),
            )
            ch.send(
                codec.header(
                    ch.version, ofp.OFPT_MULTIPART_REPLY, xid, _MP_REPLY.pack(mtype, 0) + body
                )
            )
        elif mtype == ofp.OFPMP_PORT_DESC:
            ports = sorted(self.view.ports)
            chunks = [
                ports[i : i + PORTS_PER_REPLY] for i in range(0, len(ports), PORTS_PER_REPLY)
            ] or [[]]
            for i, chunk in enumerate(chunks):
                more = ofp.OFPMPF_REPLY_MORE if i < len(chunks) - 1 else 0
                body = _MP_REPLY.pack(mtype, more) + b"".join(self._port_desc(n) for n in chunk)
                ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, body))
        elif mtype in (ofp.OFPMP_FLOW, ofp.OFPMP_AGGREGATE):
            self._flow_stats(conn, xid, msg, mtype)
        elif mtype == ofp.OFPMP_TABLE:
            self._table_stats(conn, xid)
        elif mtype == ofp.OFPMP_PORT_STATS:
            self._port_stats(conn, xid, msg)
        elif mtype == ofp.OFPMP_GROUP_DESC:
            entries = [
                _GROUP_DESC.pack(8 + len(g.buckets), g.type, gid) + g.buckets
                for gid, g in sorted(self.groups.items())
            ]
            self._multipart_reply(ch, xid, mtype, entries)
        elif mtype == ofp.OFPMP_GROUP_FEATURES:
            body = _MP_REPLY.pack(mtype, 0) + _group_features()
            ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, body))
        elif mtype == ofp.OFPMP_GROUP:
            self._group_stats(conn, xid, msg)
        elif mtype == ofp.OFPMP_METER_CONFIG:
            mid = codec.u32(msg, 16) if len(msg) >= 20 else ofp.OFPM_ALL
            entries = [
                _METER_CONFIG.pack(8 + len(m.bands), m.flags, vid) + m.bands
                for vid, m in sorted(self.meters.items())
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
            for body, off, _ in codec.entries(parts, 48):
                cookie, packets, nbytes = _COUNTERS.unpack_from(body, off + 24)
                c = counts.setdefault(cookie & layout.SERIAL_MASK, [0, 0])
                c[0] += packets
                c[1] += nbytes
            done(counts)

        req = _FLOW_STATS_REQ.pack(
            ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
            layout.net_cookie(self.view.net_id), layout.NET_COOKIE_MASK | layout.INFRA_BIT,
        )  # fmt: skip
        session.multipart(ofp.OFPMP_FLOW, req + codec.encode_match([]), parse)

    def _flow_stats(self, conn: ControllerConn, xid: int, msg: bytes, mtype: int) -> None:
        if len(msg) < 56:
            raise MalformedMessage("flow statistics request too short")
        table_id, out_port, out_group, cookie, mask = _FLOW_STATS_REQ.unpack_from(msg, 16)
        match, _ = codec.parse_match(msg, 48)
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
                body = _MP_REPLY.pack(mtype, 0) + _AGGREGATE.pack(pk, by, len(selected))
                ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, body))
                return
            entries = []
            for v in selected:
                pk, by = counts.get(v.serial, (0, 0))
                age = now - v.created
                m = codec.encode_match(v.match)
                entries.append(
                    _FLOW_STATS.pack(
                        48 + len(m) + len(v.instructions), v.table, int(age),
                        int(age % 1 * 1e9), v.priority, v.idle_timeout, v.hard_timeout,
                        v.flags, v.cookie, pk, by,
                    ) + m + v.instructions
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
                entries.append(_TABLE_STATS.pack(t, len(rules), _UNKNOWN, matched))
            self._multipart_reply(ch, xid, ofp.OFPMP_TABLE, entries)

        self._counters(conn, reply)

    def _port_stats(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        """rx: what the table-0 rules that classify into the vport counted; tx of a link
        vport: what its peer received over the vlink; tx of an edge vport: what went through
        the indirect groups every output to it is translated into (1.3 pswitches).  Errors
        and drops have no counter of their own on a shared pswitch: all ones, as OpenFlow
        asks for counters a switch does not have."""
        if len(msg) < 24:
            raise MalformedMessage("port statistics request too short")
        port_no = codec.u32(msg, 16)
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
        age = time.monotonic() - self.created
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
                    _PORT_STATS.pack(n, rx[0], tx[0], rx[1], tx[1], *[_UNKNOWN] * 8,
                                     int(age), int(age % 1 * 1e9))
                )  # fmt: skip
            self._multipart_reply(ch, xid, ofp.OFPMP_PORT_STATS, entries)

        def then_groups(counts: dict[tuple[int, int], list[int]]) -> None:
            s = self.host.session(view.dpid)
            if not edge_groups or s is None or not s.ready:
                reply(counts, {})
                return
            s.multipart(ofp.OFPMP_GROUP, struct.pack("!I4x", ofp.OFPG_ALL),
                        lambda parts: edge_tx(counts, parts))  # fmt: skip

        def edge_tx(counts: dict[tuple[int, int], list[int]], parts: list[bytes] | None) -> None:
            wanted = {g for pair in edge_groups.values() for g in pair}
            sent: dict[int, list[int]] = {}
            for body, off, _ in codec.entries(parts, 40):
                if (gid := codec.u32(body, off + 4)) in wanted:
                    sent[gid] = list(_PK_BY.unpack_from(body, off + 16))
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
            more = ofp.OFPMPF_REPLY_MORE if i < len(parts) - 1 else 0
            body = _MP_REPLY.pack(mtype, more) + b"".join(part)
            ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, body))

    def _group_stats(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        """Counters of the physical groups, under the tenant's group ids; ref_count counts
        the tenant's own rules, not their expansions."""
        if len(msg) < 24:
            raise MalformedMessage("group statistics request too short")
        gid = codec.u32(msg, 16)
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
            for body, off, length in codec.entries(parts, 40):
                vid = by_phys.get(codec.u32(body, off + 4))
                if vid is not None:
                    found[vid] = (
                        body[off : off + 4] + struct.pack("!II", vid, refs[vid])
                        + body[off + 12 : off + length]
                    )  # fmt: skip
            entries = []
            for vid, g in sorted(wanted.items()):
                if vid in found:
                    entries.append(found[vid])
                    continue
                age = now - g.created  # not on the pswitch (it is down): no packets yet
                n = len(parse_buckets(g.buckets))
                entries.append(
                    _GROUP_STATS.pack(40 + 16 * n, vid, refs[vid], 0, 0, int(age),
                                      int(age % 1 * 1e9)) + bytes(16 * n)
                )  # fmt: skip
            self._multipart_reply(ch, xid, ofp.OFPMP_GROUP, entries)

        if not wanted or session is None or not session.ready:
            reply(None)
            return
        conn.touched.add(self.view.dpid)
        session.multipart(ofp.OFPMP_GROUP, struct.pack("!I4x", ofp.OFPG_ALL), reply)

    def _meter_stats(self, conn: ControllerConn, xid: int, msg: bytes, mtype: int) -> None:
        """METER stats under the tenant's ids (flow_count: the tenant's rules); METER_FEATURES
        is what the pswitch has (the vswitch meters are the pswitch's)."""
        session = self.host.session(self.view.dpid)
        ch = conn.channel
        mid = codec.u32(msg, 16) if len(msg) >= 20 else ofp.OFPM_ALL
        wanted = {v: m for v, m in self.meters.items() if mid in (ofp.OFPM_ALL, v)}
        by_phys = {m.phys_id: v for v, m in wanted.items()}

        def reply(parts: list[bytes] | None) -> None:
            if mtype == ofp.OFPMP_METER_FEATURES:
                body = parts[0][:16] if parts and len(parts[0]) >= 16 else bytes(16)
                out = _MP_REPLY.pack(mtype, 0) + body
                ch.send(codec.header(ch.version, ofp.OFPT_MULTIPART_REPLY, xid, out))
                return
            entries = []
            for body, off, length in codec.entries(parts, 40, len_at=4):
                vid = by_phys.get(codec.u32(body, off))
                if vid is not None:
                    flows = sum(
                        1 for vf in self.table
                        if codec.parse_instructions(vf.instructions).meter == vid
                    )  # fmt: skip
                    entries.append(
                        struct.pack("!I", vid) + body[off + 4 : off + 12]
                        + struct.pack("!I", flows) + body[off + 16 : off + length]
                    )  # fmt: skip
            self._multipart_reply(ch, xid, ofp.OFPMP_METER, entries)

        if session is None or not session.ready or (mtype == ofp.OFPMP_METER and not wanted):
            reply(None)
            return
        conn.touched.add(self.view.dpid)
        body = b"" if mtype == ofp.OFPMP_METER_FEATURES else struct.pack("!I4x", ofp.OFPM_ALL)
        session.multipart(mtype, body, reply)
