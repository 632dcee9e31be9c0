"""The virtual flow table: match identity, covering/overlap, and FLOW_MOD entry selection."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.codec import FlowMod, OFError, Oxm
from tenantvisor.virtual.flowtable import VFlow, VirtualFlowTable, covers, normalize, overlaps

BASIC = codec.OXM_CLASS_OPENFLOW_BASIC


def eth_dst(mac: str, mask: str | None = None) -> Oxm:
    return Oxm(BASIC, oxm.ETH_DST, _mac(mac), None if mask is None else _mac(mask))


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ipv4_dst(net: str) -> Oxm:
    n = ipaddress.IPv4Network(net)
    mask = None if n.prefixlen == 32 else n.netmask.packed
    return Oxm(BASIC, oxm.IPV4_DST, n.network_address.packed, mask)


ETH_IP = codec.oxm_u16(oxm.ETH_TYPE, 0x0800)
IN_1 = codec.oxm_u32(oxm.IN_PORT, 1)


def flow_mod(
    match: list[Oxm],
    *,
    command: int = ofp.OFPFC_DELETE,
    table_id: int = 0,
    priority: int = 100,
    cookie: int = 0,
    cookie_mask: int = 0,
    out_port: int = ofp.OFPP_ANY,
    out_group: int = ofp.OFPG_ANY,
    flags: int = 0,
) -> FlowMod:
    return FlowMod(
        cookie, cookie_mask, table_id, command, 0, 0, priority, ofp.OFP_NO_BUFFER,
        out_port, out_group, flags, match, b"",
    )  # fmt: skip


def _group(gid: int) -> bytes:
    return struct.pack("!HHI", ofp.OFPAT_GROUP, 8, gid)


class Table:
    """A VirtualFlowTable with a helper to add rules as an ADD would."""

    def __init__(self) -> None:
        self.t = VirtualFlowTable()

    def add(
        self,
        match: list[Oxm],
        *,
        table: int = 0,
        priority: int = 100,
        cookie: int = 0,
        apply_out: int | None = None,
        write_out: int | None = None,
        apply_group: int | None = None,
        write_group: int | None = None,
    ) -> VFlow:
        norm = normalize(match)
        old = self.t.get(table, priority, norm)
        apply = b"" if apply_out is None else codec.output(apply_out)
        write = b"" if write_out is None else codec.output(write_out)
        apply += b"" if apply_group is None else _group(apply_group)
        write += b"" if write_group is None else _group(write_group)
        ins = codec.encode_instructions(apply_actions=apply or None, write_actions=write or None)
        vf = VFlow(
            old.serial if old else self.t.new_serial(), table, priority, match, norm, ins,
            cookie, 0, 0, 0,
        )  # fmt: skip
        self.t.put(vf)
        return vf

    def select(self, fm: FlowMod, strict: bool, filter_out: bool = True) -> set[int]:
        return {vf.serial for vf in self.t.select(fm, normalize(fm.match), strict, filter_out)}


# --- normalize --------------------------------------------------------------------------------
def test_field_order_does_not_change_the_match() -> None:
    a = [IN_1, ETH_IP, eth_dst("02:00:00:00:00:01")]
    assert normalize(a) == normalize(list(reversed(a)))


def test_an_all_ones_mask_is_the_same_as_no_mask() -> None:
    assert normalize([eth_dst("02:00:00:00:00:01", "ff:ff:ff:ff:ff:ff")]) == normalize(
        [eth_dst("02:00:00:00:00:01")]
    )
    assert normalize([ipv4_dst("10.0.0.1/32")]) == normalize(
        [Oxm(BASIC, oxm.IPV4_DST, bytes([10, 0, 0, 1]), b"\xff" * 4)]
    )


def test_value_bits_outside_the_mask_do_not_change_the_match() -> None:
    a = Oxm(BASIC, oxm.IPV4_DST, bytes([10, 1, 2, 3]), bytes([255, 0, 0, 0]))
    assert normalize([a]) == normalize([ipv4_dst("10.0.0.0/8")])


def test_a_fully_wildcarded_field_is_the_same_match_as_no_field() -> None:
    # OpenFlow 1.3 (7.2.3.5): an all-zero oxm_mask is equivalent to omitting the OXM TLV.
    zero = eth_dst("02:00:00:00:00:00", "00:00:00:00:00:00")
    assert normalize([ETH_IP, zero]) == normalize([ETH_IP])


def test_different_masks_are_different_matches() -> None:
    assert normalize([ipv4_dst("10.0.0.0/8")]) != normalize([ipv4_dst("10.0.0.0/16")])


# --- covers / overlaps ------------------------------------------------------------------------
def test_the_empty_request_covers_every_rule() -> None:
    assert covers(normalize([]), normalize([IN_1, ETH_IP]))
    assert covers(normalize([]), normalize([]))


def test_a_request_covers_rules_that_are_more_specific() -> None:
    req = normalize([ETH_IP])
    assert covers(req, normalize([ETH_IP, ipv4_dst("10.0.0.1/32")]))
    assert not covers(normalize([ETH_IP, ipv4_dst("10.0.0.1/32")]), normalize([ETH_IP]))


def test_a_masked_request_covers_rules_inside_its_prefix_only() -> None:
    req = normalize([ipv4_dst("10.0.0.0/8")])
    assert covers(req, normalize([ipv4_dst("10.1.2.3/32")]))
    assert covers(req, normalize([ipv4_dst("10.1.0.0/16")]))
    assert covers(req, normalize([ipv4_dst("10.0.0.0/8")]))
    assert not covers(req, normalize([ipv4_dst("10.0.0.0/7")]))  # wider than the request
    assert not covers(req, normalize([ipv4_dst("11.0.0.0/8")]))
    assert not covers(req, normalize([ETH_IP]))  # no ipv4_dst: matches 11.x too


def test_overlap_needs_agreement_on_the_common_mask_bits() -> None:
    assert overlaps(normalize([ipv4_dst("10.0.0.0/8")]), normalize([ipv4_dst("10.1.0.0/16")]))
    assert not overlaps(normalize([ipv4_dst("10.0.0.0/8")]), normalize([ipv4_dst("11.0.0.0/8")]))
    assert overlaps(normalize([IN_1]), normalize([ETH_IP]))  # different fields
    assert not overlaps(normalize([IN_1]), normalize([codec.oxm_u32(oxm.IN_PORT, 2)]))
    assert overlaps(normalize([]), normalize([IN_1]))


# --- ADD --------------------------------------------------------------------------------------
def test_add_of_an_identical_rule_replaces_it_regardless_of_field_order() -> None:
    t = Table()
    first = t.add([IN_1, ETH_IP], apply_out=2)
    second = t.add([ETH_IP, IN_1], apply_out=3)
    assert len(t.t) == 1
    assert second.serial == first.serial
    assert t.t.by_serial[first.serial] is second
    assert list(t.t) == [second]


def test_put_returns_the_entry_it_replaced() -> None:
    t = VirtualFlowTable()
    norm = normalize([IN_1])
    a = VFlow(1, 0, 5, [IN_1], norm, b"", 0, 0, 0, 0)
    b = VFlow(2, 0, 5, [IN_1], norm, b"", 0, 0, 0, 0)
    assert t.put(a) is None
    assert t.put(b) is a
    assert set(t.by_serial) == {2}


def test_same_match_at_another_priority_or_table_is_another_rule() -> None:
    t = Table()
    t.add([IN_1], priority=1)
    t.add([IN_1], priority=2)
    t.add([IN_1], priority=1, table=1)
    assert len(t.t) == 3


def test_remove_only_removes_the_entry_still_in_the_table() -> None:
    t = Table()
    old = t.add([IN_1])
    new = t.add([IN_1])  # replaces `old` in place
    t.t.remove(old)  # stale: must not remove `new`, which shares its key
    assert list(t.t) == [new]
    t.t.remove(new)
    assert len(t.t) == 0 and t.t.by_serial == {}


def test_check_overlap_refuses_an_overlapping_rule_at_the_same_priority() -> None:
    t = Table()
    t.add([ipv4_dst("10.0.0.0/8")], priority=10)
    fm = flow_mod(
        [ipv4_dst("10.1.0.0/16")],
        command=ofp.OFPFC_ADD,
        priority=10,
        flags=ofp.OFPFF_CHECK_OVERLAP,
    )
    with pytest.raises(OFError) as err:
        t.t.check_overlap(fm, normalize(fm.match))
    assert (err.value.type, err.value.code) == (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_OVERLAP)


def test_check_overlap_accepts_other_priorities_tables_and_disjoint_matches() -> None:
    t = Table()
    t.add([ipv4_dst("10.0.0.0/8")], priority=10)
    for fm in (
        flow_mod([ipv4_dst("10.1.0.0/16")], command=ofp.OFPFC_ADD, priority=11),
        flow_mod([ipv4_dst("10.1.0.0/16")], command=ofp.OFPFC_ADD, priority=10, table_id=1),
        flow_mod([ipv4_dst("11.0.0.0/8")], command=ofp.OFPFC_ADD, priority=10),
    ):
        t.t.check_overlap(fm, normalize(fm.match))


# --- MODIFY / DELETE selection ------------------------------------------------------------------
@pytest.fixture
def table() -> Table:
    t = Table()
    t.add([ETH_IP, ipv4_dst("10.0.0.1/32")], priority=10, cookie=0x11, apply_out=1)  # 1
    t.add([ETH_IP, ipv4_dst("10.0.0.0/24")], priority=20, cookie=0x12, write_out=2)  # 2
    t.add([ETH_IP], priority=30, cookie=0x21, apply_out=2)  # 3
    t.add([IN_1], priority=10, cookie=0x22, table=1, apply_out=1)  # 4
    t.add([], priority=0, cookie=0x00)  # 5: table-miss
    return t


def test_non_strict_delete_selects_the_rules_its_match_covers(table: Table) -> None:
    assert table.select(flow_mod([ETH_IP]), strict=False) == {1, 2, 3}
    assert table.select(flow_mod([ETH_IP, ipv4_dst("10.0.0.0/24")]), strict=False) == {1, 2}
    assert table.select(flow_mod([]), strict=False) == {1, 2, 3, 5}


def test_non_strict_delete_ignores_priority(table: Table) -> None:
    assert table.select(flow_mod([ETH_IP], priority=999), strict=False) == {1, 2, 3}


def test_strict_delete_needs_the_same_priority_and_match(table: Table) -> None:
    assert table.select(flow_mod([ETH_IP], priority=30), strict=True) == {3}
    assert table.select(flow_mod([ETH_IP], priority=10), strict=True) == set()
    same_rule_reordered = [ipv4_dst("10.0.0.1/32"), ETH_IP]
    assert table.select(flow_mod(same_rule_reordered, priority=10), strict=True) == {1}
    assert table.select(flow_mod([], priority=0), strict=True) == {5}


def test_table_all_selects_in_every_table(table: Table) -> None:
    assert table.select(flow_mod([], table_id=ofp.OFPTT_ALL), strict=False) == {1, 2, 3, 4, 5}
    assert table.select(flow_mod([], table_id=1), strict=False) == {4}


def test_cookie_mask_filters_by_the_masked_cookie_bits(table: Table) -> None:
    everything = ofp.OFPTT_ALL
    fm = flow_mod([], table_id=everything, cookie=0x10, cookie_mask=0xF0)
    assert table.select(fm, strict=False) == {1, 2}
    fm = flow_mod([], table_id=everything, cookie=0x02, cookie_mask=0x0F)
    assert table.select(fm, strict=False) == {2, 4}
    fm = flow_mod([], table_id=everything, cookie=0x21, cookie_mask=0xFF)
    assert table.select(fm, strict=False) == {3}


def test_cookie_is_ignored_when_the_mask_is_zero(table: Table) -> None:
    fm = flow_mod([], table_id=ofp.OFPTT_ALL, cookie=0x99, cookie_mask=0)
    assert table.select(fm, strict=False) == {1, 2, 3, 4, 5}


def test_cookie_mask_applies_to_strict_selection_too(table: Table) -> None:
    full = (1 << 64) - 1
    assert table.select(flow_mod([ETH_IP], priority=30, cookie=0x21, cookie_mask=full), True) == {3}
    fm = flow_mod([ETH_IP], priority=30, cookie=0x22, cookie_mask=0xFF)
    assert table.select(fm, strict=True) == set()


def test_out_port_filter_keeps_rules_that_output_there_in_apply_or_write(table: Table) -> None:
    assert table.select(flow_mod([], out_port=2), strict=False) == {2, 3}
    assert table.select(flow_mod([], out_port=1, table_id=ofp.OFPTT_ALL), strict=False) == {1, 4}
    assert table.select(flow_mod([], out_port=7), strict=False) == set()


@pytest.fixture
def grouped(table: Table) -> Table:
    table.add([ETH_IP, ipv4_dst("10.0.1.0/24")], priority=40, apply_group=7)  # 6
    table.add([ETH_IP, ipv4_dst("10.0.2.0/24")], priority=40, write_group=7, apply_out=2)  # 7
    table.add([IN_1], priority=20, table=1, apply_group=8)  # 8
    return table


def test_out_group_filter_keeps_rules_with_that_group_in_apply_or_write(grouped: Table) -> None:
    assert grouped.select(flow_mod([], out_group=7), strict=False) == {6, 7}
    assert grouped.select(flow_mod([], out_group=8, table_id=ofp.OFPTT_ALL), strict=False) == {8}
    assert grouped.select(flow_mod([], out_group=9), strict=False) == set()
    assert grouped.select(flow_mod([ETH_IP, ipv4_dst("10.0.1.0/24")], priority=40,
                                   out_group=7), strict=True) == {6}  # fmt: skip
    # OFPG_ANY: no filter
    assert grouped.select(flow_mod([]), strict=False) == {1, 2, 3, 5, 6, 7}


def test_out_port_and_out_group_together_keep_rules_meeting_both(grouped: Table) -> None:
    assert grouped.select(flow_mod([], out_port=2, out_group=7), strict=False) == {7}
    assert grouped.select(flow_mod([], out_port=1, out_group=7), strict=False) == set()


def test_out_group_is_ignored_by_modify(grouped: Table) -> None:
    fm = flow_mod([ETH_IP], command=ofp.OFPFC_MODIFY, out_group=9)
    assert grouped.select(fm, strict=False, filter_out=False) == {1, 2, 3, 6, 7}


def test_statistics_filter_by_out_group_as_a_delete_does(grouped: Table) -> None:
    def stats(out_port: int = ofp.OFPP_ANY, out_group: int = ofp.OFPG_ANY) -> set[int]:
        got = grouped.t.select_stats(ofp.OFPTT_ALL, out_port, out_group, 0, 0, normalize([]))
        return {vf.serial for vf in got}

    assert stats(out_group=7) == {6, 7}
    assert stats(out_group=8) == {8}
    assert stats(out_port=2, out_group=7) == {7}
    assert stats() == {1, 2, 3, 4, 5, 6, 7, 8}


def test_out_port_is_ignored_by_modify(table: Table) -> None:
    fm = flow_mod([ETH_IP], command=ofp.OFPFC_MODIFY, out_port=7)
    assert table.select(fm, strict=False, filter_out=False) == {1, 2, 3}


def test_clear_empties_the_table_and_returns_every_entry(table: Table) -> None:
    gone = table.t.clear()
    assert {vf.serial for vf in gone} == {1, 2, 3, 4, 5}
    assert len(table.t) == 0 and table.t.by_serial == {}


def test_table_miss_is_priority_0_with_an_empty_match(table: Table) -> None:
    assert [vf.serial for vf in table.t if vf.is_table_miss] == [5]


def test_outputs_to_reads_apply_and_write_actions() -> None:
    t = Table()
    vf = t.add([IN_1], apply_out=3, write_out=4)
    assert vf.outputs_to(3) and vf.outputs_to(4)
    assert not vf.outputs_to(1)


ANY_ETH_DST = eth_dst("02:00:00:00:00:00", "00:00:00:00:00:00")  # an all-zero mask


def test_strict_selection_treats_a_fully_wildcarded_field_as_absent(table: Table) -> None:
    assert table.select(flow_mod([ETH_IP, ANY_ETH_DST], priority=30), strict=True) == {3}
    assert table.select(flow_mod([ANY_ETH_DST], priority=0), strict=True) == {5}
    assert table.select(flow_mod([ANY_ETH_DST]), strict=False) == {1, 2, 3, 5}


def test_a_rule_of_only_fully_wildcarded_fields_at_priority_0_is_the_table_miss() -> None:
    t = Table()
    first = t.add([], priority=0)
    again = t.add([ANY_ETH_DST], priority=0)
    assert again.serial == first.serial  # the same rule: the ADD replaced it
    assert len(t.t) == 1
    assert again.is_table_miss
