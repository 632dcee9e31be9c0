"""Several instances, one store: intent another instance wrote is absorbed and announced only
where it really changed something, and a change the store refuses for another instance's
clashing write is retried after a refresh."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from tenantvisor.errors import ConcurrentChange, TenantvisorError
from tenantvisor.virtual.manager import IntentChange, NetworkManager
from tenantvisor.virtual.model import Tenant, VirtualNetwork

from .test_manager import ADMIN, build_topology

Notice = tuple[dict[int, Tenant | None], dict[int, VirtualNetwork | None], dict[str, int]]


class Writer:
    """Records what is written; refuses the next `clashes` writes (-1: all) as the store does
    when another instance wrote the same new id at the same moment."""

    def __init__(self) -> None:
        self.changes: list[IntentChange] = []
        self.clashes = 0
        self.tries = 0

    def write_intent(self, change: IntentChange) -> None:
        self.tries += 1
        if self.clashes:
            self.clashes -= 1
            raise ConcurrentChange("unique index (id) of table Tenant refused the insert")
        self.changes.append(copy.deepcopy(change))


class Instance:
    def __init__(self) -> None:
        self.m = NetworkManager(build_topology(), ADMIN)
        self.w = Writer()
        self.m.store = self.w
        self.events: list[tuple[str, int]] = []
        self.m.listeners.append(lambda ev, net: self.events.append((ev, net.id)))


def notice(change: IntentChange) -> Notice:
    """What the daemon of another instance reads back from the store after `change`."""
    c = copy.deepcopy(change)
    tenants: dict[int, Tenant | None] = {t.id: dataclasses.replace(t, token="") for t in c.tenants}
    tenants.update((tid, None) for tid in c.deleted_tenants)
    networks: dict[int, VirtualNetwork | None] = {n.id: n for n in c.networks}
    networks.update((nid, None) for nid in c.deleted_networks)
    return tenants, networks, dict(c.counters)


def state(m: NetworkManager) -> tuple[object, ...]:
    return (copy.deepcopy(m.tenants), copy.deepcopy(m.networks), m.counters(),
            set(m._vswitch_index))  # fmt: skip


@pytest.fixture
def pair() -> tuple[Instance, Instance]:
    """`here` absorbs what `there` writes."""
    return Instance(), Instance()


def test_a_new_tenant_and_network_are_absorbed_and_only_a_start_is_announced(
    pair: tuple[Instance, Instance],
) -> None:
    here, there = pair
    t = there.m.create_tenant("bob")
    net = there.m.create_network(t.id, ["tcp:127.0.0.1:6653"])
    there.m.create_switch(net.id, [1])
    for change in there.w.changes:
        here.m.absorb(*notice(change))
    assert here.m.tenants[t.id].name == "bob" and here.m.networks[net.id] == net
    assert here.events == [] and here.w.changes == []  # as create_network: nothing to run
    there.m.start_network(net.id)
    here.m.absorb(*notice(there.w.changes[-1]))
    assert here.events == [("started", net.id)]


def test_a_network_created_and_started_elsewhere_is_announced_started(
    pair: tuple[Instance, Instance],
) -> None:
    here, there = pair
    t = there.m.create_tenant("bob")
    net = there.m.create_network(t.id, [])
    there.m.start_network(net.id)
    here.m.absorb(*notice(there.w.changes[-1]))  # the network only: its tenant comes later
    assert here.m.networks[net.id].started and t.id not in here.m.tenants
    assert here.m.list_networks() == [net] and here.events == [("started", net.id)]
    here.m.absorb(*notice(there.w.changes[0]))
    assert here.m.tenants[t.id].name == "bob" and here.events == [("started", net.id)]


def test_a_started_network_changed_elsewhere_is_announced_once_and_only_if_it_differs(
    pair: tuple[Instance, Instance],
) -> None:
    here, there = pair
    t = there.m.create_tenant("bob")
    net = there.m.create_network(t.id, [])
    there.m.create_switch(net.id, [1])
    there.m.start_network(net.id)
    here.m.absorb(*notice(there.w.changes[-1]))
    here.events.clear()
    there.m.create_port(net.id, 1, 1)
    here.m.absorb(*notice(there.w.changes[-1]))
    assert here.events == [("changed", net.id)]
    assert here.m.networks[net.id].switches[(net.id << 48) | 1].ports[1].port == 1
    here.m.absorb(*notice(there.w.changes[-1]))  # the same content again (a second notice)
    assert here.events == [("changed", net.id)]


def test_an_unstarted_network_changed_elsewhere_is_not_announced(
    pair: tuple[Instance, Instance],
) -> None:
    here, there = pair
    t = there.m.create_tenant("bob")
    net = there.m.create_network(t.id, [])
    here.m.absorb(*notice(there.w.changes[-1]))
    there.m.create_switch(net.id, [1])
    here.m.absorb(*notice(there.w.changes[-1]))
    assert here.events == [] and len(here.m.networks[net.id].switches) == 1


def test_stopping_and_removing_elsewhere_is_announced_as_a_local_stop_and_remove(
    pair: tuple[Instance, Instance],
) -> None:
    here, there = pair
    t = there.m.create_tenant("bob")
    n1, n2, n3 = (there.m.create_network(t.id, []) for _ in range(3))
    for n in (n1, n2):
        there.m.start_network(n.id)
    for change in there.w.changes:
        here.m.absorb(*notice(change))
    here.events.clear()
    there.m.create_switch(n1.id, [1])
    there.m.stop_network(n1.id)  # stopped with a change: the stop is all that is announced
    here.m.absorb({}, {n1.id: copy.deepcopy(there.m.networks[n1.id])}, {})
    assert here.events == [("stopped", n1.id)]
    here.events.clear()
    there.m.delete_tenant(t.id)
    here.m.absorb(*notice(there.w.changes[-1]))
    # as remove_network: a started network is stopped, then removed; the others removed
    assert here.events == [("removed", n1.id), ("stopped", n2.id), ("removed", n2.id),
                           ("removed", n3.id)]  # fmt: skip
    assert here.m.networks == {} and here.m.tenants == {}
    here.m.absorb({t.id: None}, {n1.id: None}, {})  # deleted twice: nothing more to say
    assert len(here.events) == 4


def test_counters_take_the_higher_of_here_and_there() -> None:
    here = Instance()
    for name in ("a", "b", "c"):
        here.m.create_tenant(name)
    here.m.absorb({}, {}, {"tenant": 2, "network": 7, "host": 1})
    assert here.m.counters() == {"tenant": 4, "network": 7, "link": 1, "host": 1, "route": 1}
    assert here.m.create_network(1, []).id == 7


def test_absorbed_vswitch_indexes_are_not_reused_and_removed_ones_are_freed(
    pair: tuple[Instance, Instance],
) -> None:
    here, there = pair
    t = there.m.create_tenant("bob")
    theirs = there.m.create_network(t.id, [])
    assert there.m.create_switch(theirs.id, [1]).index == 1
    for change in there.w.changes:
        here.m.absorb(*notice(change))
    mine = here.m.create_network(here.m.create_tenant("alice").id, [])
    assert here.m.create_switch(mine.id, [1]).index == 2
    assert here.m._vswitch_index == {1, 2}
    here.m.absorb({}, {theirs.id: None}, {})
    assert here.m._vswitch_index == {2}


def test_absorb_refuses_to_run_inside_a_change() -> None:
    here = Instance()
    t = here.m.create_tenant("alice")
    before = state(here.m)
    inner: list[Exception] = []

    def write(change: IntentChange) -> None:
        try:
            here.m.absorb({9: Tenant(9, "intruder", "")}, {}, {})
        except RuntimeError as exc:
            inner.append(exc)
            raise

    here.w.write_intent = write  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="in progress"):
        here.m.create_network(t.id, [])
    assert len(inner) == 1 and state(here.m) == before and here.events == []


def test_a_clashing_id_is_retried_after_a_refresh_with_the_next_id(
    pair: tuple[Instance, Instance],
) -> None:
    here, there = pair
    bob = there.m.create_tenant("bob")  # took id 1 at the same moment as here's first try
    refreshes: list[int] = []

    def refresh() -> None:
        refreshes.append(1)
        here.m.absorb(*notice(there.w.changes[-1]))

    here.m.refresh = refresh
    here.w.clashes = 1
    alice = here.m.create_tenant("alice")
    assert (alice.id, bob.id, here.w.tries, len(refreshes)) == (2, 1, 2, 1)
    assert {i: t.name for i, t in here.m.tenants.items()} == {1: "bob", 2: "alice"}
    (written,) = here.w.changes
    assert [t.id for t in written.tenants] == [2] and written.counters["tenant"] == 3
    assert here.m.authenticate(alice.token) is alice and here.m.counters()["tenant"] == 3


def test_a_retried_change_is_announced_once(pair: tuple[Instance, Instance]) -> None:
    here, there = pair
    net = here.m.create_network(here.m.create_tenant("alice").id, [])
    here.m.start_network(net.id)
    here.events.clear()
    bob = there.m.create_tenant("bob")
    there.m.create_network(bob.id, [])  # network 1 is here's: theirs is 2
    theirs = there.m.create_network(bob.id, [])
    there.m.create_switch(theirs.id, [1])  # vswitch index 1, as here's first try will take
    here.m.refresh = lambda: here.m.absorb({}, {theirs.id: copy.deepcopy(theirs)}, {})
    here.w.clashes = 1
    sw = here.m.create_switch(net.id, [1])
    assert sw.index == 2 and here.m._vswitch_index == {1, 2}
    assert here.events == [("changed", net.id)] and here.w.tries == 5


def test_a_retry_deletes_what_the_refresh_brought_in() -> None:
    here = Instance()
    t = here.m.create_tenant("alice")
    n1 = here.m.create_network(t.id, [])
    here.m.start_network(n1.id)
    here.events.clear()
    late = VirtualNetwork(5, t.id, [])  # added to alice's by another instance meanwhile
    here.m.refresh = lambda: here.m.absorb({}, {late.id: late}, {"network": 6})
    here.w.clashes = 1
    here.m.delete_tenant(t.id)
    assert here.m.networks == {} and here.m.tenants == {}
    assert sorted(here.w.changes[-1].deleted_networks) == [n1.id, late.id]
    assert here.events == [("stopped", n1.id), ("removed", n1.id), ("removed", late.id)]


def test_a_change_that_keeps_clashing_is_refused_after_three_tries() -> None:
    here = Instance()
    t = here.m.create_tenant("alice")
    net = here.m.create_network(t.id, [])
    here.m.start_network(net.id)
    here.events.clear()
    before = state(here.m)
    refreshes: list[int] = []
    here.m.refresh = lambda: refreshes.append(1)
    here.w.clashes, here.w.tries = -1, 0
    with pytest.raises(ConcurrentChange, match="changed concurrently by another instance") as ei:
        here.m.create_switch(net.id, [1])
    assert "try again" in str(ei.value) and "3 attempts" in str(ei.value)
    assert (here.w.tries, len(refreshes)) == (3, 2)
    assert state(here.m) == before and here.events == []


def test_without_a_refresh_a_clash_is_not_retried() -> None:
    here = Instance()
    before = state(here.m)
    here.w.clashes = 1
    with pytest.raises(ConcurrentChange, match="try again"):
        here.m.create_tenant("alice")
    assert here.w.tries == 1 and state(here.m) == before
    assert here.m.create_tenant("alice").id == 1


def test_a_concurrent_change_is_a_409_like_a_conflict() -> None:
    assert issubclass(ConcurrentChange, TenantvisorError)
    assert ConcurrentChange.http_status == 409
