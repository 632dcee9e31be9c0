"""The I/O side of running several instances over one store (plan.py decides).

The agent keeps this instance's lease (its `Instance` row, rewritten every `renew`
seconds), reads the other instances' leases and the `Ownership` rows, claims networks
`plan.claims` names, and hands the hypervisor the networks it gains and loses and the
pswitches it is master of.  Writes other instances make to the intent arrive as store
notices and are absorbed into the NetworkManager, so the API of every instance serves every
tenant; their allocations are marked taken in the allocator, and this instance's new ids are
reserved in the store (one conditional transaction) before they reach the wire.

Store calls run in worker threads, except the reservation, which the compile waits for
(a few milliseconds; refused at once while the store is not connected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from tenantvisor.cluster import plan
from tenantvisor.persistence import StoredTables, stored_tables
from tenantvisor.store import ChangeSet, Snapshot, Store, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from tenantvisor.dedicated.manager import DnbManager
    from tenantvisor.hypervisor import Allocated, Hypervisor

log = logging.getLogger(__name__)
DEFAULT_LEASE = 3.0
FORGET_AFTER = 20  # leases after which a dead instance's row is removed
DNB_KEY = "dnb"  # the rendezvous key of the instance managing the DNB nodes


class ClusterAgent:
    def __init__(
        self,
        hv: Hypervisor,
        store: Store,
        instance_id: str,
        address: str,
        lease: float = DEFAULT_LEASE,
    ) -> None:
        if lease < 1.0:
            raise ValueError(f"lease {lease:g} s: at least 1 s")
        self.hv = hv
        self.store = store
        self.me = instance_id
        self.address = address
        self.lease = lease
        self.renew = lease / 6  # others see several renewals per lease, even with a slow store
        self.leases = plan.Leases(lease)
        self._renewed_at: float | None = None  # monotonic time of the last lease written
        self._live: frozenset[str] = frozenset({instance_id})
        self._members: frozenset[str] = frozenset()  # Instance rows, whatever their leases
        self._masters: dict[int, tuple[int, bool]] = {}  # dpid -> (session id, master here)
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Any = None
        self.takeovers: list[tuple[float, set[int]]] = []  # (monotonic time, networks) taken
        # the dedicated bridges' nodes are managed by one instance (rendezvous over the live)
        self.dnb: DnbManager | None = None
        self._dnb_here = False
        self._dnb_task: asyncio.Task[None] | None = None

    # --- wiring ------------------------------------------------------------------------------
    def install(self, dnb: DnbManager | None = None) -> None:
        """Before the hypervisor starts: it answers for no network until claims say so, and
        manages the DNB nodes only while it is their instance."""
        self.dnb = dnb
        if dnb is not None:
            dnb.elsewhere = self.dnb_elsewhere
        hv = self.hv
        hv.owned = set()
        hv.masters = self.is_master
        hv.reserve = self._reserve
        hv.alloc.take_fresh()  # from now on, new ids are reserved before use
        hv.manager.refresh = self.refresh
        hv.cluster_status = self.status

    def status(self) -> dict[str, Any]:
        return {
            "instance": self.me,
            "live": sorted(self._live),
            "lease_holds": self.lease_holds(time.monotonic()),
            "networks": sorted(self.hv.owned or ()),
            "takeovers": len(self.takeovers),
        }

    async def start(self) -> None:
        """First lease (the daemon does not run without one), then the loop."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._heartbeat)
        self._unsubscribe = self.store.on_change(self._on_store_change)
        self._observe()
        self._task = asyncio.ensure_future(self._run())
        log.info("instance %s: lease %.1f s, %d other instances known", self.me, self.lease,
                 len(self.store.instances()) - 1)  # fmt: skip

    async def stop(self) -> None:
        """A clean stop: the lease row goes, so the others take the networks at once."""
        for task in (self._task, self._dnb_task):
            if task is not None:
                task.cancel()
        if self._unsubscribe is not None:
            self._unsubscribe()
        try:
            await asyncio.to_thread(self.store.remove_instance, self.me)
        except StoreError as exc:
            log.warning("instance %s: lease not removed (%s): others wait for it to expire",
                        self.me, exc)  # fmt: skip

    # --- the lease -----------------------------------------------------------------------------
    def _heartbeat(self) -> None:
        expiry = int((time.time() + self.lease) * 1000)
        self.store.heartbeat(self.me, self.address, expiry)
        self._renewed_at = time.monotonic()

    def lease_holds(self, now: float) -> bool:
        """Whether the others still count this instance alive: it must give everything up
        before they may take it (they wait `lease` after the last renewal they saw)."""
        return self._renewed_at is not None and now - self._renewed_at < self.lease - 2 * self.renew

    async def _run(self) -> None:
        beat = 0.0
        while True:
            if time.monotonic() >= beat:  # on its own clock: others' notices do not drive it
                beat = time.monotonic() + self.renew
                try:
                    await asyncio.to_thread(self._heartbeat)
                except StoreError as exc:
                    log.warning("instance %s: lease not renewed: %s", self.me, exc)
            self._wake.clear()  # a notice during the round wakes the next one at once
            try:
                await self.evaluate()
            except Exception:
                log.exception("instance %s: ownership not evaluated", self.me)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.01, beat - time.monotonic()))

    # --- deciding ------------------------------------------------------------------------------
    def _observe(self) -> frozenset[str]:
        now = time.monotonic()
        self.leases.observe({i: v for i, (_, v) in self.store.instances().items()}, now)
        live = set(self.leases.live(now))
        if self.lease_holds(now):
            live.add(self.me)
        else:
            live.discard(self.me)
        self._live = frozenset(live)
        return self._live

    def dnb_elsewhere(self) -> str | None:
        """None while this instance manages the DNB nodes; else the one that does."""
        if self._dnb_here:
            return None
        leader = plan.rendezvous(DNB_KEY, self._live)
        if leader is None:
            return "(none alive)"
        if leader == self.me:
            return f"{self.me} (this one, taking the nodes over)"
        address = self.store.instances().get(leader, ("?", 0))[0]
        return f"{leader} at {address}"

    async def _move_dnb(self, here: bool) -> None:
        assert self.dnb is not None
        try:
            if here:
                intent = self.store.load_dnb()
                await asyncio.to_thread(self.dnb.restore, intent)
                self._dnb_here = True
                log.info("instance %s manages the DNB nodes now", self.me)
            else:
                self._dnb_here = False
                await asyncio.to_thread(self.dnb.release)
                log.info("instance %s: the DNB nodes are managed elsewhere now", self.me)
        except Exception:
            log.exception("instance %s: DNB nodes not %s", self.me, "taken" if here else "left")
            if here:
                await asyncio.to_thread(self.dnb.release)

    def is_master(self, dpid: int) -> bool:
        return plan.master(dpid, self._live) == self.me

    async def evaluate(self) -> None:
        """One round: leases, pswitch masters, claims, networks gained and lost."""
        if self._busy:
            self._wake.set()  # run again right after
            return
        self._busy = True
        try:
            await self._evaluate()
        finally:
            self._busy = False

    async def _evaluate(self) -> None:
        hv = self.hv
        live = self._observe()
        generation = int(time.time() * 1000)  # grows across instances (clocks in sync)
        for dpid, s in list(hv.sessions.items()):
            if not s.ready:
                continue
            master = plan.master(dpid, live) == self.me
            was = self._masters.get(dpid)
            if was is None or was[0] != id(s) or was[1] != master or (master and s.demoted):
                changed = was is not None and was[0] == id(s) and was[1] != master
                hv.set_master(dpid, master, generation, resync=changed)
                self._masters[dpid] = (id(s), master)
        dnb_here = plan.rendezvous(DNB_KEY, live) == self.me
        busy = self._dnb_task is not None and not self._dnb_task.done()
        if self.dnb is not None and dnb_here != self._dnb_here and not busy:
            self._dnb_task = asyncio.ensure_future(self._move_dnb(dnb_here))
        gone = [i for i in self.leases.dead_for(time.monotonic(), FORGET_AFTER * self.lease)
                if i != self.me and i not in live]  # fmt: skip
        if gone:  # long dead (their networks were taken long ago): their rows go
            await asyncio.to_thread(self._forget, gone)
        if hv.restoring:
            return  # nothing is taken before the fabric has settled after a start
        view = plan.View(self.me, live, self.store.ownership(), list(hv.manager.networks))
        todo = plan.claims(view)
        if todo:
            won = await asyncio.to_thread(self._claim, todo)
            if won:
                log.info("instance %s claimed networks %s", self.me,
                         ", ".join(map(str, won)))  # fmt: skip
            view = plan.View(self.me, live, self.store.ownership(), list(hv.manager.networks))
        mine = plan.owned(view)
        assert hv.owned is not None
        lost = hv.owned - mine
        if lost:
            hv.give_up(lost)
        gained = mine - hv.owned
        if gained:
            tables = await asyncio.to_thread(self._tables, gained)
            gained &= plan.owned(
                plan.View(self.me, self._live, self.store.ownership(), list(hv.manager.networks))
            )  # still ours after the read
            hv.take(gained - hv.owned, tables)
            self.takeovers.append((time.monotonic(), gained))

    def _forget(self, instances: list[str]) -> None:
        for inst in instances:
            try:
                self.store.remove_instance(inst)
                log.info("instance %s: removed the row of %s, dead for over %g s", self.me,
                         inst, FORGET_AFTER * self.lease)  # fmt: skip
            except StoreError as exc:
                log.warning("instance %s: row of dead %s not removed: %s", self.me, inst, exc)
                return

    def _claim(self, todo: list[tuple[int, str | None]]) -> list[int]:
        won = []
        for net, previous in todo:
            try:
                if self.store.claim(net, self.me, previous):
                    won.append(net)
            except StoreError as exc:
                log.warning("instance %s: network %d not claimed: %s", self.me, net, exc)
                break
        return won

    def _tables(self, nets: set[int]) -> dict[tuple[int, int], StoredTables]:
        snap = Snapshot()
        for net in sorted(nets):
            flows, groups, meters = self.store.load_state(net)
            snap.flows.update(flows)
            snap.groups.update(groups)
            snap.meters.update(meters)
        return stored_tables(snap)

    # --- allocations ---------------------------------------------------------------------------
    def _reserve(self, fresh: list[Allocated]) -> list[Allocated]:
        if not self.store.connected:
            raise StoreUnavailable(f"intent store at {self.store.remote} is not connected")
        lost = self.store.reserve_allocations(fresh)
        return [(space, owner, i) for space, i, owner in lost]

    def _sync_allocations(self) -> None:
        rows = self.store.allocations()
        self.hv.alloc.sync_foreign(rows, self._ours)

    def _ours(self, owner: Hashable) -> bool:
        return self.hv._owns_owner(owner)

    # --- other instances' writes ---------------------------------------------------------------
    def _on_store_change(self, changes: ChangeSet) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._changed, changes)

    def _changed(self, ch: ChangeSet) -> None:
        if ch.resync:
            self.refresh()
        elif ch.networks or ch.tenants or "Counters" in ch.tables:
            self._absorb(set(ch.networks), set(ch.tenants))
        if ch.resync or "Allocation" in ch.tables:
            self._sync_allocations()
        members = self._members
        if "Instance" in ch.tables:  # an instance came or went (not a mere renewal)?
            members = frozenset(self.store.instances())
        if ch.resync or members != self._members or ch.tables & {"Ownership", "Virtual_Network"}:
            self._members = members
            self._wake.set()

    def refresh(self) -> None:
        """Everything the store holds now (after a reconnect, or an id clash)."""
        nets = set(self.hv.manager.networks) | set(self.store.network_ids())
        tenants = set(self.hv.manager.tenants) | {t.id for t in self.store.load_tenants()}
        self._absorb(nets, tenants)

    def _absorb(self, nets: set[int], tenants: set[int]) -> None:
        known = {t.id: t for t in self.store.load_tenants()}
        changed_nets = {n: self.store.load_network(n) for n in sorted(nets)}
        self.hv.manager.absorb(
            {t: known.get(t) for t in tenants}, changed_nets, self.store.load_counters()
        )
