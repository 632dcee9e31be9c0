"""What one tenant may hold and send: quotas, rates, and the token bucket that meters them.

A tenant shares the fabric, the pswitches' tables and the daemon's one event loop with every
other tenant, so none of these may be unbounded.  `TenantLimits` names every bound once (the
admin's defaults come from the daemon's settings, `config.Settings.tenant_limits`; a tenant's own
values, set by the admin, override them one by one and are kept in the store), and
`TokenBucket` is the rate meter used for both of the rates a tenant drives: the messages its
controllers send (per connection, virtual/endpoint.py through openflow/channel.py) and the
PACKET_INs its vswitches relay to them (per vswitch).

Pure: no clock is read here; callers pass `time.monotonic()`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# What a tenant may hold, counted over all its networks.  The API refuses one more of the
# first five with 403 (errors.QuotaExceeded); a vswitch refuses one more rule, group or
# meter with the OpenFlow error the spec names for a full table (TABLE_FULL,
# OUT_OF_GROUPS, OUT_OF_METERS).
QUOTAS = ("networks", "vswitches", "vports", "vlinks", "hosts", "rules", "groups", "meters")
API_QUOTAS = QUOTAS[:5]
OPENFLOW_QUOTAS = QUOTAS[5:]
# How fast: messages from each controller connection (token bucket: rate per second and
# burst), PACKET_INs each vswitch relays to its controllers (token bucket in the daemon),
# and PACKET_INs each vswitch's pswitches send the daemon (an OpenFlow meter on the pswitch).
RATES = (
    "msg_rate",
    "msg_burst",
    "packet_in_rate",
    "packet_in_burst",
    "packet_in_meter_rate",
    "packet_in_meter_burst",
)
KEYS = QUOTAS + RATES
MAX_VALUE = 1 << 31  # every bound fits the store's integers and a meter band's 32 bits
_EPS = 1e-9  # tokens: what float rounding of elapsed times may cost (0.1 - 0.05 != 0.05)

DESCRIPTIONS = {
    "networks": "virtual networks the tenant may own",
    "vswitches": "vswitches over all its networks",
    "vports": "vports over all its networks",
    "vlinks": "vlinks over all its networks",
    "hosts": "hosts over all its networks",
    "rules": "flow rules over all its vswitches (each vswitch also has the daemon's "
    "max_rules_per_vswitch)",
    "groups": "groups over all its vswitches",
    "meters": "meters over all its vswitches",
    "msg_rate": "messages per second from each controller connection (then back-pressure)",
    "msg_burst": "messages a controller connection may send at once above msg_rate",
    "packet_in_rate": "PACKET_INs per second each vswitch relays to its controllers (the "
    "rest is dropped and counted)",
    "packet_in_burst": "PACKET_INs a vswitch may relay at once above packet_in_rate",
    "packet_in_meter_rate": "PACKET_INs per second each vswitch's pswitches send the "
    "daemon (an OpenFlow meter on each OpenFlow 1.3 pswitch)",
    "packet_in_meter_burst": "PACKET_INs above packet_in_meter_rate the pswitch meter lets "
    "through at once",
}


class TenantLimits(BaseModel):
    """Every bound on one tenant.  The defaults are generous (nothing the tests, the demo
    or the benchmarks do comes near them) yet finite: a provider lowers them."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    networks: int = Field(default=256, ge=0, le=MAX_VALUE)
    vswitches: int = Field(default=4096, ge=0, le=MAX_VALUE)
    vports: int = Field(default=65536, ge=0, le=MAX_VALUE)
    vlinks: int = Field(default=16384, ge=0, le=MAX_VALUE)
    hosts: int = Field(default=65536, ge=0, le=MAX_VALUE)
    rules: int = Field(default=1_000_000, ge=0, le=MAX_VALUE)
    groups: int = Field(default=4096, ge=0, le=MAX_VALUE)
    meters: int = Field(default=1024, ge=0, le=MAX_VALUE)
    msg_rate: int = Field(default=5000, ge=1, le=MAX_VALUE)
    msg_burst: int = Field(default=5000, ge=1, le=MAX_VALUE)
    packet_in_rate: int = Field(default=1000, ge=1, le=MAX_VALUE)
    packet_in_burst: int = Field(default=2000, ge=1, le=MAX_VALUE)
    packet_in_meter_rate: int = Field(default=1000, ge=1, le=MAX_VALUE)
    packet_in_meter_burst: int = Field(default=2000, ge=1, le=MAX_VALUE)

    def with_overrides(self, overrides: dict[str, int]) -> TenantLimits:
        """These defaults with a tenant's own values (checked like the defaults)."""
        if not overrides:
            return self
        return TenantLimits.model_validate({**self.model_dump(), **overrides})

    def get(self, key: str) -> int:
        value: int = getattr(self, key)
        return value


def check_overrides(values: dict[str, Any]) -> dict[str, int]:
    """A tenant's own values, as the admin gives them: known keys, whole numbers in range
    (ValueError naming the first that is not).  None (or absent) means "the default"."""
    out: dict[str, int] = {}
    for key, value in values.items():
        if key not in KEYS:
            raise ValueError(f"unknown limit {key!r}: one of {', '.join(KEYS)}")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"limit {key} must be a whole number, got {value!r}")
        low = 0 if key in QUOTAS else 1
        if not low <= value <= MAX_VALUE:
            raise ValueError(f"limit {key} must be within {low}-{MAX_VALUE}, got {value}")
        out[key] = value
    return out


class TokenBucket:
    """`rate` tokens per second, at most `burst` kept.  A full bucket lets `burst` events
    through at once, then `rate` per second.  Fractional tokens accumulate, so a rate below
    one per loop turn is still exact over time."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1 ({rate}, {burst})")
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def available(self, now: float) -> int:
        """Whole tokens there are now."""
        self._refill(now)
        return int(self.tokens + _EPS)

    def take(self, now: float, n: int = 1) -> bool:
        """Take `n` tokens if there are that many (True), else take none (False)."""
        self._refill(now)
        if self.tokens + _EPS >= n:
            self.tokens -= n
            return True
        return False

    def consume(self, n: int) -> None:
        """Take `n` tokens known to be there (counted with `available` just before)."""
        self.tokens -= n

    def wait(self, now: float, n: int = 1) -> float:
        """Seconds until `n` tokens are there (0: now); `n` is capped at the burst, which
        is all a bucket ever holds."""
        self._refill(now)
        missing = min(float(n), self.burst) - self.tokens
        return max(0.0, missing / self.rate)

    def set(self, rate: float, burst: float, now: float) -> None:
        """New bounds (the admin changed them): tokens already earned stay, up to the new
        burst."""
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1 ({rate}, {burst})")
        self._refill(now)
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = min(self.tokens, self.burst)
