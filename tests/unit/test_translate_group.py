"""Tenant groups on physical ids: every type, watches mapped, buckets translated."""

from __future__ import annotations

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.openflow.codec import OFError
from tenantvisor.translate.flow import flood_buckets
from tenantvisor.translate.group import GroupMod, GroupSpec, output_group, translate_group
from tenantvisor.translate.view import PortMap, VSwitchView

DP = ProtocolDesc(ofp.OFP_VERSION)
VIEW = VSwitchView(1, 3, 0x33, 9, 8, {1: PortMap(1, 11), 2: PortMap(2, 12, 40, True)})


def tenant_group(gtype: int, buckets: list[p.OFPBucket], gid: int = 5) -> GroupMod:
    msg = p.OFPGroupMod(DP, ofp.OFPGC_ADD, gtype, gid, buckets)
    msg.set_xid(1)
    msg.serialize()
    return GroupMod.parse(bytes(msg.buf))


def physical(out: bytes) -> p.OFPGroupMod:
    """os-ken has no GROUP_MOD parser: read the body with its bucket parser."""
    import struct

    cmd, gtype, gid = struct.unpack_from("!HBxI", out, 8)
    buckets, off = [], 16
    while off < len(out):
        b = p.OFPBucket.parser(out, off)
        buckets.append(b)
        off += b.len
    return p.OFPGroupMod(DP, cmd, gtype, gid, buckets)


@pytest.mark.parametrize("gtype", [ofp.OFPGT_ALL, ofp.OFPGT_SELECT, ofp.OFPGT_INDIRECT])
def test_each_group_type_keeps_its_type_on_its_physical_id(gtype: int) -> None:
    weight = 3 if gtype == ofp.OFPGT_SELECT else 0
    gm = tenant_group(gtype, [p.OFPBucket(weight=weight, actions=[p.OFPActionOutput(1)])])
    out = physical(translate_group(VIEW, {}, gm, 1234))
    assert (out.type, out.group_id) == (gtype, 1234)
    assert out.buckets[0].weight == weight and out.buckets[0].actions[0].port == 11


def test_a_fast_failover_watch_port_is_the_vports_physical_port() -> None:
    gm = tenant_group(ofp.OFPGT_FF, [
        p.OFPBucket(watch_port=2, actions=[p.OFPActionOutput(2)]),
        p.OFPBucket(watch_port=1, actions=[p.OFPActionOutput(1)]),
    ])  # fmt: skip
    out = physical(translate_group(VIEW, {}, gm, 7))
    assert [b.watch_port for b in out.buckets] == [12, 11]
    acts = out.buckets[0].actions  # a link vport: the fabric tag goes around the output
    assert isinstance(acts[0], p.OFPActionPushVlan) and acts[0].ethertype == 0x88A8


def test_a_watch_group_is_the_tenants_group_on_its_physical_id() -> None:
    gm = tenant_group(ofp.OFPGT_FF, [p.OFPBucket(watch_group=4, actions=[p.OFPActionOutput(1)])])
    out = physical(translate_group(VIEW, {4: 99}, gm, 7))
    assert out.buckets[0].watch_group == 99
    with pytest.raises(OFError) as exc:
        translate_group(VIEW, {}, gm, 7)
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_BAD_WATCH)


@pytest.mark.parametrize(
    ("gtype", "buckets", "code"),
    [
        (ofp.OFPGT_INDIRECT, [p.OFPBucket(actions=[]), p.OFPBucket(actions=[])],
         ofp.OFPGMFC_INVALID_GROUP),
        (ofp.OFPGT_ALL, [p.OFPBucket(weight=2, actions=[])], ofp.OFPGMFC_BAD_BUCKET),
        (ofp.OFPGT_ALL, [p.OFPBucket(watch_port=77, actions=[])], ofp.OFPGMFC_BAD_WATCH),
        (9, [p.OFPBucket(actions=[])], ofp.OFPGMFC_BAD_TYPE),
    ],
    ids=["indirect-two-buckets", "weight-outside-select", "watch-unknown-port", "bad-type"],
)  # fmt: skip
def test_malformed_groups_get_the_spec_error(gtype: int, buckets: list, code: int) -> None:  # type: ignore[type-arg]
    with pytest.raises(OFError) as exc:
        translate_group(VIEW, {}, tenant_group(gtype, buckets), 7)
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_GROUP_MOD_FAILED, code)


@pytest.mark.parametrize("command", [ofp.OFPGC_ADD, ofp.OFPGC_MODIFY])
@pytest.mark.parametrize("port", [7, ofp.OFPP_IN_PORT])
def test_an_edge_vports_output_group_is_indirect_with_one_bucket_to_its_port(
    command: int, port: int
) -> None:
    g = physical(output_group(command, 0x42, port))
    assert (g.command, g.type, g.group_id) == (command, ofp.OFPGT_INDIRECT, 0x42)
    [bucket] = g.buckets
    assert (bucket.watch_port, bucket.watch_group) == (ofp.OFPP_ANY, ofp.OFPG_ANY)
    assert [(type(a), a.port) for a in bucket.actions] == [(p.OFPActionOutput, port)]


EDGES = VSwitchView(1, 3, 0x33, 9, 8, {1: PortMap(1, 11), 2: PortMap(2, 12), 3: PortMap(3, 13)},
                    flood_group=0x77)  # fmt: skip


def bucket_outputs(view: VSwitchView, port: int) -> list[tuple[str, int]]:
    gm = tenant_group(ofp.OFPGT_ALL, [p.OFPBucket(actions=[p.OFPActionOutput(port)])])
    [bucket] = physical(translate_group(view, {}, gm, 7)).buckets
    return [(type(a).__name__, getattr(a, "port", getattr(a, "group_id", 0)))
            for a in bucket.actions]  # fmt: skip


@pytest.mark.parametrize("port", [ofp.OFPP_FLOOD, ofp.OFPP_ALL])
def test_flood_in_a_bucket_is_the_vswitchs_flood_group(port: int) -> None:
    """A bucket does not know the ingress vport, and Open vSwitch executes it as an action
    set (one output): the vswitch's flood group (a bucket per vport, the one to the
    packet's own in_port left out by OVS) does what FLOOD and ALL ask."""
    assert bucket_outputs(EDGES, port) == [("OFPActionGroup", 0x77)]
    with pytest.raises(OFError):  # no flood group (some vport's output needs the ingress)
        bucket_outputs(VIEW, port)


def test_a_flood_groups_buckets_output_to_every_vport_that_is_up() -> None:
    view = VSwitchView(1, 3, 0x33, 9, 8, {
        1: PortMap(1, 11, tx_group=901), 2: PortMap(2, 12, 40, True), 3: PortMap(3, 13, up=False),
    })  # fmt: skip
    got = flood_buckets(view)
    assert got is not None
    g = physical(GroupSpec(9, 5, ofp.OFPGT_ALL, got).mod(ofp.OFPGC_ADD))
    assert [[type(a).__name__ for a in b.actions] for b in g.buckets] == [
        ["OFPActionGroup"],  # the edge vport's counting group
        ["OFPActionPushVlan", "OFPActionSetField", "OFPActionOutput"],  # tagged, no pop
    ]
    shared = VSwitchView(1, 3, 0x33, 9, 8, {2: PortMap(2, 12, 40, True),
                                            3: PortMap(3, 12, 41, True)})  # fmt: skip
    assert flood_buckets(shared) is None


def test_in_port_in_a_bucket_is_the_physical_in_port_when_every_vport_is_a_hosts() -> None:
    assert bucket_outputs(EDGES, ofp.OFPP_IN_PORT) == [("OFPActionOutput", ofp.OFPP_IN_PORT)]
    with pytest.raises(OFError) as exc:  # a vlink's ingress would need its tag pushed
        bucket_outputs(VIEW, ofp.OFPP_IN_PORT)
    assert exc.value.code == ofp.OFPGMFC_BAD_BUCKET


@pytest.mark.parametrize("port", [ofp.OFPP_FLOOD, ofp.OFPP_IN_PORT])
def test_a_bucket_needing_the_ingress_where_vports_share_a_port_is_refused(port: int) -> None:
    shared = VSwitchView(1, 3, 0x33, 9, 8, {1: PortMap(1, 11), 2: PortMap(2, 12, 40, True),
                                            3: PortMap(3, 12, 41, True)})  # fmt: skip
    with pytest.raises(OFError) as exc:
        bucket_outputs(shared, port)
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_GROUP_MOD_FAILED,
                                                ofp.OFPGMFC_BAD_BUCKET)  # fmt: skip


def test_a_group_whose_translation_outgrows_openflow_lengths_is_refused_with_too_many() -> None:
    # 1500 buckets outputting to a link vport fit the tenant's GROUP_MOD (48 kB); each
    # output becomes three actions (the fabric tag), 84 kB in all
    bucket = p.OFPBucket(actions=[p.OFPActionOutput(2)])
    with pytest.raises(OFError) as exc:
        translate_group(VIEW, {}, tenant_group(ofp.OFPGT_ALL, [bucket] * 1500), 7)
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_TOO_MANY)


def test_a_bucket_is_read_as_an_action_set_as_open_vswitch_executes_it() -> None:
    """OVS executes a bucket as an action set: one action of each kind (set_field: of each
    field), the last given.  So is it translated: the fabric tag's actions never collide
    with a second output, and are pushed without the pop an action list would need (an
    action set pops first: it would take the tenant's own VLAN tag)."""
    twice = p.OFPBucket(actions=[p.OFPActionOutput(1), p.OFPActionOutput(2),
                                 p.OFPActionSetField(eth_dst="02:00:00:00:00:01"),
                                 p.OFPActionSetField(eth_dst="02:00:00:00:00:02")])  # fmt: skip
    [b] = physical(translate_group(VIEW, {}, tenant_group(ofp.OFPGT_ALL, [twice]), 7)).buckets
    got = [(type(a).__name__, getattr(a, "port", getattr(a, "value", None))) for a in b.actions]
    assert got == [("OFPActionPushVlan", None), ("OFPActionSetField", 0x1000 | 40),
                   ("OFPActionOutput", 12), ("OFPActionSetField", "02:00:00:00:00:02")]  # fmt: skip
