"""Physical link discovery with LLDP probes the hypervisor sends and authenticates.

Each probe names (dpid, port) in standard chassis/port TLVs and carries an HMAC of them under
a per-instance secret, so a host that forges LLDP frames cannot invent fabric links (a link
is where tenant traffic gets tagged).  Probes leave every port periodically; the receiving
pswitch's table 0 sends probes (matched by our source MAC and the LLDP ethertype) to us as
PACKET_IN.

Besides the small probe that finds links there are two checks of what a link and the
pswitch behind it do with tenant frames (the probe's kind is signed with the rest):

* a **big** probe, padded to a full-size tenant frame plus the fabric tag (the MTU check);
* a **QinQ** probe, carrying an 802.1Q tag inside an 802.1ad tag as a tenant's VLAN frame
  crosses the fabric.  The discovery rule matches the LLDP ethertype, which Open vSwitch sees
  behind the two tags only when it parses both (``other_config:vlan-limit`` 0 or 2; the
  default, 1, leaves the ethertype at 0x8100): so the probe comes back exactly when a
  tenant's rules on that pswitch could match its own VLAN tag after our tag is popped.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct

from tenantvisor.mapping.layout import FABRIC_TPID, MAX_TAG
from tenantvisor.translate.infra import DISCOVERY_MAC, LLDP_ETHERTYPE

LLDP_DST = bytes.fromhex("0180c200000e")
_SRC = bytes.fromhex(DISCOVERY_MAC.replace(":", ""))
_OUI = b"\x02\x74\x76"  # locally administered, "tv"
_MAC_LEN = 16


def _tlv(t: int, value: bytes) -> bytes:
    return struct.pack("!H", (t << 9) | len(value)) + value


class ProbeKind(enum.IntEnum):
    """What a probe checks; the value is the subtype of our organisational TLV."""

    LINK = 1  # small: finds and ages links
    BIG = 2  # padded to BIG_PAYLOAD: the link carries full-size tagged tenant frames
    QINQ = 3  # a tenant's 802.1Q tag inside the fabric tag: the far pswitch parses both


_KINDS = frozenset(k.value for k in ProbeKind)

# A tenant frame of 1500 bytes carries our 4-byte tag across the fabric: a "big" probe with
# this much Ethernet payload proves a link takes it (LLDP ignores what follows its End TLV).
BIG_PAYLOAD = 1504

# The two tags of a QinQ probe.  The outer one is the fabric's TPID with a VID no fabric rule
# ever matches (tags and LITE blocks are 1..MAX_TAG): a pswitch that parses only the outer tag
# must not mistake the probe for a tenant's frame on some vlink, it must drop it at the miss.
QINQ_OUTER_VID = MAX_TAG + 1
QINQ_INNER_VID = 1
QINQ_TAGS = struct.pack("!HHHH", FABRIC_TPID, QINQ_OUTER_VID, 0x8100, QINQ_INNER_VID)


def _sign(secret: bytes, dpid: int, port: int, kind: ProbeKind) -> bytes:
    # kind - 1: the byte a bool "big" was before QinQ probes, so link and big probes keep
    # their exact bytes
    data = struct.pack("!QIB", dpid, port, kind - 1)
    return hmac.new(secret, data, hashlib.sha256).digest()[:_MAC_LEN]


def probe(secret: bytes, dpid: int, port: int, kind: ProbeKind = ProbeKind.LINK) -> bytes:
    """An Ethernet LLDP frame announcing (dpid, port), signed with its `kind`: a BIG one is
    padded to BIG_PAYLOAD, a QINQ one carries QINQ_TAGS before the LLDP ethertype."""
    body = (
        _tlv(1, b"\x07" + f"dpid:{dpid:016x}".encode())  # chassis id, locally assigned
        + _tlv(2, b"\x02" + struct.pack("!I", port))  # port id, port component
        + _tlv(3, struct.pack("!H", 120))  # TTL
        + _tlv(127, _OUI + bytes([kind]) + _sign(secret, dpid, port, kind))
        + _tlv(0, b"")
    )
    if kind is ProbeKind.BIG:
        body += bytes(BIG_PAYLOAD - len(body))
    tags = QINQ_TAGS if kind is ProbeKind.QINQ else b""
    return LLDP_DST + _SRC + tags + struct.pack("!H", LLDP_ETHERTYPE) + body


def parse_probe(secret: bytes, frame: bytes) -> tuple[int, int] | None:
    """(dpid, port) of one of our authentic link probes, or None."""
    got = parse_any_probe(secret, frame)
    return None if got is None or got[2] is not ProbeKind.LINK else (got[0], got[1])


def parse_any_probe(secret: bytes, frame: bytes) -> tuple[int, int, ProbeKind] | None:
    """(dpid, port, kind) of one of our authentic probes, or None.  A QinQ probe counts only
    with both its tags as sent (a switch that stripped or rewrote one proved nothing), and
    no other kind with tags."""
    tagged = frame[12:20] == QINQ_TAGS
    if tagged:
        frame = frame[:12] + frame[20:]
    if len(frame) < 14 or frame[12:14] != b"\x88\xcc" or frame[6:12] != _SRC:
        return None
    off = 14
    dpid = port = None
    sig = None
    kind = ProbeKind.LINK
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
        elif t == 127 and v[:3] == _OUI and n > 3 and v[3] in _KINDS:
            sig = v[4:]
            kind = ProbeKind(v[3])
    if dpid is None or port is None or sig is None or tagged != (kind is ProbeKind.QINQ):
        return None
    if not hmac.compare_digest(sig, _sign(secret, dpid, port, kind)):
        return None
    return dpid, port, kind
