"""The thin I/O of the program stage: read a pswitch when its session starts, send the
difference; roll desired-state changes out across pswitches make-before-break.

A pswitch is never wiped.  When its session starts (first connection, reconnect after a
blip, or a restarted hypervisor) the programmer dumps its rules, groups and meters and sends
only what differs from the desired state (rules that are right keep their counters and
duration).  Until that is done the session is not `synced`, and nobody else sends it rule
or group changes: they are part of the desired state the sync reads when the dump arrives.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, messages
from tenantvisor.openflow.channel import coalesced, send_now
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.program import diff
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.group import GroupSpec, delete_group
from tenantvisor.translate.meter import LimitMeter, meter_mod

log = logging.getLogger(__name__)


def _any(_: int) -> bool:
    return True


@dataclass
class SwitchDesired:
    """Everything one pswitch should hold, of what this instance answers for there: with
    several instances sharing the pswitch, what it may delete is limited to its own
    networks' rules, groups and meters (and the provider's where it is the master)."""

    rules: list[PhysFlow] = field(default_factory=list)
    groups: list[GroupSpec] = field(default_factory=list)
    meters: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # id -> flags, bands
    may_delete_rule: Callable[[int], bool] = diff.is_ours  # by cookie
    may_delete_group: Callable[[int], bool] = _any  # by group id
    may_delete_meter: Callable[[int], bool] = _any  # by meter id


def _log_refusal(what: str, dpid: int) -> Callable[[int, int, bytes], None]:
    def on_error(etype: int, code: int, data: bytes) -> None:
        log.error("pswitch %016x refused %s: type=%d code=%d", dpid, what, etype, code)

    return on_error


def send_rule(s: PSwitchSession, pf: PhysFlow, command: int) -> None:
    err = None if command == ofp.OFPFC_DELETE_STRICT else _log_refusal("a rule", pf.dpid)
    s.send_flow(s.rule(pf, command), err)


def send_group(s: PSwitchSession, g: GroupSpec, command: int) -> None:
    msg = g.mod(command)
    s.send_flow(lambda x: codec.set_xid(msg, x), _log_refusal("a group", g.dpid))


def send_group_delete(s: PSwitchSession, gid: int) -> None:
    msg = delete_group(gid)
    s.send_flow(lambda x: codec.set_xid(msg, x), None)


def send_meter(s: PSwitchSession, m: LimitMeter, command: int) -> None:
    msg = m.mod(command)
    s.send_flow(lambda x: codec.set_xid(msg, x), _log_refusal("a limit meter", m.dpid))


def send_meter_delete(s: PSwitchSession, mid: int) -> None:
    """Open vSwitch removes the rules that use a meter with it: send after them."""
    msg = meter_mod(ofp.OFPMC_DELETE, 0, mid, b"")
    s.send_flow(lambda x: codec.set_xid(msg, x), None)


def sync(
    s: PSwitchSession, desired: Callable[[], SwitchDesired], done: Callable[[int], None]
) -> None:
    """Read what `s` has and send the difference from `desired()` (called when the dump is
    complete, so it sees every change made meanwhile); `done(messages sent)`."""
    assert s.dpid is not None
    driver = s.driver
    got: dict[str, list[bytes] | None] = {}
    kinds = ["flows"]
    if driver.can_reconcile and driver.supports_groups:
        kinds.append("groups")
    if driver.can_reconcile and driver.supports_meters:
        kinds.append("meters")

    def collect(kind: str) -> Callable[[list[bytes] | None], None]:
        def reply(parts: list[bytes] | None) -> None:
            got[kind] = parts
            if len(got) == len(kinds):
                finish()

        return reply

    def finish() -> None:
        want = desired()
        before = s.flow_mods_sent
        if not driver.can_reconcile:
            # flow statistics with no comparable match (OpenFlow 1.0): re-assert every rule
            # with ADD, which replaces an identical rule in place (no loss), delete nothing
            _reassert(s, want)
        else:
            _apply(s, want, got)
        sent = s.flow_mods_sent - before
        log.info("%r reconciled: %d messages sent", s, sent)
        done(sent)

    s.multipart(ofp.OFPMP_FLOW, messages.flow_stats_request(), collect("flows"))
    if "groups" in kinds:
        s.multipart(ofp.OFPMP_GROUP_DESC, b"", collect("groups"))
    if "meters" in kinds:
        all_meters = messages.METER_MULTIPART_REQUEST.pack(ofp.OFPM_ALL)
        s.multipart(ofp.OFPMP_METER_CONFIG, all_meters, collect("meters"))


def _reassert(s: PSwitchSession, want: SwitchDesired) -> None:
    """Send every desired group and rule with ADD (which replaces in place): for a switch
    that cannot be diffed against, or would not say what it has."""
    if s.driver.supports_groups:
        for g in want.groups:
            send_group(s, g, ofp.OFPGC_ADD)
    for pf in want.rules:
        send_rule(s, pf, ofp.OFPFC_ADD)


def _apply(s: PSwitchSession, want: SwitchDesired, got: Mapping[str, list[bytes] | None]) -> None:
    if got.get("flows") is None:
        # the switch would not tell: re-assert everything (ADD replaces in place), delete
        # nothing, rather than guess
        log.warning("%r gave no flow dump: re-asserting every rule", s)
        _reassert(s, want)
        return
    gplan = diff.reconcile_groups(
        want.groups, diff.parse_group_desc(got.get("groups")), want.may_delete_group
    )
    have_meters = diff.parse_meter_config(got.get("meters"))
    for mid, (flags, bands) in sorted(want.meters.items()):
        cur = have_meters.get(mid)
        if cur is None or not diff.same_meter(cur, (flags, bands)):
            cmd = ofp.OFPMC_ADD if cur is None else ofp.OFPMC_MODIFY
            msg = meter_mod(cmd, flags, mid, bands)
            s.send_flow(lambda x, m=msg: codec.set_xid(m, x), _log_refusal("a meter", s.dpid or 0))  # type: ignore[misc]
    for g in gplan.add:
        send_group(s, g, ofp.OFPGC_ADD)
    for g in gplan.modify:
        send_group(s, g, ofp.OFPGC_MODIFY)
    rplan = diff.reconcile_rules(
        s.dpid or 0, want.rules, diff.parse_flow_stats(got["flows"]), want.may_delete_rule
    )
    for pf in rplan.add:
        send_rule(s, pf, ofp.OFPFC_ADD)
    for pf in rplan.modify:
        send_rule(s, pf, ofp.OFPFC_MODIFY_STRICT)
    for pf in rplan.delete:
        send_rule(s, pf, ofp.OFPFC_DELETE_STRICT)
    for gid in gplan.delete:
        send_group_delete(s, gid)
    for mid in sorted(m for m in set(have_meters) - set(want.meters) if want.may_delete_meter(m)):
        msg = meter_mod(ofp.OFPMC_DELETE, 0, mid, b"")
        s.send_flow(lambda x, m=msg: codec.set_xid(m, x), None)  # type: ignore[misc]
    if rplan or gplan:
        log.info(
            "%r: %d rules added, %d modified, %d stale removed; groups %d/%d/%d",
            s, len(rplan.add), len(rplan.modify), len(rplan.delete),
            len(gplan.add), len(gplan.modify), len(gplan.delete),
        )  # fmt: skip


class Rollout:
    """Phases run one after another across pswitches: each phase sends what it sends, then
    every pswitch it touched must answer a barrier before the next phase starts.  Used as
    add -> modify -> delete, nothing is removed before what replaces it is in place.

    A phase may be made of steps (`then(step, joined=True)` for all but its last): each
    step's BARRIERs leave as soon as it has sent, and the phase is over when all of them
    are answered, so a pswitch works on one step's messages while the next is computed."""

    def __init__(self, sessions: Mapping[int, PSwitchSession]) -> None:
        self.sessions = sessions
        self._phases: list[tuple[Callable[[], Iterable[int]], bool]] = []

    def then(self, phase: Callable[[], Iterable[int]], joined: bool = False) -> Rollout:
        """`joined`: the next step belongs to the same phase (it starts without waiting)."""
        self._phases.append((phase, joined))
        return self

    def start(self, uncommitted: bool = False) -> None:
        """Run the phases.  `uncommitted`: the change is not yet in the intent store (a
        live migration is announced while it writes: virtual/manager.py's
        announce_first), so only the first phase runs within this call; the others start
        from the event loop (from a BARRIER reply, or a loop turn later if the first
        phase sent nothing), after the write."""
        with coalesced():  # later phases start from a BARRIER reply: a read, batched too
            self._next(first=uncommitted)
            if uncommitted:
                # the store write comes next and holds the loop: the first phase's messages
                # leave now even inside a read's batch (a move detected from a PACKET_IN),
                # so the pswitches take them while it writes, not after
                send_now()

    def _next(self, first: bool = False) -> None:
        while self._phases:
            if self._phase():
                return  # its last BARRIER reply starts the next phase
            if first and self._phases:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:  # no event loop (in-process use): nothing to wait for
                    continue
                loop.call_soon(self._resume)
                return

    def _phase(self) -> bool:
        """Run the next phase's steps; whether it waits for BARRIER replies."""
        pending, armed = [0], [False]

        def one_done() -> None:
            pending[0] -= 1
            if pending[0] == 0 and armed[0]:
                self._next()

        joined = True
        while joined and self._phases:
            step, joined = self._phases.pop(0)
            touched = set(step())
            waits = [s for d in touched if (s := self.sessions.get(d)) is not None and s.synced]
            pending[0] += len(waits)
            for s in waits:
                s.barrier(one_done)
            if waits and joined and self._phases:
                send_now()  # this step's BARRIERs leave before the next step runs
        armed[0] = True
        return pending[0] > 0

    def _resume(self) -> None:
        with coalesced():
            self._next()
