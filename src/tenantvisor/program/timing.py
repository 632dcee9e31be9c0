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

    def start(self, net_id: int, cause: str) -> Callable[[bool, int], None]:
        """A reconfiguration of network `net_id` begins now; call what this returns when
        its rollout is over, with whether anything was sent to a pswitch and how many of
        the network's compiled rules changed.  Changes of the topology that send nothing
        (most, for a network they do not concern) are not kept; changes of intent are."""
        t0 = self.clock()
        wall = time.time()

        def done(sent: bool, rules: int) -> None:
            if not sent and cause != "intent":
                return
            self.seq += 1
            self.ring.append({
                "seq": self.seq, "net": net_id, "cause": cause, "at": round(wall, 3),
                "ms": round((self.clock() - t0) * 1e3, 3), "sent": sent, "rules": rules,
            })  # fmt: skip

        return done

    def latest(self) -> list[dict[str, Any]]:
        return list(self.ring)
