"""A virtual network's outbox: its physical operations held while exception drops wait.

A controller that installs a connection's path from its source end makes, rule after rule,
packets able to reach a reduced vswitch before that vswitch has the flow's own rule; there
`exact` would drop them, so the plan wants an exact drop above the shared reduced rule
(docs/design.md, "Misses are exceptions").  The flow's rule usually follows within the same
read: sending the drop then deleting it is two FLOW_MODs for nothing.

So while a tenant FLOW_MOD of a reduced network is handled, every physical operation of the
network is *staged* here (FIFO, in the order decided).  When it is done:

* no vswitch of the network wants a drop it has not sent: everything staged goes out at
  once (the common case; a list append and a loop per operation);
* some vswitch does (its drops are *pending*, not sent and not in its rule map): the staged
  operations stay *held*, with every later one of the network, until either the pending
  drops are no longer wanted (the flow's rule arrived: the held operations go out, no drop
  ever sent) or something needs order or visibility: a PACKET_OUT, a statistics, role,
  group or meter request, a BARRIER (at the end of the event-loop turn, so what the daemon
  has already read on the network's other connections is handled first), any physical
  operation not from a tenant FLOW_MOD, a pswitch being synced, a vswitch stopping, or
  `DEADLINE` after the hold began.  Then the pending drops go FIRST, then the held
  operations in order.

A drop made unwanted by operations on its own pswitch held after the upstream rule (the
flow's rule there refines the shared rule instead of joining it) is sent at once anyway,
before everything held, and deleted after them (`VSwitchEndpoint._sync_exceptions`): the
upstream rule could be applied before those operations and send packets into the coarse
rule.

Sound because a held operation is one the pswitch has not applied yet, which OpenFlow
allows until the next BARRIER's reply: a packet meets what was there before, the fate
`exact` gives it before that tenant FLOW_MOD; and a drop, when it goes, is sent before the
rules that make it necessary.  The tenant's BARRIER waits for the flush, and each held
operation counts for the connection whose FLOW_MOD caused it (its pswitch joins that
connection's `touched`), so the BARRIER reply still means everything before it is applied.

The endpoint decides what to send (`decide.split_exceptions`); this is the queue and the
thin asyncio timers around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from tenantvisor.physical.session import PSwitchSession

DEADLINE = 0.020  # seconds a network's operations are held at most for pending drops

Build = Callable[[int], bytes]
OnError = Callable[[int, int, bytes], None]


class Touches(Protocol):
    """A tenant connection: the pswitches it sent to since its last BARRIER."""

    touched: set[int]


class Drops(Protocol):
    """A vswitch with exception drops its plan wants and that were not sent."""

    def commit_drops(self) -> None:
        """Send them now (past the outbox) and record them as installed."""


class Outbox:
    """The physical operations of one virtual network (see the module's docstring)."""

    __slots__ = ("_after", "_session", "_soon", "_timer", "cause", "flushes", "held",
                 "held_ops", "staging", "wanting")  # fmt: skip

    def __init__(self, session: Callable[[int], PSwitchSession | None]) -> None:
        self._session = session  # the current session of a dpid (a held op's may be gone)
        self.staging = 0  # depth of tenant FLOW_MODs being handled
        self.cause: Touches | None = None  # the connection whose FLOW_MOD is handled
        self.held: list[tuple[PSwitchSession, Build, OnError | None, Touches | None]] = []
        self.wanting: dict[Drops, None] = {}  # vswitches with pending drops, in order
        self._after: list[Callable[[], None]] = []  # BARRIERs waiting for the flush
        self._timer: asyncio.TimerHandle | None = None
        self._soon: asyncio.Handle | None = None
        self.held_ops = 0  # operations that were held past their FLOW_MOD (counters)
        self.flushes = 0  # flushes with drops pending (the drops went first)

    @property
    def busy(self) -> bool:
        """Whether anything is held or pending (a flush would do something)."""
        return bool(self.held or self.wanting or self._after)

    # --- a tenant FLOW_MOD -----------------------------------------------------------------
    def begin(self, conn: Touches | None) -> None:
        """A tenant FLOW_MOD (from `conn`) is being handled: stage what it sends."""
        self.staging += 1
        if self.staging == 1:
            self.cause = conn

    def hold(
        self, session: PSwitchSession, build: Build, on_error: OnError | None,
        conn: Touches | None,
    ) -> None:  # fmt: skip
        """An operation decided while staging (counted for `conn`, else the FLOW_MOD's)."""
        self.held.append((session, build, on_error, conn if conn is not None else self.cause))

    def end(self) -> None:
        """The FLOW_MOD is done: send what it staged, unless drops are pending."""
        self.staging -= 1
        if self.staging:
            return
        self.cause = None
        if not self.wanting:
            if self.held or self._after:
                self.flush()
            return
        self.held_ops += len(self.held)
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # no event loop (in-process tests): held until something flushes
            self._timer = loop.call_later(DEADLINE, self.flush)

    def want(self, ep: Drops, pending: bool) -> None:
        """Whether vswitch `ep` has drops pending (decided while staging)."""
        if pending:
            self.wanting[ep] = None
        else:
            self.wanting.pop(ep, None)

    def sends_to(self, dpids: set[int], since: int) -> bool:
        """Whether an operation held since position `since` goes to one of `dpids`."""
        return any((s.dpid or 0) in dpids for s, _, _, _ in self.held[since:])

    # --- sending ---------------------------------------------------------------------------
    def flush(self) -> None:
        """The pending drops first, then the held operations in order, then the BARRIERs
        that waited for them."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        if self.wanting:
            self.flushes += 1
            while self.wanting:
                ep = next(iter(self.wanting))
                del self.wanting[ep]
                ep.commit_drops()
        held, self.held = self.held, []
        current = self._session
        for s, build, on_error, conn in held:
            dpid = s.dpid or 0
            if current(dpid) is not s or not s.synced:
                continue  # a new session is synced from the rule maps, which have it
            s.send_flow(build, on_error)
            if conn is not None:
                conn.touched.add(dpid)
        after, self._after = self._after, []
        for f in after:
            f()

    def flush_soon(self, then: Callable[[], None]) -> None:
        """Flush at the end of this event-loop turn (what was read meanwhile on the
        network's other connections may make the pending drops unwanted), then `then`."""
        self._after.append(then)
        if self._soon is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._soon = loop.call_soon(self.flush)
