"""Tenant intent: what tenants asked for, as plain data.

This is kept apart from runtime state (sessions, xid maps, installed rules) so it can be
stored, replicated and re-applied; everything the hypervisor programs is derived from it plus
what the pswitches report.  Ids are small integers chosen by the hypervisor (OpenVirteX-style
`tenantId` is our network id), vdpids and vport numbers are what the tenant's controller sees.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class VPortKind(StrEnum):
    EDGE = "edge"  # a host attaches; the physical port does not face another pswitch
    LINK = "link"  # an end of a vlink; the physical port faces another pswitch


@dataclass
class Tenant:
    id: int
    name: str
    # sha256 of the token, hex: all that is kept (and stored); the token itself is shown
    # once, when the tenant is created, and held only until then
    token_hash: str
    token: str = field(default="", repr=False, compare=False)
    # the admin's own values for this tenant's limits (quotas.KEYS -> value), over the
    # daemon's defaults; absent keys take the default
    limits: dict[str, int] = field(default_factory=dict)


@dataclass
class VPort:
    """A port of a vswitch, mapped onto one physical port of the vswitch's pswitch.

    An edge vport admits the frames of the hosts registered on it, by source MAC: several
    vports (of any tenants) may share one physical port.  An `exclusive` edge vport holds
    its physical port alone (no other vport or host of any tenant may use it), so every
    frame arriving there is its own and is classified by the port alone, whatever its
    source MAC or VLAN tags: for appliances, routers, nested VMs or test sets whose MACs
    are not known in advance.
    """

    number: int
    dpid: int
    port: int
    kind: VPortKind
    link_id: int | None = None  # set when this link vport is an end of a vlink
    exclusive: bool = False


PathHops = tuple[tuple[int, int, int, int], ...]
"""A physical path as the tenant gave it: (src_dpid, src_port, dst_dpid, dst_port) per hop."""

ROUTING_ALGORITHMS = ("spf", "manual")


@dataclass
class ManualPath:
    """A path the tenant chose (OVX `setLinkPath` / `connectRoute`): the highest priority
    whose links are all up carries the traffic, the others are its backups."""

    hops: PathHops
    priority: int


@dataclass
class Route:
    """A manual internal route of a big switch, between two of its vports (OVX
    `connectRoute`).  It carries what leaves `src_vport`'s pswitch toward `dst_vport`."""

    id: int
    src_vport: int
    dst_vport: int
    path: ManualPath


@dataclass
class VSwitch:
    """A virtual switch mapped onto one pswitch, or onto several (a big switch: its vports
    may sit on any of them, internal routes join them)."""

    vdpid: int
    dpids: list[int]
    index: int  # fabric-wide id, carried in the metadata bits the hypervisor owns
    ports: dict[int, VPort] = field(default_factory=dict)
    # This vswitch's own controller URLs (e.g. a ptcp: listener of its own); None: the
    # network's.
    controller_urls: list[str] | None = None
    # Internal routing of a big switch: "spf" (shortest paths inside its own pswitches, plus
    # `backup_num` link-disjoint alternatives) or "manual" (`routes`).
    routing: str = "spf"
    backup_num: int = 0
    routes: dict[int, Route] = field(default_factory=dict)

    @property
    def dpid(self) -> int:
        """The first pswitch: the whole vswitch unless it is a big switch."""
        return self.dpids[0]

    @property
    def is_big(self) -> bool:
        return len(self.dpids) > 1


@dataclass
class VLinkEnd:
    vdpid: int
    vport: int


@dataclass
class VLink:
    id: int
    src: VLinkEnd
    dst: VLinkEnd
    # "spf": the shortest path plus `backup_num` link-disjoint alternatives, recomputed as
    # the fabric changes; "manual": `paths`, set by the tenant (src -> dst; the reverse
    # direction uses the same links backwards).
    algorithm: str = "spf"
    backup_num: int = 0
    paths: list[ManualPath] = field(default_factory=list)


@dataclass
class Host:
    """A host: its virtual place (vswitch, vport) is the tenant's and never changes; its
    physical location is its vport's port until it moves (`location`: the edge port it is on
    now, the vport following it, reached over the fabric as a big switch's vport is)."""

    id: int
    vdpid: int
    vport: int
    mac: str  # lower-case colon form, the key together with the physical port
    location: tuple[int, int] | None = None  # (dpid, port) when it moved away from the vport's


@dataclass
class VirtualNetwork:
    id: int
    tenant_id: int
    controller_urls: list[str]
    network_address: str | None = None
    mask: int | None = None
    scalability: str = "exact"
    started: bool = False
    switches: dict[int, VSwitch] = field(default_factory=dict)  # by vdpid
    links: dict[int, VLink] = field(default_factory=dict)
    hosts: dict[int, Host] = field(default_factory=dict)
    # the store's generation of this network when it was last read or written (0: never):
    # a write over a newer generation (another instance's) is refused, not silently undone
    revision: int = field(default=0, compare=False, repr=False)

    def vport(self, vdpid: int, number: int) -> VPort | None:
        sw = self.switches.get(vdpid)
        return None if sw is None else sw.ports.get(number)

    def where(self, h: Host) -> tuple[int, int] | None:
        """The physical port host `h` is on now (None: its vport is gone)."""
        if h.location is not None:
            return h.location
        vp = self.vport(h.vdpid, h.vport)
        return None if vp is None else (vp.dpid, vp.port)
