"""Run OpenFlow 1.3 conformance cases against a bare Open vSwitch bridge and a vswitch.

The rig (`Rig`): one private Open vSwitch with two bridges of the same kind (userspace
datapath, OpenFlow 1.3 only, ``fail_mode=secure``) and four tester hosts on each.  Bridge
``s1`` has the harness as its controller; bridge ``s2`` is a pswitch of a `tenantvisor
serve` process, with one tenant whose vswitch has an edge vport on each of s2's four
ports, and the harness as that tenant's controller.  So the same case talks to a switch
through the same kind of connection twice, and what it sees differ only by the hypervisor
between.  ``other_config:flow-limit=0`` (this OVS instance only) turns the datapath flow
cache off: a packet sent right after a BARRIER reply would otherwise often follow a flow
cached for the previous case (``notes/ovs-conformance-facts.md``).

A case (`Case`) drives a `Ctx`: it installs rules, groups or meters (each batch closed by a
BARRIER), injects crafted frames at tester ports or sends PACKET_OUTs, and returns what it
observed as plain data (frames per port, PACKET_INs, errors, fields of a statistics
reply).  The case's expectation is the same kind of data, computed without the target, so
both targets are judged against one expectation.  Between cases every rule, group and
meter is deleted, so each case starts from an empty switch.

The tenant's hosts: a vswitch admits a frame from an edge vport only with the source MAC of
a host registered there (isolation: hosts are known by port and MAC), so every frame a case
sends uses a source MAC from `SRC_MACS`, which are registered on each of the four vports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, Message, OFPeer
from tenantvisor.testbed.packets import Pkt, describe
from tenantvisor.testbed.tester import Tester
from tenantvisor.testbed.topo import Topology

DP = ProtocolDesc(ofp.OFP_VERSION)
_HDR = struct.Struct("!BBHI")
N_PORTS = 4
# the source MACs every case's frames use; registered as hosts on each vport of the vswitch
SRC_MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:01:01", "02:00:00:00:01:02")
TARGETS = ("ovs", "vswitch")

Obs = dict[str, Any]  # an observation or an expectation: JSON-able data


class CaseError(RuntimeError):
    """The target did not answer as OpenFlow requires at all (no reply, closed channel)."""


@dataclass(frozen=True)
class Case:
    """One conformance case.

    `body` runs it against a target and returns the observation; `expect(marker)` is the
    observation OpenFlow 1.3 asks for (Open vSwitch's own behaviour where it departs from
    the specification: `ovs_note` says how), given the marker this run's frames carry.
    `ci`: part of the bounded subset the tests run; `slow`: takes seconds (timeouts)."""

    name: str
    kind: str
    body: Callable[[Ctx], Obs]
    expect: Callable[[bytes], Obs]
    ci: bool = False
    slow: bool = False
    ovs_note: str = ""


@dataclass
class Target:
    """One switch under test as the harness reaches it."""

    name: str
    peer: OFPeer
    tester: Tester
    ports: dict[int, int]  # alias -> OpenFlow port number
    set_link: Callable[[int, bool], None]  # alias, up: the tester cable of that port
    dpid: int = 0

    def alias(self, port: int) -> int | str:
        for a, n in self.ports.items():
            if n == port:
                return a
        return {ofp.OFPP_CONTROLLER: "CONTROLLER", ofp.OFPP_LOCAL: "LOCAL",
                ofp.OFPP_ANY: "ANY"}.get(port, f"port{port}")  # fmt: skip


@dataclass
class Ctx:
    """What a case uses to drive one target."""

    target: Target
    marker: bytes
    errors: list[tuple[int, int, int]] = field(default_factory=list)  # (xid, type, code)
    asyncs: list[Message] = field(default_factory=list)
    cleanups: list[Callable[[], object]] = field(default_factory=list)
    xids: list[int] = field(default_factory=list)

    # --- ports and frames ----------------------------------------------------------------
    def p(self, alias: int) -> int:
        """The OpenFlow port number of port `alias` (1..4) on this target."""
        return self.target.ports[alias]

    def frame(self, pkt: Pkt) -> bytes:
        return pkt.build(self.marker)

    # --- messages ------------------------------------------------------------------------
    def send(self, msg: Any) -> int:
        """Send an os-ken message; its xid."""
        xid = self.target.peer.next_xid()
        self.xids.append(xid)
        self.target.peer.send_msg(msg, xid)
        return xid

    def send_raw(self, data: bytes) -> int:
        """Send a message given as bytes; its xid is replaced by a fresh one."""
        xid = self.target.peer.next_xid()
        self.xids.append(xid)
        self.target.peer.send(data[:4] + struct.pack("!I", xid) + data[8:])
        return xid

    def _recv(self, timeout: float) -> Message | None:
        m = self.target.peer.recv(timeout)
        if m is None:
            return None
        if m[0] == ofp.OFPT_ERROR:
            etype, code = struct.unpack_from("!HH", m[2], 8)
            self.errors.append((m[1], etype, code))
        elif m[0] in (ofp.OFPT_PACKET_IN, ofp.OFPT_FLOW_REMOVED, ofp.OFPT_PORT_STATUS):
            self.asyncs.append(m)
        return m

    def barrier(self, timeout: float = 5.0) -> list[list[int]]:
        """A BARRIER round trip; the errors ([type, code]) received since the last one."""
        xid = self.target.peer.next_xid()
        self.target.peer.send(_HDR.pack(4, ofp.OFPT_BARRIER_REQUEST, 8, xid))
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            m = self._recv(left)
            if m is None:
                break
            if m[0] == ofp.OFPT_BARRIER_REPLY and m[1] == xid:
                return self.take_errors()
        raise CaseError("no BARRIER reply")

    def take_errors(self) -> list[list[int]]:
        out = [[t, c] for _, t, c in self.errors]
        self.errors.clear()
        return out

    def install(self, msgs: Sequence[Any]) -> list[list[int]]:
        """Send messages then a BARRIER; the errors they caused."""
        for m in msgs:
            if isinstance(m, bytes):
                self.send_raw(m)
            else:
                self.send(m)
        return self.barrier()

    def request(self, msg: Any, timeout: float = 5.0) -> Any:
        """A request with one reply (or a multipart one, parts joined): the parsed reply
        (os-ken), or ("error", type, code)."""
        xid = self.send(msg)
        return self.await_reply(xid, timeout)

    def await_reply(self, xid: int, timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        parts: list[Any] = []
        while (left := deadline - time.monotonic()) > 0:
            m = self._recv(left)
            if m is None:
                break
            if m[1] != xid or m[0] in (ofp.OFPT_PACKET_IN, ofp.OFPT_FLOW_REMOVED,
                                       ofp.OFPT_PORT_STATUS):  # fmt: skip
                continue
            if m[0] == ofp.OFPT_ERROR:
                self.errors.pop()
                etype, code = struct.unpack_from("!HH", m[2], 8)
                return ("error", etype, code)
            parsed = parse(m)
            if m[0] != ofp.OFPT_MULTIPART_REPLY:
                return parsed
            parts.append(parsed)
            if not parsed.flags & ofp.OFPMPF_REPLY_MORE:
                if isinstance(parsed.body, list):
                    parsed.body = [b for part in parts for b in part.body]
                return parsed
        raise CaseError(f"no reply to xid {xid}")

    def multipart(self, msg: Any) -> Any:
        """The body of a multipart reply (entries joined), or ("error", type, code)."""
        got = self.request(msg)
        if isinstance(got, tuple):
            return got
        return got.body

    # --- packets -------------------------------------------------------------------------
    def inject(self, alias: int, pkt: Pkt | bytes) -> None:
        """A frame into the switch at port `alias` (from the tester host there)."""
        data = pkt if isinstance(pkt, bytes) else self.frame(pkt)
        self.target.tester.send(alias, data)

    def packet_out(
        self, pkt: Pkt | bytes, actions: list[Any], in_port: int = ofp.OFPP_CONTROLLER
    ) -> int:
        data = pkt if isinstance(pkt, bytes) else self.frame(pkt)
        return self.send(p.OFPPacketOut(DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                                        actions=actions, data=data))  # fmt: skip

    def observe(self, expect: int, *, quiet: float = 0.15, settle: float = 0.04) -> Obs:
        """Frames carrying the marker per port alias, PACKET_INs and errors: once `expect`
        frames and PACKET_INs arrived, `settle` seconds more (for what should not come);
        with none expected, `quiet` seconds; never more than 1.5 s."""
        peer, tester = self.target.peer, self.target.tester
        t0 = time.monotonic()
        limit, settle_end = t0 + 1.5, None
        while True:
            tester.pump(0.005, [peer.sock])
            while peer.buf or _readable(peer, 0):
                if self._recv(0.001) is None:
                    break
            now = time.monotonic()
            if settle_end is not None:
                if now >= settle_end:
                    break
                continue
            n = sum(len(v) for v in tester.frames(self.marker).values()) + len(self._pins())
            if expect > 0 and n >= expect:
                settle_end = now + settle
            elif (expect <= 0 and now - t0 >= quiet) or now >= limit:
                break
        # a BARRIER flushes errors caused by PACKET_OUTs and what the switch sent before
        errs = self.barrier()
        out: Obs = {"errors": errs}
        # sorted per port: frames injected at two ports may cross the switch in either order
        frames = {str(a): sorted(f.hex() for f in fs)
                  for a, fs in sorted(tester.frames(self.marker).items()) if fs}  # fmt: skip
        if frames:
            out["out"] = frames
        pins = self._pins()
        pi = sorted((self._packet_in(m) for m in pins), key=pin_order)
        if pi:
            out["packet_in"] = pi
        # what was observed is consumed: a later look sees only what came after
        self.asyncs = [m for m in self.asyncs if m not in pins]
        tester.drain()
        return out

    def _pins(self) -> list[Message]:
        return [m for m in self.asyncs if m[0] == ofp.OFPT_PACKET_IN and self.marker in m[2]]

    def _packet_in(self, m: Message) -> Obs:
        msg = parse(m)
        in_port = msg.match.get("in_port")
        d: Obs = {
            "reason": msg.reason, "table_id": msg.table_id, "cookie": msg.cookie,
            "in_port": self.target.alias(in_port) if in_port is not None else None,
            "total_len": msg.total_len, "buffer_id": msg.buffer_id, "data": msg.data.hex(),
        }  # fmt: skip
        md = msg.match.get("metadata")
        if md is not None:
            d["metadata"] = md
        return d

    def flow_removed(self, timeout: float) -> list[Obs]:
        """FLOW_REMOVED messages received within `timeout` seconds (and so far)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not any(m[0] == ofp.OFPT_FLOW_REMOVED for m in self.asyncs):
                self._recv(min(left, 0.05))
            else:
                self._recv(0.02)
                break
        out = []
        for m in [m for m in self.asyncs if m[0] == ofp.OFPT_FLOW_REMOVED]:
            fr = parse(m)
            out.append({"reason": fr.reason, "table_id": fr.table_id, "cookie": fr.cookie,
                        "priority": fr.priority, "packet_count": fr.packet_count,
                        "byte_count": fr.byte_count})  # fmt: skip
            self.asyncs.remove(m)
        return out

    def port_status(self, timeout: float) -> list[Obs]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self._recv(min(left, 0.05))
        out = []
        for m in [m for m in self.asyncs if m[0] == ofp.OFPT_PORT_STATUS]:
            ps = parse(m)
            out.append({"reason": ps.reason, "port": self.target.alias(ps.desc.port_no),
                        "link_down": bool(ps.desc.state & ofp.OFPPS_LINK_DOWN)})  # fmt: skip
            self.asyncs.remove(m)
        return out

    def link(self, alias: int, up: bool) -> None:
        """Take the tester cable of port `alias` down or up (restored after the case)."""
        self.target.set_link(alias, up)
        if not up:
            self.cleanups.append(lambda: self.target.set_link(alias, True))


def _readable(peer: OFPeer, timeout: float) -> bool:
    import select

    if peer.eof:
        return False
    r, _, _ = select.select([peer.sock], [], [], timeout)
    return bool(r)


def parse(m: Message) -> Any:
    """An os-ken message object from a received message."""
    return ofproto_parser.msg(DP, m[2][0], m[0], len(m[2]), m[1], m[2])


# --- expectations ------------------------------------------------------------------------
def frames_obs(out: Mapping[int, Sequence[Pkt | bytes]], marker: bytes) -> dict[str, list[str]]:
    """Expected frames per port, sorted as observations are (`Ctx.observe`)."""
    return {
        str(a): sorted((f if isinstance(f, bytes) else f.build(marker)).hex() for f in fs)
        for a, fs in sorted(out.items())
        if fs
    }


def expect_obs(
    marker: bytes,
    out: Mapping[int, Sequence[Pkt | bytes]] | None = None,
    packet_in: list[Obs] | None = None,
    errors: list[list[int]] | None = None,
) -> Obs:
    d: Obs = {"errors": errors or []}
    fr = frames_obs(out or {}, marker)
    if fr:
        d["out"] = fr
    if packet_in:
        d["packet_in"] = sorted(packet_in, key=pin_order)
    return d


def pin_order(pi: Obs) -> tuple[str, str]:
    """PACKET_INs of frames sent from several ports may come in either order: compared
    sorted by ingress port and data."""
    return str(pi.get("in_port")), str(pi.get("data"))


# --- results -----------------------------------------------------------------------------
@dataclass
class Outcome:
    passed: bool
    observed: Obs
    seconds: float
    error: str = ""


def diff(expected: Obs, observed: Obs) -> str:
    """What differs, readable: frames described, not in hex."""
    lines = []
    for key in sorted(set(expected) | set(observed)):
        e, o = expected.get(key), observed.get(key)
        if e == o:
            continue
        if key == "out":
            for port in sorted(set(e or {}) | set(o or {})):
                ef, of = (e or {}).get(port, []), (o or {}).get(port, [])
                if ef != of:
                    lines.append(
                        f"port {port}: expected {[describe(bytes.fromhex(f)) for f in ef]}, "
                        f"got {[describe(bytes.fromhex(f)) for f in of]}"
                    )
                    if len(ef) == len(of) == 1:
                        lines.append(f"  expected {ef[0]}\n  got      {of[0]}")
        else:
            lines.append(f"{key}: expected {e!r}, got {o!r}")
    return "\n".join(lines)


def run_case(case: Case, target: Target, seq: int) -> tuple[Outcome, Obs]:
    """Run `case` on `target`, then clean the switch; (outcome, expectation)."""
    marker = b"TVCF" + struct.pack("!I", seq)
    ctx = Ctx(target, marker)
    target.tester.drain()
    t0 = time.monotonic()
    expected = case.expect(marker)
    try:
        observed = case.body(ctx)
        error = ""
    except Exception as exc:  # a case that cannot even run on a target fails there
        error = f"{type(exc).__name__}: {exc}"
        observed = {"harness": error}
    seconds = time.monotonic() - t0
    for fn in reversed(ctx.cleanups):
        with contextlib.suppress(Exception):
            fn()
    reset(target)
    return Outcome(observed == expected, observed, seconds, error), expected


def reset(target: Target) -> None:
    """Delete every rule, group and meter; drain what the switch and the wires still send."""
    ctx = Ctx(target, b"")
    ctx.send(p.OFPFlowMod(DP, table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
                          out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY))  # fmt: skip
    ctx.send(p.OFPGroupMod(DP, command=ofp.OFPGC_DELETE, group_id=ofp.OFPG_ALL))
    ctx.send(p.OFPMeterMod(DP, command=ofp.OFPMC_DELETE, meter_id=ofp.OFPM_ALL))
    ctx.send(p.OFPSetConfig(DP, 0, 128))  # OpenFlow's default miss_send_len
    ctx.barrier()
    target.tester.drain()


# --- the rig -----------------------------------------------------------------------------
def conformance_topology() -> Topology:
    topo = Topology("conformance")
    topo.add_switch("s1", dpid=0xC1)
    topo.add_switch("s2", dpid=0xC2)
    for sw in ("s1", "s2"):
        for i in range(1, N_PORTS + 1):
            topo.add_host(f"{sw[1]}h{i}", sw, i)
    return topo


class Rig:
    """The fabric, the daemon and both targets; `close` removes everything, also after a
    start that failed half way."""

    def __init__(self, log_level: str = "warning") -> None:
        self.rundir = Path(tempfile.mkdtemp(prefix="tv-conf-"))
        self.topo = conformance_topology()
        self.fab = Fabric(self.topo)
        self.daemon: Daemon | None = None
        self.listeners: list[ControllerListener] = []
        self.testers: list[Tester] = []
        self.targets: dict[str, Target] = {}
        self.log_level = log_level

    def start(self) -> Rig:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        fab = self.fab
        fab.build()
        assert fab.ovs is not None
        # this OVS instance only: no datapath flow cache (one upcall per packet)
        fab.ovs.vsctl("set", "Open_vSwitch", ".", "other_config:flow-limit=0")
        for h in fab.hosts:  # the hosts' own stacks stay silent: nothing but our frames
            h.exec("ip addr flush dev eth0")
        direct = ControllerListener()
        tenant = ControllerListener()
        self.listeners += [direct, tenant]
        fab.set_controller(f"tcp:127.0.0.1:{direct.port}", ["s1"])
        (ovs_peer,) = direct.accept(1)
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        self.daemon = daemon = Daemon(self.rundir, sock, log_level=self.log_level).start()
        fab.set_controller(sock, ["s2"])
        daemon.wait_for("the pswitch", lambda st: len(st["pswitches"]) == 1)
        dpid = self.topo.switches["s2"].dpid
        tok = daemon.rest("POST", "/v1/tenants", {"name": "conformance"})["token"]
        url = f"tcp:127.0.0.1:{tenant.port}"
        nid = daemon.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
        vdpid = daemon.rest("POST", f"/v1/networks/{nid}/switches", {"dpids": [dpid]}, tok)["vdpid"]
        vports = {}
        for i in range(1, N_PORTS + 1):
            vp = daemon.rest("POST", f"/v1/networks/{nid}/ports", {"dpid": dpid, "port": i}, tok)[
                "number"
            ]
            vports[i] = vp
            for mac in SRC_MACS:
                daemon.rest("POST", f"/v1/networks/{nid}/hosts",
                            {"vdpid": vdpid, "vport": vp, "mac": mac}, tok)  # fmt: skip
        daemon.rest("POST", f"/v1/networks/{nid}/start", None, tok)
        (vs_peer,) = tenant.accept(1)
        for name, sw, peer, ports in (
            ("ovs", "s1", ovs_peer, {i: i for i in range(1, N_PORTS + 1)}),
            ("vswitch", "s2", vs_peer, vports),
        ):
            tester = Tester({i: (fab.host(f"{sw[1]}h{i}").netns, "eth0")
                             for i in range(1, N_PORTS + 1)})  # fmt: skip
            self.testers.append(tester)
            self.targets[name] = Target(name, peer, tester, ports, self._link_setter(sw),
                                        peer.dpid)  # fmt: skip
            reset(self.targets[name])

    def _link_setter(self, sw: str) -> Callable[[int, bool], None]:
        fab = self.fab

        def set_link(alias: int, up: bool) -> None:
            h = fab.host(f"{sw[1]}h{alias}")
            h.exec(f"ip link set eth0 {'up' if up else 'down'}")

        return set_link

    def close(self) -> None:
        for t in self.testers:
            t.close()
        for lst in self.listeners:
            lst.close()
        if self.daemon is not None:
            self.daemon.stop()
        self.fab.close()
        shutil.rmtree(self.rundir, ignore_errors=True)


@contextlib.contextmanager
def rig(log_level: str = "warning") -> Iterator[Rig]:
    if os.geteuid() != 0:
        raise PermissionError("the conformance rig needs root (namespaces, Open vSwitch)")
    r = Rig(log_level).start()
    try:
        yield r
    finally:
        r.close()


# --- a run -------------------------------------------------------------------------------
@dataclass
class CaseResult:
    case: Case
    expected: Obs
    outcomes: dict[str, Outcome]

    @property
    def differs(self) -> bool:
        return self.outcomes["ovs"].passed != self.outcomes["vswitch"].passed


def run_cases(
    r: Rig, cases: Sequence[Case], progress: Callable[[str], None] | None = None
) -> list[CaseResult]:
    """Every case on both targets, one after the other (so drift on the machine hits both)."""
    results = []
    for i, case in enumerate(cases):
        outcomes = {}
        expected: Obs = {}
        for j, name in enumerate(TARGETS):
            outcome, expected = run_case(case, r.targets[name], 2 * i + j + 1)
            outcomes[name] = outcome
        results.append(CaseResult(case, expected, outcomes))
        if progress is not None:
            progress(case.name)
    return results


def summary(results: Sequence[CaseResult], allowed: dict[str, str]) -> Obs:
    """Counts, the ratio (vswitch passes / OVS passes) and the differences with reasons."""
    ovs = sum(1 for r in results if r.outcomes["ovs"].passed)
    vs = sum(1 for r in results if r.outcomes["vswitch"].passed)
    both = sum(1 for r in results if r.outcomes["ovs"].passed and r.outcomes["vswitch"].passed)
    diffs = []
    for r in results:
        if not r.differs:
            continue
        bad = "vswitch" if r.outcomes["ovs"].passed else "ovs"
        diffs.append({
            "case": r.case.name, "kind": r.case.kind, "fails_on": bad,
            "allowed": r.case.name in allowed, "reason": allowed.get(r.case.name, ""),
            "diff": diff(r.expected, r.outcomes[bad].observed),
        })  # fmt: skip
    return {
        "cases": len(results), "ovs_passes": ovs, "vswitch_passes": vs, "both_pass": both,
        "ratio": vs / ovs if ovs else 0.0, "differences": diffs,
        "unexplained": [d["case"] for d in diffs if not d["allowed"]],
    }  # fmt: skip


__all__ = [
    "DP", "SRC_MACS", "TARGETS", "Case", "CaseError", "CaseResult", "Ctx", "Obs", "Rig",
    "Target", "expect_obs", "rig", "run_cases", "summary",
]  # fmt: skip
