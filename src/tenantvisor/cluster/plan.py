"""Several instances over one store: who is alive, who answers for which virtual network,
and which instance keeps each pswitch's provider rules.  Pure: the agent (agent.py) feeds
it what the store holds and its own clock, and carries out what it returns.

* Liveness is judged on the observer's own monotonic clock: an instance is alive while
  the lease value in its `Instance` row keeps changing (each instance rewrites it every
  `renew` seconds).  No two machines' clocks are ever compared.
* A network is owned through its `Ownership` row.  An owner stays owner while it lives
  (no rebalancing of live owners: moving a network costs its tenant a controller
  reconnect).  An unowned network, or one whose owner died, goes to the live instance
  that ranks highest for it by rendezvous hashing, so every instance reaches the same
  choice without talking and the load spreads evenly; the claim itself is a conditional
  store transaction, so a disagreement (two views of liveness) cannot make two owners.
* A pswitch's master (provider rules, orphans, OpenFlow MASTER role) is the live
  instance ranking highest for its dpid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field


def rank(key: str, instance: str) -> bytes:
    return hashlib.sha256(f"{key}\0{instance}".encode()).digest()


def rendezvous(key: str, candidates: Iterable[str]) -> str | None:
    """The candidate ranking highest for `key` (None if there is none)."""
    return max(candidates, key=lambda c: rank(key, c), default=None)


def network_key(net_id: int) -> str:
    return f"network/{net_id}"


def pswitch_key(dpid: int) -> str:
    return f"pswitch/{dpid:016x}"


@dataclass
class Leases:
    """Liveness of instances from the lease values their rows carry, on the local clock."""

    timeout: float
    _seen: dict[str, tuple[int, float]] = field(default_factory=dict)

    def observe(self, leases: Mapping[str, int], now: float) -> None:
        """The store's rows now (instance id -> lease value).  A row seen for the first
        time counts as just renewed: after a start, a dead instance looks alive for one
        timeout, which errs on the side of not taking its networks too early."""
        for inst, value in leases.items():
            old = self._seen.get(inst)
            if old is None or old[0] != value:
                self._seen[inst] = (value, now)
        for inst in [i for i in self._seen if i not in leases]:
            del self._seen[inst]  # removed on a clean stop: gone at once

    def live(self, now: float) -> frozenset[str]:
        return frozenset(i for i, (_, t) in self._seen.items() if now - t <= self.timeout)

    def dead_for(self, now: float, age: float) -> list[str]:
        """Instances whose lease has not changed for `age` seconds: rows to clear away."""
        return sorted(i for i, (_, t) in self._seen.items() if now - t > age)


@dataclass(frozen=True)
class View:
    """What one instance knows at one moment."""

    me: str
    live: frozenset[str]  # instances alive (this one only while its own lease holds)
    owners: Mapping[int, str | None]  # Ownership rows: network -> instance (None: nobody)
    networks: Collection[int]  # every virtual network in the intent


def claims(view: View) -> list[tuple[int, str | None]]:
    """(network, its current owner) for each network this instance should claim now."""
    if view.me not in view.live:
        return []  # an instance without a lease takes nothing
    out = []
    for net in sorted(view.networks):
        owner = view.owners.get(net)
        if owner is not None and owner in view.live:
            continue
        if rendezvous(network_key(net), view.live) == view.me:
            out.append((net, owner))
    return out


def owned(view: View) -> set[int]:
    """The networks this instance answers for: those its rows name, while its lease holds."""
    if view.me not in view.live:
        return set()
    return {n for n in view.networks if view.owners.get(n) == view.me}


def master(dpid: int, live: Iterable[str]) -> str | None:
    return rendezvous(pswitch_key(dpid), live)
