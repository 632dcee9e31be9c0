"""The switch abstraction: one driver per kind of pswitch, behind one interface.

A `PSwitchSession` negotiates the OpenFlow version, picks the driver for it (`driver_for`)
and leaves to it everything that depends on the kind of switch: how a physical rule
(`PhysFlow`, kept in the OpenFlow 1.3 encoding the compile and translate stages produce)
becomes a FLOW_MOD, how a frame is sent out of a port, what a barrier or a flow-statistics
request looks like, how PACKET_IN, FLOW_REMOVED, PORT_STATUS, FEATURES_REPLY and statistics
replies read, and what the switch can do (tables, groups, meters, tag encodings, rewriting
in_port, a flow dump to reconcile against).  The rest of the hypervisor asks these
capabilities, never the OpenFlow version, and gets every switch's messages in one shape:
OpenFlow 1.3's (`codec.PacketIn`, `codec.FlowRemoved`, ofp_flow_stats entries).

Two drivers exist: OVS over OpenFlow 1.3 (`driver_ovs13.Ovs13Driver`) and OpenFlow 1.0
switches (`driver_of10.Of10Driver`); a white-box or P4 switch would be a third.  Drivers
are pure (bytes in, bytes out, no I/O) and have one per-switch fact, `n_tables`, known from
the FEATURES_REPLY.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from tenantvisor.openflow import codec
from tenantvisor.physical.topology import PPort
from tenantvisor.translate.flow import PhysFlow


class TagEncoding(enum.Enum):
    """Ways a switch can carry the fabric tag (docs/design.md, "Fabric tag")."""

    QINQ = "802.1ad"  # S-tag pushed, swapped (set vlan_vid) and popped
    VLAN = "802.1Q"  # the outer tag's VLAN id set or stripped (pushed as an 802.1Q C-tag)
    MPLS = "mpls"  # a label pushed, swapped and popped


class Kind(enum.Enum):
    """The switch-to-controller messages a session acts on, whatever their version's type
    numbers."""

    FEATURES_REPLY = enum.auto()
    PORT_STATUS = enum.auto()
    PACKET_IN = enum.auto()
    FLOW_REMOVED = enum.auto()
    STATS_REPLY = enum.auto()  # OpenFlow 1.3's MULTIPART_REPLY
    BARRIER_REPLY = enum.auto()
    ERROR = enum.auto()


@dataclass(frozen=True, slots=True)
class Features:
    """What a FEATURES_REPLY says about the switch."""

    dpid: int
    n_tables: int  # as the switch reports them
    ports: list[PPort] | None  # None: not listed here, ask with `port_desc_request`


@dataclass(frozen=True, slots=True)
class StatsReply:
    """One statistics reply part, in OpenFlow 1.3's shape."""

    mtype: int  # OFPMP_*
    more: bool  # OFPMPF_REPLY_MORE: more parts follow
    body: bytes  # the entries as OpenFlow 1.3 lays them out


class SwitchDriver(ABC):
    """Everything version- and vendor-specific about talking to one kind of pswitch."""

    name: ClassVar[str]
    version: ClassVar[int]  # the OpenFlow wire version
    kinds: ClassVar[Mapping[int, Kind]]  # message type -> what it is; others are ignored

    # --- capabilities ------------------------------------------------------------------------
    multi_table: ClassVar[bool]
    """More than one table, goto_table and metadata: classification in table 0 and the
    tenants' tables after it.  Without: one table, every tenant rule folded with what
    classifies it (translate/flow10.py), and table misses go to the controller."""
    supports_groups: ClassVar[bool]
    """Group tables (tenant groups, edge output and fast-failover groups)."""
    supports_meters: ClassVar[bool]
    meters_packet_ins: ClassVar[bool]
    """An output to the controller can pass a meter of its own, leaving the rule's other
    actions unmetered (Open vSwitch's `controller(meter_id=M)`): each vswitch's PACKET_INs
    are limited on the pswitch itself, before they cost the daemon anything."""
    can_rewrite_in_port: ClassVar[bool]
    """A rule may set the packet's in_port (OVS's reg_load on NXM_OF_IN_PORT): backup paths
    arriving through another port than the primary's."""
    can_reconcile: ClassVar[bool]
    """Flow statistics carry each rule's match, so a dump can be diffed against the desired
    state.  Without: re-assert every rule with ADD and delete nothing."""
    can_delete_by_cookie: ClassVar[bool]
    """One FLOW_MOD deletes every rule whose cookie matches under a mask."""
    packet_in_names_rule: ClassVar[bool]
    """PACKET_IN carries the rule's cookie and the packet's metadata.  Without: output to the
    controller is marked with a VLAN the hypervisor maps back (docs/design.md)."""
    tag_encodings: ClassVar[frozenset[TagEncoding]]
    """Fabric tag encodings the switch can push, swap and pop."""

    def __init__(self) -> None:
        self.n_tables = 0
        """Tables the hypervisor can use on this switch (0 until the FEATURES_REPLY)."""

    def describe(self) -> str:
        """The switch in a few words, for the log."""
        return f"{self.name}, {self.n_tables} tables"

    # --- controller -> switch -----------------------------------------------------------------
    @abstractmethod
    def features_request(self, xid: int) -> bytes: ...

    @abstractmethod
    def set_config(self, xid: int) -> bytes:
        """SET_CONFIG: no fragment handling, whole packets to the controller."""

    def async_config(self, xid: int) -> bytes | None:
        """SET_ASYNC for what the switch should send besides its defaults, or None: the
        version has no such message (or the defaults are all)."""
        return None

    @abstractmethod
    def port_desc_request(self, xid: int) -> bytes | None:
        """The request for the port list, or None if the FEATURES_REPLY lists them."""

    @abstractmethod
    def flow_mod(self, xid: int, pf: PhysFlow, command: int) -> bytes:
        """FLOW_MOD `command` (OFPFC_ADD, MODIFY_STRICT, DELETE_STRICT, ...) for `pf`."""

    def rule(self, pf: PhysFlow, command: int) -> Callable[[int], bytes]:
        """A builder (xid -> bytes) of the FLOW_MOD `command` for `pf`."""
        return lambda xid: self.flow_mod(xid, pf, command)

    @abstractmethod
    def delete_cookie(self, xid: int, cookie: int, mask: int) -> bytes | None:
        """A FLOW_MOD deleting every rule (every table) whose cookie is `cookie` under
        `mask`; None if the switch cannot (`can_delete_by_cookie`)."""

    @abstractmethod
    def packet_out(self, xid: int, port: int, frame: bytes) -> bytes:
        """PACKET_OUT sending `frame` out of physical `port` as the controller."""

    @abstractmethod
    def packet_out13(self, msg: bytes) -> bytes:
        """A PACKET_OUT translation built in OpenFlow 1.3, as this switch takes it (same
        xid)."""

    @abstractmethod
    def barrier_request(self, xid: int) -> bytes: ...

    def role_request(self, xid: int, role: int, generation: int) -> bytes | None:
        """An OpenFlow role request (1.3's OFPCR_ROLE_*), or None where roles are not
        spoken: several instances then share the switch as equals."""
        return None

    @abstractmethod
    def stats_request(self, xid: int, mtype: int, body: bytes) -> bytes | None:
        """The statistics request of OpenFlow 1.3 type `mtype` with 1.3 request `body`, or
        None if the switch has no such statistics.  Replies come back (`stats_reply`) in
        1.3's shape."""

    # --- switch -> controller -----------------------------------------------------------------
    def kind(self, msg_type: int) -> Kind | None:
        return self.kinds.get(msg_type)

    @abstractmethod
    def features(self, msg: bytes) -> Features:
        """Read a FEATURES_REPLY (and learn `n_tables`).  Raises MalformedMessage."""

    @abstractmethod
    def port_desc(self, body: bytes) -> list[PPort]:
        """The ports of one port-description reply body."""

    @abstractmethod
    def port_status(self, msg: bytes) -> tuple[int, PPort]:
        """(reason, port) of a PORT_STATUS.  Raises MalformedMessage."""

    @abstractmethod
    def packet_in(self, msg: bytes) -> codec.PacketIn:
        """A PACKET_IN in OpenFlow 1.3's shape.  Raises MalformedMessage or OFError."""

    @abstractmethod
    def flow_removed(self, msg: bytes) -> codec.FlowRemoved:
        """A FLOW_REMOVED in OpenFlow 1.3's shape.  Raises MalformedMessage or OFError."""

    @abstractmethod
    def stats_reply(self, msg: bytes) -> StatsReply:
        """One statistics reply part.  Raises MalformedMessage."""

    def error(self, msg: bytes) -> tuple[int, int, bytes]:
        """(type, code, data) of an ERROR (one layout in every version; the numbers are the
        switch's version's)."""
        if len(msg) < 8 + codec.ERROR_MSG.size:
            raise codec.MalformedMessage("ERROR too short")
        etype, code = codec.ERROR_MSG.unpack_from(msg, 8)
        return etype, code, msg[8 + codec.ERROR_MSG.size :]


def mac_text(hw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in hw)
