"""Runtime state that must survive a restart, on its way to the store and back.

Intent (tenants, networks) is written by the NetworkManager itself, one write per API
change.  What the daemon derives and the tenants' controllers install changes far more often:
ids that reach the wire (allocations), each vswitch's flow table, groups and meters.  Those are
journaled where they change and written here in batches (every `FLUSH_INTERVAL`, one store
call each, in a worker thread so the event loop never waits on the store).  A daemon killed
between a change and its flush loses at most that window: on restart the pswitch's sync
removes the rules the store did not keep, and the tenant's controller re-installs them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tenantvisor.errors import ConcurrentChange, Unavailable
from tenantvisor.mapping.alloc import Space
from tenantvisor.store import (
    Snapshot,
    Store,
    StoreConflict,
    StoreError,
    StoreUnavailable,
)
from tenantvisor.virtual.flowtable import VFlow
from tenantvisor.virtual.groups import VGroup, VMeter
from tenantvisor.virtual.manager import IntentChange

if TYPE_CHECKING:
    from tenantvisor.hypervisor import Hypervisor

log = logging.getLogger(__name__)
FLUSH_INTERVAL = 0.05
VSwitchKey = tuple[int, int]  # (network id, vdpid)


@dataclass
class RuntimeChange:
    """What changed in the runtime state since the last write."""

    allocations: dict[tuple[Space, Hashable], int | None] = field(default_factory=dict)
    flows: dict[VSwitchKey, dict[int, VFlow | None]] = field(default_factory=dict)
    # whole groups and meters of a vswitch (they change rarely; replaced as a set)
    groups: dict[VSwitchKey, tuple[dict[int, VGroup], dict[int, VMeter]]] = field(
        default_factory=dict
    )
    dropped: set[VSwitchKey] = field(default_factory=set)  # vswitches gone: all their tables

    def __bool__(self) -> bool:
        return bool(self.allocations or self.flows or self.groups or self.dropped)

    def merge(self, later: RuntimeChange) -> None:
        """`later` happened after self: the combination, as one change."""
        self.allocations.update(later.allocations)
        for key in later.dropped:
            self.flows.pop(key, None)
            self.groups.pop(key, None)
        self.dropped |= later.dropped
        for key, flows in later.flows.items():
            self.flows.setdefault(key, {}).update(flows)
        self.groups.update(later.groups)


class RuntimeWriter(Protocol):
    def write_runtime(self, change: RuntimeChange) -> None: ...


@dataclass
class StoredTables:
    """A vswitch's tables as the store kept them."""

    flows: list[VFlow] = field(default_factory=list)
    groups: dict[int, VGroup] = field(default_factory=dict)
    meters: dict[int, VMeter] = field(default_factory=dict)


class Persister:
    """Collects the runtime journals of a hypervisor and writes them in batches."""

    def __init__(self, hv: Hypervisor, writer: RuntimeWriter) -> None:
        self.hv = hv
        self.writer = writer
        self._pending = RuntimeChange()  # taken from journals, not yet written
        self._task: asyncio.Task[None] | None = None
        hv.alloc.take_journal()  # from now on
        for ep in hv.endpoints.values():
            ep.table.take_changes()

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Write what is left (a clean stop loses nothing)."""
        if self._task is not None:
            self._task.cancel()
        self.collect()
        if self._pending:
            await self._write()

    def vswitch_gone(self, key: VSwitchKey) -> None:
        later = RuntimeChange(dropped={key})
        self._pending.merge(later)

    def collect(self) -> None:
        change = RuntimeChange(allocations=self.hv.alloc.take_journal())
        for (net_id, vdpid), ep in self.hv.endpoints.items():
            flows = ep.table.take_changes()
            if flows:
                change.flows[(net_id, vdpid)] = flows
            if ep.groups_dirty:
                ep.groups_dirty = False
                gm = ep.groups_meters
                change.groups[(net_id, vdpid)] = (dict(gm.groups), dict(gm.meters))
        self._pending.merge(change)

    async def _write(self) -> None:
        change, self._pending = self._pending, RuntimeChange()
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, self.writer.write_runtime, change
            )
        except Exception as exc:  # the store is away: keep it, try again next time
            log.warning("runtime state not written (%s); retrying", exc)
            change.merge(self._pending)
            self._pending = change

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.collect()
            if self._pending:
                await self._write()


class StoreWriter:
    """The store (store.Store) as the NetworkManager's IntentWriter: one transaction per
    change; a store that fails becomes `Unavailable` (HTTP 503 naming it) for the API."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def write_intent(self, change: IntentChange) -> None:
        # the API writes from the event loop: a store known to be away fails at once rather
        # than holding every pswitch and tenant channel for the store's timeout
        if not self.store.connected:
            raise Unavailable(f"intent store at {self.store.remote} is not connected")
        try:
            self.store.write_intent(change)
        except StoreUnavailable as exc:
            raise Unavailable(f"intent store unavailable: {exc}") from None
        except StoreConflict as exc:  # another instance wrote a clashing id first
            raise ConcurrentChange(str(exc)) from None
        except StoreError as exc:
            raise Unavailable(f"intent store refused the change: {exc}") from None


def stored_tables(snapshot: Snapshot) -> dict[VSwitchKey, StoredTables]:
    """Each vswitch's tables out of a snapshot, as `Hypervisor.restore` takes them."""
    out: dict[VSwitchKey, StoredTables] = {}
    for key, frs in snapshot.flows.items():
        out.setdefault(key, StoredTables()).flows = [f.to_vflow() for f in frs]
    for key, grs in snapshot.groups.items():
        out.setdefault(key, StoredTables()).groups = {g.group_id: g.to_vgroup() for g in grs}
    for key, mrs in snapshot.meters.items():
        out.setdefault(key, StoredTables()).meters = {m.meter_id: m.to_vmeter() for m in mrs}
    return out
