"""Tenant FLOW_MOD -> physical flow rules (and the reverse for PACKET_IN), without I/O.

The physical pipeline (docs/design.md): table 0 classifies a packet to (vswitch, vport),
strips the fabric tag, writes both into the high metadata bits and continues in table 1.
Tenant table t is physical table t+1; every tenant rule matches its vswitch's metadata bits,
so tenants share physical tables without ever matching each other's packets.

The physical in_port is always the physical port of the ingress vport (PACKET_OUT uses it
too), or CONTROLLER for packets the controller injected without one.  So OVS drops output to
the ingress port by itself, as a switch must; only between vports that share a physical port
does the translation need to know the ingress vport, to use OFPP_IN_PORT.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.openflow import codec, oxm
from tenantvisor.openflow.codec import Action, OFError, Oxm
from tenantvisor.translate.view import PortMap, VSwitchView

_BAD_OUT = (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT)
_POP_VLAN = codec.pop_vlan()
_PUSH_FABRIC = codec.push_vlan(layout.FABRIC_TPID)
_FROM_CONTROLLER = 0  # vport bits of a packet the controller injected
_GROUP = struct.Struct("!HHI")
_BUCKET = struct.Struct("!HHII4x")  # ofp_bucket: len, weight, watch_port, watch_group


@dataclass(frozen=True, slots=True)
class PhysFlow:
    """One physical flow rule, in a form that can be compared, diffed and encoded."""

    dpid: int
    table: int
    priority: int
    match: bytes  # encoded ofp_match
    instructions: bytes
    cookie: int
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0

    @property
    def key(self) -> tuple[int, int, int, bytes]:
        return self.dpid, self.table, self.priority, self.match

    def flow_mod(self, xid: int, command: int = ofp.OFPFC_ADD) -> bytes:
        body = codec.FLOW_MOD_BODY.pack(
            self.cookie,
            0,
            self.table,
            command,
            self.idle_timeout,
            self.hard_timeout,
            self.priority,
            ofp.OFP_NO_BUFFER,
            ofp.OFPP_ANY,
            ofp.OFPG_ANY,
            self.flags,
        )
        return codec.header(
            codec.VERSION, ofp.OFPT_FLOW_MOD, xid, body + self.match + self.instructions
        )

    def delete_strict(self, xid: int) -> bytes:
        """Delete exactly this rule, and only while it carries this rule's cookie: the same
        (table, priority, match) may meanwhile belong to someone else (an id freed and
        reused), and a stale delete must never take that away."""
        body = codec.FLOW_MOD_BODY.pack(
            self.cookie, layout.ALL_ONES, self.table, ofp.OFPFC_DELETE_STRICT, 0, 0, self.priority,
            ofp.OFP_NO_BUFFER, ofp.OFPP_ANY, ofp.OFPG_ANY, 0,
        )  # fmt: skip
        return codec.header(codec.VERSION, ofp.OFPT_FLOW_MOD, xid, body + self.match)


@dataclass(frozen=True, slots=True)
class TenantMatch:
    """A tenant's match checked and split into what the hypervisor rewrites."""

    oxms: tuple[Oxm, ...]  # everything but in_port and metadata, as the tenant sent it
    in_vport: int | None  # None: any
    meta: tuple[int, int] | None  # tenant's metadata value/mask (low 32 bits)


def check_match(view: VSwitchView, match: list[Oxm]) -> TenantMatch:
    rest: list[Oxm] = []
    seen: set[tuple[int, int]] = set()
    in_vport: int | None = None
    meta: tuple[int, int] | None = None
    for o in match:
        if o.key in seen:
            raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_DUP_FIELD, "duplicate match field")
        seen.add(o.key)
        if o.oxm_class != codec.OXM_CLASS_OPENFLOW_BASIC or o.field not in oxm.TENANT_MATCHABLE:
            raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD, f"field {o.field} refused")
        if o.field == oxm.IN_PORT:
            if len(o.value) != 4:
                raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_LEN, "in_port is 4 bytes")
            if o.mask is not None:
                raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_MASK, "in_port cannot be masked")
            port = codec.oxm_int(o)
            if port == ofp.OFPP_CONTROLLER:
                in_vport = _FROM_CONTROLLER
            elif port in view.ports:
                in_vport = port
            else:
                raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_VALUE, f"no vport {port}")
        elif o.field == oxm.METADATA:
            if len(o.value) != 8:
                raise OFError(ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_LEN, "metadata is 8 bytes")
            value = codec.oxm_int(o)
            mask = layout.ALL_ONES if o.mask is None else int.from_bytes(o.mask, "big")
            if value & mask & ~layout.TENANT_META_MASK:
                raise OFError(
                    ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_VALUE, "metadata beyond the low 32 bits"
                )
            meta = (value & layout.TENANT_META_MASK, mask & layout.TENANT_META_MASK)
        else:
            rest.append(o)
    return TenantMatch(tuple(rest), in_vport, meta)


def physical_match(
    view: VSwitchView, tm: TenantMatch, in_vport: int | None, fabric_only: bool = False
) -> bytes:
    """`fabric_only`: not packets a controller injected (their INJECTED metadata bit is set):
    a reduced rule is proven for what can arrive over the fabric only (reduce/prove.py)."""
    value = view.index << layout.VSWITCH_SHIFT
    mask = layout.VSWITCH_MASK | (layout.INJECTED if fabric_only else 0)
    if in_vport is not None:
        value |= in_vport << layout.VPORT_SHIFT
        mask |= layout.VPORT_MASK
    if tm.meta is not None:
        value |= tm.meta[0]
        mask |= tm.meta[1]
    return codec.encode_match([*tm.oxms, codec.oxm_u64(oxm.METADATA, value, mask)])


class _ActionTranslator:
    """Translate one action list for a known ingress vport (None: not known)."""

    def __init__(
        self,
        view: VSwitchView,
        in_vport: int | None,
        action_set: bool,
        groups: Mapping[int, int] | None = None,
        lite_dst: int = 0,
        pin_meter: int | None = None,
        metadata: bool = False,
        bucket: bool = False,
    ) -> None:
        self.view = view
        # a group's bucket: no ingress to expand over (see _unpinned), executed by Open
        # vSwitch as an action set (one action of each kind)
        self.bucket = bucket
        self.tagged = False  # the fabric tag was pushed for an output (a vlink's vport)
        # set_field metadata allowed (a rule's: a PACKET_OUT's output:TABLE sets all of it)
        self.metadata = metadata
        self.groups = groups or {}
        self.lite_dst = lite_dst  # the packets' destination LITE, carried over LITE links
        self.pin_meter = pin_meter  # the vswitch's PACKET_IN meter on this pswitch
        self.in_vport = in_vport
        self.in_phys = None
        if in_vport:
            ipm = view.ports.get(in_vport)
            self.in_phys = None if ipm is None else ipm.phys_port
        self.action_set = action_set
        self.needs_in_vport = False  # the result depends on an ingress the rule does not pin

    def port_actions(self, pm: PortMap) -> bytes:
        if not pm.reaches:
            return b""  # like a real switch: output to a down port sends nothing
        if pm.link_tag is not None:
            self.tagged = True
        if pm.link_tag is None:
            port = ofp.OFPP_IN_PORT if pm.phys_port == self.in_phys else pm.phys_port
            group = pm.hairpin_group if port == ofp.OFPP_IN_PORT else pm.tx_group
            # counted on the way out (the vport's tx), but not from an action set: a set
            # holds one group, and ours would override the tenant's, which wins over output
            if group is not None and not self.action_set:
                return _GROUP.pack(ofp.OFPAT_GROUP, 8, group)
            return codec.output(port)
        if pm.groups and not self.action_set:
            # fast failover: the group built for this in_port (IN_PORT in the bucket that
            # leaves through it), or the one for any other in_port
            variants = dict(pm.groups)
            gid = variants.get(self.in_phys or 0, variants.get(0))
            if gid is not None:
                return _GROUP.pack(ofp.OFPAT_GROUP, 8, gid)
        exit_port, first_tag = pm.exits[0] if pm.exits else (pm.phys_port, pm.link_tag)
        if self.lite_dst and pm.lite_base is not None:
            first_tag = pm.lite_base | self.lite_dst
        port = ofp.OFPP_IN_PORT if exit_port == self.in_phys else exit_port
        tag = codec.set_field(codec.oxm_u16(oxm.VLAN_VID, first_tag | oxm.VLAN_PRESENT))
        out = _PUSH_FABRIC + tag + codec.output(port)
        return out if self.action_set else out + _POP_VLAN

    def to_vport(self, number: int, pm: PortMap) -> bytes:
        """Explicit output to a vport: never back out of the ingress vport (OpenFlow drops
        it; OFPP_IN_PORT is how a controller asks for that)."""
        if self.in_vport is None:
            if self.view.needs_ingress(pm):
                self.needs_in_vport = True
                return b""
            # Unshared: OVS itself drops output to the physical in_port, which is the
            # ingress port exactly when the ingress vport is this one.
            return self.port_actions(pm)
        if number == self.in_vport:
            return b""
        return self.port_actions(pm)

    def output(self, a: Action) -> bytes:
        port = a.output_port
        ports = self.view.ports
        pm = ports.get(port)
        if pm is not None:
            return self.to_vport(port, pm)
        if port == ofp.OFPP_CONTROLLER:
            if self.pin_meter is not None and not self.action_set:
                # metered on the pswitch, per vswitch (docs/design.md, "Limits and
                # quotas"); an action set cannot hold OVS's controller action: there the
                # daemon's own bucket is the only limit
                return codec.controller_metered(a.max_len, self.pin_meter)
            return codec.output(ofp.OFPP_CONTROLLER, a.max_len)
        if port in (ofp.OFPP_FLOOD, ofp.OFPP_ALL) and self.action_set:
            # one action must send to every vport (an action set holds one output): the
            # vswitch's flood group, whose bucket to the ingress vport OVS leaves out
            gid = self.view.flood_group
            if gid is not None:
                return _GROUP.pack(ofp.OFPAT_GROUP, 8, gid)
        if port in (ofp.OFPP_FLOOD, ofp.OFPP_ALL, ofp.OFPP_IN_PORT):
            if self.in_vport is None:
                got = self._unpinned(port) if self.bucket else None
                if got is not None:
                    return got
                self.needs_in_vport = True
                return b""
            if port == ofp.OFPP_IN_PORT:
                pm = ports.get(self.in_vport)
                if pm is None:  # injected by the controller: there is no ingress port
                    return b""
                return self.port_actions(pm)
            targets = [p for n, p in sorted(ports.items()) if n != self.in_vport]
            if self.action_set and len(targets) > 1:
                raise OFError(
                    ofp.OFPET_BAD_ACTION, ofp.OFPBAC_UNSUPPORTED_ORDER, "FLOOD in write_actions"
                )
            return b"".join(self.port_actions(p) for p in targets)
        raise OFError(*_BAD_OUT, f"output to port {port:#x} outside the virtual switch")

    def _unpinned(self, port: int) -> bytes | None:
        """FLOOD, ALL or IN_PORT not knowing the ingress vport (a bucket), where Open vSwitch
        settles it by the physical in_port, which is the ingress vport's own port (None:
        it does not, the ingress must be known).  FLOOD and ALL: out of every vport, when
        output to none of them depends on the ingress beyond "never out of the in_port"
        (`needs_ingress`), so OVS leaves out the one the packet came in by; IN_PORT: the
        physical in_port, when every vport is a host port there (a vlink's would need its
        tag pushed)."""
        ports = self.view.ports
        if port == ofp.OFPP_IN_PORT:
            plain = all(pm.link_tag is None and not pm.exits and not pm.remote
                        for pm in ports.values())  # fmt: skip
            if not plain or self.view.shared_ports:
                return None
            return codec.output(ofp.OFPP_IN_PORT)
        gid = self.view.flood_group  # FLOOD, ALL: one group action (a bucket is an action set)
        return None if gid is None else _GROUP.pack(ofp.OFPAT_GROUP, 8, gid)

    def translate(self, actions: list[Action]) -> bytes:
        out: list[bytes] = []
        for a in actions:
            t = a.type
            if t == ofp.OFPAT_OUTPUT:
                out.append(self.output(a))
            elif t == ofp.OFPAT_SET_FIELD:
                o = a.set_field_oxm()
                basic = o.oxm_class == codec.OXM_CLASS_OPENFLOW_BASIC
                if (
                    basic
                    and o.field == oxm.METADATA
                    and self.metadata
                    and o.mask is None
                    and len(o.value) == 8
                    and not codec.oxm_int(o) & ~layout.TENANT_META_MASK
                ):
                    # the tenant's low 32 bits, the hypervisor's left alone (its high 32 read
                    # 0 to the tenant: a value there would write the hypervisor's)
                    out.append(codec.load_metadata_low(codec.oxm_int(o)))
                    continue
                if basic and o.field == oxm.IN_PORT:
                    # not writable in OpenFlow 1.3; the code Open vSwitch answers with
                    raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_ARGUMENT, "in_port")
                if not basic or o.field not in oxm.TENANT_SETTABLE:
                    raise OFError(
                        ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE, f"set_field {o.field}"
                    )
                out.append(a.raw)
            elif t == ofp.OFPAT_PUSH_VLAN:
                if a.ethertype != 0x8100:
                    raise OFError(
                        ofp.OFPET_BAD_ACTION,
                        ofp.OFPBAC_BAD_ARGUMENT,
                        f"push_vlan {a.ethertype:#x}: only 0x8100 (0x88a8 is the fabric tag)",
                    )
                out.append(a.raw)
            elif t in _PASS_THROUGH:
                out.append(a.raw)
            elif t == ofp.OFPAT_GROUP:
                phys = self.groups.get(codec.u32(a.raw, 4))
                if phys is None:
                    raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP, "no such group")
                out.append(_GROUP.pack(ofp.OFPAT_GROUP, 8, phys))
            elif t == ofp.OFPAT_SET_QUEUE:
                raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_QUEUE, "queues are not offered")
            elif t == ofp.OFPAT_EXPERIMENTER:
                raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_EXPERIMENTER, "experimenter")
            else:
                raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE, f"action type {t}")
        if self.action_set and (not self.bucket or self.tagged):
            # a bucket as the tenant sent it is Open vSwitch's to read as an action set;
            # only the fabric tag's actions, ours, must not collide with the tenant's
            return _check_action_set(out)
        return b"".join(out)


_PASS_THROUGH = frozenset(
    (
        ofp.OFPAT_COPY_TTL_OUT,
        ofp.OFPAT_COPY_TTL_IN,
        ofp.OFPAT_SET_MPLS_TTL,
        ofp.OFPAT_DEC_MPLS_TTL,
        ofp.OFPAT_POP_VLAN,
        ofp.OFPAT_PUSH_MPLS,
        ofp.OFPAT_POP_MPLS,
        ofp.OFPAT_SET_NW_TTL,
        ofp.OFPAT_DEC_NW_TTL,
    )
)


def _check_action_set(parts: list[bytes]) -> bytes:
    """An action set holds one action per type: our fabric tag must not collide with theirs."""
    joined = b"".join(parts)
    acts = codec.parse_actions(joined)
    types = [a.type for a in acts if a.type != ofp.OFPAT_SET_FIELD]
    fields = [a.set_field_oxm().field for a in acts if a.type == ofp.OFPAT_SET_FIELD]
    if len(types) != len(set(types)) or len(fields) != len(set(fields)):
        raise OFError(
            ofp.OFPET_BAD_ACTION,
            ofp.OFPBAC_UNSUPPORTED_ORDER,
            "write_actions conflicts with the fabric tag of a link vport",
        )
    return joined


@dataclass(frozen=True, slots=True)
class TranslatedFlow:
    """The physical rules of one virtual FR (several when the ingress vport matters)."""

    flows: tuple[tuple[bytes, bytes], ...]  # (match, instructions)
    table: int


def translate_actions(
    view: VSwitchView, actions: list[Action], groups: Mapping[int, int]
) -> tuple[bytes, bool]:
    """A group bucket, whose ingress vport is unknown: (actions, whether they depended on
    the ingress and could not be translated).  Open vSwitch executes a bucket as an action
    set, so it is read as one first (`as_action_set`)."""
    tr = _ActionTranslator(view, None, action_set=True, groups=groups, bucket=True)
    out = tr.translate(as_action_set(actions))
    return out, tr.needs_in_vport


def translate_flow(
    view: VSwitchView,
    table_id: int,
    match: list[Oxm],
    instructions: bytes,
    groups: Mapping[int, int] | None = None,
    meters: Mapping[int, int] | None = None,
    fabric_only: bool = False,
    lite_dst: int = 0,
    pin_meter: int | None = None,
) -> TranslatedFlow:
    """Check and translate one tenant rule; raise OFError for anything the tenant may not do.
    `fabric_only`: the rule matches no packet a controller injected (see physical_match).
    `lite_dst`: its packets' destination LITE (`lite_destination`), carried by the tags of
    the LITE links it outputs to.  `pin_meter`: the physical meter its output:CONTROLLER
    actions pass (the vswitch's PACKET_IN limit on this pswitch; None: not metered)."""
    if table_id >= view.n_tables:
        raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID, f"table {table_id}")
    tm = check_match(view, match)
    ins = codec.parse_instructions(instructions)
    goto = None
    if ins.goto_table is not None:
        if not table_id < ins.goto_table < view.n_tables:
            raise OFError(
                ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_TABLE_ID, f"goto {ins.goto_table}"
            )
        goto = ins.goto_table + layout.TABLE_OFFSET
    write_metadata = ins.write_metadata
    if write_metadata is not None:
        # the tenant's metadata is 64 bits whose high 32 always read 0 (as its matches see
        # them): writing 0 there changes nothing, writing 1 would be the hypervisor's bits
        value, mask = write_metadata
        if value & mask & ~layout.TENANT_META_MASK:
            raise OFError(
                ofp.OFPET_BAD_INSTRUCTION,
                ofp.OFPBIC_UNSUP_METADATA_MASK,
                "only the low 32 metadata bits are the tenant's",
            )
        write_metadata = (value & layout.TENANT_META_MASK, mask & layout.TENANT_META_MASK)
    meter = None
    if ins.meter is not None:
        meter = (meters or {}).get(ins.meter)
        if meter is None:
            # the code Open vSwitch answers a rule naming a meter it does not have with
            raise OFError(ofp.OFPET_METER_MOD_FAILED, ofp.OFPMMFC_INVALID_METER, "no such meter")
    if ins.other:
        raise OFError(ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_INST, "unsupported instruction")

    def build(in_vport: int | None) -> tuple[bytes | None, bytes | None, bool]:
        apply = write = None
        needs = False
        if ins.apply_actions is not None:
            tr = _ActionTranslator(
                view, in_vport, False, groups, lite_dst, pin_meter, metadata=True
            )
            apply = tr.translate(ins.apply_actions)
            needs |= tr.needs_in_vport
        if ins.write_actions is not None:
            tr = _ActionTranslator(view, in_vport, True, groups, lite_dst, metadata=True)
            write = tr.translate(ins.write_actions)
            needs |= tr.needs_in_vport
        return apply, write, needs

    def encode(apply: bytes | None, write: bytes | None) -> bytes:
        return codec.encode_instructions(
            goto_table=goto,
            write_metadata=write_metadata,
            write_actions=write,
            apply_actions=apply,
            clear_actions=ins.clear_actions,
            meter=meter,
        )

    if tm.in_vport and (ipm := view.ports.get(tm.in_vport)) is not None and ipm.remote:
        # a big switch's vport on another pswitch: its packets never enter here
        return TranslatedFlow((), table_id + layout.TABLE_OFFSET)
    apply, write, needs = build(tm.in_vport)
    if not needs:
        flow = (physical_match(view, tm, tm.in_vport, fabric_only), encode(apply, write))
        return TranslatedFlow(check_flow_mods((flow,)), table_id + layout.TABLE_OFFSET)
    # FLOOD / ALL / IN_PORT depend on the ingress vport, which the rule does not pin: one
    # physical rule per possible ingress (each vport, and packets the controller injected).
    flows = []
    for vp in [_FROM_CONTROLLER, *sorted(n for n, p in view.ports.items() if not p.remote)]:
        a, w, _ = build(vp)
        flows.append((physical_match(view, tm, vp, fabric_only), encode(a, w)))
    return TranslatedFlow(check_flow_mods(tuple(flows)), table_id + layout.TABLE_OFFSET)


def check_flow_mods(flows: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[bytes, bytes], ...]:
    """`flows` ((match, instructions) of physical rules), refused with OFPBAC_TOO_MANY when
    one would not fit an OpenFlow 1.3 FLOW_MOD (codec.check_length): the tenant's rule is
    refused before anything changes, not failed on when it is sent.  (An OpenFlow 1.0
    pswitch's FLOW_MOD is never longer: its actions are as short or shorter.)"""
    fixed = codec.HEADER.size + codec.FLOW_MOD_BODY.size
    for match, instructions in flows:
        codec.check_length(fixed + len(match) + len(instructions), "a physical FLOW_MOD")
    return flows


def lite_destination(lite: Mapping[str, int], match: list[Oxm], instructions: bytes) -> int:
    """The destination LITE a rule's packets may carry over LITE links (0: none): a rule
    that only forwards (apply-actions that are outputs, nothing else) and pins eth_dst to a
    host of the network (`lite`: MAC -> its edge's LITE).  Its packets then have that MAC
    as they leave, which is all the tag claims (the proofs at the far end rest on it)."""
    if not lite:
        return 0
    dst = next((o for o in match if o.field == oxm.ETH_DST and o.mask is None
                and o.oxm_class == codec.OXM_CLASS_OPENFLOW_BASIC), None)  # fmt: skip
    if dst is None:
        return 0
    d = lite.get(":".join(f"{b:02x}" for b in dst.value), 0)
    if not d:
        return 0
    try:
        ins = codec.parse_instructions(instructions)
    except (codec.OFError, codec.MalformedMessage):
        return 0
    if ins.write_actions or ins.goto_table is not None or ins.other or ins.clear_actions:
        return 0
    if ins.write_metadata is not None or ins.meter is not None:
        return 0
    if any(a.type != ofp.OFPAT_OUTPUT for a in ins.apply_actions or []):
        return 0
    return d


def lite_forward(view: VSwitchView, in_vport: int, outputs: tuple[int, ...], dst: int) -> bytes:
    """Actions of a LITE rule (the packet still carries its LITE tag for `dst`): out of LITE
    links with the next link's tag for `dst` (a swap), then the tag popped for every other
    output (hosts, plain links: as a tenant rule's output would do)."""
    tr = _ActionTranslator(view, in_vport, action_set=False)
    swapped: list[bytes] = []
    plain: list[bytes] = []
    for number in outputs:
        pm = view.ports.get(number)
        if pm is None or number == in_vport or not pm.reaches:
            continue
        if pm.lite_base is not None and pm.exits:
            exit_port = pm.exits[0][0]
            port = ofp.OFPP_IN_PORT if exit_port == tr.in_phys else exit_port
            tag = codec.oxm_u16(oxm.VLAN_VID, (pm.lite_base | dst) | oxm.VLAN_PRESENT)
            swapped.append(codec.set_field(tag) + codec.output(port))
        else:
            plain.append(tr.to_vport(number, pm))
    tail = codec.pop_vlan() + b"".join(plain) if plain else b""
    return b"".join(swapped) + tail


def deliver_actions(pm: PortMap, arrival: int) -> bytes:
    """Actions that send a packet that arrived on physical port `arrival` out of `pm`,
    whatever vport it entered the vswitch by: the end of a big switch's internal route,
    where the tenant's rule has already decided.  `pm.groups` must hold a variant for
    `arrival` when it is one of the exits (compile builds it)."""
    if not pm.reaches:
        return b""
    if pm.link_tag is None:
        if pm.tx_group is not None and pm.phys_port != arrival:
            return _GROUP.pack(ofp.OFPAT_GROUP, 8, pm.tx_group)
        return codec.output(ofp.OFPP_IN_PORT if pm.phys_port == arrival else pm.phys_port)
    variants = dict(pm.groups)
    gid = variants.get(arrival, variants.get(0))
    if gid is not None:
        return _GROUP.pack(ofp.OFPAT_GROUP, 8, gid)
    exit_port, first_tag = pm.exits[0] if pm.exits else (pm.phys_port, pm.link_tag)
    tag = codec.set_field(codec.oxm_u16(oxm.VLAN_VID, first_tag | oxm.VLAN_PRESENT))
    port = ofp.OFPP_IN_PORT if exit_port == arrival else exit_port
    return _PUSH_FABRIC + tag + codec.output(port)


def as_action_set(actions: list[Action]) -> list[Action]:
    """An action list as an action set holds it (OF1.3.5 5.10): the last action of each
    type, set_field the last of each field, in the order they were first given (execution
    follows the set's own order anyway)."""
    last: dict[tuple[int, int], Action] = {}
    for a in actions:
        key = (a.type, a.set_field_oxm().field if a.type == ofp.OFPAT_SET_FIELD else 0)
        last[key] = a  # a later one of a kind takes the place of the first
    return list(last.values())


def flood_buckets(view: VSwitchView) -> bytes | None:
    """The buckets of a vswitch's flood group on this pswitch: one per vport that is up, as
    an output to it (an edge vport through its counting group; a vlink's with its tag),
    or None when output to some vport depends on the ingress (shared ports, protected
    vlinks) or the vswitch has no vport.  Open vSwitch leaves out the bucket to the
    packet's own in_port, which is the ingress vport's port."""
    ports = view.ports
    if not ports or any(view.needs_ingress(pm) for pm in ports.values()):
        return None
    tr = _ActionTranslator(view, None, action_set=True)
    out = []
    for _, pm in sorted(ports.items()):
        if not pm.up:
            continue
        if pm.link_tag is None and pm.tx_group is not None:
            acts = _GROUP.pack(ofp.OFPAT_GROUP, 8, pm.tx_group)
        else:
            acts = tr.port_actions(pm)
        out.append(_BUCKET.pack(16 + len(acts), 0, ofp.OFPP_ANY, ofp.OFPG_ANY) + acts)
    return b"".join(out)


def translate_packet_out(
    view: VSwitchView,
    in_vport: int,
    actions: list[Action],
    groups: Mapping[int, int] | None = None,
) -> tuple[int, bytes]:
    """(physical in_port, actions) of a tenant PACKET_OUT; in_vport 0 = from the controller.

    The physical in_port is the ingress vport's own port, as for a packet from the wire, so
    the same rules about the ingress port hold.  output:TABLE first sets the metadata a
    classified packet would carry, marked INJECTED so table 0 passes it to the tenant tables.
    output:CONTROLLER sets it too: the PACKET_IN the pswitch sends back names no rule, and
    the metadata says whose it is.
    """
    pm = view.ports.get(in_vport) if in_vport else None
    in_port = ofp.OFPP_CONTROLLER if pm is None else pm.phys_port
    tr = _ActionTranslator(view, in_vport, action_set=False, groups=groups)
    out: list[bytes] = []
    ours = False  # whether the metadata is the one set here (the tables may write it)
    mark = codec.set_field(
        codec.oxm_u64(oxm.METADATA, layout.INJECTED | layout.vswitch_meta(view.index, in_vport))
    )
    for a in actions:
        port = a.output_port if a.type == ofp.OFPAT_OUTPUT else None
        if port == ofp.OFPP_TABLE:
            out += [mark, codec.output(ofp.OFPP_TABLE)]
            ours = False
            continue
        if port == ofp.OFPP_CONTROLLER and not ours:
            out.append(mark)
            ours = True
        out.append(tr.translate([a]))
    return in_port, b"".join(out)
