"""Tenant rules for a vswitch on an OpenFlow 1.0 pswitch (one table, no metadata), no I/O.

Without a classification table, each tenant rule is folded with what identifies the packets
entering each possible ingress vport: (in_port, host MAC) for an edge vport, (in_port,
arriving vlink tag) for a link vport, whose tag the rule then strips.  A PACKET_IN has no
cookie or metadata there, so output to the controller marks the packet with a VLAN id the
hypervisor maps back to (vswitch, ingress vport), and removes the mark after.  Tenant VLANs,
metadata, several tables, groups and meters do not exist on such a vswitch: refused with the
reason.  Physical priority is the tenant's + 1, above the pswitch's drop-all rule.
"""

from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.codec import Action, OFError, Oxm
from tenantvisor.translate.flow import (
    TranslatedFlow,
    _ActionTranslator,
    check_flow_mods,
    check_match,
)
from tenantvisor.translate.view import VSwitchView

_VLAN_FIELDS = frozenset((oxm.VLAN_VID, oxm.VLAN_PCP))
_SETTABLE = frozenset((oxm.ETH_SRC, oxm.ETH_DST, oxm.IPV4_SRC, oxm.IPV4_DST, oxm.IP_DSCP,
                       oxm.TCP_SRC, oxm.TCP_DST, oxm.UDP_SRC, oxm.UDP_DST))  # fmt: skip
_WHY = "on a vswitch over an OpenFlow 1.0 pswitch"
# What OpenFlow 1.0's ofp_match holds (VLANs aside: refused), with each field's size; it
# has masks only as prefixes of the IPv4 (and ARP) addresses, and 6 bits of DSCP in nw_tos
_SIZES10 = {
    oxm.ETH_SRC: 6, oxm.ETH_DST: 6, oxm.ETH_TYPE: 2, oxm.IP_DSCP: 1, oxm.IP_PROTO: 1,
    oxm.IPV4_SRC: 4, oxm.IPV4_DST: 4, oxm.TCP_SRC: 2, oxm.TCP_DST: 2, oxm.UDP_SRC: 2,
    oxm.UDP_DST: 2, oxm.ICMPV4_TYPE: 1, oxm.ICMPV4_CODE: 1, oxm.ARP_OP: 2, oxm.ARP_SPA: 4,
    oxm.ARP_TPA: 4,
}  # fmt: skip
_PREFIX_MASKED = frozenset((oxm.IPV4_SRC, oxm.IPV4_DST, oxm.ARP_SPA, oxm.ARP_TPA, oxm.ETH_SRC))


def _refuse(etype: int, code: int, what: str) -> OFError:
    return OFError(etype, code, f"{what} {_WHY}")


_SET_LIMITS = {oxm.IP_DSCP: 63}  # the largest value a 1.0 set action holds, where not all


def check_actions(actions: list[Action]) -> None:
    """Refuse (BAD_ACTION/BAD_TYPE) what a 1.0 pswitch cannot do: outputs and the fields
    1.0 can set only.  For a rule's actions and for a PACKET_OUT's alike."""
    for a in actions:
        if a.type == ofp.OFPAT_OUTPUT:
            continue
        if a.type == ofp.OFPAT_SET_FIELD:
            o = a.set_field_oxm()
            if o.field in _SETTABLE:
                if len(o.value) != _SIZES10[o.field] or o.mask is not None:
                    # 1.0's set actions have fixed sizes: no other would encode
                    raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_LEN, f"{o.field}")
                limit = _SET_LIMITS.get(o.field)
                if limit is not None and int.from_bytes(o.value, "big") > limit:
                    # 1.0 holds DSCP in the top 6 bits of nw_tos: a larger value would
                    # not encode at all (and OpenFlow 1.3's own DSCP is 6 bits)
                    raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_ARGUMENT,
                                  f"set_field {o.field} value out of range")  # fmt: skip
                continue
        raise _refuse(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE, f"action {a.type}")


def _check_match10(oxms: tuple[Oxm, ...]) -> None:
    """Refuse what a 1.0 pswitch's ofp_match cannot hold as the tenant means it (it would
    be dropped, cut or widened there): a field it lacks, a value of the wrong size or out of
    range, a mask other than an IPv4 prefix (a host MAC mask is folded per host)."""
    for o in oxms:
        size = _SIZES10.get(o.field)
        if size is None:
            raise _refuse(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD, f"match field {o.field}")
        if len(o.value) != size or (o.mask is not None and len(o.mask) != size):
            raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_LEN, f"field {o.field} length")
        if o.field == oxm.IP_DSCP and o.value[0] > 63:
            raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_VALUE, "DSCP is 6 bits")
        if o.mask is not None:
            wild = ~int.from_bytes(o.mask, "big") & ((1 << 8 * size) - 1)
            prefix = wild & (wild + 1) == 0  # ones then zeros: 1.0 counts wildcarded bits
            if o.field not in _PREFIX_MASKED or (o.field != oxm.ETH_SRC and not prefix):
                raise _refuse(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_MASK, f"mask of field {o.field}")


def _controller_marked(acts: bytes, marker: int) -> bytes:
    """Every output to the controller marked with the ingress' VLAN id, unmarked after."""
    out = []
    for a in codec.parse_actions(acts):
        if a.type == ofp.OFPAT_OUTPUT and a.output_port == ofp.OFPP_CONTROLLER:
            out.append(codec.push_vlan(0x8100))
            out.append(codec.set_field(codec.oxm_u16(oxm.VLAN_VID, marker | oxm.VLAN_PRESENT)))
            out.append(codec.output(ofp.OFPP_CONTROLLER, 0xFFFF))
            out.append(codec.pop_vlan())
        else:
            out.append(a.raw)
    return b"".join(out)


def translate_flow10(
    view: VSwitchView,
    table_id: int,
    match: list[Oxm],
    instructions: bytes,
    table_miss: bool = False,
) -> TranslatedFlow:
    """`table_miss`: the tenant's table-miss rule (its packets reach the controller with
    reason NO_MATCH, which learning switches such as ovs-testcontroller insist on)."""
    if table_id != 0:
        raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID, f"table {table_id}")
    tm = check_match(view, match)
    if tm.meta is not None:
        raise _refuse(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD, "metadata")
    if any(o.field in _VLAN_FIELDS for o in tm.oxms):
        raise _refuse(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD, "tenant VLANs")
    _check_match10(tm.oxms)
    ins = codec.parse_instructions(instructions)
    if ins.goto_table is not None:  # there is no table but 0
        raise OFError(ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_TABLE_ID, f"{ins.goto_table}")
    if (ins.goto_table is not None or ins.write_metadata is not None or ins.write_actions
            or ins.clear_actions or ins.meter is not None or ins.other):  # fmt: skip
        raise _refuse(ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_INST, "instructions but apply")
    actions = ins.apply_actions or []
    check_actions(actions)
    src = next((o for o in tm.oxms if o.field == oxm.ETH_SRC), None)
    rest = [o for o in tm.oxms if o.field != oxm.ETH_SRC]
    flows: list[tuple[bytes, bytes]] = []
    ingresses = [tm.in_vport] if tm.in_vport else sorted(view.ports)
    for iv in ingresses:
        pm = view.ports.get(iv)
        if pm is None:
            continue  # in_port=CONTROLLER: nothing enters the 1.0 table from the controller
        acts = _ActionTranslator(view, iv, action_set=False).translate(actions)
        marks = view.markers.get(iv, (0, 0))
        acts = _controller_marked(acts, marks[1] if table_miss else marks[0])
        port = codec.oxm_u32(oxm.IN_PORT, pm.phys_port)
        if pm.is_link:
            if pm.in_tag is None:
                continue  # the vlink is down: nothing arrives
            key = codec.oxm_u16(oxm.VLAN_VID, pm.in_tag | oxm.VLAN_PRESENT)
            m = codec.encode_match([port, key, *tm.oxms])
            flows.append((m, codec.encode_instructions(apply_actions=codec.pop_vlan() + acts)))
            continue
        for mac in pm.macs:
            if src is not None and not _covers(src, mac):
                continue  # the tenant's rule never sees this host's packets
            m = codec.encode_match([port, codec.oxm_mac(oxm.ETH_SRC, mac), *rest])
            flows.append((m, codec.encode_instructions(apply_actions=acts)))
    return TranslatedFlow(check_flow_mods(tuple(flows)), 0)


def _covers(o: Oxm, mac: str) -> bool:
    value = int.from_bytes(o.value, "big")
    mask = (1 << 48) - 1 if o.mask is None else int.from_bytes(o.mask, "big")
    return (int(mac.replace(":", ""), 16) & mask) == (value & mask)
