"""A vswitch's groups and meters: the tenant's own ids on physical ids the hypervisor
allocates per pswitch, translated and kept so a reconnecting pswitch gets them back.

A mixin of `VSwitchEndpoint` (virtual/endpoint.py); every method works on one endpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec
from tenantvisor.openflow.codec import MalformedMessage, OFError
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.translate.group import GroupMod, delete_group, translate_group
from tenantvisor.translate.meter import MeterMod, meter_mod

if TYPE_CHECKING:
    from collections.abc import Callable

    from tenantvisor.physical.session import ErrorCallback
    from tenantvisor.translate.flow import PhysFlow
    from tenantvisor.translate.view import VSwitchView
    from tenantvisor.virtual.endpoint import ControllerConn, EndpointHost
    from tenantvisor.virtual.flowtable import VFlow, VirtualFlowTable


@dataclass(slots=True)
class VGroup:
    """A tenant's group as it sent it, and the physical group standing for it."""

    type: int
    buckets: bytes
    phys_id: int
    created: float


@dataclass(slots=True)
class VMeter:
    """A tenant's meter as it sent it, and the physical meter standing for it."""

    flags: int
    bands: bytes
    phys_id: int


class GroupsMetersMixin:
    """GROUP_MOD and METER_MOD of a vswitch."""

    # provided by VSwitchEndpoint
    view: VSwitchView
    host: EndpointHost
    table: VirtualFlowTable
    groups: dict[int, VGroup]
    meters: dict[int, VMeter]
    if TYPE_CHECKING:

        def _send_phys(
            self,
            conn: ControllerConn | None,
            session: PSwitchSession | None,
            build: Callable[[int], bytes],
            on_error: ErrorCallback | None,
        ) -> None: ...

        def _error_relay(
            self, conn: ControllerConn, xid: int, msg: bytes, rollback: VFlow | None
        ) -> ErrorCallback: ...

        def _release(
            self,
            session: PSwitchSession | None,
            conn: ControllerConn | None,
            serial: int,
            pf: PhysFlow,
            relay: ErrorCallback | None,
            gone: bool = False,
        ) -> bool: ...

    @property
    def group_map(self) -> dict[int, int]:
        return {gid: g.phys_id for gid, g in self.groups.items()}

    @property
    def meter_map(self) -> dict[int, int]:
        return {mid: m.phys_id for mid, m in self.meters.items()}

    def _group_mod(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        if self.view.of10:
            raise OFError(
                ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_EPERM, "groups on an OpenFlow 1.0 pswitch"
            )
        gm = GroupMod.parse(msg)
        view, dpid, gid = self.view, self.view.dpid, gm.group_id
        session = self.host.session(dpid)
        if gm.command == ofp.OFPGC_ADD:
            if gid > ofp.OFPG_MAX:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_INVALID_GROUP, f"{gid:#x}")
            if gid in self.groups:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_GROUP_EXISTS, str(gid))
            phys = self.host.alloc_id("group", dpid)
            if phys is None:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS, "none left")
            try:
                out = translate_group(view, self.group_map, gm, phys)
            except (OFError, MalformedMessage):
                self.host.free_id("group", dpid, phys)
                raise
            group = VGroup(gm.type, gm.buckets, phys, time.monotonic())
            self.groups[gid] = group

            def undo(etype: int, code: int, data: bytes) -> None:
                if self.groups.get(gid) is group:  # the pswitch refused it: it never existed
                    del self.groups[gid]
                    self.host.free_id("group", dpid, phys)
                conn.channel.send_error(xid, etype, code, msg)

            self._send_phys(conn, session, lambda x: codec.set_xid(out, x), undo)
        elif gm.command == ofp.OFPGC_MODIFY:
            old = self.groups.get(gid)
            if old is None:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_UNKNOWN_GROUP, str(gid))
            out = translate_group(view, self.group_map, gm, old.phys_id)
            old.type, old.buckets = gm.type, gm.buckets
            relay = self._error_relay(conn, xid, msg, None)
            self._send_phys(conn, session, lambda x: codec.set_xid(out, x), relay)
        elif gm.command == ofp.OFPGC_DELETE:
            gone = list(self.groups) if gid == ofp.OFPG_ALL else [gid] if gid in self.groups else []
            for g in gone:
                self._delete_group(conn, session, g)
        else:
            raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_BAD_COMMAND, str(gm.command))

    def _delete_group(self, conn: ControllerConn, session: PSwitchSession | None, gid: int) -> None:
        """The pswitch deletes the group and the rules forwarding to it; rules it will report
        (SEND_FLOW_REM) leave the tenant's table with that report, the others go now."""
        group = self.groups.pop(gid)
        out = delete_group(group.phys_id)
        self._send_phys(conn, session, lambda x: codec.set_xid(out, x), None)
        self.host.free_id("group", self.view.dpid, group.phys_id)
        for vf in self.table:
            if vf.uses_group(gid) and not any(pf.flags & ofp.OFPFF_SEND_FLOW_REM for pf in vf.phys):
                self.table.remove(vf)
                for pf in vf.phys:
                    self._release(session, conn, vf.serial, pf, None, gone=True)

    def _meter_mod(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        if self.view.of10:
            raise OFError(
                ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_UNKNOWN, "meters on an OpenFlow 1.0 pswitch"
            )
        mm = MeterMod.parse(msg)
        dpid, mid = self.view.dpid, mm.meter_id
        session = self.host.session(dpid)
        if mm.command == ofp.OFPMC_ADD:
            mm.check_id()
            if mid in self.meters:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_METER_EXISTS, str(mid))
            phys = self.host.alloc_id("meter", dpid)
            if phys is None:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS, "none left")
            meter = VMeter(mm.flags, mm.bands, phys)
            self.meters[mid] = meter
            out = meter_mod(ofp.OFPMC_ADD, mm.flags, phys, mm.bands)

            def undo(etype: int, code: int, data: bytes) -> None:
                if self.meters.get(mid) is meter:  # refused by the pswitch: never existed
                    del self.meters[mid]
                    self.host.free_id("meter", dpid, phys)
                conn.channel.send_error(xid, etype, code, msg)

            self._send_phys(conn, session, lambda x: codec.set_xid(out, x), undo)
        elif mm.command == ofp.OFPMC_MODIFY:
            mm.check_id()
            old = self.meters.get(mid)
            if old is None:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_UNKNOWN_METER, str(mid))
            out = meter_mod(ofp.OFPMC_MODIFY, mm.flags, old.phys_id, mm.bands)
            old.flags, old.bands = mm.flags, mm.bands
            relay = self._error_relay(conn, xid, msg, None)
            self._send_phys(conn, session, lambda x: codec.set_xid(out, x), relay)
        elif mm.command == ofp.OFPMC_DELETE:
            gone = list(self.meters) if mid == ofp.OFPM_ALL else [mid] if mid in self.meters else []
            for m in gone:
                meter = self.meters.pop(m)
                out = meter_mod(ofp.OFPMC_DELETE, 0, meter.phys_id, b"")
                self._send_phys(conn, session, lambda x, o=out: codec.set_xid(o, x), None)  # type: ignore[misc]
                self.host.free_id("meter", dpid, meter.phys_id)
                # the pswitch removes the rules using it; the tenant's table follows
                for vf in self.table:
                    if codec.parse_instructions(vf.instructions).meter == m and not any(
                        pf.flags & ofp.OFPFF_SEND_FLOW_REM for pf in vf.phys
                    ):
                        self.table.remove(vf)
                        for pf in vf.phys:
                            self._release(session, conn, vf.serial, pf, None, gone=True)
        else:
            raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_COMMAND, str(mm.command))
