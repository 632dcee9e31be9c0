"""The daemon's reconfiguration times (program/timing.py): from a network's change to the
last BARRIER reply of the rollout it caused, as GET /v1/status shows them."""

from __future__ import annotations

import time
from typing import cast

from tenantvisor.mapping.alloc import IdAllocator
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.program.networks import NetworkProgrammer
from tenantvisor.program.timing import Reconfigurations
from tests.unit.test_rollout import FakeSession, _rule, _state


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_change_is_timed_to_the_last_barrier_reply_of_its_rollout() -> None:
    clock = Clock()
    rec = Reconfigurations(clock=clock)
    s = FakeSession(1)
    prog = NetworkProgrammer(cast(dict[int, PSwitchSession], {1: s}), IdAllocator())
    prog.apply(_state([_rule(10), _rule(20)]), lambda st: [], rec.start(7, "intent").done)
    for _ in range(3):
        s.release()
    assert [r["rules"] for r in rec.latest()] == [2]
    clock.t += 1.0
    timing = rec.start(7, "intent")  # a host moved: one rule replaced, one kept
    clock.t += 0.002
    timing.compiled()
    prog.apply(_state([_rule(10), _rule(30)]), lambda st: [], timing.done, timing.phase)
    clock.t += 0.001
    s.release()  # the addition confirmed; nothing to change in place: the delete goes
    assert s.sent[-1] == ("del", 20)
    assert len(rec.latest()) == 1  # not over before the old rule's delete is confirmed
    clock.t += 0.0015
    s.release()
    last = rec.latest()[-1]
    assert last["seq"] == 2 and last["net"] == 7 and last["cause"] == "intent"
    assert last["ms"] == 4.5 and last["compile_ms"] == 2.0
    # nothing to change in place: the delete phase began as the additions were confirmed
    assert last["phases_ms"] == {"modify": 3.0, "delete": 3.0}
    assert last["sent"] and last["rules"] == 2


def test_changes_of_the_topology_are_kept_only_when_they_sent_something() -> None:
    rec = Reconfigurations()
    s = FakeSession(1)
    prog = NetworkProgrammer(cast(dict[int, PSwitchSession], {1: s}), IdAllocator())
    st = _state([_rule(10)])
    prog.apply(st, lambda st: [], rec.start(1, "topology").done)
    for _ in range(3):
        s.release()
    prog.apply(_state([_rule(10)]), lambda st: [], rec.start(1, "topology").done)  # nothing new
    prog.apply(_state([_rule(10)]), lambda st: [], rec.start(1, "intent").done)  # nothing new
    got = rec.latest()
    assert [(r["cause"], r["sent"], r["rules"]) for r in got] == [
        ("topology", True, 1),
        ("intent", False, 0),
    ]
    assert [r["seq"] for r in got] == [1, 2]


def test_only_the_latest_are_kept() -> None:
    rec = Reconfigurations(keep=3)
    for i in range(5):
        rec.start(i, "intent").done(True, 1)
    assert [r["net"] for r in rec.latest()] == [2, 3, 4]
    assert [r["seq"] for r in rec.latest()] == [3, 4, 5]


def test_a_detected_move_is_timed_from_the_frame_that_showed_it() -> None:
    """The store's write and the compile come after the gratuitous ARP arrived: the time
    starts there (`since`), and the wall-clock `at` is that moment too."""
    clock = Clock()
    rec = Reconfigurations(clock=clock)
    seen = clock.t
    clock.t += 0.003  # the intent store's write
    timing = rec.start(7, "detected", since=seen)
    clock.t += 0.001
    timing.compiled()
    timing.done(True, 3)
    (last,) = rec.latest()
    assert last["cause"] == "detected" and last["ms"] == 4.0 and last["compile_ms"] == 4.0
    assert abs(time.time() - timing.wall - 0.003) < 0.1
