"""A vswitch's GROUP_MOD and METER_MOD decided without sockets (virtual/groups.py).

The decisions return what goes to the first pswitch (with what to take back if it refuses)
and change the part's state; the last tests send them through a real endpoint whose
pswitch session and tenant connection are fakes that record what they are given.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable
from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.openflow import codec
from tenantvisor.openflow.codec import MalformedMessage, OFError
from tenantvisor.translate.flow import PhysFlow
from tenantvisor.translate.group import GroupSpec, delete_group
from tenantvisor.translate.meter import meter_mod
from tenantvisor.translate.view import PortMap, VSwitchView
from tenantvisor.virtual.endpoint import VSwitchEndpoint
from tenantvisor.virtual.flowtable import VFlow, VirtualFlowTable
from tenantvisor.virtual.groups import Forget, Send, VSwitchGroups
from tenantvisor.virtual.outbox import Outbox

from .ofkit import DP, apply, osken_bytes, osken_flow_mod, osken_parse

DPID = 9
VIEW = VSwitchView(1, 3, 0x33, DPID, 8, {1: PortMap(1, 11), 2: PortMap(2, 12)})


class Ids:
    """The hypervisor's id spaces: the lowest free id per (kind, dpid), as IdAllocator (with
    `owners`, an owner asking again gets the id it holds; without, two parts over one view
    stand for two vswitches)."""

    def __init__(self, limit: int = 1000, owners: bool = False) -> None:
        self.limit = limit
        self.held: dict[tuple[str, int], set[int]] = {}
        self.owners: dict[tuple[str, int, Hashable], int] = {}
        self.by_owner = owners

    def alloc_id(self, kind: str, dpid: int, owner: Hashable) -> int | None:
        if self.by_owner and (kind, dpid, owner) in self.owners:
            return self.owners[(kind, dpid, owner)]
        held = self.held.setdefault((kind, dpid), set())
        free = next((i for i in range(1, self.limit + 1) if i not in held), None)
        if free is not None:
            held.add(free)
            self.owners[(kind, dpid, owner)] = free
        return free

    def free_id(self, kind: str, dpid: int, value: int) -> None:
        self.held[(kind, dpid)].remove(value)  # freeing what is not held is a bug: KeyError
        self.owners = {k: v for k, v in self.owners.items() if k[:2] != (kind, dpid)
                       or v != value}  # fmt: skip

    def holds(self, kind: str) -> set[int]:
        return self.held.get((kind, DPID), set())


class VSwitch:
    """What the decisions read of their vswitch (GroupsContext)."""

    def __init__(self, ids: Ids | None = None, view: VSwitchView = VIEW) -> None:
        self.view = view
        self.table = VirtualFlowTable()
        self.host = ids or Ids()
        self.full: dict[str, str] = {}  # quota -> why it is full (a tenant at its quota)

    def quota_full(self, kind: str) -> str | None:
        return self.full.get(kind)


def part(ids: Ids | None = None, view: VSwitchView = VIEW) -> VSwitchGroups:
    return VSwitchGroups(VSwitch(ids, view))


def group_mod(cmd: int, gid: int, gtype: int = ofp.OFPGT_ALL, buckets: Any = None) -> bytes:
    if buckets is None:
        buckets = [p.OFPBucket(actions=[p.OFPActionOutput(1)])]
    return osken_bytes(p.OFPGroupMod(DP, cmd, gtype, gid, buckets))


def meter(cmd: int, mid: int, rate: int = 1000, flags: int = ofp.OFPMF_KBPS) -> bytes:
    bands = [p.OFPMeterBandDrop(rate=rate, burst_size=0)] if cmd != ofp.OFPMC_DELETE else []
    return osken_bytes(p.OFPMeterMod(DP, cmd, flags, mid, bands))


def physical_group(msg: bytes) -> tuple[int, int, int, list[Any]]:
    """(command, type, group id, os-ken buckets) of a physical GROUP_MOD."""
    assert msg[1] == ofp.OFPT_GROUP_MOD and struct.unpack_from("!H", msg, 2)[0] == len(msg)
    cmd, gtype, gid = struct.unpack_from("!HBxI", msg, 8)
    buckets, off = [], 16
    while off < len(msg):
        b = p.OFPBucket.parser(msg, off)
        buckets.append(b)
        off += b.len
    return cmd, gtype, gid, buckets


def refused(exc: pytest.ExceptionInfo[OFError]) -> tuple[int, int]:
    return exc.value.type, exc.value.code


def only_send(steps: list[Send | Forget]) -> Send:
    assert len(steps) == 1 and isinstance(steps[0], Send)
    return steps[0]


# --- GROUP_MOD ---------------------------------------------------------------------------------
def test_a_bucket_may_chain_to_a_group_the_tenant_adds_later() -> None:
    """Open vSwitch takes a bucket naming a group that does not exist yet: the id that group
    will have is reserved for it, and given back when no bucket names it any more."""
    ids = Ids(owners=True)
    g = part(ids)
    chain = [p.OFPBucket(actions=[p.OFPActionGroup(5)])]
    send = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 1, ofp.OFPGT_INDIRECT, chain)))
    (_, _, phys1, [bucket]) = physical_group(send.msg)
    reserved = bucket.actions[0].group_id
    assert g.forward == {5: reserved} and ids.holds("group") == {phys1, reserved}
    send = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5)))
    assert physical_group(send.msg)[2] == reserved and g.forward == {}
    g.decide_group_mod(group_mod(ofp.OFPGC_DELETE, 5))
    assert g.forward == {5: reserved}  # named again before it exists: reserved again
    g.decide_group_mod(group_mod(ofp.OFPGC_DELETE, 1))
    assert g.forward == {} and ids.holds("group") == set()


def test_add_allocates_a_physical_id_and_translates_the_buckets() -> None:
    g = part()
    send = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5)))
    cmd, gtype, gid, buckets = physical_group(send.msg)
    assert (cmd, gtype, gid) == (ofp.OFPGC_ADD, ofp.OFPGT_ALL, 1)  # the first free id
    assert [a.port for a in buckets[0].actions] == [11]  # vport 1 is physical port 11
    assert g.group_map == {5: 1} and g.groups[5].type == ofp.OFPGT_ALL
    assert send.report and send.undo is not None  # a refusal is the tenant's, and undone


def test_tenants_group_ids_are_namespaced_by_allocation() -> None:
    ids = Ids()
    a, b = part(ids), part(ids)  # two vswitches on the same pswitch
    pa = physical_group(only_send(a.decide_group_mod(group_mod(ofp.OFPGC_ADD, 1))).msg)[2]
    pb = physical_group(only_send(b.decide_group_mod(group_mod(ofp.OFPGC_ADD, 1))).msg)[2]
    assert pa != pb and a.group_map == {1: pa} and b.group_map == {1: pb}
    # a watch_group names the tenant's own group: its physical id, never another's
    ff = [p.OFPBucket(watch_group=1, actions=[p.OFPActionOutput(2)])]
    send = only_send(b.decide_group_mod(group_mod(ofp.OFPGC_ADD, 2, ofp.OFPGT_FF, ff)))
    assert physical_group(send.msg)[3][0].watch_group == pb
    with pytest.raises(OFError) as exc:  # a group of the other vswitch's does not exist here
        a.decide_group_mod(group_mod(ofp.OFPGC_ADD, 3, ofp.OFPGT_FF, [
            p.OFPBucket(watch_group=7, actions=[p.OFPActionOutput(2)])]))  # fmt: skip
    assert refused(exc) == (ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_BAD_WATCH)


_GMF = ofp.OFPET_GROUP_MOD_FAILED


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (group_mod(ofp.OFPGC_ADD, ofp.OFPG_MAX + 1), (_GMF, ofp.OFPGMFC_INVALID_GROUP)),
        (group_mod(ofp.OFPGC_ADD, 5), (_GMF, ofp.OFPGMFC_GROUP_EXISTS)),
        (group_mod(ofp.OFPGC_MODIFY, 6), (_GMF, ofp.OFPGMFC_UNKNOWN_GROUP)),
        (group_mod(9, 5), (_GMF, ofp.OFPGMFC_BAD_COMMAND)),
        (group_mod(ofp.OFPGC_ADD, 6, 9), (_GMF, ofp.OFPGMFC_BAD_TYPE)),
        (group_mod(ofp.OFPGC_ADD, 6, ofp.OFPGT_INDIRECT, [p.OFPBucket(actions=[])] * 2),
         (_GMF, ofp.OFPGMFC_INVALID_GROUP)),
        (group_mod(ofp.OFPGC_ADD, 6, buckets=[p.OFPBucket(actions=[p.OFPActionOutput(7)])]),
         (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT)),
    ],
    ids=["id-above-max", "exists", "modify-unknown", "bad-command", "bad-type",
         "indirect-two-buckets", "unknown-vport"],
)  # fmt: skip
def test_refused_group_mods_get_the_spec_error_and_change_nothing(
    msg: bytes, error: tuple[int, int]
) -> None:
    ids = Ids()
    g = part(ids)
    g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5))
    before = (dict(g.groups), set(ids.holds("group")))
    with pytest.raises(OFError) as exc:
        g.decide_group_mod(msg)
    assert refused(exc) == error
    assert (g.groups, ids.holds("group")) == before  # the id of a refused ADD is freed


def test_no_ids_left_is_out_of_groups() -> None:
    g = part(Ids(limit=1))
    g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 1))
    with pytest.raises(OFError) as exc:
        g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 2))
    assert refused(exc) == (ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS)


def test_groups_over_an_openflow10_pswitch_are_refused() -> None:
    g = part(view=VSwitchView(1, 3, 0x33, DPID, 1, dict(VIEW.ports), of10=True))
    with pytest.raises(OFError) as exc:
        g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 1))
    assert refused(exc) == (ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_EPERM)
    with pytest.raises(OFError) as exc:
        g.decide_meter_mod(meter(ofp.OFPMC_ADD, 1))
    assert refused(exc) == (ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_UNKNOWN)


def test_a_short_group_mod_is_malformed() -> None:
    with pytest.raises(MalformedMessage):
        part().decide_group_mod(group_mod(ofp.OFPGC_ADD, 1)[:12])


def test_a_group_the_pswitch_refuses_never_existed() -> None:
    ids = Ids()
    g = part(ids)
    send = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5)))
    assert send.undo is not None
    send.undo()
    assert g.groups == {} and ids.holds("group") == set()
    # the tenant may add it again; a late refusal of the first ADD leaves the second alone
    again = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5)))
    send.undo()
    assert 5 in g.groups and ids.holds("group") == {g.groups[5].phys_id}
    assert physical_group(again.msg)[2] == g.groups[5].phys_id


def test_a_refused_add_does_not_undo_a_later_add_of_the_same_id() -> None:
    ids = Ids()
    g = part(ids)
    first = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5)))
    g.decide_group_mod(group_mod(ofp.OFPGC_DELETE, 5))
    g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5))
    assert first.undo is not None
    first.undo()
    assert 5 in g.groups and ids.holds("group") == {g.groups[5].phys_id}


def test_modify_keeps_the_physical_id() -> None:
    g = part()
    g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5))
    phys = g.groups[5].phys_id
    sel = [p.OFPBucket(weight=2, actions=[p.OFPActionOutput(2)])]
    send = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_MODIFY, 5, ofp.OFPGT_SELECT, sel)))
    cmd, gtype, gid, buckets = physical_group(send.msg)
    assert (cmd, gtype, gid) == (ofp.OFPGC_MODIFY, ofp.OFPGT_SELECT, phys)
    assert buckets[0].weight == 2 and buckets[0].actions[0].port == 12
    assert g.groups[5].type == ofp.OFPGT_SELECT and send.report and send.undo is not None


def test_a_group_modify_the_pswitch_refuses_puts_the_group_back_as_it_was() -> None:
    g = part()
    g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5))
    before = g.groups[5]
    wanted = g.desired_groups(DPID)
    sel = [p.OFPBucket(weight=2, actions=[p.OFPActionOutput(2)])]
    first = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_MODIFY, 5, ofp.OFPGT_SELECT, sel)))
    ind = [p.OFPBucket(actions=[p.OFPActionOutput(1)])]
    second = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_MODIFY, 5, ofp.OFPGT_INDIRECT, ind)))
    assert g.groups[5].type == ofp.OFPGT_INDIRECT
    assert first.undo is not None and second.undo is not None
    first.undo()  # both refused, in the order they were sent
    second.undo()
    assert g.groups[5] is before and g.desired_groups(DPID) == wanted


def _group_action(gid: int) -> bytes:
    return struct.pack("!HHI", ofp.OFPAT_GROUP, 8, gid)


def _rule(vs: VSwitch, serial: int, instructions: bytes, flags: int = 0) -> VFlow:
    """A tenant rule in the table with one physical rule (with the flags it was sent with)."""
    pf = PhysFlow(DPID, 1, serial, b"", instructions, serial, flags=flags)
    vf = VFlow(serial, 0, serial, [], (), instructions, 0, 0, 0, flags, (pf,))
    vs.table.put(vf)
    return vf


def test_delete_frees_the_id_and_forgets_the_rules_the_pswitch_drops() -> None:
    ids = Ids()
    vs = VSwitch(ids)
    g = VSwitchGroups(vs)
    g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 5))
    g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 6))
    phys5 = g.groups[5].phys_id
    to5 = codec.encode_instructions(apply_actions=_group_action(5))
    to6 = codec.encode_instructions(apply_actions=_group_action(6))
    quiet = _rule(vs, 1, to5)
    _rule(vs, 2, to5, ofp.OFPFF_SEND_FLOW_REM)  # its FLOW_REMOVED will take it out
    _rule(vs, 3, to6)
    steps = g.decide_group_mod(group_mod(ofp.OFPGC_DELETE, 5))
    assert steps == [Send(delete_group(phys5)), Forget(quiet)]
    assert sorted(vf.serial for vf in vs.table) == [2, 3]
    assert list(g.groups) == [6] and phys5 not in ids.holds("group")
    assert g.decide_group_mod(group_mod(ofp.OFPGC_DELETE, 5)) == []  # gone: nothing, no error


def test_delete_all_deletes_every_group_in_order() -> None:
    ids = Ids()
    g = part(ids)
    for gid in (7, 3):
        g.decide_group_mod(group_mod(ofp.OFPGC_ADD, gid))
    phys = {gid: grp.phys_id for gid, grp in g.groups.items()}
    steps = g.decide_group_mod(group_mod(ofp.OFPGC_DELETE, ofp.OFPG_ALL))
    assert steps == [Send(delete_group(phys[7])), Send(delete_group(phys[3]))]
    assert g.groups == {} and ids.holds("group") == set()


# --- METER_MOD ---------------------------------------------------------------------------------
def test_meter_add_modify_delete_on_physical_ids() -> None:
    ids = Ids()
    vs = VSwitch(ids)
    g = VSwitchGroups(vs)
    add = only_send(g.decide_meter_mod(meter(ofp.OFPMC_ADD, 4, rate=500)))
    phys = g.meters[4].phys_id
    bands = g.meters[4].bands
    assert add.msg == meter_mod(ofp.OFPMC_ADD, ofp.OFPMF_KBPS, phys, bands)
    assert g.meter_map == {4: phys} and add.report and add.undo is not None
    mod = only_send(g.decide_meter_mod(meter(ofp.OFPMC_MODIFY, 4, rate=900)))
    assert mod.msg == meter_mod(ofp.OFPMC_MODIFY, ofp.OFPMF_KBPS, phys, g.meters[4].bands)
    assert g.meters[4].bands != bands and mod.report and mod.undo is not None
    metered = _rule(vs, 1, codec.encode_instructions(meter=4))
    steps = g.decide_meter_mod(meter(ofp.OFPMC_DELETE, 4))
    assert steps == [Send(meter_mod(ofp.OFPMC_DELETE, 0, phys, b"")), Forget(metered)]
    assert g.meters == {} and ids.holds("meter") == set() and len(vs.table) == 0


def test_meters_of_two_vswitches_do_not_meet() -> None:
    ids = Ids()
    a, b = part(ids), part(ids)
    a.decide_meter_mod(meter(ofp.OFPMC_ADD, 1))
    b.decide_meter_mod(meter(ofp.OFPMC_ADD, 1))
    assert a.meter_map[1] != b.meter_map[1]
    b.decide_meter_mod(meter(ofp.OFPMC_DELETE, ofp.OFPM_ALL))
    assert a.meters and not b.meters and ids.holds("meter") == {a.meter_map[1]}


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        (meter(ofp.OFPMC_ADD, 0), ofp.OFPMMFC_INVALID_METER),
        (meter(ofp.OFPMC_ADD, ofp.OFPM_CONTROLLER), ofp.OFPMMFC_INVALID_METER),
        (meter(ofp.OFPMC_ADD, 4), ofp.OFPMMFC_METER_EXISTS),
        (meter(ofp.OFPMC_MODIFY, 5), ofp.OFPMMFC_UNKNOWN_METER),
        (meter(7, 4), ofp.OFPMMFC_BAD_COMMAND),
    ],
    ids=["zero", "reserved", "exists", "modify-unknown", "bad-command"],
)
def test_refused_meter_mods_get_the_spec_error_and_change_nothing(msg: bytes, code: int) -> None:
    ids = Ids()
    g = part(ids)
    g.decide_meter_mod(meter(ofp.OFPMC_ADD, 4))
    before = (dict(g.meters), set(ids.holds("meter")))
    with pytest.raises(OFError) as exc:
        g.decide_meter_mod(msg)
    assert refused(exc) == (ofp.OFPET_METER_MOD_FAILED, code)
    assert (g.meters, ids.holds("meter")) == before


def test_no_meter_ids_left_and_a_refused_meter_undone() -> None:
    ids = Ids(limit=1)
    g = part(ids)
    add = only_send(g.decide_meter_mod(meter(ofp.OFPMC_ADD, 1)))
    with pytest.raises(OFError) as exc:
        g.decide_meter_mod(meter(ofp.OFPMC_ADD, 2))
    assert refused(exc) == (ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_OUT_OF_METERS)
    assert add.undo is not None
    add.undo()  # the pswitch refused the first: its id is free again
    assert g.meters == {} and ids.holds("meter") == set()
    only_send(g.decide_meter_mod(meter(ofp.OFPMC_ADD, 2)))


def _config(g: VSwitchGroups, mid: int) -> tuple[int, bytes]:
    m = g.meters[mid]
    return m.flags, m.bands


def test_a_modify_the_pswitch_refuses_puts_the_meter_back_as_it_was() -> None:
    g = part()
    g.decide_meter_mod(meter(ofp.OFPMC_ADD, 4, rate=500))
    before = _config(g, 4)
    mod = only_send(g.decide_meter_mod(meter(ofp.OFPMC_MODIFY, 4, rate=900,
                                             flags=ofp.OFPMF_PKTPS)))  # fmt: skip
    assert _config(g, 4) != before  # the tenant's later messages see it at once
    assert mod.undo is not None
    mod.undo()
    assert _config(g, 4) == before
    assert g.desired_meters(DPID) == {g.meters[4].phys_id: before}


def _modify(g: VSwitchGroups, rate: int) -> Callable[[], None]:
    undo = only_send(g.decide_meter_mod(meter(ofp.OFPMC_MODIFY, 4, rate=rate))).undo
    assert undo is not None
    return undo


@pytest.mark.parametrize(
    ("refused", "left"),
    [((1,), 2), ((2,), 1), ((1, 2), 0), ((), 2)],
    ids=["first", "second", "both", "none"],
)
def test_two_modifies_in_flight_leave_the_last_one_the_pswitch_took(
    refused: tuple[int, ...], left: int
) -> None:
    # the pswitch answers in order: a refusal of the first comes before one of the second
    g = part()
    g.decide_meter_mod(meter(ofp.OFPMC_ADD, 4, rate=100))
    configs = [_config(g, 4)]
    undos = {}
    for i, rate in ((1, 200), (2, 300)):
        undos[i] = _modify(g, rate)
        configs.append(_config(g, 4))
    for i in refused:
        undos[i]()
    assert _config(g, 4) == configs[left]


def test_a_refused_modify_of_a_meter_deleted_and_added_again_changes_nothing() -> None:
    g = part()
    g.decide_meter_mod(meter(ofp.OFPMC_ADD, 4, rate=100))
    undo = _modify(g, 200)
    g.decide_meter_mod(meter(ofp.OFPMC_DELETE, 4))
    g.decide_meter_mod(meter(ofp.OFPMC_ADD, 4, rate=300))
    again = _config(g, 4)
    undo()
    assert _config(g, 4) == again
    second = _modify(g, 400)  # a new meter's modifies do not chain to the old one's
    second()
    assert _config(g, 4) == again


# --- the vswitch going away, reconciliation ----------------------------------------------------
def test_clear_deletes_everything_and_frees_the_ids() -> None:
    ids = Ids()
    g = part(ids)
    g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 1))
    g.decide_meter_mod(meter(ofp.OFPMC_ADD, 1))
    gp, mp = g.groups[1].phys_id, g.meters[1].phys_id
    assert g.clear() == [delete_group(gp), meter_mod(ofp.OFPMC_DELETE, 0, mp, b"")]
    assert not g.groups and not g.meters and not ids.holds("group") and not ids.holds("meter")


def test_desired_groups_and_meters_are_the_first_pswitchs_only() -> None:
    g = part()
    send = only_send(g.decide_group_mod(group_mod(ofp.OFPGC_ADD, 1)))
    g.decide_meter_mod(meter(ofp.OFPMC_ADD, 2))
    phys = g.groups[1].phys_id
    assert g.desired_groups(DPID) == [GroupSpec(DPID, phys, ofp.OFPGT_ALL, send.msg[16:])]
    assert g.desired_meters(DPID) == {g.meters[2].phys_id: (ofp.OFPMF_KBPS, g.meters[2].bands)}
    assert g.desired_groups(DPID + 1) == [] and g.desired_meters(DPID + 1) == {}


# --- sent through the endpoint -----------------------------------------------------------------
class Session:
    """A synced pswitch session that records what it is sent."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.synced = self.ready = True
        self.is_of10 = False
        self.sent: list[tuple[bytes, Callable[[int, int, bytes], None] | None]] = []

    def send_flow(
        self, build: Callable[[int], bytes], on_error: Callable[[int, int, bytes], None] | None
    ) -> None:
        self.sent.append((build(0), on_error))

    def rule(self, pf: PhysFlow, command: int) -> Callable[[int], bytes]:
        if command == ofp.OFPFC_DELETE_STRICT:
            return pf.delete_strict
        return lambda xid: pf.flow_mod(xid, command)

    def multipart(
        self, mtype: int, body: bytes, done: Callable[[list[bytes] | None], None]
    ) -> None:
        """No answer (statistics come from the vswitch's own record then)."""
        done(None)


class Host(Ids):
    max_rules = 100

    def __init__(self) -> None:
        super().__init__()
        self.sessions = {DPID: Session(DPID)}

    def session(self, dpid: int) -> Session | None:
        return self.sessions.get(dpid)

    def outbox(self, net_id: int) -> Outbox:
        return Outbox(self.session)  # type: ignore[arg-type]


class Channel:
    version = codec.VERSION

    def __init__(self) -> None:
        self.errors: list[tuple[int, int, int, bytes]] = []
        self.sent: list[bytes] = []

    def send(self, msg: bytes) -> None:
        self.sent.append(msg)

    def send_error(self, xid: int, etype: int, code: int, data: bytes) -> None:
        self.errors.append((xid, etype, code, data))


class Conn:
    def __init__(self) -> None:
        self.channel = Channel()
        self.touched: set[int] = set()
        self.role = ofp.OFPCR_ROLE_EQUAL

    def sent_to(self, session: object) -> None:
        pass  # the pswitch window: not under test here


def endpoint() -> tuple[VSwitchEndpoint, Host, Session, Conn]:
    host = Host()
    ep = VSwitchEndpoint(host, {DPID: VIEW}, [], "t")
    return ep, host, host.sessions[DPID], Conn()


def test_a_refusal_reaches_the_tenant_with_its_xid_and_takes_the_group_back() -> None:
    ep, host, session, conn = endpoint()
    msg = group_mod(ofp.OFPGC_ADD, 5)
    ep.handle(conn, ofp.OFPT_GROUP_MOD, 42, msg)
    (sent, on_error), = session.sent  # fmt: skip
    assert physical_group(sent)[2] == ep.groups_meters.group_map[5]
    assert conn.touched == {DPID}  # the tenant's next BARRIER waits for the pswitch
    assert on_error is not None
    on_error(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_OUT_OF_GROUPS, b"")
    assert conn.channel.errors == [(42, ofp.OFPET_GROUP_MOD_FAILED,
                                    ofp.OFPGMFC_OUT_OF_GROUPS, msg)]  # fmt: skip
    assert ep.groups_meters.groups == {} and host.holds("group") == set()


def test_a_refused_modify_is_reported_and_a_delete_is_not() -> None:
    ep, _, session, conn = endpoint()
    ep.handle(conn, ofp.OFPT_METER_MOD, 1, meter(ofp.OFPMC_ADD, 3))
    mod = meter(ofp.OFPMC_MODIFY, 3, rate=5)
    ep.handle(conn, ofp.OFPT_METER_MOD, 2, mod)
    ep.handle(conn, ofp.OFPT_METER_MOD, 3, meter(ofp.OFPMC_DELETE, 3))
    (_, _), (_, on_modify), (deleted, on_delete) = session.sent
    assert on_modify is not None and on_delete is None
    assert deleted[1] == ofp.OFPT_METER_MOD
    on_modify(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_RATE, b"")
    on_modify(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_RATE, b"")
    assert conn.channel.errors == [(2, ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_RATE, mod)]


def test_meter_config_after_a_refused_modify_shows_the_meter_the_pswitch_has() -> None:
    ep, _, session, conn = endpoint()
    ep.handle(conn, ofp.OFPT_METER_MOD, 1, meter(ofp.OFPMC_ADD, 3, rate=500))
    # a band type OVS does not take: refused by the pswitch, not by the translation
    bad = [p.OFPMeterBandExperimenter(rate=5, burst_size=0, experimenter=0x2320)]
    ep.handle(conn, ofp.OFPT_METER_MOD, 2, osken_bytes(
        p.OFPMeterMod(DP, ofp.OFPMC_MODIFY, ofp.OFPMF_KBPS, 3, bad)))  # fmt: skip
    ep.groups_dirty = False  # the store took the modified meter meanwhile
    # (a pswitch that describes no meter here: the vswitch's record of it is what it says)
    on_modify = session.sent[-1][1]
    assert on_modify is not None
    on_modify(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_BAD_BAND, b"")
    assert ep.groups_dirty  # ... and takes the meter as it is again
    request = p.OFPMeterConfigStatsRequest(DP, 0, ofp.OFPM_ALL)
    ep.handle(conn, ofp.OFPT_MULTIPART_REQUEST, 3, osken_bytes(request))
    reply = osken_parse(conn.channel.sent[-1])
    [config] = reply.body
    assert (config.meter_id, config.flags) == (3, ofp.OFPMF_KBPS)
    assert [(type(b), b.rate) for b in config.bands] == [(p.OFPMeterBandDrop, 500)]


def test_a_deleted_group_takes_the_tenants_rule_without_a_flow_delete() -> None:
    ep, _, session, conn = endpoint()
    ep.handle(conn, ofp.OFPT_GROUP_MOD, 1, group_mod(ofp.OFPGC_ADD, 5))
    fm = osken_flow_mod(p.OFPMatch(eth_type=0x0800), [apply(p.OFPActionGroup(5))], priority=10)
    ep.handle(conn, ofp.OFPT_FLOW_MOD, 2, fm)
    assert len(ep.table) == 1 and len(session.sent) == 2
    phys = ep.groups_meters.group_map[5]
    ep.handle(conn, ofp.OFPT_GROUP_MOD, 3, group_mod(ofp.OFPGC_DELETE, 5))
    assert len(ep.table) == 0
    # the pswitch drops the rule with the group: only the group delete is sent
    assert [m for m, _ in session.sent[2:]] == [delete_group(phys)]
    assert conn.channel.errors == []
