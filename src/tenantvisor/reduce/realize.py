"""A vswitch's reduction plan (prove.py) as physical rules: pure, like translate/.

Each reduced (rule, link vport) pair becomes a rule on the pswitch of that vport: the kept
fields plus the vport (metadata), `fabric_only` (a packet a controller injected has the
INJECTED bit and never meets it), at `REDUCED_PRIORITY` above every exact rule, with the
tenant rule's own actions for that ingress, and a cookie that names the network but no
tenant rule (`REDUCED_SERIAL`): many tenant rules share it, and which of them it stands for
changes as they come and go without the physical rule changing.  The exact rules of the
plan's `exact` serials are the endpoint's usual translation and are not built here.
"""

from __future__ import annotations

from collections.abc import Mapping

from tenantvisor.mapping import layout
from tenantvisor.openflow import codec, oxm
from tenantvisor.reduce.headerspace import FIELDS, Cube
from tenantvisor.reduce.prove import Reduced, VSwitchPlan
from tenantvisor.translate import infra
from tenantvisor.translate.flow import PhysFlow, lite_forward, translate_flow
from tenantvisor.translate.view import VSwitchView
from tenantvisor.virtual.flowtable import VFlow

REDUCED_PRIORITY = 0xFFFE  # above every exact rule (the proof's argument, prove.py)
EXCEPTION_PRIORITY = 0xFFFF  # above the reduced rules they are exceptions to
REDUCED_SERIAL = layout.SERIAL_MASK  # never a tenant rule's serial (they count from 1)
# LITE rules sit in table 0 above the classification of their tag block (which sends the
# packets no LITE rule takes to the tenant tables), their exception drops above them
LITE_PRIORITY = infra.PRIO_CLASSIFY + 1
LITE_EXCEPTION_PRIORITY = infra.PRIO_CLASSIFY + 2


def cube_oxms(cube: Cube) -> list[codec.Oxm]:
    """The OXMs of a cube's constraints (in_port and metadata left out: the physical rule
    pins the vport through metadata itself)."""
    out = []
    for spec in FIELDS:
        if spec.oxm in (oxm.IN_PORT, oxm.METADATA):
            continue
        value, mask = cube.get(spec.oxm)
        if not mask:
            continue
        width = (1 << spec.bits) - 1
        n = spec.nbytes
        out.append(codec.Oxm(
            codec.OXM_CLASS_OPENFLOW_BASIC, spec.oxm, value.to_bytes(n, "big"),
            None if mask == width else mask.to_bytes(n, "big"),
        ))  # fmt: skip
    return out


def exception_rule(
    view: VSwitchView,
    arrival: Cube,
    vport: int,
    winner: VFlow | None,
    groups: Mapping[int, int],
    meters: Mapping[int, int],
    pin_meter: int | None = None,
) -> PhysFlow:
    """An arrival that a reduced rule does not decide right, decided as its exact winner does
    (or dropped: a miss): the winner's rule restricted to the arrival, counted as the
    winner (its cookie), so the winner's counters and PACKET_INs stay its own (and its
    PACKET_INs pass the vswitch's meter, `pin_meter`, as the winner's own rule's do)."""
    match = [*cube_oxms(arrival), codec.oxm_u32(oxm.IN_PORT, vport)]
    ins = winner.instructions if winner is not None else b""
    tf = translate_flow(view, 0, match, ins, groups, meters, fabric_only=True,
                        pin_meter=pin_meter)  # fmt: skip
    serial = winner.serial if winner is not None else REDUCED_SERIAL
    ((m, i),) = tf.flows
    return PhysFlow(
        view.dpid, tf.table, EXCEPTION_PRIORITY, m, i,
        layout.tenant_cookie(view.net_id, serial),
    )  # fmt: skip


def lite_rule(view: VSwitchView, vport: int, red: Reduced) -> PhysFlow | None:
    """The LITE rule of `red` on ingress `vport`: the fabric tag of its destination on that
    vport's block, to the tenant rule's outputs (None: no LITE tags arrive there)."""
    pm = view.ports.get(vport)
    if pm is None or pm.lite_in is None:
        return None
    in_port, base = pm.lite_in
    outs = red.fate[1] if isinstance(red.fate, tuple) and len(red.fate) == 2 else ()
    match = codec.encode_match(infra.lite_block_match(in_port, base | red.dst))
    ins = codec.encode_instructions(apply_actions=lite_forward(view, vport, tuple(outs), red.dst))
    return PhysFlow(view.dpid, 0, LITE_PRIORITY, match, ins,
                    layout.tenant_cookie(view.net_id, REDUCED_SERIAL))  # fmt: skip


def lite_exception_rule(view: VSwitchView, arrival: Cube, vport: int, dst: int) -> PhysFlow | None:
    """A LITE-tagged arrival that misses in the tenant's table: dropped above the LITE rule
    (the tag is the outer VLAN there; prove.py never makes one of VLAN-constrained cubes)."""
    pm = view.ports.get(vport)
    if pm is None or pm.lite_in is None:
        return None
    in_port, base = pm.lite_in
    match = codec.encode_match([*infra.lite_block_match(in_port, base | dst),
                                *cube_oxms(arrival)])  # fmt: skip
    return PhysFlow(view.dpid, 0, LITE_EXCEPTION_PRIORITY, match, b"",
                    layout.tenant_cookie(view.net_id, REDUCED_SERIAL))  # fmt: skip


def reduced_rule(
    view: VSwitchView, vf: VFlow, vport: int, red: Reduced, groups: Mapping[int, int]
) -> PhysFlow:
    """The physical rule standing for `vf` on ingress `vport` at the plan's level."""
    match = [*red.kept, codec.oxm_u32(oxm.IN_PORT, vport)]
    tf = translate_flow(view, 0, match, vf.instructions, groups, {}, fabric_only=True)
    ((m, ins),) = tf.flows  # forwarding to plain vports with in_port pinned: one rule
    return PhysFlow(
        view.dpid, tf.table, REDUCED_PRIORITY, m, ins,
        layout.tenant_cookie(view.net_id, REDUCED_SERIAL),
    )  # fmt: skip


def realize(
    views: Mapping[int, VSwitchView],
    rules: Mapping[int, VFlow],
    plan: VSwitchPlan,
    groups: Mapping[int, int] | None = None,
) -> dict[tuple[int, int, int, bytes], PhysFlow]:
    """The reduced rules of `plan`, one per physical key (tenant rules whose reduced rules
    are equal share it); `views` by vport: the view of the pswitch where each vport is."""
    out: dict[tuple[int, int, int, bytes], PhysFlow] = {}
    for (serial, vport), red in sorted(plan.reduced.items(), key=lambda kv: kv[0]):
        vf = rules.get(serial)
        view = views.get(vport)
        if vf is None or view is None:
            continue
        if red.level == "lite":
            got = lite_rule(view, vport, red)
            if got is None:
                continue
            pf = got
        else:
            pf = reduced_rule(view, vf, vport, red, groups or {})
        have = out.get(pf.key)
        if have is not None and have.instructions != pf.instructions:
            raise AssertionError(f"reduced rules of one match disagree: {have} / {pf}")
        out[pf.key] = pf
    return out
