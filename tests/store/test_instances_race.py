"""Two instances racing for allocations (issue 8): two in-process `Hypervisor`s, each with
its own store client on the same database, compile their own network at the same moment
over the same fabric, so both want the same fabric tags on the same physical ports and the
same group ids on the same pswitches.  The store's (space, id) index lets one of them win;
the other must reallocate, so no id ever stands for two owners, on the wire or in the store.

No Open vSwitch: each instance's `PhysicalTopology` is filled by hand (2 leaves x 2 spines)
and wired as cluster/agent.py wires it (`owned`, `reserve`, `take_fresh`).  Both
reservations are held at a barrier until both are in flight, so every round has a conflict
for certain (neither allocator knows the other's ids), not only when the timing happens to
make one.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest

from tenantvisor.compile.network import NetworkState
from tenantvisor.hypervisor import RESERVE_ATTEMPTS, Allocated, Hypervisor
from tenantvisor.mapping.alloc import owner_network, tenant_owner
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo
from tenantvisor.store import Cluster, Store
from tenantvisor.virtual.model import (
    Host,
    Tenant,
    VirtualNetwork,
    VLink,
    VLinkEnd,
    VPort,
    VPortKind,
    VSwitch,
)

from .samples import HASH

pytestmark = pytest.mark.root

LEAVES = (1, 2)
SPINES = (3, 4)
PORTS = 10  # per pswitch: 1-2 fabric links, the rest edge ports (two per network)
NETWORKS = (1, 2, 3)  # every instance's manager holds them all


def fabric(topo: PhysicalTopology) -> None:
    """Leaf i's port j <-> spine j's port i (i, j = 1, 2); every pswitch connected,
    OpenFlow 1.3."""
    for d in LEAVES + SPINES:
        ports = {p: PPort(p, f"s{d}-eth{p}", "") for p in range(1, PORTS + 1)}
        topo.add_switch(PSwitchInfo(d, ports, n_tables=64))
    for li, leaf in enumerate(LEAVES, 1):
        for si, spine in enumerate(SPINES, 1):
            topo.add_link(PLink(leaf, si, spine, li))
            topo.add_link(PLink(spine, li, leaf, si))


def network(nid: int) -> VirtualNetwork:
    """A vswitch on each leaf joined by a protected vlink (backup_num=1: a path over each
    spine, fast-failover groups on both leaves), and a big switch over all four pswitches
    (backup_num=1: internal routes over both spines), hosts on the leaves' edge ports.
    Every network uses the same fabric ports: 2 tags on each of the 8 fabric ports and 9
    groups on each leaf."""
    edge = 1 + 2 * nid
    net = VirtualNetwork(nid, nid, [], started=True)
    a = VSwitch(1, [1], 10 * nid + 1)
    a.ports = {1: VPort(1, 1, edge, VPortKind.EDGE), 2: VPort(2, 1, 1, VPortKind.LINK, 1)}
    b = VSwitch(2, [2], 10 * nid + 2)
    b.ports = {1: VPort(1, 2, edge, VPortKind.EDGE), 2: VPort(2, 2, 1, VPortKind.LINK, 1)}
    big = VSwitch(3, [*LEAVES, *SPINES], 10 * nid + 3, backup_num=1)
    big.ports = {
        1: VPort(1, 1, edge + 1, VPortKind.EDGE),
        2: VPort(2, 2, edge + 1, VPortKind.EDGE),
    }
    net.switches = {1: a, 2: b, 3: big}
    net.links = {1: VLink(1, VLinkEnd(1, 2), VLinkEnd(2, 2), backup_num=1)}
    net.hosts = {
        1: Host(1, 1, 1, f"02:00:00:00:{nid:02x}:01"),
        2: Host(2, 2, 1, f"02:00:00:00:{nid:02x}:02"),
    }
    return net


class Instance:
    """One tenantvisor instance as cluster/agent.py wires it (without OpenFlow nor the
    agent's loop): it answers for `owned`, and reserves its new ids in its own store
    client before they may reach the wire."""

    def __init__(self, name: str, store: Store, owned: set[int]) -> None:
        self.name = name
        self.store = store
        hv = Hypervisor("admin-token")
        fabric(hv.topo)
        hv.manager.restore(
            [Tenant(n, f"tenant{n}", HASH) for n in NETWORKS],
            {n: network(n) for n in NETWORKS},
            {},
        )
        hv.owned = set(owned)
        hv.reserve = self._reserve
        hv.alloc.take_fresh()  # from now on, new ids are reserved before use
        self.hv = hv
        self.gate: threading.Barrier | None = None  # the next reservation waits there
        self.reservations = 0
        self.conflicts = 0  # reservations the store refused (another owner held an id)

    def _reserve(self, fresh: list[Allocated]) -> list[Allocated]:
        """ClusterAgent._reserve, held at `gate` once so both instances' transactions are
        in flight at the same moment."""
        gate, self.gate = self.gate, None
        if gate is not None:
            gate.wait(10)
        lost = self.store.reserve_allocations(fresh)
        self.reservations += 1
        if lost:
            self.conflicts += 1
        return [(space, owner, i) for space, i, owner in lost]

    def compile(self, nid: int) -> NetworkState | None:
        return self.hv._compile(self.hv.manager.networks[nid])

    def mine(self) -> set[Allocated]:
        """The ids held for this instance's networks (not the foreign ones it knows)."""
        owned = self.hv.owned or set()
        return {r for r in self.hv.alloc.snapshot() if owner_network(r[1]) in owned}

    def sync(self) -> None:
        """What ClusterAgent._sync_allocations does on the store's Allocation notices."""
        self.hv.alloc.sync_foreign(self.store.allocations(), self.hv._owns_owner)

    def release(self, nid: int) -> None:
        """The network's ids given back, in the store and here."""
        rows = [(sp, o) for sp, o, _ in self.mine() if owner_network(o) == nid]
        self.store.apply_allocations([], rows)
        self.hv.alloc.release_where(lambda sp, o: owner_network(o) == nid)


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def together(calls: dict[Instance, Callable[[], Any]]) -> dict[Instance, Any]:
    """Run the calls at the same moment, each on its own thread, each instance's first
    reservation held until the other's is about to be sent too."""
    start = threading.Barrier(len(calls))
    gate = threading.Barrier(len(calls))
    for inst in calls:
        inst.gate = gate
    out: dict[Instance, Any] = {}

    def run(inst: Instance, call: Callable[[], Any]) -> None:
        start.wait(10)
        try:
            out[inst] = call()
        except BaseException as exc:  # re-raised below, on the test's thread
            out[inst] = exc

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for inst in calls:
        inst.gate = None
        got = out.get(inst)
        if isinstance(got, BaseException):
            raise AssertionError(f"instance {inst.name} failed: {got!r}") from got
    return out


def by_id(rows: set[Allocated] | list[Allocated]) -> dict[tuple[Hashable, int], set[Hashable]]:
    owners: dict[tuple[Hashable, int], set[Hashable]] = defaultdict(set)
    for space, owner, i in rows:
        owners[(space, i)].add(owner)
    return owners


def is_tenants(owner: Hashable) -> bool:
    return isinstance(owner, tuple) and owner[:1] == ("tenant",)


def check_consistent(insts: list[Instance], states: dict[Instance, NetworkState]) -> None:
    """No (space, id) held by two owners across the instances; each instance's foreign
    ids are the true owners'; the store holds exactly what the instances hold for their
    own networks (seen through every client); each compiled state uses exactly the ids
    reserved for its network."""
    held: set[Allocated] = set().union(*(inst.mine() for inst in insts))
    twice = {k: v for k, v in by_id(held).items() if len(v) > 1}
    assert not twice, f"ids held by two owners: {twice}"
    truth = {k: next(iter(v)) for k, v in by_id(held).items()}
    for inst in insts:
        for space, owner, i in inst.hv.alloc.snapshot():
            assert truth.get((space, i), owner) == owner, (inst.name, space, i, owner)
    want = sorted(held, key=repr)
    for inst in insts:  # every replica catches up with every instance's reservations
        wait_until(lambda inst=inst: inst.store.allocations() == want)  # type: ignore[misc]
    rows = insts[0].store.allocations()
    assert all(len(v) == 1 for v in by_id(rows).values())
    for inst, st in states.items():
        used = {(sp, o, inst.hv.alloc.peek(sp, o)) for sp, o in st.owners}
        ours = {r for r in rows if owner_network(r[1]) == st.net_id and not is_tenants(r[1])}
        assert used == ours, f"{inst.name}: network {st.net_id} uses ids not reserved for it"
        groups = {(r[0][1], r[2]) for r in ours if r[0][0] == "group"}
        assert set(st.groups) == groups


def race_compiles(a: Instance, b: Instance, rounds: int) -> Counter[str]:
    """Each round A compiles network 1 and B network 2 at the same moment, from nothing;
    then both give their ids back.  Who lost each round, by name."""
    losers: Counter[str] = Counter()
    for rnd in range(rounds):
        before = {inst: (inst.conflicts, inst.reservations) for inst in (a, b)}
        got = together({a: lambda: a.compile(1), b: lambda: b.compile(2)})
        assert got[a] is not None and got[b] is not None, f"round {rnd}: not compiled"
        conflicts = {i.name: i.conflicts - before[i][0] for i in (a, b)}
        reservations = {i.name: i.reservations - before[i][1] for i in (a, b)}
        # both in flight, both wanting the same lowest ids: exactly one loses, once (it is
        # told every id of the other's it asked for), and reallocates
        assert sorted(conflicts.values()) == [0, 1], (rnd, conflicts)
        loser = next(n for n, c in conflicts.items() if c)
        assert reservations == {n: 2 if n == loser else 1 for n in conflicts}, rnd
        losers[loser] += 1
        check_consistent([a, b], {a: got[a], b: got[b]})
        a.release(1)
        b.release(2)
        for inst in (a, b):
            wait_until(lambda inst=inst: inst.store.allocations() == [])  # type: ignore[misc]
            inst.sync()  # the foreign ids it learned by losing are forgotten
            assert len(inst.hv.alloc) == 0
    return losers


def tenant_group(inst: Instance, nid: int, k: int) -> Callable[[], int | None]:
    """A tenant of network `nid` adds group `k` on vswitch 1 (leaf 1): its physical id."""
    return lambda: inst.hv.alloc_id("group", 1, tenant_owner(nid, 1, "group", k))


# --- the tests -------------------------------------------------------------------------------
def test_two_instances_compiling_at_once_never_hold_one_id(store: Store, other: Store) -> None:
    """30 rounds on one standalone server: a conflict every round, resolved by the loser
    reallocating; nothing ever held twice, in the instances or in the store."""
    a, b = Instance("a", store, {1}), Instance("b", other, {2})
    losers = race_compiles(a, b, 30)
    assert sum(losers.values()) == 30  # a conflict every round, each resolved
    print(f"conflicts resolved by reallocation: {dict(losers)}")


def test_two_instances_racing_on_a_raft_cluster(tmp_path: Path, ovsdb_tools: None) -> None:
    """The same race through two members of a 3-member cluster (writes forwarded to the
    leader, replicas behind it); a fresh client's `load` reads exactly the ids both
    instances hold, none twice."""
    cluster = Cluster(tmp_path / "cluster", 3)
    stores: list[Store] = []
    try:
        cluster.start()
        for m in (cluster.members[0], cluster.members[2]):
            stores.append(Store(m.remote, timeout=10.0, leader_only=False).start())
        a, b = Instance("a", stores[0], {1}), Instance("b", stores[1], {2})
        losers = race_compiles(a, b, 10)
        assert sum(losers.values()) == 10
        print(f"conflicts resolved by reallocation (Raft): {dict(losers)}")
        # one more round, kept: a new client of the whole cluster reads both networks' ids
        got = together({a: lambda: a.compile(1), b: lambda: b.compile(2)})
        check_consistent([a, b], {a: got[a], b: got[b]})
        fresh = Store(cluster.remote, timeout=10.0).start()
        stores.append(fresh)
        rows = fresh.load().allocations
        assert sorted(rows, key=repr) == sorted(a.mine() | b.mine(), key=repr)
        assert all(len(v) == 1 for v in by_id(rows).values())
    finally:
        for s in stores:
            s.stop()
        cluster.stop()


def test_tenant_group_ids_racing_on_one_pswitch(store: Store, other: Store) -> None:
    """`alloc_id` (a tenant's group) from both instances at once, on the leaf both networks
    have compiled groups on: same ("group", dpid) space as the compiler's."""
    a, b = Instance("a", store, {1}), Instance("b", other, {2})
    got = together({a: lambda: a.compile(1), b: lambda: b.compile(2)})
    states = {a: got[a], b: got[b]}
    check_consistent([a, b], states)
    for inst in (a, b):
        inst.sync()  # the other's rows arrived as notices, as they do between API calls
    ids: dict[Instance, list[int]] = {a: [], b: []}
    for rnd in range(20):
        before = a.conflicts + b.conflicts
        got = together({a: tenant_group(a, 1, rnd), b: tenant_group(b, 2, rnd)})
        assert isinstance(got[a], int) and isinstance(got[b], int), (rnd, got)
        assert got[a] != got[b]
        # both synced: both tried the same lowest free id, one of them twice
        assert a.conflicts + b.conflicts == before + 1, rnd
        ids[a].append(got[a])
        ids[b].append(got[b])
        check_consistent([a, b], states)
        for inst in (a, b):
            inst.sync()
    compiled = {gid for st in states.values() for d, gid in st.groups if d == 1}
    tenants = ids[a] + ids[b]
    assert len(set(tenants)) == 40 and not compiled & set(tenants)
    print(f"tenant group conflicts: a lost {a.conflicts}, b lost {b.conflicts}")


def test_the_loser_synced_never_hands_out_the_winners_ids(store: Store, other: Store) -> None:
    """After losing, the loser receives every row of the winner through `sync_foreign`:
    its own ids stay, and nothing it allocates afterwards (a third network over the same
    ports, tenant group ids on both leaves) is ever one of the winner's, so the store never
    refuses it again.  Once the winner gives its ids back, they are forgotten."""
    a, b = Instance("a", store, {1}), Instance("b", other, {2})
    got = together({a: lambda: a.compile(1), b: lambda: b.compile(2)})
    check_consistent([a, b], {a: got[a], b: got[b]})
    winner, loser = (a, b) if b.conflicts else (b, a)
    assert loser.conflicts == 1 and winner.conflicts == 0
    theirs = winner.mine()
    own = loser.mine()
    wait_until(lambda: theirs <= set(loser.store.allocations()))
    loser.sync()
    assert loser.mine() == own
    for space, owner, i in theirs:
        assert loser.hv.alloc.owner_of(space, i) == owner
        assert loser.hv.alloc.peek(space, owner) == i
    # the loser now answers for network 3 as well: same ports, same pswitches
    loser.hv.owned = {*(loser.hv.owned or ()), 3}
    conflicts = loser.conflicts
    st = loser.compile(3)
    assert st is not None
    tenant_ids = [
        loser.hv.alloc_id("group", d, tenant_owner(3, 1, "group", k))
        for d in LEAVES
        for k in range(12)
    ]
    assert None not in tenant_ids
    assert loser.conflicts == conflicts  # it never asked for one of the winner's ids
    handed = loser.mine() - own
    assert len(handed) == len(st.owners) + len(tenant_ids)
    assert not set(by_id(handed)) & set(by_id(theirs))
    check_consistent([winner, loser], {winner: got[winner], loser: st})
    # the winner lets its network go: the loser forgets its ids once the store has
    nid = next(iter(winner.hv.owned or ()))
    winner.release(nid)
    wait_until(lambda: not theirs & set(loser.store.allocations()))
    loser.sync()
    assert all(loser.hv.alloc.owner_of(sp, i) is None for sp, _, i in theirs)
    assert loser.mine() == own | handed


def test_a_loser_not_synced_yet_finds_a_free_id_past_many_foreign_ones(
    store: Store, other: Store
) -> None:
    """Instance A has just reserved network 1's groups on leaf 1 (more than
    RESERVE_ATTEMPTS); B's allocator has not heard of them yet (their notices are still on
    their way, or queued behind the compile that is running) when a tenant of network 2
    adds a group there.  Today B is refused 8 times, one id of A's learnt each time, and
    tells the tenant there is no group id left (a compile of a network needing k ids in a
    space where the winner holds 8k or more gives up the same way, and is not retried)."""
    a, b = Instance("a", store, {1}), Instance("b", other, {2})
    assert a.compile(1) is not None
    taken = {i for sp, _, i in a.mine() if sp == ("group", 1)}
    if len(taken) <= RESERVE_ATTEMPTS:  # not an AssertionError: the xfail would hide it
        raise RuntimeError(f"network 1 has {len(taken)} groups on leaf 1: too few to show it")
    gid = b.hv.alloc_id("group", 1, tenant_owner(2, 1, "group", 1))
    assert gid is not None and gid not in taken
