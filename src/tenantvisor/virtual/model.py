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


LIMIT_KINDS = ("vport", "vlink")
LIMIT_FIELDS = ("vport_pps", "vport_kbps", "vlink_pps", "vlink_kbps")
MAX_LIMIT = 0xFFFFFFFF  # a meter band's rate is 32 bits


@dataclass(frozen=True)
class Limits:
    """Data-plane limits on a network's traffic where it enters the tenant's slice: per
    edge vport (what its hosts send) and per vlink direction (what crosses it, so a loop
    that bounces frames over fabric links is bounded at every lap), in packets/s or kb/s.

    Why: tenants share the pswitches' datapath and fabric links, and a tenant's own rules
    can build a forwarding loop or a flood inside its slice that starves every other
    tenant.  Each limited object gets one provider meter on the pswitch where its traffic
    enters (compile/network.py).  An OpenFlow 1.3 meter counts packets or kilobits, not
    both (Open vSwitch refuses KBPS|PKTPS with BAD_FLAGS), so a kind is limited in one
    unit: `problem` refuses both.  None: not set here (a network's override leaves the
    admin's default); 0: unlimited."""

    vport_pps: int | None = None
    vport_kbps: int | None = None
    vlink_pps: int | None = None
    vlink_kbps: int | None = None

    def over(self, base: Limits) -> Limits:
        """These limits over `base` (the admin's defaults): a kind this sets in either
        unit is taken whole from here (an override of `vport_kbps` replaces a default
        `vport_pps`), the others from `base`; the result sets every field (0: none)."""
        out: dict[str, int] = {}
        for kind in LIMIT_KINDS:
            src = self if self.sets(kind) else base
            out[f"{kind}_pps"] = getattr(src, f"{kind}_pps") or 0
            out[f"{kind}_kbps"] = getattr(src, f"{kind}_kbps") or 0
        return Limits(**out)

    def sets(self, kind: str) -> bool:
        return getattr(self, f"{kind}_pps") is not None or getattr(self, f"{kind}_kbps") is not None

    def rate(self, kind: str) -> tuple[int, bool] | None:
        """(rate, whether in packets/s) of one kind's meters; None: unlimited."""
        pps, kbps = getattr(self, f"{kind}_pps") or 0, getattr(self, f"{kind}_kbps") or 0
        if pps:
            return pps, True
        if kbps:
            return kbps, False
        return None

    def given(self) -> dict[str, int]:
        """The fields set (not None), by name: what an override says, as stored."""
        return {k: v for k in LIMIT_FIELDS if (v := getattr(self, k)) is not None}

    def problem(self) -> str | None:
        """Why these limits cannot be enforced (None: they can)."""
        for k in LIMIT_FIELDS:
            v = getattr(self, k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)
                                  or not 0 <= v <= MAX_LIMIT):  # fmt: skip
                return f"{k} {v!r} must be a whole number 0-{MAX_LIMIT} (0: unlimited)"
        for kind in LIMIT_KINDS:
            if getattr(self, f"{kind}_pps") and getattr(self, f"{kind}_kbps"):
                return (
                    f"{kind}_pps and {kind}_kbps: a meter counts packets or kilobits, not "
                    "both (OpenFlow 1.3 meters have one unit); set one, the other 0 or unset"
                )
        return None


NO_LIMITS = Limits()


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
    # the admin's override of the default data-plane limits for this network (unset
    # fields: the daemon's defaults apply)
    limits: Limits = NO_LIMITS
    # the store's generation of this network when it was last read or written (0: never):
    # a write over a newer generation (another instance's) is refused, not silently undone
    revision: int = field(default=0, compare=False, repr=False)
    # bumped by the manager on every change of this network but a host's location (a live
    # migration): the compiler may then redo only what hosts decide (compile/network.py)
    shape: int = field(default=0, compare=False, repr=False)

    def vport(self, vdpid: int, number: int) -> VPort | None:
        sw = self.switches.get(vdpid)
        return None if sw is None else sw.ports.get(number)

    def where(self, h: Host) -> tuple[int, int] | None:
        """The physical port host `h` is on now (None: its vport is gone)."""
        if h.location is not None:
            return h.location
        vp = self.vport(h.vdpid, h.vport)
        return None if vp is None else (vp.dpid, vp.port)
