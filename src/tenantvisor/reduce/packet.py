"""A frame's header fields as OpenFlow 1.3 matches them (OXM numbers), for looking a packet
a controller injects up in a tenant's exact table (reduce/ and the endpoint's PACKET_OUT).

Only what the headers say: absent fields are left out (a lookup treats them as 0, as
OpenFlow matches an absent VLAN as "none").  One 802.1Q/ad tag is read (OVS's limit of two
is for the fabric's tag plus the tenant's; a tenant's frame carries at most its own).
"""

from __future__ import annotations

import struct

from tenantvisor.openflow import oxm

_ETH = struct.Struct("!6s6sH")
_VLAN = struct.Struct("!HH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_PORTS = struct.Struct("!HH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")


def _mac(b: bytes) -> int:
    return int.from_bytes(b, "big")


def fields(frame: bytes, in_port: int) -> dict[int, int]:
    """{OXM field: value} of `frame` entering on `in_port`."""
    out: dict[int, int] = {oxm.IN_PORT: in_port}
    if len(frame) < _ETH.size:
        return out
    dst, src, etype = _ETH.unpack_from(frame, 0)
    out[oxm.ETH_DST], out[oxm.ETH_SRC] = _mac(dst), _mac(src)
    off = _ETH.size
    if etype in (0x8100, 0x88A8) and len(frame) >= off + 4:
        tci, etype = _VLAN.unpack_from(frame, off)
        out[oxm.VLAN_VID] = (tci & 0xFFF) | oxm.VLAN_PRESENT
        out[oxm.VLAN_PCP] = tci >> 13
        off += 4
    out[oxm.ETH_TYPE] = etype
    if etype == 0x0800 and len(frame) >= off + _IPV4.size:
        vihl, tos, _, _, frag, _, proto, _, s, d = _IPV4.unpack_from(frame, off)
        out[oxm.IP_DSCP], out[oxm.IP_ECN] = tos >> 2, tos & 3
        out[oxm.IP_PROTO] = proto
        out[oxm.IPV4_SRC], out[oxm.IPV4_DST] = int.from_bytes(s, "big"), int.from_bytes(d, "big")
        if frag & 0x1FFF:
            return out  # a later fragment carries no L4 header
        _l4(out, proto, frame, off + (vihl & 0xF) * 4)
    elif etype == 0x86DD and len(frame) >= off + 40:
        word = int.from_bytes(frame[off : off + 4], "big")
        out[oxm.IP_DSCP], out[oxm.IP_ECN] = (word >> 22) & 0x3F, (word >> 20) & 3
        out[oxm.IPV6_FLABEL] = word & 0xFFFFF
        proto = frame[off + 6]
        out[oxm.IP_PROTO] = proto
        out[oxm.IPV6_SRC] = int.from_bytes(frame[off + 8 : off + 24], "big")
        out[oxm.IPV6_DST] = int.from_bytes(frame[off + 24 : off + 40], "big")
        _l4(out, proto, frame, off + 40, v6=True)
    elif etype == 0x0806 and len(frame) >= off + _ARP.size:
        _, _, _, _, op, sha, spa, tha, tpa = _ARP.unpack_from(frame, off)
        out[oxm.ARP_OP] = op
        out[oxm.ARP_SHA], out[oxm.ARP_THA] = _mac(sha), _mac(tha)
        out[oxm.ARP_SPA], out[oxm.ARP_TPA] = int.from_bytes(spa, "big"), int.from_bytes(tpa, "big")
    return out


def _l4(out: dict[int, int], proto: int, frame: bytes, off: int, v6: bool = False) -> None:
    if len(frame) < off + 4:
        return
    if proto in (6, 17, 132):
        a, b = _PORTS.unpack_from(frame, off)
        src, dst = {6: (oxm.TCP_SRC, oxm.TCP_DST), 17: (oxm.UDP_SRC, oxm.UDP_DST),
                    132: (oxm.SCTP_SRC, oxm.SCTP_DST)}[proto]  # fmt: skip
        out[src], out[dst] = a, b
    elif proto == 1 and not v6:
        out[oxm.ICMPV4_TYPE], out[oxm.ICMPV4_CODE] = frame[off], frame[off + 1]
    elif proto == 58 and v6:
        out[oxm.ICMPV6_TYPE], out[oxm.ICMPV6_CODE] = frame[off], frame[off + 1]
