"""REST request and reply models, and their conversion from the intent dataclasses.

The wire shapes are explicit pydantic models, not the dataclasses themselves, so the OpenAPI
document is the contract: the core may grow fields without the API changing under clients.
Numbers that name things (ports, ids) are strict integers: JSON `"3"` or `true` where a port
belongs is a client bug worth a 422, not something to guess at.  Dpids are the one exception:
operators paste them in every notation, so they are accepted as int or string (see `ids`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from pydantic.json_schema import WithJsonSchema

from tenantvisor.api.ids import dpid_str, parse_dpid
from tenantvisor.mapping.paths import NoPath, vlink_path
from tenantvisor.physical.topology import PhysicalTopology
from tenantvisor.virtual.model import Host, Tenant, VirtualNetwork, VLink, VPort, VSwitch


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
class TenantCreate(_Model):
    name: StrictStr = Field(description="1-64 letters, digits, '_', '.', '-'")


class NetworkCreate(_Model):
    controller_urls: list[StrictStr] = Field(
        default_factory=list, description="tcp:IP:PORT (we connect) or ptcp:PORT[:IP] (we listen)"
    )
    network_address: StrictStr | None = Field(default=None, description="IPv4 network address")
    mask: StrictInt | None = Field(default=None, description="prefix length 0-32")
    scalability: StrictStr = Field(default="exact", description="rule reduction level")
    tenant_id: StrictInt | None = Field(
        default=None, description="owner; only the admin may name one, a tenant owns what it makes"
    )


class ControllersSet(_Model):
    controller_urls: list[StrictStr]


class SwitchControllersSet(_Model):
    controller_urls: list[StrictStr] | None = Field(
        description="this vswitch's own controllers (e.g. ptcp:6634); null: the network's"
    )


class SwitchCreate(_Model):
    dpids: list[DpidIn] = Field(min_length=1, description="physical dpids the vswitch maps onto")
    vdpid: DpidIn | None = Field(default=None, description="virtual dpid; chosen when absent")


class PortCreate(_Model):
    dpid: DpidIn = Field(description="physical dpid")
    port: StrictInt = Field(description="physical port number")
    vdpid: DpidIn | None = Field(default=None, description="vswitch; the one on `dpid` if absent")


class LinkCreate(_Model):
    src_vdpid: DpidIn
    src_vport: StrictInt
    dst_vdpid: DpidIn
    dst_vport: StrictInt


class HostCreate(_Model):
    vdpid: DpidIn
    vport: StrictInt
    mac: StrictStr | StrictInt = Field(description="aa:bb:cc:dd:ee:ff (or its integer value)")


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


class VPortCreated(VPortOut):
    vdpid: int
    vdpid_str: str


class VSwitchOut(BaseModel):
    vdpid: int
    vdpid_str: str
    dpid: int
    dpid_str: str
    ports: list[VPortOut]
    controller_urls: list[str] | None = Field(
        default=None, description="this vswitch's own controllers; null: the network's"
    )


class HopOut(BaseModel):
    src_dpid: int
    src_port: int
    dst_dpid: int
    dst_port: int


class VLinkOut(BaseModel):
    id: int
    src_vdpid: int
    src_vport: int
    dst_vdpid: int
    dst_vport: int
    path: list[HopOut] | None = Field(
        description="current physical path, src to dst; null when the fabric has none now"
    )


class HostOut(BaseModel):
    id: int
    vdpid: int
    vport: int
    mac: str


class NetworkOut(BaseModel):
    id: int
    tenant_id: int
    controller_urls: list[str]
    network_address: str | None
    mask: int | None
    scalability: str
    started: bool
    switches: list[VSwitchOut]
    links: list[VLinkOut]
    hosts: list[HostOut]


class ErrorOut(BaseModel):
    error: str


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
        number=vp.number, dpid=vp.dpid, port=vp.port, kind=str(vp.kind), link_id=vp.link_id
    )


def vport_created(vdpid: int, vp: VPort) -> VPortCreated:
    return VPortCreated(vdpid=vdpid, vdpid_str=dpid_str(vdpid), **vport_out(vp).model_dump())


def vswitch_out(sw: VSwitch) -> VSwitchOut:
    return VSwitchOut(
        vdpid=sw.vdpid,
        vdpid_str=dpid_str(sw.vdpid),
        dpid=sw.dpid,
        dpid_str=dpid_str(sw.dpid),
        ports=[vport_out(sw.ports[n]) for n in sorted(sw.ports)],
        controller_urls=sw.controller_urls,
    )


def link_path(topo: PhysicalTopology, net: VirtualNetwork, lk: VLink) -> list[HopOut] | None:
    """The path the vlink would take on the fabric as it is now (None when there is none)."""
    a = net.vport(lk.src.vdpid, lk.src.vport)
    b = net.vport(lk.dst.vdpid, lk.dst.vport)
    if a is None or b is None:
        return None
    try:
        hops = vlink_path(topo, (a.dpid, a.port), (b.dpid, b.port))
    except NoPath:
        return None
    return [
        HopOut(src_dpid=h.src_dpid, src_port=h.src_port, dst_dpid=h.dst_dpid, dst_port=h.dst_port)
        for h in hops
    ]


def vlink_out(topo: PhysicalTopology, net: VirtualNetwork, lk: VLink) -> VLinkOut:
    return VLinkOut(
        id=lk.id,
        src_vdpid=lk.src.vdpid,
        src_vport=lk.src.vport,
        dst_vdpid=lk.dst.vdpid,
        dst_vport=lk.dst.vport,
        path=link_path(topo, net, lk),
    )


def host_out(h: Host) -> HostOut:
    return HostOut(id=h.id, vdpid=h.vdpid, vport=h.vport, mac=h.mac)


def network_out(topo: PhysicalTopology, net: VirtualNetwork) -> NetworkOut:
    return NetworkOut(
        id=net.id,
        tenant_id=net.tenant_id,
        controller_urls=list(net.controller_urls),
        network_address=net.network_address,
        mask=net.mask,
        scalability=net.scalability,
        started=net.started,
        switches=[vswitch_out(net.switches[v]) for v in sorted(net.switches)],
        links=[vlink_out(topo, net, net.links[i]) for i in sorted(net.links)],
        hosts=[host_out(net.hosts[i]) for i in sorted(net.hosts)],
    )


def as_json(model: BaseModel) -> dict[str, Any]:
    """Plain JSON-able dict of a reply model (for callers that build responses by hand)."""
    return model.model_dump(mode="json")
