"""The daemon: wires pswitch sessions, the intent layer and vswitch endpoints together.

Intent (virtual/manager.py) and the physical topology are the inputs; everything programmed
is derived from them: vlink paths and fabric tags, table-0 rules per network (kept as a set
and diffed on every change), and one endpoint per vswitch of a started network.  A pswitch
that (re)connects is wiped and gets its whole state again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.mapping.paths import NoPath, vlink_path
from tenantvisor.mapping.tags import TagAllocator, TagSpaceExhausted
from tenantvisor.openflow import codec, of10, oxm
from tenantvisor.openflow.codec import MalformedMessage
from tenantvisor.physical import discovery
from tenantvisor.physical.session import ErrorCallback, PSwitchSession
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo
from tenantvisor.translate import infra
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.group import delete_group, output_group
from tenantvisor.translate.view import PortMap, VSwitchView
from tenantvisor.virtual.endpoint import VSwitchEndpoint
from tenantvisor.virtual.flowtable import NormMatch, normalize
from tenantvisor.virtual.manager import NetworkManager
from tenantvisor.virtual.model import VirtualNetwork, VPortKind

log = logging.getLogger(__name__)
N_TABLES_OFFERED = 64
StatKey = tuple[int, int, int, NormMatch]  # dpid, table, priority, normalized match
_STATS_REQ = struct.Struct("!B3xII4xQQ")
_PK_BY = struct.Struct("!QQ")
TAG_BYTES = 4  # the 802.1ad S-tag a frame carries across the fabric


def _stat_key(pf: PhysFlow) -> StatKey:
    """How a physical rule is recognised in a flow statistics reply (OVS orders fields its
    own way, so the match is compared normalized)."""
    return pf.dpid, pf.table, pf.priority, normalize(codec.parse_match(pf.match, 0)[0])


class Hypervisor:
    def __init__(
        self,
        admin_token: str,
        lldp_interval: float = 1.0,
        n_tables: int = N_TABLES_OFFERED,
        max_rules: int = 100_000,
    ) -> None:
        self.topo = PhysicalTopology()
        self.manager = NetworkManager(self.topo, admin_token)
        self.manager.listeners.append(self._intent_changed)
        self.tags = TagAllocator()
        self.sessions: dict[int, PSwitchSession] = {}
        self.endpoints: dict[tuple[int, int], VSwitchEndpoint] = {}
        self.by_index: dict[int, VSwitchEndpoint] = {}
        self.by_net_dpid: dict[tuple[int, int], VSwitchEndpoint] = {}
        self.installed: dict[int, dict[tuple[int, int, int, bytes], PhysFlow]] = {}
        # per network: table-0 rules that classify into a vport, for its received counters
        self.classify: dict[int, dict[StatKey, tuple[int, int, int]]] = {}
        self.lldp_interval = lldp_interval
        self.n_tables = n_tables
        # a tenant's rules cost pswitch table space every tenant shares: bounded per vswitch
        self.max_rules = max_rules
        self._secret = secrets.token_bytes(16)
        self._link_seen: dict[PLink, float] = {}
        self._link_first_seen: dict[PLink, float] = {}
        self._big_seen: dict[PLink, float] = {}  # last big probe per link direction (MTU)
        self._mtu_warned: set[PLink] = set()
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reconcile_pending = False
        self._ids: dict[tuple[str, int], set[int]] = {}  # group/meter ids in use per pswitch
        # OpenFlow 1.0 pswitches: VLAN ids marking packets to the controller by ingress vport
        self.markers = TagAllocator()
        # edge vports' output groups: (dpid, vswitch index, vport) -> (tx group, hairpin group)
        self.edge_group_ids: dict[tuple[int, int, int], tuple[int, int]] = {}
        # per network: (dpid, group id) -> the physical port the group outputs to
        self.installed_groups: dict[int, dict[tuple[int, int], int]] = {}
        # PACKET_INs / FLOW_REMOVEDs no vswitch claimed, by (dpid, message kind): normally
        # a rule or network removed while the message was on its way; metrics show them
        self.unclaimed: Counter[tuple[int, str]] = Counter()
        # (dpid, marker) -> (vswitch index, ingress vport, PACKET_IN reason)
        self.marker_owner: dict[tuple[int, int], tuple[int, int, int]] = {}

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, listen: str) -> None:
        """Listen for pswitches on HOST:PORT, or on unix:PATH (for switches in namespaces)."""
        loop = asyncio.get_running_loop()
        if listen.startswith("unix:"):
            self._server = await loop.create_unix_server(
                lambda: PSwitchSession(self).channel, listen[5:]
            )
        else:
            host, _, port = listen.rpartition(":")
            self._server = await loop.create_server(
                lambda: PSwitchSession(self).channel, host or "0.0.0.0", int(port),
                reuse_address=True,
            )  # fmt: skip
        self._tasks.append(asyncio.ensure_future(self._discovery_loop()))
        log.info("listening for pswitches on %s", listen)

    @property
    def of_port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for ep in self.endpoints.values():
            ep.stop()
        if self._server is not None:
            self._server.close()
        for s in list(self.sessions.values()):
            s.channel.close("tenantvisor stopping")

    # --- EndpointHost ----------------------------------------------------------------------
    def session(self, dpid: int) -> PSwitchSession | None:
        return self.sessions.get(dpid)

    def deliver_lldp(self, net_id: int, vdpid: int, vport: int, data: bytes) -> None:
        net = self.manager.networks.get(net_id)
        vp = None if net is None else net.vport(vdpid, vport)
        if net is None or vp is None or vp.link_id is None:
            return
        lk = net.links[vp.link_id]
        other = lk.dst if (lk.src.vdpid, lk.src.vport) == (vdpid, vport) else lk.src
        ep = self.endpoints.get((net_id, other.vdpid))
        if ep is not None:
            ep.lldp_in(other.vport, data)

    def _is_of10(self, dpid: int) -> bool:
        info = self.topo.switches.get(dpid)
        return info is not None and info.of_version == 1

    def alloc_id(self, kind: str, dpid: int) -> int | None:
        """A physical group or meter id on this pswitch for some tenant's group or meter
        (None: none left)."""
        used = self._ids.setdefault((kind, dpid), set())
        top = ofp.OFPG_MAX if kind == "group" else ofp.OFPM_MAX
        new = next((i for i in range(1, top + 1) if i not in used), None)
        if new is not None:
            used.add(new)
        return new

    def free_id(self, kind: str, dpid: int, value: int) -> None:
        self._ids.get((kind, dpid), set()).discard(value)

    def vlink_peer(self, net_id: int, vdpid: int, vport: int) -> tuple[int, int, int] | None:
        """(dpid, vdpid, vport) at the other end of the vlink on this link vport."""
        net = self.manager.networks.get(net_id)
        vp = None if net is None else net.vport(vdpid, vport)
        if net is None or vp is None or vp.link_id is None:
            return None
        lk = net.links[vp.link_id]
        other = lk.dst if (lk.src.vdpid, lk.src.vport) == (vdpid, vport) else lk.src
        ovp = net.vport(other.vdpid, other.vport)
        return None if ovp is None else (ovp.dpid, other.vdpid, other.vport)

    def classified_counts(
        self, net_id: int, dpids: set[int], done: Callable[[dict[tuple[int, int], list[int]]], None]
    ) -> None:
        """Packets and bytes each vport of the network received, by (vdpid, vport): the
        counters of the table-0 rules that classified them, read from `dpids`.  These rules
        match only this network's packets, so no other tenant's traffic is ever counted."""
        keys = self.classify.get(net_id, {})
        counts: dict[tuple[int, int], list[int]] = {}
        waiting = {d for d in dpids if (s := self.sessions.get(d)) is not None and s.ready}
        if not waiting:
            done(counts)
            return
        req = _STATS_REQ.pack(
            ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, layout.infra_cookie(net_id),
            layout.ALL_ONES,
        ) + codec.encode_match([])  # fmt: skip

        def collect(dpid: int) -> Callable[[list[bytes] | None], None]:
            def parse(parts: list[bytes] | None) -> None:
                for body, off, length in codec.entries(parts, 56):
                    prio = codec.u16(body, off + 12)
                    packets, nbytes = _PK_BY.unpack_from(body, off + 32)
                    try:
                        oxms, _ = codec.parse_match(body[: off + length], off + 48)
                    except (MalformedMessage, codec.OFError):
                        continue  # not one of our classification rules
                    into = keys.get((dpid, body[off + 2], prio, normalize(oxms)))
                    if into is not None:
                        c = counts.setdefault((into[0], into[1]), [0, 0])
                        c[0] += packets
                        c[1] += nbytes - into[2] * packets
                waiting.discard(dpid)
                if not waiting:
                    done(counts)

            return parse

        for dpid in list(waiting):
            self.sessions[dpid].multipart(ofp.OFPMP_FLOW, req, collect(dpid))

    # --- SessionEvents ---------------------------------------------------------------------
    def switch_ready(self, s: PSwitchSession) -> None:
        assert s.dpid is not None
        old = self.sessions.get(s.dpid)
        if old is not None and old is not s:
            old.channel.close("replaced by a new connection")
        self.sessions[s.dpid] = s
        self.topo.add_switch(
            PSwitchInfo(s.dpid, dict(s.ports), s.n_tables, of_version=s.channel.version)
        )
        s.wipe()
        for pf in infra.provider_flows(s.dpid, of10=s.is_of10):
            s.send_rule(pf, self._infra_error(pf))
        for groups in self.installed_groups.values():  # before the rules that use them
            for (dpid, gid), port in groups.items():
                if dpid == s.dpid:
                    self._send_group(s, output_group(ofp.OFPGC_ADD, gid, port))
        for flows in self.installed.values():
            for pf in flows.values():
                if pf.dpid == s.dpid:
                    s.send_rule(pf, self._infra_error(pf))
        for ep in self.endpoints.values():
            if ep.view.dpid == s.dpid:
                ep.reinstall(s)
        for other in self.sessions.values():  # its neighbours find it now, not in a second
            self._probe(other)
        self._topology_changed()

    def switch_gone(self, s: PSwitchSession) -> None:
        if s.dpid is not None and self.sessions.get(s.dpid) is s:
            del self.sessions[s.dpid]
            self.topo.remove_switch(s.dpid)
            self._link_seen = {
                k: v for k, v in self._link_seen.items() if s.dpid not in (k.src_dpid, k.dst_dpid)
            }
            self._topology_changed()

    def port_status(self, s: PSwitchSession, port: PPort, reason: int) -> None:
        assert s.dpid is not None
        state = "deleted" if reason == ofp.OFPPR_DELETE else "up" if port.up else "down"
        log.info("pswitch %016x port %d (%s) %s", s.dpid, port.port_no, port.name, state)
        if reason == ofp.OFPPR_DELETE:
            self.topo.remove_port(s.dpid, port.port_no)
        else:
            self.topo.set_port(s.dpid, port)
            if port.up:
                self._probe(s)
        self._topology_changed()

    def packet_in(self, s: PSwitchSession, msg: bytes) -> None:
        if s.is_of10:  # our probes, and tenants' packets marked with their ingress vport
            if len(msg) < 18 or s.dpid is None:
                return
            data = msg[18:]
            if data[12:14] == b"\x81\x00" and len(data) >= 18:
                owner = self.marker_owner.get((s.dpid, codec.u16(data, 14) & 0xFFF))
                ep = None if owner is None else self.by_index.get(owner[0])
                if owner is not None and ep is not None and ep.view.dpid == s.dpid:
                    total = codec.u16(msg, 12) - 4
                    ep.packet_in_marked(owner[1], data[:12] + data[16:], total, owner[2])
                return
            self._lldp_in(s, of10.port_to13(codec.u16(msg, 14)), data)  # 1.0 in_port
            return
        try:
            pi = codec.PacketIn.parse(msg)
        except (MalformedMessage, codec.OFError) as exc:
            log.warning("%r: bad PACKET_IN: %s", s, exc)
            return
        if pi.cookie == layout.DISCOVERY_COOKIE:
            in_port = next((codec.oxm_int(o) for o in pi.match if o.field == oxm.IN_PORT), None)
            if in_port is not None:
                self._lldp_in(s, in_port, pi.data)
            return
        meta = 0
        for o in pi.match:
            if o.field == oxm.METADATA:
                meta = codec.oxm_int(o)
                break
        ep = self.by_index.get(layout.meta_vswitch(meta))
        if ep is None or ep.view.dpid != s.dpid or ep.view.net_id != pi.cookie >> layout.NET_SHIFT:
            self.unclaimed[(s.dpid or 0, "packet_in")] += 1
            return
        ep.packet_in(pi, meta)

    def flow_removed(self, s: PSwitchSession, msg: bytes) -> None:
        try:
            fr = codec.FlowRemoved.parse(msg)
        except (MalformedMessage, codec.OFError) as exc:
            log.warning("%r: bad FLOW_REMOVED: %s", s, exc)
            return
        if fr.cookie & layout.INFRA_BIT:
            return
        net_id = fr.cookie >> layout.NET_SHIFT
        # A network has at most one vswitch per pswitch, so (network, dpid) names the endpoint
        # whose serial the cookie carries.
        ep = self.by_net_dpid.get((net_id, s.dpid or 0))
        if ep is not None:
            ep.flow_removed(fr.cookie & layout.SERIAL_MASK, fr)
        else:
            self.unclaimed[(s.dpid or 0, "flow_removed")] += 1

    # --- discovery ---------------------------------------------------------------------------
    async def _discovery_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lldp_interval)
            for s in list(self.sessions.values()):
                self._probe(s)
            now = time.monotonic()
            for lk in self._link_seen:
                self._link_first_seen.setdefault(lk, now)
            self._check_mtu(now)
            deadline = now - 3 * self.lldp_interval - 1.0
            stale = [lk for lk, t in self._link_seen.items() if t < deadline]
            for lk in stale:
                del self._link_seen[lk]
                self.topo.remove_link(lk)
                log.info(
                    "link %016x:%d -> %016x:%d timed out",
                    lk.src_dpid,
                    lk.src_port,
                    lk.dst_dpid,
                    lk.dst_port,
                )
            if stale:
                self._topology_changed()

    def _edge_ports(self) -> set[tuple[int, int]]:
        """Physical ports some tenant uses as an edge vport: hosts live there."""
        return {
            (vp.dpid, vp.port)
            for net in self.manager.networks.values()
            for sw in net.switches.values()
            for vp in sw.ports.values()
            if vp.kind is VPortKind.EDGE
        }

    def _probe(self, s: PSwitchSession) -> None:
        """LLDP out of every port that may face a pswitch.  Ports mapped as edge vports are
        skipped: probes would show tenants' hosts the physical dpids and port numbers."""
        if s.dpid is None or not s.ready:
            return
        edge = self._edge_ports()
        for p in s.ports.values():
            if p.up and p.port_no < ofp.OFPP_MAX and (s.dpid, p.port_no) not in edge:
                s.probe(p.port_no, discovery.probe(self._secret, s.dpid, p.port_no))
                # the MTU check only where a pswitch is known to face the port: elsewhere
                # (hosts, 1500-byte ports) the padded probe would only be dropped and logged
                if self.topo.is_link_port(s.dpid, p.port_no):
                    frame = discovery.probe(self._secret, s.dpid, p.port_no, big=True)
                    s.probe(p.port_no, frame)

    def _lldp_in(self, s: PSwitchSession, in_port: int, data: bytes) -> None:
        src = discovery.parse_any_probe(self._secret, data)
        if src is None or s.dpid is None:
            return
        lk = PLink(src[0], src[1], s.dpid, in_port)
        now = time.monotonic()
        if src[2]:  # a big probe crossed: this direction carries full-size tagged frames
            self._big_seen[lk] = now
            if self.topo.mtu_ok.get(lk) is not True:
                self.topo.mtu_ok[lk] = True
                if lk in self._mtu_warned:
                    self._mtu_warned.discard(lk)
                    log.info("link %016x:%d -> %016x:%d now carries full-size frames",
                             *src[:2], s.dpid, in_port)  # fmt: skip
            return
        self._link_seen[lk] = now
        if self.topo.add_link(lk):
            log.info("link %016x:%d -> %016x:%d discovered", *src[:2], s.dpid, in_port)
            self._topology_changed()

    def _check_mtu(self, now: float) -> None:
        """Warn (once per episode) about links that pass small probes but not big ones: a
        tenant's 1500-byte frame with our 4-byte tag would be dropped there, silently."""
        grace = 3 * self.lldp_interval + 1.0
        for lk, first in list(self._link_first_seen.items()):
            if lk not in self._link_seen:
                del self._link_first_seen[lk]
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

    # --- intent -> runtime -------------------------------------------------------------------
    def _intent_changed(self, event: str, net: VirtualNetwork) -> None:
        if event in ("stopped", "removed"):
            self._teardown(net)
        else:
            self._reconcile(net)

    def _topology_changed(self) -> None:
        if self._reconcile_pending:
            return
        self._reconcile_pending = True
        asyncio.get_running_loop().call_soon(self._reconcile_all)

    def _reconcile_all(self) -> None:
        self._reconcile_pending = False
        for net in list(self.manager.networks.values()):
            if net.started:
                self._reconcile(net)

    def _tenant_name(self, net: VirtualNetwork) -> str:
        t = self.manager.tenants.get(net.tenant_id)
        return t.name if t else str(net.tenant_id)

    def _reconcile(self, net: VirtualNetwork) -> None:
        """Derive this network's physical state from intent and program the difference."""
        topo = self.topo
        link_tags: dict[tuple[int, int], int] = {}  # (vdpid, vport) -> first-hop tag
        flows: list[PhysFlow] = []
        # table-0 rule -> (vdpid, vport) it classifies into, bytes it counts beyond the frame
        classify: dict[StatKey, tuple[int, int, int]] = {}
        in_tags: dict[tuple[int, int], int] = {}  # OpenFlow 1.0 vports: arriving tag
        macs: dict[tuple[int, int], list[str]] = {}  # OpenFlow 1.0 edge vports: host MACs
        used_owners: set[object] = set()
        for lk in net.links.values():
            for a, b, d in ((lk.src, lk.dst, 0), (lk.dst, lk.src, 1)):
                va, vb = net.vport(a.vdpid, a.vport), net.vport(b.vdpid, b.vport)
                if va is None or vb is None:
                    continue
                try:
                    hops = vlink_path(topo, (va.dpid, va.port), (vb.dpid, vb.port))
                    tags = []
                    for i, h in enumerate(hops):
                        owner = (net.id, lk.id, d, i)
                        used_owners.add(owner)
                        tags.append(self.tags.get((h.dst_dpid, h.dst_port), owner))
                except NoPath as exc:
                    log.warning("net=%d vlink %d is down: %s", net.id, lk.id, exc)
                    continue
                except TagSpaceExhausted as exc:
                    log.error("net=%d vlink %d: %s", net.id, lk.id, exc)
                    continue
                link_tags[(a.vdpid, a.vport)] = tags[0]
                dst_sw = net.switches[b.vdpid]
                lf = infra.link_flows(
                    net.id, infra.LinkPath(tuple(hops), tuple(tags), dst_sw.index, b.vport)
                )
                if self._is_of10(vb.dpid):  # no classification table: folded into rules
                    in_tags[(b.vdpid, b.vport)] = tags[-1]
                    flows += lf[:-1]
                    continue
                flows += lf
                # the terminating rule counts frames with our tag still on: 4 bytes more
                classify[_stat_key(lf[-1])] = (b.vdpid, b.vport, TAG_BYTES)
        self.tags.release_where(
            lambda o: isinstance(o, tuple) and o[0] == net.id and o not in used_owners
        )
        for host in net.hosts.values():
            sw = net.switches.get(host.vdpid)
            vp = net.vport(host.vdpid, host.vport)
            if sw is not None and vp is not None and self._is_of10(vp.dpid):
                macs.setdefault((host.vdpid, host.vport), []).append(host.mac)
            elif sw is not None and vp is not None:
                binding = infra.HostBinding(vp.dpid, vp.port, host.mac, sw.index, vp.number)
                hf = infra.host_flow(net.id, binding)
                flows.append(hf)
                classify[_stat_key(hf)] = (host.vdpid, host.vport, 0)
        # edge vports' output groups first: the tenants' rules (re)translated below use them
        groups = self._edge_groups(net)
        old_groups = self.installed_groups.get(net.id, {})
        self._apply_groups(net.id, groups)
        self._apply_infra(net.id, {pf.key: pf for pf in flows})
        self.classify[net.id] = classify
        # vswitch endpoints
        tenant = self._tenant_name(net)
        for vdpid, sw in net.switches.items():
            ports = {}
            names = {}
            pinfo = topo.switches.get(sw.dpid)
            for n, vp in sw.ports.items():
                pp = pinfo.ports.get(vp.port) if pinfo else None
                up = pp is not None and pp.up
                names[n] = pp.name if pp else f"vport{n}"
                if vp.kind is VPortKind.LINK:
                    tag = link_tags.get((vdpid, n))
                    ports[n] = PortMap(n, vp.port, tag, True, up and tag is not None,
                                       in_tags.get((vdpid, n)))  # fmt: skip
                else:
                    tx = self.edge_group_ids.get((sw.dpid, sw.index, n), (None, None))
                    ports[n] = PortMap(n, vp.port, None, False, up,
                                       macs=tuple(sorted(macs.get((vdpid, n), ()))),
                                       tx_group=tx[0], hairpin_group=tx[1])  # fmt: skip
            if self._is_of10(sw.dpid):
                markers: dict[int, tuple[int, int]] = {}
                for n in [0, *sorted(ports)]:
                    got = []
                    for reason in (ofp.OFPR_ACTION, ofp.OFPR_NO_MATCH):
                        marker_owner = (net.id, vdpid, n, reason)
                        used_owners.add(marker_owner)
                        mark = self.markers.get((sw.dpid, -1), marker_owner)
                        self.marker_owner[(sw.dpid, mark)] = (sw.index, n, reason)
                        got.append(mark)
                    markers[n] = (got[0], got[1])
                view = VSwitchView(net.id, sw.index, vdpid, sw.dpid, 1, ports, True, markers)
            else:
                view = VSwitchView(net.id, sw.index, vdpid, sw.dpid, self.n_tables, ports)
            ep = self.endpoints.get((net.id, vdpid))
            urls = sw.controller_urls if sw.controller_urls is not None else net.controller_urls
            if ep is None:
                ep = VSwitchEndpoint(self, view, urls, tenant)
                ep.port_names = names
                self.endpoints[(net.id, vdpid)] = ep
                self.by_index[sw.index] = ep
                self.by_net_dpid[(net.id, sw.dpid)] = ep
                ep.start()
                log.info("%s: started with %d vports", ep.label, len(ports))
            else:
                ep.set_controllers(urls)
                ep.set_view(view, names)
        for key in [k for k in self.endpoints if k[0] == net.id and k[1] not in net.switches]:
            self._drop_endpoint(key)
        self._drop_groups(old_groups, groups)  # nothing refers to these any more
        self.markers.release_where(
            lambda o: isinstance(o, tuple) and o[0] == net.id and o not in used_owners
        )

    def _drop_endpoint(self, key: tuple[int, int]) -> None:
        ep = self.endpoints.pop(key)
        self.by_index.pop(ep.view.index, None)
        self.by_net_dpid.pop((ep.view.net_id, ep.view.dpid), None)
        ep.stop()
        ep.drop_all(self.sessions.get(ep.view.dpid))
        log.info("%s: stopped", ep.label)

    def _edge_groups(self, net: VirtualNetwork) -> dict[tuple[int, int], int]:
        """This network's edge vports' output groups (1.3 pswitches only): (dpid, group id)
        -> the port it outputs to, ids kept stable across re-derivations."""
        want: dict[tuple[int, int], int] = {}
        keep = set()
        for sw in net.switches.values():
            if self._is_of10(sw.dpid) or sw.dpid not in self.topo.switches:
                continue
            for n, vp in sw.ports.items():
                if vp.kind is not VPortKind.EDGE:
                    continue
                key = (sw.dpid, sw.index, n)
                ids = self.edge_group_ids.get(key)
                if ids is None:
                    tx, hp = self.alloc_id("group", sw.dpid), self.alloc_id("group", sw.dpid)
                    if tx is None or hp is None:
                        log.error("net=%d pswitch %016x has no group ids left", net.id, sw.dpid)
                        continue
                    ids = self.edge_group_ids[key] = (tx, hp)
                keep.add(key)
                want[(sw.dpid, ids[0])] = vp.port
                want[(sw.dpid, ids[1])] = ofp.OFPP_IN_PORT  # hairpin
        mine = {sw.index for sw in net.switches.values()}
        live = {sw.index for n in self.manager.networks.values() for sw in n.switches.values()}
        self._free_edge_groups(lambda k: (k[1] in mine and k not in keep) or k[1] not in live)
        return want

    def _free_edge_groups(self, which: Callable[[tuple[int, int, int]], bool]) -> None:
        for gkey in [k for k in self.edge_group_ids if which(k)]:
            for gid in self.edge_group_ids.pop(gkey):
                self.free_id("group", gkey[0], gid)

    @staticmethod
    def _send_group(s: PSwitchSession, msg: bytes) -> None:
        s.send_flow(lambda x: codec.set_xid(msg, x), None)

    def _apply_groups(self, net_id: int, want: dict[tuple[int, int], int]) -> None:
        """Send only what changed: a re-derivation must not reset the groups' counters."""
        old = self.installed_groups.get(net_id, {})
        for (dpid, gid), port in want.items():
            was = old.get((dpid, gid))
            if was != port and (s := self.sessions.get(dpid)) is not None:
                # the same id, another port: MODIFY, as ADD would fail
                command = ofp.OFPGC_ADD if was is None else ofp.OFPGC_MODIFY
                self._send_group(s, output_group(command, gid, port))
        self.installed_groups[net_id] = want

    def _drop_groups(
        self, old: dict[tuple[int, int], int], new: dict[tuple[int, int], int]
    ) -> None:
        """Delete the groups no vport uses any more, after the rules that output to them."""
        for dpid, gid in old:
            if (dpid, gid) not in new and (s := self.sessions.get(dpid)) is not None:
                self._send_group(s, delete_group(gid))

    def _apply_infra(self, net_id: int, new: dict[tuple[int, int, int, bytes], PhysFlow]) -> None:
        old = self.installed.get(net_id, {})
        for key, pf in old.items():
            if key not in new and (s := self.sessions.get(pf.dpid)) is not None:
                s.delete_rule(pf)
        for key, pf in new.items():
            if old.get(key) != pf and (s := self.sessions.get(pf.dpid)) is not None:
                s.send_rule(pf, self._infra_error(pf))
        self.installed[net_id] = new

    def _infra_error(self, pf: PhysFlow) -> ErrorCallback:
        def on_error(etype: int, code: int, data: bytes) -> None:
            log.error(
                "pswitch %016x refused a hypervisor rule (table %d prio %d): type=%d code=%d",
                pf.dpid, pf.table, pf.priority, etype, code,
            )  # fmt: skip

        return on_error

    def _teardown(self, net: VirtualNetwork) -> None:
        for key in [k for k in self.endpoints if k[0] == net.id]:
            self._drop_endpoint(key)
        self._apply_infra(net.id, {})
        self.installed.pop(net.id, None)
        self.classify.pop(net.id, None)
        self._drop_groups(self.installed_groups.pop(net.id, {}), {})
        indexes = {sw.index for sw in net.switches.values()}
        self._free_edge_groups(lambda k: k[1] in indexes)
        self.tags.release_where(lambda o: isinstance(o, tuple) and o[0] == net.id)
        self.markers.release_where(lambda o: isinstance(o, tuple) and o[0] == net.id)
        for s in self.sessions.values():  # anything left with this network's cookie
            s.delete_cookie(layout.net_cookie(net.id), layout.NET_COOKIE_MASK)

    # --- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "pswitches": [
                {
                    "dpid": dpid,
                    "peer": s.channel.peer,
                    "ports": len(s.ports),
                    "flow_mods_sent": s.flow_mods_sent,
                }
                for dpid, s in sorted(self.sessions.items())
            ],
            "links": len(self.topo.links()),
            "vswitches": [
                {
                    "network": ep.view.net_id,
                    "vdpid": ep.vdpid,
                    "dpid": ep.view.dpid,
                    "controllers_connected": len(ep.conns),
                    "flows": len(ep.table),
                    "packet_ins": ep.packet_ins,
                }
                for _, ep in sorted(self.endpoints.items())
            ],
        }
