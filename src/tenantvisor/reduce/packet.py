"""A frame's header fields as OpenFlow 1.3 matches them (OXM numbers), for looking a packet
a controller injects up in a tenant's exact table (reduce/ and the endpoint's PACKET_OUT).

Only what the headers say: absent fields are left out (a lookup treats them as 0, as
OpenFlow matches an absent VLAN as "none").  One 802.1Q/ad tag is read (OVS's limit of two
is for the fabric's tag plus the tenant's; a tenant's frame carries at most its own).
"""

from __future__ import annotations

import struct
from typing import Any

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


# --- a PACKET_OUT's actions applied to its frame (what each output sends) --------------------
_SETTABLE = {
    oxm.ETH_DST: (0, 6), oxm.ETH_SRC: (6, 6),
}  # fmt: skip


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _l3(frame: bytes) -> tuple[int, int]:
    """(offset of the IP header, ethertype) past at most one VLAN tag."""
    etype = int.from_bytes(frame[12:14], "big")
    off = 14
    if etype in (0x8100, 0x88A8) and len(frame) >= 18:
        etype = int.from_bytes(frame[16:18], "big")
        off = 18
    return off, etype


def _fix_checksums(buf: bytearray) -> None:
    """IPv4 header, TCP and UDP checksums after a rewrite (recomputed whole)."""
    off, etype = _l3(bytes(buf))
    if etype == 0x0800 and len(buf) >= off + 20:
        ihl = (buf[off] & 0xF) * 4
        buf[off + 10 : off + 12] = b"\0\0"
        buf[off + 10 : off + 12] = _csum(bytes(buf[off : off + ihl])).to_bytes(2, "big")
        total = int.from_bytes(buf[off + 2 : off + 4], "big")
        proto, l4 = buf[off + 9], off + ihl
        frag = int.from_bytes(buf[off + 6 : off + 8], "big") & 0x3FFF
        pseudo = bytes(buf[off + 12 : off + 20]) + bytes([0, proto])
        length = total - ihl
    elif etype == 0x86DD and len(buf) >= off + 40:
        proto, l4, frag = buf[off + 6], off + 40, 0
        length = int.from_bytes(buf[off + 4 : off + 6], "big")
        pseudo = bytes(buf[off + 8 : off + 40]) + b"\0\0\0" + bytes([proto])
    else:
        return
    if frag or proto not in (6, 17) or len(buf) < l4 + length or length < 8:
        return
    at = l4 + (16 if proto == 6 else 6)
    if proto == 17 and etype == 0x0800 and buf[at : at + 2] == b"\0\0":
        return  # UDP over IPv4 without a checksum stays without
    buf[at : at + 2] = b"\0\0"
    seg = bytes(buf[l4 : l4 + length])
    value = _csum(pseudo + length.to_bytes(2, "big") + seg)
    if proto == 17 and value == 0:
        value = 0xFFFF
    buf[at : at + 2] = value.to_bytes(2, "big")


def _set(buf: bytearray, field: int, value: bytes) -> bool:
    """Write one field into the frame; False for a field not handled here."""
    if field in _SETTABLE:
        at, n = _SETTABLE[field]
        buf[at : at + n] = value
        return True
    off, etype = _l3(bytes(buf))
    if field == oxm.VLAN_VID:
        if off != 18:
            return False
        vid = int.from_bytes(value, "big") & 0xFFF
        buf[14:16] = ((int.from_bytes(buf[14:16], "big") & 0xF000) | vid).to_bytes(2, "big")
        return True
    if field == oxm.VLAN_PCP:
        if off != 18:
            return False
        tci = (int.from_bytes(buf[14:16], "big") & 0x1FFF) | (value[0] & 7) << 13
        buf[14:16] = tci.to_bytes(2, "big")
        return True
    if etype == 0x0800 and len(buf) >= off + 20:
        ihl = (buf[off] & 0xF) * 4
        if field in (oxm.IPV4_SRC, oxm.IPV4_DST):
            at = off + (12 if field == oxm.IPV4_SRC else 16)
            buf[at : at + 4] = value
            return True
        if field == oxm.IP_DSCP:
            buf[off + 1] = (value[0] & 0x3F) << 2 | (buf[off + 1] & 3)
            return True
        l4, proto = off + ihl, buf[off + 9]
    elif etype == 0x86DD and len(buf) >= off + 40:
        if field in (oxm.IPV6_SRC, oxm.IPV6_DST):
            at = off + (8 if field == oxm.IPV6_SRC else 24)
            buf[at : at + 16] = value
            return True
        l4, proto = off + 40, buf[off + 6]
    else:
        return False
    ports = {oxm.TCP_SRC: (6, 0), oxm.TCP_DST: (6, 2), oxm.UDP_SRC: (17, 0), oxm.UDP_DST: (17, 2)}
    if field in ports and ports[field][0] == proto and len(buf) >= l4 + 4:
        at = l4 + ports[field][1]
        buf[at : at + 2] = value
        return True
    return False


def apply_actions(frame: bytes, actions: list[Any]) -> list[tuple[int, bytes]] | None:
    """Each OUTPUT of an action list with the frame as it is at that point: (port, frame).
    None when an action is not one done here (the caller leaves it to the pswitch)."""
    from os_ken.ofproto import ofproto_v1_3 as ofp

    from tenantvisor.openflow import codec

    buf = bytearray(frame)
    out: list[tuple[int, bytes]] = []
    dirty = False
    for a in actions:
        if a.type == ofp.OFPAT_OUTPUT:
            if dirty:
                _fix_checksums(buf)
                dirty = False
            out.append((a.output_port, bytes(buf)))
        elif a.type == ofp.OFPAT_SET_FIELD:
            o = a.set_field_oxm()
            if o.mask is not None or not _set(buf, o.field, o.value):
                return None
            dirty = True
        elif a.type == ofp.OFPAT_PUSH_VLAN:
            tpid = codec.u16(a.raw, 4)
            tagged = len(buf) >= 16 and buf[12:14] in (b"\x81\x00", b"\x88\xa8")
            tci = bytes(buf[14:16]) if tagged else b"\0\0"  # a new tag copies the outer one's
            buf[12:12] = tpid.to_bytes(2, "big") + tci
        elif a.type == ofp.OFPAT_POP_VLAN:
            if buf[12:14] not in (b"\x81\x00", b"\x88\xa8"):
                return None
            del buf[12:16]
        else:
            return None
    return out
