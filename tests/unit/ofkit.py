"""os-ken as the reference OpenFlow 1.3 implementation the unit tests compare against.

Tenant messages are built with os-ken's parser classes and serialized; our physical output is
parsed back with os-ken (which does parse FLOW_MOD, PACKET_IN, FLOW_REMOVED, ERROR and HELLO),
and its objects are reduced to plain tuples so that tests compare whole rules at once.
"""

from __future__ import annotations

from typing import Any

from os_ken.ofproto import ofproto_parser
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

DP = ProtocolDesc(ofp.OFP_VERSION)


def osken_bytes(msg: Any) -> bytes:
    """Serialize an os-ken message object to its wire bytes."""
    msg.serialize()
    return bytes(msg.buf)


def osken_parse(buf: bytes) -> Any:
    """Parse one complete message with os-ken; fail the test if os-ken cannot."""
    version, msg_type, msg_len, xid = ofproto_parser.header(buf)
    assert msg_len == len(buf), f"header length {msg_len} != {len(buf)} bytes"
    msg = ofproto_parser.msg(DP, version, msg_type, msg_len, xid, buf)
    assert msg is not None, f"os-ken does not parse message type {msg_type}"
    return msg


def osken_flow_mod(
    match: Any = None, instructions: list[Any] | None = None, **fields: Any
) -> bytes:
    """A tenant FLOW_MOD as os-ken builds it (buffer_id defaults to OFP_NO_BUFFER)."""
    fields.setdefault("out_port", ofp.OFPP_ANY)
    fields.setdefault("out_group", ofp.OFPG_ANY)
    fm = parser.OFPFlowMod(
        DP,
        match=match if match is not None else parser.OFPMatch(),
        instructions=instructions or [],
        **fields,
    )
    return osken_bytes(fm)


def apply(*actions: Any) -> Any:
    return parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions))


def write(*actions: Any) -> Any:
    return parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, list(actions))


def osken_actions(buf: bytes) -> list[Any]:
    """Parse a bare action list (as in a PACKET_OUT) with os-ken's action sub-parser."""
    out = []
    off = 0
    while off < len(buf):
        a = parser.OFPAction.parser(buf, off)
        out.append(a)
        off += a.len
    return out


def action_summary(actions: list[Any]) -> list[tuple[Any, ...]]:
    """os-ken actions as comparable tuples: ("output", port), ("set_field", name, value), ..."""
    out: list[tuple[Any, ...]] = []
    for a in actions:
        if isinstance(a, parser.OFPActionOutput):
            out.append(("output", a.port))
        elif isinstance(a, parser.OFPActionPushVlan):
            out.append(("push_vlan", a.ethertype))
        elif isinstance(a, parser.OFPActionPopVlan):
            out.append(("pop_vlan",))
        elif isinstance(a, parser.OFPActionSetField):
            out.append(("set_field", a.key, a.value))
        elif isinstance(a, parser.OFPActionGroup):
            out.append(("group", a.group_id))
        else:
            out.append((type(a).__name__,))
    return out


def instruction_summary(instructions: list[Any]) -> dict[str, Any]:
    """os-ken instructions as a dict: apply/write (action tuples), clear, metadata, goto."""
    out: dict[str, Any] = {}
    for i in instructions:
        if isinstance(i, parser.OFPInstructionActions):
            if i.type == ofp.OFPIT_APPLY_ACTIONS:
                out["apply"] = action_summary(i.actions)
            elif i.type == ofp.OFPIT_WRITE_ACTIONS:
                out["write"] = action_summary(i.actions)
            else:
                out["clear"] = True
        elif isinstance(i, parser.OFPInstructionWriteMetadata):
            out["write_metadata"] = (i.metadata, i.metadata_mask)
        elif isinstance(i, parser.OFPInstructionGotoTable):
            out["goto"] = i.table_id
        else:
            out[type(i).__name__] = True
    return out


def instruction_types(instructions: list[Any]) -> list[int]:
    """The instruction types in wire order (the spec executes apply before write/goto)."""
    return [i.type for i in instructions]
