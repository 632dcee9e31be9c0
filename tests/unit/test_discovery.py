"""Authenticated LLDP probes: they round-trip, and nothing forged or tampered is believed.

Table 0 sends every frame with our probe source MAC and the LLDP ethertype to the hypervisor,
from any port, so a host can hand `parse_probe` arbitrary bytes: it must answer None, never
raise.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import struct

import pytest
from os_ken.lib.packet import ethernet, lldp, packet

from tenantvisor.mapping.layout import FABRIC_TPID, MAX_TAG
from tenantvisor.physical import discovery
from tenantvisor.translate.infra import DISCOVERY_MAC, LLDP_ETHERTYPE

SECRET = b"instance-secret"
DPID = 0x0000_0000_0000_1234
PORT = 7


def tlv(t: int, value: bytes) -> bytes:
    return struct.pack("!H", (t << 9) | len(value)) + value


def forged(chassis: bytes, port: bytes = struct.pack("!I", PORT)) -> bytes:
    """A frame a host could send: our source MAC, LLDP ethertype, any TLVs it likes."""
    body = (
        tlv(1, b"\x07" + chassis)
        + tlv(2, b"\x02" + port)
        + tlv(3, b"\x00\x78")
        + tlv(127, b"\x02\x74\x76\x01" + b"\0" * 16)
        + tlv(0, b"")
    )
    return (
        discovery.LLDP_DST
        + bytes.fromhex(DISCOVERY_MAC.replace(":", ""))
        + struct.pack("!H", LLDP_ETHERTYPE)
        + body
    )


@pytest.mark.parametrize(
    ("dpid", "port"),
    [(DPID, PORT), (1, 1), ((1 << 64) - 1, 0xFFFFFF00), (0x0003000000000001, 0xFFFFFFFE)],
)
def test_probe_round_trips(dpid: int, port: int) -> None:
    assert discovery.parse_probe(SECRET, discovery.probe(SECRET, dpid, port)) == (dpid, port)


def test_probe_is_a_standard_lldp_frame() -> None:
    pkt = packet.Packet(discovery.probe(SECRET, DPID, PORT))
    eth = pkt.get_protocol(ethernet.ethernet)
    assert (eth.dst, eth.src, eth.ethertype) == (
        "01:80:c2:00:00:0e",
        DISCOVERY_MAC,
        LLDP_ETHERTYPE,
    )
    tlvs = pkt.get_protocol(lldp.lldp).tlvs
    chassis, port, ttl, org, end = tlvs
    assert (chassis.subtype, chassis.chassis_id) == (
        lldp.ChassisID.SUB_LOCALLY_ASSIGNED,
        b"dpid:0000000000001234",
    )
    assert (port.subtype, port.port_id) == (lldp.PortID.SUB_PORT_COMPONENT, b"\0\0\0\x07")
    assert ttl.ttl == 120
    assert (org.oui, org.subtype, len(org.info)) == (b"\x02\x74\x76", 1, 16)
    assert isinstance(end, lldp.End)


def test_probe_signed_with_another_secret_is_rejected() -> None:
    assert discovery.parse_probe(SECRET, discovery.probe(b"other-instance", DPID, PORT)) is None


def test_probe_with_a_tampered_port_is_rejected() -> None:
    frame = discovery.probe(SECRET, DPID, PORT)
    tampered = frame.replace(b"\x02\x00\x00\x00\x07", b"\x02\x00\x00\x00\x08", 1)
    assert tampered != frame
    assert discovery.parse_probe(SECRET, tampered) is None


def test_probe_with_a_tampered_dpid_is_rejected() -> None:
    frame = discovery.probe(SECRET, DPID, PORT)
    tampered = frame.replace(b"dpid:0000000000001234", b"dpid:0000000000001235")
    assert discovery.parse_probe(SECRET, tampered) is None


def test_probe_with_a_truncated_signature_is_rejected() -> None:
    frame = discovery.probe(SECRET, DPID, PORT)
    sig_at = frame.index(b"\x02\x74\x76\x01") + 4
    short = bytearray(frame[:sig_at] + frame[sig_at + 1 :])
    short[sig_at - 6 : sig_at - 4] = struct.pack("!H", (127 << 9) | 19)  # keep the TLV honest
    assert discovery.parse_probe(SECRET, bytes(short)) is None


def test_probe_without_signature_is_rejected() -> None:
    frame = discovery.probe(SECRET, DPID, PORT)
    cut = frame.index(struct.pack("!H", (127 << 9) | 20))
    assert discovery.parse_probe(SECRET, frame[:cut] + b"\0\0") is None


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01\x80\xc2",
        discovery.probe(SECRET, DPID, PORT)[:14],
        # not LLDP
        discovery.probe(SECRET, DPID, PORT)[:12] + b"\x08\x00" + discovery.probe(SECRET, 1, 1)[14:],
        # someone else's LLDP (another source MAC)
        discovery.probe(SECRET, DPID, PORT)[:6] + b"\x02" * 6 + discovery.probe(SECRET, 1, 1)[12:],
    ],
    ids=["empty", "short", "header-only", "not-lldp", "foreign-source-mac"],
)
def test_frames_that_are_not_our_probes_are_ignored(frame: bytes) -> None:
    assert discovery.parse_probe(SECRET, frame) is None


@pytest.mark.parametrize(
    "chassis",
    [
        b"dpid:zz",
        b"dpid:",
        b"dpid:-000000000000001",  # int() takes a sign: a negative dpid
        b"dpid:10000000000000000",  # 17 hex digits: beyond 64 bits
    ],
    ids=["not-hex", "empty", "negative", "over-64-bits"],
)
def test_forged_chassis_ids_are_rejected_without_raising(chassis: bytes) -> None:
    assert discovery.parse_probe(SECRET, forged(chassis)) is None


def test_forged_port_of_the_wrong_size_is_rejected() -> None:
    assert discovery.parse_probe(SECRET, forged(b"dpid:0000000000001234", b"\0\0\x07")) is None


def test_randomly_damaged_probes_never_raise_and_never_lie() -> None:
    rng = random.Random(7)
    frame = discovery.probe(SECRET, DPID, PORT)
    for _ in range(5000):
        b = bytearray(frame)
        for _ in range(rng.randrange(1, 4)):
            r = rng.random()
            if r < 0.3 and b:
                del b[rng.randrange(len(b)) :]
            elif r < 0.9 and b:
                b[rng.randrange(len(b))] = rng.randrange(256)
            else:
                b += bytes(rng.randrange(256) for _ in range(rng.randrange(8)))
        assert discovery.parse_probe(SECRET, bytes(b)) in (None, (DPID, PORT)), bytes(b).hex()


# --- the kinds of probe: link, big (MTU), QinQ (a tenant's tag inside the fabric tag) ---------
@pytest.mark.parametrize("kind", list(discovery.ProbeKind))
def test_every_kind_round_trips_as_itself(kind: discovery.ProbeKind) -> None:
    frame = discovery.probe(SECRET, DPID, PORT, kind)
    assert discovery.parse_any_probe(SECRET, frame) == (DPID, PORT, kind)
    # parse_probe answers for link probes only: the others prove something else
    assert discovery.parse_probe(SECRET, frame) == ((DPID, PORT) if kind == 1 else None)


def test_link_and_big_probes_keep_their_bytes() -> None:
    """The kind replaced a bool "big" in the signed data: the same bytes as before."""
    for kind, big in ((discovery.ProbeKind.LINK, False), (discovery.ProbeKind.BIG, True)):
        data = struct.pack("!QI?", DPID, PORT, big)
        sig = hmac.new(SECRET, data, hashlib.sha256).digest()[:16]
        assert sig in discovery.probe(SECRET, DPID, PORT, kind)


def test_qinq_probe_is_lldp_inside_an_s_tag_and_a_c_tag() -> None:
    frame = discovery.probe(SECRET, DPID, PORT, discovery.ProbeKind.QINQ)
    outer_tpid, outer_tci, inner_tpid, inner_tci, etype = struct.unpack_from("!HHHHH", frame, 12)
    assert (outer_tpid, inner_tpid, etype) == (FABRIC_TPID, 0x8100, LLDP_ETHERTYPE)
    # never a fabric tag: a switch that parses only the outer tag must not classify it
    assert outer_tci & 0xFFF == discovery.QINQ_OUTER_VID > MAX_TAG
    assert inner_tci & 0xFFF == discovery.QINQ_INNER_VID
    pkt = packet.Packet(frame[:12] + frame[20:])  # what is inside the tags: our LLDP probe
    org = pkt.get_protocol(lldp.lldp).tlvs[3]
    assert (org.oui, org.subtype) == (b"\x02\x74\x76", 3)


def test_qinq_probe_without_its_tags_proves_nothing() -> None:
    """A switch that stripped the tags (or one of them) did not show that it parses them."""
    frame = discovery.probe(SECRET, DPID, PORT, discovery.ProbeKind.QINQ)
    assert discovery.parse_any_probe(SECRET, frame[:12] + frame[20:]) is None
    assert discovery.parse_any_probe(SECRET, frame[:12] + frame[16:]) is None
    assert discovery.parse_any_probe(SECRET, frame[:16] + frame[20:]) is None


def test_qinq_probe_with_rewritten_tags_is_rejected() -> None:
    frame = bytearray(discovery.probe(SECRET, DPID, PORT, discovery.ProbeKind.QINQ))
    frame[15] ^= 1  # another outer VID: not the header we sent
    assert discovery.parse_any_probe(SECRET, bytes(frame)) is None


def test_a_link_probe_wrapped_in_the_qinq_tags_is_not_a_qinq_probe() -> None:
    """The kind is signed: tags put around a link probe (by a host, say) prove nothing."""
    frame = discovery.probe(SECRET, DPID, PORT)
    wrapped = frame[:12] + discovery.QINQ_TAGS + frame[12:]
    assert discovery.parse_any_probe(SECRET, wrapped) is None
    sub = wrapped.index(b"\x02\x74\x76\x01") + 3
    relabelled = wrapped[:sub] + b"\x03" + wrapped[sub + 1 :]  # the subtype, not the signature
    assert discovery.parse_any_probe(SECRET, relabelled) is None


def test_randomly_damaged_qinq_probes_never_raise_and_never_lie() -> None:
    rng = random.Random(11)
    frame = discovery.probe(SECRET, DPID, PORT, discovery.ProbeKind.QINQ)
    ok = (None, (DPID, PORT, discovery.ProbeKind.QINQ))
    for _ in range(3000):
        b = bytearray(frame)
        for _ in range(rng.randrange(1, 4)):
            if not b:
                break
            if rng.random() < 0.3:
                del b[rng.randrange(len(b)) :]
            else:
                b[rng.randrange(len(b))] = rng.randrange(256)
        assert discovery.parse_any_probe(SECRET, bytes(b)) in ok, bytes(b).hex()
