"""Randomised equivalence of flow-rule reduction with the exact tables (issue 9), in real OVS.

The proofs of `reduce/` say a coarser rule at a core vswitch changes no packet's fate.  This
checks the claim end to end, outside the proofs' own model: random virtual layouts on a
physical fabric, random tenant rule sets installed through a tenantvisor daemon by a
controller of our own, then `ofproto/trace` of random packets from every edge vport, bridge
by bridge, at every scalability level.  A packet's fate is everything that becomes of it: the
edge vports it leaves by with its headers there, the PACKET_INs it causes (vswitch, virtual
in_port, table, reason, the rule's cookie, the headers), or nothing (a drop).  Every level
must give every packet its fate at `exact`.

Pieces:

* `generate_layout` / `generate_rules` / `generate_packets`: seeded and pure.  vswitches sit
  1:1 on the pswitches of a random subtree (or path) of the fabric, vlinks on its links,
  hosts (edge vports, one or two MACs each) on the pswitches' host ports.  Rules are biased
  toward what reduction touches: forwarding-only rules of connections (host pairs) at each
  vswitch on their tree path, in several match styles (host pair, destination MAC, IPv4
  destination, L4 port, prefix, IPv6, tenant VLAN, pinned ingress); around them overlapping
  rules of other priorities (65535 included): drops, rewrites (set_field before and after
  outputs), controller outputs, table-miss rules, FLOOD/ALL, IN_PORT, wildcards, several
  outputs, goto_table 1 with rules there, write_actions whose output runs after table 1
  rewrote the packet.  Half the networks are "clean" (one match style, a vswitch's own
  rules send only to its own hosts) so that the core really reduces (hop, host); the others
  are not.  Equal-priority overlaps in one table are avoided (OpenFlow leaves their winner
  undefined, so exact itself has no one fate).  Packets come from connections (perturbed),
  from random rules' matches (filled in), or from the addresses and ports rules name, so
  they hit rules.
* `Bed`: a fabric, a daemon and our controller listener; `Bed.install` creates the network
  by REST and sends the rules as the tenant's controller (each vswitch's FLOW_MODs, then a
  BARRIER; any ERROR fails the install, and the network is removed again).
* `Tracer.trace_fate`: follows one packet.  `ofproto/trace` (over vswitchd's unixctl
  socket, no process per call: ~0.5 ms a bridge) on the bridge it enters; its "Datapath
  actions" are run on our copy of the headers (set, push_vlan, pop_vlan, output, clone,
  userspace controller; anything else is a TraceError, never a guess); an output on a fabric
  port continues on the bridge at the link's other end with the frame as it left (fabric
  tag included), an output on a host port is an edge vport left, a controller action a
  PACKET_IN, mapped to virtual terms with the classification metadata (ingress vport) and
  the rule cookie (its tenant rule: table, reason, cookie).  A copy that crosses MAX_HOPS
  bridges is a "loop" fate.
* `compare`: trace the same packets at each level (switched by `PUT .../scalability`, then
  waiting until the network's rules on every pswitch stop changing), report each packet
  whose fate differs from exact with the rules it met at both, and count the physical rules
  per level and pswitch.  `run_case` installs at the first level given: exact (proofs run
  once per switch of level) or a reduced one (proofs follow every FLOW_MOD, incrementally).
* `verify(n_packets, seed)`: all of the above on its own fabric, over random networks of
  PER_NETWORK packets, for `tenantvisor bench reduction --verify N`.

`ofproto/trace` does not execute anything: controller actions are read from the trace
(`userspace(...controller(...))`, `dont_send=1`), never delivered, so no PACKET_IN reaches
the controller and the fate of a controller-bound packet is the PACKET_IN the pswitch would
send, mapped the way the endpoint maps it (`VSwitchEndpoint.packet_in`); the count of
CONTROLLER actions in the OpenFlow part of the trace must match the datapath's.  Packets a
controller injects (PACKET_OUT) are not traced here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import re
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout as hv
from tenantvisor.openflow import codec
from tenantvisor.reduce.realize import REDUCED_SERIAL
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.scenario import wait_physical
from tenantvisor.testbed.topo import Topology, two_tier
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.virtual.flowtable import normalize, overlaps

LEVELS = ("exact", "app", "host", "hop", "lite")
MAX_HOPS = 16  # bridges one copy of a packet may cross before it counts as looping
BROADCAST = 0xFFFFFFFFFFFF
NO_BUFFER = ofp.OFPCML_NO_BUFFER

# field name -> (OXM field number, bytes on the wire)
FIELDS: dict[str, tuple[int, int]] = {
    "in_port": (0, 4), "eth_dst": (3, 6), "eth_src": (4, 6), "eth_type": (5, 2),
    "vlan_vid": (6, 2), "vlan_pcp": (7, 1), "ip_dscp": (8, 1), "ip_proto": (10, 1),
    "ipv4_src": (11, 4), "ipv4_dst": (12, 4), "tcp_src": (13, 2), "tcp_dst": (14, 2),
    "udp_src": (15, 2), "udp_dst": (16, 2), "icmpv4_type": (19, 1), "icmpv4_code": (20, 1),
    "arp_op": (21, 2), "arp_spa": (22, 4), "arp_tpa": (23, 4), "arp_sha": (24, 6),
    "arp_tha": (25, 6), "ipv6_src": (26, 16), "ipv6_dst": (27, 16),
}  # fmt: skip
_MACS = ("eth_dst", "eth_src", "arp_sha", "arp_tha")
_V4 = ("ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa")
_V6 = ("ipv6_src", "ipv6_dst")


class TraceError(RuntimeError):
    """ofproto/trace said something this module cannot follow (never guessed at)."""


class InstallError(RuntimeError):
    """The daemon or a pswitch refused part of a generated network."""


# --- values ----------------------------------------------------------------------------------
def mac_int(text: str) -> int:
    return int(text.replace(":", ""), 16)


def mac_str(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def show(name: str, value: int) -> str:
    if name in _MACS:
        return mac_str(value)
    if name in _V4:
        return str(ipaddress.IPv4Address(value))
    if name in _V6:
        return str(ipaddress.IPv6Address(value))
    if name in ("eth_type", "vlan_vid"):
        return f"{value:#x}"
    return str(value)


def _full(name: str) -> int:
    return (1 << (8 * FIELDS[name][1])) - 1


# --- packets ---------------------------------------------------------------------------------
Tag = tuple[int, int, int]  # (tpid, vid, pcp), outermost first


@dataclass(frozen=True)
class Pkt:
    """A frame's headers: OpenFlow field values (the inner ethertype in eth_type) and its
    802.1Q/ad tags.  Hashable; `describe` is canonical (equal headers, equal text)."""

    fields: tuple[tuple[str, int], ...]
    tags: tuple[Tag, ...] = ()

    @staticmethod
    def of(values: dict[str, int], tags: Iterable[Tag] = ()) -> Pkt:
        return Pkt(tuple(sorted(values.items())), tuple(tags))

    def get(self, name: str, default: int = 0) -> int:
        return dict(self.fields).get(name, default)

    def describe(self) -> str:
        f = dict(self.fields)
        out = [f"{mac_str(f['eth_src'])}>{mac_str(f['eth_dst'])}"]
        out += [f"[{tp:#x}:{vid}/{pcp}]" for tp, vid, pcp in self.tags]
        et = f["eth_type"]
        rest = {k: v for k, v in f.items() if k not in ("eth_src", "eth_dst", "eth_type")}
        out.append(f"type={et:#06x}")
        out += [f"{k}={show(k, v)}" for k, v in sorted(rest.items())]
        return " ".join(out)

    def frame(self) -> bytes:
        f = dict(self.fields)
        b = f["eth_dst"].to_bytes(6, "big") + f["eth_src"].to_bytes(6, "big")
        for tpid, vid, pcp in self.tags:
            b += struct.pack("!HH", tpid, (pcp << 13) | vid)
        et = f["eth_type"]
        b += struct.pack("!H", et)
        if et == 0x0800:
            b += _ipv4(f)
        elif et == 0x86DD:
            b += _ipv6(f)
        elif et == 0x0806:
            b += struct.pack(
                "!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, f.get("arp_op", 1),
                f.get("arp_sha", 0).to_bytes(6, "big"), f.get("arp_spa", 0).to_bytes(4, "big"),
                f.get("arp_tha", 0).to_bytes(6, "big"), f.get("arp_tpa", 0).to_bytes(4, "big"),
            )  # fmt: skip
        else:
            b += b"tenantvisor equivalence"
        return b + bytes(max(0, 60 - len(b)))


def _l4(f: dict[str, int], proto: int) -> bytes:
    if proto == 6:
        return struct.pack("!HHIIBBHHH", f["tcp_src"], f["tcp_dst"], 1, 0, 0x50, 0x10, 512, 0, 0)
    if proto == 17:
        return struct.pack("!HHHH", f["udp_src"], f["udp_dst"], 8 + 4, 0) + b"data"
    if proto == 1:
        return struct.pack("!BBHHH", f["icmpv4_type"], f["icmpv4_code"], 0, 1, 1)
    return b"payload!"


def _csum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ipv4(f: dict[str, int]) -> bytes:
    proto = f["ip_proto"]
    l4 = _l4(f, proto)
    hdr = struct.pack(
        "!BBHHHBBH4s4s", 0x45, f.get("ip_dscp", 0) << 2, 20 + len(l4), 1, 0, 64, proto, 0,
        f["ipv4_src"].to_bytes(4, "big"), f["ipv4_dst"].to_bytes(4, "big"),
    )  # fmt: skip
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + l4


def _ipv6(f: dict[str, int]) -> bytes:
    proto = f["ip_proto"]
    l4 = _l4(f, proto)
    return (
        struct.pack("!IHBB", (6 << 28) | (f.get("ip_dscp", 0) << 22), len(l4), proto, 64)
        + f["ipv6_src"].to_bytes(16, "big") + f["ipv6_dst"].to_bytes(16, "big") + l4
    )  # fmt: skip


# --- virtual layout ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """A host behind an edge vport: what packets enter with and rules name."""

    name: str
    switch: str  # pswitch (= vswitch, 1:1)
    port: int  # physical port
    vport: int
    mac: int
    ipv4: int
    ipv6: int


@dataclass
class VSwitchSpec:
    switch: str
    dpid: int
    vports: dict[int, int]  # physical port -> vport (numbered in creation order, from 1)
    links: dict[int, tuple[str, int]]  # physical port -> (peer pswitch, its port): vlinks
    edges: list[int]  # physical ports with hosts: edge vports

    def vport_toward(self, peer: str) -> int:
        for port, (sw, _) in self.links.items():
            if sw == peer:
                return self.vports[port]
        raise KeyError(f"{self.switch} has no vlink to {peer}")

    @property
    def link_vports(self) -> list[int]:
        return [self.vports[p] for p in sorted(self.links)]

    @property
    def edge_vports(self) -> list[int]:
        return [self.vports[p] for p in sorted(self.edges)]


@dataclass
class VirtualLayout:
    switches: dict[str, VSwitchSpec]  # by pswitch name
    endpoints: list[Endpoint]

    def path(self, a: str, b: str) -> list[str]:
        """The vswitches from a to b along the tree (a and b included)."""
        prev: dict[str, str | None] = {a: None}
        todo = [a]
        while todo:
            cur = todo.pop(0)
            for peer, _ in self.switches[cur].links.values():
                if peer not in prev:
                    prev[peer] = cur
                    todo.append(peer)
        out = [b]
        while out[-1] != a:
            nxt = prev[out[-1]]
            assert nxt is not None
            out.append(nxt)
        return out[::-1]

    def endpoint_at(self, switch: str, port: int) -> list[Endpoint]:
        return [e for e in self.endpoints if (e.switch, e.port) == (switch, port)]

    def describe(self) -> str:
        parts = []
        for sw in self.switches.values():
            links = ",".join(f"{sw.vports[p]}->{peer}" for p, (peer, _) in sorted(sw.links.items()))
            edges = ",".join(str(sw.vports[p]) for p in sorted(sw.edges))
            parts.append(f"{sw.switch}[links {links or '-'}; edges {edges or '-'}]")
        return " ".join(parts)


def generate_layout(topo: Topology, rng: random.Random) -> VirtualLayout:
    """vswitches on a random subtree of the fabric (3..5 pswitches, at least two with
    hosts), a vlink on each tree link, every host port of a tree pswitch an edge vport with
    its host's MAC and, half the time, a second MAC behind it."""
    with_hosts = sorted({h.switch for h in topo.hosts.values()})
    for _ in range(100):
        start = rng.choice(with_hosts)
        tree, tree_links = {start}, []
        ends = [start]  # a path grows at its ends only
        path = rng.random() < 0.5
        size = rng.randint(3, min(5, len(topo.switches)))
        while len(tree) < size:
            frontier = [
                (a, pa, b, pb)
                for lk in topo.links
                for a, pa, b, pb in ((lk.a, lk.pa, lk.b, lk.pb), (lk.b, lk.pb, lk.a, lk.pa))
                if a in tree and b not in tree and (not path or a in ends)
            ]
            if not frontier:
                break
            a, pa, b, pb = rng.choice(sorted(frontier))
            tree.add(b)
            tree_links.append((a, pa, b, pb))
            ends = [b, *(x for x in ends if x != a)] if len(tree) > 2 else [start, b]
        if len([s for s in tree if topo.hosts_on(s)]) >= 2:
            break
    else:
        raise ValueError("the fabric has no subtree with hosts on two pswitches")
    return layout_of(topo, sorted(tree), tree_links, rng)


def layout_of(
    topo: Topology,
    switches: Sequence[str],
    links: Sequence[tuple[str, int, str, int]],
    rng: random.Random | None = None,
) -> VirtualLayout:
    """vswitches on `switches` (pswitch names), a vlink on each fabric link (a, port of a,
    b, port of b) of `links`, every host port of theirs an edge vport with its host's MAC
    and, with `rng`, half the time a second MAC behind it.  vports are numbered by
    physical port, from 1, as the daemon numbers them when created in that order."""
    out_: dict[str, VSwitchSpec] = {}
    for name in sorted(switches, key=lambda sw: topo.switches[sw].dpid):
        own: dict[int, tuple[str, int]] = {}
        for a, pa, b, pb in links:
            if a == name:
                own[pa] = (b, pb)
            elif b == name:
                own[pb] = (a, pa)
        edges = sorted(h.port for h in topo.hosts_on(name))
        ports = sorted([*own, *edges])
        vports = {p: i + 1 for i, p in enumerate(ports)}
        out_[name] = VSwitchSpec(name, topo.switches[name].dpid, vports, own, edges)
    endpoints: list[Endpoint] = []
    for sw in out_.values():
        for port in sw.edges:
            host = next(h for h in topo.hosts_on(sw.switch) if h.port == port)
            macs = [(host.name, mac_int(host.mac), int(ipaddress.IPv4Address(host.ip)))]
            if rng is not None and rng.random() < 0.5:
                i = len(endpoints) + 1
                macs.append((f"{host.name}b", 0x02EE00000000 | (i << 8) | port,
                             int(ipaddress.IPv4Address(f"10.77.{i}.{port}"))))  # fmt: skip
            for name, mac, ip in macs:
                n = len(endpoints) + 1
                v6 = int(ipaddress.IPv6Address(f"fd00::{n:x}"))
                endpoints.append(Endpoint(name, sw.switch, port, sw.vports[port], mac, ip, v6))
    return VirtualLayout(out_, endpoints)


# --- tenant rules ------------------------------------------------------------------------------
Match = dict[str, tuple[int, int | None]]


def out(port: int, max_len: int = 0) -> tuple[str, int, int]:
    return ("out", port, max_len)


def setf(name: str, value: int) -> tuple[str, str, int]:
    return ("set", name, value)


_PORT_NAMES = {ofp.OFPP_CONTROLLER: "CONTROLLER", ofp.OFPP_FLOOD: "FLOOD", ofp.OFPP_ALL: "ALL",
               ofp.OFPP_IN_PORT: "IN_PORT"}  # fmt: skip


@dataclass
class TRule:
    """One tenant rule as generated: what the tenant's controller sends."""

    switch: str
    table: int
    priority: int
    match: Match
    apply: list[tuple[str, Any, int]] | None
    write: list[tuple[str, Any, int]] | None = None
    goto: int | None = None
    cookie: int = 0
    why: str = ""

    def oxms(self) -> list[codec.Oxm]:
        out_ = []
        for name, (value, mask) in sorted(self.match.items(), key=lambda kv: FIELDS[kv[0]][0]):
            num, n = FIELDS[name]
            m = None if mask is None else mask.to_bytes(n, "big")
            out_.append(codec.Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, num, value.to_bytes(n, "big"), m))
        return out_

    def norm(self) -> Any:
        return normalize(self.oxms())

    @staticmethod
    def _actions(acts: list[tuple[str, Any, int]]) -> bytes:
        b = b""
        for kind, a, c in acts:
            if kind == "out":
                b += codec.output(a, c)
            else:
                num, n = FIELDS[a]
                b += codec.set_field(
                    codec.Oxm(codec.OXM_CLASS_OPENFLOW_BASIC, num, c.to_bytes(n, "big"))
                )
        return b

    def instructions(self) -> bytes:
        return codec.encode_instructions(
            goto_table=self.goto,
            apply_actions=None if self.apply is None else self._actions(self.apply),
            write_actions=None if self.write is None else self._actions(self.write),
        )

    def flow_mod(self, xid: int) -> bytes:
        pf = PhysFlow(0, self.table, self.priority, codec.encode_match(self.oxms()),
                      self.instructions(), self.cookie)  # fmt: skip
        return pf.flow_mod(xid)

    @property
    def is_table_miss(self) -> bool:
        return self.priority == 0 and not self.match

    def describe(self) -> str:
        def acts(a: list[tuple[str, Any, int]]) -> str:
            parts = []
            for kind, x, y in a:
                if kind == "out":
                    name = _PORT_NAMES.get(x, str(x))
                    parts.append(f"out:{name}" + (f"/{y}" if x == ofp.OFPP_CONTROLLER else ""))
                else:
                    parts.append(f"set:{x}={show(x, y)}")
            return ",".join(parts)

        m = ",".join(
            f"{k}={show(k, v)}" + ("" if mk is None else f"/{show(k, mk)}")
            for k, (v, mk) in sorted(self.match.items(), key=lambda kv: FIELDS[kv[0]][0])
        )
        s = f"{self.switch} t{self.table} p{self.priority} {{{m}}}"
        if self.apply is not None:
            s += f" apply[{acts(self.apply)}]"
        if self.write is not None:
            s += f" write[{acts(self.write)}]"
        if self.goto is not None:
            s += f" goto:{self.goto}"
        if self.apply is None and self.write is None and self.goto is None:
            s += " drop"
        return s + f" cookie={self.cookie:#x} ({self.why})"


@dataclass(frozen=True)
class Connection:
    """Traffic the rules were built for: packets drawn from it mostly hit rules."""

    src: Endpoint
    dst: Endpoint
    style: str
    proto: int  # 6, 17 or 1 (IPv4 / IPv6 next header)
    port: int  # L4 destination port
    vid: int  # tenant VLAN (style "vlan")
    mask: int = 0xFFFFFFFC  # IPv4 destination prefix (style "prefix")


@dataclass
class RuleSet:
    rules: list[TRule]
    connections: list[Connection]

    def of(self, switch: str) -> list[TRule]:
        return [r for r in self.rules if r.switch == switch]


STYLES = ("pair", "dst", "ipdst", "app", "prefix", "v6", "vlan")
STYLE_WEIGHTS = (4, 3, 2, 3, 1, 1, 1)


def _conn_match(c: Connection, style: str) -> Match:
    s, d = c.src, c.dst
    if style == "pair":
        return {"eth_src": (s.mac, None), "eth_dst": (d.mac, None), "eth_type": (0x0800, None),
                "ipv4_src": (s.ipv4, None), "ipv4_dst": (d.ipv4, None)}  # fmt: skip
    if style == "dst":
        return {"eth_dst": (d.mac, None)}
    if style == "ipdst":
        return {"eth_type": (0x0800, None), "ipv4_dst": (d.ipv4, None)}
    if style == "app":
        l4 = "tcp_dst" if c.proto == 6 else "udp_dst"
        return {"eth_type": (0x0800, None), "ip_proto": (c.proto, None), l4: (c.port, None),
                "ipv4_src": (s.ipv4, None), "ipv4_dst": (d.ipv4, None)}  # fmt: skip
    if style == "prefix":
        return {"eth_type": (0x0800, None), "ipv4_dst": (d.ipv4 & c.mask, c.mask)}
    if style == "v6":
        return {"eth_type": (0x86DD, None), "ipv6_dst": (d.ipv6, None)}
    if style == "vlan":
        return {"vlan_vid": (0x1000 | c.vid, None), "eth_dst": (d.mac, None)}
    raise ValueError(style)


class _Builder:
    def __init__(self, lay: VirtualLayout, rng: random.Random) -> None:
        self.lay = lay
        self.rng = rng
        self.rules: list[TRule] = []
        self.cookie = 0xE0000

    def add(self, r: TRule) -> TRule:
        """Add `r`, moving its priority off any equal-priority overlap in its table (the
        tenant's own ambiguity, which no level could be compared on)."""
        norm = r.norm()
        same = [o for o in self.rules if (o.switch, o.table) == (r.switch, r.table)]
        step = 1 if r.priority < 0xF000 else -1
        while any(o.priority == r.priority and overlaps(o.norm(), norm) for o in same):
            r.priority += step
        self.cookie += 1
        r.cookie = self.cookie
        self.rules.append(r)
        return r

    def toward(self, sw: str, e: Endpoint) -> int:
        """The vport of `sw` on the way to endpoint `e`."""
        if sw == e.switch:
            return e.vport
        return self.lay.switches[sw].vport_toward(self.lay.path(sw, e.switch)[1])

    def any_vport(self, sw: str) -> int:
        spec = self.lay.switches[sw]
        return self.rng.choice(sorted(spec.vports.values()))


def generate_rules(lay: VirtualLayout, rng: random.Random, without: Iterable[str] = ()) -> RuleSet:
    """Connections' forwarding rules at every vswitch on their path, then each vswitch's
    other rules (see the module docstring).

    Half the networks are "clean": a vswitch's own rules only send to its own hosts, and
    every connection's rules have the network's one match style at every hop, so what
    crosses a vlink is exactly the connections' packets and the core can be proven coarse
    (hop, host).  The others mix styles across connections and along a path, and send
    rewritten, wildcarded and flooded traffic over the vlinks, where the proofs must fail
    (or hold) for the right reasons."""
    b = _Builder(lay, rng)
    clean = rng.random() < 0.5
    eps = lay.endpoints
    conns: list[Connection] = []
    only = rng.choices(STYLES, STYLE_WEIGHTS)[0]  # a clean network's one match style
    for _ in range(rng.randint(6, 12)):
        src, dst = rng.sample(eps, 2)
        style = only if clean else rng.choices(STYLES, STYLE_WEIGHTS)[0]
        proto, port = rng.choice((6, 17)), rng.choice((22, 53, 80, 443, 5000))
        vid, mask = rng.randint(2, 30), rng.choice((0xFFFFFFFE, 0xFFFFFFFC, 0xFFFFFFF8))
        c = Connection(src, dst, style, proto, port, vid, mask)
        conns.append(c)
        prio = rng.choice((10, 100, 200))
        pairs = [c]
        if rng.random() < 0.7:
            back = Connection(dst, src, style, c.proto, c.port, c.vid, c.mask)
            pairs.append(back)
            conns.append(back)
        for cc in pairs:
            path = lay.path(cc.src.switch, cc.dst.switch)
            for i, sw in enumerate(path):
                mixed = not clean and rng.random() < 0.2
                style_here = rng.choice(STYLES[:5]) if mixed else cc.style
                match = _conn_match(cc, style_here)
                if i > 0 and rng.random() < 0.25:  # pinned to the vlink it arrives on
                    match["in_port"] = (lay.switches[sw].vport_toward(path[i - 1]), None)
                elif i == 0 and rng.random() < 0.15:  # pinned to its host's vport
                    match["in_port"] = (cc.src.vport, None)
                acts = [out(b.toward(sw, cc.dst))]
                edges = lay.switches[sw].edge_vports
                if i == len(path) - 1 and len(edges) > 1 and rng.random() < 0.15:
                    acts.append(out(rng.choice([v for v in edges if v != cc.dst.vport])))
                why = f"{style_here} {cc.src.name}>{cc.dst.name}"
                b.add(TRule(sw, 0, prio, match, acts, why=why))
    for sw, spec in lay.switches.items():
        # fewer rules of their own at pure core vswitches: where every ingress is a vlink,
        # a rule overlapping the connections there decides whether any of them reduces
        n = rng.randint(1, 5) if spec.edges else rng.randint(0, 1 if clean else 2)
        for _ in range(n):
            _extra(b, sw, conns, not spec.edges, clean, frozenset(without))
    return RuleSet(b.rules, conns)


EXTRAS = ("drop_port", "drop_src", "rewrite_ip", "rewrite_port", "rewrite_after_out",
           "ctl_arp", "miss_ctl", "miss_drop", "goto", "write_goto", "flood", "wild",
           "uplink", "multi", "top", "deliver", "hairpin")  # fmt: skip
_EXTRA_WEIGHTS = (2, 1, 2, 2, 1, 2, 1, 1, 3, 3, 1, 2, 2, 1, 1, 3, 1)
_CORE_WEIGHTS = (2, 1, 1, 1, 1, 2, 1, 0, 2, 1, 0, 1, 1, 2, 2, 0, 1)


def _extra(
    b: _Builder, sw: str, conns: list[Connection], core: bool, clean: bool,
    without: frozenset[str] = frozenset(),
) -> None:  # fmt: skip
    """One rule (or a few: goto_table with its table-1 rules) of `sw`'s own."""
    rng, lay = b.rng, b.lay
    spec = lay.switches[sw]
    table = _CORE_WEIGHTS if core else _EXTRA_WEIGHTS
    weights = [0 if k in without else w for k, w in zip(EXTRAS, table, strict=True)]
    kind = rng.choices(EXTRAS, weights)[0]
    local = [x for x in lay.endpoints if x.switch == sw]
    e = rng.choice(lay.endpoints)
    # mostly toward this vswitch's own hosts (only, when clean): what a leaf sends up its
    # vlinks then stays what the connections send
    near = local and (clean or rng.random() < 0.6)
    f = rng.choice(local) if near else rng.choice(lay.endpoints)
    edges = spec.edge_vports
    outs = edges if clean and edges else sorted(spec.vports.values())
    ip4: Match = {"eth_type": (0x0800, None)}
    if kind == "drop_port":
        m = {**ip4, "ip_proto": (6, None), "tcp_dst": (rng.choice((22, 80)), None)}
        b.add(TRule(sw, 0, rng.choice((150, 300)), m, rng.choice((None, [])), why=kind))
    elif kind == "drop_src":
        b.add(TRule(sw, 0, 250, {"eth_src": (e.mac, None)}, None, why=kind))
    elif kind == "rewrite_ip":
        m = {**ip4, "ipv4_dst": (e.ipv4, None)}
        acts = [setf("ipv4_dst", f.ipv4), setf("eth_dst", f.mac), out(b.toward(sw, f))]
        b.add(TRule(sw, 0, 150, m, acts, why=f"{kind} {e.name}->{f.name}"))
    elif kind == "rewrite_port":
        proto, l4 = rng.choice(((6, "tcp_dst"), (17, "udp_dst")))
        m = {**ip4, "ip_proto": (proto, None), l4: (rng.choice((53, 80, 443)), None)}
        acts = [setf(l4, 8080), out(b.toward(sw, f))]
        b.add(TRule(sw, 0, 120, m, acts, why=kind))
    elif kind == "rewrite_after_out":
        acts = [out(b.toward(sw, f)), setf("eth_src", 0x02AA00000000 | e.mac & 0xFFFF),
                out(ofp.OFPP_CONTROLLER, rng.choice((128, NO_BUFFER)))]  # fmt: skip
        b.add(TRule(sw, 0, 110, {"eth_dst": (f.mac, None)}, acts, why=kind))
    elif kind == "ctl_arp":
        m = {"eth_type": (0x0806, None)}
        b.add(TRule(sw, 0, 400, m, [out(ofp.OFPP_CONTROLLER, NO_BUFFER)], why=kind))
    elif kind == "miss_ctl":
        b.add(TRule(sw, rng.choice((0, 0, 1)), 0, {}, [out(ofp.OFPP_CONTROLLER, NO_BUFFER)],
                    why=kind))  # fmt: skip
    elif kind == "miss_drop":
        b.add(TRule(sw, 0, 0, {}, [], why=kind))
    elif kind == "goto":
        proto, l4 = rng.choice(((6, "tcp_dst"), (17, "udp_dst")))
        m = {**ip4, "ip_proto": (proto, None)}
        pre = [setf("ip_dscp", rng.randint(1, 40))] if rng.random() < 0.3 else None
        b.add(TRule(sw, 0, rng.choice((5, 120)), m, pre, goto=1, why=kind))
        m1 = {**m, l4: (rng.choice((53, 80, 443, 5000)), None)}
        b.add(TRule(sw, 1, 20, m1, [out(b.toward(sw, f))], why=f"{kind} t1 port"))
        g = f if clean else rng.choice(conns).dst
        m2 = {**ip4, "ipv4_dst": (g.ipv4, None)}
        b.add(TRule(sw, 1, 10, m2, [out(b.toward(sw, g))], why=f"{kind} t1 dst"))
        if rng.random() < 0.5:
            b.add(TRule(sw, 1, 0, {}, [out(ofp.OFPP_CONTROLLER, 200)], why=f"{kind} t1 miss"))
    elif kind == "write_goto":
        # the action set's output runs at the end of the pipeline, with what table 1
        # rewrote meanwhile: often a field table 0 matched, set to a destination the core
        # routes, so what leaves is outside table 0's match.  Half the time it is a
        # connection's traffic to one L4 port, redirected in table 1 to another host (over
        # the vlink the connection takes, also in clean networks)
        proto, l4 = rng.choice(((6, "tcp_dst"), (17, "udp_dst")))
        port = rng.choice((80, 443, 5000))
        mine = [c for c in conns if c.src.switch == sw and c.dst.switch != sw
                and c.style not in ("v6",)]  # fmt: skip
        m1 = {**ip4, "ip_proto": (proto, None)}
        if mine and rng.random() < 0.5:
            c = rng.choice(mine)
            if c.style == "app":  # its own L4 port: the redirected one is another
                proto, l4 = c.proto, "tcp_dst" if c.proto == 6 else "udp_dst"
                m1 = {**ip4, "ip_proto": (proto, None)}
            g = rng.choice([x for x in lay.endpoints if x != c.dst])
            m = {**_conn_match(c, c.style), **ip4, "ip_proto": (proto, None), l4: (port, None)}
            if m == _conn_match(c, c.style):
                m[l4] = (port + 1, None)
            b.add(TRule(sw, 0, 130, m, None, write=[out(b.toward(sw, c.dst))], goto=1,
                        why=f"{kind} {c.src.name}>{c.dst.name}:{port}"))  # fmt: skip
            acts = [setf("ipv4_dst", g.ipv4), setf("eth_dst", g.mac)]
            b.add(TRule(sw, 1, 5, m1, acts, why=f"{kind} t1 redirect to {g.name}"))
            return
        m = {**ip4, "ip_proto": (proto, None), l4: (port, None)}
        target = rng.choice(outs if clean else spec.link_vports or outs)
        g = f if clean else rng.choice(conns).dst
        field_, value, was = rng.choice((
            ("eth_dst", g.mac, e.mac), ("ipv4_dst", g.ipv4, e.ipv4),
            ("ipv4_src", g.ipv4, e.ipv4), (l4, 8443, None),
        ))  # fmt: skip
        if was is not None and rng.random() < 0.6:
            m[field_] = (was, None)
        b.add(TRule(sw, 0, 130, m, None, write=[out(target)], goto=1, why=kind))
        b.add(TRule(sw, 1, 5, m1, [setf(field_, value)], why=f"{kind} t1 rewrite"))
    elif kind == "flood" and not clean:
        port = rng.choice((ofp.OFPP_FLOOD, ofp.OFPP_ALL))
        b.add(TRule(sw, 0, 50, {"eth_dst": (BROADCAST, None)}, [out(port)], why=kind))
    elif kind == "hairpin" and not clean and spec.link_vports:
        # back where it came from: OFPP_IN_PORT, the one way OpenFlow sends out the ingress
        m = {"in_port": (rng.choice(spec.link_vports), None), "eth_dst": (e.mac, None)}
        b.add(TRule(sw, 0, 60, m, [out(ofp.OFPP_IN_PORT)], why=kind))
    elif kind == "wild":
        m = {**ip4, "ipv4_dst": (e.ipv4 & 0xFF000000, 0xFF000000)}
        b.add(TRule(sw, 0, rng.choice((3, 5)), m, [out(rng.choice(outs))], why=kind))
    elif kind == "uplink" and spec.link_vports and len(spec.vports) > 1:
        vp = rng.choice(spec.link_vports)
        others = [v for v in outs if v != vp]
        if others:
            b.add(TRule(sw, 0, 2, {"in_port": (vp, None)}, [out(rng.choice(others))], why=kind))
    elif kind == "multi" and len(outs) > 1:
        two = rng.sample(outs, 2)
        b.add(TRule(sw, 0, 90, {"eth_dst": (e.mac, None)}, [out(p) for p in two], why=kind))
    elif kind == "deliver" and local:
        # whatever is addressed to a host of ours goes to it: packets the core let through
        # (rightly or not) show at the edge
        for h in local:
            b.add(TRule(sw, 0, 1, {"eth_dst": (h.mac, None)}, [out(h.vport)], why=kind))
    elif kind == "top":
        m = {**ip4, "ipv4_src": (e.ipv4, None)}
        b.add(TRule(sw, 0, 0xFFFF, m, [out(rng.choice(outs))], why=kind))


def generate_packets(
    lay: VirtualLayout, rules: RuleSet, rng: random.Random, n: int
) -> list[tuple[Endpoint, Pkt]]:
    """`n` packets with the endpoint they enter by: 45% a connection's (perturbed now and
    then), 35% made to fall in a random rule's match (of the ingress vswitch mostly, so it
    is met there; a rule further on is met when the way there lets it through), the rest
    random over the addresses and ports the rules name."""
    macs = sorted({e.mac for e in lay.endpoints} | {BROADCAST, 0x02DEADBEEF01})
    ips = sorted({e.ipv4 for e in lay.endpoints} | {0x0A090909, 0x0A000063})
    ports = {22, 53, 80, 443, 5000, 8080, 8443, 1234}
    for r in rules.rules:
        for name, (value, mask) in r.match.items():
            if name.endswith(("_src", "_dst")) and name.startswith(("tcp", "udp")):
                ports.add(value)
            if name in ("ipv4_src", "ipv4_dst"):
                ips.append(value if mask is None else value | rng.randint(1, 254) & ~mask)
    pool_ports = sorted(ports)
    by_mac = {e.mac: e for e in lay.endpoints}
    out_: list[tuple[Endpoint, Pkt]] = []
    for _ in range(n):
        roll = rng.random()
        src = rng.choice(lay.endpoints)
        dst = rng.choice(lay.endpoints)
        kind = rng.choices(("v4", "arp", "v6", "other"), (7, 2, 1, 1))[0]
        proto = rng.choice((6, 17, 1))
        dport = rng.choice(pool_ports)
        vid = rng.randint(2, 30) if rng.random() < 0.1 else None
        d_mac = rng.choice(macs)
        d_ip, s_ip = rng.choice(ips), rng.choice(ips)
        fit: TRule | None = None
        if roll < 0.45 and rules.connections:
            c = rng.choice(rules.connections)
            src, dst = c.src, c.dst
            v6 = c.style == "v6"
            proto = c.proto if rng.random() < 0.9 else rng.choice((6, 17, 1))
            dport = c.port if rng.random() < 0.8 else rng.choice(pool_ports)
            vid = c.vid if c.style == "vlan" else None
            d_mac, d_ip, s_ip = dst.mac, dst.ipv4, src.ipv4
            for _ in range(rng.choice((0, 0, 1, 2))):
                what = rng.choice(("mac", "dip", "sip", "v6", "vlan"))
                if what == "mac":
                    d_mac = rng.choice(macs)
                elif what == "dip":
                    d_ip = rng.choice(ips)
                elif what == "sip":
                    s_ip = rng.choice(ips)
                elif what == "v6":
                    v6 = not v6
                else:
                    vid = None if vid is not None else rng.randint(2, 30)
            kind = "v6" if v6 else "v4"
        elif roll < 0.8 and rules.rules:
            fit = rng.choice(rules.rules)
            here = [e for e in lay.endpoints if e.switch == fit.switch]
            if here and rng.random() < 0.7:
                src = rng.choice(here)
            want = fit.match.get("eth_src")
            if want is not None and want[0] in by_mac:
                src = by_mac[want[0]]
            et = fit.match.get("eth_type", (None, None))[0]
            kind = {0x0800: "v4", 0x86DD: "v6", 0x0806: "arp"}.get(et or 0, "v4")
            if "ip_proto" in fit.match:
                proto = fit.match["ip_proto"][0]
            if "vlan_vid" in fit.match:
                vid = fit.match["vlan_vid"][0] & 0xFFF
        f: dict[str, int] = {"eth_src": src.mac, "eth_dst": d_mac}
        if kind == "arp":
            f.update(eth_type=0x0806, arp_op=rng.choice((1, 2)), arp_sha=src.mac, arp_spa=s_ip,
                     arp_tha=0, arp_tpa=d_ip)  # fmt: skip
        elif kind == "other":
            f.update(eth_type=0x88B5)
        else:
            if kind == "v6":
                proto = 6 if proto == 1 else proto
                f.update(eth_type=0x86DD, ipv6_src=src.ipv6, ipv6_dst=dst.ipv6)
            else:
                f.update(eth_type=0x0800, ipv4_src=s_ip, ipv4_dst=d_ip)
            f.update(ip_proto=proto, ip_dscp=0)
            if proto == 6:
                f.update(tcp_src=rng.choice((1234, 40000)), tcp_dst=dport)
            elif proto == 17:
                f.update(udp_src=rng.choice((1234, 40000)), udp_dst=dport)
            else:
                f.update(icmpv4_type=8, icmpv4_code=0)
        if fit is not None:
            for name, (value, mask) in fit.match.items():
                if name in f and name != "eth_src":
                    free = 0 if mask is None else rng.getrandbits(8 * FIELDS[name][1]) & ~mask
                    f[name] = value | free
        tags = [] if vid is None else [(0x8100, vid, 0)]
        out_.append((src, Pkt.of(f, tags)))
    return out_


# --- ovs-vswitchd's unixctl, without a process per call ----------------------------------------
class Unixctl:
    """JSON-RPC 1.0 over vswitchd's control socket (what ovs-appctl speaks)."""

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.buf = ""
        self.id = 0
        self.decoder = json.JSONDecoder()

    def call(self, method: str, *params: str) -> str:
        self.id += 1
        req = {"method": method, "params": list(params), "id": self.id}
        self.sock.sendall(json.dumps(req).encode())
        while True:
            text = self.buf.lstrip()
            if text:
                try:
                    msg, end = self.decoder.raw_decode(text)
                except json.JSONDecodeError:
                    msg = None
                if msg is not None:
                    self.buf = text[end:]
                    if msg.get("id") != self.id:
                        continue
                    if msg.get("error") is not None:
                        raise TraceError(f"{method} {' '.join(params)}: {msg['error']}")
                    return str(msg.get("result"))
            data = self.sock.recv(1 << 20)
            if not data:
                raise TraceError("ovs-vswitchd closed its control socket")
            self.buf += data.decode()

    def close(self) -> None:
        self.sock.close()


# --- fates -----------------------------------------------------------------------------------
class Event(NamedTuple):
    """One thing that became of a packet.  kind: "out" (left by an edge vport), "ctl" (a
    PACKET_IN), "phys" (left by a physical port no vport of the network maps), "loop"."""

    kind: str
    vswitch: str
    vport: int = -1
    table: int = -1
    reason: int = -1
    cookie: int = -1
    max_len: int = -1
    headers: str = ""

    def describe(self) -> str:
        if self.kind == "out":
            return f"out {self.vswitch}:{self.vport} {self.headers}"
        if self.kind == "ctl":
            why = {ofp.OFPR_NO_MATCH: "no_match", ofp.OFPR_ACTION: "action"}.get(self.reason)
            return (f"PACKET_IN {self.vswitch} in_port={self.vport} table={self.table} "
                    f"reason={why} cookie={self.cookie:#x} max_len={self.max_len} "
                    f"{self.headers}")  # fmt: skip
        if self.kind == "phys":
            return f"out of physical {self.vswitch}:{self.vport} {self.headers}"
        return f"loop at {self.vswitch}"


@dataclass(frozen=True)
class Hop:
    """One bridge a copy of the packet crossed, with the rules it met: (physical table,
    cookie, the rule's match as the trace prints it)."""

    switch: str
    in_port: int
    rules: tuple[tuple[int, int, str], ...]


@dataclass(frozen=True)
class Traced:
    fate: tuple[Event, ...]  # sorted; () = dropped
    hops: tuple[Hop, ...]

    def describe(self) -> str:
        return "; ".join(e.describe() for e in self.fate) or "drop"


_RULE_LINE = re.compile(r"^\s*(\d+)\. (.*), priority (\d+), cookie (0x[0-9a-f]+)\s*$")
_META = re.compile(r"write_metadata:(0x[0-9a-f]+)")


def _split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur:
        parts.append(cur)
    return [p.strip() for p in parts if p.strip()]


def _kv(s: str) -> dict[str, str]:
    out_ = {}
    for item in _split_top(s):
        k, _, v = item.partition("=")
        out_[k] = v
    return out_


def _value(name: str, text: str) -> tuple[int, int | None]:
    val, _, mask = text.partition("/")

    def one(t: str) -> int:
        if name in _MACS:
            return mac_int(t)
        if name in _V4:
            return int(ipaddress.IPv4Address(t))
        if name in _V6:
            return int(ipaddress.IPv6Address(t))
        return int(t, 0)

    return one(val), (one(mask) if mask else None)


_ODP_SET: dict[str, dict[str, str | None]] = {
    "eth": {"src": "eth_src", "dst": "eth_dst"},
    # None: a field OVS writes back unchanged (no tenant action here changes it)
    "ipv4": {"src": "ipv4_src", "dst": "ipv4_dst", "tos": "tos",
             "ttl": None, "proto": None, "frag": None},
    "ipv6": {"src": "ipv6_src", "dst": "ipv6_dst", "tclass": "tos",
             "hlimit": None, "proto": None, "label": None, "frag": None},
    "tcp": {"src": "tcp_src", "dst": "tcp_dst"},
    "udp": {"src": "udp_src", "dst": "udp_dst"},
    "icmp": {"type": "icmpv4_type", "code": "icmpv4_code"},
    "arp": {"sip": "arp_spa", "tip": "arp_tpa", "op": "arp_op", "sha": "arp_sha", "tha": "arp_tha"},
}  # fmt: skip


class _State:
    def __init__(self, p: Pkt) -> None:
        self.f = dict(p.fields)
        self.tags = list(p.tags)

    def copy(self) -> _State:
        s = _State(Pkt((), ()))
        s.f, s.tags = dict(self.f), list(self.tags)
        return s

    def pkt(self) -> Pkt:
        return Pkt.of(self.f, self.tags)


DpEvent = tuple[str, dict[str, str], Pkt]  # ("out"|"ctl", detail, headers then)


def run_datapath_actions(actions: str, p: Pkt) -> list[DpEvent]:
    """Execute ofproto/trace's "Datapath actions" on `p`'s headers; what they send where."""
    events: list[DpEvent] = []
    _run(_split_top(actions), _State(p), events)
    return events


def _run(acts: list[str], st: _State, events: list[DpEvent]) -> None:
    for a in acts:
        if a.isdigit():
            events.append(("out", {"port": a}, st.pkt()))
        elif a == "drop":
            continue
        elif a == "pop_vlan":
            if not st.tags:
                raise TraceError("pop_vlan of an untagged packet")
            st.tags.pop(0)
        elif a.startswith("push_vlan(") and a.endswith(")"):
            kv = _kv(a[len("push_vlan(") : -1])
            st.tags.insert(0, (int(kv.get("tpid", "0x8100"), 0), int(kv["vid"]),
                               int(kv.get("pcp", "0"))))  # fmt: skip
        elif a.startswith(("set(", "masked_set(")) and a.endswith(")"):
            inner = a[a.index("(") + 1 : -1]
            proto = inner[: inner.index("(")]
            names = _ODP_SET.get(proto)
            if names is None:
                raise TraceError(f"datapath action {a}: header {proto} not followed")
            for k, v in _kv(inner[len(proto) + 1 : -1]).items():
                if k not in names:
                    raise TraceError(f"datapath action {a}: field {k} not followed")
                name = names[k]
                if name is None:
                    continue
                if name == "tos":
                    val, mask = _value("tos", v)
                    tos = st.f.get("ip_dscp", 0) << 2
                    tos = (tos & ~(mask if mask is not None else 0xFF)) | val
                    st.f["ip_dscp"] = (tos >> 2) & 0x3F
                    continue
                val, mask = _value(name, v)
                full = _full(name)
                m = full if mask is None else mask
                st.f[name] = (st.f.get(name, 0) & ~m & full) | (val & m)
        elif a.startswith("userspace(") and "controller(" in a:
            body = a[a.index("controller(") + len("controller(") :]
            events.append(("ctl", _kv(body[: body.index(")")]), st.pkt()))
        elif a.startswith("clone(") and a.endswith(")"):
            _run(_split_top(a[len("clone(") : -1]), st.copy(), events)
        elif a.startswith("sample(sample=100.0%,actions(") and a.endswith("))"):
            # a metered output to the controller (`controller(meter_id=M)`): always taken
            _run(_split_top(a[len("sample(sample=100.0%,actions(") : -2]), st.copy(), events)
        elif a.startswith("meter(") and a.endswith(")"):
            continue  # a packet within the meter's rate goes on (the trace follows one)
        else:
            raise TraceError(f"datapath action {a!r} not followed")


@dataclass
class Network:
    """A generated network as installed: where everything is, physically and virtually."""

    net_id: int
    token: str
    layout: VirtualLayout
    rules: RuleSet
    vdpids: dict[str, int]
    peers: dict[str, OFPeer]
    by_serial: dict[tuple[str, int], TRule]  # (vswitch, serial) -> its rule

    def rule_of(self, cookie: int, switch: str) -> str:
        if cookie >> hv.NET_SHIFT != self.net_id:
            return f"cookie {cookie:#x} (not this network's)"
        serial = cookie & hv.SERIAL_MASK
        if cookie & hv.INFRA_BIT:
            return "classification (infra)"
        if serial == REDUCED_SERIAL:
            return "REDUCED (shared)"
        r = self.by_serial.get((switch, serial))
        return r.describe() if r is not None else f"serial {serial} (unknown)"


class Tracer:
    """Follows packets through the fabric's bridges with ofproto/trace."""

    def __init__(self, fab: Fabric) -> None:
        assert fab.ovs is not None
        self.fab = fab
        self.ctl = Unixctl(fab.ovs.vswitchd_ctl)
        topo = fab.topo
        self.links: dict[tuple[str, int], tuple[str, int]] = {}
        for lk in topo.links:
            self.links[(lk.a, lk.pa)] = (lk.b, lk.pb)
            self.links[(lk.b, lk.pb)] = (lk.a, lk.pa)
        names = {fab.port_ifname(sw, p): (sw, p) for sw in topo.switches for p in topo.ports(sw)}
        self.dp_ports: dict[str, tuple[str, int]] = {}
        for line in self.ctl.call("dpif/show").splitlines():
            m = re.match(r"\s+(\S+) (\d+)/(\d+):", line)
            if m and m.group(1) in names:
                self.dp_ports[m.group(3)] = names[m.group(1)]

    def close(self) -> None:
        self.ctl.close()

    def trace_fate(self, net: Network, ingress: Endpoint, p: Pkt) -> Traced:
        """The fate of `p` entering at `ingress`'s physical port."""
        events: list[Event] = []
        hops: list[Hop] = []
        work = [(ingress.switch, ingress.port, p, 0)]
        while work:
            sw, port, pkt, depth = work.pop(0)
            if depth >= MAX_HOPS:
                events.append(Event("loop", sw))
                continue
            text = self.ctl.call("ofproto/trace", self.fab.bridge(sw), f"in_port={port}",
                                 pkt.frame().hex())  # fmt: skip
            if "recirc(" in text:
                raise TraceError(f"recirculation at {sw} is not followed:\n{text}")
            rules = tuple(
                (int(m.group(1)), int(m.group(4), 16), m.group(2))
                for m in map(_RULE_LINE.match, text.splitlines()) if m
            )  # fmt: skip
            hops.append(Hop(sw, port, rules))
            metas = _META.findall(text)
            meta = int(metas[0], 16) if metas else 0
            acts = text.split("Datapath actions:")[-1].strip().splitlines()[0]
            got = run_datapath_actions(acts, pkt)
            n_ctl = sum(1 for line in text.split("Final flow:")[0].splitlines()
                        if line.strip().startswith(("CONTROLLER:", "controller(")))  # fmt: skip
            if n_ctl != sum(1 for k, _, _ in got if k == "ctl"):
                raise TraceError(f"controller actions at {sw} not all in the datapath:\n{text}")
            for kind, detail, now in got:
                if kind == "out":
                    osw, oport = self.dp_ports[detail["port"]]
                    peer = self.links.get((osw, oport))
                    if peer is not None:
                        work.append((peer[0], peer[1], now, depth + 1))
                        continue
                    spec = net.layout.switches.get(osw)
                    if spec is not None and oport in spec.edges:
                        events.append(Event("out", osw, spec.vports[oport], headers=now.describe()))
                    else:
                        events.append(Event("phys", osw, oport, headers=now.describe()))
                else:
                    events.append(self._packet_in(net, sw, meta, rules, detail, now))
        return Traced(tuple(sorted(events)), tuple(hops))

    @staticmethod
    def _packet_in(
        net: Network, sw: str, meta: int, rules: Sequence[tuple[int, int, str]],
        detail: dict[str, str], now: Pkt,
    ) -> Event:  # fmt: skip
        """A physical PACKET_IN as the endpoint would give it to the tenant."""
        cookie = int(detail["rule_cookie"], 0)
        table = next((t for t, c, _ in rules if c == cookie), None)
        serial = cookie & hv.SERIAL_MASK
        rule = net.by_serial.get((sw, serial))
        if cookie >> hv.NET_SHIFT != net.net_id or rule is None or table is None:
            return Event("ctl", sw, -2, cookie=cookie, headers=now.describe())
        vport = (meta >> hv.VPORT_SHIFT) & 0xFFF
        reason = ofp.OFPR_NO_MATCH if rule.is_table_miss else ofp.OFPR_ACTION
        return Event("ctl", sw, vport or ofp.OFPP_CONTROLLER, table - hv.TABLE_OFFSET, reason,
                     rule.cookie, int(detail.get("max_len", "0")), now.describe())  # fmt: skip


# --- the bed: fabric, daemon, our controller ---------------------------------------------------
def default_topology() -> Topology:
    """Leaf-spine, 2 spines x 3 leaves x 2 hosts: trees through it have pure core vswitches
    (spines) and leaves that are both edge and core."""
    return two_tier(n_spines=2, n_leaves=3, hosts_per_leaf=2)


class Bed:
    """A fabric with a tenantvisor daemon on it and a controller listener for tenants."""

    def __init__(self, topo: Topology | None = None) -> None:
        self.topo = topo or default_topology()
        self.rundir = Path(tempfile.mkdtemp(prefix="tv-equiv-"))
        self.fab = Fabric(self.topo)
        self.listener = ControllerListener()
        self.daemon: Daemon | None = None
        self.tracer: Tracer | None = None

    def open(self) -> Bed:
        try:
            self.fab.build()
            assert self.fab.ovs is not None
            sock = f"unix:{self.fab.ovs.rundir}/tenantvisor.sock"
            self.daemon = Daemon(self.rundir / "d", sock, state_dir=self.rundir / "state")
            self.daemon.start()
            self.fab.set_controller(sock)
            wait_physical(self.daemon, self.topo)
            self.tracer = Tracer(self.fab)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        try:
            if self.tracer is not None:
                self.tracer.close()
            self.listener.close()
            if self.daemon is not None:
                self.daemon.stop()
        finally:
            try:
                self.fab.close()
            finally:
                shutil.rmtree(self.rundir, ignore_errors=True)

    def __enter__(self) -> Bed:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- networks ---------------------------------------------------------------------------
    def install(self, lay: VirtualLayout, rules: RuleSet, level: str = "exact") -> Network:
        """Create the network by REST, start it, and send every rule as its controller.
        On any failure the network is removed again (and the error raised)."""
        d = self.daemon
        assert d is not None
        tok = d.rest("POST", "/v1/tenants", {"name": f"eq{time.monotonic_ns() % 10**9}"})["token"]
        body = {"controller_urls": [f"tcp:127.0.0.1:{self.listener.port}"], "scalability": level}
        nid = d.rest("POST", "/v1/networks", body, tok)["id"]
        net = Network(nid, tok, lay, rules, {}, {}, {})
        try:
            self._build(net)
            self._program(net)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one that says why
                self.remove(net)
            raise
        return net

    def _build(self, net: Network) -> None:
        d, tok, lay = self.daemon, net.token, net.layout
        assert d is not None
        url = f"/v1/networks/{net.net_id}"
        for sw, spec in lay.switches.items():
            sw_body = {"dpids": [spec.dpid]}
            net.vdpids[sw] = d.rest("POST", f"{url}/switches", sw_body, tok)["vdpid"]
            for port, vport in sorted(spec.vports.items(), key=lambda kv: kv[1]):
                got = d.rest("POST", f"{url}/ports", {"dpid": spec.dpid, "port": port}, tok)
                if got["number"] != vport:
                    raise InstallError(f"{sw} port {port} became vport {got['number']}, "
                                       f"not {vport}")  # fmt: skip
        for e in lay.endpoints:
            body = {"vdpid": net.vdpids[e.switch], "vport": e.vport, "mac": mac_str(e.mac)}
            d.rest("POST", f"{url}/hosts", body, tok)
        done = set()
        for sw, spec in lay.switches.items():
            for port, (peer, pport) in spec.links.items():
                if (peer, pport) in done:
                    continue
                done.add((sw, port))
                d.rest("POST", f"{url}/links", {
                    "src_vdpid": net.vdpids[sw], "src_vport": spec.vports[port],
                    "dst_vdpid": net.vdpids[peer], "dst_vport": lay.switches[peer].vports[pport],
                }, tok)  # fmt: skip
        d.rest("POST", f"{url}/start", None, tok)
        by_dpid = {pe.dpid: pe for pe in self.listener.accept(len(lay.switches))}
        net.peers.update({sw: by_dpid[v] for sw, v in net.vdpids.items()})

    def _program(self, net: Network) -> None:
        """Each vswitch's rules as FLOW_MODs, then a BARRIER; an ERROR is an InstallError.
        The vswitch numbers its rules 1, 2, ... in arrival order (their cookies' serials)."""
        for sw, peer in net.peers.items():
            mine = net.rules.of(sw)
            for i, r in enumerate(mine):
                peer.send(r.flow_mod(1000 + i))
                net.by_serial[(sw, i + 1)] = r
            peer.send(struct.pack("!BBHI", 4, ofp.OFPT_BARRIER_REQUEST, 8, 99))
            while True:
                m = peer.recv(10)
                if m is None:
                    raise InstallError(f"{sw}: no BARRIER_REPLY")
                if m[0] == ofp.OFPT_ERROR:
                    bad = mine[m[1] - 1000] if 1000 <= m[1] < 1000 + len(mine) else None
                    etype, code = struct.unpack_from("!HH", m[2], 8)
                    raise InstallError(f"{sw} refused ({etype}, {code}): "
                                       f"{bad.describe() if bad else m[1]}")  # fmt: skip
                if m[0] == ofp.OFPT_BARRIER_REPLY and m[1] == 99:
                    break

    def remove(self, net: Network) -> None:
        """Delete the network and wait until none of its rules is left on a pswitch."""
        d = self.daemon
        assert d is not None
        try:
            d.rest("DELETE", f"/v1/networks/{net.net_id}", None, net.token)
            deadline = time.monotonic() + 10
            while any(self.dump(net, sw) for sw in net.layout.switches):
                if time.monotonic() > deadline:
                    raise InstallError(f"network {net.net_id}'s rules still on the pswitches")
                time.sleep(0.1)
        finally:
            for pe in net.peers.values():
                pe.close()

    def dump(self, net: Network, sw: str) -> list[str]:
        """The network's rules on pswitch `sw`, without counters."""
        out_ = []
        for line in self.fab.ofctl(sw, "dump-flows", "--no-stats").splitlines():
            m = re.search(r"cookie=0x([0-9a-f]+)", line)
            if m and int(m.group(1), 16) >> hv.NET_SHIFT == net.net_id:
                out_.append(line.strip())
        return sorted(out_)

    def set_level(self, net: Network, level: str, timeout: float = 20.0) -> dict[str, list[str]]:
        """Switch the network's level and wait until its rules on every pswitch stop
        changing (unchanged over 3 reads 0.2 s apart); the rules then."""
        d = self.daemon
        assert d is not None
        before = {sw: self.dump(net, sw) for sw in net.layout.switches}
        got = d.rest("PUT", f"/v1/networks/{net.net_id}/scalability", {"level": level}, net.token)
        if got["scalability"] != level:
            raise InstallError(f"level {level} not taken: {got['scalability']}")
        return self.settle(net, before, timeout)

    def settle(
        self, net: Network, before: dict[str, list[str]] | None = None, timeout: float = 20.0
    ) -> dict[str, list[str]]:
        deadline = time.monotonic() + timeout
        last, same = before, 0
        while True:
            time.sleep(0.2)
            now = {sw: self.dump(net, sw) for sw in net.layout.switches}
            same = same + 1 if now == last else 0
            if same >= 2:
                return now
            if time.monotonic() > deadline:
                raise InstallError(f"network {net.net_id}'s rules still changing after {timeout}s")
            last = now


# --- comparison ---------------------------------------------------------------------------------
@dataclass
class Difference:
    level: str
    index: int
    ingress: Endpoint
    packet: Pkt
    exact: Traced
    got: Traced

    def describe(self, net: Network) -> str:
        lines = [
            f"packet #{self.index} at level {self.level}: enters {self.ingress.switch}:"
            f"{self.ingress.vport} (port {self.ingress.port}) {self.packet.describe()}",
            f"  exact: {self.exact.describe()}",
            f"  {self.level}: {self.got.describe()}",
        ]
        for name, t in (("exact", self.exact), (self.level, self.got)):
            lines.append(f"  rules met at {name}:")
            for h in t.hops:
                for table, cookie, match in h.rules:
                    lines.append(f"    {h.switch} in_port={h.in_port} table {table}: "
                                 f"{net.rule_of(cookie, h.switch)}  [{match}]")  # fmt: skip
        return "\n".join(lines)


@dataclass
class Comparison:
    seed: int
    layout: str
    n_rules: int
    levels: list[str]
    packets: dict[str, int]  # traced per level
    rules: dict[str, dict[str, int]]  # level -> pswitch -> physical rules in tenant tables
    reduced: dict[str, dict[str, int]]  # level -> pswitch -> of which shared (reduced, drops)
    differences: list[Difference]
    report: list[str]  # each difference described
    seconds: float
    fates: dict[str, int] = field(default_factory=dict)  # exact fates by kind, for the record
    through_reduced: dict[str, int] = field(default_factory=dict)  # packets that met one

    def reduced_somewhere(self) -> bool:
        """Some level put fewer rules on some core pswitch than exact did."""
        base = self.rules.get("exact", {})
        return any(
            n < base.get(sw, 0) for lv, per in self.rules.items() if lv != "exact"
            for sw, n in per.items()
        )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed, "layout": self.layout, "tenant_rules": self.n_rules,
            "packets": self.packets, "differences": len(self.differences),
            "rules": self.rules, "reduced_rules": self.reduced, "fates": self.fates,
            "through_reduced": self.through_reduced, "seconds": round(self.seconds, 2),
            "report": self.report,
        }  # fmt: skip


def _counts(dumps: dict[str, list[str]], net_id: int) -> tuple[dict[str, int], dict[str, int]]:
    """Per pswitch: the network's rules in the tenant tables (and its LITE rules in table 0),
    and of those the ones standing for no single tenant rule (shared reduced rules, LITE
    rules and the drops above them)."""
    rules, reduced = {}, {}
    red = hv.tenant_cookie(net_id, REDUCED_SERIAL)
    for sw, lines in dumps.items():
        tenant = [ln for ln in lines if re.search(r"\btable=[1-9]\d*,", ln)
                  or f"cookie={red:#x}," in ln]  # fmt: skip
        rules[sw] = len(tenant)
        reduced[sw] = sum(1 for ln in tenant if f"cookie={red:#x}," in ln)
    return rules, reduced


def _check_serials(net: Network, dumps: dict[str, list[str]]) -> None:
    """Every exact tenant rule on the pswitches is where our serial map says (table,
    priority): the map that names PACKET_INs' rules is right."""
    for sw, lines in dumps.items():
        for ln in lines:
            m = re.search(r"cookie=0x([0-9a-f]+), table=([1-9]\d*), (?:priority=(\d+))?", ln)
            if not m:
                continue  # table 0 (dump-flows leaves its number out): classification
            cookie, table = int(m.group(1), 16), int(m.group(2))
            if cookie & hv.INFRA_BIT:
                continue
            r = net.by_serial.get((sw, cookie & hv.SERIAL_MASK))
            prio = int(m.group(3)) if m.group(3) else 32768
            if r is None or (r.table + hv.TABLE_OFFSET, r.priority) != (table, prio):
                raise InstallError(f"serial map wrong at {sw}: {ln} vs {r and r.describe()}")


def compare(
    bed: Bed,
    net: Network,
    packets: Sequence[tuple[Endpoint, Pkt]],
    levels: Sequence[str] = LEVELS,
    seed: int = 0,
) -> Comparison:
    """Trace every packet at each level, in the order given (each switched to by REST and
    waited for), and collect the packets whose fate at some level differs from their fate
    at `exact` (the reference; the first level when exact is not among them)."""
    t0 = time.monotonic()
    tracer = bed.tracer
    assert tracer is not None
    counts: dict[str, dict[str, int]] = {}
    reduced: dict[str, dict[str, int]] = {}
    through: dict[str, int] = {}
    results: dict[str, list[Traced]] = {}
    red = hv.tenant_cookie(net.net_id, REDUCED_SERIAL)
    for level in levels:
        dumps = bed.set_level(net, level)
        if level == "exact":
            _check_serials(net, dumps)
        counts[level], reduced[level] = _counts(dumps, net.net_id)
        cache: dict[tuple[str, int, Pkt], Traced] = {}
        got_all = results[level] = []
        for e, p in packets:
            key = (e.switch, e.port, p)
            got = cache.get(key)
            if got is None:
                got = cache[key] = tracer.trace_fate(net, e, p)
            if any(c == red for h in got.hops for _, c, _ in h.rules):
                through[level] = through.get(level, 0) + 1
            got_all.append(got)
    base = "exact" if "exact" in results else levels[0]
    ref = results[base]
    diffs = [
        Difference(level, n, e, p, ref[n], got[n])
        for level, got in results.items() if level != base
        for n, (e, p) in enumerate(packets) if got[n].fate != ref[n].fate
    ]  # fmt: skip
    fates: dict[str, int] = {}
    for t in ref:
        kind = "drop" if not t.fate else "+".join(sorted({ev.kind for ev in t.fate}))
        fates[kind] = fates.get(kind, 0) + 1
    traced = {level: len(packets) for level in results}
    return Comparison(
        seed, net.layout.describe(), len(net.rules.rules), list(levels), traced, counts,
        reduced, diffs, [d.describe(net) for d in diffs], time.monotonic() - t0, fates, through,
    )  # fmt: skip


@dataclass
class Case:
    seed: int
    layout: VirtualLayout
    rules: RuleSet
    packets: list[tuple[Endpoint, Pkt]]


def generate(topo: Topology, seed: int, n_packets: int, without: Iterable[str] = ()) -> Case:
    """The network and packets of `seed`; `without`: kinds of extra rules (`EXTRAS`) left
    out, e.g. to look for another cause once one is known."""
    rng = random.Random(seed)
    lay = generate_layout(topo, rng)
    rules = generate_rules(lay, rng, without)
    return Case(seed, lay, rules, generate_packets(lay, rules, rng, n_packets))


@contextlib.contextmanager
def installed(bed: Bed, case: Case, level: str = "exact") -> Iterator[Network]:
    """The case's network, its rules sent while it is at `level`, removed afterwards."""
    net = bed.install(case.layout, case.rules, level)
    try:
        yield net
    finally:
        bed.remove(net)


def run_case(bed: Bed, case: Case, levels: Sequence[str] = LEVELS) -> Comparison:
    """Install the case at `levels[0]` (its rules then meet the proofs one FLOW_MOD at a
    time, unless that is exact), compare at every level of `levels`, remove it."""
    with installed(bed, case, levels[0]) as net:
        return compare(bed, net, case.packets, levels, case.seed)


PER_NETWORK = 200  # packets traced per random network in `verify`


def verify(n_packets: int, seed: int, levels: Sequence[str] = LEVELS) -> dict[str, Any]:
    """`tenantvisor bench reduction --verify N`: `n_packets` packets traced at every level,
    over random networks of PER_NETWORK packets each (their seeds drawn from `seed`), one
    after the other on a leaf-spine fabric and daemon of its own.

    Returns counts: "packets" traced per level; "differences" (packets whose fate at some
    level is not their fate at exact; "report" describes the first 20 with the rules they
    met); "rules" per level and pswitch (physical rules in the tenant tables, summed over the
    networks) and "reduced_rules" (of which shared reduced rules); "saved" (exact minus each
    level, summed over pswitches); "fates" (exact fates by kind); "networks" (each one's
    summary without its report); "seconds"."""
    t0 = time.monotonic()
    rng = random.Random(seed)
    sizes = [PER_NETWORK] * (n_packets // PER_NETWORK)
    if n_packets % PER_NETWORK:
        sizes.append(n_packets % PER_NETWORK)
    out: dict[str, Any] = {
        "seed": seed, "packets": dict.fromkeys(levels, 0), "differences": 0, "report": [],
        "rules": {lv: {} for lv in levels}, "reduced_rules": {lv: {} for lv in levels},
        "saved": dict.fromkeys(levels, 0), "fates": {}, "networks": [],
    }  # fmt: skip
    with Bed() as bed:
        for size in sizes:
            case = generate(bed.topo, rng.randrange(1 << 31), size)
            c = run_case(bed, case, levels)
            out["differences"] += len(c.differences)
            out["report"] += c.report[: max(0, 20 - len(out["report"]))]
            for lv in levels:
                out["packets"][lv] += c.packets.get(lv, 0)
                for key, per in (("rules", c.rules), ("reduced_rules", c.reduced)):
                    for sw, n in per.get(lv, {}).items():
                        out[key][lv][sw] = out[key][lv].get(sw, 0) + n
                base = c.rules.get("exact", {})
                out["saved"][lv] += sum(base.get(sw, 0) - n for sw, n in c.rules[lv].items())
            for kind, n in c.fates.items():
                out["fates"][kind] = out["fates"].get(kind, 0) + n
            summary = c.summary()
            summary.pop("report")
            out["networks"].append(summary)
    out["seconds"] = round(time.monotonic() - t0, 2)
    return out


__all__ = [
    "LEVELS",
    "Bed",
    "Case",
    "Comparison",
    "Difference",
    "Event",
    "Pkt",
    "TRule",
    "Traced",
    "Tracer",
    "compare",
    "generate",
    "generate_layout",
    "generate_packets",
    "generate_rules",
    "run_case",
    "run_datapath_actions",
    "verify",
]
