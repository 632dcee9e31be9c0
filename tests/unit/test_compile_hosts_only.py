"""The hosts-only way of compiling (compile/network.py `CompileCache.last`): when nothing but
hosts' locations changed since the last compile (the manager bumps a network's `shape` on
every other change), the vlinks' part is taken whole and only the vswitches whose vports a
host changed are looked at again.  A live migration's compile is on its clock.  Every such
compile in the test suite is also made the whole way and compared (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tenantvisor.compile import network as cn
from tenantvisor.compile.network import CompileCache, compile_network
from tenantvisor.errors import TenantvisorError
from tenantvisor.mapping.alloc import IdAllocator
from tenantvisor.testbed.topo import fat_tree
from tests.unit.test_moved_paths import _network


@pytest.fixture
def ways(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Which way each compile took (not verifying here: that adds whole compiles; the
    results are compared with cacheless compiles below instead)."""
    monkeypatch.delenv(cn.VERIFY_ENV, raising=False)
    took: list[str] = []
    fast, full = cn._Compiler._fast, cn._Compiler._full

    def counted_fast(self: cn._Compiler, last: cn._Last) -> cn.NetworkState | None:
        got = fast(self, last)
        took.append("hosts-only" if got is not None else "hosts-only refused")
        return got

    def counted_full(self: cn._Compiler, key: tuple[object, ...]) -> cn.NetworkState:
        took.append("whole")
        return full(self, key)

    monkeypatch.setattr(cn._Compiler, "_fast", counted_fast)
    monkeypatch.setattr(cn._Compiler, "_full", counted_full)
    return took


def test_a_move_takes_the_hosts_only_way_and_any_other_change_the_whole(ways: list[str]) -> None:
    t = fat_tree(4)
    pt, m, net, hosts = _network(t, "hop")
    alloc, cache = IdAllocator(), CompileCache()
    first = compile_network(net, pt, alloc, 254, cache)
    h = hosts["h1"]
    m.move_host(net.id, h.id, t.switch("e3").dpid, 11)
    moved = compile_network(net, pt, alloc, 254, cache)
    assert moved == compile_network(net, pt, alloc, 254)  # the same as the whole way
    # the vswitches no host changed are the very pieces (and views) of the first compile
    same = [k for k in moved.views if moved.views[k] is first.views[k]]
    assert len(same) == len(moved.views) - 1  # h1's own vswitch: its vport follows it
    del ways[:]
    m.set_scalability(net.id, "lite")  # intent: the whole way
    compile_network(net, pt, alloc, 254, cache)
    m.move_host(net.id, h.id, t.switch("e5").dpid, 11)
    lite = compile_network(net, pt, alloc, 254, cache)
    pt.set_port(t.switch("e5").dpid, pt.switches[t.switch("e5").dpid].ports[12])  # fabric
    compile_network(net, pt, alloc, 254, cache)
    again = compile_network(net, pt, alloc, 254, cache)  # nothing changed: hosts-only
    assert ways == ["whole", "hosts-only", "whole", "hosts-only"]
    assert lite == again == compile_network(net, pt, alloc, 254)


def test_ids_lost_meanwhile_refuse_the_hosts_only_way(ways: list[str]) -> None:
    """Another instance won a tag a vlink's piece holds: that piece is made again, so the
    compile goes the whole way (and gets a new tag), as without the shortcut."""
    t = fat_tree(4)
    pt, m, net, hosts = _network(t, "exact")
    alloc, cache = IdAllocator(), CompileCache()
    first = compile_network(net, pt, alloc, 254, cache)
    space, owner = next(so for so in sorted(first.owners, key=repr) if so[0][0] == "tag")
    first_tag = alloc.peek(space, owner)
    assert first_tag is not None
    alloc.hold_foreign(space, ("other", 1), first_tag)
    m.move_host(net.id, hosts["h2"].id, t.switch("e4").dpid, 11)
    again = compile_network(net, pt, alloc, 254, cache)
    assert ways == ["whole", "hosts-only refused", "whole"]
    assert again == compile_network(net, pt, alloc, 254)
    taken = alloc.peek(space, owner)
    assert (space, owner) in again.owners and taken is not None and taken != first_tag


def test_the_manager_bumps_the_shape_for_every_change_but_a_move() -> None:
    t = fat_tree(4)
    _, m, net, hosts = _network(t, "exact")
    before = net.shape
    m.move_host(net.id, hosts["h1"].id, t.switch("e3").dpid, 11)
    assert net.shape == before
    m.set_controllers(net.id, ["tcp:127.0.0.1:6653"])
    assert net.shape == before + 1
    with pytest.raises(TenantvisorError):
        m.create_port(net.id, t.switch("e1").dpid, 99)  # no such port: refused
    assert net.shape == before + 1  # refused before anything changed: nothing to bump


def test_a_change_the_manager_did_not_see_is_caught_when_verifying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shortcut trusts `shape`: a change made behind the manager's back (no bump) is
    what the check in the tests exists for."""
    monkeypatch.setenv(cn.VERIFY_ENV, "1")
    t = fat_tree(4)
    pt, _, net, _ = _network(t, "exact")
    alloc, cache = IdAllocator(), CompileCache()
    compile_network(net, pt, alloc, 254, cache)
    next(iter(net.links.values())).backup_num = 1  # not through the manager
    with pytest.raises(AssertionError, match="hosts-only compile differs"):
        compile_network(net, pt, alloc, 254, cache)
