"""One tenant's limits as its running vswitches apply them, and what they refused.

The API's quotas (networks, vswitches, vports, vlinks, hosts) are checked by the intent
layer (virtual/manager.py) against intent.  Rules, groups and meters are the tenant
controllers' doing, one OpenFlow message at a time, over all of the tenant's vswitches: so
every vswitch endpoint of a tenant shares one `TenantBudget`, which counts what they hold
when one more is asked for, and keeps the counters `tvctl tenant-quota` and the metrics show.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from tenantvisor.quotas import TenantLimits

if TYPE_CHECKING:
    from tenantvisor.virtual.endpoint import VSwitchEndpoint


class TenantBudget:
    def __init__(self, tenant_id: int, name: str, limits: TenantLimits) -> None:
        self.tenant_id = tenant_id
        self.name = name
        self.limits = limits
        self.endpoints: list[VSwitchEndpoint] = []  # the tenant's running vswitches
        self.refused: Counter[str] = Counter()  # refusals by quota (rules, groups, meters)
        # counters of vswitches that are gone, so the totals never go down (Prometheus)
        self.gone: dict[str, float] = {}

    def used(self, kind: str) -> int:
        """How many rules, groups or meters the tenant's vswitches hold now.  Counted when
        asked (one more is being added), not kept: nothing can drift."""
        if kind == "rules":
            return sum(len(ep.table) for ep in self.endpoints)
        if kind == "groups":
            return sum(len(ep.groups_meters.groups) for ep in self.endpoints)
        if kind == "meters":
            return sum(len(ep.groups_meters.meters) for ep in self.endpoints)
        raise ValueError(f"not a quota vswitches enforce: {kind!r}")

    def full(self, kind: str) -> str | None:
        """Why one more `kind` is refused (the tenant holds its quota already; counted as
        a refusal), or None when there is room."""
        limit = self.limits.get(kind)
        used = self.used(kind)
        if used < limit:
            return None
        self.refused[kind] += 1
        return f"tenant {self.name} holds {used} {kind}: its quota of {kind} is {limit}"

    def counters(self) -> dict[str, float]:
        """Totals over the tenant's vswitches, those gone included: PACKET_INs relayed and
        dropped (by the daemon's bucket, and by the pswitches' meters as last read), and
        the messages its controllers sent, that waited for tokens, and the time waited."""
        out = dict.fromkeys(COUNTERS, 0.0)
        for counts in [self.gone, *(ep.limit_counters() for ep in self.endpoints)]:
            for key, value in counts.items():
                out[key] += value
        return out

    def forget(self, ep: VSwitchEndpoint) -> None:
        """A vswitch of the tenant stops: its counters stay in the totals."""
        if ep in self.endpoints:
            self.endpoints.remove(ep)
            for key, value in ep.limit_counters().items():
                self.gone[key] = self.gone.get(key, 0.0) + value


COUNTERS = (
    "messages",
    "messages_delayed",
    "throttled_seconds",
    "packet_ins",
    "packet_ins_dropped",
    "packet_ins_metered",
)
"""What `TenantBudget.counters` and `VSwitchEndpoint.limit_counters` report."""
