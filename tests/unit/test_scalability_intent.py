"""The scalability level as intent (Libera's flow-rule reduction, chosen by the tenant per
virtual network): accepted at creation and changed while the network runs, validated, kept by
the store, and announced to the daemon exactly as other changes of a started network are."""

from __future__ import annotations

import copy

import pytest

from tenantvisor.errors import InvalidRequest, NotFound, Unavailable
from tenantvisor.store import codec
from tenantvisor.virtual.manager import SCALABILITY_LEVELS, NetworkManager

from .test_manager import ADMIN, build_topology
from .test_manager_store import Writer

BAD_LEVELS: list[object] = [
    "fastest", "LITE", "Hop", " hop", "hop ", "", None, 0, 2, True, False, 1.5, ["hop"],
    {"level": "hop"}, b"hop", "a" * 10_000,
]  # fmt: skip


def _manager() -> tuple[NetworkManager, Writer, list[tuple[str, int, str]]]:
    m = NetworkManager(build_topology(), ADMIN)
    w = Writer()
    m.store = w
    events: list[tuple[str, int, str]] = []
    m.listeners.append(lambda ev, net: events.append((ev, net.id, net.scalability)))
    return m, w, events


def _state(m: NetworkManager) -> tuple[object, ...]:
    return (copy.deepcopy(m.tenants), copy.deepcopy(m.networks), m.counters())


def test_the_five_levels_are_libera_s() -> None:
    assert SCALABILITY_LEVELS == ("exact", "app", "host", "hop", "lite")


@pytest.mark.parametrize("level", SCALABILITY_LEVELS)
def test_create_network_takes_every_level_and_the_store_gets_it(level: str) -> None:
    m, w, events = _manager()
    t = m.create_tenant("alice")
    net = m.create_network(t.id, [], scalability=level)
    assert net.scalability == level and m.networks[net.id].scalability == level
    assert w.changes[-1].networks[0].scalability == level
    assert events == []  # not started: nothing for the daemon yet
    # the store's codec keeps it (schema column `scalability`) and reads it back
    rows = codec.network_rows(net)
    assert codec.network_from_rows(rows).scalability == level


def test_create_network_defaults_to_exact() -> None:
    m, _, _ = _manager()
    net = m.create_network(m.create_tenant("alice").id, [])
    assert net.scalability == "exact"


@pytest.mark.parametrize("bad", BAD_LEVELS, ids=lambda v: repr(v)[:24])
def test_create_network_refuses_other_levels_listing_the_five(bad: object) -> None:
    m, w, events = _manager()
    t = m.create_tenant("alice")
    before, writes = _state(m), len(w.changes)
    with pytest.raises(InvalidRequest) as exc:
        m.create_network(t.id, [], scalability=bad)  # type: ignore[arg-type]
    assert "expected one of exact, app, host, hop, lite" in str(exc.value)
    assert _state(m) == before and len(w.changes) == writes and events == []


def test_set_scalability_of_a_started_network_is_announced_changed() -> None:
    m, w, events = _manager()
    t = m.create_tenant("alice")
    net = m.create_network(t.id, ["tcp:127.0.0.1:6653"])
    m.create_switch(net.id, [1])
    m.start_network(net.id)
    events.clear()
    writes = len(w.changes)
    got = m.set_scalability(net.id, "hop")
    assert got is m.networks[net.id] and got.scalability == "hop"
    # as any other change of a started network: one write, then "changed" with the new level
    assert events == [("changed", net.id, "hop")]
    assert len(w.changes) == writes + 1
    assert [(n.id, n.scalability) for n in w.changes[-1].networks] == [(net.id, "hop")]
    for level in ("lite", "app", "host", "exact"):
        m.set_scalability(net.id, level)
    assert [e[2] for e in events] == ["hop", "lite", "app", "host", "exact"]


def test_set_scalability_of_an_unstarted_network_is_written_not_announced() -> None:
    m, w, events = _manager()
    net = m.create_network(m.create_tenant("alice").id, [])
    writes = len(w.changes)
    assert m.set_scalability(net.id, "lite").scalability == "lite"
    assert events == [] and len(w.changes) == writes + 1
    m.start_network(net.id)  # started later: the daemon derives it with the level it has
    assert events == [("started", net.id, "lite")]


def test_the_same_level_again_writes_and_announces_nothing() -> None:
    m, w, events = _manager()
    net = m.create_network(m.create_tenant("alice").id, [], scalability="hop")
    m.start_network(net.id)
    events.clear()
    writes = len(w.changes)
    assert m.set_scalability(net.id, "hop").scalability == "hop"
    assert events == [] and len(w.changes) == writes


@pytest.mark.parametrize("bad", BAD_LEVELS, ids=lambda v: repr(v)[:24])
def test_set_scalability_refuses_other_levels_and_changes_nothing(bad: object) -> None:
    m, w, events = _manager()
    net = m.create_network(m.create_tenant("alice").id, [])
    m.start_network(net.id)
    events.clear()
    before, writes = _state(m), len(w.changes)
    with pytest.raises(InvalidRequest) as exc:
        m.set_scalability(net.id, bad)  # type: ignore[arg-type]
    assert "expected one of exact, app, host, hop, lite" in str(exc.value)
    assert _state(m) == before and len(w.changes) == writes and events == []


def test_set_scalability_of_an_unknown_network_is_not_found() -> None:
    m, _, events = _manager()
    before = _state(m)
    with pytest.raises(NotFound):
        m.set_scalability(7, "hop")
    assert _state(m) == before and events == []


def test_a_store_that_does_not_answer_keeps_the_old_level() -> None:
    m, w, events = _manager()
    net = m.create_network(m.create_tenant("alice").id, [], scalability="app")
    m.start_network(net.id)
    events.clear()
    before = _state(m)
    w.fail = True
    with pytest.raises(Unavailable):
        m.set_scalability(net.id, "lite")
    assert _state(m) == before and m.networks[net.id].scalability == "app"
    assert events == []  # the daemon never hears of a change the store did not keep


def test_absorbing_another_instance_s_level_change_is_announced_changed() -> None:
    """What another instance wrote reaches this one's daemon as a local change would."""
    m, _, events = _manager()
    net = m.create_network(m.create_tenant("alice").id, [])
    m.start_network(net.id)
    events.clear()
    theirs = copy.deepcopy(net)
    theirs.scalability = "hop"
    m.absorb({}, {net.id: theirs}, {})
    assert events == [("changed", net.id, "hop")]
