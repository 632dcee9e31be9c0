"""Several instances on one database: heartbeats (Instance rows), who owns each virtual
network (Ownership rows, claimed only if the owner is still the one the claimer saw), and
ids reserved before they reach the wire, never held by two owners."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import pytest

from tenantvisor.store import ChangeSet, Cluster, Store, StoreError
from tenantvisor.store import store as store_module

from .samples import HASH, TOP, small_network

pytestmark = pytest.mark.root


def wait_until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def race(calls: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Run the calls at the same moment, each on its own thread: who -> its result."""
    barrier = threading.Barrier(len(calls))
    out: dict[str, Any] = {}

    def run(who: str, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            out[who] = call()
        except Exception as exc:  # reported as the outcome, asserted by the test
            out[who] = exc

    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return out


def join(*stores: Store, ids: tuple[str, ...] = ("a", "b")) -> None:
    """Each store heartbeats its instance; every store sees all of them."""
    for s, i in zip(stores, ids, strict=True):
        s.heartbeat(i, f"tcp:10.0.0.{ord(i)}:8080", 100)
    for s in stores:
        wait_until(lambda s=s: set(ids) <= set(s.instances()))  # type: ignore[misc]


def once_on_thread_of(
    mp: pytest.MonkeyPatch, s: Store, action: Callable[[], Any], obj: Any, name: str
) -> list[bool]:
    """Run `action` once on `s`'s own thread when it next calls `obj.name` (building a
    transaction, reading its replica): the server changes after the replica was read and
    before the commit, as when another instance's write is still on its way.  The list
    holds True once it ran."""
    done: list[bool] = []
    conn = s._conn
    assert conn is not None
    real = getattr(obj, name)

    def patched(*args: Any, **kwargs: Any) -> Any:
        got = real(*args, **kwargs)
        if not done and threading.current_thread() is conn.thread:
            action()
            done.append(True)
        return got

    mp.setattr(obj, name, patched)
    return done


READ_KEY = (store_module._Batch, "uuid")
"""What every builder calls first to read its replica."""


# --- instances ----------------------------------------------------------------------------
def test_heartbeat_and_instances_round_trip(store: Store, other: Store) -> None:
    store.heartbeat("a", "tcp:10.0.0.1:8080", 1000)
    assert store.instances() == {"a": ("tcp:10.0.0.1:8080", 1000)}
    store.heartbeat("a", "tcp:10.0.0.1:8080", 2000)
    other.heartbeat("b" * 64, "", 0)
    want = {"a": ("tcp:10.0.0.1:8080", 2000), "b" * 64: ("", 0)}
    for s in (store, other):
        wait_until(lambda s=s: s.instances() == want)  # type: ignore[misc]
    before = store._idl.change_seqno
    store.heartbeat("a", "tcp:10.0.0.1:8080", 2000)  # nothing changed: nothing written
    assert store._idl.change_seqno == before
    for bad in ("", "x" * 65):
        with pytest.raises(ValueError, match="instance id"):
            store.heartbeat(bad, "tcp:10.0.0.1:8080", 1)
    with pytest.raises(ValueError, match="lease"):
        store.heartbeat("a", "tcp:10.0.0.1:8080", -1)
    store.remove_instance("a")
    store.remove_instance("a")  # idempotent
    store.remove_instance("never-there")
    wait_until(lambda: other.instances() == {"b" * 64: ("", 0)})
    assert store.instances() == {"b" * 64: ("", 0)}


def test_a_heartbeat_after_another_instance_removed_the_row_writes_it_again(
    store: Store, other: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another instance reaping this one's lease between the replica's view and the commit
    must not swallow the heartbeat (an update of a row gone would write nothing)."""
    store.heartbeat("a", "tcp:10.0.0.1:8080", 1)
    wait_until(lambda: "a" in other.instances())
    removed = once_on_thread_of(monkeypatch, store, lambda: other.remove_instance("a"), *READ_KEY)
    store.heartbeat("a", "tcp:10.0.0.1:8080", 2)
    assert removed == [True]
    wait_until(lambda: other.instances() == {"a": ("tcp:10.0.0.1:8080", 2)})
    assert store.instances() == {"a": ("tcp:10.0.0.1:8080", 2)}


# --- ownership ----------------------------------------------------------------------------
def test_two_instances_claiming_an_unowned_network_one_wins(store: Store, other: Store) -> None:
    join(store, other)
    for nid in range(1, 21):
        got = race(
            {"a": lambda nid=nid: store.claim(nid, "a", None),
             "b": lambda nid=nid: other.claim(nid, "b", None)}
        )  # fmt: skip
        assert sorted(got.values()) == [False, True], got
        winner = "a" if got["a"] is True else "b"
        loser = other if winner == "a" else store
        # a False answer comes once the loser's replica shows who won
        assert loser.ownership()[nid] == winner
        wait_until(lambda nid=nid, w=winner: store.ownership().get(nid) == w)  # type: ignore[misc]
    assert set(store.ownership()) == set(range(1, 21))


def test_claims_over_a_previous_owner_and_stale_previous(store: Store, other: Store) -> None:
    join(store, other, ids=("a", "b"))
    store.heartbeat("c", "tcp:10.0.0.3:8080", 100)
    wait_until(lambda: "c" in other.instances())
    assert store.claim(5, "a", None)
    assert store.claim(5, "a", "a")  # claiming what it holds: still its
    wait_until(lambda: other.ownership() == {5: "a"})
    assert other.claim(5, "b", "a")  # taking over from the previous owner
    wait_until(lambda: store.ownership() == {5: "b"})
    assert not store.claim(5, "a", None)  # it is owned
    assert not store.claim(5, "a", "a")  # not by "a" any more
    assert not store.claim(5, "c", "c")
    assert store.claim(5, "c", "b")
    assert store.ownership() == {5: "c"}
    wait_until(lambda: other.ownership() == {5: "c"})


def test_the_owner_is_checked_at_the_server_not_only_in_the_replica(
    store: Store, other: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server changes after the claimer read its replica: its claim fails at commit
    (a `wait`), and the answer is False, with the replica showing the new owner."""
    join(store, other, ids=("a", "b"))
    other.heartbeat("c", "tcp:10.0.0.3:8080", 100)
    wait_until(lambda: "c" in store.instances())
    cases = [
        (None, lambda: other.claim(5, "b", None), "b"),  # no row yet; another inserts one
        ("b", lambda: other.claim(5, "c", "b"), "c"),  # "b" owns it; "c" takes it over
        (None, lambda: other.claim(5, "b", None), "b"),  # no instance; "b" claims it
    ]
    for i, (previous, meanwhile, then) in enumerate(cases):
        if i == 2:
            other.remove_instance("c")
            wait_until(lambda: store.ownership() == {5: None})
        done = once_on_thread_of(monkeypatch, store, meanwhile, *READ_KEY)
        assert store.claim(5, "a", previous) is False
        assert done == [True] and store.ownership() == {5: then}
        monkeypatch.undo()


def test_a_claim_needs_the_instance_row(store: Store) -> None:
    with pytest.raises(StoreError, match="heartbeat"):
        store.claim(5, "a", None)
    with pytest.raises(ValueError, match="network id"):
        store.claim(0, "a", None)
    with pytest.raises(ValueError, match="instance id"):
        store.claim(5, "", None)
    with pytest.raises(ValueError, match="instance id"):
        store.claim(5, "a", "x" * 65)
    assert store.ownership() == {}


def test_an_instance_removed_between_read_and_commit_is_not_referenced(
    store: Store, other: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A weak reference to a row gone would be dropped silently: the claim checks the row
    still exists at commit, and is refused once its replica shows it gone."""
    store.heartbeat("a", "tcp:10.0.0.1:8080", 100)
    wait_until(lambda: "a" in other.instances())
    done = once_on_thread_of(monkeypatch, store, lambda: other.remove_instance("a"), *READ_KEY)
    with pytest.raises(StoreError, match="heartbeat"):
        store.claim(5, "a", None)
    assert done == [True] and store.ownership() == {}


def test_removing_an_instance_leaves_its_networks_unowned(store: Store, other: Store) -> None:
    join(store, other)
    mine: list[ChangeSet] = []
    theirs: list[ChangeSet] = []
    store.on_change(mine.append)
    other.on_change(theirs.append)
    assert store.claim(5, "a", None) and store.claim(6, "a", None) and other.claim(7, "b", None)
    wait_until(lambda: store.ownership() == {5: "a", 6: "a", 7: "b"})
    wait_until(lambda: {5, 6} <= set().union(*(c.networks for c in theirs)))
    mine.clear()
    theirs.clear()
    store.remove_instance("a")
    for s in (store, other):
        wait_until(lambda s=s: s.ownership() == {5: None, 6: None, 7: "b"})  # type: ignore[misc]
        assert "a" not in s.instances()
    wait_until(lambda: {5, 6} <= set().union(*(c.networks for c in theirs)))
    assert {"Instance", "Ownership"} <= set().union(*(c.tables for c in theirs))
    time.sleep(0.2)
    assert mine == []  # the references our own transaction cleared are not news to us
    store.remove_instance("a")  # idempotent
    # an unowned row is claimed as "no owner"
    assert not other.claim(5, "b", "a")
    assert other.claim(5, "b", None)
    assert other.ownership()[5] == "b"


def test_disown(store: Store, other: Store) -> None:
    join(store, other)
    assert store.claim(5, "a", None) and store.claim(6, "a", None)
    wait_until(lambda: other.ownership() == {5: "a", 6: "a"})
    other.disown(5, "b")  # not its: left alone
    other.disown(5, "nobody")
    assert store.ownership() == {5: "a", 6: "a"}
    store.disown(5, "a")
    store.disown(5, "a")  # idempotent
    assert store.ownership() == {6: "a"}
    wait_until(lambda: other.ownership() == {6: "a"})
    assert other.claim(5, "b", None)


def test_deleting_a_network_deletes_its_ownership(
    store: Store, other: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    join(store, other)
    store.put_tenant(1, "t1", HASH)
    store.put_network(small_network(5, 1, 1))
    assert store.claim(5, "a", None) and store.claim(9, "a", None)
    wait_until(lambda: other.ownership() == {5: "a", 9: "a"})
    other.delete_network(5)
    for s in (store, other):
        wait_until(lambda s=s: s.ownership() == {9: "a"})  # type: ignore[misc]
    # a claim the deleter's replica has not seen yet goes too
    assert store.claim(5, "a", None)
    ix = other._index
    done = once_on_thread_of(monkeypatch, other, lambda: store.claim(8, "a", None), ix, "keys_of")
    other.delete_network(8)
    monkeypatch.undo()
    assert done == [True]
    for s in (store, other):
        wait_until(lambda s=s: s.ownership() == {5: "a", 9: "a"})  # type: ignore[misc]


def test_other_instances_heartbeats_and_claims_are_reported(store: Store, other: Store) -> None:
    seen: list[ChangeSet] = []
    read: list[Any] = []

    def cb(c: ChangeSet) -> None:
        seen.append(c)
        read.append((store.instances(), store.ownership()))  # allowed from the callback

    store.on_change(cb)
    other.heartbeat("b", "tcp:10.0.0.2:8080", 100)
    wait_until(lambda: any("Instance" in c.tables for c in seen))
    assert all(not c.networks for c in seen)
    other.claim(5, "b", None)
    wait_until(lambda: any("Ownership" in c.tables for c in seen))
    assert any(5 in c.networks for c in seen if "Ownership" in c.tables)
    assert read[-1] == ({"b": ("tcp:10.0.0.2:8080", 100)}, {5: "b"})
    other.disown(5, "b")
    wait_until(lambda: read[-1][1] == {})
    assert not any(c.resync for c in seen)


def test_load_tenants_and_counters_read_the_replica(store: Store, other: Store) -> None:
    assert store.load_tenants() == [] and store.load_counters() == dict.fromkeys(
        ("tenant", "network", "link", "host", "route"), 1
    )
    read: list[Any] = []
    store.on_change(lambda _: read.append((store.load_tenants(), store.load_counters())))
    other.put_tenant(2, "bob", "ab" * 32)
    other.put_tenant(1, "alice", HASH)
    other.put_counters({"tenant": 3, "network": 4})
    want = {"tenant": 3, "network": 4, "link": 1, "host": 1, "route": 1}
    wait_until(lambda: bool(read) and read[-1][1] == want)
    tenants, _ = read[-1]
    assert [(t.id, t.name, t.token_hash) for t in tenants] == [
        (1, "alice", HASH),
        (2, "bob", "ab" * 32),
    ]
    assert store.load_tenants() == tenants and store.load_counters() == want


# --- ids reserved before they reach the wire ------------------------------------------------
def _race_reservations(a: Store, b: Store, rounds: int, tag: int) -> None:
    """Each round both clients reserve the same (space, id) for different owners, each with
    an id of its own besides: exactly one wins, the loser writes nothing and gets back
    every id the winner holds in the spaces it asked for (the clashing one among them)."""
    for rnd in range(rounds):
        space = ("tag", TOP | (tag << 16) | rnd, 1)
        own = ("own", tag, rnd)

        def rows(who: str, space: Any = space, own: Any = own, rnd: int = rnd) -> list[Any]:
            return [(space, (who, rnd), 7), (own, (who, rnd), 1 if who == "a" else 2)]

        got = race({"a": lambda rows=rows: a.reserve_allocations(rows("a")),
                    "b": lambda rows=rows: b.reserve_allocations(rows("b"))})  # fmt: skip
        assert all(isinstance(r, list) for r in got.values()), got
        assert sorted(map(len, got.values())) == [0, 2], got
        winner = "a" if got["a"] == [] else "b"
        loser = "b" if winner == "a" else "a"
        theirs = [(sp, i, o) for sp, o, i in rows(winner)]
        assert sorted(got[loser], key=repr) == sorted(theirs, key=repr)
        for s in (a, b):  # nothing of the loser's transaction was written
            wait_until(
                lambda s=s, space=space, own=own, winner=winner, rnd=rnd: (  # type: ignore[misc]
                    sorted((sp, o, i) for sp, o, i in s.allocations() if sp in (space, own))
                    == sorted(rows(winner))
                )
            )


def test_two_clients_racing_to_reserve_one_id(store: Store, other: Store) -> None:
    _race_reservations(store, other, 30, 1)


def test_reserving_what_the_owner_holds_is_a_no_op(store: Store, other: Store) -> None:
    rows: list[tuple[tuple[Hashable, ...], Hashable, int]] = [
        (("tag", TOP, 1), (5, "vlink", 1), 10),
        (("group", TOP | 1), ("tenant", 12), 3),
    ]
    assert store.reserve_allocations(rows) == []
    before = store._idl.change_seqno
    assert store.reserve_allocations(rows) == []
    assert store.reserve_allocations(rows[:1] + rows[:1]) == []  # a repeated row: once
    assert store.reserve_allocations([]) == []
    assert store._idl.change_seqno == before
    wait_until(lambda: other.allocations() == sorted(rows, key=repr))
    # the same owner moved to another id of the space: its row follows
    assert other.reserve_allocations([(("tag", TOP, 1), (5, "vlink", 1), 11)]) == []
    wait_until(lambda: (("tag", TOP, 1), (5, "vlink", 1), 11) in store.allocations())
    # an id this very client holds for another owner is a conflict too
    assert store.reserve_allocations([(("tag", TOP, 1), (6, "vlink", 1), 11)]) == [
        (("tag", TOP, 1), 11, (5, "vlink", 1))
    ]
    with pytest.raises(ValueError, match="two ids"):
        store.reserve_allocations([(("tag", TOP, 1), "x", 1), (("tag", TOP, 1), "x", 2)])
    with pytest.raises(ValueError, match="two owners"):
        store.reserve_allocations([(("tag", TOP, 1), "x", 1), (("tag", TOP, 1), "y", 1)])


def test_a_reservation_confirms_at_the_server_what_the_replica_says_is_held(
    store: Store, other: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner's row is released by another (its network deleted) after the replica was
    read: the reservation is written again, not taken as held."""
    row: tuple[tuple[Hashable, ...], Hashable, int] = (("tag", TOP, 1), (5, "vlink", 1), 10)
    assert store.reserve_allocations([row]) == []
    wait_until(lambda: other.allocations() == [row])
    release = lambda: other.apply_allocations([], [row[:2]])  # noqa: E731
    done = once_on_thread_of(monkeypatch, store, release, *READ_KEY)
    assert store.reserve_allocations([row]) == []
    assert done == [True]
    wait_until(lambda: other.allocations() == [row])


def test_racing_claims_and_reservations_on_a_raft_cluster(
    tmp_path: Path, ovsdb_tools: None
) -> None:
    """The same races through two members of a 3-member cluster (writes forwarded to the
    leader), and through a client of the whole cluster (the leader)."""
    cluster = Cluster(tmp_path / "cluster", 3)
    stores: list[Store] = []
    try:
        cluster.start()
        a = Store(cluster.members[0].remote, timeout=10.0, leader_only=False).start()
        stores.append(a)
        b = Store(cluster.members[2].remote, timeout=10.0, leader_only=False).start()
        stores.append(b)
        whole = Store(cluster.remote, timeout=10.0).start()
        stores.append(whole)
        join(a, b, whole, ids=("a", "b", "w"))
        _race_reservations(a, b, 15, 2)
        _race_reservations(whole, b, 5, 3)
        for nid in range(1, 11):
            got = race(
                {"a": lambda nid=nid: a.claim(nid, "a", None),
                 "b": lambda nid=nid: b.claim(nid, "b", None),
                 "w": lambda nid=nid: whole.claim(nid, "w", None)}
            )  # fmt: skip
            assert sorted(got.values()) == [False, False, True], got
            winner = next(w for w, r in got.items() if r is True)
            for who, s in zip("abw", stores, strict=True):  # a loser's replica shows the winner
                assert who == winner or s.ownership()[nid] == winner
            for s in stores:
                wait_until(lambda s=s, nid=nid, w=winner: s.ownership().get(nid) == w)  # type: ignore[misc]
        # taking each network over from its owner, through another member
        for nid, owner in sorted(a.ownership().items()):
            assert owner is not None
            taker, name = (b, "b") if owner != "b" else (a, "a")
            assert taker.claim(nid, name, owner)
            assert not taker.claim(nid, name, owner)  # it is the owner now
            for s in stores:
                wait_until(lambda s=s, nid=nid, n=name: s.ownership().get(nid) == n)  # type: ignore[misc]
    finally:
        for s in stores:
            s.stop()
        cluster.stop()
