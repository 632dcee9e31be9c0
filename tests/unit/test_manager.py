"""The intent layer: validation, "a refused call changes nothing", tokens and visibility.

The fabric (fed through PhysicalTopology's own update methods, as sessions do):

    h  h          h           h
    1  2          1           1  2
   [s1]3 ---- 3[s2]4 ---- 3[s3]          [s4]3 ---- 3[s5]   (an island)
                                            1           1
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tenantvisor.errors import Conflict, InvalidRequest, NotFound, TenantvisorError, Unauthorized
from tenantvisor.mapping import layout
from tenantvisor.physical.topology import PhysicalTopology, PLink, PPort, PSwitchInfo
from tenantvisor.virtual.manager import NetworkManager, normalize_mac
from tenantvisor.virtual.model import Tenant, VirtualNetwork, VPort, VPortKind, VSwitch
from tenantvisor.virtual.urls import ControllerUrl, parse_controller_url

ADMIN = "admin-token-for-unit-tests"
MAC = "02:00:00:00:00:01"


def build_topology() -> PhysicalTopology:
    topo = PhysicalTopology()
    for dpid, ports in ((1, [1, 2, 3]), (2, [1, 3, 4]), (3, [1, 2, 3]), (4, [1, 3]), (5, [1, 3])):
        topo.add_switch(PSwitchInfo(dpid=dpid, n_tables=254))
        for n in ports:
            topo.set_port(dpid, PPort(n, f"s{dpid}-eth{n}", f"02:00:00:00:{dpid:02x}:{n:02x}"))
    for a, b in (((1, 3), (2, 3)), ((2, 4), (3, 3)), ((4, 3), (5, 3))):
        topo.add_link(PLink(a[0], a[1], b[0], b[1]))
        topo.add_link(PLink(b[0], b[1], a[0], a[1]))
    return topo


@dataclass
class World:
    m: NetworkManager
    a: Tenant
    b: Tenant
    net: VirtualNetwork  # tenant a's, started
    other: VirtualNetwork  # tenant b's
    s1: VSwitch
    s2: VSwitch
    s3: VSwitch
    s4: VSwitch
    edge1: VPort  # s1 port 1, host MAC attached
    link1: VPort  # s1 port 3, in a vlink with link2
    link2: VPort  # s2 port 3
    link2b: VPort  # s2 port 4, free
    link3: VPort  # s3 port 3, free
    edge3: VPort  # s3 port 1
    link4: VPort  # s4 port 3, on the island
    b_s1: VSwitch
    b_edge1: VPort  # tenant b on s1 port 1 (the same physical port as edge1)
    b_edge2: VPort  # tenant b on s1 port 2
    events: list[tuple[str, int]]


@pytest.fixture
def w() -> World:
    m = NetworkManager(build_topology(), ADMIN)
    a, b = m.create_tenant("alpha"), m.create_tenant("beta")
    net = m.create_network(a.id, ["tcp:127.0.0.1:6653"], "10.0.0.0", 16)
    s1, s2, s3, s4 = (m.create_switch(net.id, [d]) for d in (1, 2, 3, 4))
    edge1 = m.create_port(net.id, 1, 1)
    link1 = m.create_port(net.id, 1, 3)
    link2 = m.create_port(net.id, 2, 3)
    link2b = m.create_port(net.id, 2, 4)
    link3 = m.create_port(net.id, 3, 3)
    edge3 = m.create_port(net.id, 3, 1)
    link4 = m.create_port(net.id, 4, 3)
    m.create_link(net.id, s1.vdpid, link1.number, s2.vdpid, link2.number)
    m.connect_host(net.id, s1.vdpid, edge1.number, MAC)
    other = m.create_network(b.id, ["ptcp:6634"])
    b_s1 = m.create_switch(other.id, [1])
    b_edge1 = m.create_port(other.id, 1, 1)
    b_edge2 = m.create_port(other.id, 1, 2)
    m.start_network(net.id)
    events: list[tuple[str, int]] = []
    m.listeners.append(lambda ev, n: events.append((ev, n.id)))
    return World(
        m, a, b, net, other, s1, s2, s3, s4, edge1, link1, link2, link2b, link3, edge3, link4,
        b_s1, b_edge1, b_edge2, events,
    )  # fmt: skip


def snapshot(m: NetworkManager) -> Any:
    """Everything a refused request must leave as it was."""
    return copy.deepcopy((m.tenants, m.networks, m._vswitch_index))


# --- the fixture itself is what the intent says ------------------------------------------------
def test_ports_facing_a_pswitch_become_link_vports_others_edge(w: World) -> None:
    assert [w.edge1.kind, w.link1.kind, w.edge3.kind] == [
        VPortKind.EDGE,
        VPortKind.LINK,
        VPortKind.EDGE,
    ]
    assert w.link1.link_id == w.link2.link_id is not None


def test_vswitch_indexes_are_fabric_wide_and_distinct(w: World) -> None:
    indexes = [sw.index for n in w.m.networks.values() for sw in n.switches.values()]
    assert len(indexes) == len(set(indexes)) == 5
    assert all(0 < i <= layout.MAX_VSWITCH_INDEX for i in indexes)


def test_vswitch_indexes_stop_at_the_19_bits_the_metadata_holds(w: World) -> None:
    # Bit 63 of metadata marks injected packets: an index beyond 19 bits would spill into it.
    w.m._vswitch_index.update(range(1, layout.MAX_VSWITCH_INDEX))
    last = w.m.create_switch(w.other.id, [2])
    assert last.index == layout.MAX_VSWITCH_INDEX
    before = snapshot(w.m)
    with pytest.raises(Conflict):
        w.m.create_switch(w.other.id, [3])
    assert snapshot(w.m) == before


def test_a_successful_change_of_a_started_network_is_announced(w: World) -> None:
    lk = w.m.create_link(w.net.id, w.s2.vdpid, w.link2b.number, w.s3.vdpid, w.link3.number)
    assert w.link2b.link_id == w.link3.link_id == lk.id
    assert w.events == [("changed", w.net.id)]


# --- every refused call raises the right error and changes nothing ----------------------------
Call = Callable[[World], object]
BAD_URLS: dict[str, str] = {
    "empty": "",
    "tcp-without-port": "tcp:1.2.3.4",
    "tcp-without-host": "tcp::6653",
    "host-name-not-ip": "tcp:controller.example:6653",
    "unknown-scheme": "udp:1.2.3.4:6653",
    "port-0": "tcp:1.2.3.4:0",
    "port-65536": "tcp:1.2.3.4:65536",
    "port-negative": "tcp:1.2.3.4:-1",
    "port-not-a-number": "tcp:1.2.3.4:66x",
    "ptcp-without-port": "ptcp:",
    "ptcp-bad-address": "ptcp:6653:not-an-ip",
    # a superscript two: str.isdigit() says yes, int() says no
    "port-superscript-digit": "tcp:1.2.3.4:\u00b2",
}


def _create_network_with_url(url: str) -> Call:
    return lambda w: w.m.create_network(w.a.id, ["tcp:127.0.0.1:6653", url])


REFUSED: dict[str, tuple[Call, type[TenantvisorError]]] = {
    # tenants
    "tenant-duplicate-name": (lambda w: w.m.create_tenant("alpha"), Conflict),
    "tenant-bad-name": (lambda w: w.m.create_tenant("a b"), InvalidRequest),
    "delete-unknown-tenant": (lambda w: w.m.delete_tenant(99), NotFound),
    # networks
    "network-unknown-tenant": (lambda w: w.m.create_network(99, []), NotFound),
    "network-urls-not-a-list": (
        lambda w: w.m.create_network(w.a.id, "tcp:1.2.3.4:6653"),
        InvalidRequest,
    ),
    **{
        f"network-malformed-url-{name}": (
            _create_network_with_url(u),
            InvalidRequest,
        )
        for name, u in BAD_URLS.items()
    },
    "network-mask-33": (lambda w: w.m.create_network(w.a.id, [], "10.0.0.0", 33), InvalidRequest),
    "network-mask-negative": (
        lambda w: w.m.create_network(w.a.id, [], "10.0.0.0", -1),
        InvalidRequest,
    ),
    "network-mask-string": (
        lambda w: w.m.create_network(w.a.id, [], "10.0.0.0", "8"),
        InvalidRequest,
    ),
    "network-address-not-ipv4": (
        lambda w: w.m.create_network(w.a.id, [], "10.0.0.300", 8),
        InvalidRequest,
    ),
    "network-address-ipv6": (lambda w: w.m.create_network(w.a.id, [], "::1", 8), InvalidRequest),
    "network-unknown-scalability": (
        lambda w: w.m.create_network(w.a.id, [], scalability="fastest"),
        InvalidRequest,
    ),
    "network-scalability-upper-case": (
        lambda w: w.m.create_network(w.a.id, [], scalability="LITE"),
        InvalidRequest,
    ),
    "set-scalability-unknown-level": (
        lambda w: w.m.set_scalability(w.net.id, "fastest"),
        InvalidRequest,
    ),
    "set-scalability-unknown-network": (lambda w: w.m.set_scalability(99, "hop"), NotFound),
    "set-controllers-malformed-url": (
        lambda w: w.m.set_controllers(w.net.id, ["tcp:1.2.3.4:6653", "tcp:nowhere"]),
        InvalidRequest,
    ),
    "start-unknown-network": (lambda w: w.m.start_network(99), NotFound),
    # vswitches
    "switch-unknown-network": (lambda w: w.m.create_switch(99, [5]), NotFound),
    "switch-unknown-dpid": (lambda w: w.m.create_switch(w.net.id, [99]), NotFound),
    "switch-big-switch-over-a-hosting-pswitch": (
        lambda w: w.m.create_switch(w.net.id, [5, 4]),
        Conflict,
    ),
    "switch-no-dpid": (lambda w: w.m.create_switch(w.net.id, []), InvalidRequest),
    "switch-dpid-not-an-integer": (lambda w: w.m.create_switch(w.net.id, ["s5"]), InvalidRequest),
    "switch-pswitch-already-hosts-one": (lambda w: w.m.create_switch(w.net.id, [1]), Conflict),
    "switch-vdpid-zero": (lambda w: w.m.create_switch(w.net.id, [5], vdpid=0), InvalidRequest),
    "switch-vdpid-taken": (
        lambda w: w.m.create_switch(w.net.id, [5], vdpid=w.s1.vdpid),
        Conflict,
    ),
    "remove-unknown-switch": (lambda w: w.m.remove_switch(w.net.id, 0x77), NotFound),
    # vports
    "port-unknown-dpid": (lambda w: w.m.create_port(w.net.id, 99, 1), NotFound),
    "port-unknown-port": (lambda w: w.m.create_port(w.net.id, 1, 9), NotFound),
    "port-no-vswitch-on-pswitch": (lambda w: w.m.create_port(w.net.id, 5, 1), NotFound),
    "port-vswitch-on-another-pswitch": (
        lambda w: w.m.create_port(w.net.id, 1, 2, vdpid=w.s2.vdpid),
        InvalidRequest,
    ),
    "port-edge-port-twice": (lambda w: w.m.create_port(w.net.id, 1, 1), Conflict),
    "port-number-out-of-range": (
        lambda w: w.m.create_port(w.net.id, 1, 0xFFFFFFFF),
        InvalidRequest,
    ),
    "remove-unknown-port": (lambda w: w.m.remove_port(w.net.id, w.s1.vdpid, 99), NotFound),
    # vlinks
    "link-between-edge-ports": (
        lambda w: w.m.create_link(w.net.id, w.s1.vdpid, w.edge1.number, w.s3.vdpid, w.edge3.number),
        InvalidRequest,
    ),
    "link-edge-to-link-port": (
        lambda w: w.m.create_link(
            w.net.id, w.s2.vdpid, w.link2b.number, w.s3.vdpid, w.edge3.number
        ),
        InvalidRequest,
    ),
    "link-same-vswitch": (
        lambda w: w.m.create_link(
            w.net.id, w.s2.vdpid, w.link2.number, w.s2.vdpid, w.link2b.number
        ),
        InvalidRequest,
    ),
    "link-no-physical-path": (
        lambda w: w.m.create_link(w.net.id, w.s3.vdpid, w.link3.number, w.s4.vdpid, w.link4.number),
        InvalidRequest,
    ),
    "link-vport-already-linked": (
        lambda w: w.m.create_link(w.net.id, w.s1.vdpid, w.link1.number, w.s3.vdpid, w.link3.number),
        Conflict,
    ),
    "link-unknown-vport": (
        lambda w: w.m.create_link(w.net.id, w.s2.vdpid, 99, w.s3.vdpid, w.link3.number),
        NotFound,
    ),
    "link-unknown-vswitch": (
        lambda w: w.m.create_link(w.net.id, 0x77, 1, w.s3.vdpid, w.link3.number),
        NotFound,
    ),
    "remove-unknown-link": (lambda w: w.m.remove_link(w.net.id, 99), NotFound),
    # hosts
    "host-on-a-link-port": (
        lambda w: w.m.connect_host(w.net.id, w.s2.vdpid, w.link2b.number, "02:00:00:00:00:05"),
        InvalidRequest,
    ),
    "host-duplicate-mac-same-physical-port-other-tenant": (
        lambda w: w.m.connect_host(w.other.id, w.b_s1.vdpid, w.b_edge1.number, MAC),
        Conflict,
    ),
    "host-duplicate-mac-same-physical-port-other-spelling": (
        lambda w: w.m.connect_host(w.other.id, w.b_s1.vdpid, w.b_edge1.number, "02-00-00-00-00-01"),
        Conflict,
    ),
    "host-duplicate-mac-same-vport": (
        lambda w: w.m.connect_host(w.net.id, w.s1.vdpid, w.edge1.number, MAC.upper()),
        Conflict,
    ),
    "host-malformed-mac": (
        lambda w: w.m.connect_host(w.net.id, w.s3.vdpid, w.edge3.number, "02:00:00:00:00"),
        InvalidRequest,
    ),
    "host-multicast-mac": (
        lambda w: w.m.connect_host(w.net.id, w.s3.vdpid, w.edge3.number, "01:00:5e:00:00:01"),
        InvalidRequest,
    ),
    "host-zero-mac": (
        lambda w: w.m.connect_host(w.net.id, w.s3.vdpid, w.edge3.number, 0),
        InvalidRequest,
    ),
    "host-unknown-vport": (
        lambda w: w.m.connect_host(w.net.id, w.s3.vdpid, 99, "02:00:00:00:00:05"),
        NotFound,
    ),
    "disconnect-unknown-host": (lambda w: w.m.disconnect_host(w.net.id, 99), NotFound),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_call_raises_and_changes_nothing(w: World, case: str) -> None:
    call, error = REFUSED[case]
    before = snapshot(w.m)
    with pytest.raises(error):
        call(w)
    assert snapshot(w.m) == before
    assert w.events == []  # nothing announced to the reconciler either


# --- accepted MAC reuse -------------------------------------------------------------------------
def test_same_mac_on_a_different_physical_port_in_another_tenant_is_accepted(w: World) -> None:
    h = w.m.connect_host(w.other.id, w.b_s1.vdpid, w.b_edge2.number, MAC)
    assert h.mac == MAC
    assert w.m.networks[w.other.id].hosts[h.id] == h


def test_same_mac_on_a_different_physical_port_in_the_same_network_is_accepted(w: World) -> None:
    h = w.m.connect_host(w.net.id, w.s3.vdpid, w.edge3.number, MAC)
    assert w.events == [("changed", w.net.id)]
    assert h.vdpid == w.s3.vdpid


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("02:00:00:00:00:AA", "02:00:00:00:00:aa"),
        ("02-00-00-00-00-aa", "02:00:00:00:00:aa"),
        (" 02:00:00:00:00:aa ", "02:00:00:00:00:aa"),
        (0x0200000000AA, "02:00:00:00:00:aa"),
    ],
)
def test_mac_spellings_normalize_to_lower_case_colons(given: object, normal: str) -> None:
    assert normalize_mac(given) == normal


@pytest.mark.parametrize("bad", [True, None, 1 << 48, -1, "02:00:00:00:00:0g", "0200000000aa"])
def test_malformed_macs_are_refused(bad: object) -> None:
    with pytest.raises(InvalidRequest):
        normalize_mac(bad)


# --- controller URLs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "parsed", "text"),
    [
        ("tcp:10.0.0.1:6653", ControllerUrl(True, "10.0.0.1", 6653), "tcp:10.0.0.1:6653"),
        ("ptcp:6634", ControllerUrl(False, "0.0.0.0", 6634), "ptcp:6634:0.0.0.0"),
        ("ptcp:6634:127.0.0.1", ControllerUrl(False, "127.0.0.1", 6634), "ptcp:6634:127.0.0.1"),
        ("tcp:[::1]:6653", ControllerUrl(True, "::1", 6653), "tcp:::1:6653"),
    ],
)
def test_controller_urls_parse_and_print_in_ovs_syntax(
    url: str, parsed: ControllerUrl, text: str
) -> None:
    u = parse_controller_url(url)
    assert u == parsed
    assert str(u) == text
    assert parse_controller_url(str(u)) == u


@pytest.mark.parametrize("case", list(BAD_URLS))
def test_malformed_controller_urls_raise_invalid_request(case: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_controller_url(BAD_URLS[case])


def test_network_stores_controller_urls_normalized(w: World) -> None:
    net = w.m.create_network(w.a.id, ["ptcp:6640"])
    assert net.controller_urls == ["ptcp:6640:0.0.0.0"]


# --- authentication and visibility ---------------------------------------------------------------
def test_admin_token_authenticates_as_admin(w: World) -> None:
    assert w.m.authenticate(ADMIN) is None


def test_tenant_token_authenticates_as_that_tenant(w: World) -> None:
    assert w.m.authenticate(w.a.token) is w.a
    assert w.m.authenticate(w.b.token) is w.b
    assert w.a.token != w.b.token


@pytest.mark.parametrize(
    "token", [None, "", "wrong", ADMIN[:-1], ADMIN + "x", " " + ADMIN], ids=repr
)
def test_missing_or_wrong_token_is_unauthorized(w: World, token: str | None) -> None:
    with pytest.raises(Unauthorized):
        w.m.authenticate(token)


def test_a_tenant_cannot_see_another_tenants_network(w: World) -> None:
    with pytest.raises(NotFound):
        w.m.get_network(w.net.id, caller=w.b)
    with pytest.raises(NotFound):
        w.m.get_network(w.other.id, caller=w.a)
    assert w.m.get_network(w.net.id, caller=w.a) is w.net
    assert w.m.get_network(w.net.id) is w.net  # admin


def test_a_foreign_network_looks_exactly_like_a_missing_one(w: World) -> None:
    with pytest.raises(NotFound) as foreign:
        w.m.get_network(w.net.id, caller=w.b)
    with pytest.raises(NotFound) as missing:
        w.m.get_network(99, caller=w.b)
    assert str(foreign.value).replace(str(w.net.id), "N") == str(missing.value).replace("99", "N")


def test_tenants_list_only_their_networks_and_the_admin_lists_all(w: World) -> None:
    assert w.m.list_networks(w.a) == [w.net]
    assert w.m.list_networks(w.b) == [w.other]
    assert w.m.list_networks(None) == [w.net, w.other]


def test_a_deleted_tenants_token_no_longer_works(w: World) -> None:
    token = w.b.token
    w.m.delete_tenant(w.b.id)
    assert w.other.id not in w.m.networks
    with pytest.raises(Unauthorized):
        w.m.authenticate(token)


def test_removing_a_network_frees_its_vswitch_indexes(w: World) -> None:
    index = w.b_s1.index
    w.m.remove_network(w.other.id)
    assert index not in w.m._vswitch_index


def test_manager_needs_an_admin_token() -> None:
    with pytest.raises(ValueError):
        NetworkManager(PhysicalTopology(), "")


# --- big switches, internal routes, manual and backup vlink paths ---------------------------------
#
#   h           h
#   1           1
#  [b1]2 ---- 2[b2]4 ---- 1[b7]3 h
#   3           3           2
#   |           |           |
#   3           2           |
#  [b4]2 ---- 3[b3]5 -------+           [b5]1 h: OpenFlow 1.0, 4 -- 4 b3      [b6]1 h (alone)
#   1           1
#   h           h
def build_square() -> PhysicalTopology:
    topo = PhysicalTopology()
    for dpid, ports in (
        (1, [1, 2, 3]),
        (2, [1, 2, 3, 4]),
        (3, [1, 2, 3, 4, 5]),
        (4, [1, 2, 3]),
        (5, [1, 4]),
        (6, [1]),
        (7, [1, 2, 3]),
    ):
        topo.add_switch(PSwitchInfo(dpid=dpid, n_tables=254, of_version=1 if dpid == 5 else 4))
        for n in ports:
            topo.set_port(dpid, PPort(n, f"b{dpid}-eth{n}", f"02:00:00:01:{dpid:02x}:{n:02x}"))
    for a, b in (
        ((1, 2), (2, 2)),
        ((2, 3), (3, 2)),
        ((3, 3), (4, 2)),
        ((4, 3), (1, 3)),
        ((5, 4), (3, 4)),
        ((2, 4), (7, 1)),
        ((3, 5), (7, 2)),
    ):
        topo.add_link(PLink(a[0], a[1], b[0], b[1]))
        topo.add_link(PLink(b[0], b[1], a[0], a[1]))
    return topo


@dataclass
class Big:
    m: NetworkManager
    net: VirtualNetwork
    big: VSwitch  # over b1, b2, b3, b4; manual routing
    e1: VPort  # b1 port 1 (edge)
    e2: VPort  # b2 port 1 (edge)
    e3: VPort  # b3 port 1 (edge)
    events: list[tuple[str, int]]


@pytest.fixture
def bw() -> Big:
    m = NetworkManager(build_square(), ADMIN)
    t = m.create_tenant("gamma")
    net = m.create_network(t.id, ["tcp:127.0.0.1:6653"])
    big = m.create_switch(net.id, [1, 2, 3, 4], routing="manual")
    e1, e2, e3 = (m.create_port(net.id, d, 1) for d in (1, 2, 3))
    m.start_network(net.id)
    events: list[tuple[str, int]] = []
    m.listeners.append(lambda ev, n: events.append((ev, n.id)))
    return Big(m, net, big, e1, e2, e3, events)


def test_a_big_switch_spans_its_pswitches_and_takes_ports_on_each(bw: Big) -> None:
    assert bw.big.dpids == [1, 2, 3, 4] and bw.big.dpid == 1 and bw.big.is_big
    assert (bw.big.routing, bw.big.backup_num) == ("manual", 0)
    assert [(p.dpid, p.port, p.kind) for p in bw.big.ports.values()] == [
        (1, 1, VPortKind.EDGE),
        (2, 1, VPortKind.EDGE),
        (3, 1, VPortKind.EDGE),
    ]
    # with a vdpid, any of its pswitches; a port facing another of them is a link port
    vp = bw.m.create_port(bw.net.id, 3, 3, vdpid=bw.big.vdpid)
    assert (vp.number, vp.dpid, vp.kind) == (4, 3, VPortKind.LINK)
    assert bw.events == [("changed", bw.net.id)]


def test_the_same_physical_port_number_on_two_pswitches_of_a_big_switch_is_two_vports(
    bw: Big,
) -> None:
    # port 1 of b1 is an edge vport already; port 1 of b2 is a different physical port
    assert bw.e1.port == bw.e2.port == 1 and bw.e1.dpid != bw.e2.dpid


def test_other_networks_may_use_the_big_switchs_pswitches(bw: Big) -> None:
    t = bw.m.create_tenant("delta")
    net = bw.m.create_network(t.id, [])
    sw = bw.m.create_switch(net.id, [2, 3, 7], backup_num=2)
    assert (sw.routing, sw.backup_num, sw.dpids) == ("spf", 2, [2, 3, 7])


def test_an_openflow_10_pswitch_may_host_a_vswitch_of_its_own(bw: Big) -> None:
    assert bw.m.create_switch(bw.net.id, [5]).dpids == [5]


def test_internal_routing_can_change_and_routes_survive_spf(bw: Big) -> None:
    r = bw.m.connect_route(bw.net.id, bw.big.vdpid, 1, 3, "1/2-2/2,2/3-3/2", 10)
    sw = bw.m.set_internal_routing(bw.net.id, bw.big.vdpid, "spf", 2)
    assert sw is bw.big and (sw.routing, sw.backup_num) == ("spf", 2)
    assert sw.routes == {r.id: r}  # kept, used again once manual
    assert bw.events == [("changed", bw.net.id)] * 2


def test_connect_route_stores_one_direction_with_a_new_id(bw: Big) -> None:
    from tenantvisor.compile.paths import internal_routes

    r = bw.m.connect_route(bw.net.id, bw.big.vdpid, 1, 3, "1/2-2/2,2/3-3/2", 10)
    assert (r.src_vport, r.dst_vport, r.path.priority) == (1, 3, 10)
    assert r.path.hops == ((1, 2, 2, 2), (2, 3, 3, 2))
    backup = bw.m.connect_route(bw.net.id, bw.big.vdpid, 1, 3, [(1, 3, 4, 3), (4, 2, 3, 3)], 5)
    assert backup.id == r.id + 1
    assert bw.big.routes == {r.id: r, backup.id: backup}
    # the compiler sees the higher priority first; no route back from 3 to 1 was given
    paths = internal_routes(bw.m.topo, bw.big, 1, 3)
    assert [len(p) for p in paths] == [2, 2] and paths[0][0].dst_dpid == 2
    assert internal_routes(bw.m.topo, bw.big, 3, 1) == []
    assert bw.events == [("changed", bw.net.id)] * 2


def test_connect_route_both_ways_adds_the_mirror_and_disconnect_removes_both(bw: Big) -> None:
    r = bw.m.connect_route(bw.net.id, bw.big.vdpid, 1, 3, "1/2-2/2,2/3-3/2", 10, both_ways=True)
    mirror = bw.big.routes[r.id + 1]
    assert (mirror.src_vport, mirror.dst_vport, mirror.path.priority) == (3, 1, 10)
    assert mirror.path.hops == ((3, 2, 2, 3), (2, 2, 1, 2))
    other = bw.m.connect_route(bw.net.id, bw.big.vdpid, 2, 3, "2/3-3/2", 1)
    bw.m.disconnect_route(bw.net.id, bw.big.vdpid, r.id, both_ways=True)
    assert bw.big.routes == {other.id: other}
    bw.m.disconnect_route(bw.net.id, bw.big.vdpid, other.id)
    assert bw.big.routes == {}
    assert len(bw.events) == 4


def test_removing_a_vport_removes_its_routes(bw: Big) -> None:
    bw.m.connect_route(bw.net.id, bw.big.vdpid, 1, 3, "1/2-2/2,2/3-3/2", 10, both_ways=True)
    keep = bw.m.connect_route(bw.net.id, bw.big.vdpid, 1, 2, "1/2-2/2", 10)
    bw.m.remove_port(bw.net.id, bw.big.vdpid, 3)
    assert list(bw.big.routes) == [keep.id]


def test_manual_vlink_starts_without_a_path_and_takes_paths_by_priority(bw: Big) -> None:
    from tenantvisor.compile.paths import vlink_candidates

    lk = bw.net.links[_bw_link(bw)]
    assert (lk.algorithm, lk.backup_num, lk.paths) == ("manual", 0, [])
    assert vlink_candidates(bw.m.topo, bw.net, lk) == []  # down until a path is set
    direct = ((2, 4, 7, 1),)
    around = ((2, 3, 3, 2), (3, 5, 7, 2))
    assert bw.m.set_link_path(bw.net.id, lk.id, "2/4-7/1", 100) is lk
    bw.m.set_link_path(bw.net.id, lk.id, "2/3-3/2,3/5-7/2", 50)
    assert [(p.hops, p.priority) for p in lk.paths] == [(direct, 100), (around, 50)]
    assert [len(p) for p in vlink_candidates(bw.m.topo, bw.net, lk)] == [1, 2]
    # the same priority again replaces; a path given from the dst end is stored src -> dst
    bw.m.set_link_path(bw.net.id, lk.id, "7/2-3/5,3/2-2/3", 200)
    assert [(p.hops, p.priority) for p in lk.paths] == [(around, 200), (direct, 100)]
    bw.m.set_link_path(bw.net.id, lk.id, [(2, 4, 7, 1)], 100)
    assert [p.priority for p in lk.paths] == [200, 100]
    assert bw.m.remove_link_path(bw.net.id, lk.id, 200) is lk
    assert [(p.hops, p.priority) for p in lk.paths] == [(direct, 100)]
    assert len(bw.events) == 1 + 2 + 1 + 1 + 1 + 1 + 1 + 1  # switch, ports, link, paths


def test_spf_vlink_keeps_its_backup_number(bw: Big) -> None:
    sw7 = bw.m.create_switch(bw.net.id, [7])
    a = bw.m.create_port(bw.net.id, 2, 4)
    b = bw.m.create_port(bw.net.id, 7, 1)
    lk = bw.m.create_link(bw.net.id, bw.big.vdpid, a.number, sw7.vdpid, b.number, backup_num=1)
    assert (lk.algorithm, lk.backup_num, lk.paths) == ("spf", 1, [])


def _bw_link(bw: Big, algorithm: str = "manual") -> int:
    """A vlink from the big switch (b2 port 4) to a vswitch on b7 (port 1)."""
    sw7 = bw.m.create_switch(bw.net.id, [7])
    a = bw.m.create_port(bw.net.id, 2, 4)
    b = bw.m.create_port(bw.net.id, 7, 1)
    return bw.m.create_link(
        bw.net.id, bw.big.vdpid, a.number, sw7.vdpid, b.number, algorithm=algorithm
    ).id


def _route(path: Any, src: int = 1, dst: int = 3, priority: int = 10) -> Callable[[Big], object]:
    return lambda bw: bw.m.connect_route(bw.net.id, bw.big.vdpid, src, dst, path, priority)


BIG_REFUSED: dict[str, tuple[Callable[[Big], object], type[TenantvisorError], str]] = {
    # big switches
    "switch-dpid-twice": (
        lambda bw: bw.m.create_switch(bw.net.id, [7, 7]),
        InvalidRequest,
        "given twice",
    ),
    "switch-pswitch-in-a-big-switch-of-this-network": (
        lambda bw: bw.m.create_switch(bw.net.id, [4, 3]),
        Conflict,
        "already hosts",
    ),
    "switch-openflow-10-in-a-big-switch": (
        lambda bw: bw.m.create_switch(bw.net.id, [7, 5]),
        InvalidRequest,
        "OpenFlow 1.0",
    ),
    "switch-pswitches-not-joined": (
        lambda bw: bw.m.create_switch(bw.net.id, [7, 6]),
        InvalidRequest,
        "not joined",
    ),
    "switch-backup-num-9": (
        lambda bw: bw.m.create_switch(bw.net.id, [7, 6], backup_num=9),
        InvalidRequest,
        "backup_num 9 is out of range 0-8",
    ),
    "switch-backup-num-negative": (
        lambda bw: bw.m.create_switch(bw.net.id, [7, 6], backup_num=-1),
        InvalidRequest,
        "backup_num",
    ),
    "switch-unknown-routing": (
        lambda bw: bw.m.create_switch(bw.net.id, [7, 6], routing="ospf"),
        InvalidRequest,
        "expected one of spf, manual",
    ),
    "switch-routing-on-one-pswitch": (
        lambda bw: bw.m.create_switch(bw.net.id, [7], routing="manual"),
        InvalidRequest,
        "for big switches",
    ),
    "port-big-switch-not-on-that-pswitch": (
        lambda bw: bw.m.create_port(bw.net.id, 7, 3, vdpid=bw.big.vdpid),
        InvalidRequest,
        "is not on pswitch",
    ),
    "routing-unknown-algorithm": (
        lambda bw: bw.m.set_internal_routing(bw.net.id, bw.big.vdpid, "SPF", 0),
        InvalidRequest,
        "expected one of",
    ),
    "routing-backup-num-out-of-range": (
        lambda bw: bw.m.set_internal_routing(bw.net.id, bw.big.vdpid, "spf", 256),
        InvalidRequest,
        "backup_num 256",
    ),
    "routing-of-a-one-pswitch-vswitch": (
        lambda bw: bw.m.set_internal_routing(
            bw.net.id, bw.m.create_switch(bw.net.id, [7]).vdpid, "spf", 1
        ),
        InvalidRequest,
        "only a big switch",
    ),
    "routing-unknown-vswitch": (
        lambda bw: bw.m.set_internal_routing(bw.net.id, 0x99, "spf", 1),
        NotFound,
        "no vswitch",
    ),
    # routes
    "route-bad-path-text": (_route("1/2-2"), InvalidRequest, "bad hop"),
    "route-empty-path-text": (_route(" , "), InvalidRequest, "empty path"),
    "route-empty-hop-list": (_route([]), InvalidRequest, "non-empty list of hops"),
    "route-hop-not-four-numbers": (_route([(1, 2, 2)]), InvalidRequest, "hop 1"),
    "route-hop-not-numbers": (_route([(1, "x", 2, 2)]), InvalidRequest, "src_port"),
    "route-text-hops-do-not-join": (
        _route("1/2-2/2,3/3-4/2"),
        InvalidRequest,
        "hops do not join",
    ),
    "route-listed-hops-do-not-join": (
        _route([(1, 2, 2, 2), (4, 2, 3, 3)]),
        InvalidRequest,
        "hops do not join",
    ),
    "route-starts-elsewhere": (_route("2/3-3/2"), InvalidRequest, "must start on pswitch 1"),
    "route-ends-elsewhere": (_route("1/2-2/2"), InvalidRequest, "must end on pswitch 3"),
    "route-leaves-the-big-switch": (
        _route("1/2-2/2,2/4-7/1,7/2-3/5"),
        InvalidRequest,
        "pswitch 7 (0x7) is not part of big switch",
    ),
    "route-hop-is-no-link": (_route("1/2-2/1,2/3-3/2"), InvalidRequest, "is not a physical link"),
    "route-hop-unknown-port": (_route("1/9-2/2,2/3-3/2"), InvalidRequest, "has no port 9"),
    "route-hop-unknown-pswitch": (_route("1/2-9/2,9/3-3/2"), InvalidRequest, "not part of"),
    "route-u-turn": (
        _route("1/2-2/2,2/2-1/2,1/2-2/2,2/3-3/2"),
        InvalidRequest,
        "where the one before arrived",
    ),
    "route-loop": (
        _route("1/2-2/2,2/3-3/2,3/3-4/2,4/3-1/3,1/2-2/2,2/3-3/2"),
        InvalidRequest,
        "visits pswitch 1 twice",
    ),
    "route-priority-too-high": (
        _route("1/2-2/2,2/3-3/2", priority=65536),
        InvalidRequest,
        "priority 65536 is out of range 0-65535",
    ),
    "route-priority-negative": (_route("1/2-2/2,2/3-3/2", priority=-1), InvalidRequest, "priority"),
    "route-to-itself": (_route("1/2-2/2", dst=1), InvalidRequest, "to itself"),
    "route-vports-on-one-pswitch": (
        lambda bw: bw.m.connect_route(
            bw.net.id,
            bw.big.vdpid,
            1,
            bw.m.create_port(bw.net.id, 1, 2).number,
            "1/2-2/2",
            1,
        ),
        InvalidRequest,
        "both on pswitch",
    ),
    "route-unknown-vport": (_route("1/2-2/2", dst=9), NotFound, "has no vport 9"),
    "route-on-a-one-pswitch-vswitch": (
        lambda bw: bw.m.connect_route(
            bw.net.id, bw.m.create_switch(bw.net.id, [7]).vdpid, 1, 2, "7/2-3/5", 1
        ),
        InvalidRequest,
        "only a big switch",
    ),
    "route-under-spf-routing": (
        lambda bw: (
            bw.m.set_internal_routing(bw.net.id, bw.big.vdpid, "spf", 0),
            _route("1/2-2/2,2/3-3/2")(bw),
        ),
        InvalidRequest,
        "set its internal routing to manual",
    ),
    "route-same-priority-twice": (
        lambda bw: (_route("1/2-2/2,2/3-3/2")(bw), _route("1/3-4/3,4/2-3/3")(bw)),
        Conflict,
        "with this priority",
    ),
    "route-same-path-twice": (
        lambda bw: (_route("1/2-2/2,2/3-3/2")(bw), _route("1/2-2/2,2/3-3/2", priority=5)(bw)),
        Conflict,
        "with this path",
    ),
    "route-mirror-conflicts": (
        lambda bw: (
            _route("3/2-2/3,2/2-1/2", src=3, dst=1)(bw),
            bw.m.connect_route(bw.net.id, bw.big.vdpid, 1, 3, "1/2-2/2,2/3-3/2", 10, True),
        ),
        Conflict,
        "joins vport 3 to vport 1",
    ),
    "disconnect-unknown-route": (
        lambda bw: bw.m.disconnect_route(bw.net.id, bw.big.vdpid, 7),
        NotFound,
        "has no route 7",
    ),
    # vlinks
    "link-unknown-algorithm": (
        lambda bw: _bw_link(bw, algorithm="ecmp"),
        InvalidRequest,
        "routing algorithm 'ecmp'",
    ),
    "link-path-on-an-spf-vlink": (
        lambda bw: bw.m.set_link_path(bw.net.id, _bw_link(bw, "spf"), "2/4-7/1", 1),
        InvalidRequest,
        "only a vlink created with algorithm manual",
    ),
    "link-path-wrong-start": (
        lambda bw: bw.m.set_link_path(bw.net.id, _bw_link(bw), "3/5-7/2", 1),
        InvalidRequest,
        "must start on pswitch 2",
    ),
    "link-path-wrong-end": (
        lambda bw: bw.m.set_link_path(bw.net.id, _bw_link(bw), "2/3-3/2", 1),
        InvalidRequest,
        "must end on pswitch 7",
    ),
    "link-path-discontiguous": (
        lambda bw: bw.m.set_link_path(bw.net.id, _bw_link(bw), [(2, 3, 3, 2), (4, 2, 7, 2)], 1),
        InvalidRequest,
        "hops do not join",
    ),
    "link-path-bad-text": (
        lambda bw: bw.m.set_link_path(bw.net.id, _bw_link(bw), "2:4-7:1", 1),
        InvalidRequest,
        "expected dpid/port-dpid/port",
    ),
    "link-path-priority-out-of-range": (
        lambda bw: bw.m.set_link_path(bw.net.id, _bw_link(bw), "2/4-7/1", 1 << 16),
        InvalidRequest,
        "priority",
    ),
    "link-path-unknown-vlink": (
        lambda bw: bw.m.set_link_path(bw.net.id, 42, "2/4-7/1", 1),
        NotFound,
        "no vlink 42",
    ),
    "link-remove-path-unknown-priority": (
        lambda bw: bw.m.remove_link_path(bw.net.id, _bw_link(bw), 3),
        NotFound,
        "no path with priority 3",
    ),
}


@pytest.mark.parametrize("case", list(BIG_REFUSED))
def test_big_switch_and_path_refusals_change_nothing(bw: Big, case: str) -> None:
    call, error, text = BIG_REFUSED[case]
    with pytest.raises(error) as exc:
        _run_last_step_checked(bw, call)
    assert text in str(exc.value), exc.value


def _run_last_step_checked(bw: Big, call: Callable[[Big], object]) -> None:
    """Run `call`; whatever it builds first is fine, but the refused step must leave the
    intent exactly as it was just before it: every manager method is checked on the way."""
    m = bw.m
    for name in (
        "create_switch",
        "create_port",
        "create_link",
        "set_internal_routing",
        "connect_route",
        "disconnect_route",
        "set_link_path",
        "remove_link_path",
    ):
        real = getattr(m, name)

        def checked(*args: Any, _real: Any = real, **kwargs: Any) -> Any:
            before = snapshot(m)
            events = len(bw.events)
            try:
                return _real(*args, **kwargs)
            except TenantvisorError:
                assert snapshot(m) == before
                assert len(bw.events) == events
                raise

        setattr(m, name, checked)
    call(bw)


# --- hosts that move (issue 10) ------------------------------------------------------------------
def test_a_host_moves_to_an_edge_port_and_back_home(w: World) -> None:
    """The vport follows the host; the tenant's view (vswitch, vport) is unchanged; moving
    onto its vport's own port is home again (no location); a move where it is changes
    nothing and announces nothing."""
    w_ = w
    (h,) = w_.net.hosts.values()
    w_.m.move_host(w_.net.id, h.id, 3, 2)
    assert (h.vdpid, h.vport, h.location) == (w_.s1.vdpid, w_.edge1.number, (3, 2))
    assert w_.net.where(h) == (3, 2) and w_.events[-1] == ("changed", w_.net.id)
    n = len(w_.events)
    w_.m.move_host(w_.net.id, h.id, 3, 2)
    assert len(w_.events) == n  # already there
    w_.m.move_host(w_.net.id, h.id, 1, 1)
    assert h.location is None and w_.net.where(h) == (1, 1)


def test_moves_that_cannot_be_are_refused_and_change_nothing(w: World) -> None:
    (h,) = w.net.hosts.values()
    before = snapshot(w.m)
    for args, err in (
        ((w.net.id, 99, 3, 2), NotFound),  # no such host
        ((w.net.id, h.id, 9, 1), NotFound),  # no such pswitch
        ((w.net.id, h.id, 3, 9), NotFound),  # no such port
        ((w.net.id, h.id, 1, 3), InvalidRequest),  # a port facing another pswitch
        ((w.net.id, h.id, "x", 1), InvalidRequest),
    ):
        with pytest.raises(err):
            w.m.move_host(*args)
    # tenant b has a host with the same MAC on s1 port 2: a's host cannot join it there
    w.m.connect_host(w.other.id, w.b_s1.vdpid, w.b_edge2.number, MAC)
    before = snapshot(w.m)
    with pytest.raises(Conflict, match="already attached"):
        w.m.move_host(w.net.id, h.id, 1, 2)
    # a vport with two hosts cannot follow one of them
    w.m.connect_host(w.net.id, w.s1.vdpid, w.edge1.number, "02:00:00:00:00:09")
    before = snapshot(w.m)
    with pytest.raises(Conflict, match="also carries"):
        w.m.move_host(w.net.id, h.id, 3, 2)
    assert snapshot(w.m) == before


def test_a_vport_that_follows_a_moved_host_takes_no_other(w: World) -> None:
    (h,) = w.net.hosts.values()
    w.m.move_host(w.net.id, h.id, 3, 2)
    with pytest.raises(Conflict, match="follows a host that moved"):
        w.m.connect_host(w.net.id, w.s1.vdpid, w.edge1.number, "02:00:00:00:00:09")


# --- exclusive edge vports (issue 11) ---------------------------------------------------------
def test_an_exclusive_vport_holds_its_port_against_every_network(w: World) -> None:
    """s2 port 1 is free: a's exclusive vport takes it; then no vport of any network, no
    second exclusive vport and no host moving there may use it, and b's refusal does not
    name a's network; removing the vport frees the port."""
    vp = w.m.create_port(w.net.id, 2, 1, exclusive=True)
    assert (vp.kind, vp.exclusive) == (VPortKind.EDGE, True)
    assert w.events == [("changed", w.net.id)]
    b_s2 = w.m.create_switch(w.other.id, [2])
    (h,) = w.net.hosts.values()
    before = snapshot(w.m)
    with pytest.raises(Conflict, match="held exclusively by a vport of another network") as exc:
        w.m.create_port(w.other.id, 2, 1)
    assert f"{w.s2.vdpid:#018x}" not in str(exc.value)
    with pytest.raises(Conflict, match="held exclusively"):
        w.m.create_port(w.other.id, 2, 1, exclusive=True)
    with pytest.raises(Conflict, match=f"held exclusively by vport {vp.number} of vswitch"):
        w.m.move_host(w.net.id, h.id, 2, 1)  # a's own host: a may see its own vport named
    assert snapshot(w.m) == before
    w.m.remove_port(w.net.id, w.s2.vdpid, vp.number)
    assert w.m.create_port(w.other.id, 2, 1).dpid == 2 and b_s2.ports


def test_exclusive_is_refused_on_a_port_another_vport_or_a_host_uses(w: World) -> None:
    """s1 port 2 is b's edge vport, s1 port 1 a's and b's: not a's alone to take; a host
    that moved onto s3 port 2 makes that port taken too."""
    b_s3 = w.m.create_switch(w.other.id, [3])
    (h,) = w.net.hosts.values()
    w.m.move_host(w.net.id, h.id, 3, 2)
    w.m.remove_switch(w.other.id, w.b_s1.vdpid)
    w.m.create_switch(w.other.id, [1])
    w.events.clear()
    before = snapshot(w.m)
    with pytest.raises(Conflict, match="already mapped to a vport"):
        w.m.create_port(w.other.id, 1, 1, exclusive=True)  # a's edge1 is there
    with pytest.raises(Conflict, match="a host is on port 2"):
        w.m.create_port(w.other.id, 3, 2, vdpid=b_s3.vdpid, exclusive=True)
    assert snapshot(w.m) == before and w.events == []


def test_exclusive_needs_an_openflow_13_edge_port(w: World) -> None:
    before = snapshot(w.m)
    with pytest.raises(InvalidRequest, match="faces another pswitch"):
        w.m.create_port(w.other.id, 1, 3, vdpid=w.b_s1.vdpid, exclusive=True)
    with pytest.raises(InvalidRequest, match="true or false"):
        w.m.create_port(w.net.id, 2, 1, exclusive=1)  # type: ignore[arg-type]
    w.m.topo.switches[2].of_version = 1
    with pytest.raises(InvalidRequest, match=r"OpenFlow 1\.0"):
        w.m.create_port(w.net.id, 2, 1, exclusive=True)
    assert snapshot(w.m) == before


def test_hosts_on_an_exclusive_vport_are_information_and_never_move(w: World) -> None:
    """A host may be registered there (OVX scripts call connectHost after createPort, and a
    `lite` network names destinations by MAC), but the vport is its port: it does not
    follow a host; nor can it be the end of a vlink."""
    vp = w.m.create_port(w.net.id, 2, 1, exclusive=True)
    h = w.m.connect_host(w.net.id, w.s2.vdpid, vp.number, "02:00:00:00:00:42")
    w.m.connect_host(w.net.id, w.s2.vdpid, vp.number, "02:00:00:00:00:43")
    with pytest.raises(Conflict, match="already attached"):
        w.m.connect_host(w.net.id, w.s2.vdpid, vp.number, "02:00:00:00:00:42")
    before = snapshot(w.m)
    with pytest.raises(Conflict, match="does not follow a host"):
        w.m.move_host(w.net.id, h.id, 3, 2)
    with pytest.raises(InvalidRequest, match="exclusive edge vport"):
        w.m.create_link(w.net.id, w.s2.vdpid, vp.number, w.s3.vdpid, w.link3.number)
    assert snapshot(w.m) == before


def test_no_move_to_or_from_an_openflow_10_pswitch(w: World) -> None:
    """A 1.0 pswitch has no classification table: a host there cannot be classified where
    it moved to, nor taken in at home as its vport's (400, nothing changes)."""
    (h,) = w.net.hosts.values()  # on s1
    w.m.topo.switches[3].of_version = 1
    before = snapshot(w.m)
    with pytest.raises(InvalidRequest, match=r"0x0000000000000003 speaks OpenFlow 1\.0"):
        w.m.move_host(w.net.id, h.id, 3, 2)
    w.m.topo.switches[3].of_version = 4
    w.m.topo.switches[1].of_version = 1
    with pytest.raises(InvalidRequest, match=r"0x0000000000000001 speaks OpenFlow 1\.0"):
        w.m.move_host(w.net.id, h.id, 1, 2)  # even to another port of its own pswitch
    assert snapshot(w.m) == before and h.location is None
