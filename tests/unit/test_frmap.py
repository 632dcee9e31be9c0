"""The physical rule map: a physical rule stays while any virtual rule still wants it."""

from __future__ import annotations

from tenantvisor.mapping.frmap import PhysRuleMap
from tenantvisor.translate.flow import PhysFlow


def rule(cookie: int, actions: bytes = b"a", match: bytes = b"m") -> PhysFlow:
    return PhysFlow(1, 1, 5, match, actions, cookie)


def test_the_last_owner_leaving_deletes_the_physical_rule() -> None:
    m = PhysRuleMap()
    pf = rule(1)
    assert m.add(1, pf) is False
    assert m.remove(1, pf) is pf
    assert len(m) == 0


def test_removing_the_installed_owner_reinstalls_the_next_one() -> None:
    m = PhysRuleMap()
    a, b = rule(1, b"A"), rule(2, b"B")  # same key, different owners and actions
    m.add(1, a)
    m.add(2, b)
    assert m.installed() == [b]
    assert m.remove(2, b) is a  # a must go back on the pswitch
    assert m.installed() == [a]


def test_removing_an_owner_that_is_not_installed_changes_nothing_on_the_switch() -> None:
    m = PhysRuleMap()
    a, b = rule(1, b"A"), rule(2, b"B")
    m.add(1, a)
    m.add(2, b)
    assert m.remove(1, a) is None
    assert m.installed() == [b]


def test_re_adding_the_installed_owner_says_so_for_an_in_place_modify() -> None:
    m = PhysRuleMap()
    m.add(1, rule(1, b"A"))
    assert m.add(1, rule(1, b"A2")) is True
    m.add(2, rule(2, b"B"))
    assert m.add(1, rule(1, b"A3")) is False  # 2 was installed: 1 must replace it with ADD
    assert m.owners(rule(1).key) == [2, 1]


def test_removing_an_unknown_owner_is_a_no_op() -> None:
    m = PhysRuleMap()
    assert m.remove(9, rule(9)) is None


def test_a_fallback_owner_never_displaces_the_installed_rule() -> None:
    m = PhysRuleMap()
    tenant, implicit = rule(1, b"T"), rule(0, b"MISS")
    m.add(1, tenant)
    assert m.add_fallback(0, implicit) is False  # the tenant's rule stays on the switch
    assert m.installed() == [tenant]
    assert m.remove(1, tenant) is implicit  # and the fallback comes back when it goes
    assert m.add_fallback(0, implicit) is False or m.installed() == [implicit]


def test_a_fallback_alone_is_installed() -> None:
    m = PhysRuleMap()
    assert m.add_fallback(0, rule(0)) is True
