"""Two instances' NetworkManagers writing intent through two clients of one store.

Each manager is wired as `cluster/agent.py` wires it: its writes go through a `StoreWriter`
on its own `Store`, and `refresh` absorbs what the store holds.  Notices are not delivered
(the test decides when an instance has heard of the other's writes), so a manager's copy
is as stale as it can be in a live daemon between a write and its notice.
"""

from __future__ import annotations

import pytest

from tenantvisor.errors import ConcurrentChange
from tenantvisor.persistence import StoreWriter
from tenantvisor.store import Store, StoreConflict
from tenantvisor.virtual.manager import NetworkManager

from ..unit.test_manager import ADMIN, build_topology
from .test_cluster_ops import wait_until


def _instance(store: Store) -> NetworkManager:
    m = NetworkManager(build_topology(), ADMIN)
    m.store = StoreWriter(store)

    def refresh() -> None:
        nets = set(m.networks) | set(store.network_ids())
        known = {t.id: t for t in store.load_tenants()}
        m.absorb(
            {t: known.get(t) for t in set(m.tenants) | set(known)},
            {n: store.load_network(n) for n in nets},
            store.load_counters(),
        )

    m.refresh = refresh
    return m


def test_a_change_made_on_a_stale_copy_is_refused_then_redone_on_the_fresh_one(
    store: Store, other: Store
) -> None:
    a, b = _instance(store), _instance(other)
    t = a.create_tenant("alice")
    net = a.create_network(t.id, ["tcp:127.0.0.1:6653"])
    wait_until(lambda: other.load_network(net.id) is not None)
    assert b.refresh is not None
    b.refresh()  # b has heard of the network
    a.create_switch(net.id, [1])  # a changes it; b has not heard of that yet
    b.create_switch(net.id, [2])  # b's change is made on its stale copy: refused, redone
    wait_until(lambda: len((store.load_network(net.id) or net).switches) == 2)
    stored = store.load_network(net.id)
    assert stored is not None
    assert sorted(d for sw in stored.switches.values() for d in sw.dpids) == [1, 2]
    assert b.networks[net.id] == stored  # b's memory is what the store holds
    assert len({sw.index for sw in stored.switches.values()}) == 2  # indexes stay unique


def test_two_instances_drawing_the_same_new_id_both_succeed(store: Store, other: Store) -> None:
    a, b = _instance(store), _instance(other)
    ta = a.create_tenant("alice")
    tb = b.create_tenant("bob")  # b's counter said 1 too: refused, read again, redone as 2
    assert (ta.id, tb.id) == (1, 2)
    wait_until(lambda: len(store.load_tenants()) == 2)
    assert sorted(t.name for t in store.load_tenants()) == ["alice", "bob"]


def test_without_refresh_the_clash_is_a_409_and_nothing_changes(store: Store, other: Store) -> None:
    a, b = _instance(store), _instance(other)
    b.refresh = None
    a.create_tenant("alice")
    with pytest.raises(ConcurrentChange, match="another instance"):
        b.create_tenant("bob")
    assert b.tenants == {}


def test_the_store_itself_refuses_a_network_written_over_a_newer_generation(
    store: Store, other: Store
) -> None:
    a = _instance(store)
    t = a.create_tenant("alice")
    net = a.create_network(t.id, ["tcp:127.0.0.1:6653"])
    assert net.revision == 1
    a.create_switch(net.id, [1])
    assert a.networks[net.id].revision == 2
    wait_until(lambda: (other.load_network(net.id) or net).revision == 2)
    stale = other.load_network(net.id)
    assert stale is not None
    a.create_switch(net.id, [2])
    wait_until(lambda: (other.load_network(net.id) or net).revision == 3)
    stale.controller_urls = ["tcp:127.0.0.1:6654"]
    with pytest.raises(StoreConflict, match="changed by another writer"):
        other.put_network(stale)


def test_a_move_written_alone_raises_the_generation_and_a_stale_one_is_redone(
    store: Store, other: Store
) -> None:
    """A move writes only its host row, but as a change of its network: the generation
    rises (other instances re-read it), and a move made on a stale copy is refused by the
    store, then redone on the fresh one, keeping the other instance's change."""
    a, b = _instance(store), _instance(other)
    t = a.create_tenant("alice")
    net = a.create_network(t.id, ["tcp:127.0.0.1:6653"])
    sw = a.create_switch(net.id, [1])
    a.create_port(net.id, 1, 1)
    h = a.connect_host(net.id, sw.vdpid, 1, "02:00:00:00:00:01")
    gen = a.networks[net.id].revision
    a.move_host(net.id, h.id, 1, 2)
    assert a.networks[net.id].revision == gen + 1
    stored = store.load_network(net.id)
    assert stored is not None and stored.hosts[h.id].location == (1, 2)
    assert stored == a.networks[net.id]
    wait_until(lambda: (other.load_network(net.id) or net).revision == gen + 1)
    assert b.refresh is not None
    b.refresh()
    a.create_switch(net.id, [4])  # b has not heard of this one
    b.move_host(net.id, h.id, 3, 2)  # on its stale copy: refused, redone
    wait_until(lambda: (store.load_network(net.id) or net).hosts[h.id].location == (3, 2))
    stored = store.load_network(net.id)
    assert stored is not None and len(stored.switches) == 2
    assert b.networks[net.id] == stored


def test_a_tenants_limits_are_kept_and_reach_the_other_instance(store: Store, other: Store) -> None:
    """The admin's values for a tenant's limits are intent: written with the tenant's row
    (its name and token unchanged, which the store checks), read back by a restarted daemon,
    and announced to another instance's daemon when it absorbs them."""
    a, b = _instance(store), _instance(other)
    t = a.create_tenant("alice")
    wait_until(lambda: len(other.load_tenants()) == 1)
    assert b.refresh is not None
    b.refresh()
    heard: list[dict[str, int]] = []
    b.tenant_listeners.append(lambda tenant: heard.append(tenant.limits))
    a.set_tenant_limits(t.id, {"vswitches": 2, "msg_rate": 300})
    wait_until(lambda: other.load_tenants()[0].limits == {"vswitches": 2, "msg_rate": 300})
    b.refresh()
    assert heard == [{"vswitches": 2, "msg_rate": 300}]
    assert b.limits_of(t.id).msg_rate == 300 and b.limits_of(t.id).networks == 256
    a.set_tenant_limits(t.id, {})  # back to the defaults
    restarted = NetworkManager(build_topology(), ADMIN)
    restarted.restore(store.load_tenants(), {}, store.load_counters())
    assert restarted.tenants[t.id].limits == {} and restarted.authenticate(t.token).id == t.id
