"""Data-plane limits (issue 11): the provider's meters a network's traffic passes where it
enters the tenant's slice, as the compile stage derives them and the program stage rolls
them out.

One meter per edge vport and per vlink direction, on the pswitch where that traffic is
classified, attached by the classification rule (meter first, then the actions); none on
an OpenFlow 1.0 pswitch; ids from the pswitch's meter space, owned by the network; a
network's override replaces the admin's default kind by kind.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, cast

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.compile.network import NetworkState, compile_network, release_unused
from tenantvisor.errors import InvalidRequest
from tenantvisor.mapping import layout
from tenantvisor.mapping.alloc import IdAllocator, tenant_owner
from tenantvisor.openflow import codec, oxm
from tenantvisor.physical.session import PSwitchSession
from tenantvisor.physical.topology import PhysicalTopology
from tenantvisor.program.networks import NetworkProgrammer
from tenantvisor.translate import infra
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.meter import LimitMeter
from tenantvisor.virtual.manager import NetworkManager
from tenantvisor.virtual.model import NO_LIMITS, Host, Limits, VirtualNetwork

from .test_compile import N_TABLES, _match, line3, ring4, two_switch_net
from .test_rollout import FakeSession

LIMITS = Limits(vport_pps=1000, vport_kbps=0, vlink_pps=0, vlink_kbps=20000)


def _compile(
    net: VirtualNetwork, topo: PhysicalTopology | None = None, defaults: Limits = LIMITS,
    alloc: IdAllocator | None = None,
) -> NetworkState:  # fmt: skip
    return compile_network(net, topo or line3(), alloc or IdAllocator(), N_TABLES,
                           defaults=defaults)  # fmt: skip


def _meter_of(pf: PhysFlow) -> int | None:
    return codec.parse_instructions(pf.instructions).meter


def _band(m: LimitMeter) -> tuple[int, int, int]:
    btype, length, rate, burst = struct.unpack_from("!HHII", m.bands)
    assert length == len(m.bands) == 16
    return btype, rate, burst


def _classifying(st: NetworkState) -> list[PhysFlow]:
    """The table-0 rules that send packets into the tenant's tables."""
    return [
        pf for pf in st.rules.values()
        if pf.table == 0 and codec.parse_instructions(pf.instructions).goto_table is not None
    ]  # fmt: skip


# --- the model --------------------------------------------------------------------------------
def test_an_override_replaces_a_default_kind_by_kind_and_unset_kinds_keep_the_default() -> None:
    defaults = Limits(vport_pps=1000, vlink_pps=5000)
    assert NO_LIMITS.over(defaults) == Limits(1000, 0, 5000, 0)
    # a kind set in the other unit replaces the default's unit too
    assert Limits(vport_kbps=800).over(defaults) == Limits(0, 800, 5000, 0)
    # 0 exempts the network from a kind's default
    assert Limits(vlink_pps=0).over(defaults) == Limits(1000, 0, 0, 0)
    assert Limits(1, None, None, None).over(NO_LIMITS).rate("vport") == (1, True)
    assert Limits(vport_kbps=7).over(NO_LIMITS).rate("vport") == (7, False)
    assert NO_LIMITS.over(NO_LIMITS).rate("vlink") is None


def test_limits_in_both_units_or_out_of_range_are_refused() -> None:
    assert Limits(vport_pps=1, vport_kbps=1).problem() is not None  # one meter, one unit
    assert Limits(vport_pps=1, vport_kbps=0).problem() is None
    assert Limits(vlink_kbps=-1).problem() is not None
    assert Limits(vlink_kbps=1 << 32).problem() is not None
    assert Limits(vlink_kbps=True).problem() is not None  # type: ignore[arg-type]


# --- the compile output -----------------------------------------------------------------------
def test_every_classification_into_the_slice_carries_its_meter_first() -> None:
    """Hosts' rules carry their vport's meter, a vlink's far-end rule its direction's; the
    meter instruction comes before the actions (the spec's order, which OVS reports)."""
    st = _compile(two_switch_net((1, 2), (3, 1)))
    into = _classifying(st)
    assert into and all(_meter_of(pf) is not None for pf in into)
    for pf in into:
        itype = struct.unpack_from("!H", pf.instructions, 0)[0]
        assert itype == ofp.OFPIT_METER
    # transit rules (s2 swaps the tag) are not metered: what they carry was, where it entered
    transit = [pf for pf in st.rules.values() if pf.dpid == 2]
    assert transit and all(_meter_of(pf) is None for pf in transit)
    # the meters exist where the rules naming them are, one per vport and vlink direction
    named = {(pf.dpid, _meter_of(pf)) for pf in into}
    assert named == set(st.meters)
    by_what = {(m.kind, m.what): m for m in st.meters.values()}
    assert set(by_what) == {
        ("vport", (0xA, 1)), ("vport", (0xB, 1)), ("vlink", (1, 0)), ("vlink", (1, 1)),
    }  # fmt: skip
    assert by_what[("vport", (0xA, 1))].dpid == 1 and by_what[("vport", (0xB, 1))].dpid == 3
    # src -> dst is limited where it arrives (B on s3), dst -> src on s1
    assert by_what[("vlink", (1, 0))].dpid == 3 and by_what[("vlink", (1, 1))].dpid == 1


def test_a_meter_is_a_drop_band_in_the_kinds_unit_with_statistics() -> None:
    st = _compile(two_switch_net((1, 2), (3, 1)))
    for m in st.meters.values():
        if m.kind == "vport":
            assert m.flags == ofp.OFPMF_PKTPS | ofp.OFPMF_STATS
            assert _band(m) == (ofp.OFPMBT_DROP, 1000, 0)
        else:
            assert m.flags == ofp.OFPMF_KBPS | ofp.OFPMF_STATS
            assert _band(m) == (ofp.OFPMBT_DROP, 20000, 0)
            assert (m.flags, m.bands) == infra.limit_meter(20000, False)


def test_meter_ids_come_from_the_pswitch_meter_space_owned_by_the_network() -> None:
    """Below the provider's punt meter, beside the tenants' own meters (which the network's
    vswitches allocate through the same allocator), and given back with the network."""
    alloc = IdAllocator()
    tenant = alloc.get(("meter", 1), tenant_owner(1, 0xA, "meter", 1), 1, layout.PUNT_METER - 1)
    st = _compile(two_switch_net((1, 2), (3, 1)), alloc=alloc)
    on_s1 = sorted(mid for d, mid in st.meters if d == 1)
    assert on_s1 == [2, 3] and tenant == 1  # the tenant's meter keeps its id
    for (d, mid), m in st.meters.items():
        owner = alloc.owner_of(("meter", d), mid)
        assert owner == (1, "limit", m.kind, *m.what)
        assert (("meter", d), owner) in st.owners
    again = _compile(two_switch_net((1, 2), (3, 1)), alloc=alloc)
    assert again.meters == st.meters and again.rules == st.rules  # stable ids
    release_unused(alloc, 1, set())
    assert alloc.peek(("meter", 1), (1, "limit", "vport", 0xA, 1)) is None
    assert alloc.owner_of(("meter", 1), 1) == tenant_owner(1, 0xA, "meter", 1)


def test_unlimited_kinds_get_no_meter_and_rules_stay_as_before() -> None:
    plain = _compile(two_switch_net((1, 2), (3, 1)), defaults=NO_LIMITS)
    assert not plain.meters and all(_meter_of(pf) is None for pf in plain.rules.values())
    only_vlinks = _compile(two_switch_net((1, 2), (3, 1)), defaults=Limits(vlink_pps=10))
    assert {m.kind for m in only_vlinks.meters.values()} == {"vlink"}
    hosts = [pf for pf in only_vlinks.rules.values() if oxm.ETH_SRC in _match(pf)]
    assert hosts and all(_meter_of(pf) is None for pf in hosts)


def test_a_networks_override_takes_precedence_over_the_defaults() -> None:
    net = two_switch_net((1, 2), (3, 1))
    net.limits = Limits(vport_kbps=300, vlink_pps=0)  # vports in kb/s, vlinks exempt
    st = _compile(net)
    assert {m.kind for m in st.meters.values()} == {"vport"}
    for m in st.meters.values():
        assert m.flags & ofp.OFPMF_KBPS and _band(m)[1] == 300
    net.limits = Limits(vlink_kbps=None)  # nothing set: the defaults again
    assert {m.kind for m in _compile(net).meters.values()} == {"vport", "vlink"}


def test_several_hosts_of_a_vport_share_its_meter() -> None:
    net = two_switch_net((1, 2), (3, 1))
    net.hosts[3] = Host(3, 0xA, 1, "02:00:00:00:00:03")
    st = _compile(net)
    hosts = [pf for pf in st.rules.values() if pf.dpid == 1 and oxm.ETH_SRC in _match(pf)]
    assert len(hosts) == 2 and len({_meter_of(pf) for pf in hosts}) == 1


def test_backup_paths_of_a_vlink_direction_share_its_meter_where_they_arrive() -> None:
    net = two_switch_net((1, 2), (2, 1), backup_num=1)
    st = _compile(net, ring4())
    ends = [pf for pf in _classifying(st) if pf.dpid == 2 and oxm.VLAN_VID in _match(pf)]
    assert len(ends) == 2  # the direct path and the long way round, both ending on s2
    assert len({_meter_of(pf) for pf in ends}) == 1


def test_an_exclusive_vport_and_a_moved_host_are_limited_where_they_enter() -> None:
    net = two_switch_net((1, 2), (3, 1))
    net.switches[0xA].ports[1].exclusive = True
    st = _compile(net)
    (exc,) = [pf for pf in st.rules.values() if pf.priority == infra.PRIO_EXCLUSIVE]
    assert st.meters[(1, _meter_of(exc))].what == (0xA, 1)  # type: ignore[index]
    net = two_switch_net((1, 2), (3, 1))
    net.hosts[2].location = (1, 4)  # B's host now behind s1, its vport still on s3
    st = _compile(net)
    (ingress,) = [pf for pf in st.rules.values()
                  if pf.dpid == 1 and _match(pf).get(oxm.ETH_SRC) == 0x020000000002]  # fmt: skip
    m = st.meters[(1, _meter_of(ingress))]  # type: ignore[index]
    assert (m.kind, m.what) == ("vport", (0xB, 1))  # metered on s1, before the fabric


def test_an_openflow_10_pswitch_gets_no_meter() -> None:
    topo = line3()
    topo.switches[3].of_version = 1
    st = _compile(two_switch_net((1, 2), (3, 1)), topo)
    assert st.meters and all(d != 3 for d, _ in st.meters)
    assert all(_meter_of(pf) is None for pf in st.rules.values() if pf.dpid == 3)


# --- the manager ------------------------------------------------------------------------------
def test_the_manager_sets_an_override_checks_it_and_announces_a_started_network() -> None:
    mgr = NetworkManager(PhysicalTopology(), "admin")
    seen: list[str] = []
    mgr.listeners.append(lambda ev, n: seen.append(ev))
    t = mgr.create_tenant("a")
    net = mgr.create_network(t.id, [])
    mgr.default_limits = Limits(vport_pps=100)
    mgr.set_limits(net.id, {"vlink_kbps": 5000, "vport_pps": None})
    assert net.limits == Limits(vlink_kbps=5000) and seen == []  # not started: no news
    assert mgr.effective_limits(net) == Limits(100, 0, 0, 5000)
    mgr.start_network(net.id)
    mgr.set_limits(net.id, {"vlink_kbps": 5000})
    assert seen == ["started"]  # the same again: nothing to re-derive
    mgr.set_limits(net.id, {})
    assert seen == ["started", "changed"] and net.limits == NO_LIMITS
    for bad in ({"vport_pps": 1, "vport_kbps": 2}, {"vport_pps": -1}, {"nope": 1},
                {"vport_pps": "5"}):  # fmt: skip
        with pytest.raises(InvalidRequest):
            mgr.set_limits(net.id, bad)
    assert net.limits == NO_LIMITS


# --- the program stage ------------------------------------------------------------------------
class _Driver:
    supports_meters = True


class MeterSession(FakeSession):
    """FakeSession that also names METER_MODs ("meter-add", "meter-mod", "meter-del")."""

    def __init__(self, dpid: int) -> None:
        super().__init__(dpid)
        self.driver = _Driver()

    def send_flow(self, build: Callable[[int], bytes], on_error: Any) -> None:
        msg = build(0)
        if msg[1] == ofp.OFPT_METER_MOD:
            command, _, mid = struct.unpack_from("!HHI", msg, 8)
            self.sent.append(({0: "meter-add", 1: "meter-mod", 2: "meter-del"}[command], mid))
            return
        super().send_flow(build, on_error)


def _one_switch(limits: Limits, alloc: IdAllocator) -> NetworkState:
    """two_switch_net over line3, only what lands on s1."""
    st = _compile(two_switch_net((1, 2), (3, 1)), defaults=limits, alloc=alloc)
    st.rules = {k: pf for k, pf in st.rules.items() if pf.dpid == 1}
    st.groups = {}
    st.meters = {k: m for k, m in st.meters.items() if k[0] == 1}
    return st


def test_meters_go_in_before_the_rules_that_name_them_and_out_after() -> None:
    s = MeterSession(1)
    alloc = IdAllocator()
    prog = NetworkProgrammer(cast(dict[int, PSwitchSession], {1: s}), alloc)
    prog.apply(_one_switch(NO_LIMITS, alloc), lambda st: [])
    for _ in range(4):
        s.release()
    s.sent.clear()
    limited = _one_switch(LIMITS, alloc)
    prog.apply(limited, lambda st: [])
    meters = sorted(mid for _, mid in limited.meters)
    assert s.sent == [("meter-add", mid) for mid in meters]  # the rules change in place after
    s.release()
    assert s.sent[len(meters) :] and all(k == "mod" for k, _ in s.sent[len(meters) :])
    for _ in range(3):
        s.release()
    assert list(prog.meters_on(1)) == list(limited.meters.values())
    s.sent.clear()
    faster = _one_switch(Limits(vport_pps=5000, vlink_kbps=20000), alloc)
    prog.apply(faster, lambda st: [])  # nothing new: the rate changes in place, no rule
    assert s.sent == [("meter-mod", mid) for _, mid in faster.meters if faster.meters[(1, mid)]
                      != limited.meters[(1, mid)]]  # fmt: skip
    for _ in range(3):
        s.release()
    s.sent.clear()
    prog.apply(_one_switch(NO_LIMITS, alloc), lambda st: [])  # nothing to add: at once,
    assert s.sent and all(k == "mod" for k, _ in s.sent)  # the rules lose their meter
    n = len(s.sent)
    s.release()  # then, once the pswitch has that, the meters go
    assert s.sent[n:] == [("meter-del", mid) for mid in meters]
    s.release()
    assert alloc.peek(("meter", 1), (1, "limit", "vport", 0xA, 1)) is None  # given back


def test_a_stopped_network_takes_its_meters_with_it() -> None:
    s = MeterSession(1)
    alloc = IdAllocator()
    prog = NetworkProgrammer(cast(dict[int, PSwitchSession], {1: s}), alloc)
    st = _one_switch(LIMITS, alloc)
    prog.apply(st, lambda st: [])
    for _ in range(4):
        s.release()
    s.sent.clear()
    prog.remove(1)
    kinds = [k for k, _ in s.sent]
    assert kinds.index("meter-del") > max(i for i, k in enumerate(kinds) if k == "del")


# --- limit hits: meter statistics, the API's report and the metrics -----------------------------
def _meter_stats(mid: int, packets: int, *dropped: int) -> bytes:
    """An OFPMP_METER reply entry with a band stats entry per `dropped`."""
    from tenantvisor.openflow import messages

    bands = b"".join(struct.pack("!QQ", d, d * 100) for d in dropped)
    head = messages.METER_STATS.pack(mid, messages.METER_STATS.size + len(bands), 1, packets,
                                     packets * 100, 5, 0)  # fmt: skip
    return head + bands


def test_meter_statistics_are_read_per_meter_and_summed_over_its_bands() -> None:
    from tenantvisor.limits import parse_meter_stats

    body = _meter_stats(3, 100, 40) + _meter_stats(9, 7) + _meter_stats(4, 50, 1, 2)
    assert parse_meter_stats([body]) == {3: (100, 40), 9: (7, 0), 4: (50, 3)}
    assert parse_meter_stats([body[:-8]]) == {3: (100, 40), 9: (7, 0)}  # truncated: tail lost
    assert parse_meter_stats(None) == {}


def test_limit_hits_stay_monotonic_across_a_recreated_meter_and_ignore_tenant_meters() -> None:
    from tenantvisor.limits import LimitHits

    st = _compile(two_switch_net((1, 2), (3, 1)))
    on_s3 = [(1, m) for (d, _), m in st.meters.items() if d == 3]
    vlink = next(m for _, m in on_s3 if m.kind == "vlink")
    hits = LimitHits()
    tenant_meter = 999  # in the same reply: the tenant's own meter, not ours to count
    hits.taken(3, on_s3, [_meter_stats(vlink.meter_id, 100, 40) + _meter_stats(tenant_meter, 5)])
    hits.taken(3, on_s3, [_meter_stats(vlink.meter_id, 150, 60)])
    assert hits.totals[(1, "vlink")] == [150, 60]
    hits.taken(3, on_s3, [_meter_stats(vlink.meter_id, 10, 5)])  # re-created: from zero
    assert hits.totals[(1, "vlink")] == [160, 65]
    (entry,) = [e for e in hits.report(1, st.meters.values()) if e["kind"] == "vlink"
                and e["dpid"] == 3]  # fmt: skip
    assert (entry["packets"], entry["dropped"], entry["rate"], entry["unit"]) == (
        160, 65, 20000, "kbps")  # fmt: skip
    assert (entry["link_id"], entry["direction"]) == (1, "src->dst")
    hits.forget(1)
    assert hits.totals[(1, "vlink")] == [160, 65] and not hits.meters


def test_the_metrics_show_each_networks_limit_hits_by_kind() -> None:
    from tenantvisor.hypervisor import Hypervisor
    from tenantvisor.metrics import metrics_text

    hv = Hypervisor("admin")
    t = hv.manager.create_tenant("alice")
    net = hv.manager.create_network(t.id, [])
    st = _compile(two_switch_net((1, 2), (3, 1)))
    st.net_id = net.id
    hv.program.states[net.id] = st
    vport = next(m for m in st.meters.values() if m.kind == "vport")
    hv.limit_hits.read(net.id, vport, 1000, 250)
    text = metrics_text(hv).decode()
    lab = f'kind="vport",network="{net.id}",tenant="alice"'
    assert f"tenantvisor_limit_dropped_packets_total{{{lab}}} 250.0" in text
    assert f"tenantvisor_limit_packets_total{{{lab}}} 1000.0" in text
    assert f"tenantvisor_limit_meters{{{lab}}} 2.0" in text
    assert f'tenantvisor_limit_dropped_packets_total{{kind="vlink",network="{net.id}"' in text


def test_a_lite_networks_tag_block_rule_carries_its_vlink_directions_meter() -> None:
    """At `lite` a one-hop vlink's far end classifies a whole block of tags with one rule:
    the same meter as the plain tag's, so a LITE-tagged lap is limited too."""
    net = two_switch_net((1, 2), (2, 1))
    net.scalability = "lite"
    st = _compile(net)
    ends = [pf for pf in _classifying(st) if pf.dpid == 2 and oxm.VLAN_VID in _match(pf)]
    masked = [pf for pf in ends if any(o.mask for o in codec.parse_match(pf.match, 0)[0])]
    assert len(ends) == 2 and len(masked) == 1  # the plain tag and the LITE block
    (meter,) = {_meter_of(pf) for pf in ends}
    assert st.meters[(2, meter)].what == (1, 0)  # type: ignore[index]
