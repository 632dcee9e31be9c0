"""The intent layer and its store: one write per API change, announced only once written,
and nothing changed (in memory or to the daemon) when the store does not answer."""

from __future__ import annotations

import copy

import pytest

from tenantvisor.errors import Unavailable
from tenantvisor.virtual.manager import IntentChange, NetworkManager, token_hash
from tenantvisor.virtual.model import Host, VirtualNetwork

from .test_manager import ADMIN, MAC, build_topology


class Writer:
    def __init__(self) -> None:
        self.changes: list[IntentChange] = []
        self.fail = False

    def write_intent(self, change: IntentChange) -> None:
        if self.fail:
            raise Unavailable("intent store unix:/nowhere does not answer")
        self.changes.append(copy.deepcopy(change))


def _manager() -> tuple[NetworkManager, Writer, list[tuple[str, int]]]:
    m = NetworkManager(build_topology(), ADMIN)
    w = Writer()
    m.store = w
    events: list[tuple[str, int]] = []
    m.listeners.append(lambda ev, net: events.append((ev, net.id)))
    return m, w, events


def _state(m: NetworkManager) -> tuple[object, ...]:
    return (copy.deepcopy(m.tenants), copy.deepcopy(m.networks), m.counters())


def test_each_change_is_one_write_of_what_it_changed() -> None:
    m, w, _ = _manager()
    t = m.create_tenant("alice")
    assert [c.tenants[0].name for c in w.changes] == ["alice"]
    assert w.changes[0].tenants[0].token_hash == token_hash(t.token)
    net = m.create_network(t.id, [])
    sw = m.create_switch(net.id, [1])
    m.create_port(net.id, 1, 1)
    assert len(w.changes) == 4
    last = w.changes[-1]
    assert [n.id for n in last.networks] == [net.id] and last.tenants == []
    assert last.networks[0].switches[sw.vdpid].ports[1].port == 1
    assert last.counters == m.counters()


def test_the_store_never_sees_a_plain_token() -> None:
    m, w, _ = _manager()
    t = m.create_tenant("alice")
    stored = w.changes[0].tenants[0]
    assert stored.token_hash == token_hash(t.token) and t.token not in repr(stored)
    assert m.authenticate(t.token) is t


def test_listeners_hear_of_a_change_only_after_it_is_written() -> None:
    m, w, events = _manager()
    t = m.create_tenant("alice")
    net = m.create_network(t.id, [])
    seen_when_announced: list[int] = []
    m.listeners.append(lambda ev, n: seen_when_announced.append(len(w.changes)))
    m.start_network(net.id)
    assert events == [("started", net.id)] and seen_when_announced == [3]


def test_a_store_that_does_not_answer_changes_nothing() -> None:
    m, w, events = _manager()
    t = m.create_tenant("alice")
    net = m.create_network(t.id, [])
    m.create_switch(net.id, [1])
    m.start_network(net.id)
    events.clear()
    before = _state(m)
    w.fail = True
    with pytest.raises(Unavailable):
        m.create_port(net.id, 1, 1)
    with pytest.raises(Unavailable):
        m.create_switch(net.id, [2])
    with pytest.raises(Unavailable):
        m.create_tenant("bob")
    with pytest.raises(Unavailable):
        m.delete_tenant(t.id)
    assert _state(m) == before and events == []
    w.fail = False
    vp = m.create_port(net.id, 1, 1)  # the same numbers as if nothing had been tried
    assert vp.number == 1 and m.create_switch(net.id, [2]).index == 2
    m.connect_host(net.id, next(iter(m.networks[net.id].switches)), 1, MAC)


def test_deleting_a_tenant_deletes_its_networks_in_one_write() -> None:
    m, w, _ = _manager()
    t = m.create_tenant("alice")
    n1, n2 = m.create_network(t.id, []), m.create_network(t.id, [])
    m.start_network(n1.id)
    w.changes.clear()
    m.delete_tenant(t.id)
    (change,) = w.changes
    assert change.deleted_tenants == [t.id]
    assert sorted(change.deleted_networks) == [n1.id, n2.id]


def test_restore_brings_intent_back_without_announcing_it() -> None:
    m, w, _ = _manager()
    t = m.create_tenant("alice")
    net = m.create_network(t.id, [])
    m.create_switch(net.id, [1])
    m.start_network(net.id)
    saved = w.changes[-1]
    fresh, _, events = _manager()
    fresh.restore([saved.tenants[0]] if saved.tenants else [copy.deepcopy(t)],
                  {net.id: saved.networks[0]}, saved.counters)  # fmt: skip
    assert events == [] and fresh.networks[net.id].started
    assert fresh.authenticate(t.token).id == t.id  # type: ignore[union-attr]
    assert fresh.create_network(t.id, []).id == net.id + 1  # counters continue
    assert fresh.create_switch(net.id, [2]).index == 2  # vswitch indexes stay unique


def _started_with_a_host(m: NetworkManager) -> tuple[VirtualNetwork, Host]:
    """alice's started network: one vswitch on pswitch 1, its vport 1 (port 1) with a host."""
    t = m.create_tenant("alice")
    net = m.create_network(t.id, [])
    sw = m.create_switch(net.id, [1])
    m.create_port(net.id, 1, 1)
    h = m.connect_host(net.id, sw.vdpid, 1, MAC)
    m.start_network(net.id)
    return net, h


def test_a_move_writes_its_host_alone_and_a_failed_write_takes_it_back() -> None:
    """A live migration's write is the host's row, not its network re-encoded; it is
    announced as the write starts (the daemon's first phase only adds rules); if the store
    does not answer, the host is where it was and is announced there again, so the daemon
    programs the network back."""
    m, w, events = _manager()
    seen: list[tuple[object, int]] = []  # (host's location, writes done) as announced
    net, h = _started_with_a_host(m)
    w.changes.clear()
    events.clear()
    m.listeners.append(lambda ev, n: seen.append((n.hosts[h.id].location, len(w.changes))))
    m.move_host(net.id, h.id, 1, 2)
    (change,) = w.changes
    assert change.networks == [] and [(n.id, x.location) for n, x in change.hosts] == [
        (net.id, (1, 2))
    ]
    assert events == [("changed", net.id)] and seen == [((1, 2), 0)]
    w.fail = True
    before = _state(m)
    with pytest.raises(Unavailable):
        m.move_host(net.id, h.id, 3, 2)
    assert _state(m) == before and h.location == (1, 2)
    assert events == [("changed", net.id)] * 3 and seen[1:] == [((3, 2), 1), ((1, 2), 1)]
    w.fail = False
    m.move_host(net.id, h.id, 1, 1)  # home
    assert w.changes[-1].hosts[0][1].location is None and h.location is None


def test_a_move_without_a_store_is_announced_once_done() -> None:
    """No store (--db none): nothing to overlap, the move is announced as any change."""
    m = NetworkManager(build_topology(), ADMIN)
    events: list[tuple[str, int]] = []
    m.listeners.append(lambda ev, net: events.append((ev, net.id)))
    net, h = _started_with_a_host(m)
    events.clear()
    m.move_host(net.id, h.id, 1, 2)
    assert events == [("changed", net.id)] and h.location == (1, 2)


@pytest.mark.parametrize("with_store", [True, False])
def test_only_a_move_is_announced_as_moving(with_store: bool) -> None:
    """`moving` (the daemon then clears the old place in the phase that turns traffic)
    is set while a move is announced, with or without a store, and for nothing else:
    not another change, not a failed move announced back."""
    m, w, _ = _manager()
    if not with_store:
        m.store = None
    seen: list[tuple[str, object, bool]] = []
    net, h = _started_with_a_host(m)
    m.listeners.append(lambda ev, n: seen.append((ev, n.hosts[h.id].location, m.moving)))
    m.move_host(net.id, h.id, 1, 2)
    m.create_port(net.id, 1, 2)  # another change, of the same network
    assert seen == [("changed", (1, 2), True), ("changed", (1, 2), False)]
    if with_store:
        w.fail = True
        with pytest.raises(Unavailable):
            m.move_host(net.id, h.id, 3, 2)
        assert seen[2:] == [("changed", (3, 2), True), ("changed", (1, 2), False)]
    assert not m.moving
