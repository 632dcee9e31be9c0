"""What a vswitch's tables offer, as OpenFlow 1.3 TABLE_FEATURES: exactly what translation
accepts (translate/flow.py), so a controller that plans its pipeline from it (ovs-ofctl,
Faucet) never meets a refusal it could not have known about."""

from __future__ import annotations

from functools import lru_cache

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.openflow import codec, oxm

MAX_ENTRIES = 1_000_000

_INSTRUCTIONS = [
    ofp.OFPIT_GOTO_TABLE,
    ofp.OFPIT_WRITE_METADATA,
    ofp.OFPIT_WRITE_ACTIONS,
    ofp.OFPIT_APPLY_ACTIONS,
    ofp.OFPIT_CLEAR_ACTIONS,
]
_ACTIONS = [
    ofp.OFPAT_OUTPUT,
    ofp.OFPAT_COPY_TTL_OUT,
    ofp.OFPAT_COPY_TTL_IN,
    ofp.OFPAT_SET_MPLS_TTL,
    ofp.OFPAT_DEC_MPLS_TTL,
    ofp.OFPAT_PUSH_VLAN,
    ofp.OFPAT_POP_VLAN,
    ofp.OFPAT_PUSH_MPLS,
    ofp.OFPAT_POP_MPLS,
    ofp.OFPAT_SET_NW_TTL,
    ofp.OFPAT_DEC_NW_TTL,
    ofp.OFPAT_SET_FIELD,
]


def _oxm_names(fields: frozenset[int]) -> list[str]:
    """os-ken's names of OPENFLOW_BASIC fields (its numbering: class << 7 | field)."""
    by_field = {
        t.num & 0x7F: t.name
        for t in ofp.oxm_types
        if isinstance(t.num, int) and t.num >> 7 == codec.OXM_CLASS_OPENFLOW_BASIC
    }
    missing = sorted(f for f in fields if f not in by_field)
    if missing:
        raise RuntimeError(f"os-ken names no OXM field {missing}")
    return [by_field[f] for f in sorted(fields)]


def _oxm_prop(kind: int, fields: frozenset[int], masks: bool) -> p.OFPTableFeaturePropOxm:
    ids = [p.OFPOxmId(type_=n, hasmask=masks) for n in _oxm_names(fields)]
    return p.OFPTableFeaturePropOxm(type_=kind, oxm_ids=ids)


# A vswitch over an OpenFlow 1.0 pswitch (translate/flow10.py): apply-actions only, no tenant
# VLANs or metadata, and what OpenFlow 1.0 can rewrite.
_FIELDS10 = frozenset(oxm.TENANT_MATCHABLE - {oxm.VLAN_VID, oxm.VLAN_PCP, oxm.METADATA})
_SET10 = frozenset({oxm.ETH_SRC, oxm.ETH_DST, oxm.IPV4_SRC, oxm.IPV4_DST, oxm.IP_DSCP,
                    oxm.TCP_SRC, oxm.TCP_DST, oxm.UDP_SRC, oxm.UDP_DST})  # fmt: skip


@lru_cache(maxsize=8)
def table_features(
    n_tables: int, of10: bool = False, max_entries: int = MAX_ENTRIES
) -> list[bytes]:
    """One serialized ofp_table_features per table."""
    matchable = _FIELDS10 if of10 else oxm.TENANT_MATCHABLE
    settable = _SET10 if of10 else oxm.TENANT_SETTABLE
    out = []
    for t in range(n_tables):
        last = t == n_tables - 1
        ins = [i for i in _INSTRUCTIONS if not (last and i == ofp.OFPIT_GOTO_TABLE)]
        if of10:
            ins = [ofp.OFPIT_APPLY_ACTIONS]
        kinds = [ofp.OFPAT_OUTPUT, ofp.OFPAT_SET_FIELD] if of10 else _ACTIONS
        acts = [p.OFPActionId(a) for a in kinds]
        props = [
            p.OFPTableFeaturePropInstructions(
                type_=ofp.OFPTFPT_INSTRUCTIONS, instruction_ids=[p.OFPInstructionId(i) for i in ins]
            ),
            p.OFPTableFeaturePropNextTables(
                type_=ofp.OFPTFPT_NEXT_TABLES, table_ids=list(range(t + 1, n_tables))
            ),
            p.OFPTableFeaturePropActions(type_=ofp.OFPTFPT_WRITE_ACTIONS, action_ids=acts),
            p.OFPTableFeaturePropActions(type_=ofp.OFPTFPT_APPLY_ACTIONS, action_ids=acts),
            _oxm_prop(ofp.OFPTFPT_MATCH, matchable, True),
            _oxm_prop(ofp.OFPTFPT_WILDCARDS, matchable, False),
            _oxm_prop(ofp.OFPTFPT_WRITE_SETFIELD, settable, False),
            _oxm_prop(ofp.OFPTFPT_APPLY_SETFIELD, settable, False),
        ]
        stats = p.OFPTableFeaturesStats(
            table_id=t, name=f"table{t}".encode(), metadata_match=0 if of10 else 0xFFFFFFFF,
            metadata_write=0 if of10 else 0xFFFFFFFF, config=0, max_entries=max_entries,
            properties=props,
        )  # fmt: skip
        out.append(bytes(stats.serialize()))
    return out
