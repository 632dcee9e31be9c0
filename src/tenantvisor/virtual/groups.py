"""A vswitch's groups and meters: the tenant's own ids on physical ids the hypervisor
allocates per pswitch, translated and kept so a reconnecting pswitch gets them back.

`VSwitchGroups` is a part of `VSwitchEndpoint` (virtual/endpoint.py), held as its
`groups_meters`.  Tenant groups and meters live on the vswitch's first pswitch only (the
others of a big switch never see them).  The decisions (`decide_group_mod`,
`decide_meter_mod`) send nothing: they change the part's state (and the tenant's table, for
rules the pswitch drops with a group or meter) and return the steps for the pswitch, each
GROUP_MOD/METER_MOD with what to take back should the pswitch refuse it.  `group_mod` and
`meter_mod` decide, then send the steps through the endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping.alloc import tenant_owner
from tenantvisor.openflow import codec
from tenantvisor.openflow.codec import MalformedMessage, OFError
from tenantvisor.translate.group import (
    GroupMod,
    GroupSpec,
    delete_group,
    parse_buckets,
    translate_group,
)
from tenantvisor.translate.meter import MeterMod, meter_mod

if TYPE_CHECKING:
    from tenantvisor.physical.session import ErrorCallback, PSwitchSession
    from tenantvisor.translate.flow import PhysFlow
    from tenantvisor.translate.view import VSwitchView
    from tenantvisor.virtual.endpoint import ControllerConn, Relay
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


@dataclass(frozen=True, slots=True)
class Send:
    """A GROUP_MOD or METER_MOD for the vswitch's first pswitch (xid 0: set when sent)."""

    msg: bytes
    # the part's state change to take back when the pswitch refuses the message
    undo: Callable[[], None] | None = None
    # the pswitch's refusal reaches the tenant as the error to its own message
    report: bool = False


@dataclass(frozen=True, slots=True)
class Forget:
    """A tenant rule the pswitch removes itself with a group or meter being deleted: it has
    left the tenant's table; its physical rules are gone (another owner's may come back)."""

    vflow: VFlow


Step = Send | Forget
_E = TypeVar("_E")


@dataclass(slots=True, eq=False)
class _Modify(Generic[_E]):
    """A MODIFY sent to the pswitch that it has not refused (as far as we know yet): the
    entry it put in place, the one to put back should the pswitch refuse it, and the next
    MODIFY of the same id, sent after it."""

    put: _E
    before: _E
    after: _Modify[_E] | None = None


def _modify(
    entries: dict[int, _E], latest: dict[int, _Modify[_E]], ident: int, new: _E
) -> Callable[[], None]:
    """Put `new` in place of entry `ident` at once (the tenant's next messages and
    statistics see it, as on a switch that took it) and return the undo for the pswitch's
    refusal.  That puts back the entry it replaced; when a later MODIFY has replaced it
    since, it changes what that one puts back instead (the pswitch answers in order, so
    its refusal, if any, comes after this one's).  `latest` keeps each id's last MODIFY
    to chain the next one to; older ones live only as long as their undo is held."""
    old = entries[ident]
    mod = _Modify(new, old)
    prev = latest.get(ident)
    if prev is not None and prev.put is old:
        prev.after = mod
    latest[ident] = mod
    entries[ident] = new

    def undo() -> None:
        if entries.get(ident) is mod.put:
            entries[ident] = mod.before
        elif mod.after is not None:
            mod.after.before = mod.before
        if latest.get(ident) is mod:
            del latest[ident]

    return undo


class PhysIds(Protocol):
    """The hypervisor's physical id spaces, per pswitch ("group", "meter")."""

    def alloc_id(self, kind: str, dpid: int, owner: Hashable) -> int | None: ...

    def free_id(self, kind: str, dpid: int, value: int) -> None: ...


class GroupsContext(Protocol):
    """What the decisions read of their vswitch."""

    @property
    def view(self) -> VSwitchView: ...  # the first pswitch's: where groups and meters live

    @property
    def table(self) -> VirtualFlowTable: ...

    @property
    def host(self) -> PhysIds: ...

    def quota_full(self, kind: str) -> str | None:
        """Why the tenant may not hold one more "groups" / "meters" (its quota), or None."""


class GroupsHost(PhysIds, Protocol):
    def session(self, dpid: int) -> PSwitchSession | None: ...


class GroupsEndpoint(GroupsContext, Protocol):
    """What the part uses of its endpoint: the decisions' context, and to send the steps
    the endpoint's own sending (which the tenant's BARRIER then waits for) and release of
    physical rules (which may give a key back to another of its rules)."""

    @property
    def host(self) -> GroupsHost: ...

    groups_dirty: bool  # groups or meters changed since the store took them

    def _send_phys(
        self,
        conn: ControllerConn | None,
        session: PSwitchSession | None,
        build: Callable[[int], bytes],
        on_error: ErrorCallback | None,
    ) -> None: ...

    def _error_relay(
        self, conn: ControllerConn, xid: int, msg: bytes, rollback: VFlow | None
    ) -> Relay: ...

    def _release(
        self,
        session: PSwitchSession | None,
        conn: ControllerConn | None,
        serial: int,
        pf: PhysFlow,
        relay: Relay | None,
        gone: bool = False,
    ) -> bool: ...


def _named_groups(buckets: bytes) -> set[int]:
    """The group ids the group actions of these buckets name (none if they are unreadable:
    the translation says why)."""
    try:
        return {
            codec.u32(a.raw, 4)
            for *_, raw in parse_buckets(buckets)
            for a in codec.parse_actions(raw)
            if a.type == ofp.OFPAT_GROUP
        }
    except (OFError, MalformedMessage):
        return set()


def _uses_group(vf: VFlow, gid: int) -> bool:
    return vf.uses_group(gid)


def _uses_meter(vf: VFlow, mid: int) -> bool:
    return codec.parse_instructions(vf.instructions).meter == mid


def _builder(msg: bytes) -> Callable[[int], bytes]:
    return lambda xid: codec.set_xid(msg, xid)


def _undo_then(undo: Callable[[], None], relay: ErrorCallback, ep: GroupsEndpoint) -> ErrorCallback:
    """The pswitch refused a step: its state change is taken back (and the store, which
    may have taken the change already, takes the state again), then the tenant is told."""

    def refused(etype: int, code: int, data: bytes) -> None:
        undo()
        ep.groups_dirty = True
        relay(etype, code, data)

    return refused


class VSwitchGroups:
    """GROUP_MOD and METER_MOD of one vswitch, and the groups and meters they made.  The
    decisions, `clear` and `desired_*` use only the `GroupsContext` of `ep`."""

    def __init__(self, ep: GroupsEndpoint) -> None:
        self._ep = ep
        self.groups: dict[int, VGroup] = {}  # the tenant's group id -> its group
        self._group_modifies: dict[int, _Modify[VGroup]] = {}  # the last MODIFY of each
        self.meters: dict[int, VMeter] = {}  # the tenant's meter id -> its meter
        self._meter_modifies: dict[int, _Modify[VMeter]] = {}  # the last MODIFY of each
        # group ids a bucket names before the tenant adds them (OVS takes such a bucket):
        # the physical id each will have, reserved (the allocator gives its owner the same)
        self.forward: dict[int, int] = {}

    @property
    def group_map(self) -> dict[int, int]:
        """The tenant's group ids -> their physical ids on the first pswitch."""
        return {gid: g.phys_id for gid, g in self.groups.items()}

    @property
    def meter_map(self) -> dict[int, int]:
        return {mid: m.phys_id for mid, m in self.meters.items()}

    def _bucket_map(self, buckets: list[bytes]) -> dict[int, int]:
        """The group ids buckets may name: the tenant's groups, and those the `buckets`
        name that do not exist yet, each given the physical id it will have (a chained
        group may be added after the group that chains to it, as Open vSwitch allows).
        Raises OFPGMFC_OUT_OF_GROUPS when no id is left for one."""
        view, ids = self._ep.view, self._ep.host
        for gid in sorted(set().union(*map(_named_groups, buckets)) - set(self.groups)):
            if gid in self.forward or gid > ofp.OFPG_MAX:
                continue
            phys = ids.alloc_id("group", view.dpid,
                                tenant_owner(view.net_id, view.vdpid, "group", gid))  # fmt: skip
            if phys is None:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS, "none left")
            self.forward[gid] = phys
        return {**self.forward, **self.group_map}

    def _forget_forward(self) -> None:
        """Give back the reserved ids of forward references no bucket names any more."""
        named = set().union(*(_named_groups(g.buckets) for g in self.groups.values()))
        for gid in [g for g in self.forward if g not in named or g in self.groups]:
            phys = self.forward.pop(gid)
            if gid not in self.groups:
                self._ep.host.free_id("group", self._ep.view.dpid, phys)

    # --- decisions: state changes and the steps for the pswitch, nothing sent --------------
    def decide_group_mod(self, msg: bytes) -> list[Step]:
        """A tenant's GROUP_MOD.  Raises OFError (the spec's error for the tenant) or
        MalformedMessage, with nothing changed."""
        ep = self._ep
        view = ep.view
        if view.of10:
            raise OFError(
                ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_EPERM, "groups on an OpenFlow 1.0 pswitch"
            )
        gm = GroupMod.parse(msg)
        dpid, gid = view.dpid, gm.group_id
        ids = ep.host
        if gm.command == ofp.OFPGC_ADD:
            if gid > ofp.OFPG_MAX:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_INVALID_GROUP, f"{gid:#x}")
            if gid in self.groups:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_GROUP_EXISTS, str(gid))
            if (why := ep.quota_full("groups")) is not None:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS, why)
            phys = ids.alloc_id("group", dpid, tenant_owner(view.net_id, view.vdpid, "group", gid))
            if phys is None:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS, "none left")
            try:
                out = translate_group(view, self._bucket_map([gm.buckets]), gm, phys)
            except (OFError, MalformedMessage):
                if gid not in self.forward:  # a bucket names it: its id stays reserved
                    ids.free_id("group", dpid, phys)
                raise
            group = VGroup(gm.type, gm.buckets, phys, time.monotonic())
            self.groups[gid] = group
            self._forget_forward()

            def undo() -> None:
                if self.groups.get(gid) is group:  # the pswitch refused it: it never existed
                    del self.groups[gid]
                    ids.free_id("group", dpid, phys)

            return [Send(out, undo, report=True)]
        if gm.command == ofp.OFPGC_MODIFY:
            old = self.groups.get(gid)
            if old is None:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_UNKNOWN_GROUP, str(gid))
            out = translate_group(view, self._bucket_map([gm.buckets]), gm, old.phys_id)
            # a new entry, not the old one changed: a refusal puts the old one back
            new = VGroup(gm.type, gm.buckets, old.phys_id, old.created)
            undo = _modify(self.groups, self._group_modifies, gid, new)
            self._forget_forward()
            return [Send(out, undo, report=True)]
        if gm.command == ofp.OFPGC_DELETE:
            gone = list(self.groups) if gid == ofp.OFPG_ALL else [gid] if gid in self.groups else []
            steps: list[Step] = []
            for g in gone:
                # the pswitch deletes the group and the rules forwarding to it; rules it will
                # report (SEND_FLOW_REM) leave the tenant's table with that report
                group = self.groups.pop(g)
                self._group_modifies.pop(g, None)
                steps.append(Send(delete_group(group.phys_id)))
                named = set().union(*(_named_groups(o.buckets) for o in self.groups.values()))
                if g in named:  # a bucket still chains to it: its id stays its (isolation:
                    self.forward[g] = group.phys_id  # never another's group)
                else:
                    ids.free_id("group", dpid, group.phys_id)
                steps += self._forget(_uses_group, g)
            self._forget_forward()
            return steps
        raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_BAD_COMMAND, str(gm.command))

    def decide_meter_mod(self, msg: bytes) -> list[Step]:
        """A tenant's METER_MOD, as `decide_group_mod`."""
        ep = self._ep
        if ep.view.of10:
            raise OFError(
                ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_UNKNOWN, "meters on an OpenFlow 1.0 pswitch"
            )
        mm = MeterMod.parse(msg)
        dpid, mid = ep.view.dpid, mm.meter_id
        ids = ep.host
        if mm.command == ofp.OFPMC_ADD:
            mm.check_id()
            if mid in self.meters:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_METER_EXISTS, str(mid))
            if (why := ep.quota_full("meters")) is not None:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS, why)
            phys = ids.alloc_id(
                "meter", dpid, tenant_owner(ep.view.net_id, ep.view.vdpid, "meter", mid)
            )
            if phys is None:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS, "none left")
            meter = VMeter(mm.flags, mm.bands, phys)
            self.meters[mid] = meter

            def undo() -> None:
                if self.meters.get(mid) is meter:  # refused by the pswitch: never existed
                    del self.meters[mid]
                    ids.free_id("meter", dpid, phys)

            return [Send(meter_mod(ofp.OFPMC_ADD, mm.flags, phys, mm.bands), undo, report=True)]
        if mm.command == ofp.OFPMC_MODIFY:
            mm.check_id()
            old = self.meters.get(mid)
            if old is None:
                raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_UNKNOWN_METER, str(mid))
            out = meter_mod(ofp.OFPMC_MODIFY, mm.flags, old.phys_id, mm.bands)
            # a new entry, not the old one changed: a refusal puts the old one back
            new = VMeter(mm.flags, mm.bands, old.phys_id)
            undo = _modify(self.meters, self._meter_modifies, mid, new)
            return [Send(out, undo, report=True)]
        if mm.command == ofp.OFPMC_DELETE:
            gone = list(self.meters) if mid == ofp.OFPM_ALL else [mid] if mid in self.meters else []
            steps: list[Step] = []
            for m in gone:
                meter = self.meters.pop(m)
                self._meter_modifies.pop(m, None)
                steps.append(Send(meter_mod(ofp.OFPMC_DELETE, 0, meter.phys_id, b"")))
                ids.free_id("meter", dpid, meter.phys_id)
                # the pswitch removes the rules using it; the tenant's table follows
                steps += self._forget(_uses_meter, m)
            return steps
        raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_COMMAND, str(mm.command))

    def _forget(self, uses: Callable[[VFlow, int], bool], ident: int) -> list[Step]:
        """The tenant's rules using a deleted group or meter that the pswitch removes without
        a FLOW_REMOVED to follow: out of the table now."""
        table = self._ep.table
        out: list[Step] = []
        for vf in table:
            if uses(vf, ident) and not any(pf.flags & ofp.OFPFF_SEND_FLOW_REM for pf in vf.phys):
                table.remove(vf)
                out.append(Forget(vf))
        return out

    def clear(self) -> list[bytes]:
        """The vswitch goes away: every group and meter forgotten, their ids freed; returns
        the GROUP_MOD and METER_MOD deletes (xid 0) for the first pswitch."""
        ids, dpid = self._ep.host, self._ep.view.dpid
        out = []
        for g in self.groups.values():
            out.append(delete_group(g.phys_id))
            ids.free_id("group", dpid, g.phys_id)
        self.groups.clear()
        self._group_modifies.clear()
        for phys in self.forward.values():
            ids.free_id("group", dpid, phys)
        self.forward.clear()
        for mt in self.meters.values():
            out.append(meter_mod(ofp.OFPMC_DELETE, 0, mt.phys_id, b""))
            ids.free_id("meter", dpid, mt.phys_id)
        self.meters.clear()
        self._meter_modifies.clear()
        return out

    # --- what the first pswitch should hold (reconciliation) --------------------------------
    def desired_groups(self, dpid: int) -> list[GroupSpec]:
        """The tenant's groups as pswitch `dpid` should hold them."""
        view = self._ep.view
        if dpid != view.dpid:
            return []
        out = []
        try:
            gmap = self._bucket_map([g.buckets for g in self.groups.values()])
        except OFError:
            gmap = {**self.forward, **self.group_map}
        for gid, g in self.groups.items():
            gm = GroupMod(ofp.OFPGC_ADD, g.type, gid, g.buckets)
            try:
                msg = translate_group(view, gmap, gm, g.phys_id)
            except OFError:
                continue  # no longer translatable; the tenant's rules using it went too
            out.append(GroupSpec(dpid, g.phys_id, msg[10], msg[16:]))
        return out

    def desired_meters(self, dpid: int) -> dict[int, tuple[int, bytes]]:
        if dpid != self._ep.view.dpid:
            return {}
        return {m.phys_id: (m.flags, m.bands) for m in self.meters.values()}

    # --- sending: decisions to the first pswitch, through the endpoint --------------------
    def group_mod(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        self.send(conn, xid, msg, self.decide_group_mod(msg))

    def meter_mod(self, conn: ControllerConn, xid: int, msg: bytes) -> None:
        self.send(conn, xid, msg, self.decide_meter_mod(msg))

    def send(self, conn: ControllerConn, xid: int, msg: bytes, steps: list[Step]) -> None:
        """The steps decided for the tenant message `msg`, in order."""
        ep = self._ep
        session = ep.host.session(ep.view.dpid)
        relay: ErrorCallback | None = None
        for step in steps:
            if isinstance(step, Forget):
                vf = step.vflow
                for pf in vf.phys:
                    ep._release(session, conn, vf.serial, pf, None, gone=True)
                continue
            on_error: ErrorCallback | None = None
            if step.report:
                relay = relay or ep._error_relay(conn, xid, msg, None)
                on_error = relay if step.undo is None else _undo_then(step.undo, relay, ep)
            ep._send_phys(conn, session, _builder(step.msg), on_error)
