"""What the store gives back and takes for tenant state: a vswitch's rules, groups and meters
as the tenant sent them (plain, frozen records), the whole `Snapshot` read at start, and the
`ChangeSet` another writer's transaction produced."""

from __future__ import annotations

import time
from collections.abc import Hashable
from dataclasses import dataclass, field

from tenantvisor.dedicated.model import Intent
from tenantvisor.openflow import codec as ofcodec
from tenantvisor.virtual.flowtable import VFlow, normalize
from tenantvisor.virtual.groups import VGroup, VMeter
from tenantvisor.virtual.model import Tenant, VirtualNetwork

VSwitchKey = tuple[int, int]
"""(network id, vdpid): whose rules, groups and meters."""
FlowKey = tuple[int, int, int]
"""(network id, vdpid, serial): one rule, for a delete."""
GroupKey = tuple[int, int, int]
"""(network id, vdpid, the tenant's group id)."""
MeterKey = tuple[int, int, int]
"""(network id, vdpid, the tenant's meter id)."""
Allocation = tuple[tuple[Hashable, ...], Hashable, int]
"""(space, owner, id), as `IdAllocator.snapshot` gives and `restore` takes."""


@dataclass(frozen=True, slots=True)
class FlowRecord:
    """One rule of a vswitch's table as the tenant installed it.  `match` is the OXM TLVs
    (no ofp_match header or padding), `instructions` as the tenant sent them."""

    net_id: int
    vdpid: int
    serial: int
    table: int
    priority: int
    match: bytes
    instructions: bytes
    cookie: int
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0

    @property
    def key(self) -> FlowKey:
        return self.net_id, self.vdpid, self.serial

    @classmethod
    def of(cls, net_id: int, vdpid: int, vf: VFlow) -> FlowRecord:
        return cls(
            net_id,
            vdpid,
            vf.serial,
            vf.table,
            vf.priority,
            b"".join(o.encode() for o in vf.match),
            bytes(vf.instructions),
            vf.cookie,
            vf.idle_timeout,
            vf.hard_timeout,
            vf.flags,
        )

    def to_vflow(self) -> VFlow:
        """The rule for `VirtualFlowTable.restore`: no physical rules yet (they are derived
        again), its age counted from now."""
        match = ofcodec.parse_oxms(self.match)
        return VFlow(
            self.serial,
            self.table,
            self.priority,
            match,
            normalize(match),
            self.instructions,
            self.cookie,
            self.idle_timeout,
            self.hard_timeout,
            self.flags,
        )


@dataclass(frozen=True, slots=True)
class GroupRecord:
    """A tenant's group: its own id, as sent, and the physical id standing for it."""

    net_id: int
    vdpid: int
    group_id: int
    type: int
    buckets: bytes
    phys_id: int

    @property
    def key(self) -> GroupKey:
        return self.net_id, self.vdpid, self.group_id

    @classmethod
    def of(cls, net_id: int, vdpid: int, group_id: int, g: VGroup) -> GroupRecord:
        return cls(net_id, vdpid, group_id, g.type, bytes(g.buckets), g.phys_id)

    def to_vgroup(self) -> VGroup:
        return VGroup(self.type, self.buckets, self.phys_id, time.monotonic())


@dataclass(frozen=True, slots=True)
class MeterRecord:
    net_id: int
    vdpid: int
    meter_id: int
    flags: int
    bands: bytes
    phys_id: int

    @property
    def key(self) -> MeterKey:
        return self.net_id, self.vdpid, self.meter_id

    @classmethod
    def of(cls, net_id: int, vdpid: int, meter_id: int, m: VMeter) -> MeterRecord:
        return cls(net_id, vdpid, meter_id, m.flags, bytes(m.bands), m.phys_id)

    def to_vmeter(self) -> VMeter:
        return VMeter(self.flags, self.bands, self.phys_id)


@dataclass
class Snapshot:
    """Everything the store holds, read at once (`Store.load`)."""

    tenants: list[Tenant] = field(default_factory=list)  # token_hash set, token ""
    networks: dict[int, VirtualNetwork] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # "tenant", "network", ... -> next
    allocations: list[Allocation] = field(default_factory=list)  # for IdAllocator.restore
    flows: dict[VSwitchKey, list[FlowRecord]] = field(default_factory=dict)  # by serial
    groups: dict[VSwitchKey, list[GroupRecord]] = field(default_factory=dict)
    meters: dict[VSwitchKey, list[MeterRecord]] = field(default_factory=dict)
    dnb: Intent = field(default_factory=Intent)


@dataclass(frozen=True)
class ChangeSet:
    """What a transaction of *another* client changed (`Store.on_change`).

    `resync`: the connection was re-established and the replica reloaded: anything may
    have changed (rows deleted meanwhile produce no per-row notice), read everything again.
    """

    tables: frozenset[str] = frozenset()
    networks: frozenset[int] = frozenset()  # virtual networks whose rows changed
    tenants: frozenset[int] = frozenset()
    dnb_networks: frozenset[str] = frozenset()
    resync: bool = False

    def __bool__(self) -> bool:
        return bool(self.tables) or self.resync


__all__ = [
    "Allocation",
    "ChangeSet",
    "FlowKey",
    "FlowRecord",
    "GroupKey",
    "GroupRecord",
    "MeterKey",
    "MeterRecord",
    "Snapshot",
    "VSwitchKey",
]
