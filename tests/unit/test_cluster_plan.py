"""Who owns what among several instances (cluster/plan.py), and the allocator's view of the
ids other instances hold (mapping/alloc.py)."""

from __future__ import annotations

import random
from collections import Counter

from tenantvisor.cluster import plan
from tenantvisor.mapping.alloc import IdAllocator, owner_network, tenant_owner


def test_a_lease_lives_while_its_value_changes_on_the_observers_clock() -> None:
    ls = plan.Leases(timeout=3.0)
    ls.observe({"a": 100, "b": 100}, now=0.0)
    assert ls.live(2.9) == {"a", "b"}  # first sight counts as a renewal
    ls.observe({"a": 200, "b": 100}, now=2.0)  # a renewed, b did not
    assert ls.live(4.0) == {"a"}
    ls.observe({"a": 200, "b": 300}, now=4.5)  # b is back
    assert ls.live(4.6) == {"a", "b"}
    ls.observe({"a": 200}, now=4.7)  # b's row went (clean stop): gone at once
    assert ls.live(4.8) == {"a"}
    # the values are never compared with the observer's clock: a far-off wall clock in the
    # lease value does not matter
    ls.observe({"a": 10**15}, now=5.0)
    assert ls.live(7.9) == {"a"} and ls.live(8.1) == frozenset()


def test_every_unowned_network_is_claimed_by_exactly_one_live_instance() -> None:
    live = frozenset({"a", "b", "c"})
    nets = list(range(1, 301))
    claimed: Counter[int] = Counter()
    per_instance = {}
    for me in live:
        got = plan.claims(plan.View(me, live, {}, nets))
        per_instance[me] = len(got)
        claimed.update(n for n, prev in got if prev is None)
    assert sorted(claimed) == nets and set(claimed.values()) == {1}
    assert all(60 <= k <= 140 for k in per_instance.values()), per_instance  # spread out


def test_live_owners_keep_their_networks_and_a_dead_ones_are_shared_out() -> None:
    nets = list(range(1, 61))
    owners: dict[int, str | None] = {n: random.Random(n).choice("abc") for n in nets}
    live = frozenset({"a", "b"})  # c died
    taken: dict[int, str | None] = {}
    for me in live:
        for n, prev in plan.claims(plan.View(me, live, owners, nets)):
            assert n not in taken
            taken[n] = prev
    assert set(taken) == {n for n, o in owners.items() if o == "c"}
    assert set(taken.values()) == {"c"}  # the claim is conditional on the dead owner
    # a network whose row lost its instance (a clean stop) is claimed too, as unowned
    owners[nets[0]] = None
    got = [n for me in live for n, _ in plan.claims(plan.View(me, live, owners, nets))]
    assert nets[0] in got


def test_an_instance_without_its_lease_takes_and_keeps_nothing() -> None:
    view = plan.View("a", frozenset({"b"}), {1: "a", 2: None}, [1, 2])
    assert plan.claims(view) == []
    assert plan.owned(view) == set()
    assert plan.owned(plan.View("a", frozenset({"a"}), {1: "a", 2: "b"}, [1, 2, 3])) == {1}


def test_each_pswitch_has_one_master_among_the_live_and_it_moves_only_off_the_dead() -> None:
    dpids = range(1, 101)
    three = {d: plan.master(d, {"a", "b", "c"}) for d in dpids}
    assert set(three.values()) == {"a", "b", "c"}
    two = {d: plan.master(d, {"a", "b"}) for d in dpids}
    assert all(two[d] == three[d] for d in dpids if three[d] != "c")  # rendezvous: stable
    assert plan.master(1, set()) is None


def test_owners_name_their_network() -> None:
    assert owner_network((5, "vlink", 1)) == 5
    assert owner_network(tenant_owner(9, 0xAB, "group", 3)) == 9
    assert owner_network(("tenant", 4)) is None  # written before owners named the network
    assert owner_network("x") is None


def test_foreign_ids_are_never_handed_out_and_go_when_the_store_drops_them() -> None:
    alloc = IdAllocator()
    mine = {1}
    space = ("tag", 1, 2)
    assert alloc.get(space, (1, "a")) == 1
    # another instance holds 2 (network 2) and 1 as well: the store decided for it
    alloc.sync_foreign([(space, (2, "x"), 2), (space, (2, "y"), 1)],
                       lambda o: owner_network(o) in mine)  # fmt: skip
    assert alloc.owner_of(space, 1) == (2, "y")
    assert alloc.peek(space, (1, "a")) is None  # ours was displaced: allocate again
    assert alloc.get(space, (1, "a")) == 3
    # the other instance gives 2 back
    alloc.sync_foreign([(space, (2, "y"), 1)], lambda o: owner_network(o) in mine)
    assert alloc.owner_of(space, 2) is None
    assert alloc.peek(space, (1, "a")) == 3  # ours are left alone


def test_fresh_ids_are_kept_only_once_asked_for() -> None:
    alloc = IdAllocator()
    alloc.get(("g", 1), (1, "a"))
    assert alloc.fresh is None  # a single instance keeps no list
    assert alloc.take_fresh() == []
    alloc.get(("g", 1), (1, "b"))
    alloc.get(("g", 1), (1, "b"))  # held already: not fresh again
    assert alloc.take_fresh() == [(("g", 1), (1, "b"), 2)]
    assert alloc.take_fresh() == []


def test_long_dead_instances_are_named_for_clearing() -> None:
    ls = plan.Leases(timeout=3.0)
    ls.observe({"a": 1, "b": 1}, now=0.0)
    ls.observe({"a": 2, "b": 1}, now=50.0)
    assert ls.dead_for(61.0, 60.0) == ["b"]
