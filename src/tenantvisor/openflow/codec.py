"""OpenFlow 1.3 wire structures on bytes, for the messages on the hypervisor's hot path.

os-ken parses switch->controller messages but returns None for most controller->switch ones
(PACKET_OUT, BARRIER, multipart requests, ...), and a full os-ken decode/encode of a FLOW_MOD
costs ~120 us (notes/openflow-stack-facts.md).  Every tenant FLOW_MOD and PACKET_OUT and every
PACKET_IN crosses this module, so it works on `struct` and raw OXM/instruction/action TLVs
and keeps unparsed parts as bytes.  os-ken supplies the constants and pack formats, parses the
rare switch->controller messages (features, port descriptions, port status), and is the
reference the golden-byte tests compare against.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from os_ken.ofproto import ofproto_v1_3 as ofp

VERSION = ofp.OFP_VERSION  # 4
HEADER = struct.Struct(ofp.OFP_HEADER_PACK_STR)  # version, type, length, xid
FLOW_MOD_BODY = struct.Struct("!QQBBHHHIIIH2x")  # after the header, before the match
_PACKET_OUT = struct.Struct("!IIH6x")  # buffer_id, in_port, actions_len
_PACKET_IN = struct.Struct("!IHBBQ")  # buffer_id, total_len, reason, table_id, cookie
_FLOW_REMOVED = struct.Struct("!QHBBIIHHQQ")
ERROR_MSG = struct.Struct("!HH")
"""ofp_error_msg (OFPT_ERROR body) before its data: type (OFPET_*), code."""
_ERROR = ERROR_MSG
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")
_OXM_HDR = struct.Struct("!I")
_TLV = struct.Struct("!HH")
_OUTPUT = struct.Struct("!HHIH6x")
_GOTO = struct.Struct("!HHB3x")
_WRITE_METADATA = struct.Struct("!HH4xQQ")
_INSTR_ACTIONS = struct.Struct("!HH4x")

OXM_CLASS_OPENFLOW_BASIC = 0x8000
# OF1.3 names no code for a repeated instruction; 1.4 added OFPBIC_DUP_INST (9) for it, and a
# 1.3 controller reading "bad instruction, code 9" is told more than by a generic code.
OFPBIC_DUP_INST = 9


class MalformedMessage(Exception):
    """The bytes are not a well-formed OpenFlow message: the channel must be closed."""


class OFError(Exception):
    """A well-formed request the switch refuses: answered with OFPT_ERROR (type, code)."""

    def __init__(self, type_: int, code: int, reason: str = "") -> None:
        super().__init__(reason or f"error type={type_} code={code}")
        self.type = type_
        self.code = code
        self.reason = reason


MAX_LENGTH = 0xFFFF
"""The most bytes a 16-bit OpenFlow length (a message's, an instruction's, a bucket's) holds."""


def check_length(length: int, what: str) -> None:
    """Refuse `what` of `length` bytes when its 16-bit length cannot hold it.

    Translation makes a tenant's valid message longer (an output to a link vport becomes
    four actions), so it can outgrow what OpenFlow can carry: that is the tenant's request
    being too big for the switch, OFPBAC_TOO_MANY, not a `struct.error` in an encoder."""
    if length > MAX_LENGTH:
        raise OFError(
            ofp.OFPET_BAD_ACTION,
            ofp.OFPBAC_TOO_MANY,
            f"{what} would be {length} bytes once translated; OpenFlow holds {MAX_LENGTH}",
        )


# --- header ------------------------------------------------------------------------------
def header(version: int, msg_type: int, xid: int, body: bytes = b"") -> bytes:
    return HEADER.pack(version, msg_type, 8 + len(body), xid) + body


def set_xid(msg: bytes, xid: int) -> bytes:
    return msg[:4] + _U32.pack(xid) + msg[8:]


def error_msg(version: int, xid: int, type_: int, code: int, data: bytes) -> bytes:
    """OFPT_ERROR carrying (at least) the first 64 bytes of the offending message."""
    return header(version, ofp.OFPT_ERROR, xid, _ERROR.pack(type_, code) + data[:64])


# --- OXM ---------------------------------------------------------------------------------
def oxm_header(field_no: int, length: int, has_mask: bool = False) -> int:
    return (OXM_CLASS_OPENFLOW_BASIC << 16) | (field_no << 9) | (int(has_mask) << 8) | length


@dataclass(frozen=True, slots=True)
class Oxm:
    """One OXM TLV: class, field, value and optional mask, all kept as bytes."""

    oxm_class: int
    field: int
    value: bytes
    mask: bytes | None = None

    def encode(self) -> bytes:
        n = len(self.value) * (2 if self.mask is not None else 1)
        hdr = (self.oxm_class << 16) | (self.field << 9) | ((self.mask is not None) << 8) | n
        return _OXM_HDR.pack(hdr) + self.value + (self.mask or b"")

    @property
    def key(self) -> tuple[int, int]:
        return self.oxm_class, self.field


def parse_oxms(buf: bytes) -> list[Oxm]:
    out: list[Oxm] = []
    off, end = 0, len(buf)
    while off < end:
        if end - off < 4:
            raise MalformedMessage("truncated OXM header")
        (hdr,) = _OXM_HDR.unpack_from(buf, off)
        length = hdr & 0xFF
        has_mask = bool(hdr & 0x100)
        body = buf[off + 4 : off + 4 + length]
        if len(body) != length:
            raise MalformedMessage("truncated OXM field")
        if has_mask:
            if length % 2:
                raise MalformedMessage("odd masked OXM length")
            half = length // 2
            out.append(Oxm(hdr >> 16, (hdr >> 9) & 0x7F, body[:half], body[half:]))
        else:
            out.append(Oxm(hdr >> 16, (hdr >> 9) & 0x7F, body))
        off += 4 + length
    return out


def encode_match(oxms: list[Oxm]) -> bytes:
    """ofp_match of type OXM, padded to 8 bytes."""
    body = b"".join(o.encode() for o in oxms)
    length = 4 + len(body)
    return _TLV.pack(ofp.OFPMT_OXM, length) + body + b"\0" * (-length % 8)


def parse_match(buf: bytes, off: int) -> tuple[list[Oxm], int]:
    """Parse ofp_match at `off`; return (oxms, offset after the padded match)."""
    if len(buf) - off < 4:
        raise MalformedMessage("truncated match")
    mtype, length = _TLV.unpack_from(buf, off)
    if mtype != ofp.OFPMT_OXM:
        raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_TYPE, "only OXM matches")
    if length < 4 or off + length > len(buf):
        raise MalformedMessage("bad match length")
    oxms = parse_oxms(buf[off + 4 : off + length])
    return oxms, off + length + (-length % 8)


# --- actions -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Action:
    """An action as (type, raw TLV bytes); output/set_field/push are decoded on demand."""

    type: int
    raw: bytes

    @property
    def output_port(self) -> int:
        return _U32.unpack_from(self.raw, 4)[0]

    @property
    def max_len(self) -> int:
        return _U16.unpack_from(self.raw, 8)[0]

    @property
    def ethertype(self) -> int:
        return _U16.unpack_from(self.raw, 4)[0]

    def set_field_oxm(self) -> Oxm:
        (hdr,) = _OXM_HDR.unpack_from(self.raw, 4)
        oxms = parse_oxms(self.raw[4 : 8 + (hdr & 0xFF)])
        if len(oxms) != 1:
            raise MalformedMessage("set_field without exactly one OXM")
        return oxms[0]


# Exact lengths of the fixed-size actions (OF1.3 7.2.5); set_field and experimenter vary.
_ACTION_LEN = {
    ofp.OFPAT_OUTPUT: 16,
    ofp.OFPAT_COPY_TTL_OUT: 8,
    ofp.OFPAT_COPY_TTL_IN: 8,
    ofp.OFPAT_SET_MPLS_TTL: 8,
    ofp.OFPAT_DEC_MPLS_TTL: 8,
    ofp.OFPAT_PUSH_VLAN: 8,
    ofp.OFPAT_POP_VLAN: 8,
    ofp.OFPAT_PUSH_MPLS: 8,
    ofp.OFPAT_POP_MPLS: 8,
    ofp.OFPAT_SET_QUEUE: 8,
    ofp.OFPAT_GROUP: 8,
    ofp.OFPAT_SET_NW_TTL: 8,
    ofp.OFPAT_DEC_NW_TTL: 8,
    ofp.OFPAT_PUSH_PBB: 8,
    ofp.OFPAT_POP_PBB: 8,
}


def parse_actions(buf: bytes) -> list[Action]:
    """Split an action list; a TLV of the wrong size for its type is the spec's BAD_LEN."""
    out: list[Action] = []
    off, end = 0, len(buf)
    while off < end:
        if end - off < 8:
            raise MalformedMessage("truncated action")
        atype, length = _TLV.unpack_from(buf, off)
        if length < 8 or length % 8 or off + length > end:
            raise MalformedMessage(f"bad action length {length}")
        want = _ACTION_LEN.get(atype)
        if want is not None and length != want:
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_LEN, f"action {atype}: {length}")
        if atype == ofp.OFPAT_SET_FIELD and (length < 8 or 8 + (buf[off + 7]) > length):
            raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_LEN, "set_field length")
        out.append(Action(atype, buf[off : off + length]))
        off += length
    return out


def output(port: int, max_len: int = 0) -> bytes:
    return _OUTPUT.pack(ofp.OFPAT_OUTPUT, 16, port, max_len)


NX_VENDOR_ID = 0x00002320
NXAST_CONTROLLER2 = 37
_NXAC2PT_MAX_LEN = 0
_NXAC2PT_METER_ID = 5
_NX_HEADER = struct.Struct("!HHIH6x")


def controller_metered(max_len: int, meter_id: int) -> bytes:
    """Open vSwitch's `controller(max_len=N,meter_id=M)` (NXAST_CONTROLLER2, OVS >= 2.11):
    output:CONTROLLER whose PACKET_INs alone pass meter M (the other actions of the rule
    are not metered: OVS wraps the meter and the upcall in a clone).  Encoded exactly as
    OVS reports it back in flow statistics (so reconciliation finds it unchanged): the
    max_len property only when it is not the default 0xffff, both properties 8 bytes long."""
    props = b""
    if max_len != ofp.OFPCML_NO_BUFFER:
        props += struct.pack("!HHH2x", _NXAC2PT_MAX_LEN, 8, max_len)
    props += struct.pack("!HHI", _NXAC2PT_METER_ID, 8, meter_id)
    length = _NX_HEADER.size + len(props)
    return _NX_HEADER.pack(ofp.OFPAT_EXPERIMENTER, length, NX_VENDOR_ID, NXAST_CONTROLLER2) + props


def push_vlan(ethertype: int) -> bytes:
    return struct.pack("!HHH2x", ofp.OFPAT_PUSH_VLAN, 8, ethertype)


def pop_vlan() -> bytes:
    return struct.pack("!HH4x", ofp.OFPAT_POP_VLAN, 8)


def set_field(oxm: Oxm) -> bytes:
    body = oxm.encode()
    length = 4 + len(body)
    pad = -length % 8
    return _TLV.pack(ofp.OFPAT_SET_FIELD, length + pad) + body + b"\0" * pad


NX_VENDOR_ID = 0x00002320
_NX_REG_LOAD = struct.Struct("!HHIHHIQ")  # type, len, vendor, subtype, ofs_nbits, dst, value
_NXAST_REG_LOAD = 7
_NXM_OF_IN_PORT = 0x00000002  # NXM_HEADER(0x0000, 0, 2): the 16-bit in_port field


def load_in_port(port: int) -> bytes:
    """Open vSwitch's `load:PORT->NXM_OF_IN_PORT[]` (nx_action_reg_load): OpenFlow 1.3 does
    not let set_field write in_port (OVS answers BAD_SET_ARGUMENT), this extension does."""
    return _NX_REG_LOAD.pack(
        ofp.OFPAT_EXPERIMENTER, 24, NX_VENDOR_ID, _NXAST_REG_LOAD, 15, _NXM_OF_IN_PORT, port
    )


_OXM_OF_METADATA = 0x80000408  # OXM_HEADER(0x8000, 2, 8): the 64-bit metadata field


def load_metadata_low(value: int) -> bytes:
    """Open vSwitch's `load:VALUE->OXM_OF_METADATA[0..31]` (nx_action_reg_load): OpenFlow
    1.3's set_field writes all 64 metadata bits and may not be masked (OVS: BAD_SET_MASK);
    this writes the low 32 and leaves the rest as they are."""
    return _NX_REG_LOAD.pack(
        ofp.OFPAT_EXPERIMENTER, 24, NX_VENDOR_ID, _NXAST_REG_LOAD, 31, _OXM_OF_METADATA,
        value & 0xFFFFFFFF,
    )  # fmt: skip


# --- instructions ------------------------------------------------------------------------
@dataclass(slots=True)
class Instructions:
    """The instructions of a FLOW_MOD, decoded into the parts translation rewrites."""

    goto_table: int | None = None
    write_metadata: tuple[int, int] | None = None  # (value, mask)
    write_actions: list[Action] | None = None
    apply_actions: list[Action] | None = None
    clear_actions: bool = False
    meter: int | None = None
    other: list[tuple[int, bytes]] = field(default_factory=list)  # experimenter etc.


def parse_instructions(buf: bytes) -> Instructions:
    ins = Instructions()
    off, end = 0, len(buf)
    seen: set[int] = set()
    while off < end:
        if end - off < 8:
            raise MalformedMessage("truncated instruction")
        itype, length = _TLV.unpack_from(buf, off)
        if length < 8 or length % 8 or off + length > end:
            raise MalformedMessage(f"bad instruction length {length}")
        body = buf[off : off + length]
        if itype in seen:
            raise OFError(ofp.OFPET_BAD_INSTRUCTION, OFPBIC_DUP_INST, "duplicate instruction")
        seen.add(itype)
        if itype == ofp.OFPIT_GOTO_TABLE:
            ins.goto_table = body[4]
        elif itype == ofp.OFPIT_WRITE_METADATA:
            if length != 24:
                raise MalformedMessage("bad write_metadata length")
            _, _, value, mask = _WRITE_METADATA.unpack(body)
            ins.write_metadata = (value, mask)
        elif itype == ofp.OFPIT_WRITE_ACTIONS:
            ins.write_actions = parse_actions(body[8:])
        elif itype == ofp.OFPIT_APPLY_ACTIONS:
            ins.apply_actions = parse_actions(body[8:])
        elif itype == ofp.OFPIT_CLEAR_ACTIONS:
            ins.clear_actions = True
        elif itype == ofp.OFPIT_METER:
            ins.meter = _U32.unpack_from(body, 4)[0]
        else:
            ins.other.append((itype, body))
        off += length
    return ins


def encode_instructions(
    goto_table: int | None = None,
    write_metadata: tuple[int, int] | None = None,
    write_actions: bytes | None = None,
    apply_actions: bytes | None = None,
    clear_actions: bool = False,
    meter: int | None = None,
) -> bytes:
    """Instructions in the order the spec executes them (meter, apply, clear, write, ..);
    refused (OFError, see `check_length`) when an action list outgrows its instruction."""
    out = []
    if meter is not None:
        out.append(struct.pack("!HHI", ofp.OFPIT_METER, 8, meter))
    if apply_actions is not None:
        check_length(8 + len(apply_actions), "an apply_actions instruction")
        out.append(_INSTR_ACTIONS.pack(ofp.OFPIT_APPLY_ACTIONS, 8 + len(apply_actions)))
        out.append(apply_actions)
    if clear_actions:
        out.append(_INSTR_ACTIONS.pack(ofp.OFPIT_CLEAR_ACTIONS, 8))
    if write_actions is not None:
        check_length(8 + len(write_actions), "a write_actions instruction")
        out.append(_INSTR_ACTIONS.pack(ofp.OFPIT_WRITE_ACTIONS, 8 + len(write_actions)))
        out.append(write_actions)
    if write_metadata is not None:
        out.append(_WRITE_METADATA.pack(ofp.OFPIT_WRITE_METADATA, 24, *write_metadata))
    if goto_table is not None:
        out.append(_GOTO.pack(ofp.OFPIT_GOTO_TABLE, 8, goto_table))
    return b"".join(out)


# --- FLOW_MOD ----------------------------------------------------------------------------
@dataclass(slots=True)
class FlowMod:
    cookie: int
    cookie_mask: int
    table_id: int
    command: int
    idle_timeout: int
    hard_timeout: int
    priority: int
    buffer_id: int
    out_port: int
    out_group: int
    flags: int
    match: list[Oxm]
    instructions: bytes  # raw; parsed with parse_instructions when needed

    @classmethod
    def parse(cls, msg: bytes) -> FlowMod:
        if len(msg) < 56:
            raise MalformedMessage("FLOW_MOD shorter than 56 bytes")
        c, cm, t, cmd, idle, hard, prio, buf, op, og, fl = FLOW_MOD_BODY.unpack_from(msg, 8)
        match, off = parse_match(msg, 48)
        if off > len(msg):
            raise MalformedMessage("FLOW_MOD match overruns message")
        return cls(c, cm, t, cmd, idle, hard, prio, buf, op, og, fl, match, msg[off:])

    def encode(self, xid: int) -> bytes:
        body = (
            FLOW_MOD_BODY.pack(
                self.cookie,
                self.cookie_mask,
                self.table_id,
                self.command,
                self.idle_timeout,
                self.hard_timeout,
                self.priority,
                self.buffer_id,
                self.out_port,
                self.out_group,
                self.flags,
            )
            + encode_match(self.match)
            + self.instructions
        )
        return header(VERSION, ofp.OFPT_FLOW_MOD, xid, body)


# --- PACKET_OUT / PACKET_IN ---------------------------------------------------------------
@dataclass(slots=True)
class PacketOut:
    buffer_id: int
    in_port: int
    actions: list[Action]
    data: bytes

    @classmethod
    def parse(cls, msg: bytes) -> PacketOut:
        if len(msg) < 24:
            raise MalformedMessage("PACKET_OUT shorter than 24 bytes")
        buffer_id, in_port, alen = _PACKET_OUT.unpack_from(msg, 8)
        if 24 + alen > len(msg):
            raise MalformedMessage("PACKET_OUT actions overrun message")
        return cls(buffer_id, in_port, parse_actions(msg[24 : 24 + alen]), msg[24 + alen :])


def packet_out(xid: int, in_port: int, actions: bytes, data: bytes) -> bytes:
    """A PACKET_OUT; refused (OFError, see `check_length`) when it cannot be encoded."""
    check_length(HEADER.size + _PACKET_OUT.size + len(actions) + len(data), "a PACKET_OUT")
    body = _PACKET_OUT.pack(ofp.OFP_NO_BUFFER, in_port, len(actions)) + actions + data
    return header(VERSION, ofp.OFPT_PACKET_OUT, xid, body)


@dataclass(slots=True)
class PacketIn:
    buffer_id: int
    total_len: int
    reason: int
    table_id: int
    cookie: int
    match: list[Oxm]
    data: bytes

    @classmethod
    def parse(cls, msg: bytes) -> PacketIn:
        if len(msg) < 34:
            raise MalformedMessage("PACKET_IN too short")
        buffer_id, total_len, reason, table_id, cookie = _PACKET_IN.unpack_from(msg, 8)
        match, off = parse_match(msg, 24)
        return cls(buffer_id, total_len, reason, table_id, cookie, match, msg[off + 2 :])

    def encode(self, xid: int) -> bytes:
        body = (
            _PACKET_IN.pack(self.buffer_id, self.total_len, self.reason, self.table_id, self.cookie)
            + encode_match(self.match)
            + b"\0\0"
            + self.data
        )
        return header(VERSION, ofp.OFPT_PACKET_IN, xid, body)


@dataclass(slots=True)
class FlowRemoved:
    cookie: int
    priority: int
    reason: int
    table_id: int
    duration_sec: int
    duration_nsec: int
    idle_timeout: int
    hard_timeout: int
    packet_count: int
    byte_count: int
    match: list[Oxm]

    @classmethod
    def parse(cls, msg: bytes) -> FlowRemoved:
        if len(msg) < 56:
            raise MalformedMessage("FLOW_REMOVED too short")
        c, p, r, t, ds, dn, idle, hard, pk, by = _FLOW_REMOVED.unpack_from(msg, 8)
        match, _ = parse_match(msg, 48)
        return cls(c, p, r, t, ds, dn, idle, hard, pk, by, match)

    def encode(self, xid: int) -> bytes:
        body = _FLOW_REMOVED.pack(
            self.cookie,
            self.priority,
            self.reason,
            self.table_id,
            self.duration_sec,
            self.duration_nsec,
            self.idle_timeout,
            self.hard_timeout,
            self.packet_count,
            self.byte_count,
        ) + encode_match(self.match)
        return header(VERSION, ofp.OFPT_FLOW_REMOVED, xid, body)


def entries(
    parts: list[bytes] | None, min_len: int, len_at: int = 0
) -> Iterator[tuple[bytes, int, int]]:
    """(body, offset, length) of each variable-length entry of multipart reply bodies, whose
    16-bit length sits `len_at` bytes in.  A length below `min_len` ends that body: a
    pswitch's malformed reply loses its tail, it never loops or raises."""
    for body in parts or ():
        off, n = 0, len(body)
        while off + min_len <= n:
            length = _U16.unpack_from(body, off + len_at)[0]
            if length < min_len:
                break
            yield body, off, length
            off += length


def elements(buf: bytes, len_at: int, what: str) -> Iterator[tuple[int, int]]:
    """(offset, length) of each 8-byte-aligned element of at least 16 bytes (buckets, meter
    bands) that a tenant sent; anything truncated or of a bad length is malformed."""
    off, n = 0, len(buf)
    while off < n:
        if n - off < 16:
            raise MalformedMessage(f"truncated {what}")
        length = _U16.unpack_from(buf, off + len_at)[0]
        if length < 16 or length % 8 or off + length > n:
            raise MalformedMessage(f"bad {what} length {length}")
        yield off, length
        off += length


# --- small messages ------------------------------------------------------------------------
def u32(buf: bytes, off: int) -> int:
    return _U32.unpack_from(buf, off)[0]


def u16(buf: bytes, off: int) -> int:
    return _U16.unpack_from(buf, off)[0]


def oxm_int(o: Oxm) -> int:
    return int.from_bytes(o.value, "big")


def oxm_u32(field_no: int, value: int) -> Oxm:
    return Oxm(OXM_CLASS_OPENFLOW_BASIC, field_no, _U32.pack(value))


def oxm_u64(field_no: int, value: int, mask: int | None = None) -> Oxm:
    return Oxm(
        OXM_CLASS_OPENFLOW_BASIC,
        field_no,
        _U64.pack(value),
        None if mask is None else _U64.pack(mask),
    )


def oxm_u16(field_no: int, value: int, mask: int | None = None) -> Oxm:
    return Oxm(
        OXM_CLASS_OPENFLOW_BASIC,
        field_no,
        _U16.pack(value),
        None if mask is None else _U16.pack(mask),
    )


def oxm_mac(field_no: int, mac: str) -> Oxm:
    return Oxm(OXM_CLASS_OPENFLOW_BASIC, field_no, bytes.fromhex(mac.replace(":", "")))
