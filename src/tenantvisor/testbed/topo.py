"""Test-bed topologies as plain data: switches, fabric links, hosts.  No I/O, no root.

Why separate from :mod:`tenantvisor.testbed.fabric`: tests and the hypervisor's own checks need
to reason about the *intended* physical network (which dpid is where, which port faces which
neighbour, what a host's address is) without building it, and a pure description is what both
the builder and the assertions compare against.

Determinism is the point of the builders: dpids and port numbers follow a documented scheme, so
a test can hard-code "the link from leaf ``lf1`` to spine ``sp2`` is on port 3".

* **dpids** are assigned 1, 2, 3, ... in the order switches are added; each builder documents
  its order.
* **ports** on a switch: host ports first (1..h), then fabric ports in the order listed in the
  builder's docstring.
* **hosts** are ``h1``, ``h2``, ... numbered across the whole topology; host *i* gets MAC
  ``00:00:00:00:HH:LL`` (i in hex) and IPv4 ``10.0.0.0 + i`` with prefix /8 (``10.0.0.1/8``),
  the Mininet convention.  Both are overridable per host (:meth:`Topology.set_host_address`),
  because multi-tenant tests deliberately give two tenants identical MACs and IPs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MAX_DPID = (1 << 64) - 1
MAX_PORT = 0xFEFF  # OpenFlow 1.0's last physical port number (OFPP_MAX = 0xff00 is reserved)


@dataclass(frozen=True)
class Switch:
    """One OpenFlow switch: a name unique in the topology and its datapath id."""

    name: str
    dpid: int

    @property
    def dpid_hex(self) -> str:
        """The 16-hex-digit form OVS's ``other-config:datapath-id`` wants."""
        return f"{self.dpid:016x}"


@dataclass(frozen=True)
class Link:
    """A fabric link: port ``pa`` of switch ``a`` <-> port ``pb`` of switch ``b``."""

    a: str
    pa: int
    b: str
    pb: int

    def ends(self) -> tuple[tuple[str, int], tuple[str, int]]:
        return (self.a, self.pa), (self.b, self.pb)


@dataclass(frozen=True)
class Host:
    """A host: attached to ``port`` of ``switch``, with ``mac`` and ``ipv4`` as ``addr/prefix``."""

    name: str
    switch: str
    port: int
    mac: str
    ipv4: str

    @property
    def ip(self) -> str:
        """The address without its prefix length (what ``ping`` wants)."""
        return self.ipv4.split("/", 1)[0]

    @property
    def prefixlen(self) -> int:
        return ipaddress.IPv4Interface(self.ipv4).network.prefixlen


def default_mac(index: int) -> str:
    """MAC of host number ``index`` (1-based): ``00:00:00:00:00:01`` for 1."""
    if not 0 < index < (1 << 16):
        raise ValueError(f"host index {index} out of range for the default MAC scheme")
    return f"00:00:00:00:{index >> 8:02x}:{index & 0xFF:02x}"


def default_ipv4(index: int) -> str:
    """IPv4 of host number ``index`` (1-based): ``10.0.0.1/8`` for 1."""
    if not 0 < index < (1 << 24) - 1:
        raise ValueError(f"host index {index} out of range for 10.0.0.0/8")
    return f"{ipaddress.IPv4Address('10.0.0.0') + index}/8"


def _norm_mac(mac: str) -> str:
    m = mac.strip().lower().replace("-", ":")
    if not _MAC_RE.match(m):
        raise ValueError(f"not a MAC address: {mac!r}")
    return m


def _norm_ipv4(cidr: str) -> str:
    if "/" not in cidr:
        raise ValueError(f"IPv4 address needs a prefix length (e.g. 10.0.0.1/8): {cidr!r}")
    try:
        iface = ipaddress.IPv4Interface(cidr)
    except ValueError as exc:
        raise ValueError(f"not an IPv4 address/prefix: {cidr!r}") from exc
    return str(iface)


class Topology:
    """Switches, fabric links and hosts, with port numbers checked for clashes as they are added.

    Mutable while being built; :meth:`validate` re-checks everything (the fabric builder calls
    it).  Iteration order is insertion order everywhere, which keeps builds deterministic.
    """

    def __init__(self, name: str = "topo") -> None:
        self.name = name
        self.switches: dict[str, Switch] = {}
        self.links: list[Link] = []
        self.hosts: dict[str, Host] = {}
        self._used: dict[tuple[str, int], str] = {}  # (switch, port) -> what uses it

    # --- building -----------------------------------------------------------------------------
    def add_switch(self, name: str, dpid: int | None = None) -> Switch:
        """Add a switch; ``dpid`` defaults to the number of switches so far + 1."""
        if not name or name in self.switches or name in self.hosts:
            raise ValueError(f"switch name {name!r} is empty or already used")
        if dpid is None:
            dpid = len(self.switches) + 1
            while any(s.dpid == dpid for s in self.switches.values()):
                dpid += 1
        if not 0 < dpid <= MAX_DPID:
            raise ValueError(f"dpid {dpid:#x} of {name!r} out of range")
        if any(s.dpid == dpid for s in self.switches.values()):
            raise ValueError(f"dpid {dpid:#x} of {name!r} already used")
        sw = Switch(name, dpid)
        self.switches[name] = sw
        return sw

    def next_free_port(self, switch: str) -> int:
        """Lowest port number not yet used on ``switch``."""
        self._switch(switch)
        port = 1
        while (switch, port) in self._used:
            port += 1
        return port

    def add_link(self, a: str, b: str, pa: int | None = None, pb: int | None = None) -> Link:
        """Link switch ``a`` port ``pa`` to switch ``b`` port ``pb`` (default: next free ports)."""
        self._switch(a)
        self._switch(b)
        if a == b:
            raise ValueError(f"a fabric link needs two different switches, got {a!r} twice")
        pa = self.next_free_port(a) if pa is None else pa
        self._claim(a, pa, f"link to {b}")
        try:
            pb = self.next_free_port(b) if pb is None else pb
            self._claim(b, pb, f"link to {a}")
        except ValueError:
            del self._used[(a, pa)]
            raise
        link = Link(a, pa, b, pb)
        self.links.append(link)
        return link

    def add_host(
        self,
        name: str,
        switch: str,
        port: int | None = None,
        *,
        mac: str | None = None,
        ipv4: str | None = None,
    ) -> Host:
        """Attach host ``name`` to ``switch``; MAC/IPv4 default to the scheme for host number N,
        N being the number of hosts so far + 1."""
        if not name or name in self.hosts or name in self.switches:
            raise ValueError(f"host name {name!r} is empty or already used")
        self._switch(switch)
        index = len(self.hosts) + 1
        port = self.next_free_port(switch) if port is None else port
        host = Host(
            name=name,
            switch=switch,
            port=port,
            mac=_norm_mac(mac) if mac is not None else default_mac(index),
            ipv4=_norm_ipv4(ipv4) if ipv4 is not None else default_ipv4(index),
        )
        self._claim(switch, port, f"host {name}")
        self.hosts[name] = host
        return host

    def set_host_address(
        self, name: str, *, mac: str | None = None, ipv4: str | None = None
    ) -> Host:
        """Override a host's MAC and/or IPv4 (duplicates across hosts are allowed on purpose)."""
        host = self.host(name)
        new = replace(
            host,
            mac=_norm_mac(mac) if mac is not None else host.mac,
            ipv4=_norm_ipv4(ipv4) if ipv4 is not None else host.ipv4,
        )
        self.hosts[name] = new
        return new

    # --- queries ------------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r} in topology {self.name!r}") from None

    def switch(self, name: str) -> Switch:
        return self._switch(name)

    def switch_by_dpid(self, dpid: int) -> Switch:
        for sw in self.switches.values():
            if sw.dpid == dpid:
                return sw
        raise KeyError(f"no switch with dpid {dpid:#x} in topology {self.name!r}")

    def ports(self, switch: str) -> dict[int, str]:
        """Used ports of ``switch`` -> what is attached (``"host h1"``, ``"link to s2"``)."""
        self._switch(switch)
        return {p: what for (s, p), what in sorted(self._used.items()) if s == switch}

    def hosts_on(self, switch: str) -> list[Host]:
        return [h for h in self.hosts.values() if h.switch == switch]

    def links_of(self, switch: str) -> list[Link]:
        return [lk for lk in self.links if switch in (lk.a, lk.b)]

    def validate(self) -> None:
        """Re-check the whole topology (names, dpids, port clashes, port ranges, addresses)."""
        seen: dict[tuple[str, int], str] = {}
        dpids: set[int] = set()
        for sw in self.switches.values():
            if sw.dpid in dpids or not 0 < sw.dpid <= MAX_DPID:
                raise ValueError(f"bad or duplicate dpid {sw.dpid:#x} on {sw.name!r}")
            dpids.add(sw.dpid)
        if set(self.switches) & set(self.hosts):
            raise ValueError(
                f"names used by a switch and a host: {set(self.switches) & set(self.hosts)}"
            )

        def claim(sw: str, port: int, what: str) -> None:
            if sw not in self.switches:
                raise ValueError(f"{what} names unknown switch {sw!r}")
            if not 0 < port <= MAX_PORT:
                raise ValueError(f"{what}: port {port} on {sw!r} out of range 1..{MAX_PORT}")
            if (sw, port) in seen:
                raise ValueError(f"port {port} of {sw!r} used twice: {seen[(sw, port)]}, {what}")
            seen[(sw, port)] = what

        for lk in self.links:
            claim(lk.a, lk.pa, f"link {lk.a}-{lk.b}")
            claim(lk.b, lk.pb, f"link {lk.a}-{lk.b}")
        for h in self.hosts.values():
            claim(h.switch, h.port, f"host {h.name}")
            _norm_mac(h.mac)
            _norm_ipv4(h.ipv4)

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.switches)} switches, {len(self.links)} links, "
            f"{len(self.hosts)} hosts"
        )

    def __repr__(self) -> str:
        return f"<Topology {self.summary()}>"

    # --- internals ----------------------------------------------------------------------------
    def _switch(self, name: str) -> Switch:
        try:
            return self.switches[name]
        except KeyError:
            raise KeyError(f"no switch {name!r} in topology {self.name!r}") from None

    def _claim(self, switch: str, port: int, what: str) -> None:
        if not 0 < port <= MAX_PORT:
            raise ValueError(f"port {port} on {switch!r} out of range 1..{MAX_PORT}")
        if (switch, port) in self._used:
            raise ValueError(
                f"port {port} of {switch!r} already used by {self._used[(switch, port)]}"
            )
        self._used[(switch, port)] = what


# --- builders ------------------------------------------------------------------------------------
def linear(n_switches: int, hosts_per_switch: int = 1) -> Topology:
    """A chain ``s1 - s2 - ... - sN`` with ``hosts_per_switch`` hosts on each switch.

    dpids: ``s<i>`` has dpid *i*.  Ports on ``s<i>``: hosts 1..h, then the link towards
    ``s<i-1>`` (if any) on h+1, then the link towards ``s<i+1>`` (if any) on the next port: so
    ``s1`` reaches ``s2`` on h+1 and every middle switch has its left link on h+1 and its right
    link on h+2.  Hosts are numbered along the chain (``s1`` gets h1..hh).
    """
    if n_switches < 1 or hosts_per_switch < 0:
        raise ValueError("linear() needs n_switches >= 1 and hosts_per_switch >= 0")
    topo = Topology(f"linear{n_switches}x{hosts_per_switch}")
    for i in range(1, n_switches + 1):
        topo.add_switch(f"s{i}", dpid=i)
    n = 0
    for i in range(1, n_switches + 1):
        for j in range(1, hosts_per_switch + 1):
            n += 1
            topo.add_host(f"h{n}", f"s{i}", j)
    h = hosts_per_switch
    for i in range(1, n_switches):
        right_port = h + 1 if i == 1 else h + 2  # s<i>'s port towards s<i+1>
        topo.add_link(f"s{i}", f"s{i + 1}", right_port, h + 1)
    return topo


def ring(n_switches: int = 4, hosts_per_switch: int = 1) -> Topology:
    """A ring ``s1 - s2 - ... - sN - s1``: every pair of switches is joined by two
    link-disjoint paths, so a vlink has a backup whatever single link fails.

    dpids: ``s<i>`` has dpid *i*.  Ports on ``s<i>``: hosts 1..h, then the link towards the
    next switch ``s<i+1>`` (clockwise, ``s1`` after ``sN``) on h+1, then the link towards the
    previous switch ``s<i-1>`` on h+2.  So link ``s<i>-s<i+1>`` is port h+1 of ``s<i>`` and
    port h+2 of ``s<i+1>``.  Hosts are numbered around the ring (``s1`` gets h1..hh).
    """
    if n_switches < 3 or hosts_per_switch < 0:
        raise ValueError("ring() needs n_switches >= 3 and hosts_per_switch >= 0")
    topo = Topology(f"ring{n_switches}x{hosts_per_switch}")
    for i in range(1, n_switches + 1):
        topo.add_switch(f"s{i}", dpid=i)
    n = 0
    for i in range(1, n_switches + 1):
        for j in range(1, hosts_per_switch + 1):
            n += 1
            topo.add_host(f"h{n}", f"s{i}", j)
    h = hosts_per_switch
    for i in range(1, n_switches + 1):
        nxt = i % n_switches + 1
        topo.add_link(f"s{i}", f"s{nxt}", h + 1, h + 2)
    return topo


def two_tier(n_spines: int = 2, n_leaves: int = 2, hosts_per_leaf: int = 1) -> Topology:
    """Leaf-spine: every leaf links to every spine, so leaf-to-leaf traffic is multi-hop.

    Spines ``sp1..spS`` get dpids 1..S, leaves ``lf1..lfL`` dpids S+1..S+L.  Ports: on leaf
    ``lf<i>``, hosts 1..h and spine ``sp<j>`` on port h+j; on spine ``sp<j>``, leaf ``lf<i>`` on
    port i.  Hosts are numbered leaf by leaf.
    """
    if n_spines < 1 or n_leaves < 1 or hosts_per_leaf < 0:
        raise ValueError("two_tier() needs n_spines >= 1, n_leaves >= 1, hosts_per_leaf >= 0")
    topo = Topology(f"two_tier{n_spines}x{n_leaves}x{hosts_per_leaf}")
    for j in range(1, n_spines + 1):
        topo.add_switch(f"sp{j}", dpid=j)
    for i in range(1, n_leaves + 1):
        topo.add_switch(f"lf{i}", dpid=n_spines + i)
    n = 0
    for i in range(1, n_leaves + 1):
        for p in range(1, hosts_per_leaf + 1):
            n += 1
            topo.add_host(f"h{n}", f"lf{i}", p)
    for i in range(1, n_leaves + 1):
        for j in range(1, n_spines + 1):
            topo.add_link(f"lf{i}", f"sp{j}", hosts_per_leaf + j, i)
    return topo


def fat_tree(k: int = 4) -> Topology:
    """The k-ary fat tree (Al-Fares et al.): (k/2)^2 core, k pods of k/2 aggregation + k/2 edge
    switches, k/2 hosts per edge switch.  k=4: 4 core, 8 aggregation, 8 edge, 16 hosts, 32 links.

    Names and dpids, in this order: core ``c1..c{(k/2)^2}`` (dpids 1..), aggregation
    ``a1..a{k^2/2}``, edge ``e1..e{k^2/2}`` (pod *p*, 0-based, owns aggregation/edge switches
    p*k/2+1 .. p*k/2+k/2).  Ports (h = k/2):

    * edge ``e``: hosts on 1..h; the pod's aggregation switch number *m* (0-based) on h+1+m;
    * aggregation ``a`` (m-th of its pod): the pod's edge switch number *n* on 1+n; core
      switches ``c{m*h+1} .. c{m*h+h}`` on h+1 .. k;
    * core ``c``: pod *p*'s aggregation switch on port p+1.

    Hosts ``h1..`` are numbered edge by edge.
    """
    if k < 2 or k % 2:
        raise ValueError(f"fat_tree() needs an even k >= 2, got {k}")
    h = k // 2
    topo = Topology(f"fat_tree{k}")
    n_core = h * h
    n_pod_sw = k * h
    for c in range(1, n_core + 1):
        topo.add_switch(f"c{c}", dpid=c)
    for a in range(1, n_pod_sw + 1):
        topo.add_switch(f"a{a}", dpid=n_core + a)
    for e in range(1, n_pod_sw + 1):
        topo.add_switch(f"e{e}", dpid=n_core + n_pod_sw + e)
    n = 0
    for e in range(1, n_pod_sw + 1):
        for p in range(1, h + 1):
            n += 1
            topo.add_host(f"h{n}", f"e{e}", p)
    for pod in range(k):
        for m in range(h):  # aggregation switch m of the pod
            agg = f"a{pod * h + m + 1}"
            for e in range(h):  # edge switch e of the pod
                topo.add_link(f"e{pod * h + e + 1}", agg, h + 1 + m, 1 + e)
            for c in range(h):
                topo.add_link(agg, f"c{m * h + c + 1}", h + 1 + c, pod + 1)
    return topo


__all__ = [
    "Host",
    "Link",
    "Switch",
    "Topology",
    "default_ipv4",
    "default_mac",
    "fat_tree",
    "linear",
    "ring",
    "two_tier",
]
