"""The OpenFlow 1.0 driver: one table, no metadata, groups or meters; the fabric tag is the
outer VLAN tag's id (mod_vlan_vid, strip_vlan).  Rules come in the OpenFlow 1.3 encoding and
are re-encoded here (`openflow/of10.py`); what the switch says is given 1.3's shape.
docs/design.md ("OpenFlow 1.0 pswitches") says what a vswitch can do there."""

from __future__ import annotations

from typing import ClassVar

from os_ken.ofproto import ofproto_v1_0 as o10
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, messages, of10
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

_NO_MORE = 0xFFFF  # miss_send_len: whole packets


def port(no: int, hw: bytes, name: bytes, config: int, state: int) -> PPort:
    """A 1.0 ofp_phy_port's fields as a port (numbered as in OpenFlow 1.3)."""
    up = not (state & o10.OFPPS_LINK_DOWN) and not (config & o10.OFPPC_PORT_DOWN)
    text = name.decode(errors="replace").rstrip("\0")
    return PPort(of10.port_to13(no), text, mac_text(hw), up)


class Of10Driver(SwitchDriver):
    name = "of10"
    version = of10.V10
    kinds: ClassVar[dict[int, Kind]] = {
        o10.OFPT_FEATURES_REPLY: Kind.FEATURES_REPLY,
        o10.OFPT_PORT_STATUS: Kind.PORT_STATUS,
        o10.OFPT_PACKET_IN: Kind.PACKET_IN,
        o10.OFPT_FLOW_REMOVED: Kind.FLOW_REMOVED,
        o10.OFPT_STATS_REPLY: Kind.STATS_REPLY,
        o10.OFPT_BARRIER_REPLY: Kind.BARRIER_REPLY,
        o10.OFPT_ERROR: Kind.ERROR,
    }
    multi_table = False
    supports_groups = False
    supports_meters = False
    meters_packet_ins = False
    can_rewrite_in_port = False
    can_reconcile = False  # 1.0 flow statistics carry no match comparable with ours
    can_delete_by_cookie = False  # no cookie masks: rules are deleted one by one
    packet_in_names_rule = False  # no cookie, no metadata: marker VLANs
    tag_encodings = frozenset({TagEncoding.VLAN})

    def __init__(self) -> None:
        super().__init__()
        self.n_tables = 1  # a 1.0 FLOW_MOD names no table

    def describe(self) -> str:
        return "OpenFlow 1.0 (one table)"

    # --- controller -> switch -----------------------------------------------------------------
    def features_request(self, xid: int) -> bytes:
        return codec.header(self.version, o10.OFPT_FEATURES_REQUEST, xid)

    def set_config(self, xid: int) -> bytes:
        body = messages.SWITCH_CONFIG.pack(o10.OFPC_FRAG_NORMAL, _NO_MORE)  # same layout
        return codec.header(self.version, o10.OFPT_SET_CONFIG, xid, body)

    def port_desc_request(self, xid: int) -> None:
        return None  # the FEATURES_REPLY lists the ports

    def flow_mod(self, xid: int, pf: PhysFlow, command: int) -> bytes:
        # 1.0's FLOW_MOD commands have 1.3's numbers; deletes carry no actions
        return of10.flow_mod10(xid, command, pf.priority, pf.match, pf.instructions, pf.cookie)

    def delete_cookie(self, xid: int, cookie: int, mask: int) -> None:
        return None

    def packet_out(self, xid: int, port: int, frame: bytes) -> bytes:
        return of10.packet_out10(xid, port, frame)

    def packet_out13(self, msg: bytes) -> bytes:
        return of10.packet_out13_to10(msg)

    def barrier_request(self, xid: int) -> bytes:
        return codec.header(self.version, o10.OFPT_BARRIER_REQUEST, xid)

    def stats_request(self, xid: int, mtype: int, body: bytes) -> bytes | None:
        if mtype != ofp.OFPMP_FLOW:
            return None  # flow statistics only
        # every rule of the one table, whatever `body` selects: the replies are given 1.3's
        # shape, and the caller filters them
        return codec.header(self.version, o10.OFPT_STATS_REQUEST, xid, of10.flow_stats_request10())

    # --- switch -> controller -----------------------------------------------------------------
    def features(self, msg: bytes) -> Features:
        dpid, n_tables, ports = of10.features10(msg)
        listed = [p for p in (port(*x) for x in ports) if p.port_no < o10.OFPP_MAX]
        return Features(dpid, n_tables, listed)

    def port_desc(self, body: bytes) -> list[PPort]:
        size = of10.PHY_PORT.size
        out = []
        for off in range(0, len(body) - size + 1, size):
            no, hw, name, config, state, *_ = of10.PHY_PORT.unpack_from(body, off)
            out.append(port(no, hw, name, config, state))
        return out

    def port_status(self, msg: bytes) -> tuple[int, PPort]:
        reason, fields = of10.port_status10(msg)
        return reason, port(*fields)

    def packet_in(self, msg: bytes) -> codec.PacketIn:
        return of10.packet_in10_to13(msg)

    def flow_removed(self, msg: bytes) -> codec.FlowRemoved:
        return of10.flow_removed10_to13(msg)

    def stats_reply(self, msg: bytes) -> StatsReply:
        if len(msg) < 8 + of10.STATS_HEADER10.size:
            raise codec.MalformedMessage("OpenFlow 1.0 STATS_REPLY too short")
        stype, flags = of10.STATS_HEADER10.unpack_from(msg, 8)
        body = msg[8 + of10.STATS_HEADER10.size :]
        if stype == o10.OFPST_FLOW:
            body = of10.flow_stats_to13(body)
        # OFPST_* and OFPMP_* share their numbers up to OFPST_QUEUE, and the REPLY_MORE bit
        return StatsReply(stype, bool(flags & o10.OFPSF_REPLY_MORE), body)
