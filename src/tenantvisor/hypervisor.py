"""The daemon: wiring between pswitch sessions, the intent layer, the compile and program
stages, and the vswitch endpoints.

Intent (virtual/manager.py) and the physical topology go into `compile.network` (pure), whose
desired state is rolled out by `program` (make before break across pswitches) and whose views
the endpoints translate tenant rules against.  A pswitch that (re)connects is read and sent
only the difference: it keeps forwarding throughout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.network import NetworkState, compile_network, release_unused
from tenantvisor.mapping import layout
from tenantvisor.mapping.alloc import IdAllocator, IdSpaceExhausted
from tenantvisor.openflow import codec, messages, oxm
from tenantvisor.openflow.codec import MalformedMessage
from tenantvisor.physical import discovery
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo
from tenantvisor.program import diff
from tenantvisor.program.programmer import (
    Rollout,
    SwitchDesired,
    send_group,
    send_group_delete,
    send_rule,
    sync,
)
from tenantvisor.translate import infra
from tenantvisor.virtual.endpoint import VSwitchEndpoint
from tenantvisor.virtual.flowtable import normalize
from tenantvisor.virtual.manager import NetworkManager
from tenantvisor.virtual.model import VirtualNetwork, VPortKind

log = logging.getLogger(__name__)
N_TABLES_OFFERED = 64


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
        self.alloc = IdAllocator()  # every id that reaches the wire
        self._tenant_ids = itertools.count(1)  # owners of tenants' group/meter ids
        self.states: dict[int, NetworkState] = {}  # compiled desired state per network
        self.sessions: dict[int, PSwitchSession] = {}
        self.endpoints: dict[tuple[int, int], VSwitchEndpoint] = {}
        self.by_index: dict[int, VSwitchEndpoint] = {}
        self.by_net_dpid: dict[tuple[int, int], VSwitchEndpoint] = {}
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
        # messages the last sync sent each pswitch (0 when nothing had changed)
        self.sync_messages: dict[int, int] = {}
        # FLOW_MODs sent over earlier connections of each pswitch (a session counts its own)
        self._flow_mods_before: Counter[int] = Counter()
        self._inflight: Counter[int] = Counter()  # rollouts under way per network
        # PACKET_INs / FLOW_REMOVEDs no vswitch claimed, by (dpid, message kind): normally
        # a rule or network removed while the message was on its way; metrics show them
        self.unclaimed: Counter[tuple[int, str]] = Counter()
        # OpenFlow 1.0: (dpid, marker) -> (vswitch index, ingress vport, PACKET_IN reason)
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

    def alloc_id(self, kind: str, dpid: int) -> int | None:
        """A physical group or meter id on this pswitch for some tenant's group or meter
        (None: none left).  Same space as the compiler's own groups."""
        top = ofp.OFPG_MAX if kind == "group" else ofp.OFPM_MAX
        try:
            return self.alloc.get((kind, dpid), ("tenant", next(self._tenant_ids)), 1, top)
        except IdSpaceExhausted:
            return None

    def free_id(self, kind: str, dpid: int, value: int) -> None:
        self.alloc.release_id((kind, dpid), value)

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
        st = self.states.get(net_id)
        keys = st.classify if st is not None else {}
        counts: dict[tuple[int, int], list[int]] = {}
        waiting = {d for d in dpids if (s := self.sessions.get(d)) is not None and s.ready}
        if not waiting:
            done(counts)
            return
        req = messages.flow_stats_request(
            cookie=layout.infra_cookie(net_id), cookie_mask=layout.ALL_ONES
        )

        def collect(dpid: int) -> Callable[[list[bytes] | None], None]:
            def parse(parts: list[bytes] | None) -> None:
                for body, off, length in codec.entries(parts, messages.FLOW_STATS.size + 8):
                    _, table, _, _, prio, *_, packets, nbytes = messages.FLOW_STATS.unpack_from(
                        body, off
                    )
                    try:
                        oxms, _ = codec.parse_match(
                            body[: off + length], off + messages.FLOW_STATS.size
                        )
                    except (MalformedMessage, codec.OFError):
                        continue  # not one of our classification rules
                    into = keys.get((dpid, table, prio, normalize(oxms)))
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
            PSwitchInfo(s.dpid, dict(s.ports), s.n_tables, of_version=s.driver.version)
        )
        dpid = s.dpid

        def synced(sent: int) -> None:
            s.synced = True
            self.sync_messages[dpid] = sent

        sync(s, lambda: self._desired_for(dpid, s), synced)
        for other in self.sessions.values():  # its neighbours find it now, not in a second
            self._probe(other)
        self._topology_changed()

    def _desired_for(self, dpid: int, s: PSwitchSession) -> SwitchDesired:
        """Everything pswitch `dpid` should hold now: the provider's rules, every network's
        compiled rules and groups there, and the tenants' rules, groups and meters."""
        # one table: discovery and an explicit drop (table misses go to the controller)
        one_table = not s.driver.multi_table
        want = SwitchDesired(rules=infra.provider_flows(dpid, of10=one_table))
        for st in self.states.values():
            want.rules.extend(pf for pf in st.rules.values() if pf.dpid == dpid)
            want.groups.extend(g for (d, _), g in st.groups.items() if d == dpid)
        for ep in self.endpoints.values():
            if dpid in ep.views:
                want.rules.extend(pf for pf in ep.rules.installed() if pf.dpid == dpid)
                want.groups.extend(ep.desired_groups(dpid))
                want.meters.update(ep.desired_meters(dpid))
        return want

    def switch_gone(self, s: PSwitchSession) -> None:
        """A lost control connection is not a lost switch: in fail_mode=secure it keeps
        forwarding with the rules it has, so it stays in the topology (marked disconnected)
        with its links, and nothing is re-derived.  If its cables really went, its
        neighbours report their ports down and that moves traffic away."""
        if s.dpid is not None and self.sessions.get(s.dpid) is s:
            del self.sessions[s.dpid]
            self._flow_mods_before[s.dpid] += s.flow_mods_sent
            info = self.topo.switches.get(s.dpid)
            if info is not None:
                info.connected = False
            log.warning("%r: control connection lost; its rules stay in force", s)

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

    def packet_in(self, s: PSwitchSession, pi: codec.PacketIn) -> None:
        if not s.driver.packet_in_names_rule:
            self._packet_in_marked(s, pi)
            return
        if pi.cookie == layout.DISCOVERY_COOKIE:
            in_port = _in_port(pi)
            if in_port is not None:
                self._lldp_in(s, in_port, pi.data)
            return
        meta = 0
        for o in pi.match:
            if o.field == oxm.METADATA:
                meta = codec.oxm_int(o)
                break
        ep = self.by_index.get(layout.meta_vswitch(meta))
        if ep is None or s.dpid not in ep.views or ep.view.net_id != pi.cookie >> layout.NET_SHIFT:
            self.unclaimed[(s.dpid or 0, "packet_in")] += 1
            return
        ep.packet_in(pi, meta)

    def _packet_in_marked(self, s: PSwitchSession, pi: codec.PacketIn) -> None:
        """A switch whose PACKET_IN names no rule (OpenFlow 1.0): our probes, and tenants'
        packets marked with a VLAN that names their ingress vport and reason."""
        data = pi.data
        if s.dpid is None:
            return
        if data[12:14] == b"\x81\x00" and len(data) >= 18:
            owner = self.marker_owner.get((s.dpid, codec.u16(data, 14) & 0xFFF))
            ep = None if owner is None else self.by_index.get(owner[0])
            if owner is not None and ep is not None and ep.view.dpid == s.dpid:
                ep.packet_in_marked(owner[1], data[:12] + data[16:], pi.total_len - 4, owner[2])
            return
        in_port = _in_port(pi)
        if in_port is not None:
            self._lldp_in(s, in_port, data)

    def flow_removed(self, s: PSwitchSession, fr: codec.FlowRemoved) -> None:
        if fr.cookie & layout.INFRA_BIT:
            return
        net_id = fr.cookie >> layout.NET_SHIFT
        # A network has at most one vswitch per pswitch, so (network, dpid) names the endpoint
        # whose serial the cookie carries.
        ep = self.by_net_dpid.get((net_id, s.dpid or 0))
        if ep is not None:
            ep.flow_removed(fr.cookie & layout.SERIAL_MASK, fr, s.dpid or 0)
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
            # no probe crosses a link of a pswitch we cannot talk to: its links age only
            # once it is back (or go when a neighbour reports the port down)
            down = {d for d, sw in self.topo.switches.items() if not sw.connected}
            for lk in self._link_seen:
                if lk.src_dpid in down or lk.dst_dpid in down:
                    self._link_seen[lk] = now
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

    def _synced(self, dpid: int) -> PSwitchSession | None:
        s = self.sessions.get(dpid)
        return s if s is not None and s.synced else None

    def _reconcile(self, net: VirtualNetwork) -> None:
        """Compile this network and roll the difference out, make before break: new rules
        and groups first; once every pswitch touched has confirmed them (barriers), what
        changed in place (failover groups, modified rules, the endpoints' views and so the
        tenants' re-translated rules); once those are confirmed, what is gone."""
        new = compile_network(net, self.topo, self.alloc, self.n_tables)
        # ids the network no longer uses are given back only once their rules are gone
        # everywhere (the last rollout's final phase): a tag reused at once could match this
        # network's packets still in flight under another network's rule
        self._inflight[net.id] += 1
        old = self.states.get(net.id) or NetworkState(net.id)
        self.states[net.id] = new
        for key in old.markers:
            self.marker_owner.pop(key, None)
        self.marker_owner.update(new.markers)
        rules = diff.diff_rules(old.rules, new.rules)
        groups = diff.diff_groups(old.groups, new.groups)
        net_id = net.id

        def current() -> NetworkState | None:
            st = self.states.get(net_id)
            return st if st is new else None  # a later compile took over from here

        def add() -> set[int]:
            touched = set()
            for g in groups.add:
                if (s := self._synced(g.dpid)) is not None:
                    send_group(s, g, ofp.OFPGC_ADD)
                    touched.add(g.dpid)
            for pf in rules.add:
                if (s := self._synced(pf.dpid)) is not None:
                    send_rule(s, pf, ofp.OFPFC_ADD)
                    touched.add(pf.dpid)
            return touched

        def modify() -> Iterable[int]:
            # a later compile may have changed an item again: it sends its own value then
            st = self.states.get(net_id) or NetworkState(net_id)
            touched = set()
            for g in groups.modify:
                key = (g.dpid, g.group_id)
                if st.groups.get(key) == g and (s := self._synced(g.dpid)) is not None:
                    send_group(s, g, ofp.OFPGC_MODIFY)
                    touched.add(g.dpid)
            for pf in rules.modify:
                if st.rules.get(pf.key) == pf and (s := self._synced(pf.dpid)) is not None:
                    send_rule(s, pf, ofp.OFPFC_MODIFY_STRICT)
                    touched.add(pf.dpid)
            live = self.manager.networks.get(net_id)
            if current() is not None and live is not None and live.started:
                touched |= self._update_endpoints(live, new)
            return touched

        def delete() -> Iterable[int]:
            st = self.states.get(net_id) or NetworkState(net_id)
            touched = set()
            for pf in rules.delete:
                if pf.key not in st.rules and (s := self._synced(pf.dpid)) is not None:
                    send_rule(s, pf, ofp.OFPFC_DELETE_STRICT)
                    touched.add(pf.dpid)
            for key, g in old.groups.items():
                if key not in st.groups and (s := self._synced(g.dpid)) is not None:
                    send_group_delete(s, g.group_id)
                    touched.add(g.dpid)
            return touched

        def release() -> Iterable[int]:
            self._inflight[net_id] -= 1
            if self._inflight[net_id] <= 0:
                del self._inflight[net_id]
                st = self.states.get(net_id)
                release_unused(self.alloc, net_id, st.owners if st is not None else set())
            return ()

        Rollout(self.sessions).then(add).then(modify).then(delete).then(release).start()

    def _update_endpoints(self, net: VirtualNetwork, st: NetworkState) -> set[int]:
        """Create, re-view or stop the network's vswitch endpoints; the pswitches they may
        have sent to."""
        tenant = self._tenant_name(net)
        touched: set[int] = set()
        for vdpid, sw in net.switches.items():
            views = {d: st.views[(vdpid, d)] for d in sw.dpids if (vdpid, d) in st.views}
            if not views:
                continue
            touched |= set(views)
            names = st.port_names.get(vdpid, {})
            ep = self.endpoints.get((net.id, vdpid))
            urls = sw.controller_urls if sw.controller_urls is not None else net.controller_urls
            if ep is not None and set(ep.views) != set(views):
                self._drop_endpoint((net.id, vdpid))  # its pswitches changed: start anew
                ep = None
            if ep is None:
                ep = VSwitchEndpoint(self, views, urls, tenant)
                ep.port_names = names
                self.endpoints[(net.id, vdpid)] = ep
                self.by_index[sw.index] = ep
                for d in views:
                    self.by_net_dpid[(net.id, d)] = ep
                ep.start()
                log.info("%s: started with %d vports", ep.label, len(sw.ports))
            else:
                ep.set_controllers(urls)
                ep.set_views(views, names)
        for key in [k for k in self.endpoints if k[0] == net.id and k[1] not in net.switches]:
            touched |= set(self.endpoints[key].views)
            self._drop_endpoint(key)
        return touched

    def _drop_endpoint(self, key: tuple[int, int]) -> None:
        ep = self.endpoints.pop(key)
        if self.by_index.get(ep.view.index) is ep:
            del self.by_index[ep.view.index]
        for d in ep.views:
            if self.by_net_dpid.get((ep.view.net_id, d)) is ep:
                del self.by_net_dpid[(ep.view.net_id, d)]
        ep.stop()
        ep.drop_all()
        log.info("%s: stopped", ep.label)

    def _teardown(self, net: VirtualNetwork) -> None:
        for key in [k for k in self.endpoints if k[0] == net.id]:
            self._drop_endpoint(key)
        st = self.states.pop(net.id, None)
        if st is not None:
            for pf in st.rules.values():
                if (s := self._synced(pf.dpid)) is not None:
                    send_rule(s, pf, ofp.OFPFC_DELETE_STRICT)
            for g in st.groups.values():
                if (s := self._synced(g.dpid)) is not None:
                    send_group_delete(s, g.group_id)
            for key in st.markers:
                self.marker_owner.pop(key, None)
        if not self._inflight.get(net.id):  # else the last rollout gives them back
            release_unused(self.alloc, net.id, set())
        for s in self.sessions.values():  # anything left with this network's cookie
            if s.synced:
                s.delete_cookie(layout.net_cookie(net.id), layout.NET_COOKIE_MASK)

    def flow_mods_total(self, dpid: int) -> int:
        """FLOW_MODs sent to a pswitch since the daemon started, over all its connections
        (monotonic, as a Prometheus counter must be)."""
        s = self.sessions.get(dpid)
        return self._flow_mods_before[dpid] + (s.flow_mods_sent if s is not None else 0)

    # --- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return {
            "pswitches": [
                {
                    "dpid": dpid,
                    "peer": s.channel.peer,
                    "ports": len(s.ports),
                    "flow_mods_sent": s.flow_mods_sent,
                    "flow_mods_total": self.flow_mods_total(dpid),
                    "synced": s.synced,
                    "sync_messages": self.sync_messages.get(dpid, 0),
                }
                for dpid, s in sorted(self.sessions.items())
            ],
            "links": len(self.topo.links()),
            "vswitches": [
                {
                    "network": ep.view.net_id,
                    "vdpid": ep.vdpid,
                    "dpid": ep.view.dpid,
                    "dpids": sorted(ep.views),
                    "controllers_connected": len(ep.conns),
                    "flows": len(ep.table),
                    "packet_ins": ep.packet_ins,
                }
                for _, ep in sorted(self.endpoints.items())
            ],
        }


def _in_port(pi: codec.PacketIn) -> int | None:
    return next((codec.oxm_int(o) for o in pi.match if o.field == oxm.IN_PORT), None)
