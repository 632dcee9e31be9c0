"""One fuzz input through a vswitch, in process: framing, decoding, handling, translation.

An input is two configuration bytes and then the bytes a tenant controller sends on one
connection.  The harness builds a fresh virtual network for it (so every input reproduces
on its own), connects a real `ControllerConn` (real `Channel`, fake transport) to the
vswitch under test, does the HELLO exchange itself unless the configuration asks for the
stream's own, feeds the stream (whole or in small reads), and plays the pswitches: real
`PSwitchSession`s with their real drivers, whose output is read back, checked, and answered
as a switch would (barrier and statistics replies, and refusals when asked to).

What is a finding (`Finding`), beyond an exception that leaves `data_received`:

* anything logged at ERROR: the endpoint's and the channel's catch-alls log there, so an
  exception they turned into an EPERM error is still a bug found;
* output to the tenant or a pswitch that is not a sequence of well-formed frames of the
  connection's version, or a physical FLOW_MOD/PACKET_OUT/GROUP_MOD our own parsers refuse;
* isolation: a physical rule whose cookie is not the tenant network's, a tenant rule in the
  hypervisor's classification table, or an output (rule, group bucket, PACKET_OUT) to a
  physical port that none of the vswitch's vports uses (FLOOD, ALL, NORMAL, LOCAL, ...);
* a request (ECHO, FEATURES, GET_CONFIG, BARRIER, MULTIPART, ROLE, GET_ASYNC, ...) that got
  neither its reply nor an ERROR while the connection stayed open: a silent drop.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

from os_ken.ofproto import ofproto_v1_0 as o10
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.openflow import codec, of10
from tenantvisor.openflow.channel import Channel, hello
from tenantvisor.physical.session import PSwitchSession, driver_for
from tenantvisor.physical.topology import PPort
from tenantvisor.translate.view import PortMap, VSwitchView
from tenantvisor.virtual.endpoint import ControllerConn, VSwitchEndpoint
from tenantvisor.virtual.outbox import Outbox

NET = 1
MAC1, MAC2, MAC3, MAC4 = (f"02:00:00:00:00:0{i}" for i in range(1, 5))

# --- the configuration bytes ---------------------------------------------------------------
CONFIG_BYTES = 2
# byte 0
OF10_CONTROLLER = 0x01  # the tenant's controller speaks OpenFlow 1.0 (else 1.3)
NETWORK_SHIFT, NETWORK_MASK = 1, 0x06  # which network (NETWORKS)
CHUNKED = 0x08  # the stream arrives in small reads (CHUNK_SIZES), not one
RAW_HELLO = 0x10  # the stream carries the controller's own HELLO (negotiation is fuzzed)
REFUSING = 0x20  # the pswitches refuse every other FLOW_MOD/GROUP_MOD/METER_MOD/PACKET_OUT
SECOND_CONTROLLER = 0x40  # a second (OpenFlow 1.3) controller is connected to the vswitch
# byte 1
LEVEL_MASK = 0x03  # the reduced network's scalability level (LEVELS)
CHUNK_SHIFT, CHUNK_MASK = 2, 0x0C  # the read size when CHUNKED (CHUNK_SIZES)
SPINE = 0x10  # in the reduced network, fuzz the spine vswitch instead of a leaf
NETWORKS = ("single", "big", "reduced", "of10")
LEVELS = ("hop", "host", "app", "exact")
CHUNK_SIZES = (1, 3, 8, 61)


def config(
    of10_controller: bool = False, network: str = "single", chunk: int | None = None,
    raw_hello: bool = False, refusing: bool = False, second: bool = False,
    level: str = "hop", spine: bool = False,
) -> bytes:  # fmt: skip
    """The two configuration bytes an input starts with."""
    b0 = (OF10_CONTROLLER if of10_controller else 0) | NETWORKS.index(network) << NETWORK_SHIFT
    b0 |= (CHUNKED if chunk is not None else 0) | (RAW_HELLO if raw_hello else 0)
    b0 |= (REFUSING if refusing else 0) | (SECOND_CONTROLLER if second else 0)
    b1 = LEVELS.index(level) | CHUNK_SIZES.index(chunk or 1) << CHUNK_SHIFT
    return bytes((b0, b1 | (SPINE if spine else 0)))


@dataclass(frozen=True, slots=True)
class Config:
    of10_controller: bool
    network: str
    chunk: int | None
    raw_hello: bool
    refusing: bool
    second: bool
    level: str
    spine: bool

    @classmethod
    def parse(cls, data: bytes) -> Config:
        b0, b1 = (data + b"\0\0")[:2]
        return cls(
            bool(b0 & OF10_CONTROLLER),
            NETWORKS[(b0 & NETWORK_MASK) >> NETWORK_SHIFT],
            CHUNK_SIZES[(b1 & CHUNK_MASK) >> CHUNK_SHIFT] if b0 & CHUNKED else None,
            bool(b0 & RAW_HELLO),
            bool(b0 & REFUSING),
            bool(b0 & SECOND_CONTROLLER),
            LEVELS[b1 & LEVEL_MASK],
            bool(b1 & SPINE),
        )


class Finding(Exception):
    """What the fuzzer reports: a crash, a malformed or leaking output, a silent drop."""


# --- the fakes around the real parts ---------------------------------------------------------
class _Transport(asyncio.Transport):
    """Collects what a channel writes; never pushes back."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("fuzz", 0) if name == "peername" else default


class _Events:
    """A pswitch session's owner: the harness reads the session's output instead."""

    def switch_ready(self, s: PSwitchSession) -> None: ...

    def switch_gone(self, s: PSwitchSession) -> None: ...

    def port_status(self, s: PSwitchSession, port: PPort, reason: int) -> None: ...

    def packet_in(self, s: PSwitchSession, pi: codec.PacketIn) -> None: ...

    def flow_removed(self, s: PSwitchSession, fr: codec.FlowRemoved) -> None: ...

    def demoted(self, s: PSwitchSession) -> None: ...


def _session(dpid: int, version: int) -> tuple[PSwitchSession, _Transport]:
    """A connected, synced pswitch session over the driver for `version`."""
    s = PSwitchSession(_Events())
    t = _Transport()
    ch = s.channel
    ch.transport = t
    ch.version = version
    s.driver = driver_for(version)
    if version == codec.VERSION:
        s.driver.n_tables = 254
    s.dpid = dpid
    s.ready = s.synced = True
    return s, t


class _Host:
    """The daemon as the endpoints see it (EndpointHost): sessions, vlinks, ids, outbox.
    Freeing an id that is not held raises (a double free is a bug found)."""

    max_rules = 48  # small, so TABLE_FULL is reachable

    def __init__(self, sessions: dict[int, PSwitchSession]) -> None:
        self.sessions = sessions
        self.links: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.eps: dict[int, VSwitchEndpoint] = {}
        self.held: dict[tuple[str, int], set[int]] = {}
        self._outbox = Outbox(self.session)

    def session(self, dpid: int) -> PSwitchSession | None:
        return self.sessions.get(dpid)

    def deliver_lldp(self, net_id: int, vdpid: int, vport: int, data: bytes) -> None:
        got = self.links.get((vdpid, vport))
        peer = None if got is None else self.eps.get(got[1])
        if got is not None and peer is not None:
            peer.lldp_in(got[2], data)

    def vlink_peer(self, net_id: int, vdpid: int, vport: int) -> tuple[int, int, int] | None:
        return self.links.get((vdpid, vport))

    def peer_endpoint(self, net_id: int, vdpid: int) -> VSwitchEndpoint | None:
        return self.eps.get(vdpid)

    def classified_counts(
        self, net_id: int, dpids: set[int], done: Callable[[dict[tuple[int, int], list[int]]], None]
    ) -> None:
        done({})

    def classify_dpids(self, net_id: int, vdpid: int) -> set[int]:
        """Where the vswitch's packets are classified: its own pswitches (no host moved)."""
        ep = self.eps.get(vdpid)
        return set(ep.views) if ep is not None else set()

    def alloc_id(self, kind: str, dpid: int, owner: Hashable) -> int | None:
        held = self.held.setdefault((kind, dpid), set())
        free = next((i for i in range(1, 9) if i not in held), None)
        if free is not None:
            held.add(free)
        return free

    def free_id(self, kind: str, dpid: int, value: int) -> None:
        held = self.held.get((kind, dpid), set())
        if value not in held:
            raise Finding(f"{kind} id {value} on pswitch {dpid} freed but not held")
        held.remove(value)

    def outbox(self, net_id: int) -> Outbox:
        return self._outbox


@dataclass
class Network:
    """The vswitch under test, its neighbours, and the pswitches under them."""

    host: _Host
    ep: VSwitchEndpoint
    transports: dict[int, _Transport]
    allowed: dict[int, set[int]]  # physical ports each pswitch may output to for it
    eps: list[VSwitchEndpoint] = field(default_factory=list)


def _allowed(views: list[VSwitchView]) -> dict[int, set[int]]:
    """Per pswitch, the physical ports the vswitch's vports use (their own and their paths'
    first hops): what tenant-caused outputs may name, with IN_PORT, TABLE and CONTROLLER."""
    out: dict[int, set[int]] = {}
    for v in views:
        ports = out.setdefault(v.dpid, {ofp.OFPP_IN_PORT, ofp.OFPP_TABLE, ofp.OFPP_CONTROLLER})
        for pm in v.ports.values():
            ports.add(pm.phys_port)
            ports.update(p for p, _ in pm.exits)
    return out


def build_network(cfg: Config) -> Network:
    """A fresh network of the configured kind (NETWORKS)."""
    if cfg.network == "reduced":
        return _reduced(cfg)
    if cfg.network == "of10":
        view = VSwitchView(
            NET, 7, 0x77, 5, 1,
            {1: PortMap(1, 11, macs=(MAC1, MAC2)), 2: PortMap(2, 12, 40, True, in_tag=9),
             3: PortMap(3, 13, macs=(MAC3,), up=False)},
            True, {0: (100, 101), 1: (102, 103), 2: (104, 105), 3: (106, 107)},
        )  # fmt: skip
        views = {5: view}
        sessions = {5: _session(5, of10.V10)}
    elif cfg.network == "big":
        first = VSwitchView(NET, 3, 0x33, 7, 4, {
            1: PortMap(1, 11, tx_group=901, hairpin_group=902, hosts=(MAC1,)),
            2: PortMap(2, 12, hosts=(MAC2,)),
            4: PortMap(4, 2, link_tag=7, is_link=True, exits=((2, 7),), remote=True),
        })  # fmt: skip
        other = VSwitchView(NET, 3, 0x33, 8, 4, {
            1: PortMap(1, 3, link_tag=8, is_link=True, exits=((3, 8),), remote=True),
            2: PortMap(2, 3, link_tag=9, is_link=True, exits=((3, 9),), remote=True),
            4: PortMap(4, 5, tx_group=911, hairpin_group=912, hosts=(MAC3,)),
        })  # fmt: skip
        views = {7: first, 8: other}
        sessions = {7: _session(7, codec.VERSION), 8: _session(8, codec.VERSION)}
    else:
        views = {7: VSwitchView(NET, 3, 0xA1, 7, 4, {
            1: PortMap(1, 11, tx_group=901, hairpin_group=902, hosts=(MAC1,)),
            2: PortMap(2, 12, hosts=(MAC2,)),
            3: PortMap(3, 13, link_tag=21, is_link=True, exits=((13, 21),)),
            4: PortMap(4, 13, link_tag=22, is_link=True, exits=((13, 22),)),
            5: PortMap(5, 14, link_tag=23, is_link=True, up=False),
        })}  # fmt: skip
        sessions = {7: _session(7, codec.VERSION), 8: _session(8, codec.VERSION)}
    host = _Host({d: s for d, (s, _) in sessions.items()})
    ep = VSwitchEndpoint(host, views, [], "fuzz")
    host.eps[ep.vdpid] = ep
    net = Network(host, ep, {d: t for d, (_, t) in sessions.items()}, _allowed([*views.values()]))
    net.eps.append(ep)
    if cfg.network == "single":  # a neighbour over two vlinks sharing an uplink
        peer_view = VSwitchView(NET, 4, 0xB2, 8, 4, {
            1: PortMap(1, 21, link_tag=31, is_link=True, exits=((21, 31),)),
            2: PortMap(2, 21, link_tag=32, is_link=True, exits=((21, 32),)),
            3: PortMap(3, 22, hosts=(MAC3,)),
        })  # fmt: skip
        peer = VSwitchEndpoint(host, {8: peer_view}, [], "fuzz")
        host.eps[peer.vdpid] = peer
        net.eps.append(peer)
        for a, b in ((3, 1), (4, 2)):
            host.links[(ep.vdpid, a)] = (8, peer.vdpid, b)
            host.links[(peer.vdpid, b)] = (7, ep.vdpid, a)
        for d, ports in _allowed([peer_view]).items():  # what it sends on, for its own rules
            net.allowed.setdefault(d, set()).update(ports)
    return net


def _reduced(cfg: Config) -> Network:
    """Leaf-spine lf1 (hosts on 1, 2) - sp1 - lf2 (hosts on 1, 2) at a reduction level."""
    switches = {"lf1": 1, "sp1": 2, "lf2": 3}
    links = {("lf1", 3): ("sp1", 1), ("sp1", 2): ("lf2", 3)}
    sessions = {d: _session(d, codec.VERSION) for d in switches.values()}
    host = _Host({d: s for d, (s, _) in sessions.items()})
    ports: dict[str, dict[int, PortMap]] = {sw: {} for sw in switches}
    tag = 100
    for (a, pa), (b, pb) in links.items():
        for sw, n, other, on in ((a, pa, b, pb), (b, pb, a, pa)):
            tag += 1
            ports[sw][n] = PortMap(n, n, tag, True, True, exits=((n, tag),))
            host.links[(100 + switches[sw], n)] = (switches[other], 100 + switches[other], on)
    for k, sw in enumerate(("lf1", "lf2")):
        for n in (1, 2):
            ports[sw][n] = PortMap(n, n, hosts=(f"02:00:00:00:00:{2 * k + n:02x}",))
    eps: dict[str, VSwitchEndpoint] = {}
    views = []
    for i, (sw, dpid) in enumerate(switches.items()):
        view = VSwitchView(NET, i + 1, 100 + dpid, dpid, 4, ports[sw])
        views.append(view)
        ep = VSwitchEndpoint(host, {dpid: view}, [], "fuzz")
        ep.set_level(cfg.level)
        host.eps[100 + dpid] = eps[sw] = ep
    under = eps["sp1" if cfg.spine else "lf1"]
    net = Network(host, under, {d: t for d, (_, t) in sessions.items()}, _allowed(views))
    net.eps.extend(eps.values())
    return net


# --- reading frames --------------------------------------------------------------------------
def frames(buf: bytes | bytearray, who: str) -> Iterator[bytes]:
    """The frames of what was written to `who`; a partial or impossible one is a finding."""
    off, n = 0, len(buf)
    while off < n:
        if n - off < 8:
            raise Finding(f"{who}: {n - off} trailing bytes, not a frame")
        length = (buf[off + 2] << 8) | buf[off + 3]
        if length < 8 or off + length > n:
            raise Finding(f"{who}: frame length {length} at {off} of {n} bytes")
        yield bytes(buf[off : off + length])
        off += length


def stream_frames(stream: bytes) -> Iterator[bytes]:
    """The complete frames a channel reads from `stream`, up to one it must refuse."""
    off, n = 0, len(stream)
    while n - off >= 8:
        length = (stream[off + 2] << 8) | stream[off + 3]
        if length < 8 or off + length > n:
            return
        yield stream[off : off + length]
        off += length


# Requests a switch must answer, by version: a reply, or an ERROR with the request's xid.
_REQUESTS = {
    codec.VERSION: frozenset((
        ofp.OFPT_ECHO_REQUEST, ofp.OFPT_FEATURES_REQUEST, ofp.OFPT_GET_CONFIG_REQUEST,
        ofp.OFPT_BARRIER_REQUEST, ofp.OFPT_MULTIPART_REQUEST, ofp.OFPT_ROLE_REQUEST,
        ofp.OFPT_GET_ASYNC_REQUEST, ofp.OFPT_QUEUE_GET_CONFIG_REQUEST,
    )),
    of10.V10: frozenset((
        o10.OFPT_ECHO_REQUEST, o10.OFPT_FEATURES_REQUEST, o10.OFPT_GET_CONFIG_REQUEST,
        o10.OFPT_BARRIER_REQUEST, o10.OFPT_STATS_REQUEST, o10.OFPT_QUEUE_GET_CONFIG_REQUEST,
    )),
}  # fmt: skip
_MULTIPART = {codec.VERSION: ofp.OFPT_MULTIPART_REQUEST, of10.V10: o10.OFPT_STATS_REQUEST}
_MORE = {codec.VERSION: ofp.OFPMPF_REQ_MORE, of10.V10: 1}


def _expects_answer(msg: bytes, version: int) -> bool:
    if msg[0] != version:
        return True  # BAD_VERSION
    t = msg[1]
    if t not in _REQUESTS[version]:
        return False
    if t == _MULTIPART[version]:
        # a request in several parts is answered after its last; a truncated one is refused
        return len(msg) < 12 or not codec.u16(msg, 10) & _MORE[version]
    return True


# --- the pswitches ---------------------------------------------------------------------------
_REFUSALS13 = {
    ofp.OFPT_FLOW_MOD: (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL),
    ofp.OFPT_GROUP_MOD: (ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS),
    ofp.OFPT_METER_MOD: (ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS),
    ofp.OFPT_PACKET_OUT: (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT),
}
_REFUSALS10 = {
    o10.OFPT_FLOW_MOD: (o10.OFPET_FLOW_MOD_FAILED, o10.OFPFMFC_ALL_TABLES_FULL),
    o10.OFPT_PACKET_OUT: (o10.OFPET_BAD_ACTION, o10.OFPBAC_BAD_OUT_PORT),
}


class _Switch:
    """Reads one pswitch session's output, checks it, and answers as the switch would."""

    def __init__(self, net: Network, dpid: int, refusing: bool) -> None:
        self.net = net
        self.dpid = dpid
        self.session = net.host.sessions[dpid]
        self.transport = net.transports[dpid]
        self.version = self.session.channel.version
        self.allowed = net.allowed.get(dpid, set())
        self.refusing = refusing
        self.read = 0
        self.writes = 0

    def step(self) -> bool:
        """Handle what was written since the last step; whether there was anything."""
        out = self.transport.out
        if len(out) == self.read:
            return False
        new = bytes(out[self.read :])
        self.read = len(out)
        replies = []
        for msg in frames(new, f"pswitch {self.dpid}"):
            replies.extend(self._answer(msg))
        ch = self.session.channel
        for reply in replies:
            if ch.is_open:
                ch.data_received(reply)
        return True

    def _answer(self, msg: bytes) -> list[bytes]:
        v, t, xid = msg[0], msg[1], codec.u32(msg, 4)
        if v != self.version:
            raise Finding(f"pswitch {self.dpid}: version {v} message to a version {self.version}")
        if v == codec.VERSION:
            self._check13(msg)
            refusals = _REFUSALS13
            barrier, stats = ofp.OFPT_BARRIER_REQUEST, ofp.OFPT_MULTIPART_REQUEST
        else:
            self._check10(msg)
            refusals = _REFUSALS10
            barrier, stats = o10.OFPT_BARRIER_REQUEST, o10.OFPT_STATS_REQUEST
        if t == barrier:
            return [codec.header(v, t + 1, xid)]
        if t == stats:
            head = msg[8:12] if v == of10.V10 else msg[8:10] + b"\0" * 6
            return [codec.header(v, t + 1, xid, head)]
        if t in refusals:
            self.writes += 1
            if self.refusing and self.writes % 2 == 0:
                return [codec.error_msg(v, xid, *refusals[t], msg)]
        return []

    # --- oracles ---------------------------------------------------------------------------
    def _outputs(self, actions: list[codec.Action], what: str) -> None:
        for a in actions:
            if a.type == ofp.OFPAT_OUTPUT and a.output_port not in self.allowed:
                raise Finding(f"pswitch {self.dpid}: {what} outputs to port {a.output_port:#x}")

    def _check13(self, msg: bytes) -> None:
        t = msg[1]
        who = f"pswitch {self.dpid}"
        try:
            if t == ofp.OFPT_FLOW_MOD:
                fm = codec.FlowMod.parse(msg)
                if fm.cookie >> layout.NET_SHIFT != NET:
                    raise Finding(f"{who}: FLOW_MOD with cookie {fm.cookie:#x}, not network {NET}")
                if fm.command in (ofp.OFPFC_ADD, ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
                    if fm.table_id < layout.TABLE_OFFSET:
                        raise Finding(f"{who}: a tenant's rule in table {fm.table_id}")
                    ins = codec.parse_instructions(fm.instructions)
                    for acts in (ins.apply_actions, ins.write_actions):
                        self._outputs(acts or [], "a rule")
            elif t == ofp.OFPT_PACKET_OUT:
                self._outputs(codec.PacketOut.parse(msg).actions, "a PACKET_OUT")
            elif t == ofp.OFPT_GROUP_MOD:
                if len(msg) < 16:
                    raise Finding(f"{who}: GROUP_MOD of {len(msg)} bytes")
                for off, length in codec.elements(msg[16:], 0, "bucket"):
                    acts = codec.parse_actions(msg[16 + off + 16 : 16 + off + length])
                    self._outputs(acts, "a group bucket")
        except (codec.MalformedMessage, codec.OFError) as exc:
            raise Finding(f"{who}: type {t} our own parser refuses: {exc!r}") from exc

    def _check10(self, msg: bytes) -> None:
        t = msg[1]
        who = f"pswitch {self.dpid}"
        if t == o10.OFPT_FLOW_MOD:
            if len(msg) < 72:
                raise Finding(f"{who}: OpenFlow 1.0 FLOW_MOD of {len(msg)} bytes")
            cookie = of10.FLOW_MOD10.unpack_from(msg, 48)[0]
            if cookie >> layout.NET_SHIFT != NET:
                raise Finding(f"{who}: FLOW_MOD with cookie {cookie:#x}, not network {NET}")
            self._outputs10(msg[72:], "a rule")
        elif t == o10.OFPT_PACKET_OUT:
            if len(msg) < 16:
                raise Finding(f"{who}: OpenFlow 1.0 PACKET_OUT of {len(msg)} bytes")
            alen = codec.u16(msg, 14)
            if 16 + alen > len(msg):
                raise Finding(f"{who}: OpenFlow 1.0 PACKET_OUT actions overrun")
            self._outputs10(msg[16 : 16 + alen], "a PACKET_OUT")

    def _outputs10(self, buf: bytes, what: str) -> None:
        off = 0
        while off < len(buf):
            if len(buf) - off < 8:
                raise Finding(f"pswitch {self.dpid}: truncated OpenFlow 1.0 action in {what}")
            atype, length = struct.unpack_from("!HH", buf, off)
            if length < 8 or length % 8 or off + length > len(buf):
                raise Finding(f"pswitch {self.dpid}: OpenFlow 1.0 action length {length}")
            if atype == o10.OFPAT_OUTPUT:
                port = of10.port_to13(codec.u16(buf, off + 4))
                if port not in self.allowed:
                    raise Finding(f"pswitch {self.dpid}: {what} outputs to port {port:#x}")
            off += length


# --- one input -----------------------------------------------------------------------------
class _Capture(logging.Handler):
    """What tenantvisor logs at ERROR: its catch-alls log an exception they swallowed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass(slots=True)
class Outcome:
    """What one input did, for statistics (a finding raises instead)."""

    closed: bool  # the tenant's connection was closed (unframeable or malformed input)
    errors: int  # OpenFlow ERRORs the tenant got
    replies: int  # other messages the tenant got (its HELLO excluded)
    physical: int  # messages the pswitches got
    # how the vswitch behaved, coarsely: (0, type) or (0, ERROR, error type, code) of each
    # message to the tenant, (pswitch dpid, type) of each to a pswitch, (-1,) if closed
    signature: frozenset[tuple[int, ...]] = frozenset()


SETTLE_ROUNDS = 8  # event-loop turns and pswitch answers after the stream, at most


class Harness:
    """Runs inputs on an event loop of its own; `run` raises `Finding` for a bug found.
    Other tenantvisor logging below ERROR is silenced while it exists (`close` restores)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.capture = _Capture()
        self._logger = logging.getLogger("tenantvisor")
        self._level = self._logger.level
        self._logger.addHandler(self.capture)
        self._logger.setLevel(logging.ERROR)

    def close(self) -> None:
        self._logger.removeHandler(self.capture)
        self._logger.setLevel(self._level)
        self.loop.close()

    def reset_loop(self) -> None:
        """A fresh event loop (after a hang was interrupted somewhere inside the old one)."""
        self.loop.close()
        self.loop = asyncio.new_event_loop()

    def run(self, data: bytes) -> Outcome:
        self.capture.records.clear()
        return self.loop.run_until_complete(self._run(data))

    async def _run(self, data: bytes) -> Outcome:
        cfg = Config.parse(data[:CONFIG_BYTES])
        stream = data[CONFIG_BYTES:]
        net = build_network(cfg)
        conn, tenant = _connect(net.ep)
        second = None
        if cfg.second:
            second = _connect(net.ep)
            second[0].channel.data_received(hello(frozenset({codec.VERSION})))
        switches = [_Switch(net, d, cfg.refusing) for d in sorted(net.transports)]
        try:
            try:
                if not cfg.raw_hello:
                    version = of10.V10 if cfg.of10_controller else codec.VERSION
                    conn.channel.data_received(hello(frozenset({version})))
                step = cfg.chunk or len(stream) or 1
                for off in range(0, len(stream), step):
                    conn.channel.data_received(stream[off : off + step])
                for _ in range(SETTLE_ROUNDS):
                    await asyncio.sleep(0)
                    if not [sw for sw in switches if sw.step()]:
                        break
            except Finding:
                raise
            except Exception as exc:
                raise Finding(f"exception escaped the channel: {exc!r}") from exc
            self._check_logged()
            outcome, seen = _check_tenant(conn, tenant, stream, cfg.raw_hello)
            if second is not None:
                list(frames(second[1].out, "second controller"))
            for dpid, t in net.transports.items():
                for msg in frames(t.out, "pswitch"):
                    outcome.physical += 1
                    seen.add((dpid, msg[1]))
            outcome.signature = frozenset(seen)
        finally:
            for ep in net.eps:
                ep.stop("fuzz input done")
            # a connection that never finished its HELLO is not the endpoint's to close
            for c in (conn, *(() if second is None else (second[0],))):
                c.channel.close("fuzz input done")
            await asyncio.sleep(0)
        self._check_logged()
        return outcome

    def _check_logged(self) -> None:
        for rec in self.capture.records:
            exc = rec.exc_info[1] if rec.exc_info else None
            if isinstance(exc, Finding):
                raise exc
            raise Finding(f"logged at {rec.levelname}: {rec.getMessage()}") from exc


def _connect(ep: VSwitchEndpoint) -> tuple[ControllerConn, _Transport]:
    conn = ControllerConn(ep, "fuzz")
    t = _Transport()
    conn.channel.connection_made(t)
    return conn, t


def _check_tenant(
    conn: ControllerConn, t: _Transport, stream: bytes, raw: bool
) -> tuple[Outcome, set[tuple[int, ...]]]:
    """The tenant's output is frames of its version, and answers every request it made
    unless its connection was closed.  Returns the outcome and what the tenant got."""
    ch: Channel = conn.channel
    out = list(frames(t.out, "tenant"))
    version = ch.version
    answered: set[int] = set()
    seen: set[tuple[int, ...]] = set()
    errors = 0
    for msg in out[1:]:  # after the vswitch's HELLO
        if version and msg[0] != version:
            raise Finding(f"tenant: version {msg[0]} message on a version {version} connection")
        if msg[1] == ofp.OFPT_ERROR:
            errors += 1
            seen.add((0, msg[1], *(codec.ERROR_MSG.unpack_from(msg, 8) if len(msg) >= 12 else ())))
        else:
            seen.add((0, msg[1]))
        answered.add(codec.u32(msg, 4))
    closed = not ch.is_open
    if closed:
        seen.add((-1,))
    if not closed and version:
        asked = list(stream_frames(stream))[1 if raw else 0 :]
        for msg in asked:
            xid = codec.u32(msg, 4)
            if _expects_answer(msg, version) and xid not in answered:
                raise Finding(f"tenant: no answer to type {msg[1]} xid {xid:#x}: {msg[:24].hex()}")
    return Outcome(closed, errors, len(out) - 1 - errors, 0), seen
