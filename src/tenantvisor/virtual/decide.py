"""What a vswitch does with a tenant's FLOW_MOD or ROLE_REQUEST, as functions that return
the messages to send and the state change, without sockets (faucet's valve pattern).

The endpoint (virtual/endpoint.py) is the thin I/O around them: it applies the returned
changes to its flow table and rule map and sends the returned physical operations.  So
refcounted rule ownership, MODIFY-in-place, rollback targets and role transitions are unit
tested here, with a real `VirtualFlowTable` and `PhysRuleMap` and no pswitch.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, replace

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.mapping.frmap import PhysRuleMap
from tenantvisor.openflow.codec import FlowMod, OFError, Oxm
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.virtual.flowtable import VFlow, VirtualFlowTable, normalize


@dataclass(frozen=True, slots=True)
class PhysOp:
    """One FLOW_MOD for a pswitch: `tenant` says whether an error it causes goes back to the
    tenant whose message caused it (or is the hypervisor's to log)."""

    pf: PhysFlow
    command: int  # OFPFC_ADD, OFPFC_MODIFY_STRICT or OFPFC_DELETE_STRICT
    tenant: bool = True
    # what the pswitch holds at pf's key before this operation (None: nothing), which it
    # keeps should it refuse the operation (see roll_back)
    held: PhysFlow | None = field(default=None, compare=False)


def reprogram(
    rules: PhysRuleMap, serial: int, old: tuple[PhysFlow, ...], new: tuple[PhysFlow, ...],
    modify: bool = True, reset: bool = False,
) -> list[PhysOp]:  # fmt: skip
    """Move a virtual rule from physical rules `old` to `new` in `rules` (state change) and
    return what the pswitches must be sent.  With `modify`, a rule whose key stays and that
    the pswitch carries for this owner is modified in place (counters stay, as OpenFlow's
    MODIFY wants); otherwise ADD, which also puts our cookie over another owner's rule.
    A rule the pswitch holds exactly and whose cookie names another rule (a reduced rule
    many tenant rules share) is never sent again: an ADD would only reset its counters.
    New rules are sent before old ones go (make before break: a packet arriving in between
    meets one or the other, never neither).  `reset`: a tenant MODIFY with RESET_COUNTS, so
    each of its own rules is sent with the flag, changed or not (the flag is the message's,
    not the rule's: the rule map keeps the rule without it)."""
    ops: list[PhysOp] = []
    new_keys = {pf.key for pf in new}
    old_keys = {pf.key for pf in old}
    for pf in new:
        before = rules.installed_for(pf.key)
        was_installed = rules.add(serial, pf)
        own = pf.cookie & layout.SERIAL_MASK == serial
        if before == pf and (modify or not own) and not (reset and own):
            continue  # the pswitch holds exactly this already (a shared rule, re-derived)
        in_place = modify and was_installed and pf.key in old_keys
        sent = replace(pf, flags=pf.flags | ofp.OFPFF_RESET_COUNTS) if reset and own else pf
        ops.append(PhysOp(sent, ofp.OFPFC_MODIFY_STRICT if in_place else ofp.OFPFC_ADD,
                          held=before))  # fmt: skip
    for pf in old:
        if pf.key not in new_keys:
            ops += release(rules, serial, pf, tenant=False)
    return ops


def release(
    rules: PhysRuleMap, serial: int, pf: PhysFlow, gone: bool = False, tenant: bool = True
) -> list[PhysOp]:
    """`serial` gives up `pf`: delete it, or put back the rule of the key's next owner (that
    one's errors are not this tenant message's).  `gone`: the pswitch removed it already."""
    nxt = rules.remove(serial, pf)
    if nxt is None or (nxt is pf and gone):
        return []
    if nxt is pf:
        return [PhysOp(pf, ofp.OFPFC_DELETE_STRICT, tenant)]
    return [PhysOp(nxt, ofp.OFPFC_ADD, False)]


def drop(rules: PhysRuleMap, vf: VFlow, gone: PhysFlow | None = None) -> list[PhysOp]:
    """A removed virtual rule gives up every physical rule it had."""
    ops: list[PhysOp] = []
    for pf in vf.phys:
        ops += release(rules, vf.serial, pf, gone=pf is gone)
    return ops


def roll_back(rules: PhysRuleMap, vf: VFlow, refused: Mapping[PhysFlow, PhysOp]) -> list[PhysOp]:
    """A new rule the pswitch refused leaves (`refused`: the operations of its physical
    rules the pswitch refused, all of them known: after a barrier).  What it took is
    deleted as any removed rule's.  What it refused it never took: it still holds at that
    key what it held before (`PhysOp.held`), so nothing of it is deleted (a delete with
    the refused rule's match would only be refused again); the key is moved to its next
    owner's rule only if that is not what the pswitch held, and left to whoever took it
    after `vf` otherwise."""
    ops: list[PhysOp] = []
    for pf in vf.phys:
        op = refused.get(pf)
        if op is None:
            ops += release(rules, vf.serial, pf, tenant=False)
            continue
        nxt = rules.remove(vf.serial, pf)
        if nxt is None or nxt == op.held:
            continue  # not the key's last word, or the pswitch has what it should
        if nxt is pf:  # no owner left: what the pswitch held (an older version) goes
            if op.held is not None:
                ops.append(PhysOp(op.held, ofp.OFPFC_DELETE_STRICT, False))
            continue
        ops.append(PhysOp(nxt, ofp.OFPFC_ADD, False))
    return ops


def split_exceptions(
    installed: tuple[PhysFlow, ...], want: tuple[PhysFlow, ...]
) -> tuple[tuple[PhysFlow, ...], tuple[PhysFlow, ...]]:
    """A vswitch's exception drops while its network's outbox stages a tenant FLOW_MOD
    (virtual/outbox.py): (`kept`, `pending`).  `kept` is what the pswitch is moved to now
    (wanted drops on keys it holds; the unwanted ones go, as any operation, in order);
    `pending` are the new drops, not sent unless still wanted when the outbox flushes (then
    before everything it held)."""
    keys = {pf.key for pf in installed}
    kept = tuple(pf for pf in want if pf.key in keys)
    if len(kept) == len(want):
        return kept, ()
    return kept, tuple(pf for pf in want if pf.key not in keys)


# --- FLOW_MOD ------------------------------------------------------------------------------
@dataclass(slots=True)
class Added:
    """A new rule (or one replacing the rule with the same table, priority and match)."""

    vflow: VFlow
    phys: tuple[PhysFlow, ...]


@dataclass(slots=True)
class Modified:
    vflow: VFlow
    instructions: bytes
    phys: tuple[PhysFlow, ...]
    reset: bool = False  # the MODIFY asked for RESET_COUNTS


@dataclass(slots=True)
class Removed:
    vflow: VFlow


Change = Added | Modified | Removed
# (vflow-to-be, its table, match, instructions, priority) -> its physical rules; raises
# OFError for anything the tenant may not do
Translate = Callable[[VFlow, int, list[Oxm], bytes, int], tuple[PhysFlow, ...]]


def decide_flow_mod(
    fm: FlowMod, table: VirtualFlowTable, n_tables: int, max_rules: int, translate: Translate,
    tenant_full: Callable[[], str | None] | None = None,
) -> list[Change]:  # fmt: skip
    """The changes one FLOW_MOD makes to a vswitch's flow table, each with the physical
    rules it now needs; raises OFError (and changes nothing) when the tenant may not do it.
    Every rule is translated before anything changes, so a refusal leaves no half state.
    A new rule beyond `max_rules` in this vswitch, or beyond the tenant's quota over all
    its vswitches (`tenant_full` says why, or None), finds the table full (TABLE_FULL):
    OpenFlow's word for "no room", which a controller already handles."""
    cmd = fm.command
    if cmd == ofp.OFPFC_ADD:
        if fm.buffer_id != ofp.OFP_NO_BUFFER:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN, "no buffers")
        if fm.table_id == ofp.OFPTT_ALL:
            raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID, "table ALL")
        norm = normalize(fm.match)
        old = table.get(fm.table_id, fm.priority, norm)
        vf = VFlow(
            old.serial if old is not None else table.new_serial(),
            fm.table_id, fm.priority, fm.match, norm, fm.instructions, fm.cookie,
            fm.idle_timeout, fm.hard_timeout, fm.flags,
        )  # fmt: skip
        phys = translate(vf, fm.table_id, fm.match, fm.instructions, fm.priority)
        if fm.flags & ofp.OFPFF_CHECK_OVERLAP:
            table.check_overlap(fm, norm)
        if old is None and len(table) >= max_rules:
            raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL,
                          f"{len(table)} rules: the vswitch's limit")  # fmt: skip
        if old is None and tenant_full is not None and (why := tenant_full()) is not None:
            raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, why)
        return [Added(vf, phys)]
    if cmd in (ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT):
        norm = normalize(fm.match)
        targets = table.select(fm, norm, cmd == ofp.OFPFC_MODIFY_STRICT, filter_out=False)
        reset = bool(fm.flags & ofp.OFPFF_RESET_COUNTS)
        return [
            Modified(vf, fm.instructions,
                     translate(vf, vf.table, vf.match, fm.instructions, vf.priority), reset)
            for vf in targets
        ]  # fmt: skip
    if cmd in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
        if fm.table_id != ofp.OFPTT_ALL and fm.table_id >= n_tables:
            raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID, "bad table")
        norm = normalize(fm.match)
        strict = cmd == ofp.OFPFC_DELETE_STRICT
        return [Removed(vf) for vf in table.select(fm, norm, strict, filter_out=True)]
    raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_COMMAND, f"command {cmd}")


# --- ROLE_REQUEST --------------------------------------------------------------------------
@dataclass(slots=True)
class RoleState:
    """The roles of a vswitch's controller connections and the last generation id."""

    roles: dict[Hashable, int] = field(default_factory=dict)
    generation: int | None = None


_ROLES = (ofp.OFPCR_ROLE_NOCHANGE, ofp.OFPCR_ROLE_EQUAL, ofp.OFPCR_ROLE_MASTER,
          ofp.OFPCR_ROLE_SLAVE)  # fmt: skip


def decide_role(
    roles: Mapping[Hashable, int], generation: int | None, conn: Hashable, role: int, gen: int
) -> tuple[dict[Hashable, int], int | None]:
    """OF1.3 7.3.9 as a function: the roles and generation id after `conn` asks for `role`
    with generation `gen` (raises OFError for a bad role or a stale generation).  A new
    MASTER makes the previous one SLAVE; EQUAL needs no generation."""
    if role not in _ROLES:
        raise OFError(ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_BAD_ROLE, f"role {role}")
    if role in (ofp.OFPCR_ROLE_MASTER, ofp.OFPCR_ROLE_SLAVE):
        if generation is not None and ((gen - generation) & (1 << 64) - 1) >= 1 << 63:
            raise OFError(ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, "stale generation")
        generation = gen
    new = dict(roles)
    if role != ofp.OFPCR_ROLE_NOCHANGE:
        if role == ofp.OFPCR_ROLE_MASTER:
            for other, r in roles.items():
                if other != conn and r == ofp.OFPCR_ROLE_MASTER:
                    new[other] = ofp.OFPCR_ROLE_SLAVE
        new[conn] = role
    return new, generation
