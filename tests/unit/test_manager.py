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
    "network-scalability-not-available": (
        lambda w: w.m.create_network(w.a.id, [], scalability="lite"),
        InvalidRequest,
    ),
    "set-controllers-malformed-url": (
        lambda w: w.m.set_controllers(w.net.id, ["tcp:1.2.3.4:6653", "tcp:nowhere"]),
        InvalidRequest,
    ),
    "start-unknown-network": (lambda w: w.m.start_network(99), NotFound),
    # vswitches
    "switch-unknown-network": (lambda w: w.m.create_switch(99, [5]), NotFound),
    "switch-unknown-dpid": (lambda w: w.m.create_switch(w.net.id, [99]), NotFound),
    "switch-big-switch": (lambda w: w.m.create_switch(w.net.id, [5, 4]), InvalidRequest),
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
