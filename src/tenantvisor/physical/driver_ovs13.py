"""The Open vSwitch driver, OpenFlow 1.3: the pipeline of docs/design.md ("The physical
pipeline"): classification in table 0, tenants' tables after it, groups and meters, QinQ
fabric tags, in_port rewritten with OVS's reg_load, and a flow dump to reconcile against."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, messages
from tenantvisor.physical.driver import (
    Features,
    Kind,
    StatsReply,
    SwitchDriver,
    TagEncoding,
    mac_text,
)
from tenantvisor.physical.topology import PPort
from tenantvisor.translate.flow import PhysFlow

_NO_MATCH = codec.encode_match([])


def port(buf: bytes, off: int) -> PPort:
    """The ofp_port at `off`."""
    no, hw, name, config, state, _, _, _, _, curr, top = messages.PORT.unpack_from(buf, off)
    up = not (state & ofp.OFPPS_LINK_DOWN) and not (config & ofp.OFPPC_PORT_DOWN)
    text = name.rstrip(b"\0").decode(errors="replace")
    return PPort(no, text, mac_text(hw), up, curr, top)


class Ovs13Driver(SwitchDriver):
    name = "ovs-of13"
    version = ofp.OFP_VERSION
    kinds: ClassVar[dict[int, Kind]] = {
        ofp.OFPT_FEATURES_REPLY: Kind.FEATURES_REPLY,
        ofp.OFPT_PORT_STATUS: Kind.PORT_STATUS,
        ofp.OFPT_PACKET_IN: Kind.PACKET_IN,
        ofp.OFPT_FLOW_REMOVED: Kind.FLOW_REMOVED,
        ofp.OFPT_MULTIPART_REPLY: Kind.STATS_REPLY,
        ofp.OFPT_BARRIER_REPLY: Kind.BARRIER_REPLY,
        ofp.OFPT_ERROR: Kind.ERROR,
    }
    multi_table = True
    supports_groups = True
    supports_meters = True
    meters_packet_ins = True
    can_rewrite_in_port = True
    can_reconcile = True
    can_delete_by_cookie = True
    packet_in_names_rule = True
    tag_encodings = frozenset({TagEncoding.QINQ, TagEncoding.VLAN, TagEncoding.MPLS})

    def describe(self) -> str:
        return f"{self.n_tables} tables"

    # --- controller -> switch -----------------------------------------------------------------
    def features_request(self, xid: int) -> bytes:
        return codec.header(self.version, ofp.OFPT_FEATURES_REQUEST, xid)

    def set_config(self, xid: int) -> bytes:
        body = messages.SWITCH_CONFIG.pack(ofp.OFPC_FRAG_NORMAL, ofp.OFPCML_NO_BUFFER)
        return codec.header(self.version, ofp.OFPT_SET_CONFIG, xid, body)

    def async_config(self, xid: int) -> bytes:
        """OpenFlow 1.3's defaults plus PACKET_INs of reason INVALID_TTL (a tenant's
        dec_nw_ttl of an expiring packet), for the tenants whose own asynchronous
        configuration asks for them; the endpoints filter per tenant connection."""
        pin = (1 << ofp.OFPR_NO_MATCH) | (1 << ofp.OFPR_ACTION) | (1 << ofp.OFPR_INVALID_TTL)
        status = (1 << ofp.OFPPR_ADD) | (1 << ofp.OFPPR_DELETE) | (1 << ofp.OFPPR_MODIFY)
        removed = sum(1 << r for r in (ofp.OFPRR_IDLE_TIMEOUT, ofp.OFPRR_HARD_TIMEOUT,
                                       ofp.OFPRR_DELETE, ofp.OFPRR_GROUP_DELETE))  # fmt: skip
        body = messages.ASYNC_CONFIG.pack(pin, 0, status, status, removed, 0)
        return codec.header(self.version, ofp.OFPT_SET_ASYNC, xid, body)

    def port_desc_request(self, xid: int) -> bytes:
        return messages.multipart_request(self.version, xid, ofp.OFPMP_PORT_DESC)

    def flow_mod(self, xid: int, pf: PhysFlow, command: int) -> bytes:
        if command == ofp.OFPFC_DELETE_STRICT:
            return pf.delete_strict(xid)
        return pf.flow_mod(xid, command)

    def rule(self, pf: PhysFlow, command: int) -> Callable[[int], bytes]:
        # the tenant FLOW_MOD path: PhysFlow's own encoders, no call in between
        if command == ofp.OFPFC_DELETE_STRICT:
            return pf.delete_strict
        if command == ofp.OFPFC_ADD:
            return pf.flow_mod
        return lambda xid: pf.flow_mod(xid, command)

    def delete_cookie(self, xid: int, cookie: int, mask: int) -> bytes:
        body = codec.FLOW_MOD_BODY.pack(
            cookie, mask, ofp.OFPTT_ALL, ofp.OFPFC_DELETE, 0, 0, 0,
            ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0,
        )  # fmt: skip
        return codec.header(self.version, ofp.OFPT_FLOW_MOD, xid, body + _NO_MATCH)

    def packet_out(self, xid: int, port: int, frame: bytes) -> bytes:
        return codec.packet_out(xid, ofp.OFPP_CONTROLLER, codec.output(port), frame)

    def packet_out13(self, msg: bytes) -> bytes:
        return msg

    def barrier_request(self, xid: int) -> bytes:
        return codec.header(self.version, ofp.OFPT_BARRIER_REQUEST, xid)

    def role_request(self, xid: int, role: int, generation: int) -> bytes:
        body = messages.ROLE.pack(role, generation & 0xFFFF_FFFF_FFFF_FFFF)
        return codec.header(self.version, ofp.OFPT_ROLE_REQUEST, xid, body)

    def stats_request(self, xid: int, mtype: int, body: bytes) -> bytes:
        return messages.multipart_request(self.version, xid, mtype, body)

    # --- switch -> controller -----------------------------------------------------------------
    def features(self, msg: bytes) -> Features:
        if len(msg) < 8 + messages.SWITCH_FEATURES.size:
            raise codec.MalformedMessage("FEATURES_REPLY too short")
        dpid, _, n_tables, *_ = messages.SWITCH_FEATURES.unpack_from(msg, 8)
        self.n_tables = n_tables
        return Features(dpid, n_tables, None)  # the ports come in a PORT_DESC reply

    def port_desc(self, body: bytes) -> list[PPort]:
        size = messages.PORT.size
        return [port(body, off) for off in range(0, len(body) - size + 1, size)]

    def port_status(self, msg: bytes) -> tuple[int, PPort]:
        if len(msg) < 8 + messages.PORT_STATUS.size + messages.PORT.size:
            raise codec.MalformedMessage("PORT_STATUS too short")
        (reason,) = messages.PORT_STATUS.unpack_from(msg, 8)
        return reason, port(msg, 8 + messages.PORT_STATUS.size)

    def packet_in(self, msg: bytes) -> codec.PacketIn:
        return codec.PacketIn.parse(msg)

    def flow_removed(self, msg: bytes) -> codec.FlowRemoved:
        return codec.FlowRemoved.parse(msg)

    def stats_reply(self, msg: bytes) -> StatsReply:
        if len(msg) < 8 + messages.MULTIPART_HEADER.size:
            raise codec.MalformedMessage("MULTIPART_REPLY too short")
        mtype, flags = messages.MULTIPART_HEADER.unpack_from(msg, 8)
        body = msg[8 + messages.MULTIPART_HEADER.size :]
        return StatsReply(mtype, bool(flags & ofp.OFPMPF_REPLY_MORE), body)
