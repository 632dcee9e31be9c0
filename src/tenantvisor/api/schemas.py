"""REST request and reply models, and their conversion from the intent dataclasses.

The wire shapes are explicit pydantic models, not the dataclasses themselves, so the OpenAPI
document is the contract: the core may grow fields without the API changing under clients.
Numbers that name things (ports, ids) are strict integers: JSON `"3"` or `true` where a port
belongs is a client bug worth a 422, not something to guess at.  Dpids are the one exception:
operators paste them in every notation, so they are accepted as int or string (see `ids`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
)
from pydantic.json_schema import WithJsonSchema

from tenantvisor.api.ids import dpid_str, parse_dpid
from tenantvisor.compile.paths import vlink_candidates
from tenantvisor.mapping.paths import Hop, Path, is_live
from tenantvisor.physical.topology import PhysicalTopology
from tenantvisor.quotas import DESCRIPTIONS, KEYS, QUOTAS, TenantLimits
from tenantvisor.virtual.model import (
    MAX_LIMIT,
    NO_LIMITS,
    Host,
    Limits,
    ManualPath,
    PathHops,
    Route,
    Tenant,
    VirtualNetwork,
    VLink,
    VPort,
    VSwitch,
)


def _dpid_before(value: object) -> int:
    return parse_dpid(value)


DpidIn = Annotated[
    int,
    BeforeValidator(_dpid_before),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
            "description": "datapath id: integer, or a string in decimal, 0x-hex or colon hex",
            "examples": [1, "0x1", "00:00:00:00:00:00:00:01"],
        }
    ),
]


class _Model(BaseModel):
    """Request bodies refuse unknown fields: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid")


# --- requests --------------------------------------------------------------------------------
SCALABILITY_HELP = (
    "flow-rule reduction level (Libera's scalability level): exact (no reduction), app, "
    "host, hop or lite"
)


class TenantCreate(_Model):
    name: StrictStr = Field(description="1-64 letters, digits, '_', '.', '-'")


class NetworkCreate(_Model):
    controller_urls: list[StrictStr] = Field(
        default_factory=list, description="tcp:IP:PORT (we connect) or ptcp:PORT[:IP] (we listen)"
    )
    network_address: StrictStr | None = Field(default=None, description="IPv4 network address")
    mask: StrictInt | None = Field(default=None, description="prefix length 0-32")
    scalability: StrictStr = Field(default="exact", description=SCALABILITY_HELP)
    tenant_id: StrictInt | None = Field(
        default=None, description="owner; only the admin may name one, a tenant owns what it makes"
    )


class ControllersSet(_Model):
    controller_urls: list[StrictStr]


class ScalabilitySet(_Model):
    level: StrictStr = Field(description=SCALABILITY_HELP, examples=["hop"])


_LIMIT_HELP = "0: unlimited; absent or null: the admin's default applies"


class LimitsSet(_Model):
    """A network's override of the default data-plane limits (admin only): per edge vport
    (what its hosts send) and per vlink direction, in packets/s or kb/s; one unit per kind
    (an OpenFlow meter has one)."""

    vport_pps: StrictInt | None = Field(default=None, ge=0, le=MAX_LIMIT, description=_LIMIT_HELP)
    vport_kbps: StrictInt | None = Field(default=None, ge=0, le=MAX_LIMIT, description=_LIMIT_HELP)
    vlink_pps: StrictInt | None = Field(default=None, ge=0, le=MAX_LIMIT, description=_LIMIT_HELP)
    vlink_kbps: StrictInt | None = Field(default=None, ge=0, le=MAX_LIMIT, description=_LIMIT_HELP)


class SwitchControllersSet(_Model):
    controller_urls: list[StrictStr] | None = Field(
        description="this vswitch's own controllers (e.g. ptcp:6634); null: the network's"
    )


class SwitchCreate(_Model):
    dpids: list[DpidIn] = Field(
        min_length=1,
        description="physical dpids the vswitch maps onto; several make a big switch",
    )
    vdpid: DpidIn | None = Field(default=None, description="virtual dpid; chosen when absent")
    routing: StrictStr = Field(
        default="spf",
        description="a big switch's internal routing: spf (shortest paths through its own "
        "pswitches) or manual (its routes)",
    )
    backup_num: StrictInt = Field(
        default=0, description="spf: link-disjoint backup paths inside a big switch, 0-8"
    )


class RoutingSet(_Model):
    algorithm: StrictStr = Field(description="spf or manual")
    backup_num: StrictInt = Field(default=0, description="spf backups, 0-8")


class HopIn(_Model):
    src_dpid: DpidIn
    src_port: StrictInt
    dst_dpid: DpidIn
    dst_port: StrictInt


PathIn = Annotated[
    StrictStr | list[HopIn],
    Field(
        description="physical hops, as OpenVirteX text (dpid/port-dpid/port,...) or a list "
        "of {src_dpid, src_port, dst_dpid, dst_port}",
        examples=["1/3-2/3,2/4-3/3"],
    ),
]


class RouteCreate(_Model):
    src_vport: StrictInt
    dst_vport: StrictInt
    path: PathIn
    priority: StrictInt = Field(
        description="0-65535; among routes between two vports the "
        "highest whose links are up is used"
    )
    both_ways: StrictBool = Field(
        default=False,
        description="also add the mirror route dst -> src over the same links (id + 1)",
    )


class LinkPathSet(_Model):
    path: PathIn


class PortCreate(_Model):
    dpid: DpidIn = Field(description="physical dpid")
    port: StrictInt = Field(description="physical port number")
    vdpid: DpidIn | None = Field(default=None, description="vswitch; the one on `dpid` if absent")
    exclusive: StrictBool = Field(
        default=False,
        description="an edge vport that holds the physical port alone and admits every frame "
        "arriving there (any source MAC, any VLAN tags), not only registered hosts' MACs; "
        "409 if another vport or host (of any tenant) uses the port",
    )


class LinkCreate(_Model):
    src_vdpid: DpidIn
    src_vport: StrictInt
    dst_vdpid: DpidIn
    dst_vport: StrictInt
    algorithm: StrictStr = Field(
        default="spf",
        description="spf (shortest path, recomputed as the fabric changes) or manual (paths "
        "set with PUT .../paths/{priority}; down until one is)",
    )
    backup_num: StrictInt = Field(default=0, description="spf: link-disjoint backup paths, 0-8")


class HostCreate(_Model):
    vdpid: DpidIn
    vport: StrictInt
    mac: StrictStr | StrictInt = Field(description="aa:bb:cc:dd:ee:ff (or its integer value)")


class HostMove(_Model):
    dpid: DpidIn = Field(description="the physical dpid the host is on now")
    port: StrictInt = Field(description="its physical edge port there")


# --- replies ---------------------------------------------------------------------------------
class TenantCreated(BaseModel):
    id: int
    name: str
    token: str = Field(description="shown once: the tenant authenticates with it")


class TenantInfo(BaseModel):
    id: int
    name: str
    networks: list[int]


class PPortOut(BaseModel):
    port_no: int
    name: str
    hw_addr: str
    up: bool


class PSwitchOut(BaseModel):
    dpid: int
    dpid_str: str
    connected: bool
    n_tables: int
    ports: list[PPortOut]
    qinq_ok: bool | None = Field(
        default=None,
        description="whether it parses a tenant's VLAN tag inside the fabric tag, as a "
        "double-tagged probe over its links shows (null: not known yet); false means tenants' "
        "tagged frames arriving over the fabric are lost there: on Open vSwitch set "
        "other_config:vlan-limit=2 (or 0)",
    )


class PLinkOut(BaseModel):
    src_dpid: int
    src_port: int
    dst_dpid: int
    dst_port: int
    mtu_ok: bool | None = Field(
        default=None,
        description="whether 1500-byte frames with the 4-byte fabric tag cross (null: not "
        "known yet); false means the link's MTU must be raised to at least 1504",
    )


class PhysicalTopologyOut(BaseModel):
    switches: list[PSwitchOut]
    links: list[PLinkOut] = Field(description="one entry per direction, as LLDP proves it")


class VPortOut(BaseModel):
    number: int
    dpid: int
    port: int
    kind: str = Field(description="edge (a host attaches) or link (end of a vlink)")
    link_id: int | None
    exclusive: bool = Field(
        default=False,
        description="an edge vport holding its physical port alone: every frame there is "
        "its own, whatever its source MAC",
    )


class VPortCreated(VPortOut):
    vdpid: int
    vdpid_str: str


class HopOut(BaseModel):
    src_dpid: int
    src_port: int
    dst_dpid: int
    dst_port: int


class RouteOut(BaseModel):
    id: int
    src_vport: int
    dst_vport: int
    priority: int
    path: list[HopOut]
    live: bool = Field(description="whether every link of the path is up now")


class VSwitchOut(BaseModel):
    vdpid: int
    vdpid_str: str
    dpid: int = Field(description="the first pswitch (the only one unless a big switch)")
    dpid_str: str
    dpids: list[int] = Field(description="every pswitch the vswitch spans")
    dpids_str: list[str]
    routing: str = Field(description="internal routing of a big switch: spf or manual")
    backup_num: int
    routes: list[RouteOut] = Field(description="manual internal routes, by id")
    ports: list[VPortOut]
    controller_urls: list[str] | None = Field(
        default=None, description="this vswitch's own controllers; null: the network's"
    )


class ManualPathOut(BaseModel):
    priority: int
    path: list[HopOut]
    live: bool = Field(description="whether every link of the path is up now")


class VLinkOut(BaseModel):
    id: int
    src_vdpid: int
    src_vport: int
    dst_vdpid: int
    dst_vport: int
    algorithm: str = Field(description="spf or manual")
    backup_num: int
    paths: list[ManualPathOut] = Field(
        description="a manual vlink's paths, highest priority first (empty for spf)"
    )
    path: list[HopOut] | None = Field(
        description="current physical path (the primary), src to dst; null when there is none now"
    )
    backup_paths: list[list[HopOut]] = Field(
        description="the backups behind the primary, in the order they would take over"
    )


class HostLocation(BaseModel):
    dpid: int
    port: int


class HostOut(BaseModel):
    id: int
    vdpid: int
    vport: int
    mac: str
    # admin view: where the host is now when it moved away from its vport's own port (the
    # tenant's view of its network does not change when a host moves)
    location: HostLocation | None = None


class NetworkOut(BaseModel):
    id: int
    tenant_id: int
    controller_urls: list[str]
    network_address: str | None
    mask: int | None
    scalability: str = Field(description="flow-rule reduction level: exact, app, host, hop, lite")
    started: bool
    switches: list[VSwitchOut]
    links: list[VLinkOut]
    hosts: list[HostOut]


class LimitMeterOut(BaseModel):
    """One limit meter in force and what it let into the slice and dropped (as last read
    from its pswitch, every few seconds)."""

    kind: str = Field(description="vport (what its hosts send) or vlink (one direction)")
    vdpid: int | None = None
    vport: int | None = None
    link_id: int | None = None
    direction: str | None = Field(default=None, description="src->dst or dst->src")
    rate: int
    unit: str = Field(description="pps or kbps")
    packets: int = Field(description="packets that reached the meter")
    dropped: int = Field(description="packets it dropped: the network's traffic over its limit")
    # admin view: where it is (the tenant's own meters never see these ids)
    dpid: int | None = None
    meter_id: int | None = None


class LimitsOut(BaseModel):
    network: int
    override: dict[str, int] = Field(description="what the admin set for this network")
    defaults: dict[str, int] = Field(description="the daemon's defaults (its config)")
    effective: dict[str, int] = Field(description="in force: the override over the defaults")
    dropped: int = Field(description="packets dropped by every limit meter in force")
    meters: list[LimitMeterOut]


class ErrorOut(BaseModel):
    error: str


QUOTAS_HELP = (
    "the tenant's own limits, replacing those it had: limit name -> whole number, or null "
    "for the default. Quotas (what it may hold): "
    + ", ".join(QUOTAS)
    + ". Rates: "
    + ", ".join(k for k in KEYS if k not in QUOTAS)
)


class TenantLimitOut(BaseModel):
    limit: int = Field(description="the value in force")
    default: int = Field(description="the daemon's default (settings: limits)")
    own: bool = Field(description="whether the limit is the tenant's own value")
    description: str
    used: int | None = Field(default=None, description="a quota: how many the tenant holds")
    refused: int | None = Field(
        default=None, description="a quota: requests refused for it since the daemon started"
    )


class QuotasOut(BaseModel):
    tenant_id: int | None = Field(description="null: the defaults (the admin's GET /v1/quotas)")
    tenant: str | None
    limits: dict[str, TenantLimitOut]
    counters: dict[str, float] = Field(
        default_factory=dict,
        description="what the limits did (its vswitches', since the daemon started): "
        "messages (from its controllers), messages_delayed (handled after waiting for the "
        "connection's tokens), throttled_seconds (reading paused for tokens), packet_ins "
        "(relayed), packet_ins_dropped (by the daemon's per-vswitch bucket), "
        "packet_ins_metered (dropped by the pswitches' per-vswitch meters, as last read)",
    )


# --- conversions -----------------------------------------------------------------------------
def tenant_info(t: Tenant, networks: list[VirtualNetwork]) -> TenantInfo:
    return TenantInfo(
        id=t.id, name=t.name, networks=sorted(n.id for n in networks if n.tenant_id == t.id)
    )


def physical_topology(topo: PhysicalTopology) -> PhysicalTopologyOut:
    switches = [
        PSwitchOut(
            dpid=sw.dpid,
            dpid_str=dpid_str(sw.dpid),
            connected=sw.connected,
            n_tables=sw.n_tables,
            ports=[
                PPortOut(port_no=p.port_no, name=p.name, hw_addr=p.hw_addr, up=p.up)
                for p in sorted(sw.ports.values(), key=lambda p: p.port_no)
            ],
            qinq_ok=topo.qinq_ok.get(sw.dpid),
        )
        for sw in sorted(topo.switches.values(), key=lambda s: s.dpid)
    ]
    links = [
        PLinkOut(
            src_dpid=lk.src_dpid,
            src_port=lk.src_port,
            dst_dpid=lk.dst_dpid,
            dst_port=lk.dst_port,
            mtu_ok=topo.mtu_ok.get(lk),
        )
        for lk in topo.links()
    ]
    return PhysicalTopologyOut(switches=switches, links=links)


def vport_out(vp: VPort) -> VPortOut:
    return VPortOut(
        number=vp.number, dpid=vp.dpid, port=vp.port, kind=str(vp.kind), link_id=vp.link_id,
        exclusive=vp.exclusive,
    )  # fmt: skip


def vport_created(vdpid: int, vp: VPort) -> VPortCreated:
    return VPortCreated(vdpid=vdpid, vdpid_str=dpid_str(vdpid), **vport_out(vp).model_dump())


def hops_out(hops: Path | PathHops) -> list[HopOut]:
    return [
        HopOut(src_dpid=a, src_port=b, dst_dpid=c, dst_port=d)
        for a, b, c, d in (
            (h.src_dpid, h.src_port, h.dst_dpid, h.dst_port) if isinstance(h, Hop) else h
            for h in hops
        )
    ]


def _live(topo: PhysicalTopology, mp: ManualPath) -> bool:
    return is_live(topo, tuple(Hop(*h) for h in mp.hops))


def route_out(topo: PhysicalTopology, r: Route) -> RouteOut:
    return RouteOut(
        id=r.id,
        src_vport=r.src_vport,
        dst_vport=r.dst_vport,
        priority=r.path.priority,
        path=hops_out(r.path.hops),
        live=_live(topo, r.path),
    )


def vswitch_out(topo: PhysicalTopology, sw: VSwitch) -> VSwitchOut:
    return VSwitchOut(
        vdpid=sw.vdpid,
        vdpid_str=dpid_str(sw.vdpid),
        dpid=sw.dpid,
        dpid_str=dpid_str(sw.dpid),
        dpids=list(sw.dpids),
        dpids_str=[dpid_str(d) for d in sw.dpids],
        routing=sw.routing,
        backup_num=sw.backup_num,
        routes=[route_out(topo, sw.routes[i]) for i in sorted(sw.routes)],
        ports=[vport_out(sw.ports[n]) for n in sorted(sw.ports)],
        controller_urls=sw.controller_urls,
    )


def vlink_out(topo: PhysicalTopology, net: VirtualNetwork, lk: VLink) -> VLinkOut:
    """The vlink with the paths it would take on the fabric as it is now: the primary first
    (`path`), then its backups (`compile.paths.vlink_candidates`, as the compiler sees them)."""
    candidates = vlink_candidates(topo, net, lk)
    return VLinkOut(
        id=lk.id,
        src_vdpid=lk.src.vdpid,
        src_vport=lk.src.vport,
        dst_vdpid=lk.dst.vdpid,
        dst_vport=lk.dst.vport,
        algorithm=lk.algorithm,
        backup_num=lk.backup_num,
        paths=[
            ManualPathOut(priority=p.priority, path=hops_out(p.hops), live=_live(topo, p))
            for p in sorted(lk.paths, key=lambda p: -p.priority)
        ],
        path=hops_out(candidates[0]) if candidates else None,
        backup_paths=[hops_out(p) for p in candidates[1:]],
    )


def host_out(h: Host, admin: bool = False) -> HostOut:
    where = h.location if admin else None
    return HostOut(
        id=h.id, vdpid=h.vdpid, vport=h.vport, mac=h.mac,
        location=None if where is None else HostLocation(dpid=where[0], port=where[1]),
    )  # fmt: skip


def network_out(topo: PhysicalTopology, net: VirtualNetwork, admin: bool = False) -> NetworkOut:
    return NetworkOut(
        id=net.id,
        tenant_id=net.tenant_id,
        controller_urls=list(net.controller_urls),
        network_address=net.network_address,
        mask=net.mask,
        scalability=net.scalability,
        started=net.started,
        switches=[vswitch_out(topo, net.switches[v]) for v in sorted(net.switches)],
        links=[vlink_out(topo, net, net.links[i]) for i in sorted(net.links)],
        hosts=[host_out(net.hosts[i], admin) for i in sorted(net.hosts)],
    )


def _all(limits: Limits) -> dict[str, int]:
    return limits.over(NO_LIMITS).given()


def limits_out(
    net: VirtualNetwork, defaults: Limits, meters: list[dict[str, Any]], admin: bool = False
) -> LimitsOut:
    """The network's limits and its meters' hits; physical ids only for the admin."""
    shown = [
        LimitMeterOut(**{k: v for k, v in m.items() if admin or k not in ("dpid", "meter_id")})
        for m in meters
    ]
    return LimitsOut(
        network=net.id,
        override=net.limits.given(),
        defaults=_all(defaults),
        effective=_all(net.limits.over(defaults)),
        dropped=sum(m.dropped for m in shown),
        meters=shown,
    )


def quotas_out(
    defaults: TenantLimits,
    tenant: Tenant | None,
    used: dict[str, int] | None = None,
    refused: dict[str, int] | None = None,
    counters: dict[str, float] | None = None,
) -> QuotasOut:
    """A tenant's limits over the defaults with what it holds and what was refused (or, for
    no tenant, the defaults alone)."""
    own = tenant.limits if tenant is not None else {}
    current = defaults.with_overrides(own)
    limits = {}
    for key in KEYS:
        quota = key in QUOTAS and tenant is not None
        limits[key] = TenantLimitOut(
            limit=current.get(key), default=defaults.get(key), own=key in own,
            description=DESCRIPTIONS[key],
            used=(used or {}).get(key, 0) if quota else None,
            refused=(refused or {}).get(key, 0) if quota else None,
        )  # fmt: skip
    return QuotasOut(
        tenant_id=tenant.id if tenant is not None else None,
        tenant=tenant.name if tenant is not None else None,
        limits=limits,
        counters=counters or {},
    )


def as_json(model: BaseModel) -> dict[str, Any]:
    """Plain JSON-able dict of a reply model (for callers that build responses by hand)."""
    return model.model_dump(mode="json")
