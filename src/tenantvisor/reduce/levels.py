"""What each scalability level keeps of a tenant rule, and which rules may be reduced at all.

Levels, coarsest last (Libera IV.B, FlowVirt): `exact` keeps the tenant's match; `app` keeps
the host pair, the IP protocol and the L4 port pair; `host` keeps the host pair (Ethernet and
IP addresses); `hop` keeps nothing of the packet (the ingress vport, which the physical rule
pins through metadata, and the output, which is its action).  A field is kept with the fields
OpenFlow requires before it (`eth_type` before an address, `ip_proto` before a port), so every
projection is a valid match.  `lite` is tag-based: a forwarding rule that pins eth_dst to a
host of the network carries that host's edge (its destination LITE) in the fabric tag of the
LITE links it outputs to, and past the first hop the rule may be realised by one rule per
(ingress vport, destination LITE) matching only the tag (prove.py, docs/design.md).  Such a
rule's finer level is `exact` (a shared finer rule could not carry a per-destination tag);
every other rule of a `lite` network is tried at `hop`, then finer.

A rule may be reduced only when what it does to a packet is forwarding and nothing else
(`forwarding`): table 0, apply-actions that are outputs to vports, no timeouts, no
flow-removed flag, no metadata match.  Everything else keeps its exact physical rule; its
fate (`fate`) still takes part in the proofs of the others.
"""

from __future__ import annotations

from collections.abc import Hashable

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm
from tenantvisor.virtual.flowtable import VFlow

LEVELS = ("exact", "app", "host", "hop", "lite")  # finest first
HOST_FIELDS = frozenset({
    oxm.ETH_SRC, oxm.ETH_DST, oxm.ETH_TYPE, oxm.IPV4_SRC, oxm.IPV4_DST,
    oxm.IPV6_SRC, oxm.IPV6_DST, oxm.ARP_SPA, oxm.ARP_TPA,
})  # fmt: skip
APP_FIELDS = HOST_FIELDS | {
    oxm.IP_PROTO, oxm.TCP_SRC, oxm.TCP_DST, oxm.UDP_SRC, oxm.UDP_DST, oxm.SCTP_SRC, oxm.SCTP_DST,
}  # fmt: skip
KEPT: dict[str, frozenset[int] | None] = {
    "exact": None,  # everything
    "app": APP_FIELDS,
    "host": HOST_FIELDS,
    "hop": frozenset(),
    "lite": frozenset(),  # the tag, not the packet (prove.py); others at `hop`
}
DROP: Hashable = ("drop",)  # no rule, or a rule without actions


def finer(level: str) -> list[str]:
    """`level` and the finer ones after it, down to (not including) exact: the order in
    which a rule is tried before it stays exact."""
    if level not in KEPT:
        return []
    i = LEVELS.index(level)
    return [lv for lv in reversed(LEVELS[1 : i + 1]) if lv != "lite"]


def _apply_only(vf: VFlow) -> list[codec.Action] | None:
    """The rule's apply-actions when that is all its instructions do (no action set, goto,
    meter, metadata or other instruction), else None (also when they cannot be read)."""
    try:
        ins = codec.parse_instructions(vf.instructions)
    except (codec.OFError, codec.MalformedMessage):
        return None
    if ins.write_actions or ins.goto_table is not None or ins.meter is not None:
        return None
    if ins.clear_actions or ins.write_metadata is not None or ins.other:
        return None
    return ins.apply_actions or []


def outputs(vf: VFlow) -> tuple[int, ...] | None:
    """The vports a forwarding-only rule outputs to, in order; None when the rule does
    anything else (or nothing: a drop is not forwarding)."""
    if vf.table != 0 or vf.idle_timeout or vf.hard_timeout:
        return None
    if vf.flags & ofp.OFPFF_SEND_FLOW_REM:
        return None
    if any(k[1] == oxm.METADATA for k, _, _, _ in vf.norm):
        return None
    apply = _apply_only(vf)
    if apply is None:
        return None
    ports: list[int] = []
    for a in apply:
        if a.type != ofp.OFPAT_OUTPUT:
            return None
        port = codec.u32(a.raw, 4)
        if port >= ofp.OFPP_MAX:  # reserved ports depend on more than the match
            return None
        ports.append(port)
    return tuple(ports) or None


def punts(vf: VFlow) -> bool:
    """A table-0 table-miss rule that only sends to the controller (a reactive controller's):
    the arrivals it decides are exceptions above a reduced rule, like misses, not reasons to
    refine it (prove.py), and its copy there is plain (no group, no meter, no rewrite)."""
    if vf.table != 0 or not vf.is_table_miss or vf.flags & ofp.OFPFF_SEND_FLOW_REM:
        return False
    acts = _apply_only(vf)
    if not acts:
        return False
    return all(
        a.type == ofp.OFPAT_OUTPUT and codec.u32(a.raw, 4) == ofp.OFPP_CONTROLLER for a in acts
    )


def fate(vf: VFlow) -> Hashable:
    """What the rule does to a packet, as far as proofs compare: forwarding rules by their
    outputs (two rules sending to the same vports are interchangeable), drops alike, and
    anything else as itself (its PACKET_IN names it, its rewrite is its own)."""
    out = outputs(vf)
    if out is not None:
        return ("out", out)
    try:
        ins = codec.parse_instructions(vf.instructions)
    except (codec.OFError, codec.MalformedMessage):
        return ("rule", vf.serial)
    plain = not (ins.write_actions or ins.goto_table is not None or ins.meter is not None
                 or ins.write_metadata is not None or ins.other)  # fmt: skip
    if plain and not ins.apply_actions and vf.table == 0:
        return DROP
    return ("rule", vf.serial)
