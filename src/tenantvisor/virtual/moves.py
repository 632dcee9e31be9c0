"""Which host a frame says moved where (issue 10): pure, from the intent alone.

A live-migrated VM announces itself with a gratuitous ARP (or RARP) from its new port; the
pswitch punts what nothing classified there (the provider's metered table-0 rule), and the
hypervisor asks `detect` whether that frame is a move.  A tenant's frame must never move
another tenant's host, and a tenant's VM can send any source MAC: so a frame only speaks for
the one network allowed on its port, and within it the MAC must name exactly one host.  The
networks allowed on a port are those with an edge vport on it; on a port nobody has, those
with an edge vport on its pswitch (a VM lands on a fresh port of a compute node).  With
several allowed, nothing moves (the orchestrator says it through the API instead): a frame
there could come from another tenant's VM.  What stays the provider's to avoid: plugging a
VM of one tenant into a port of a pswitch only another tenant uses.

A port an exclusive vport holds is that vport's whole: whatever arrives there is its own
traffic (table 0 classifies it by in_port alone, so nothing from it is even punted while its
network runs), never a host that moved; and a host registered on an exclusive vport is there
for information, its vport bound to its port, so it is never moved either.
"""

from __future__ import annotations

from collections.abc import Iterable

from tenantvisor.virtual.model import VirtualNetwork, VPortKind


def detect(
    networks: Iterable[VirtualNetwork], dpid: int, port: int, mac: str
) -> tuple[int, int] | str:
    """(network id, host id) of the host a frame from `mac` on physical port (dpid, port)
    says moved there, or why it says nothing."""
    networks = list(networks)
    for n in networks:  # started or not: the port is held all the same
        if any(vp.exclusive and (vp.dpid, vp.port) == (dpid, port)
               for sw in n.switches.values() for vp in sw.ports.values()):  # fmt: skip
            return (f"the port is held by an exclusive vport of network {n.id}: its frames "
                    "are that vport's, never a move")  # fmt: skip
    started = [n for n in networks if n.started]
    allowed = sorted((n for n in started if _has_edge(n, dpid, port)), key=lambda n: n.id)
    where = "port"
    if not allowed:
        allowed = sorted((n for n in started if _has_edge(n, dpid, None)), key=lambda n: n.id)
        where = "pswitch"
    if not allowed:
        return "no started network has an edge vport on this port or its pswitch"
    if len(allowed) > 1:
        ids = ", ".join(str(n.id) for n in allowed)
        return f"the {where} is shared by networks {ids}: a frame could name another's host"
    net = allowed[0]
    hosts = [h for h in net.hosts.values() if h.mac == mac]
    if not hosts:
        return f"network {net.id} has no host with this MAC"
    if len(hosts) > 1:
        return f"network {net.id} has {len(hosts)} hosts with this MAC"
    (h,) = hosts
    vp = net.vport(h.vdpid, h.vport)
    if vp is not None and vp.exclusive:
        return f"host {h.id} of network {net.id} is on an exclusive vport, bound to its port"
    if net.where(h) == (dpid, port):
        return f"host {h.id} of network {net.id} is already here"
    return net.id, h.id


def _has_edge(net: VirtualNetwork, dpid: int, port: int | None) -> bool:
    """Whether `net` has an edge vport on (dpid, port) (port None: anywhere on dpid)."""
    return any(
        vp.kind is VPortKind.EDGE and vp.dpid == dpid and port in (None, vp.port)
        for sw in net.switches.values()
        for vp in sw.ports.values()
    )
