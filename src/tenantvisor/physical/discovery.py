"""Physical link discovery with LLDP probes the hypervisor sends and authenticates.

Each probe names (dpid, port) in standard chassis/port TLVs and carries an HMAC of them under
a per-instance secret, so a host that forges LLDP frames cannot invent fabric links (a link
is where tenant traffic gets tagged).  Probes leave every port periodically; the receiving
pswitch's table 0 sends probes (matched by our source MAC) to us as PACKET_IN.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from tenantvisor.translate.infra import DISCOVERY_MAC, LLDP_ETHERTYPE

LLDP_DST = bytes.fromhex("0180c200000e")
_SRC = bytes.fromhex(DISCOVERY_MAC.replace(":", ""))
_OUI = b"\x02\x74\x76"  # locally administered, "tv"
_MAC_LEN = 16


def _tlv(t: int, value: bytes) -> bytes:
    return struct.pack("!H", (t << 9) | len(value)) + value


# A tenant frame of 1500 bytes carries our 4-byte tag across the fabric: a "big" probe with
# this much Ethernet payload proves a link takes it (LLDP ignores what follows its End TLV).
BIG_PAYLOAD = 1504


def _sign(secret: bytes, dpid: int, port: int, big: bool) -> bytes:
    data = struct.pack("!QI?", dpid, port, big)
    return hmac.new(secret, data, hashlib.sha256).digest()[:_MAC_LEN]


def probe(secret: bytes, dpid: int, port: int, big: bool = False) -> bytes:
    """An Ethernet LLDP frame announcing (dpid, port); `big` pads it to BIG_PAYLOAD."""
    body = (
        _tlv(1, b"\x07" + f"dpid:{dpid:016x}".encode())  # chassis id, locally assigned
        + _tlv(2, b"\x02" + struct.pack("!I", port))  # port id, port component
        + _tlv(3, struct.pack("!H", 120))  # TTL
        + _tlv(127, _OUI + (b"\x02" if big else b"\x01") + _sign(secret, dpid, port, big))
        + _tlv(0, b"")
    )
    if big:
        body += bytes(BIG_PAYLOAD - len(body))
    return LLDP_DST + _SRC + struct.pack("!H", LLDP_ETHERTYPE) + body


def parse_probe(secret: bytes, frame: bytes) -> tuple[int, int] | None:
    """(dpid, port) of one of our authentic small probes, or None."""
    got = parse_any_probe(secret, frame)
    return None if got is None or got[2] else (got[0], got[1])


def parse_any_probe(secret: bytes, frame: bytes) -> tuple[int, int, bool] | None:
    """(dpid, port, big) of one of our authentic probes, or None."""
    if len(frame) < 14 or frame[12:14] != b"\x88\xcc" or frame[6:12] != _SRC:
        return None
    off = 14
    dpid = port = None
    sig = None
    big = False
    while off + 2 <= len(frame):
        (hdr,) = struct.unpack_from("!H", frame, off)
        t, n = hdr >> 9, hdr & 0x1FF
        v = frame[off + 2 : off + 2 + n]
        off += 2 + n
        if len(v) != n or t == 0:
            break
        if t == 1 and v[:1] == b"\x07" and v[1:6] == b"dpid:":
            hexdpid = v[6:]
            if len(hexdpid) != 16 or hexdpid.strip(b"0123456789abcdef"):
                return None  # exactly what probe() writes; int() would take signs, spaces, ...
            dpid = int(hexdpid, 16)
        elif t == 2 and v[:1] == b"\x02" and n == 5:
            (port,) = struct.unpack("!I", v[1:])
        elif t == 127 and v[:3] == _OUI and v[3:4] in (b"\x01", b"\x02"):
            sig = v[4:]
            big = v[3:4] == b"\x02"
    if dpid is None or port is None or sig is None:
        return None
    if not hmac.compare_digest(sig, _sign(secret, dpid, port, big)):
        return None
    return dpid, port, big
