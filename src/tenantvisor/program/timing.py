"""How long the daemon takes to reconfigure a network: from the change (of intent, or of the
physical topology) to the last BARRIER reply of the rollout it caused (program/networks.py).

A live migration is judged by it (`tenantvisor bench migration`): the host is reachable at
its new place once the rollout's additions are confirmed, and the change is over once its
last phase is.  Kept cheap: one monotonic clock read per compile and a bounded ring of the
latest ones, read by GET /v1/status.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

KEEP = 256  # reconfigurations kept (the oldest go first)


class Reconfigurations:
    """The latest reconfigurations, oldest first, each numbered (`seq`, from 1) so a reader
    can tell new ones from those it saw."""

    def __init__(self, keep: int = KEEP, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.ring: deque[dict[str, Any]] = deque(maxlen=keep)
        self.seq = 0

    def start(self, net_id: int, cause: str, since: float | None = None) -> Timing:
        """A reconfiguration of network `net_id` begins now, or began at `since` (this
        clock; a move detected from a frame is timed from the frame's arrival, before the
        intent store had it).  Changes of the topology that send nothing (most, for a
        network they do not concern) are not kept; changes of intent are."""
        return Timing(self, net_id, cause, since)

    def _keep(self, entry: dict[str, Any]) -> None:
        self.seq += 1
        self.ring.append({"seq": self.seq, **entry})

    def latest(self) -> list[dict[str, Any]]:
        return list(self.ring)


class Timing:
    """One reconfiguration under way: `compiled()` once its desired state is computed,
    `phase(name)` as each phase of its rollout starts, then `done(sent, rules)` once the
    rollout is over, with whether anything was sent to a pswitch and how many of the
    network's compiled rules changed."""

    def __init__(
        self, rec: Reconfigurations, net_id: int, cause: str, since: float | None = None
    ) -> None:
        self.rec, self.net_id, self.cause = rec, net_id, cause
        now = rec.clock()
        self.t0 = now if since is None else since
        self.wall = time.time() - (now - self.t0)
        self.compile_ms: float | None = None
        # when each rollout phase started: "modify" once the additions were confirmed,
        # "delete" once the changes in place were (a moved host is reached from then on)
        self.phases: dict[str, float] = {}

    def _ms(self) -> float:
        return round((self.rec.clock() - self.t0) * 1e3, 3)

    def compiled(self) -> None:
        self.compile_ms = self._ms()

    def phase(self, name: str) -> None:
        if name != "add":
            self.phases[name] = self._ms()

    def done(self, sent: bool, rules: int) -> None:
        if not sent and self.cause == "topology":
            return
        self.rec._keep({
            "net": self.net_id, "cause": self.cause, "at": round(self.wall, 6),
            "ms": self._ms(), "compile_ms": self.compile_ms, "phases_ms": self.phases,
            "sent": sent, "rules": rules,
        })  # fmt: skip
