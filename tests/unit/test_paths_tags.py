"""vlink paths over the discovered topology, and per-port fabric tag allocation."""

from __future__ import annotations

import itertools

import pytest

from tenantvisor.mapping.layout import MAX_TAG
from tenantvisor.mapping.paths import Hop, NoPath, vlink_path
from tenantvisor.mapping.tags import TagAllocator, TagSpaceExhausted
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo


def topology(
    switches: dict[int, list[int]], links: list[tuple[int, int, int, int]]
) -> PhysicalTopology:
    """Switches with ports, and bidirectional links (a_dpid, a_port, b_dpid, b_port)."""
    topo = PhysicalTopology()
    for dpid, ports in switches.items():
        topo.add_switch(PSwitchInfo(dpid=dpid, n_tables=254))
        for p in ports:
            topo.set_port(dpid, PPort(p, f"s{dpid}-eth{p}", f"02:00:00:00:{dpid:02x}:{p:02x}"))
    for a, ap, b, bp in links:
        topo.add_link(PLink(a, ap, b, bp))
        topo.add_link(PLink(b, bp, a, ap))
    return topo


@pytest.fixture
def line() -> PhysicalTopology:
    """s1 - s2 = s3 - s4 (port 2 faces port 1 of the next; s2/s3 also joined on ports 5),
    s1 port 3 is an edge port, s8 - s9 an island."""
    return topology(
        {1: [1, 2, 3], 2: [1, 2, 5], 3: [1, 2, 5], 4: [1, 2], 8: [1], 9: [1]},
        [(1, 2, 2, 1), (2, 2, 3, 1), (2, 5, 3, 5), (3, 2, 4, 1), (8, 1, 9, 1)],
    )


# --- paths ---------------------------------------------------------------------------------
def test_vports_on_adjacent_pswitches_are_joined_by_one_hop(line: PhysicalTopology) -> None:
    assert vlink_path(line, (1, 2), (2, 1)) == [Hop(1, 2, 2, 1)]
    assert vlink_path(line, (2, 1), (1, 2)) == [Hop(2, 1, 1, 2)]


def test_path_leaves_by_the_source_port_and_enters_by_the_destination_port(
    line: PhysicalTopology,
) -> None:
    assert vlink_path(line, (1, 2), (4, 1)) == [
        Hop(1, 2, 2, 1),
        Hop(2, 2, 3, 1),  # of the parallel links (2,1) and (5,5), the lowest port pair
        Hop(3, 2, 4, 1),
    ]


def test_reverse_direction_is_its_own_path(line: PhysicalTopology) -> None:
    assert vlink_path(line, (4, 1), (1, 2)) == [Hop(4, 1, 3, 2), Hop(3, 1, 2, 2), Hop(2, 1, 1, 2)]


def test_consecutive_hops_are_chained(line: PhysicalTopology) -> None:
    hops = vlink_path(line, (1, 2), (4, 1))
    for a, b in itertools.pairwise(hops):
        assert a.dst_dpid == b.src_dpid


def test_parallel_link_is_used_when_the_preferred_one_goes_down(line: PhysicalTopology) -> None:
    line.set_port(2, PPort(2, "s2-eth2", "02:00:00:00:02:02", up=False))
    assert vlink_path(line, (1, 2), (4, 1))[1] == Hop(2, 5, 3, 5)


def test_a_port_facing_no_pswitch_has_no_path(line: PhysicalTopology) -> None:
    with pytest.raises(NoPath):
        vlink_path(line, (1, 3), (4, 1))
    with pytest.raises(NoPath):
        vlink_path(line, (4, 1), (1, 3))


def test_a_disconnected_island_has_no_path(line: PhysicalTopology) -> None:
    with pytest.raises(NoPath):
        vlink_path(line, (1, 2), (9, 1))


def test_path_breaks_when_every_link_between_two_switches_is_down(line: PhysicalTopology) -> None:
    line.remove_port(2, 2)
    line.remove_port(2, 5)
    with pytest.raises(NoPath):
        vlink_path(line, (1, 2), (4, 1))


def test_path_is_the_shortest_by_hop_count() -> None:
    # s2 reaches s5 directly (2:3-5:3) or through s3 and s4
    topo = topology(
        {1: [1], 2: [1, 2, 3], 3: [1, 2], 4: [1, 2], 5: [1, 2, 3], 6: [1]},
        [(1, 1, 2, 1), (2, 2, 3, 1), (3, 2, 4, 1), (4, 2, 5, 1), (2, 3, 5, 3), (5, 2, 6, 1)],
    )
    assert vlink_path(topo, (1, 1), (6, 1)) == [
        Hop(1, 1, 2, 1),
        Hop(2, 3, 5, 3),
        Hop(5, 2, 6, 1),
    ]


def test_a_vlink_never_routes_back_through_its_own_end_switches() -> None:
    # s1 -> s2, and s1 -> s3 -> s4; s2 reaches s3 only through s1 (the source switch)
    topo = topology(
        {1: [1, 2], 2: [1], 3: [1, 2], 4: [1]},
        [(1, 1, 2, 1), (1, 2, 3, 1), (3, 2, 4, 1)],
    )
    with pytest.raises(NoPath):
        vlink_path(topo, (1, 1), (4, 1))


def test_destination_port_facing_back_along_the_path_makes_a_hairpin(
    line: PhysicalTopology,
) -> None:
    # the destination vport is s2 port 2, which faces s3: the path enters s2 from s3
    assert vlink_path(line, (1, 2), (2, 2)) == [
        Hop(1, 2, 2, 1),
        Hop(2, 2, 3, 1),
        Hop(3, 1, 2, 2),
    ]


# --- tags ----------------------------------------------------------------------------------
P1, P2 = (1, 1), (1, 2)


def test_a_tag_is_stable_for_its_owner() -> None:
    tags = TagAllocator()
    assert tags.get(P1, "a") == tags.get(P1, "a") == 1


def test_owners_on_one_port_get_distinct_tags() -> None:
    tags = TagAllocator()
    assert [tags.get(P1, o) for o in "abc"] == [1, 2, 3]


def test_each_port_has_its_own_tag_space() -> None:
    tags = TagAllocator()
    assert tags.get(P1, "a") == 1
    assert tags.get(P2, "b") == 1


def test_an_owner_moving_to_another_port_frees_its_old_tag() -> None:
    tags = TagAllocator()
    assert tags.get(P1, "a") == 1
    assert tags.get(P2, "a") == 1
    assert tags.get(P1, "b") == 1  # a's old tag on P1 is free again
    assert tags.owners() == ["a", "b"]


def test_a_released_tag_is_reused_lowest_first() -> None:
    tags = TagAllocator()
    for o in "abc":
        tags.get(P1, o)
    tags.release("b")
    assert tags.get(P1, "d") == 2
    assert tags.get(P1, "e") == 4


def test_releasing_an_unknown_owner_changes_nothing() -> None:
    tags = TagAllocator()
    tags.get(P1, "a")
    tags.release("zzz")
    assert tags.owners() == ["a"]


def test_release_where_releases_the_owners_the_predicate_picks() -> None:
    tags = TagAllocator()
    for i, o in enumerate([(1, "x"), (1, "y"), (2, "x")]):
        tags.get((1, i), o)
    tags.release_where(lambda o: o[0] == 1)
    assert tags.owners() == [(2, "x")]


def test_port_tag_space_is_1_to_4094_and_then_exhausted() -> None:
    tags = TagAllocator()
    got = [tags.get(P1, i) for i in range(MAX_TAG)]
    assert got == list(range(1, 4095))  # never 0 (no VLAN) nor 0xfff (reserved)
    with pytest.raises(TagSpaceExhausted):
        tags.get(P1, "one too many")
    assert tags.get(P2, "elsewhere") == 1
    tags.release(17)
    assert tags.get(P1, "late") == 18


def test_paths_are_derived_again_only_when_a_link_can_have_changed() -> None:
    """A host's port coming and going (a live migration's re-plug) keeps the paths and the
    link graph already derived; a link's port going down does not."""
    from tenantvisor.mapping.paths import switch_paths

    t = PhysicalTopology()
    for d in (1, 2, 3):
        t.add_switch(PSwitchInfo(d, {p: PPort(p, f"s{d}-eth{p}", "") for p in (1, 2, 3)}))
    for a, pa, b, pb in ((1, 2, 2, 1), (2, 2, 3, 1)):
        t.add_link(PLink(a, pa, b, pb))
        t.add_link(PLink(b, pb, a, pa))
    first = switch_paths(t, 1, 3, 0)
    graph, links = t.graph(), t.links_version
    t.set_port(1, PPort(9, "vm-new", ""))  # a VM plugged in
    t.remove_port(1, 3)  # and its old port gone
    t.set_port(3, PPort(3, "s3-eth3", "", up=False))
    assert t.links_version == links and t.graph() is graph
    assert switch_paths(t, 1, 3, 0) == first
    t.set_port(2, PPort(2, "s2-eth2", "", up=False))  # a link's port
    assert t.links_version > links and t.graph() is not graph
    assert switch_paths(t, 1, 3, 0) == []


def test_the_allocator_tells_which_owners_lost_their_ids_since_a_mark() -> None:
    from tenantvisor.mapping import alloc as alloc_mod
    from tenantvisor.mapping.alloc import IdAllocator

    al = IdAllocator()
    a = al.get(("tag", 1, 1), "a")
    al.get(("tag", 1, 1), "b")
    mark = al.lost_mark
    assert al.lost_since(mark) == []
    al.release(("tag", 1, 1), "b")
    al.hold_foreign(("tag", 1, 1), "x", a)  # another instance won a's id
    assert al.lost_since(mark) == [(("tag", 1, 1), "b"), (("tag", 1, 1), "a")]
    later = al.lost_mark
    for i in range(alloc_mod.LOST_KEEP + 1):  # long ago is forgotten: check everything
        al.get(("tag", 2, 1), i)
        al.release(("tag", 2, 1), i)
    assert al.lost_since(mark) is None and al.lost_since(later) is None
    now = al.lost_mark
    al.restore([(("tag", 3, 1), "y", 5)])
    assert al.lost_since(now) is None and al.lost_since(al.lost_mark) == []
