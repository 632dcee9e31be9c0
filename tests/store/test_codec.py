"""The store's codec: every kind of intent and tenant state survives rows unchanged."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tenantvisor.mapping.alloc import IdAllocator, tenant_owner
from tenantvisor.mapping.paths import Hop
from tenantvisor.openflow import codec as ofcodec
from tenantvisor.store import codec
from tenantvisor.store.records import FlowRecord, GroupRecord, MeterRecord
from tenantvisor.virtual.flowtable import VFlow, normalize
from tenantvisor.virtual.groups import VGroup, VMeter
from tenantvisor.virtual.model import NO_LIMITS, Limits, VirtualNetwork

from .samples import HASH, TOP, allocations, big_network, dnb_intent, flows, groups, meters


def _through_idl(table: str, row: dict[str, Any]) -> dict[str, Any]:
    """What the `ovs` IDL would give back for a row written with `to_json`: OVSDB JSON
    decoded as the IDL's Python values (optional: a list of 0 or 1, map: a dict)."""
    kinds = codec.column_kinds()[table]
    out: dict[str, Any] = {}
    for col, v in codec.to_json(table, row).items():
        if kinds[col] == "map":
            assert v[0] == "map"
            out[col] = {a: b for a, b in v[1]}
        elif kinds[col] == "optional":
            out[col] = list(v[1]) if isinstance(v, list) else [v]
        else:
            out[col] = v
    return codec.from_idl(table, out)


def _roundtrip_net(net: VirtualNetwork) -> VirtualNetwork:
    rows = codec.network_rows(net)
    back = codec.NetworkRows(
        _through_idl("Virtual_Network", rows.network),
        {t: {k: _through_idl(t, r) for k, r in rs.items()} for t, rs in rows.tables.items()},
    )
    return codec.network_from_rows(back)


def test_big_network_round_trips() -> None:
    net = big_network()
    back = _roundtrip_net(net)
    assert back == net
    # the order of a big switch's pswitches, of URLs and of path hops is kept
    vd = (7 << 48) | 1
    assert back.switches[vd].dpids == net.switches[vd].dpids
    assert back.controller_urls == net.controller_urls
    assert [p.priority for p in back.links[1].paths] == [65535, 3]


def test_every_optional_and_empty_value_round_trips() -> None:
    net = big_network(n_switches=2)
    net.network_address = None
    net.mask = None
    net.started = False
    net.controller_urls = []
    for sw in net.switches.values():
        sw.controller_urls = None
    assert _roundtrip_net(net) == net
    # None (the network's controllers) and [] (none at all) are different intents
    vd = (7 << 48) | 2
    net.switches[vd].controller_urls = []
    back = _roundtrip_net(net)
    assert back.switches[vd].controller_urls == []
    assert back.switches[(7 << 48) | 1].controller_urls is None


def test_rows_are_keyed_and_hex_for_64_bit_values() -> None:
    net = big_network()
    rows = codec.network_rows(net)
    vs = rows.tables["Vswitch"][(7, codec.hex64((7 << 48) | 1))]
    assert vs["dpids"] == {
        0: f"{TOP | 0xA3:016x}",
        1: f"{TOP | 0xA1:016x}",
        2: f"{TOP | 0xA2:016x}",
    }
    assert all(len(v) == 16 for v in vs["dpids"].values())
    route = rows.tables["Route"][(7, vs["vdpid"], 1)]
    assert route["hops"][0] == f"{TOP | 0xA3:016x}/2-{TOP | 0xA1:016x}/3"
    assert "generation" not in rows.network
    assert codec.to_json("Vport", {"link": None, "number": 3}) == {
        "link": ["set", []],
        "number": 3,
    }
    assert codec.to_json("Vswitch", {"dpids": {1: "b", 0: "a"}}) == {
        "dpids": ["map", [[0, "a"], [1, "b"]]]
    }


def test_misfiled_objects_are_refused() -> None:
    net = big_network()
    sw = next(iter(net.switches.values()))
    sw.ports[99] = copy.copy(sw.ports[1])
    with pytest.raises(ValueError, match="filed under 99"):
        codec.network_rows(net)


def test_orphan_rows_are_refused() -> None:
    rows = codec.network_rows(big_network())
    vd = codec.hex64((7 << 48) | 1)
    del rows.tables["Vswitch"][(7, vd)]
    with pytest.raises(ValueError, match="not stored"):
        codec.network_from_rows(rows)


def test_hex64_bounds() -> None:
    assert codec.hex64(0) == "0" * 16
    assert codec.hex64((1 << 64) - 1) == "f" * 16
    assert codec.unhex64(codec.hex64(TOP | 5)) == TOP | 5
    for bad in (-1, 1 << 64, True):
        with pytest.raises(ValueError):
            codec.hex64(bad)  # type: ignore[arg-type]
    for text in ("0x01", "F" * 16, "1" * 15):
        with pytest.raises(ValueError):
            codec.unhex64(text)


def test_tenant_rows_hold_only_a_sha256() -> None:
    row = codec.tenant_row(3, "alice", HASH)
    assert row == {"id": 3, "name": "alice", "token_hash": HASH, "limits": {}}
    t = codec.tenant_from_row(row)
    assert (t.id, t.name, t.token_hash, t.token, t.limits) == (3, "alice", HASH, "", {})
    for plain in ("tv_abcdefghijklmnopqrstuvwxyz012345", HASH.upper(), HASH[:-1]):
        with pytest.raises(ValueError, match="sha256"):
            codec.tenant_row(3, "alice", plain)


def test_counters_row() -> None:
    assert codec.counters_row({"tenant": 4, "route": 9}) == {"tenant": 4, "route": 9}
    with pytest.raises(ValueError, match="unknown counters"):
        codec.counters_row({"vswitch": 1})


# --- allocations ----------------------------------------------------------------------------
KEYS: list[Any] = [
    ("tag", TOP | 1, 3),
    ("group", 1),
    ("marker", 0),
    ("tenant", 17),
    (4, "vlink", 9, 1, (Hop(1, 2, TOP | 3, 4), Hop(TOP | 3, 5, 6, 7)), 1),
    (4, "route", 9, (), ("x", ("y", (Hop(0, 0, 0, 0),))), -3),
    (4, True, None, "", 'with "quotes" and ünicode'),
    (),
    "plain",
    12,
]


@pytest.mark.parametrize("obj", KEYS, ids=repr)
def test_allocation_keys_decode_to_equal_objects(obj: Any) -> None:
    text = codec.encode_key(obj)
    back = codec.decode_key(text)
    assert back == obj
    assert hash(back) == hash(obj)
    assert type(back) is type(obj)
    assert codec.encode_key(back) == text  # canonical: one object, one string


def test_allocation_keys_are_canonical_and_distinct() -> None:
    texts = [codec.encode_key(k) for k in KEYS]
    assert len(set(texts)) == len(texts)
    # a Hop and the tuple of its fields are different owners, and stay different
    assert codec.encode_key((Hop(1, 2, 3, 4),)) != codec.encode_key(((1, 2, 3, 4),))
    assert codec.decode_key(codec.encode_key(((1, 2, 3, 4),))) == ((1, 2, 3, 4),)
    assert " " not in codec.encode_key(KEYS[4])


def test_allocation_keys_refuse_what_cannot_come_back() -> None:
    for bad in ([1, 2], {"a": 1}, 1.5, frozenset({1}), (b"x",)):
        with pytest.raises(TypeError):
            codec.encode_key(bad)
    for text in ('{"hop": [1, 2, 3]}', '{"other": 1}', '{"hop": [1, 2, 3, "4"]}'):
        with pytest.raises(ValueError):
            codec.decode_key(text)


def test_allocator_restores_from_rows() -> None:
    alloc = IdAllocator()
    for space, owner, i in allocations(7):
        alloc.restore([(space, owner, i)])
    rows = [codec.allocation_row(*a) for a in alloc.snapshot()]
    assert [r["network"] for r in rows].count(7) == 4  # the tenant group names no network
    again = IdAllocator()
    again.restore([codec.allocation_from_row(r) for r in rows])
    assert again.snapshot() == alloc.snapshot()
    # keyed on the decoded objects: the same owner finds its id, a new one gets a free id
    space, owner, i = allocations(7)[0]
    assert again.get(space, owner) == i
    assert again.get(space, ("another",)) == 1


def test_owner_network() -> None:
    assert codec.owner_network((5, "vlink")) == 5
    assert codec.owner_network(("tenant", 5)) is None  # before 1.1: tenant ids named none
    assert codec.owner_network(tenant_owner(7, 0x10, "group", 3)) == 7
    assert codec.owner_network((True, 1)) is None
    assert codec.owner_network((0x10000,)) is None
    assert codec.owner_network(5) is None


# --- tenant state ---------------------------------------------------------------------------
def test_flow_rows_round_trip_with_top_bit_cookies() -> None:
    for f in flows(7, TOP | 9, 20):
        row = codec.flow_row(f)
        assert len(row["cookie"]) == 16 and len(row["vdpid"]) == 16
        assert codec.flow_from_row(_through_idl("Tenant_Flow", row)) == f
    assert any(f.cookie >> 63 for f in flows(7, 1, 4))


def test_flow_records_from_and_to_vflows() -> None:
    match = [
        ofcodec.oxm_u32(0, 5),
        ofcodec.oxm_u64(2, 0xF0, 0xFF),
        ofcodec.oxm_mac(3, "02:00:00:00:00:01"),
    ]
    vf = VFlow(9, 2, 100, match, normalize(match), b"\x00\x01\x00\x08\x03\x00\x00\x00",
               TOP | 1, 10, 20, 1)  # fmt: skip
    rec = FlowRecord.of(7, TOP | 1, vf)
    assert rec.match == b"".join(o.encode() for o in match)
    back = codec.flow_from_row(_through_idl("Tenant_Flow", codec.flow_row(rec))).to_vflow()
    for attr in ("serial", "table", "priority", "match", "norm", "instructions", "cookie",
                 "idle_timeout", "hard_timeout", "flags"):  # fmt: skip
        assert getattr(back, attr) == getattr(vf, attr), attr
    assert back.phys == ()


def test_group_and_meter_rows_round_trip() -> None:
    for g in groups(7, TOP | 1):
        assert codec.group_from_row(_through_idl("Tenant_Group", codec.group_row(g))) == g
    for m in meters(7, TOP | 1):
        assert codec.meter_from_row(_through_idl("Tenant_Meter", codec.meter_row(m))) == m
    vg = VGroup(1, b"\x01\x02", 5, 0.0)
    rec = GroupRecord.of(7, 1, 3, vg)
    assert (rec.group_id, rec.phys_id, rec.to_vgroup().buckets) == (3, 5, b"\x01\x02")
    vm = VMeter(3, b"\x09", 6)
    assert MeterRecord.of(7, 1, 2, vm).to_vmeter() == vm


# --- dedicated network bridges --------------------------------------------------------------
def test_dnb_intent_round_trips() -> None:
    intent = dnb_intent()
    tables = codec.dnb_rows(intent)
    back = codec.dnb_from_rows(
        {t: [_through_idl(t, r) for r in rows.values()] for t, rows in tables.items()}
    )
    assert back == intent
    assert tables["Dnb_Node"][("n1",)]["transport_ip"] == "192.168.7.1/24"
    assert tables["Dnb_Tenant_Port"][("n1", "int0")]["remote_ip"] is None


def test_shipped_schema_matches_the_codec() -> None:
    s = codec.schema()
    assert s["name"] == codec.DB_NAME
    assert codec.schema_version() == (1, 4, 0)
    tables = s["tables"]
    assert set(codec.KEYS) == set(tables)
    for table, cols in codec.KEYS.items():
        if cols:  # every identifying key is one of the table's unique indexes
            assert list(cols) in tables[table]["indexes"], table
    for table, col in codec.NET_COLUMN.items():
        assert col in tables[table]["columns"]
    assert ["space", "id"] in tables["Allocation"]["indexes"]
    # every row the codec writes names only the schema's columns
    net = big_network()
    rows = codec.network_rows(net)
    samples = {
        "Virtual_Network": [rows.network],
        **{t: list(r.values()) for t, r in rows.tables.items()},
    }
    samples["Tenant_Flow"] = [codec.flow_row(f) for f in flows(7, 1, 1)]
    samples["Tenant_Group"] = [codec.group_row(g) for g in groups(7, 1)]
    samples["Tenant_Meter"] = [codec.meter_row(m) for m in meters(7, 1)]
    samples["Allocation"] = [codec.allocation_row(*a) for a in allocations(7)]
    for t, rs in codec.dnb_rows(dnb_intent()).items():
        samples[t] = list(rs.values())
    for table, rs in samples.items():
        for r in rs:
            assert set(r) <= set(tables[table]["columns"]), table


def test_a_moved_host_keeps_its_location() -> None:
    net = big_network(n_switches=2)
    h = next(iter(net.hosts.values()))
    h.location = ((9 << 48) | 3, 17)
    back = _roundtrip_net(net)
    assert back == net and back.hosts[h.id].location == ((9 << 48) | 3, 17)
    rows = codec.network_rows(net)
    assert rows.tables["Host"][(net.id, h.id)]["location"] == "0009000000000003:17"


def test_an_exclusive_vport_keeps_its_mode_and_an_older_row_is_a_plain_vport() -> None:
    """Only an exclusive vport's row names the column (a plain vport's is what schema 1.1
    wrote), and a row without it, as an older database holds, loads as a plain vport."""
    net = big_network(n_switches=2)
    big = next(iter(net.switches.values()))
    assert big.ports[3].exclusive and not big.ports[1].exclusive
    back = _roundtrip_net(net)
    assert back == net and back.switches[big.vdpid].ports[3].exclusive
    rows = codec.network_rows(net)
    vports = rows.tables["Vport"]
    assert vports[(net.id, codec.hex64(big.vdpid), 3)]["exclusive"] is True
    assert vports[(net.id, codec.hex64(big.vdpid), 1)]["exclusive"] is None
    for r in vports.values():
        del r["exclusive"]
    old = codec.network_from_rows(rows)
    assert not any(vp.exclusive for sw in old.switches.values() for vp in sw.ports.values())


def test_a_tenant_keeps_its_own_limits_and_an_older_row_has_none() -> None:
    """Schema 1.4: the admin's values for a tenant's limits are a map on its row; a row
    without the column (a database from before, converted) is a tenant with the defaults."""
    row = codec.tenant_row(3, "alice", HASH, {"vswitches": 4, "msg_rate": 500})
    assert row["limits"] == {"vswitches": 4, "msg_rate": 500}
    assert codec.tenant_from_row(row).limits == {"vswitches": 4, "msg_rate": 500}
    assert codec.to_json("Tenant", row)["limits"] == ["map", [["msg_rate", 500], ["vswitches", 4]]]
    del row["limits"]
    assert codec.tenant_from_row(row).limits == {}


def test_a_networks_limits_keep_what_the_admin_set_and_an_older_row_has_none() -> None:
    """Only the fields the override sets are written (0, unlimited, is a setting; None is
    not), so a network without one writes an empty map, as a row from before schema 1.3
    reads; such a row loads with no override (the defaults apply)."""
    net = big_network(n_switches=2)
    back = _roundtrip_net(net)
    assert back == net and back.limits == Limits(2000, None, 0, 0xFFFFFFFF)
    rows = codec.network_rows(net)
    assert rows.network["limits"] == {"vport_pps": 2000, "vlink_pps": 0, "vlink_kbps": 0xFFFFFFFF}
    net.limits = NO_LIMITS
    assert codec.network_rows(net).network["limits"] == {}
    del rows.network["limits"]
    assert codec.network_from_rows(rows).limits == NO_LIMITS
