"""The program stage for compiled networks: each network's desired state, and the rollout
that brings the pswitches from the previous one to it, make before break.

A rollout runs in phases across pswitches, each confirmed by barriers before the next:
new limit meters, groups and rules (a rule naming a meter the pswitch lacks is refused);
what changed in place (a limit's rate among them) (failover groups, modified rules), then,
in the same phase once those are on their way with their BARRIERs, the caller's own step
(the endpoints take their new views, so tenants' rules are re-translated against them);
what is gone (for a change that only moves hosts, in the phase before, see `apply`); then
the ids nobody uses any more go back to the allocator.
A later compile may overtake an earlier rollout: every phase re-reads the current desired
state, so nothing that became wanted again is deleted, and no stale value is sent last.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.network import NetworkState, release_unused
from tenantvisor.mapping import layout
from tenantvisor.mapping.alloc import IdAllocator
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.program import diff
from tenantvisor.program.programmer import (
    Rollout,
    send_group,
    send_group_delete,
    send_meter,
    send_meter_delete,
    send_rule,
)
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.group import GroupSpec
from tenantvisor.translate.meter import LimitMeter

# the caller's step once a new state's additions are confirmed: returns pswitches it touched
OnInstalled = Callable[[NetworkState], Iterable[int]]
# once the rollout's last phase is confirmed: whether any phase sent something, and how many
# of the network's compiled rules it added, modified or deleted
OnDone = Callable[[bool, int], None]
# as each phase starts (the previous one confirmed): "add", "modify", "delete"
OnPhase = Callable[[str], None]


class NetworkProgrammer:
    def __init__(self, sessions: Mapping[int, PSwitchSession], alloc: IdAllocator) -> None:
        self.sessions = sessions
        self.alloc = alloc
        self.states: dict[int, NetworkState] = {}  # compiled desired state per network
        self._inflight: Counter[int] = Counter()  # rollouts under way per network
        # per network, who waits for none of its rollouts to be under way (idle)
        self._idle: dict[int, list[asyncio.Future[None]]] = {}

    def _synced(self, dpid: int) -> PSwitchSession | None:
        s = self.sessions.get(dpid)
        return s if s is not None and s.synced else None

    def rules_on(self, dpid: int) -> Iterator[PhysFlow]:
        for st in self.states.values():
            yield from (pf for pf in st.rules.values() if pf.dpid == dpid)

    def groups_on(self, dpid: int) -> Iterator[GroupSpec]:
        for st in self.states.values():
            yield from (g for (d, _), g in st.groups.items() if d == dpid)

    def meters_on(self, dpid: int) -> Iterator[LimitMeter]:
        for st in self.states.values():
            yield from (m for (d, _), m in st.meters.items() if d == dpid)

    def _metered(self, dpid: int) -> PSwitchSession | None:
        s = self._synced(dpid)
        return s if s is not None and s.driver.supports_meters else None

    def apply(
        self,
        new: NetworkState,
        installed: OnInstalled,
        done: OnDone | None = None,
        phase: OnPhase | None = None,
        uncommitted: bool = False,
        moves: bool = False,
    ) -> NetworkState:
        """Make `new` the network's desired state and roll it out; returns the previous.
        `done` is called when the rollout is over (its last BARRIER replies are in), `phase`
        as each phase starts; `uncommitted`: see Rollout.start.

        `moves`: the change only moves hosts (a live migration).  What it deletes is then
        the old place's (its delivery and classification, the hops only its path used),
        which nothing the host could receive or send goes through once traffic turns: it
        is deleted in the phase that turns traffic, after the turn on each pswitch (its
        own BARRIER in between), not one round trip later.  Still make before break: the
        new place is confirmed before anything turns to it or the old one goes.  A packet
        still on its way to the old place when a hop of it goes is dropped there, as it
        would have been at the port the host left."""
        net_id = new.net_id
        # ids the network no longer uses are given back only once their rules are gone
        # everywhere (the last rollout's final phase): a tag reused at once could match this
        # network's packets still in flight under another network's rule
        self._inflight[net_id] += 1
        old = self.states.get(net_id) or NetworkState(net_id)
        self.states[net_id] = new
        rules = diff.diff_rules(old.rules, new.rules)
        groups = diff.diff_groups(old.groups, new.groups)
        meters_add = [m for k, m in new.meters.items() if k not in old.meters]
        meters_mod = [m for k, m in new.meters.items() if k in old.meters and old.meters[k] != m]
        sent = [False]

        def noting(
            name: str | None, step: Callable[[], Iterable[int]]
        ) -> Callable[[], Iterable[int]]:
            def run() -> Iterable[int]:
                if phase is not None and name is not None:
                    phase(name)
                touched = set(step())
                sent[0] = sent[0] or bool(touched)
                return touched

            return run

        def now() -> NetworkState:
            return self.states.get(net_id) or NetworkState(net_id)

        def add() -> set[int]:
            touched = set()
            for m in meters_add:
                if (s := self._metered(m.dpid)) is not None:
                    send_meter(s, m, ofp.OFPMC_ADD)
                    touched.add(m.dpid)
            for g in groups.add:
                if (s := self._synced(g.dpid)) is not None:
                    send_group(s, g, ofp.OFPGC_ADD)
                    touched.add(g.dpid)
            for pf in rules.add:
                if (s := self._synced(pf.dpid)) is not None:
                    send_rule(s, pf, ofp.OFPFC_ADD)
                    touched.add(pf.dpid)
            return touched

        def modify() -> Iterable[int]:
            st, touched = now(), set()
            for m in meters_mod:
                if st.meters.get((m.dpid, m.meter_id)) == m and (s := self._metered(m.dpid)):
                    send_meter(s, m, ofp.OFPMC_MODIFY)
                    touched.add(m.dpid)
            for g in groups.modify:
                if st.groups.get((g.dpid, g.group_id)) == g and (s := self._synced(g.dpid)):
                    send_group(s, g, ofp.OFPGC_MODIFY)
                    touched.add(g.dpid)
            for pf in rules.modify:
                if st.rules.get(pf.key) == pf and (s := self._synced(pf.dpid)) is not None:
                    send_rule(s, pf, ofp.OFPFC_MODIFY_STRICT)
                    touched.add(pf.dpid)
            return touched

        def views() -> Iterable[int]:
            # the same phase, its own BARRIERs: the pswitches take the rules above (their
            # BARRIERs sent) while the endpoints re-view
            if self.states.get(net_id) is new:  # else a later compile takes this step
                return installed(new)
            return ()

        def delete() -> Iterable[int]:
            st, touched = now(), set()
            for pf in rules.delete:
                if pf.key not in st.rules and (s := self._synced(pf.dpid)) is not None:
                    send_rule(s, pf, ofp.OFPFC_DELETE_STRICT)
                    touched.add(pf.dpid)
            for key, g in old.groups.items():
                if key not in st.groups and (s := self._synced(g.dpid)) is not None:
                    send_group_delete(s, g.group_id)
                    touched.add(g.dpid)
            for key, m in old.meters.items():  # after the rules that used them
                if key not in st.meters and (s := self._metered(m.dpid)) is not None:
                    send_meter_delete(s, m.meter_id)
                    touched.add(m.dpid)
            return touched

        def release() -> Iterable[int]:
            if done is not None:  # first: the reconfiguration ended with that BARRIER reply
                done(sent[0], len(rules.add) + len(rules.modify) + len(rules.delete))
            self._done(net_id)
            return ()

        rollout = Rollout(self.sessions)
        rollout.then(noting("add", add))
        rollout.then(noting("modify", modify), joined=True)
        if moves:  # one phase turns and clears (see above): its end is the change's
            rollout.then(noting(None, views), joined=True).then(noting(None, delete))
        else:
            rollout.then(noting(None, views)).then(noting("delete", delete))
        rollout.then(release).start(uncommitted)
        return old

    def idle(self, net_id: int) -> asyncio.Future[None]:
        """Done once no rollout of the network is under way (at once if none is): the API
        answers a host's move when the network has followed it.  On the event loop."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._inflight.get(net_id):
            waiting = self._idle.setdefault(net_id, [])
            waiting[:] = [f for f in waiting if not f.done()]  # those that gave up
            waiting.append(fut)
        else:
            fut.set_result(None)
        return fut

    def _wake(self, net_id: int) -> None:
        for fut in self._idle.pop(net_id, ()):
            if not fut.done():  # a waiter that gave up is cancelled
                fut.set_result(None)

    def _done(self, net_id: int) -> None:
        self._inflight[net_id] -= 1
        if self._inflight[net_id] <= 0:
            del self._inflight[net_id]
            st = self.states.get(net_id)
            release_unused(self.alloc, net_id, st.owners if st is not None else set())
            self._wake(net_id)

    def adopt(self, st: NetworkState) -> None:
        """`st` is what the pswitches are taken to hold already (a network taken over from
        another instance): nothing is sent; the caller re-reads the pswitches and sends
        what differs."""
        self.states[st.net_id] = st

    def forget(self, net_id: int) -> NetworkState | None:
        """Another instance answers for the network now: its rules stay where they are and
        its ids stay held (the store has them; the new owner compiles to the same ones)."""
        self._inflight.pop(net_id, None)
        self._wake(net_id)
        return self.states.pop(net_id, None)

    def remove(self, net_id: int) -> NetworkState | None:
        """The network stops: everything it had leaves the pswitches (the caller drops its
        endpoints first, so their rules go before the groups they use)."""
        st = self.states.pop(net_id, None)
        if st is not None:
            for pf in st.rules.values():
                if (s := self._synced(pf.dpid)) is not None:
                    send_rule(s, pf, ofp.OFPFC_DELETE_STRICT)
            for g in st.groups.values():
                if (s := self._synced(g.dpid)) is not None:
                    send_group_delete(s, g.group_id)
            for m in st.meters.values():
                if (s := self._metered(m.dpid)) is not None:
                    send_meter_delete(s, m.meter_id)
        if not self._inflight.get(net_id):  # else the last rollout gives them back
            release_unused(self.alloc, net_id, set())
        self._wake(net_id)  # a stopped network has nothing more to roll out
        for s in self.sessions.values():  # anything left with this network's cookie
            if s.synced:
                s.delete_cookie(layout.net_cookie(net_id), layout.NET_COOKIE_MASK)
        return st
