"""The daemon: wiring between pswitch sessions, the intent layer, the compile and program
stages, and the vswitch endpoints.

Intent (virtual/manager.py) and the physical topology go into `compile.network` (pure), whose
desired state is rolled out by `program` (make before break across pswitches) and whose views
the endpoints translate tenant rules against.  A pswitch that (re)connects is read and sent
only the difference: it keeps forwarding throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.network import CompileCache, NetworkState, compile_network
from tenantvisor.errors import TenantvisorError
from tenantvisor.limits import METER_STATS_ALL, LimitHits, MeterCount, parse_meter_stats
from tenantvisor.mapping import layout
from tenantvisor.mapping.alloc import IdAllocator, IdSpaceExhausted, Space, owner_network
from tenantvisor.openflow import codec, messages, oxm
from tenantvisor.openflow.channel import coalesced
from tenantvisor.openflow.codec import MalformedMessage
from tenantvisor.persistence import Persister, RuntimeWriter, StoredTables
from tenantvisor.physical.links import LinkDiscovery
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.physical.topology import PhysicalTopology, PPort, PSwitchInfo
from tenantvisor.program import diff
from tenantvisor.program.networks import NetworkProgrammer
from tenantvisor.program.programmer import (
    SwitchDesired,
    sync,
)
from tenantvisor.program.timing import Reconfigurations
from tenantvisor.quotas import TenantLimits
from tenantvisor.translate import infra
from tenantvisor.translate.meter import LimitMeter
from tenantvisor.virtual import moves
from tenantvisor.virtual.budget import TenantBudget
from tenantvisor.virtual.endpoint import VSwitchEndpoint
from tenantvisor.virtual.flowtable import normalize
from tenantvisor.virtual.manager import NetworkManager
from tenantvisor.virtual.model import Tenant, VirtualNetwork, VPortKind
from tenantvisor.virtual.outbox import Outbox

log = logging.getLogger(__name__)
N_TABLES_OFFERED = 64
# after the BARRIERs that follow a change of the senders' tags, before the core's rules
# change: Open vSwitch revalidates its datapath flow cache on its own time
LEVEL_SETTLE = 0.05
PUNT_QUIET = 1.0  # s: one decision per (pswitch, port, MAC) in this while
RESERVE_ATTEMPTS = 8  # allocation races lost to other instances before a compile gives up
RESERVE_RETRY = 1.0  # seconds before compiling again when the store could not reserve ids
LIMIT_POLL = 2.0  # s between readings of the limit meters' statistics (limit hits)
Allocated = tuple[Space, Hashable, int]


class Hypervisor:
    def __init__(
        self,
        admin_token: str,
        lldp_interval: float = 1.0,
        n_tables: int = N_TABLES_OFFERED,
        max_rules: int = 100_000,
        tenant_limits: TenantLimits | None = None,
    ) -> None:
        self.topo = PhysicalTopology()
        self.manager = NetworkManager(self.topo, admin_token, tenant_limits)
        self.manager.listeners.append(self._intent_changed)
        self.manager.tenant_listeners.append(self._limits_changed)
        # per tenant: its limits as its running vswitches apply them (virtual/budget.py)
        self.budgets: dict[int, TenantBudget] = {}
        self.alloc = IdAllocator()  # every id that reaches the wire
        # several instances (cluster/): the networks this one answers for (None: all), the
        # pswitches whose provider rules it keeps (their OpenFlow MASTER), and where new ids
        # are reserved before they reach the wire: (space, owner, id) list -> ids another
        # instance holds, as (space, owner, id)
        self.owned: set[int] | None = None
        self.masters: Callable[[int], bool] = lambda dpid: True
        self.reserve: Callable[[list[Allocated]], list[Allocated]] | None = None
        self._unreserved: set[tuple[Space, Hashable]] = set()  # while reserving
        self.cluster_status: Callable[[], dict[str, Any]] | None = None
        self.sessions: dict[int, PSwitchSession] = {}
        self.persister: Persister | None = None  # with a store: runtime state goes there
        # after a restore: each vswitch's stored tables until the fabric has settled, and
        # the pswitches that connected meanwhile (not synced yet)
        self._restored: dict[tuple[int, int], StoredTables] | None = None
        self._held: list[PSwitchSession] = []
        self._expected: set[int] = set()  # after a restore: pswitches to wait for
        self._topo_changed_at = 0.0
        self.program = NetworkProgrammer(self.sessions, self.alloc)
        # per network, what its last compile may lend the next (a move recompiles it all)
        self._compile_caches: dict[int, CompileCache] = {}
        # per network change, its time to the rollout's last BARRIER reply (GET /v1/status)
        self.reconfigurations = Reconfigurations()
        self.endpoints: dict[tuple[int, int], VSwitchEndpoint] = {}
        self.outboxes: dict[int, Outbox] = {}  # per network: operations held for drops
        self.by_index: dict[int, VSwitchEndpoint] = {}
        self.by_net_dpid: dict[tuple[int, int], VSwitchEndpoint] = {}
        self.lldp_interval = lldp_interval
        self.n_tables = n_tables
        # a tenant's rules cost pswitch table space every tenant shares: bounded per vswitch
        self.max_rules = max_rules
        self.links = LinkDiscovery(self.topo, lldp_interval, self._topology_changed,
                                   self._edge_ports)  # fmt: skip
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reconcile_pending = False
        # messages the last sync sent each pswitch (0 when nothing had changed)
        self.sync_messages: dict[int, int] = {}
        # FLOW_MODs sent over earlier connections of each pswitch (a session counts its own)
        self._flow_mods_before: Counter[int] = Counter()
        # PACKET_INs / FLOW_REMOVEDs no vswitch claimed, by (dpid, message kind): normally
        # a rule or network removed while the message was on its way; metrics show them
        self.unclaimed: Counter[tuple[int, str]] = Counter()
        self._punts: dict[tuple[int, int, str], float] = {}  # last decision per port, MAC
        self._detected: tuple[int, float] | None = None  # (network, when) of a move being made
        # OpenFlow 1.0: (dpid, marker) -> (vswitch index, ingress vport, PACKET_IN reason)
        self.marker_owner: dict[tuple[int, int], tuple[int, int, int]] = {}
        # what the networks' data-plane limit meters let in and dropped (polled)
        self.limit_hits = LimitHits()

    # --- state kept across restarts ------------------------------------------------------------
    def restore(
        self,
        tenants: list[Tenant],
        networks: dict[int, VirtualNetwork],
        counters: dict[str, int],
        allocations: list[tuple[Space, Hashable, int]],
        tables: dict[tuple[int, int], StoredTables],
    ) -> None:
        """Everything the store kept (a restart), before any pswitch may connect: intent,
        the ids on the wire, and each vswitch's tables.

        Nothing is compiled yet: the fabric is unknown until the pswitches are back and LLDP
        has found their links again, and a vlink compiled over half a fabric would look
        down, its rules stale, its vports down to the tenant.  So pswitches that connect
        are held (they keep forwarding with what they have) until the topology has been
        quiet for two LLDP intervals (`_settle`); then every started network is compiled
        with the restored ids, the vswitches take their tables back and the pswitches are
        synced, finding what they have right: nothing is sent."""
        self.manager.restore(tenants, networks, counters)
        self.alloc.restore(allocations)
        # several instances: which networks this one takes is decided after the fabric has
        # settled (cluster/agent.py, with their tables read then), so it always waits
        several = self.owned is not None
        if several or any(n.started for n in networks.values()):
            self._restored = {} if several else tables
            # the pswitches the restored state lives on: those the vswitches and vports name,
            # and every one an id was allocated on (path tags name transit pswitches too)
            self._expected = {d for n in networks.values() if n.started
                              for sw in n.switches.values() for d in sw.dpids}  # fmt: skip
            self._expected |= {
                sp[1] for sp, _, _ in allocations
                if len(sp) > 1 and sp[0] in ("tag", "group", "marker", "meter")
                and isinstance(sp[1], int)
            }  # fmt: skip
        log.info(
            "restored %d tenants, %d networks (%d started), %d rules",
            len(tenants), len(networks), sum(n.started for n in networks.values()),
            sum(len(t.flows) for t in tables.values()),
        )  # fmt: skip

    async def _settle(self) -> None:
        """After a restore: wait for the fabric, then compile, restore tables and sync."""
        quiet = 2 * self.lldp_interval + 0.5
        start = time.monotonic()
        # Open vSwitch retries a lost controller after 1, 2, 4, then 8 s (measured on 3.1,
        # whatever max_backoff says): a pswitch may take ~16 s to come back after a restart
        limit = start + max(30.0, 6 * self.lldp_interval + 2.0)
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            missing = self._expected - set(self.sessions)
            if not missing and now - start >= quiet and now - self._topo_changed_at >= quiet:
                break
            if now > limit:
                gone = ", ".join(f"{d:016x}" for d in sorted(missing))
                log.warning("fabric not complete after %.0f s: pswitches %s never came back",
                            now - start, gone)  # fmt: skip
                break
        tables, self._restored = self._restored or {}, None
        self._reconcile_all()  # no pswitch synced yet: the endpoints are made at once
        for key, ep in self.endpoints.items():
            st = tables.get(key)
            if st is not None:
                ep.restore(st.flows, st.groups, st.meters)
        for ep in self.endpoints.values():  # reduction proofs read the neighbours' tables
            ep.replan()
        log.info(
            "fabric settled after %.1f s: %d pswitches, %d links; %d vswitches and %d rules back",
            time.monotonic() - start, len(self.sessions), len(self.topo.links()),
            len(self.endpoints), sum(len(ep.table) for ep in self.endpoints.values()),
        )  # fmt: skip
        held, self._held = self._held, []
        for s in held:
            if self.sessions.get(s.dpid or 0) is s and s.channel.is_open:
                self._sync(s)

    def attach(self, writer: RuntimeWriter) -> Persister:
        """From now on, runtime state is written to `writer` in batches."""
        self.persister = Persister(self, writer)
        return self.persister

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
        self._tasks.append(asyncio.ensure_future(self._limits_loop()))
        if self._restored is not None:
            self._tasks.append(asyncio.ensure_future(self._settle()))
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

    def alloc_id(self, kind: str, dpid: int, owner: Hashable) -> int | None:
        """A physical group or meter id on this pswitch for a tenant's group or meter
        (None: none left).  Same space as the compiler's own groups."""
        top = ofp.OFPG_MAX if kind == "group" else layout.PUNT_METER - 1
        for _ in range(RESERVE_ATTEMPTS):
            try:
                i = self.alloc.get((kind, dpid), owner, 1, top)
            except IdSpaceExhausted:
                return None
            try:
                if self._reserved():
                    return i
            except Exception as exc:  # the store is away: the tenant is told "none left"
                self.alloc.release((kind, dpid), owner)
                log.error("no %s id on pswitch %016x could be reserved: %s", kind, dpid, exc)
                return None
        log.error("no %s id on pswitch %016x: other instances took every one tried", kind, dpid)
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

    def peer_endpoint(self, net_id: int, vdpid: int) -> VSwitchEndpoint | None:
        return self.endpoints.get((net_id, vdpid))

    def outbox(self, net_id: int) -> Outbox:
        """The network's outbox (virtual/outbox.py), shared by its vswitches."""
        ob = self.outboxes.get(net_id)
        if ob is None:
            ob = self.outboxes[net_id] = Outbox(self.session)
        return ob

    def classified_counts(
        self, net_id: int, dpids: set[int], done: Callable[[dict[tuple[int, int], list[int]]], None]
    ) -> None:
        """Packets and bytes each vport of the network received, by (vdpid, vport): the
        counters of the table-0 rules that classified them, read from `dpids`.  These rules
        match only this network's packets, so no other tenant's traffic is ever counted."""
        st = self.program.states.get(net_id)
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

    def classify_dpids(self, net_id: int, vdpid: int) -> set[int]:
        """The pswitches holding a table-0 rule that admits packets into a vport of
        `vdpid` (its own pswitches, and where a host that moved away is)."""
        st = self.program.states.get(net_id)
        if st is None:
            return set()
        return {key[0] for key, into in st.classify.items() if into[0] == vdpid}

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
        if self._restored is not None:
            self._held.append(s)  # synced once the fabric is known again (_settle)
        else:
            self._sync(s)
        for other in self.sessions.values():  # its neighbours find it now, not in a second
            self.links.probe(other)
        self._topology_changed()

    def _sync(self, s: PSwitchSession) -> None:
        dpid = s.dpid or 0

        def synced(sent: int) -> None:
            s.synced = True
            self.sync_messages[dpid] = sent

        sync(s, lambda: self._desired_for(dpid, s), synced)

    def _desired_for(self, dpid: int, s: PSwitchSession) -> SwitchDesired:
        """Everything pswitch `dpid` should hold now: the provider's rules, every network's
        compiled rules and groups there, and the tenants' rules, groups and meters."""
        for ob in self.outboxes.values():
            if ob.busy:  # held operations and pending drops into the rule maps (and sent)
                ob.flush()
        # one table: discovery and an explicit drop (table misses go to the controller)
        one_table = not s.driver.multi_table
        punt = not one_table and s.driver.supports_meters and self.masters(dpid)
        want = SwitchDesired(
            rules=infra.provider_flows(dpid, of10=one_table, punt=punt)
            if self.masters(dpid)
            else [],
            may_delete_rule=self._may_delete_rule(dpid),
            may_delete_group=self._may_delete_id("group", dpid),
            may_delete_meter=self._may_delete_id("meter", dpid),
        )
        if punt:
            want.meters[layout.PUNT_METER] = infra.punt_meter()
        want.rules.extend(self.program.rules_on(dpid))
        want.groups.extend(self.program.groups_on(dpid))
        if s.driver.supports_meters:
            want.meters.update(
                (m.meter_id, (m.flags, m.bands)) for m in self.program.meters_on(dpid)
            )
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
        used = self.topo.is_link_port(s.dpid, port.port_no) or self._port_used(s.dpid, port.port_no)
        if reason == ofp.OFPPR_DELETE:
            self.topo.remove_port(s.dpid, port.port_no)
        else:
            self.topo.set_port(s.dpid, port)
            if port.up:
                # that port at once (a link found there re-compiles: LinkDiscovery); not
                # every port of the pswitch: a VM plugged in during a live migration would
                # have its neighbours' replies (~1.6 KB padded probes among them) arrive
                # while its move's rollout waits for BARRIER replies
                self.links.probe(s, only=port.port_no)
        if used:
            self._topology_changed()

    def _port_used(self, dpid: int, port: int) -> bool:
        """Whether a network maps a vport onto this physical port or has a host there: a
        port nothing uses (a migrating VM's new port, before it is told or detected) changes
        no network, and re-compiling them all would only delay the move itself."""
        for net in self.manager.networks.values():
            for sw in net.switches.values():
                if any((vp.dpid, vp.port) == (dpid, port) for vp in sw.ports.values()):
                    return True
            if any(h.location == (dpid, port) for h in net.hosts.values()):
                return True
        return False

    def packet_in(self, s: PSwitchSession, pi: codec.PacketIn) -> None:
        if not s.driver.packet_in_names_rule:
            self._packet_in_marked(s, pi)
            return
        if pi.cookie == layout.DISCOVERY_COOKIE:
            in_port = _in_port(pi)
            if in_port is not None:
                self.links.probe_in(s, in_port, pi.data, time.monotonic())
            return
        if pi.cookie == layout.PUNT_COOKIE:
            self._punted(s, pi)
            return
        meta = 0
        for o in pi.match:
            if o.field == oxm.METADATA:
                meta = codec.oxm_int(o)
                break
        ep = self.by_index.get(layout.meta_vswitch(meta))
        # a PACKET_OUT's output to CONTROLLER names no rule (its cookie is all ones): the
        # metadata the translation set says whose it is
        injected = pi.cookie == layout.ALL_ONES and meta & layout.INJECTED
        if (
            ep is None
            or s.dpid not in ep.views
            or (ep.view.net_id != pi.cookie >> layout.NET_SHIFT and not injected)
        ):
            if self.owns(pi.cookie >> layout.NET_SHIFT):  # else another instance's network
                self.unclaimed[(s.dpid or 0, "packet_in")] += 1
            return
        ep.packet_in(pi, meta)

    def _punted(self, s: PSwitchSession, pi: codec.PacketIn) -> None:
        """An (R)ARP nothing classified, from a host port: a host that moved here if it
        names one (virtual/moves.py), moved through the manager like an API-told move."""
        port, data = _in_port(pi), pi.data
        if s.dpid is None or port is None or len(data) < 14:
            return
        if self.topo.is_link_port(s.dpid, port):
            return  # a fabric port: not a host's
        mac = ":".join(f"{b:02x}" for b in data[6:12])
        now = time.monotonic()
        key = (s.dpid, port, mac)
        if now - self._punts.get(key, -PUNT_QUIET) < PUNT_QUIET:
            return  # said already (the meter limits the rate; this, the log)
        self._punts[key] = now
        if len(self._punts) > 4096:
            self._punts = {k: t for k, t in self._punts.items() if now - t < PUNT_QUIET}
        got = moves.detect(self.manager.networks.values(), s.dpid, port, mac)
        if isinstance(got, str):
            log.info("pswitch %016x port %d: a frame from %s moves no host: %s",
                     s.dpid, port, mac, got)  # fmt: skip
            return
        net_id, host_id = got
        if not self.owns(net_id):
            return  # its owner instance hears the same punt
        self._detected = (net_id, now)  # the reconfiguration is timed from the frame
        try:
            self.manager.move_host(net_id, host_id, s.dpid, port)
        except TenantvisorError as exc:
            log.warning("network %d: host %d (%s) seen on pswitch %016x port %d, not moved: "
                        "%s", net_id, host_id, mac, s.dpid, port, exc)  # fmt: skip
            return
        finally:
            self._detected = None
        log.info("network %d (%s): host %d (%s) moved to pswitch %016x port %d (detected)",
                 net_id, self._tenant_name(self.manager.networks[net_id]), host_id, mac,
                 s.dpid, port)  # fmt: skip

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
            self.links.probe_in(s, in_port, data, time.monotonic())

    def flow_removed(self, s: PSwitchSession, fr: codec.FlowRemoved) -> None:
        if fr.cookie & layout.INFRA_BIT:
            return
        net_id = fr.cookie >> layout.NET_SHIFT
        # A network has at most one vswitch per pswitch, so (network, dpid) names the endpoint
        # whose serial the cookie carries.
        ep = self.by_net_dpid.get((net_id, s.dpid or 0))
        if ep is not None:
            ep.flow_removed(fr.cookie & layout.SERIAL_MASK, fr, s.dpid or 0)
        elif self.owns(net_id):
            self.unclaimed[(s.dpid or 0, "flow_removed")] += 1

    # --- limits ------------------------------------------------------------------------------
    def budget(self, tenant_id: int) -> TenantBudget:
        """The tenant's budget, shared by its vswitches (made with its limits now)."""
        b = self.budgets.get(tenant_id)
        if b is None:
            t = self.manager.tenants.get(tenant_id)
            name = t.name if t is not None else str(tenant_id)
            b = self.budgets[tenant_id] = TenantBudget(
                tenant_id, name, self.manager.limits_of(tenant_id)
            )
        return b

    def _limits_changed(self, tenant: Tenant) -> None:
        """The admin changed a tenant's limits (here or through another instance): its
        running vswitches apply them at once."""
        b = self.budgets.get(tenant.id)
        if b is None:
            return
        b.limits = self.manager.limits_of(tenant.id)
        for ep in b.endpoints:
            ep.apply_limits()
        log.info(
            "tenant %s: limits now %s",
            tenant.name,
            ", ".join(f"{k}={v}" for k, v in sorted(tenant.limits.items())) or "defaults",
        )

    def tenant_usage(self, tenant_id: int) -> dict[str, Any]:
        """What the tenant's running vswitches hold and did (the API's quota view): rules,
        groups and meters held, refusals, and the rate counters (budget.COUNTERS)."""
        b = self.budgets.get(tenant_id)
        if b is None:
            used = dict.fromkeys(("rules", "groups", "meters"), 0)
            return {"used": used, "refused": {}, "counters": {}}
        return {
            "used": {k: b.used(k) for k in ("rules", "groups", "meters")},
            "refused": dict(b.refused),
            "counters": b.counters(),
        }

    # --- discovery ---------------------------------------------------------------------------
    async def _discovery_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lldp_interval)
            with coalesced():  # a probe per link port: one write per pswitch, not per probe
                self.links.tick(list(self.sessions.values()), time.monotonic())

    # --- data-plane limits -------------------------------------------------------------------
    async def _limits_loop(self) -> None:
        while True:
            await asyncio.sleep(LIMIT_POLL)
            with coalesced():
                self.poll_limits()

    def poll_limits(self) -> None:
        """Ask every pswitch holding limit meters of this instance's networks, or vswitches'
        PACKET_IN meters, for their statistics (one METER request each); `limit_hits` and
        the vswitches (`pin_metered`: what their meter dropped, kept monotonic) take the
        replies."""
        by_dpid: dict[int, list[tuple[int, LimitMeter]]] = {}
        for net_id, st in self.program.states.items():
            for (dpid, _), m in st.meters.items():
                by_dpid.setdefault(dpid, []).append((net_id, m))
        pins: dict[int, dict[int, VSwitchEndpoint]] = {}  # dpid -> meter id -> vswitch
        for ep in self.endpoints.values():
            for dpid, mid in ep.pin_meters.items():
                pins.setdefault(dpid, {})[mid] = ep
                by_dpid.setdefault(dpid, [])
        for dpid, meters in by_dpid.items():
            s = self.sessions.get(dpid)
            if s is None or not s.ready or not s.driver.supports_meters:
                continue

            def got(parts: list[bytes] | None, d: int = dpid,
                    ms: list[tuple[int, LimitMeter]] = meters) -> None:  # fmt: skip
                self.limit_hits.taken(d, ms, parts)
                for mid, (packets, dropped) in parse_meter_stats(parts).items():
                    ep = pins.get(d, {}).get(mid)
                    if ep is not None and ep.pin_meters.get(d) == mid:
                        ep.pin_metered.setdefault(d, MeterCount()).read(packets, dropped)

            s.multipart(ofp.OFPMP_METER, METER_STATS_ALL, got)

    def limit_report(self, net_id: int) -> list[dict[str, Any]]:
        """The network's limit meters in force, with what each let in and dropped."""
        st = self.program.states.get(net_id)
        return self.limit_hits.report(net_id, st.meters.values() if st is not None else ())

    def _edge_ports(self) -> set[tuple[int, int]]:
        """Physical ports some tenant uses as an edge vport: hosts live there."""
        return {
            (vp.dpid, vp.port)
            for net in self.manager.networks.values()
            for sw in net.switches.values()
            for vp in sw.ports.values()
            if vp.kind is VPortKind.EDGE
        }

    # --- intent -> runtime -------------------------------------------------------------------
    def _intent_changed(self, event: str, net: VirtualNetwork) -> None:
        if not self.owns(net.id):
            if event == "removed":  # its owner may be gone: masters clear what it left
                for dpid, s in self.sessions.items():
                    if s.synced and self.masters(dpid):
                        s.delete_cookie(layout.net_cookie(net.id), layout.NET_COOKIE_MASK)
            return
        if self._restored is not None:
            return  # compiled with everything else once the fabric settles
        if event in ("stopped", "removed"):
            self._teardown(net)
        elif self._detected is not None and self._detected[0] == net.id:
            self._reconcile(net, "detected", self._detected[1])
        else:
            self._reconcile(net, "intent")

    def _topology_changed(self) -> None:
        self._topo_changed_at = time.monotonic()
        if self._reconcile_pending:
            return
        self._reconcile_pending = True
        asyncio.get_running_loop().call_soon(self._reconcile_all)

    def _reconcile_all(self) -> None:
        self._reconcile_pending = False
        if self._restored is not None:
            return  # after a restore, nothing is compiled before the fabric settles
        for net in list(self.manager.networks.values()):
            if net.started and self.owns(net.id):
                self._reconcile(net, "topology")

    def _tenant_name(self, net: VirtualNetwork) -> str:
        t = self.manager.tenants.get(net.tenant_id)
        return t.name if t else str(net.tenant_id)

    def _reconcile(
        self, net: VirtualNetwork, cause: str = "topology", since: float | None = None
    ) -> None:
        """Compile this network and roll the difference out (program/networks.py); the
        endpoints take their new views once what they refer to is on the pswitches.  How
        long that took, from now (or `since`), goes to `reconfigurations` (`cause`:
        intent, detected (a host's move seen in the data plane), topology)."""
        timing = self.reconfigurations.start(net.id, cause, since)
        new = self._compile(net)
        if new is None:
            return
        net_id = net.id

        def installed(st: NetworkState) -> set[int]:
            live = self.manager.networks.get(net_id)
            if live is None or not live.started:
                return set()
            # the rollout waits for a BARRIER from each pswitch returned: only those the
            # endpoints wrote to, not every one they are on (a move re-translates the rules
            # of one vswitch; the slowest of 20 pswitches would set the pace)
            sent = {d: s.flow_mods_sent for d, s in self.sessions.items()}
            self._update_endpoints(live, st)
            return {d for d, s in self.sessions.items() if s.flow_mods_sent != sent.get(d)}

        timing.compiled()
        old = self.program.apply(new, installed, timing.done, timing.phase,
                                 uncommitted=self.manager.writing,
                                 moves=self.manager.moving)  # fmt: skip
        for key in old.markers:
            self.marker_owner.pop(key, None)
        self.marker_owner.update(new.markers)

    def _compile(self, net: VirtualNetwork) -> NetworkState | None:
        """The network's desired state, its new ids reserved in the store first when several
        instances share the fabric (None: no ids could be had; logged)."""
        for _ in range(RESERVE_ATTEMPTS):
            try:
                cache = self._compile_caches.setdefault(net.id, CompileCache())
                st = compile_network(net, self.topo, self.alloc, self.n_tables, cache,
                                     self.manager.default_limits)  # fmt: skip
            except IdSpaceExhausted as exc:
                log.error("network %d (%s): not compiled: %s", net.id, self._tenant_name(net), exc)
                return None
            try:
                if self._reserved():
                    return st
            except Exception as exc:  # the store is away: no id may reach the wire unreserved
                self.alloc.release_where(lambda sp, o: (sp, o) in self._unreserved)
                log.error("network %d (%s): not compiled, its new ids could not be reserved "
                          "(%s); trying again in %g s", net.id, self._tenant_name(net), exc,
                          RESERVE_RETRY)  # fmt: skip
                self._compile_later()
                return None
        log.error("network %d (%s): not compiled: other instances took every id it tried; "
                  "trying again in %g s", net.id, self._tenant_name(net),
                  RESERVE_RETRY)  # fmt: skip
        self._compile_later()
        return None

    def _compile_later(self) -> None:
        """Compile every network again in a while (ids could not be reserved now)."""
        # no event loop: a caller outside the daemon, which retries itself
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().call_later(RESERVE_RETRY, self._topology_changed)

    def _reserved(self) -> bool:
        """Whether the ids handed out since the last call are ours in the store too.  If
        another instance holds some, ours are given back and theirs marked taken: the caller
        allocates again (and gets other ids)."""
        if self.reserve is None:
            return True
        fresh = self.alloc.take_fresh()
        if not fresh:
            return True
        self._unreserved = {(sp, o) for sp, o, _ in fresh}
        lost = self.reserve(fresh)
        self._unreserved = set()
        if not lost:
            return True
        for space, owner, _ in fresh:
            self.alloc.release(space, owner)
        for space, owner, i in lost:
            self.alloc.hold_foreign(space, owner, i)
        log.info("%d ids were taken by another instance meanwhile: allocating again", len(lost))
        return False

    # --- several instances: what this one answers for ---------------------------------------
    def owns(self, net_id: int) -> bool:
        return self.owned is None or net_id in self.owned

    def _owns_owner(self, owner: Hashable) -> bool:
        net = owner_network(owner)
        return self.owned is None if net is None else self.owns(net)

    def _may_delete_rule(self, dpid: int) -> Callable[[int], bool]:
        """Rules of this instance's networks; the provider's, and those of networks no
        longer in the intent (left by a dead instance), where it is the pswitch's master."""
        if self.owned is None:
            return diff.is_ours
        master = self.masters(dpid)
        networks = self.manager.networks

        def may(cookie: int) -> bool:
            if not diff.is_ours(cookie):
                return False
            net = cookie >> layout.NET_SHIFT
            if net in self.owned:  # type: ignore[operator]
                return True
            return master and (net == 0 or net not in networks)

        return may

    def _may_delete_id(self, kind: str, dpid: int) -> Callable[[int], bool]:
        """Groups and meters by their allocation: this instance's networks' ids; ids nobody
        holds only where it is the pswitch's master."""
        if self.owned is None:
            return lambda i: True
        master = self.masters(dpid)

        def may(i: int) -> bool:
            owner = self.alloc.owner_of((kind, dpid), i)
            if owner is None:
                return master
            net = owner_network(owner)
            return net in self.owned if net is not None else master  # type: ignore[operator]

        return may

    def take(self, net_ids: set[int], tables: dict[tuple[int, int], StoredTables]) -> None:
        """Networks this instance answers for from now on (taken over from a dead instance,
        or newly assigned): compiled with the ids the store holds for them, their vswitches
        started with the tables the store kept, and every pswitch they live on re-read and
        sent only the difference (nothing, when the last owner left them right)."""
        assert self.owned is not None
        self.owned |= net_ids
        touched: set[int] = set()
        for net_id in sorted(net_ids):
            net = self.manager.networks.get(net_id)
            if net is None or not net.started:
                continue
            st = self._compile(net)
            if st is None:
                continue
            self.program.adopt(st)
            self.marker_owner.update(st.markers)
            touched |= {pf.dpid for pf in st.rules.values()}
            touched |= {d for d, _ in st.groups}
            touched |= {d for d, _ in st.meters}
            touched |= self._update_endpoints(net, st, resync=True)
            for key, ep in self.endpoints.items():
                if key[0] == net_id and (kept := tables.get(key)) is not None:
                    ep.restore(kept.flows, kept.groups, kept.meters)
            for key, ep in self.endpoints.items():
                if key[0] == net_id:  # reduction proofs read the neighbours' tables
                    ep.replan()
        for dpid in sorted(touched):
            s = self.sessions.get(dpid)
            if s is not None and s.synced:
                self._sync(s)
        if net_ids:
            log.info("took over networks %s: %d vswitches, %d pswitches re-read",
                     ", ".join(map(str, sorted(net_ids))),
                     sum(1 for k in self.endpoints if k[0] in net_ids), len(touched))  # fmt: skip

    def give_up(self, net_ids: set[int]) -> None:
        """Networks another instance answers for now (or this one lost its lease): their
        vswitches stop here, their rules stay on the pswitches for the new owner."""
        assert self.owned is not None
        self.owned -= net_ids
        if self.persister is not None:
            self.persister.collect()  # what their tenants changed last is still written
        for key in [k for k in self.endpoints if k[0] in net_ids]:
            ep = self.endpoints.pop(key)
            if self.by_index.get(ep.view.index) is ep:
                del self.by_index[ep.view.index]
            for d in ep.views:
                if self.by_net_dpid.get((ep.view.net_id, d)) is ep:
                    del self.by_net_dpid[(ep.view.net_id, d)]
            ep.stop("the vswitch moved to another tenantvisor instance")
        for net_id in net_ids:
            self.outboxes.pop(net_id, None)  # its vswitches flushed it when they stopped
            st = self.program.forget(net_id)
            for key in st.markers if st is not None else ():
                self.marker_owner.pop(key, None)
        if net_ids:
            log.warning("networks %s: given up (another instance answers for them)",
                        ", ".join(map(str, sorted(net_ids))))  # fmt: skip

    @property
    def restoring(self) -> bool:
        """After a start, until the fabric has settled (`_settle`)."""
        return self._restored is not None

    def set_master(self, dpid: int, master: bool, generation: int, resync: bool) -> None:
        """This instance keeps (or no longer keeps) the pswitch's provider rules: its
        OpenFlow role there follows; with `resync` (mastership moved) the pswitch is
        re-read, so the provider's rules and what a dead instance left are put right."""
        s = self.sessions.get(dpid)
        if s is None or not s.ready:
            return
        want = ofp.OFPCR_ROLE_MASTER if master else ofp.OFPCR_ROLE_EQUAL
        if (s.role != want or s.demoted) and s.request_role(want, generation):
            log.info("%r: %s", s, "this instance is master" if master else "equal")
        if resync and s.synced:
            self._sync(s)

    def demoted(self, s: PSwitchSession) -> None:
        """Another instance made itself MASTER here: be an equal again (this one's networks
        still need writing) and re-read the switch for what the refused writes missed."""
        s.request_role(ofp.OFPCR_ROLE_EQUAL)
        if s.synced:
            self._sync(s)

    def _update_endpoints(
        self, net: VirtualNetwork, st: NetworkState, resync: bool = False
    ) -> set[int]:
        """Create, re-view or stop the network's vswitch endpoints; the pswitches they may
        have sent to.  `resync`: the caller re-reads those pswitches next (a takeover), so
        new endpoints leave what they would install to that sync."""
        tenant = self._tenant_name(net)
        touched: set[int] = set()
        again: list[VSwitchEndpoint] = []  # re-plan once every vswitch has its new views
        level = net.scalability
        mine = [e for k, e in self.endpoints.items() if k[0] == net.id]
        entering = level == "lite" and any(e.level != "lite" for e in mine)
        if level != "lite":
            # leaving lite: the core's rules for untagged packets go in (on the views that
            # still have the tags) before any sender stops tagging
            for e in mine:
                if e.level == "lite":
                    e.level = level
                    e.replan()
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
                budget = self.budget(net.tenant_id)
                ep = VSwitchEndpoint(self, views, urls, tenant, budget, resync=resync)
                budget.endpoints.append(ep)
                ep.level = net.scalability
                if self.persister is not None:
                    ep.table.take_changes()  # its rules are journaled for the store
                ep.port_names = names
                self.endpoints[(net.id, vdpid)] = ep
                self.by_index[sw.index] = ep
                for d in views:
                    self.by_net_dpid[(net.id, d)] = ep
                ep.start()
                log.info("%s: started with %d vports", ep.label, len(sw.ports))
            else:
                ep.set_controllers(urls)
                stale = ep.set_views(views, names, replan=False) and ep.proofs_stale
                if stale or ep.level != level:
                    again.append(ep)
                if not entering:
                    ep.level = level
        if entering:
            # entering lite: the senders tag from now on (their rules re-translated above);
            # the core's rules for untagged packets stay until the pswitches have that
            self._replan_when_sent(net.id, level)
        elif again:
            # the proofs read the neighbours' rules and views (LITE tags): the vswitches
            # whose views changed and those at the other ends of their vlinks, senders'
            # rules already re-translated (a host that moves re-plans its own vswitch and
            # its neighbours, not the whole network)
            targets = list(again)
            for ep in again:
                targets += [p for p in ep.neighbours() if p not in targets]
            for ep in targets:
                if ep in again or ep.reducer is not None:
                    ep.replan()
        for key in [k for k in self.endpoints if k[0] == net.id and k[1] not in net.switches]:
            touched |= set(self.endpoints[key].views)
            self._drop_endpoint(key)
        return touched

    def _replan_when_sent(self, net_id: int, level: str) -> None:
        """Move the network's vswitches to `level` once every pswitch they are on has
        answered a BARRIER (what was sent so far is in its tables) and the datapath has
        had LEVEL_SETTLE to drop flows cached from before."""

        def go() -> None:
            net = self.manager.networks.get(net_id)
            if net is None or net.scalability != level:
                return  # changed again meanwhile: that change decides
            for ep in [e for k, e in self.endpoints.items() if k[0] == net_id]:
                ep.level = level
                ep.replan()

        sessions = {d: s for k, e in self.endpoints.items() if k[0] == net_id
                    for d in e.views if (s := self.session(d)) is not None}  # fmt: skip
        left = len(sessions)

        def answered() -> None:
            nonlocal left
            left -= 1
            if left == 0:
                try:
                    asyncio.get_running_loop().call_later(LEVEL_SETTLE, go)
                except RuntimeError:  # no event loop (a caller outside the daemon)
                    go()

        if not sessions:
            go()
        for sess in sessions.values():
            sess.barrier(answered)

    def _drop_endpoint(self, key: tuple[int, int]) -> None:
        ep = self.endpoints.pop(key)
        if self.by_index.get(ep.view.index) is ep:
            del self.by_index[ep.view.index]
        for d in ep.views:
            if self.by_net_dpid.get((ep.view.net_id, d)) is ep:
                del self.by_net_dpid[(ep.view.net_id, d)]
        ep.stop()
        ep.drop_all()
        if ep.budget is not None:
            ep.budget.forget(ep)  # the tenant's totals never go down
        if self.persister is not None:
            self.persister.vswitch_gone(key)
        log.info("%s: stopped", ep.label)

    def _teardown(self, net: VirtualNetwork) -> None:
        for key in [k for k in self.endpoints if k[0] == net.id]:
            self._drop_endpoint(key)
        ob = self.outboxes.pop(net.id, None)
        if ob is not None:
            ob.flush()
        self._compile_caches.pop(net.id, None)
        self.limit_hits.forget(net.id)
        st = self.program.remove(net.id)
        for key in st.markers if st is not None else ():
            self.marker_owner.pop(key, None)

    def flow_mods_total(self, dpid: int) -> int:
        """FLOW_MODs sent to a pswitch since the daemon started, over all its connections
        (monotonic, as a Prometheus counter must be)."""
        s = self.sessions.get(dpid)
        return self._flow_mods_before[dpid] + (s.flow_mods_sent if s is not None else 0)

    # --- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        out = self._status()
        if self.cluster_status is not None:
            out["cluster"] = self.cluster_status()
        return out

    def _status(self) -> dict[str, Any]:
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
                    "master": self.masters(dpid),  # keeps its provider rules (several instances)
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
            # the latest changes, from the change to the last BARRIER reply of its rollout
            "reconfigurations": self.reconfigurations.latest(),
        }


def _in_port(pi: codec.PacketIn) -> int | None:
    return next((codec.oxm_int(o) for o in pi.match if o.field == oxm.IN_PORT), None)
