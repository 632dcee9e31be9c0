"""The few words conformance cases are written in: rules, actions, frames sent, outcomes.

A case names ports by alias (1..4, the tester ports) and asks its `Ctx` for their OpenFlow
numbers when it builds messages, so one case runs unchanged on a bare bridge (ports 1..4)
and on a vswitch (its vports).  Expectations never depend on the target.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.testbed.conformance.harness import DP, Case, Ctx, Obs, expect_obs
from tenantvisor.testbed.packets import Pkt

Rules = Callable[[Ctx], Sequence[Any]]
NO_BUFFER = ofp.OFPCML_NO_BUFFER


def apply(*actions: Any) -> Any:
    return p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions))


def write(*actions: Any) -> Any:
    return p.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, list(actions))


def clear() -> Any:
    return p.OFPInstructionActions(ofp.OFPIT_CLEAR_ACTIONS, [])


def goto(table: int) -> Any:
    return p.OFPInstructionGotoTable(table)


def out(port: int, max_len: int = NO_BUFFER) -> Any:
    return p.OFPActionOutput(port, max_len)


def setf(**field: Any) -> Any:
    return p.OFPActionSetField(**field)


def flow(
    match: Any = None,
    actions: Sequence[Any] | None = None,
    inst: Sequence[Any] | None = None,
    *,
    table: int = 0,
    priority: int = 100,
    cookie: int = 0,
    command: int = ofp.OFPFC_ADD,
    **kw: Any,
) -> Any:
    """A FLOW_MOD: `actions` become one apply-actions instruction unless `inst` is given."""
    instructions = list(inst) if inst is not None else ([apply(*actions)] if actions else [])
    kw.setdefault("out_port", ofp.OFPP_ANY)
    kw.setdefault("out_group", ofp.OFPG_ANY)
    return p.OFPFlowMod(DP, table_id=table, priority=priority, cookie=cookie, command=command,
                        match=match if match is not None else p.OFPMatch(),
                        instructions=instructions, **kw)  # fmt: skip


def table_miss(c: Ctx, table: int = 0, cookie: int = 0) -> Any:
    """The table-miss rule that sends to the controller."""
    return flow(actions=[out(ofp.OFPP_CONTROLLER)], table=table, priority=0, cookie=cookie)


@dataclass(frozen=True)
class Pin:
    """An expected PACKET_IN: `pkt` as it reached the controller, cut to `max_len`."""

    reason: int
    pkt: Pkt
    in_port: int | str = 1
    table_id: int = 0
    cookie: int = 0
    max_len: int | None = None
    metadata: int | None = None
    total_len: int | None = None

    def obs(self, marker: bytes) -> Obs:
        data = self.pkt.build(marker)
        d: Obs = {
            "reason": self.reason, "table_id": self.table_id, "cookie": self.cookie,
            "in_port": self.in_port,
            "total_len": self.total_len if self.total_len is not None else len(data),
            "buffer_id": ofp.OFP_NO_BUFFER,
            "data": (data[: self.max_len] if self.max_len is not None else data).hex(),
        }  # fmt: skip
        if self.metadata is not None:
            d["metadata"] = self.metadata
        return d


Send = tuple[int, Pkt]  # (port alias, frame) injected by the tester


def fwd(
    name: str,
    kind: str,
    rules: Rules,
    sends: Sequence[Send],
    out: Mapping[int, Sequence[Pkt | bytes]] | None = None,
    *,
    packet_in: Sequence[Pin] = (),
    install_errors: Sequence[Sequence[int]] = (),
    ci: bool = False,
    ovs_note: str = "",
) -> Case:
    """Install `rules` (then a BARRIER), inject `sends`; what must leave where (`out`, per
    alias), which PACKET_INs must come, and which errors the installation must get."""
    expected_out = {a: list(fs) for a, fs in (out or {}).items()}
    n = sum(len(fs) for fs in expected_out.values()) + len(packet_in)

    def body(c: Ctx) -> Obs:
        errs = c.install(rules(c))
        for alias, pkt in sends:
            c.inject(alias, pkt)
        obs = c.observe(n)
        obs["install"] = errs
        return obs

    def expect(marker: bytes) -> Obs:
        d = expect_obs(marker, expected_out, [pi.obs(marker) for pi in packet_in])
        d["install"] = [list(e) for e in install_errors]
        return d

    return Case(name, kind, body, expect, ci=ci, ovs_note=ovs_note)


def custom(
    name: str, kind: str, body: Callable[[Ctx], Obs], expected: Obs | Callable[[bytes], Obs],
    *, ci: bool = False, slow: bool = False, ovs_note: str = "",
) -> Case:  # fmt: skip
    """A case with its own body and a fixed expectation (or one built from the marker)."""
    exp = expected if callable(expected) else (lambda _m: expected)
    return Case(name, kind, body, exp, ci=ci, slow=slow, ovs_note=ovs_note)


def error_of(reply: Any) -> list[int] | None:
    """[type, code] of an error reply from `Ctx.request`, None for a real reply."""
    if isinstance(reply, tuple) and len(reply) == 3 and reply[0] == "error":
        return [reply[1], reply[2]]
    return None


__all__ = [
    "NO_BUFFER", "Pin", "Rules", "Send", "apply", "clear", "custom", "error_of", "flow", "fwd",
    "goto", "out", "setf", "table_miss", "write",
]  # fmt: skip
