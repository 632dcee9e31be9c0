"""The hypervisor's own rules on each pswitch, derived from intent (pure).

Table 0 classifies every packet: from an edge port by (in_port, eth_src), from an edge port an
exclusive vport holds by in_port alone, from a link port by (in_port, fabric tag).  A rule
that classifies a packet into a tenant's slice may carry the provider's limit meter of what
it enters through (an edge vport, a vlink direction): every packet a tenant's tables see has
passed one, so nothing the tenant's rules do (a loop, a flood) exceeds its limits.  Tagged
packets of a multi-hop vlink are swapped and forwarded by transit rules without ever
reaching a tenant table.  The physical in_port is kept: OVS then
drops output to the port a packet came in on, exactly as OpenFlow wants of the vswitch.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.mapping.paths import Hop
from tenantvisor.openflow import codec, oxm
from tenantvisor.translate.flow import PhysFlow

PRIO_INJECTED = 0xF800
PRIO_DISCOVERY = 0xF000
PRIO_CLASSIFY = 0x8000
# An exclusive vport's port: below every (in_port, ...) classification, so if the port ever
# faced a pswitch (recabled) its fabric traffic would still be classified as fabric traffic,
# and below discovery (our LLDP still finds such a cable); above the punt rule, so nothing
# from the port is ever taken for a host that moved.
PRIO_EXCLUSIVE = PRIO_CLASSIFY - 1
PRIO_PUNT = 1  # below every classification: only what nothing classified
PUNT_RATE = 100  # packets/s per pswitch of unclassified ARP/RARP from hosts, to us
PUNT_BURST = 20
ARP, RARP = 0x0806, 0x8035
DISCOVERY_MAC = "02:74:76:00:00:01"  # source MAC of tenantvisor's LLDP probes
LLDP_ETHERTYPE = 0x88CC


@dataclass(frozen=True, slots=True)
class HostBinding:
    dpid: int
    port: int
    mac: str
    index: int  # vswitch index
    vport: int
    meter: int | None = None  # the vport's limit meter on this pswitch


@dataclass(frozen=True, slots=True)
class LinkPath:
    """One direction of a vlink: the hops, the tag on each, and where it ends."""

    hops: tuple[Hop, ...]
    tags: tuple[int, ...]
    dst_index: int
    dst_vport: int
    # The vport's own physical port when the path enters through another one (a backup):
    # the packet's in_port is set to it, so OVS's "never out of the in_port" and every
    # IN_PORT decision of translation hold as if it had come over the primary path.
    in_port: int | None = None
    # A big switch's internal route ends by delivering to a vport with these actions (built
    # for the port the route arrives on) instead of classifying: the tenant's rule was
    # applied where the packet entered the big switch.
    deliver: bytes | None = None
    # The limit meter of this vlink direction at its far end (the terminating rule's)
    meter: int | None = None


def _goto_tenant(index: int, vport: int, pre: bytes, meter: int | None = None) -> bytes:
    """Into the tenant's tables as (vswitch, vport): the meter first (the spec runs the
    meter instruction before any action, so a dropped packet costs nothing more)."""
    return codec.encode_instructions(
        meter=meter,
        apply_actions=pre or None,
        write_metadata=(layout.vswitch_meta(index, vport), layout.HV_META_MASK),
        goto_table=layout.TABLE_OFFSET,
    )


def provider_flows(dpid: int, of10: bool = False, punt: bool = False) -> list[PhysFlow]:
    """Rules every pswitch carries whatever the tenants do.  An OpenFlow 1.0 pswitch (one
    table, transit only) gets discovery and an explicit drop: 1.0 sends table misses to the
    controller, and unclassified traffic must not reach us."""
    lldp = codec.encode_match(
        [
            codec.oxm_mac(oxm.ETH_SRC, DISCOVERY_MAC),
            codec.oxm_u16(oxm.ETH_TYPE, LLDP_ETHERTYPE),
        ]
    )
    to_ctl = codec.encode_instructions(
        apply_actions=codec.output(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)
    )
    # A tenant's PACKET_OUT to output:TABLE arrives here already classified (metadata set,
    # with the INJECTED bit no packet from a wire can carry): straight to the tenant tables.
    injected = codec.encode_match([codec.oxm_u64(oxm.METADATA, layout.INJECTED, layout.INJECTED)])
    if of10:
        return [
            PhysFlow(dpid, 0, PRIO_DISCOVERY, lldp, to_ctl, layout.DISCOVERY_COOKIE),
            PhysFlow(dpid, 0, 0, codec.encode_match([]), b"", layout.PROVIDER_COOKIE),
        ]
    out = [
        PhysFlow(dpid, 0, PRIO_DISCOVERY, lldp, to_ctl, layout.DISCOVERY_COOKIE),
        PhysFlow(
            dpid,
            0,
            PRIO_INJECTED,
            injected,
            codec.encode_instructions(goto_table=layout.TABLE_OFFSET),
            layout.PROVIDER_COOKIE,
        ),
    ]
    if punt:
        # an untagged (R)ARP nothing classified: typically the gratuitous ARP of a host that
        # migrated here (issue 10); to us, through the provider's meter, never to a tenant
        ins = codec.encode_instructions(
            meter=layout.PUNT_METER, apply_actions=codec.output(ofp.OFPP_CONTROLLER, 128)
        )
        for eth_type in (ARP, RARP):
            match = codec.encode_match([codec.oxm_u16(oxm.ETH_TYPE, eth_type),
                                        codec.oxm_u16(oxm.VLAN_VID, 0)])  # fmt: skip
            out.append(PhysFlow(dpid, 0, PRIO_PUNT, match, ins, layout.PUNT_COOKIE))
    return out


def punt_meter() -> tuple[int, bytes]:
    """(flags, bands) of the provider's punt meter: a drop band above PUNT_RATE pkt/s."""
    band = struct.pack("!HHIIxxxx", ofp.OFPMBT_DROP, 16, PUNT_RATE, PUNT_BURST)
    return ofp.OFPMF_PKTPS | ofp.OFPMF_BURST, band


def limit_meter(rate: int, per_packet: bool) -> tuple[int, bytes]:
    """(flags, bands) of a tenant's data-plane limit: one drop band at `rate` packets/s or
    kb/s, with statistics (its band's drop count is what the limit's hits are read from).
    No burst is given: Open vSwitch's userspace datapath then takes the rate as the burst
    size, about one second's worth, which a TCP window needs and a loop empties at once."""
    band = struct.pack("!HHIIxxxx", ofp.OFPMBT_DROP, 16, rate, 0)
    unit = ofp.OFPMF_PKTPS if per_packet else ofp.OFPMF_KBPS
    return unit | ofp.OFPMF_STATS, band


@lru_cache(maxsize=1 << 16)
def host_flow(net_id: int, h: HostBinding) -> PhysFlow:
    match = codec.encode_match(
        [codec.oxm_u32(oxm.IN_PORT, h.port), codec.oxm_mac(oxm.ETH_SRC, h.mac)]
    )
    return PhysFlow(
        h.dpid,
        0,
        PRIO_CLASSIFY,
        match,
        _goto_tenant(h.index, h.vport, b"", h.meter),
        layout.infra_cookie(net_id),
    )


@lru_cache(maxsize=1 << 16)
def exclusive_flow(
    net_id: int, dpid: int, port: int, index: int, vport: int, meter: int | None = None
) -> PhysFlow:
    """Classification of an exclusive vport: every frame arriving on its physical port, by
    in_port alone (any source MAC, any VLAN or S-tag, left as it came: the tenant's tags go
    to its tables untouched).  Safe because the manager lets no other vport or host use the
    port, and no fabric classification ever names an edge port as in_port, so a frame
    carrying the fabric's TPID (0x88a8) here is only ever the tenant's frame."""
    match = codec.encode_match([codec.oxm_u32(oxm.IN_PORT, port)])
    return PhysFlow(
        dpid, 0, PRIO_EXCLUSIVE, match, _goto_tenant(index, vport, b"", meter),
        layout.infra_cookie(net_id),
    )  # fmt: skip


def lite_block_match(in_port: int, vid: int, mask: int = 0xFFF) -> list[codec.Oxm]:
    """(in_port, fabric tag) of a LITE tag block (mask: the block) or of one tag in it."""
    return [
        codec.oxm_u32(oxm.IN_PORT, in_port),
        codec.oxm_u16(oxm.VLAN_VID, vid | oxm.VLAN_PRESENT, oxm.VLAN_PRESENT | mask)
        if mask != 0xFFF
        else codec.oxm_u16(oxm.VLAN_VID, vid | oxm.VLAN_PRESENT),
    ]


def lite_classify(
    net_id: int, dpid: int, in_port: int, base: int, size: int, dst_index: int, dst_vport: int,
    meter: int | None = None,
) -> PhysFlow:  # fmt: skip
    """The far end of a one-hop vlink of a LITE network classifies every tag of its block
    as it does the plain tag: a packet no LITE rule takes is the tenant tables' (one rule
    for the block, whatever destinations the tags name)."""
    match = codec.encode_match(lite_block_match(in_port, base, ~(size - 1) & 0xFFF))
    return PhysFlow(
        dpid, 0, PRIO_CLASSIFY, match,
        _goto_tenant(dst_index, dst_vport, codec.pop_vlan(), meter), layout.infra_cookie(net_id),
    )  # fmt: skip


@lru_cache(maxsize=1 << 16)
def link_flows(net_id: int, lp: LinkPath) -> tuple[PhysFlow, ...]:
    """Transit rules on every intermediate pswitch and the terminating rule at the far end."""
    out: list[PhysFlow] = []
    cookie = layout.infra_cookie(net_id)
    last = len(lp.hops) - 1
    for i, (hop, tag) in enumerate(zip(lp.hops, lp.tags, strict=True)):
        match = codec.encode_match(
            [
                codec.oxm_u32(oxm.IN_PORT, hop.dst_port),
                codec.oxm_u16(oxm.VLAN_VID, tag | oxm.VLAN_PRESENT),
            ]
        )
        if i == last and lp.deliver is not None:
            # the tenant's rule was applied where the packet entered the big switch
            ins = codec.encode_instructions(apply_actions=codec.pop_vlan() + lp.deliver)
        elif i == last:
            pre = codec.pop_vlan()
            if lp.in_port is not None and lp.in_port != hop.dst_port:
                pre += codec.load_in_port(lp.in_port)
            ins = _goto_tenant(lp.dst_index, lp.dst_vport, pre, lp.meter)
        else:
            nxt = lp.hops[i + 1]
            swap = codec.set_field(codec.oxm_u16(oxm.VLAN_VID, lp.tags[i + 1] | oxm.VLAN_PRESENT))
            port = ofp.OFPP_IN_PORT if nxt.src_port == hop.dst_port else nxt.src_port
            ins = codec.encode_instructions(apply_actions=swap + codec.output(port))
        out.append(PhysFlow(hop.dst_dpid, 0, PRIO_CLASSIFY, match, ins, cookie))
    return tuple(out)
