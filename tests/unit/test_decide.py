"""A vswitch's decisions without sockets: FLOW_MOD changes and their physical operations,
shared physical rules, and role transitions (virtual/decide.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.mapping.frmap import PhysRuleMap
from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.codec import FlowMod, OFError, Oxm
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.virtual.decide import (
    Added,
    Modified,
    PhysOp,
    Removed,
    decide_flow_mod,
    decide_role,
    drop,
    release,
    reprogram,
    roll_back,
)
from tenantvisor.virtual.flowtable import VFlow, VirtualFlowTable

OUT1 = codec.encode_instructions(apply_actions=codec.output(1))
OUT2 = codec.encode_instructions(apply_actions=codec.output(2))


def _fm(command: int, match: list[Oxm], instructions: bytes = OUT1, **kw: int) -> FlowMod:
    return FlowMod(
        kw.get("cookie", 0), kw.get("cookie_mask", 0), kw.get("table", 0), command, 0, 0,
        kw.get("priority", 10), ofp.OFP_NO_BUFFER, kw.get("out_port", ofp.OFPP_ANY),
        ofp.OFPG_ANY, kw.get("flags", 0), match, instructions,
    )  # fmt: skip


def _translate(
    vf: VFlow, table: int, match: list[Oxm], ins: bytes, prio: int
) -> tuple[PhysFlow, ...]:
    """A stand-in translation: one physical rule per virtual rule, refusing output 99."""
    if ins == codec.encode_instructions(apply_actions=codec.output(99)):
        raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT, "port 99")
    return (PhysFlow(1, table + 1, prio, codec.encode_match(match), ins, vf.serial),)


MAC = [codec.oxm_mac(oxm.ETH_DST, "02:00:00:00:00:01")]


def _apply(table: VirtualFlowTable, changes: list[Added | Modified | Removed]) -> None:
    for ch in changes:
        if isinstance(ch, Added):
            table.put(ch.vflow)
        elif isinstance(ch, Modified):
            ch.vflow.instructions = ch.instructions
        else:
            table.remove(ch.vflow)


def test_add_then_replace_keeps_the_serial() -> None:
    t = VirtualFlowTable()
    (a,) = decide_flow_mod(_fm(ofp.OFPFC_ADD, MAC), t, 4, 100, _translate)
    assert isinstance(a, Added) and a.phys[0].cookie == a.vflow.serial
    _apply(t, [a])
    (b,) = decide_flow_mod(_fm(ofp.OFPFC_ADD, MAC, OUT2), t, 4, 100, _translate)
    assert isinstance(b, Added) and b.vflow.serial == a.vflow.serial


def test_a_refused_rule_changes_nothing() -> None:
    t = VirtualFlowTable()
    bad = codec.encode_instructions(apply_actions=codec.output(99))
    with pytest.raises(OFError) as e:
        decide_flow_mod(_fm(ofp.OFPFC_ADD, MAC, bad), t, 4, 100, _translate)
    assert e.value.code == ofp.OFPBAC_BAD_OUT_PORT and len(t) == 0


def test_table_full_and_overlap_and_bad_commands() -> None:
    t = VirtualFlowTable()
    _apply(t, decide_flow_mod(_fm(ofp.OFPFC_ADD, MAC), t, 4, 1, _translate))
    other = [codec.oxm_mac(oxm.ETH_DST, "02:00:00:00:00:02")]
    with pytest.raises(OFError) as e:
        decide_flow_mod(_fm(ofp.OFPFC_ADD, other), t, 4, 1, _translate)
    assert e.value.code == ofp.OFPFMFC_TABLE_FULL
    # replacing a rule the vswitch holds is not a new rule
    assert decide_flow_mod(_fm(ofp.OFPFC_ADD, MAC, OUT2), t, 4, 1, _translate)
    with pytest.raises(OFError) as e:
        decide_flow_mod(_fm(ofp.OFPFC_ADD, [], flags=ofp.OFPFF_CHECK_OVERLAP), t, 4, 9, _translate)
    assert e.value.code == ofp.OFPFMFC_OVERLAP
    with pytest.raises(OFError) as e:
        decide_flow_mod(_fm(7, MAC), t, 4, 9, _translate)
    assert e.value.code == ofp.OFPFMFC_BAD_COMMAND
    with pytest.raises(OFError) as e:
        decide_flow_mod(_fm(ofp.OFPFC_DELETE, [], table=9), t, 4, 9, _translate)
    assert e.value.code == ofp.OFPFMFC_BAD_TABLE_ID


def test_modify_and_delete_select_like_openflow() -> None:
    t = VirtualFlowTable()
    for mac, prio in (("02:00:00:00:00:01", 10), ("02:00:00:00:00:02", 20)):
        m = [codec.oxm_mac(oxm.ETH_DST, mac)]
        _apply(t, decide_flow_mod(_fm(ofp.OFPFC_ADD, m, priority=prio), t, 4, 9, _translate))
    mods = decide_flow_mod(_fm(ofp.OFPFC_MODIFY, [], OUT2), t, 4, 9, _translate)
    assert len(mods) == 2 and all(isinstance(m, Modified) for m in mods)
    strict = decide_flow_mod(_fm(ofp.OFPFC_DELETE_STRICT, MAC, priority=10), t, 4, 9, _translate)
    assert [type(c) for c in strict] == [Removed]
    assert (
        decide_flow_mod(_fm(ofp.OFPFC_DELETE_STRICT, MAC, priority=11), t, 4, 9, _translate) == []
    )


def _pf(prio: int, out: bytes = OUT1) -> PhysFlow:
    return PhysFlow(1, 1, prio, codec.encode_match(MAC), out, 0)


def test_reprogram_modifies_in_place_and_releases_what_went() -> None:
    rules = PhysRuleMap()
    a, b = _pf(10), _pf(20)
    assert reprogram(rules, 1, (), (a, b), modify=False) == [
        PhysOp(a, ofp.OFPFC_ADD), PhysOp(b, ofp.OFPFC_ADD),
    ]  # fmt: skip
    a2 = _pf(10, OUT2)
    ops = reprogram(rules, 1, (a, b), (a2,))
    # make before break: what stays or comes is sent before what went is deleted
    assert ops == [PhysOp(a2, ofp.OFPFC_MODIFY_STRICT), PhysOp(b, ofp.OFPFC_DELETE_STRICT, False)]
    c = _pf(30)
    assert reprogram(rules, 1, (a2,), (c,)) == [
        PhysOp(c, ofp.OFPFC_ADD), PhysOp(a2, ofp.OFPFC_DELETE_STRICT, False),
    ]  # fmt: skip


def test_a_modify_with_reset_counts_resets_its_own_rules_even_unchanged() -> None:
    """RESET_COUNTS is the MODIFY's, not the rule's: each of the rule's own physical rules
    is sent with it (nothing else changing), and the rule map keeps them without it."""
    rules = PhysRuleMap()
    mine = PhysFlow(1, 1, 10, codec.encode_match(MAC), OUT1, layout.tenant_cookie(1, 1))
    reprogram(rules, 1, (), (mine,), modify=False)
    assert reprogram(rules, 1, (mine,), (mine,)) == []  # a plain MODIFY: nothing to do
    reset = replace(mine, flags=ofp.OFPFF_RESET_COUNTS)
    assert reprogram(rules, 1, (mine,), (mine,), reset=True) == [
        PhysOp(reset, ofp.OFPFC_MODIFY_STRICT, held=mine)
    ]
    assert rules.installed_for(mine.key) == mine
    shared = PhysFlow(1, 1, 20, codec.encode_match(MAC), OUT1, layout.SERIAL_MASK)
    reprogram(rules, 1, (), (shared,), modify=False)
    assert reprogram(rules, 1, (shared,), (shared,), reset=True) == []  # others' counts too


def test_a_shared_physical_rule_outlives_one_of_its_owners() -> None:
    rules = PhysRuleMap()
    mine, theirs = _pf(10), _pf(10, OUT2)
    reprogram(rules, 1, (), (mine,), modify=False)
    reprogram(rules, 2, (), (theirs,), modify=False)
    # owner 2's rule is installed; owner 2 leaving puts owner 1's back (not this tenant
    # message's error if it fails), owner 1 leaving then deletes it
    assert release(rules, 2, theirs) == [PhysOp(mine, ofp.OFPFC_ADD, False)]
    vf = VFlow(1, 0, 10, MAC, (), OUT1, 0, 0, 0, 0)
    vf.phys = (mine,)
    assert drop(rules, vf) == [PhysOp(mine, ofp.OFPFC_DELETE_STRICT)]
    assert len(rules) == 0


def test_an_expired_rule_is_not_deleted_again() -> None:
    rules = PhysRuleMap()
    pf = _pf(10)
    reprogram(rules, 1, (), (pf,), modify=False)
    assert release(rules, 1, pf, gone=True) == []


def _added(rules: PhysRuleMap, serial: int, *phys: PhysFlow) -> tuple[VFlow, list[PhysOp]]:
    """A new tenant rule with these physical rules, as the endpoint adds it."""
    vf = VFlow(serial, 0, 10, MAC, (), OUT1, 0, 0, 0, 0)
    vf.phys = phys
    return vf, reprogram(rules, serial, (), phys, modify=False)


def test_a_refused_rule_is_rolled_back_without_deleting_what_the_pswitch_never_took() -> None:
    rules = PhysRuleMap()
    a, b, c = _pf(10), _pf(20), _pf(30)
    vf, ops = _added(rules, 1, a, b, c)
    assert [op.held for op in ops] == [None, None, None]  # the keys were free
    # the pswitch refused a and c: only b, which it took, is deleted
    assert roll_back(rules, vf, {a: ops[0], c: ops[2]}) == [
        PhysOp(b, ofp.OFPFC_DELETE_STRICT, False)
    ]
    assert len(rules) == 0
    vf, ops = _added(rules, 1, a, b)
    assert roll_back(rules, vf, {a: ops[0], b: ops[1]}) == [] and len(rules) == 0


def test_a_refused_rule_on_a_key_the_pswitch_held_leaves_what_it_held_right() -> None:
    rules = PhysRuleMap()
    theirs, mine = _pf(10, OUT2), _pf(10)
    _added(rules, 2, theirs)
    vf, ops = _added(rules, 1, mine)  # on top of another rule's key
    assert ops[0].held == theirs
    assert roll_back(rules, vf, {mine: ops[0]}) == []  # the pswitch still has theirs
    assert rules.installed_for(mine.key) == theirs
    # a rule re-added over its own older version: that one is still there, and goes
    old = _pf(20, OUT2)
    _added(rules, 3, old)
    new = _pf(20)
    vf, ops = _added(rules, 3, new)
    assert ops[0].held == old
    assert roll_back(rules, vf, {new: ops[0]}) == [PhysOp(old, ofp.OFPFC_DELETE_STRICT, False)]
    # refused while another rule took the key after it: that one's ADD decides, not ours
    vf, ops = _added(rules, 4, mine)
    _added(rules, 5, _pf(10, codec.encode_instructions()))
    assert roll_back(rules, vf, {mine: ops[0]}) == []


# --- roles ------------------------------------------------------------------------------------
M, S, E = ofp.OFPCR_ROLE_MASTER, ofp.OFPCR_ROLE_SLAVE, ofp.OFPCR_ROLE_EQUAL


def test_a_new_master_demotes_the_old_one() -> None:
    roles, gen = decide_role({"a": M, "b": E}, 5, "b", M, 6)
    assert roles == {"a": S, "b": M} and gen == 6


def test_stale_generations_and_bad_roles_are_refused() -> None:
    with pytest.raises(OFError) as e:
        decide_role({"a": M}, 10, "b", M, 9)
    assert e.value.code == ofp.OFPRRFC_STALE
    with pytest.raises(OFError) as e:
        decide_role({"a": E}, None, "a", 7, 0)
    assert e.value.code == ofp.OFPRRFC_BAD_ROLE
    # generations wrap around: 0 after 2^64 - 1 is newer
    assert decide_role({}, (1 << 64) - 1, "a", S, 0)[1] == 0


def test_equal_and_nochange_need_no_generation() -> None:
    assert decide_role({"a": S}, 3, "a", E, 0) == ({"a": E}, 3)
    assert decide_role({"a": S}, 3, "a", ofp.OFPCR_ROLE_NOCHANGE, 0) == ({"a": S}, 3)


def test_an_add_does_not_send_again_a_shared_rule_the_pswitch_holds() -> None:
    """A tenant's ADD resets its own rule (counters), so its exact rule goes out again even
    when unchanged; a rule whose cookie names no one of them (a reduced rule many tenant
    rules share) is only sent when it is not there yet."""
    rules = PhysRuleMap()
    shared = PhysFlow(1, 1, 0xFFFE, b"m", OUT1, 0xFFFF)
    assert [op.command for op in reprogram(rules, 1, (), (shared,), modify=False)] == [
        ofp.OFPFC_ADD
    ]
    assert reprogram(rules, 2, (), (shared,), modify=False) == []
    assert reprogram(rules, 2, (shared,), (shared,), modify=False) == []  # re-added, same
    own = PhysFlow(1, 1, 10, b"m", OUT1, 3)
    reprogram(rules, 3, (), (own,), modify=False)
    assert [op.command for op in reprogram(rules, 3, (own,), (own,), modify=False)] == [
        ofp.OFPFC_ADD
    ]
    assert rules.owners(shared.key) == [1, 2]
