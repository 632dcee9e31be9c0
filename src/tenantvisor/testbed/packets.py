"""Crafted test frames as data: a `Pkt` describes a frame field by field and `build`s its bytes.

Why our own builder instead of os-ken's packet library: the conformance harness compares
what leaves a switch byte for byte with what the OpenFlow specification says should leave
it, so the expected frame is the sent one with the action's fields changed (`Pkt.but(...)`)
and built again.  That needs every header (stacked VLAN tags of any TPID, MPLS label
stacks, IPv6 extension headers, ND options, SCTP's CRC32c) with correct checksums and
nothing else changed, including the few bytes that tie a frame to its test case: the
`marker` at the end of the payload, which lets the harness ignore everything else on a
wire (LLDP probes, a late frame of the previous case).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, replace
from typing import Any

ETH_IPV4 = 0x0800
ETH_ARP = 0x0806
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_MPLS = 0x8847
ETH_MPLS_MC = 0x8848
ETH_EXPERIMENTAL = 0x88B5  # IEEE local experimental: a frame no switch parses further

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PROTO_SCTP = 132

# IPv6 extension headers (next-header values)
EXT_HOPOPTS = 0
EXT_ROUTING = 43
EXT_FRAGMENT = 44
EXT_DSTOPTS = 60
EXT_AUTH = 51
EXT_ESP = 50
EXT_NONEXT = 59

ND_NS = 135
ND_NA = 136
ND_OPT_SLL = 1
ND_OPT_TLL = 2
ND_OPT_MARKER = 253  # RFC 4727's experimental option type: skipped by every parser

MARKER_LEN = 8


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def ip4(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def ip6(addr: str) -> bytes:
    return ipaddress.IPv6Address(addr).packed


def csum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC32c (Castagnoli), SCTP's checksum (RFC 4960 appendix B)."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


@dataclass(frozen=True)
class Pkt:
    """One Ethernet frame, outermost header first.

    `vlans`: (tpid, pcp, vid) per tag, outermost first.  `mpls`: (label, tc, ttl) per
    label, outermost first (bottom of stack is the last one).  `l3`: ``ipv4``, ``ipv6``,
    ``arp`` or ``raw`` (then `eth_type` and the payload alone follow the tags).  Above IP,
    `ip_proto` picks TCP, UDP, SCTP, ICMP or ICMPv6 (ND when `icmp_type` is 135/136);
    any other protocol carries the payload only.
    """

    eth_dst: str = "02:00:00:00:00:aa"
    eth_src: str = "02:00:00:00:00:01"
    vlans: tuple[tuple[int, int, int], ...] = ()
    mpls: tuple[tuple[int, int, int], ...] = ()
    mpls_type: int = ETH_MPLS
    l3: str = "ipv4"
    eth_type: int = ETH_EXPERIMENTAL  # for l3 == "raw"
    ip_src: str = "192.168.10.1"
    ip_dst: str = "192.168.20.2"
    ip_proto: int = PROTO_UDP
    dscp: int = 0
    ecn: int = 0
    ttl: int = 64
    ip_id: int = 0x1234
    flabel: int = 0
    ext: tuple[int, ...] = ()  # IPv6 extension headers before the upper layer
    sport: int = 1000
    dport: int = 2000
    tcp_flags: int = 0x18
    icmp_type: int = 8
    icmp_code: int = 0
    nd_target: str = "fe80::99"
    nd_sll: str | None = None
    nd_tll: str | None = None
    arp_op: int = 1
    arp_sha: str = "02:00:00:00:00:01"
    arp_spa: str = "192.168.10.1"
    arp_tha: str = "00:00:00:00:00:00"
    arp_tpa: str = "192.168.20.2"
    payload: bytes = b"tenantvisor conformance"

    def but(self, **changes: Any) -> Pkt:
        """This frame with some fields changed (what an action should have made of it)."""
        return replace(self, **changes)

    # --- building ------------------------------------------------------------------------
    def build(self, marker: bytes = b"") -> bytes:
        """The frame's bytes, `marker` last in the payload, every checksum correct."""
        if self.l3 == "ipv4":
            inner, etype = self._ipv4(marker), ETH_IPV4
        elif self.l3 == "ipv6":
            inner, etype = self._ipv6(marker), ETH_IPV6
        elif self.l3 == "arp":
            inner, etype = self._arp() + self.payload + marker, ETH_ARP
        else:
            inner, etype = self.payload + marker, self.eth_type
        if self.mpls:
            stack = b""
            for i, (label, tc, ttl) in enumerate(self.mpls):
                bos = 1 if i == len(self.mpls) - 1 else 0
                stack += struct.pack("!I", (label << 12) | (tc << 9) | (bos << 8) | ttl)
            inner, etype = stack + inner, self.mpls_type
        for tpid, pcp, vid in reversed(self.vlans):
            inner = struct.pack("!HH", (pcp << 13) | vid, etype) + inner
            etype = tpid
        frame = mac_bytes(self.eth_dst) + mac_bytes(self.eth_src) + struct.pack("!H", etype) + inner
        return frame

    def _l4(self, marker: bytes, pseudo: bytes) -> bytes:
        """The upper layer over IP; `pseudo` is the pseudo-header minus protocol/length."""
        data = self.payload + marker
        proto = self.ip_proto
        if proto == PROTO_UDP:
            seg = struct.pack("!HHHH", self.sport, self.dport, 8 + len(data), 0) + data
        elif proto == PROTO_TCP:
            seg = struct.pack("!HHIIBBHHH", self.sport, self.dport, 1, 0, 5 << 4,
                              self.tcp_flags, 8192, 0, 0) + data  # fmt: skip
        elif proto == PROTO_SCTP:
            # common header + one DATA chunk carrying the payload
            chunk_data = data + b"\x00" * (-len(data) % 4)
            chunk = struct.pack("!BBHIHHI", 0, 3, 16 + len(data), 1, 0, 0, 0) + chunk_data
            seg = struct.pack("!HHII", self.sport, self.dport, 0xCAFE, 0) + chunk
            crc = crc32c(seg)
            return seg[:8] + struct.pack("<I", crc) + seg[12:]
        elif proto == PROTO_ICMP:
            seg = struct.pack("!BBHHH", self.icmp_type, self.icmp_code, 0, 7, 1) + data
            c = csum(seg)
            return seg[:2] + struct.pack("!H", c) + seg[4:]
        elif proto == PROTO_ICMPV6:
            seg = self._icmpv6(marker)
        else:
            return data
        length = len(seg)
        if self.l3 == "ipv4":
            ph = pseudo + struct.pack("!BBH", 0, proto, length)
        else:
            ph = pseudo + struct.pack("!IxxxB", length, proto)
        c = csum(ph + seg)
        if proto == PROTO_UDP and c == 0:
            c = 0xFFFF
        off = {PROTO_UDP: 6, PROTO_TCP: 16, PROTO_ICMPV6: 2}[proto]
        return seg[:off] + struct.pack("!H", c) + seg[off + 2 :]

    def _icmpv6(self, marker: bytes) -> bytes:
        if self.icmp_type in (ND_NS, ND_NA):
            flags = 0x60000000 if self.icmp_type == ND_NA else 0
            body = struct.pack("!BBHI", self.icmp_type, self.icmp_code, 0, flags)
            body += ip6(self.nd_target)
            if self.nd_sll is not None:
                body += struct.pack("!BB", ND_OPT_SLL, 1) + mac_bytes(self.nd_sll)
            if self.nd_tll is not None:
                body += struct.pack("!BB", ND_OPT_TLL, 1) + mac_bytes(self.nd_tll)
            # the marker rides in an experimental option, which ND parsers skip
            tail = marker + b"\x00" * (-(len(marker) + 2) % 8)
            if marker:
                body += struct.pack("!BB", ND_OPT_MARKER, (len(tail) + 2) // 8) + tail
            return body
        return (
            struct.pack("!BBHHH", self.icmp_type, self.icmp_code, 0, 7, 1) + self.payload + marker
        )

    def _ipv4(self, marker: bytes) -> bytes:
        upper = self._l4(marker, ip4(self.ip_src) + ip4(self.ip_dst))
        tos = (self.dscp << 2) | self.ecn
        src, dst = ip4(self.ip_src), ip4(self.ip_dst)
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(upper), self.ip_id, 0,
                          self.ttl, self.ip_proto, 0, src, dst)  # fmt: skip
        return hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:] + upper

    def _ipv6(self, marker: bytes) -> bytes:
        upper = self._l4(marker, ip6(self.ip_src) + ip6(self.ip_dst))
        chain = b""
        kinds = list(self.ext)
        for i, kind in enumerate(kinds):
            nxt = kinds[i + 1] if i + 1 < len(kinds) else self.ip_proto
            if kind == EXT_FRAGMENT:
                chain += struct.pack("!BBHI", nxt, 0, 0, 0x11)  # offset 0, last fragment
            elif kind == EXT_AUTH:
                chain += struct.pack("!BBHII", nxt, 2, 0, 0x100, 1) + bytes(4)
            else:  # hop-by-hop, routing, destination options: 8 bytes, padded
                chain += struct.pack("!BB", nxt, 0) + b"\x01\x04" + bytes(4)
        first = kinds[0] if kinds else self.ip_proto
        tc = (self.dscp << 2) | self.ecn
        vtf = (6 << 28) | (tc << 20) | self.flabel
        hdr = struct.pack("!IHBB", vtf, len(chain) + len(upper), first, self.ttl)
        return hdr + ip6(self.ip_src) + ip6(self.ip_dst) + chain + upper

    def _arp(self) -> bytes:
        return struct.pack("!HHBBH6s4s6s4s", 1, ETH_IPV4, 6, 4, self.arp_op,
                           mac_bytes(self.arp_sha), ip4(self.arp_spa),
                           mac_bytes(self.arp_tha), ip4(self.arp_tpa))  # fmt: skip


def describe(frame: bytes) -> str:
    """A short human reading of a frame for reports: its headers down to the upper layer."""
    if len(frame) < 14:
        return f"runt {frame.hex()}"
    parts = [f"{frame[6:12].hex(':')}>{frame[0:6].hex(':')}"]
    off = 12
    (etype,) = struct.unpack_from("!H", frame, off)
    while etype in (ETH_VLAN, ETH_QINQ) and len(frame) >= off + 6:
        (tci,) = struct.unpack_from("!H", frame, off + 2)
        parts.append(f"{'vlan' if etype == ETH_VLAN else 'stag'} {tci & 0xFFF} p{tci >> 13}")
        off += 4
        (etype,) = struct.unpack_from("!H", frame, off)
    off += 2
    while etype in (ETH_MPLS, ETH_MPLS_MC) and len(frame) >= off + 4:
        (lse,) = struct.unpack_from("!I", frame, off)
        parts.append(f"mpls {lse >> 12} tc{(lse >> 9) & 7} ttl{lse & 0xFF}")
        off += 4
        if lse & 0x100:
            etype = ETH_IPV4 if (frame[off] >> 4) == 4 else ETH_IPV6
            break
    if etype == ETH_IPV4 and len(frame) >= off + 20:
        tos, ttl, proto = frame[off + 1], frame[off + 8], frame[off + 9]
        src = ipaddress.IPv4Address(frame[off + 12 : off + 16])
        dst = ipaddress.IPv4Address(frame[off + 16 : off + 20])
        parts.append(f"ip {src}>{dst} proto {proto} tos {tos:#x} ttl {ttl}")
        l4 = off + 4 * (frame[off] & 0xF)
        if proto in (PROTO_TCP, PROTO_UDP, PROTO_SCTP) and len(frame) >= l4 + 4:
            sp, dp = struct.unpack_from("!HH", frame, l4)
            parts.append(f"ports {sp}>{dp}")
    elif etype == ETH_IPV6 and len(frame) >= off + 40:
        src6 = ipaddress.IPv6Address(frame[off + 8 : off + 24])
        dst6 = ipaddress.IPv6Address(frame[off + 24 : off + 40])
        parts.append(f"ip6 {src6}>{dst6} nh {frame[off + 6]} hl {frame[off + 7]}")
    elif etype == ETH_ARP and len(frame) >= off + 28:
        (op,) = struct.unpack_from("!H", frame, off + 6)
        spa = ipaddress.IPv4Address(frame[off + 14 : off + 18])
        tpa = ipaddress.IPv4Address(frame[off + 24 : off + 28])
        parts.append(f"arp op {op} {spa}>{tpa}")
    else:
        parts.append(f"type {etype:#06x}")
    return " | ".join(parts) + f" ({len(frame)} B)"


__all__ = ["Pkt", "crc32c", "csum", "describe"]
