"""Build a :class:`~tenantvisor.testbed.topo.Topology` for real: OVS bridges, veths, host netns.

Why this shape:

* **One private OVS for the whole fabric** (:class:`~tenantvisor.testbed.ovs.OvsInstance`), one
  ``datapath_type=netdev`` bridge per switch (the machines have no OVS kernel module), each with
  the topology's dpid, ``fail_mode=secure`` (no flows, no forwarding: the hypervisor decides
  everything) and in-band control off (the control channel must not depend on the fabric).
* **Switch namespace by default.**  The userspace datapath claims a tap device called
  ``ovs-netdev`` in the namespace its vswitchd runs in, so only one userspace vswitchd per
  namespace can have bridges (measured: the second one's ``add-br`` fails with "Device or
  resource busy").  Anyone else's OVS in the root namespace (a demo, another engineer's tests)
  would otherwise break every fabric.  So by default vswitchd and every switch-side veth end
  live in a namespace ``<prefix>sw``; ``switch_netns=False`` puts them in the root namespace as
  the original plan had it, and fails clearly if the root namespace's datapath is taken.
* **Controllers stay reachable at ``tcp:127.0.0.1:PORT``.**  A vswitchd in its own namespace has
  its own loopback, so for each ``tcp:`` controller target a tiny relay process (started here,
  in the root namespace) listens on a Unix socket in the run directory (file-system sockets
  cross network namespaces) and forwards to the TCP target; the bridges are pointed at
  ``unix:<socket>``.  The hypervisor under test sees ordinary TCP connections from 127.0.0.1.
  It is a separate process, not a thread, so it never competes with an in-process hypervisor
  for the GIL and distorts its latency.
* **Fabric links carry MTU 1600** (veth ``mtu`` and OVS ``mtu_request``): the hypervisor adds a
  4-byte tag to every frame on the fabric, and 1500-byte links stall TCP.  Host links are 1500.
* **Every name carries the prefix** (``tv`` + 4 random hex digits unless given) and fits Linux's
  15 characters.  :meth:`Fabric.close` removes exactly what was recorded as created, also after a
  build that failed half way, and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from tenantvisor.mapping import layout
from tenantvisor.testbed import netns as nx
from tenantvisor.testbed.netns import CommandError
from tenantvisor.testbed.ovs import OvsInstance
from tenantvisor.testbed.topo import Host, Link, Topology

SWITCH_NS_SUFFIX = "sw"


class FabricError(RuntimeError):
    """The fabric could not be built as described (clash, bad name, OVS refused a port...)."""


_COOKIE = re.compile(r"cookie=0x([0-9a-f]+),")


def random_prefix() -> str:
    """``tv`` + 4 random hex digits: short enough to leave 9 characters for the rest of a name."""
    return "tv" + secrets.token_hex(2)


class FabricHost:
    """A host of a built fabric: a network namespace with ``eth0`` on a switch port."""

    def __init__(self, spec: Host, netns: str, procs: list[subprocess.Popen[Any]]) -> None:
        self.spec = spec
        self.netns = netns
        self._procs = procs

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def mac(self) -> str:
        return self.spec.mac

    @property
    def ip(self) -> str:
        """IPv4 address without prefix."""
        return self.spec.ip

    @property
    def ipv4(self) -> str:
        """IPv4 address with prefix (``10.0.0.1/8``)."""
        return self.spec.ipv4

    def exec(
        self, cmd: str | Sequence[str], timeout: float = 10.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` in the host's namespace and wait; a string is run by ``sh -c``.

        Raises :class:`CommandError` on timeout, and on a non-zero exit when ``check``.
        """
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return nx.ns_exec(self.netns, argv, timeout=timeout, check=check)

    def popen(self, cmd: str | Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` in the host's namespace without waiting (``iperf3 -s``...).

        The fabric kills it at :meth:`Fabric.close` if it is still running: a process left in
        a namespace keeps the namespace, and its veths, alive after ``ip netns delete``.
        """
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = nx.ns_popen(self.netns, argv, **kwargs)
        self._procs.append(proc)
        return proc

    def gratuitous_arp(self) -> None:
        """Announce this host's MAC and address from eth0 (a broadcast ARP request for its
        own address), as a hypervisor does for a VM it has just live-migrated."""
        mac = bytes.fromhex(self.mac.replace(":", ""))
        ip = bytes(int(x) for x in self.ip.split("."))
        frame = (b"\xff" * 6 + mac + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04\x00\x01"
                 + mac + ip + b"\x00" * 6 + ip).ljust(60, b"\x00")  # fmt: skip
        script = (
            "import socket,sys;s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW);"
            "s.bind(('eth0',0));s.send(bytes.fromhex(sys.argv[1]))"
        )
        self.exec([sys.executable, "-c", script, frame.hex()])

    def ping(self, ip: str, count: int = 1, timeout: float = 5.0) -> bool:
        """True when ``count`` echo replies from ``ip`` arrive within ``timeout`` seconds.

        Lost requests are retried every 0.2 s until the deadline (the first one often dies while
        ARP or a controller sets up the path), so this is "reachable within", not "no loss".
        """
        # ping itself gives up early once ARP fails ("Destination Host Unreachable" counts
        # towards -c), so repeat it until the deadline.
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            wait = max(1, math.ceil(left))
            cmd = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-w", str(wait), ip]
            if self.exec(cmd, timeout=wait + 5, check=False).returncode == 0:
                return True
            if time.monotonic() + 0.2 >= end:
                return False
            time.sleep(0.1)

    def __repr__(self) -> str:
        return f"FabricHost({self.name!r}, {self.ipv4}, {self.mac}, netns={self.netns!r})"


class Fabric:
    """A :class:`Topology` built with a private OVS, veths and network namespaces.

    ``controller``: target set on every bridge (``tcp:127.0.0.1:6633``), or ``None`` for no
    controller (install flows with :meth:`ofctl`).  ``protocols`` maps switch names to an
    OVS ``protocols`` value (e.g. ``"OpenFlow10"``) overriding ``default_protocols``.
    ``rundir`` defaults to a fresh ``/tmp/<prefix>-*`` directory, removed by :meth:`close`
    unless ``keep_rundir``.  Use as a context manager, or call :meth:`build` and :meth:`close`.

    With a controller, send no packet before the switches are connected (see
    :meth:`wait_connected`): OVS caches the drop of a packet that found no controller.
    """

    def __init__(
        self,
        topo: Topology,
        *,
        controller: str | None = None,
        prefix: str | None = None,
        rundir: str | Path | None = None,
        switch_netns: bool = True,
        default_protocols: str = "OpenFlow13",
        protocols: Mapping[str, str] | None = None,
        fabric_mtu: int = 1600,
        host_mtu: int = 1500,
        controller_max_backoff_ms: int = 1000,
        keep_rundir: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.topo = topo
        self.prefix = prefix or random_prefix()
        if not (self.prefix.isascii() and self.prefix.isalnum() and len(self.prefix) <= 8):
            raise ValueError(f"prefix {self.prefix!r}: 1..8 ASCII letters/digits")
        self.controller = controller
        self.default_protocols = default_protocols
        self.protocols = dict(protocols or {})
        unknown = set(self.protocols) - set(topo.switches)
        if unknown:
            raise ValueError(f"protocols given for unknown switches: {sorted(unknown)}")
        self.fabric_mtu = fabric_mtu
        self.host_mtu = host_mtu
        self.controller_max_backoff_ms = controller_max_backoff_ms
        self.keep_rundir = keep_rundir
        self.timeout = timeout
        self.switch_netns: str | None = self.prefix + SWITCH_NS_SUFFIX if switch_netns else None
        self._given_rundir = Path(rundir) if rundir is not None else None
        self.rundir: Path | None = None
        self.ovs: OvsInstance | None = None
        self.timings: dict[str, float] = {}

        # Names, computed up front so that clashes are found before anything is created.
        self._swkey = self._switch_keys()
        self._host_ns = self._host_namespaces()

        # What this fabric created, for close().  Links: name -> namespace it is in now.
        self._made_rundir = False
        self._netns: list[str] = []
        self._links: dict[str, str | None] = {}
        self._relays: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._hosts: dict[str, FabricHost] = {}
        self._plugged: dict[str, tuple[str, int]] = {}  # hosts moved: (switch, port) now
        # hosts plugged in ahead at several places (preplug): (switch, port) -> their cable
        self._places: dict[str, dict[tuple[str, int], str]] = {}
        self._built = False
        self._closed = False

    # --- names --------------------------------------------------------------------------------
    def _switch_keys(self) -> dict[str, str]:
        """Per-switch short key used in bridge and port names (the switch name if it fits)."""
        keys = {}
        for idx, sw in enumerate(self.topo.switches.values(), start=1):
            maxport = max(self.topo.ports(sw.name), default=1)
            key = sw.name
            if not key.isalnum() or len(f"{self.prefix}{key}p{maxport}") > nx.IFNAMSIZ:
                key = f"x{idx}"
            if len(f"{self.prefix}{key}p{maxport}") > nx.IFNAMSIZ:
                raise FabricError(f"names for switch {sw.name!r} exceed 15 chars with this prefix")
            keys[sw.name] = key
        return keys

    def _host_namespaces(self) -> dict[str, str]:
        out = {}
        for idx, h in enumerate(self.topo.hosts.values(), start=1):
            name = f"{self.prefix}{h.name}"
            if not h.name.isalnum() or len(name) > nx.IFNAMSIZ:
                name = f"{self.prefix}h{idx}"
            out[h.name] = nx.check_ifname(name)
        return out

    def bridge(self, switch: str) -> str:
        """OVS bridge name of ``switch``."""
        return self.prefix + self._swkey[switch]

    def port_ifname(self, switch: str, port: int) -> str:
        """Name of the (switch-side) veth attached to ``port`` of ``switch``."""
        return f"{self.prefix}{self._swkey[switch]}p{port}"

    def dpid(self, switch: str) -> int:
        return self.topo.switch(switch).dpid

    def all_names(self) -> list[str]:
        """Every namespace, interface and bridge name this fabric uses (for leak checks)."""
        names = [self.bridge(s) for s in self.topo.switches]
        names += [self.port_ifname(lk.a, lk.pa) for lk in self.topo.links]
        names += [self.port_ifname(lk.b, lk.pb) for lk in self.topo.links]
        names += [self.port_ifname(h.switch, h.port) for h in self.topo.hosts.values()]
        names += list(self._host_ns.values())
        if self.switch_netns:
            names.append(self.switch_netns)
        return names

    # --- build --------------------------------------------------------------------------------
    def build(self) -> Fabric:
        """Create everything; on any failure, remove what was created and re-raise."""
        if self._closed:
            raise FabricError("this Fabric was closed; make a new one")
        if self._built:
            return self
        t0 = time.monotonic()
        try:
            self._build()
        except BaseException:
            try:
                self.close()
            except Exception as cleanup_exc:  # keep the original error; report both
                sys.stderr.write(
                    f"tenantvisor fabric {self.prefix}: cleanup failed: {cleanup_exc}\n"
                )
            raise
        self._built = True
        self.timings["build"] = time.monotonic() - t0
        return self

    def _build(self) -> None:
        topo = self.topo
        topo.validate()
        names = self.all_names()
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise FabricError(f"generated names clash: {sorted(dup)}")
        self._check_free(names)

        if self._given_rundir is not None:
            self._given_rundir.mkdir(parents=True, exist_ok=True)
            self.rundir = self._given_rundir.resolve()
        else:
            self.rundir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
            self._made_rundir = True

        mark = time.monotonic()
        swns = self.switch_netns
        if swns is not None:
            self._netns.append(swns)
            nx.add_netns(swns)
            nx.disable_ipv6_netns(swns)
        self.ovs = OvsInstance(self.rundir / "ovs", netns=swns, timeout=self.timeout)
        self.ovs.start()
        mark = self._lap("ovs_start", mark)

        for lk in topo.links:
            self._make_fabric_link(lk)
        mark = self._lap("links", mark)
        for h in topo.hosts.values():
            self._make_host(h)
        mark = self._lap("hosts", mark)
        for sw in topo.switches:
            self._make_bridge(sw)
        self._check_ofports()
        mark = self._lap("bridges", mark)
        if self.controller is not None:
            self.set_controller(self.controller)
        self._lap("controller", mark)

    def _lap(self, what: str, since: float) -> float:
        now = time.monotonic()
        self.timings[what] = now - since
        return now

    def _check_free(self, names: Iterable[str]) -> None:
        """Refuse to build over anything that already exists: it is not ours to reuse or delete."""
        wanted = set(names)
        taken = wanted & set(nx.list_netns())
        taken |= wanted & set(nx.list_links(None))
        if taken:
            raise FabricError(f"names already in use on this machine: {sorted(taken)}")

    def _track_link(self, name: str, ns: str | None) -> None:
        """Record ``name`` as ours *before* creating it, so a creation that fails half way
        (veth made, ethtool failed) is still cleaned up; :meth:`_check_free` has just shown the
        name was free, and ``close()`` only deletes what exists."""
        self._links[name] = ns

    def _make_fabric_link(self, lk: Link) -> None:
        a = self.port_ifname(lk.a, lk.pa)
        b = self.port_ifname(lk.b, lk.pb)
        swns = self.switch_netns
        self._track_link(a, swns)  # deleting one end of a veth deletes both
        nx.add_veth(a, b, mtu=self.fabric_mtu, netns=swns)
        for end in (a, b):
            if swns is None:  # in our own namespace, the namespace default already did it
                nx.disable_ipv6_link(end)
            nx.set_up(end, swns)

    def _make_host(self, h: Host) -> None:
        hns = self._host_ns[h.name]
        swport = self.port_ifname(h.switch, h.port)
        swns = self.switch_netns
        self._netns.append(hns)
        nx.add_netns(hns)
        nx.disable_ipv6_netns(hns)
        self._track_link(swport, swns)
        nx.add_veth(swport, "eth0", mtu=self.host_mtu, netns=swns, peer_netns=hns)
        nx.set_mac("eth0", h.mac, hns)
        nx.set_ipv4("eth0", h.ipv4, hns)
        nx.set_up("eth0", hns)
        if swns is None:
            nx.disable_ipv6_link(swport)
        nx.set_up(swport, swns)
        self._hosts[h.name] = FabricHost(h, hns, self._procs)

    def tenant_rules(self, nets: set[int]) -> dict[str, tuple[int, int]]:
        """Per switch, the networks' physical rules standing for tenant rules (cookies
        without the infrastructure bit, in any table: the tenant tables and LITE rules in
        table 0), as (own, shared): shared are the reduced and LITE rules and their
        exception drops (serial 2^47-1)."""
        out = {}
        for sw in self.topo.switches:
            own = shared = 0
            for line in self.ofctl(sw, "dump-flows").splitlines():
                m = _COOKIE.search(line)
                if m is None:
                    continue
                cookie = int(m.group(1), 16)
                if cookie >> layout.NET_SHIFT not in nets or cookie & layout.INFRA_BIT:
                    continue
                if cookie & layout.SERIAL_MASK == layout.SERIAL_MASK:
                    shared += 1
                else:
                    own += 1
            out[sw] = (own, shared)
        return out

    def move_host(self, name: str, switch: str, port: int) -> None:
        """Move host `name` onto `port` of `switch`, as a live migration moves a VM: its
        namespace, MAC and address stay.  Plugged in there ahead (`preplug`): it leaves
        the cable it was on (which stays up, as a VM's port at its source does until the
        migration is over) for the one there, in one ``ip -batch``.  Otherwise
        its cable is re-plugged (a port that is not there yet) in one OVSDB transaction:
        the old bridge loses the port and the new one gains it."""
        ovs = self._require_ovs()
        spec = self.topo.hosts[name]
        at = self._plugged.get(name, (spec.switch, spec.port))
        places = self._places.get(name)
        if places is not None:
            if (switch, port) not in places:
                raise FabricError(f"host {name!r} was not plugged in ahead at {switch}:{port} "
                                  f"(preplug): at {sorted(places)} only")  # fmt: skip
            if (switch, port) != at:
                old, new = places[at], places[(switch, port)]
                nx.ip_batch(f"link set dev {old} nomaster\nlink set dev {new} master vm0\n",
                            self._host_ns[name])  # fmt: skip
            self._plugged[name] = (switch, port)
            return
        ifname = self.port_ifname(spec.switch, spec.port)  # the veth keeps its first name
        ovs.vsctl(
            "--", "del-port", self.bridge(at[0]), ifname,
            "--", "add-port", self.bridge(switch), ifname,
            "--", "set", "Interface", ifname, f"ofport_request={port}",
            f"mtu_request={self.host_mtu}",
        )  # fmt: skip
        self._plugged[name] = (switch, port)

    def preplug(self, name: str, places: Iterable[tuple[str, int]]) -> None:
        """Plug host `name` in at each of `places` (switch, port) ahead of its moves, as a
        cloud creates a live-migrating VM's port at the destination (and its hypervisor
        opens it, carrier up) before the switch-over, and removes the source's only once
        the migration is over: `move_host` to one of them then only changes which cable
        the host uses.  No port changes state, no OVSDB transaction adds and deletes
        datapath ports (making the userspace datapath re-validate every flow) at the
        very moment of the move; the network learns of it from the orchestrator or the
        host's gratuitous ARP, as in a cloud.

        Inside the host's namespace a Linux bridge, ``vm0``, takes the host's MAC and
        address (`addr_dev`); of eth0 and one cable per place (``mv1``, ``mv2``, ...), all
        up, the one the host is on is the bridge's member.  Call it before setting
        neighbours."""
        ovs = self._require_ovs()
        spec = self.topo.hosts[name]
        hns = self._host_ns[name]
        at = self._plugged.get(name, (spec.switch, spec.port))
        have = self._places.get(name)
        if have is None:
            if at != (spec.switch, spec.port):
                raise FabricError(f"host {name!r} was moved already: preplug it before")
            script = (
                "link add vm0 type bridge forward_delay 0 stp_state 0\n"
                f"link set dev vm0 address {spec.mac}\n"
                f"addr del {spec.ipv4} dev eth0\n"
                f"addr add {spec.ipv4} dev vm0\n"
                "link set dev eth0 master vm0\n"
                "link set dev vm0 up\n"
            )
            nx.ip_batch(script, hns)
            have = self._places[name] = {at: "eth0"}
        swns = self.switch_netns
        for switch, port in places:
            if (switch, port) in have:
                continue
            swport = self.port_ifname(switch, port)
            if nx.link_exists(swport, swns) or port in self._ports_in_use(switch):
                raise FabricError(f"{switch}:{port} is taken: host {name!r} cannot be "
                                  "plugged in there")  # fmt: skip
            cable = f"mv{len(have)}"
            self._track_link(swport, swns)
            nx.add_veth(swport, cable, mtu=self.host_mtu, netns=swns, peer_netns=hns)
            nx.set_mac(cable, spec.mac, hns)
            if swns is None:
                nx.disable_ipv6_link(swport)
            nx.set_up(cable, hns)
            nx.set_up(swport, swns)
            ovs.vsctl(
                "add-port", self.bridge(switch), swport,
                "--", "set", "Interface", swport, f"ofport_request={port}",
                f"mtu_request={self.host_mtu}",
            )  # fmt: skip
            have[(switch, port)] = cable

    def _ports_in_use(self, switch: str) -> set[int]:
        ports = {lk.pa for lk in self.topo.links if lk.a == switch}
        ports |= {lk.pb for lk in self.topo.links if lk.b == switch}
        ports |= {h.port for h in self.topo.hosts_on(switch)}
        ports |= {at[1] for at in self._plugged.values() if at[0] == switch}
        return ports

    def addr_dev(self, name: str) -> str:
        """The device in host `name`'s namespace that holds its address (``eth0``, or its
        bridge once it is plugged in at several places)."""
        return "vm0" if name in self._places else "eth0"

    def static_neighbour(self, host: str, peer: str) -> None:
        """A permanent ARP entry for `peer` in `host`'s namespace: traffic between them needs
        no ARP (no flood, no PACKET_IN), so what a tenant's controller hears is news."""
        q = self.topo.host(peer)
        dev = self.addr_dev(host)
        cmd = ["ip", "neigh", "replace", q.ip, "lladdr", q.mac, "dev", dev, "nud", "permanent"]
        self.host(host).exec(cmd)

    def host_port(self, name: str) -> tuple[str, int]:
        """(switch, port) host `name` is plugged into now."""
        spec = self.topo.hosts[name]
        return self._plugged.get(name, (spec.switch, spec.port))

    def _make_bridge(self, switch: str) -> None:
        ovs = self._require_ovs()
        sw = self.topo.switch(switch)
        br = self.bridge(switch)
        args = [
            "add-br", br,
            "--", "set", "Bridge", br,
            "datapath_type=netdev",
            f"protocols={self.protocols.get(switch, self.default_protocols)}",
            "fail_mode=secure",
            f"other-config:datapath-id={sw.dpid_hex}",
            "other-config:disable-in-band=true",
        ]  # fmt: skip
        ports: list[tuple[int, int]] = [
            (lk.pa, self.fabric_mtu) for lk in self.topo.links if lk.a == switch
        ]
        ports += [(lk.pb, self.fabric_mtu) for lk in self.topo.links if lk.b == switch]
        ports += [(h.port, self.host_mtu) for h in self.topo.hosts_on(switch)]
        for port, mtu in sorted(ports):
            ifname = self.port_ifname(switch, port)
            args += [
                "--", "add-port", br, ifname,
                "--", "set", "Interface", ifname, f"ofport_request={port}", f"mtu_request={mtu}",
            ]  # fmt: skip
        try:
            ovs.vsctl(*args)
        except CommandError as exc:
            raise FabricError(
                f"creating bridge {br} for switch {switch!r} failed: {exc}\n"
                f"--- ovs-vswitchd.log (tail) ---\n{ovs.log_tail()}"
            ) from exc

    def _check_ofports(self) -> None:
        """Every port must have come up with exactly the requested OpenFlow port number."""
        ovs = self._require_ovs()
        out = ovs.vsctl("--format=json", "--columns=name,ofport,error", "list", "Interface")
        got = {}
        for name, ofport, error in json.loads(out)["data"]:
            got[name] = (ofport if isinstance(ofport, int) else None, error)
        bad = []
        for sw in self.topo.switches:
            for port in self.topo.ports(sw):
                ifname = self.port_ifname(sw, port)
                ofport, error = got.get(ifname, (None, "missing"))
                if ofport != port:
                    bad.append(f"{ifname}: ofport {ofport} (wanted {port}) error={error}")
        if bad:
            raise FabricError("ports not attached as requested:\n  " + "\n  ".join(bad))

    # --- controllers --------------------------------------------------------------------------
    def set_controller(self, target: str | None, switches: Iterable[str] | None = None) -> None:
        """Point ``switches`` (default all) at ``target``, or remove their controller (``None``).

        Connection mode out-of-band and ``max_backoff`` = ``controller_max_backoff_ms``.  (Measured
        on OVS 3.1: after a connection that was up is lost, OVS still backs off 1, 2, 4, 8 s
        whatever ``max_backoff`` says; it only bounds the first connection attempts.)
        With a switch namespace, ``tcp:`` targets go through a relay (see the module docstring).
        """
        self.set_controllers([] if target is None else [target], switches)
        if switches is None:
            self.controller = target

    def set_controllers(
        self, targets: Sequence[str], switches: Iterable[str] | None = None
    ) -> None:
        """Point ``switches`` (default all) at every one of ``targets`` at once (OpenFlow
        multi-controller: several tenantvisor instances), or at none (empty)."""
        ovs = self._require_ovs()
        names = list(self.topo.switches) if switches is None else list(switches)
        args: list[str] = []
        for i, sw in enumerate(names):
            br = self.bridge(sw)
            if not targets:
                args += ["--", "del-controller", br]
                continue
            ids = []
            for j, target in enumerate(targets):
                ids.append(f"@c{i}_{j}")
                args += [
                    "--", f"--id=@c{i}_{j}", "create", "Controller",
                    f'target="{self._switch_side_target(target)}"',
                    "connection_mode=out-of-band",
                    f"max_backoff={self.controller_max_backoff_ms}",
                ]  # fmt: skip
            args += ["--", "set", "Bridge", br, f"controller=[{','.join(ids)}]"]
        if args:
            ovs.vsctl(*args[1:])

    def wait_connected(self, timeout: float = 10.0, switches: Iterable[str] | None = None) -> None:
        """Block until every switch's controller connection is up (OVS's ``is_connected``).

        Why: a packet that arrives while a ``fail_mode=secure`` bridge has no controller is
        dropped *and cached* as a datapath drop flow; with OpenFlow 1.0 the controller's arrival
        changes no flow table, so that cache entry keeps dropping the host's retries for up to
        10 s.  Tests should wait here before sending their first packet.
        """
        ovs = self._require_ovs()
        deadline = time.monotonic() + timeout
        names = list(self.topo.switches) if switches is None else list(switches)
        for sw in names:
            br = self.bridge(sw)
            uuids = ovs.vsctl("get", "Bridge", br, "controller").strip(" []\n").split(",")
            for uuid in filter(None, (u.strip() for u in uuids)):
                left = max(1.0, deadline - time.monotonic())
                try:
                    ovs.vsctl("wait-until", "Controller", uuid, "is_connected=true", timeout=left)
                except CommandError as exc:
                    raise FabricError(
                        f"switch {sw!r} ({br}) not connected to its controller within "
                        f"{timeout:g} s: {exc}"
                    ) from exc

    def _switch_side_target(self, target: str) -> str:
        """What the bridges should connect to so that they reach ``target`` from our namespace."""
        if self.switch_netns is None or not target.startswith("tcp:"):
            return target
        if target not in self._relays:
            self._relays[target] = self._start_relay(target)
        return f"unix:{self._relays[target][1]}"

    def _start_relay(self, target: str) -> tuple[subprocess.Popen[bytes], Path]:
        ovs = self._require_ovs()
        assert self.rundir is not None  # set before the OvsInstance exists
        host, _, port = target[len("tcp:") :].rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"controller target {target!r}: expected tcp:HOST:PORT")
        host = host.strip("[]")
        # vswitchd only connects to Unix-socket controllers inside its own rundir.
        path = ovs.rundir / f"ctl-{len(self._relays)}.sock"
        path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
            listener.listen(128)
            src = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
            with open(self.rundir / f"relay-{port}.log", "ab") as log:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import sys; from tenantvisor.testbed.fabric import relay_main; "
                        "relay_main(sys.argv[1:])",
                        str(listener.fileno()),
                        host,
                        port,
                    ],
                    pass_fds=[listener.fileno()],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    env=env,
                )
        finally:
            listener.close()  # the child holds its own copy
        return proc, path

    # --- use ----------------------------------------------------------------------------------
    def _require_ovs(self) -> OvsInstance:
        if self.ovs is None or self._closed:
            raise FabricError(f"fabric {self.prefix} is not built (call build() first)")
        return self.ovs

    def host(self, name: str) -> FabricHost:
        """The built host ``name``."""
        try:
            return self._hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r} in fabric {self.prefix}") from None

    @property
    def hosts(self) -> list[FabricHost]:
        return list(self._hosts.values())

    def ofctl(self, switch: str, command: str, *args: str, timeout: float | None = None) -> str:
        """``ovs-ofctl -O <switch's version> COMMAND <bridge> ARGS`` (e.g. ``add-flow``)."""
        ovs = self._require_ovs()
        version = self.protocols.get(switch, self.default_protocols).split(",")[0]
        return ovs.ofctl("-O", version, command, self.bridge(switch), *args, timeout=timeout)

    def trace(self, switch: str, flow: str) -> str:
        """``ofproto/trace`` on ``switch``'s bridge."""
        ovs = self._require_ovs()
        return ovs.trace(self.bridge(switch), flow)

    def set_link_state(self, a: str, b: str, up: bool) -> None:
        """Take the fabric link between switches ``a`` and ``b`` down or up (both veth ends,
        in one ``ip -batch``), so the switches report PORT_STATUS link-down as a cable pull
        would.

        Measured on OVS 3.1 (userspace datapath): both ports report ``config: PORT_DOWN`` and
        ``state: LINK_DOWN`` within ~10 ms, and a fast-failover group's bucket watching either
        port is dead at once (``ofproto/trace`` picks the next bucket); up again, the first
        bucket is chosen again.
        """
        links = [lk for lk in self.topo.links if {lk.a, lk.b} == {a, b}]
        if not links:
            raise KeyError(f"no fabric link between {a!r} and {b!r}")
        names = [self.port_ifname(sw, port) for lk in links for sw, port in lk.ends()]
        nx.set_links_state(names, up, self.switch_netns)

    def link_ports(self, a: str, b: str) -> list[tuple[str, int]]:
        """The (switch, port) ends of every fabric link between ``a`` and ``b``."""
        return [end for lk in self.topo.links if {lk.a, lk.b} == {a, b} for end in lk.ends()]

    def port_state(self, switch: str, port: int) -> tuple[bool, bool]:
        """``(port_down, link_down)`` of one port as the switch reports it (PORT_DESC)."""
        out = self.ofctl(switch, "dump-ports-desc")
        blocks = re.split(r"\n(?= \S)", out)
        for block in blocks:
            m = re.match(r"\s*(\d+)\(", block)
            if m is not None and int(m.group(1)) == port:
                config = re.search(r"config:\s*(.*)", block)
                state = re.search(r"state:\s*(.*)", block)
                return (
                    config is not None and "PORT_DOWN" in config.group(1),
                    state is not None and "LINK_DOWN" in state.group(1),
                )
        raise KeyError(f"switch {switch!r} has no port {port}")

    def disconnect_controller(self, switches: Iterable[str]) -> None:
        """Drop the control connection of ``switches`` without touching their flow tables.

        They are pointed at a Unix socket nobody listens on (inside OVS's run directory),
        so OVS closes the connection to the controller and keeps retrying the dead target
        with OVS's own backoff (1, 2, 4, 8 s after a connection that was up).  Not
        ``del-controller``: Open vSwitch itself flushes a bridge's flows when its controller
        set becomes empty (measured:
        ``notes/ovs-conformance-facts.md``).  With ``fail_mode=secure`` the switches keep
        forwarding with the rules they have.  :meth:`reconnect_controller` undoes it.
        """
        ovs = self._require_ovs()
        self.set_controller(f"unix:{ovs.rundir}/nobody-listens.sock", switches)

    def reconnect_controller(self, switches: Iterable[str]) -> None:
        """Point ``switches`` back at the fabric's controller (the last target given to
        :meth:`set_controller` for every switch)."""
        if self.controller is None:
            raise FabricError("the fabric has no controller to reconnect to")
        self.set_controller(self.controller, switches)

    def controller_connected(self, switch: str) -> bool:
        """Whether OVS reports ``switch``'s controller connection as up in its database.

        OVS refreshes that column only every few seconds (measured: 3.5 s after the
        connection was really back), so this tells a state, not the moment it changed; ask
        the controller for that."""
        ovs = self._require_ovs()
        uuids = ovs.vsctl("get", "Bridge", self.bridge(switch), "controller").strip(" []\n")
        if not uuids:
            return False
        got = ovs.vsctl("get", "Controller", uuids.split(",")[0].strip(), "is_connected")
        return got.strip() == "true"

    # --- teardown -----------------------------------------------------------------------------
    def close(self) -> None:
        """Remove every process, namespace, interface and bridge this fabric created.

        Idempotent, and safe after a partial build.  Order matters: processes inside our
        namespaces first (a live process pins a namespace and every veth in it), then OVS (its
        tap devices go with our switch namespace, or with ``exit --cleanup`` in the root
        namespace), then interfaces in the root namespace, then namespaces.  Errors are
        collected and raised together at the end, after everything was tried.
        """
        if self._closed:
            return
        t0 = time.monotonic()
        errors: list[str] = []

        def attempt(what: str, fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                errors.append(f"{what}: {exc}")

        for proc in self._procs:
            attempt("stop host process", _stop_process, proc)
        for proc, path in self._relays.values():
            attempt("stop relay", _stop_process, proc)
            path.unlink(missing_ok=True)
        self._relays.clear()
        ovs = self.ovs
        if ovs is not None:
            # In our own switch namespace, the namespace's deletion removes vswitchd's tap
            # devices much faster than `exit --cleanup` (1.4 s for a fat tree).
            attempt("stop OVS", lambda: ovs.stop(cleanup=self.switch_netns is None))
        for ns in self._netns:
            attempt(f"kill processes in {ns}", _kill_netns_pids, ns)
        root_links = [name for name, ns in self._links.items() if ns is None]
        for name in root_links:
            attempt(f"delete {name}", nx.delete_link, name, None)
        for ns in reversed(self._netns):
            attempt(f"delete netns {ns}", nx.delete_netns, ns)
        if root_links:
            attempt("wait for interfaces", nx.wait_links_gone, root_links)
        if self._made_rundir and self.rundir is not None and not self.keep_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
        self._closed = True
        self.timings["close"] = time.monotonic() - t0
        if errors:
            raise FabricError(
                f"fabric {self.prefix}: cleanup incomplete:\n  " + "\n  ".join(errors)
            )

    def __enter__(self) -> Fabric:
        return self.build()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "built" if self._built else "new"
        return f"<Fabric {self.prefix} {self.topo.summary()} {state}>"


def _stop_process(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)


def _kill_netns_pids(ns: str) -> None:
    """Kill what still runs inside our namespace ``ns`` (it was started there by our tests)."""
    if not nx.netns_exists(ns):
        return
    out = nx.run(["ip", "netns", "pids", ns], check=False).stdout
    pids = [int(p) for p in out.split() if p.isdigit() and int(p) != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists(f"/proc/{p}")]
            if not pids:
                return
            time.sleep(0.02)


# --- the control-channel relay (runs as its own process) ----------------------------------------
_RELAY_BUF = 1 << 20  # stop reading a side when more than this waits to be written to the other


def relay_main(argv: Sequence[str]) -> None:
    """Relay process: accept on an inherited Unix listening socket, forward each connection to
    ``tcp:HOST:PORT``.  ``argv`` = ``[listen_fd, host, port]``.

    A single-threaded ``selectors`` loop with bounded buffers.  If the TCP target refuses, the
    accepted connection is closed at once and OVS retries with its backoff, just as it would
    against the target directly.  Exits when its parent dies, so a crashed test leaves no relay.
    """
    lfd, host, port = int(argv[0]), argv[1], int(argv[2])
    parent = os.getppid()
    listener = socket.socket(fileno=lfd)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    peer: dict[socket.socket, socket.socket] = {}
    pending: dict[socket.socket, bytearray] = {}  # bytes waiting to be written *to* the socket

    def close_pair(s: socket.socket) -> None:
        for x in (s, peer.get(s)):
            if x is None or x not in peer:
                continue
            sel.unregister(x)
            x.close()
            del peer[x]
            del pending[x]

    def update(s: socket.socket) -> None:
        if s not in peer:
            return
        events = 0
        if len(pending[peer[s]]) < _RELAY_BUF:
            events |= selectors.EVENT_READ
        if pending[s]:
            events |= selectors.EVENT_WRITE
        sel.modify(s, events or selectors.EVENT_READ)

    while True:
        if os.getppid() != parent:
            return
        for key, events in sel.select(timeout=1.0):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            if s is listener:
                try:
                    conn, _ = listener.accept()
                except BlockingIOError:
                    continue
                try:
                    out = socket.create_connection((host, port), timeout=2.0)
                except OSError:
                    conn.close()
                    continue
                out.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                for x in (conn, out):
                    x.setblocking(False)
                    pending[x] = bytearray()
                    sel.register(x, selectors.EVENT_READ)
                peer[conn], peer[out] = out, conn
                continue
            if s not in peer:
                continue
            try:
                if events & selectors.EVENT_WRITE and pending[s]:
                    sent = s.send(pending[s])
                    del pending[s][:sent]
                if events & selectors.EVENT_READ:
                    data = s.recv(65536)
                    if not data:
                        close_pair(s)
                        continue
                    other = peer[s]
                    if not pending[other]:
                        try:
                            sent = other.send(data)
                        except BlockingIOError:
                            sent = 0
                        data = data[sent:]
                    pending[other] += data
                    update(other)
                update(s)
            except OSError:
                close_pair(s)


__all__ = ["Fabric", "FabricError", "FabricHost", "random_prefix", "relay_main"]
