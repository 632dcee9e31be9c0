"""Tenant GROUP_MOD -> physical GROUP_MOD, without I/O.

Group ids are the tenant's own: each vswitch maps them onto physical group ids allocated per
pswitch, so tenants never see or touch each other's groups.  Buckets are translated like any
action list, but a bucket cannot know the ingress vport a packet came in on.  Open vSwitch
never outputs to the physical in_port, which is the ingress vport's own port, so FLOOD and
ALL are every vport and IN_PORT the physical in_port where that settles it; where it does
not (vports sharing a physical port, protected vlinks, IN_PORT with vlinks whose tag must be
pushed) they are refused with OFPGMFC_BAD_BUCKET rather than translated wrongly.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec
from tenantvisor.openflow.codec import MalformedMessage, OFError
from tenantvisor.translate.flow import translate_actions
from tenantvisor.translate.view import VSwitchView

GROUP_MOD = struct.Struct("!HBxI")  # command, type, group_id
BUCKET = struct.Struct("!HHII4x")  # len, weight, watch_port, watch_group
GROUP_TYPES = (ofp.OFPGT_ALL, ofp.OFPGT_SELECT, ofp.OFPGT_INDIRECT, ofp.OFPGT_FF)


def _bad(code: int, why: str) -> OFError:
    return OFError(ofp.OFPET_GROUP_MOD_FAILED, code, why)


@dataclass(frozen=True, slots=True)
class GroupMod:
    command: int
    type: int
    group_id: int
    buckets: bytes  # as the tenant sent them

    @classmethod
    def parse(cls, msg: bytes) -> GroupMod:
        if len(msg) < 16:
            raise MalformedMessage("GROUP_MOD shorter than 16 bytes")
        command, gtype, gid = GROUP_MOD.unpack_from(msg, 8)
        return cls(command, gtype, gid, msg[16:])


def parse_buckets(buf: bytes) -> list[tuple[int, int, int, bytes]]:
    """(weight, watch_port, watch_group, raw actions) per bucket."""
    out = []
    for off, length in codec.elements(buf, 0, "bucket"):
        _, weight, watch_port, watch_group = BUCKET.unpack_from(buf, off)
        out.append((weight, watch_port, watch_group, buf[off + 16 : off + length]))
    return out


def translate_group(
    view: VSwitchView, groups: Mapping[int, int], gm: GroupMod, phys_id: int
) -> bytes:
    """The physical GROUP_MOD (xid 0) for a tenant's ADD or MODIFY of group `gm`."""
    if gm.type not in GROUP_TYPES:
        raise _bad(ofp.OFPGMFC_BAD_TYPE, f"group type {gm.type}")
    buckets = parse_buckets(gm.buckets)
    if gm.type == ofp.OFPGT_INDIRECT and len(buckets) != 1:
        # the code Open vSwitch answers with
        raise _bad(ofp.OFPGMFC_INVALID_GROUP, "an indirect group has exactly one bucket")
    out = []
    for weight, watch_port, watch_group, raw in buckets:
        if gm.type != ofp.OFPGT_SELECT and weight:
            raise _bad(ofp.OFPGMFC_BAD_BUCKET, "only select buckets have a weight")
        phys_watch_port = ofp.OFPP_ANY
        if watch_port != ofp.OFPP_ANY:
            pm = view.ports.get(watch_port)
            if pm is None:
                raise _bad(ofp.OFPGMFC_BAD_WATCH, f"watch_port {watch_port} is not a vport")
            phys_watch_port = pm.phys_port
        phys_watch_group = ofp.OFPG_ANY
        if watch_group != ofp.OFPG_ANY:
            if watch_group not in groups:
                raise _bad(ofp.OFPGMFC_BAD_WATCH, f"watch_group {watch_group} does not exist")
            phys_watch_group = groups[watch_group]
        if gm.type == ofp.OFPGT_FF and phys_watch_port == phys_watch_group == ofp.OFPG_ANY:
            raise _bad(ofp.OFPGMFC_BAD_WATCH, "a fast-failover bucket needs a watch")
        acts, needs_ingress = translate_actions(view, codec.parse_actions(raw), groups)
        if needs_ingress:
            raise _bad(
                ofp.OFPGMFC_BAD_BUCKET,
                "a bucket does not know the packet's ingress port: FLOOD and ALL need vports "
                "on ports of their own, IN_PORT host vports only, and no output may go "
                "between vports that share a physical port",
            )
        codec.check_length(BUCKET.size + len(acts), "a bucket")  # its actions grew
        out.append(BUCKET.pack(16 + len(acts), weight, phys_watch_port, phys_watch_group) + acts)
    body = GROUP_MOD.pack(gm.command, gm.type, phys_id) + b"".join(out)
    codec.check_length(codec.HEADER.size + len(body), "a physical GROUP_MOD")
    return codec.header(codec.VERSION, ofp.OFPT_GROUP_MOD, 0, body)


def output_group(command: int, phys_id: int, port: int) -> bytes:
    """An indirect group whose one bucket outputs to physical `port`: the hypervisor's own
    output group of an edge vport, whose counters are the vport's tx."""
    bucket = BUCKET.pack(16 + 16, 0, ofp.OFPP_ANY, ofp.OFPG_ANY) + codec.output(port)
    body = GROUP_MOD.pack(command, ofp.OFPGT_INDIRECT, phys_id) + bucket
    return codec.header(codec.VERSION, ofp.OFPT_GROUP_MOD, 0, body)


def delete_group(phys_id: int) -> bytes:
    body = GROUP_MOD.pack(ofp.OFPGC_DELETE, 0, phys_id)
    return codec.header(codec.VERSION, ofp.OFPT_GROUP_MOD, 0, body)


@dataclass(frozen=True, slots=True)
class GroupSpec:
    """A group the hypervisor owns on a pswitch (edge output, fast-failover path): what the
    compiler wants, compared with what the pswitch has and sent as ADD or MODIFY."""

    dpid: int
    group_id: int
    type: int
    buckets: bytes  # encoded ofp_bucket list

    def mod(self, command: int) -> bytes:
        body = GROUP_MOD.pack(command, self.type, self.group_id) + self.buckets
        return codec.header(codec.VERSION, ofp.OFPT_GROUP_MOD, 0, body)


def bucket(actions: bytes, watch_port: int = ofp.OFPP_ANY) -> bytes:
    return BUCKET.pack(16 + len(actions), 0, watch_port, ofp.OFPG_ANY) + actions


def output_group_spec(dpid: int, phys_id: int, port: int) -> GroupSpec:
    return GroupSpec(dpid, phys_id, ofp.OFPGT_INDIRECT, bucket(codec.output(port)))
