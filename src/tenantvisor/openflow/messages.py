"""OpenFlow 1.3 message bodies other than the hot-path ones in codec.py: multipart requests
and replies (statistics, descriptions), switch features and configuration, roles, async
configuration, port status, group and meter modifications.

Each layout is one named `struct.Struct` of the fixed part of one OpenFlow structure (its
docstring names the structure, its fields, and what follows it), so every module reads and
writes these bodies the same way.  Formats are written out here and checked against os-ken's
`ofproto_v1_3.OFP_..._PACK_STR` in tests/unit/test_codec.py.  Offsets in docstrings count
from the start of the structure.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.openflow import codec

# codec's layouts, re-exported so that this module names every OpenFlow 1.3 layout in use
from tenantvisor.openflow.codec import ERROR_MSG, FLOW_MOD_BODY, HEADER, MalformedMessage, Oxm

__all__ = [
    "AGGREGATE_STATS_REPLY",
    "ASYNC_CONFIG",
    "BUCKET",
    "BUCKET_COUNTER",
    "DESC",
    "ERROR_MSG",
    "FLOW_MOD_BODY",
    "FLOW_STATS",
    "FLOW_STATS_REQUEST",
    "GROUP_DESC",
    "GROUP_FEATURES",
    "GROUP_MOD",
    "GROUP_STATS",
    "GROUP_STATS_REQUEST",
    "HEADER",
    "METER_CONFIG",
    "METER_FEATURES",
    "METER_MOD",
    "METER_MULTIPART_REQUEST",
    "METER_STATS",
    "MULTIPART_HEADER",
    "PORT",
    "PORT_STATS",
    "PORT_STATS_REQUEST",
    "PORT_STATUS",
    "ROLE",
    "SWITCH_CONFIG",
    "SWITCH_FEATURES",
    "TABLE_STATS",
    "FlowStatsRequest",
    "flow_stats_entry",
    "flow_stats_request",
    "group_stats_entry",
    "multipart_reply",
    "multipart_request",
    "parse_flow_stats_request",
    "port_status",
    "sec_nsec",
]

# --- multipart framing --------------------------------------------------------------------
MULTIPART_HEADER = struct.Struct("!HH4x")
"""ofp_multipart_request / ofp_multipart_reply after the ofp_header: type (OFPMP_*), flags
(OFPMPF_REQ_MORE / OFPMPF_REPLY_MORE), 4 pad; the body follows at offset 16 of the message."""

# --- switch description, ports --------------------------------------------------------------
DESC = struct.Struct("!256s256s256s32s256s")
"""ofp_desc (OFPMP_DESC reply body): mfr_desc, hw_desc, sw_desc, serial_num, dp_desc;
NUL-padded strings."""

PORT = struct.Struct("!I4x6s2x16sIIIIIIII")
"""ofp_port (OFPMP_PORT_DESC reply entries, PORT_STATUS): port_no, 4 pad, hw_addr, 2 pad,
name, config, state, curr, advertised, supported, peer, curr_speed, max_speed (64 bytes)."""

PORT_STATUS = struct.Struct("!B7x")
"""ofp_port_status body before its ofp_port: reason (OFPPR_*), 7 pad."""

SWITCH_FEATURES = struct.Struct("!QIBB2xII")
"""ofp_switch_features (FEATURES_REPLY body): datapath_id, n_buffers, n_tables,
auxiliary_id, 2 pad, capabilities, reserved."""

SWITCH_CONFIG = struct.Struct("!HH")
"""ofp_switch_config (GET_CONFIG_REPLY, SET_CONFIG body): flags, miss_send_len."""

ROLE = struct.Struct("!I4xQ")
"""ofp_role_request (ROLE_REQUEST and ROLE_REPLY body): role, 4 pad, generation_id."""

ASYNC_CONFIG = struct.Struct("!IIIIII")
"""ofp_async_config (GET_ASYNC_REPLY, SET_ASYNC body): packet_in_mask[2],
port_status_mask[2], flow_removed_mask[2] ([0]: master/equal, [1]: slave)."""

# --- flow statistics --------------------------------------------------------------------------
FLOW_STATS_REQUEST = struct.Struct("!B3xII4xQQ")
"""ofp_flow_stats_request, also ofp_aggregate_stats_request (OFPMP_FLOW / OFPMP_AGGREGATE
request body) before its ofp_match: table_id, 3 pad, out_port, out_group, 4 pad, cookie,
cookie_mask (32 bytes; the match follows)."""

FLOW_STATS = struct.Struct("!HBxIIHHHH4xQQQ")
"""ofp_flow_stats (OFPMP_FLOW reply entry) before its ofp_match: length, table_id, pad,
duration_sec, duration_nsec, priority, idle_timeout, hard_timeout, flags, 4 pad, cookie,
packet_count, byte_count (48 bytes; the match, then the instructions, follow; `length`
covers all of it)."""

AGGREGATE_STATS_REPLY = struct.Struct("!QQI4x")
"""ofp_aggregate_stats_reply (OFPMP_AGGREGATE reply body): packet_count, byte_count,
flow_count, 4 pad."""

TABLE_STATS = struct.Struct("!B3xIQQ")
"""ofp_table_stats (OFPMP_TABLE reply entry): table_id, 3 pad, active_count, lookup_count,
matched_count."""

# --- port statistics --------------------------------------------------------------------------
PORT_STATS_REQUEST = struct.Struct("!I4x")
"""ofp_port_stats_request (OFPMP_PORT_STATS request body): port_no (OFPP_ANY: all), 4 pad."""

PORT_STATS = struct.Struct("!I4xQQQQQQQQQQQQII")
"""ofp_port_stats (OFPMP_PORT_STATS reply entry): port_no, 4 pad, rx_packets, tx_packets,
rx_bytes, tx_bytes, rx_dropped, tx_dropped, rx_errors, tx_errors, rx_frame_err,
rx_over_err, rx_crc_err, collisions, duration_sec, duration_nsec (112 bytes)."""

# --- groups -----------------------------------------------------------------------------------
GROUP_MOD = struct.Struct("!HBxI")
"""ofp_group_mod (GROUP_MOD body) before its buckets: command, type, pad, group_id."""

BUCKET = struct.Struct("!HHII4x")
"""ofp_bucket before its actions: len, weight, watch_port, watch_group, 4 pad."""

GROUP_STATS_REQUEST = struct.Struct("!I4x")
"""ofp_group_stats_request (OFPMP_GROUP request body): group_id (OFPG_ALL: all), 4 pad."""

GROUP_STATS = struct.Struct("!H2xII4xQQII")
"""ofp_group_stats (OFPMP_GROUP reply entry) before its bucket counters: length, 2 pad,
group_id, ref_count, 4 pad, packet_count, byte_count, duration_sec, duration_nsec
(40 bytes; one BUCKET_COUNTER per bucket follows)."""

BUCKET_COUNTER = struct.Struct("!QQ")
"""ofp_bucket_counter (in ofp_group_stats): packet_count, byte_count."""

GROUP_DESC = struct.Struct("!HBxI")
"""ofp_group_desc (OFPMP_GROUP_DESC reply entry) before its buckets: length, type, pad,
group_id."""

GROUP_FEATURES = struct.Struct("!II4I4I")
"""ofp_group_features (OFPMP_GROUP_FEATURES reply body): types, capabilities,
max_groups[4], actions[4] (indexed by OFPGT_*)."""

# --- meters -----------------------------------------------------------------------------------
METER_MOD = struct.Struct("!HHI")
"""ofp_meter_mod (METER_MOD body) before its bands: command, flags, meter_id."""

METER_MULTIPART_REQUEST = struct.Struct("!I4x")
"""ofp_meter_multipart_request (OFPMP_METER / OFPMP_METER_CONFIG request body): meter_id
(OFPM_ALL: all), 4 pad."""

METER_STATS = struct.Struct("!IH6xIQQII")
"""ofp_meter_stats (OFPMP_METER reply entry) before its band stats: meter_id, len, 6 pad,
flow_count, packet_in_count, byte_in_count, duration_sec, duration_nsec (40 bytes; `len`
sits at offset 4)."""

METER_CONFIG = struct.Struct("!HHI")
"""ofp_meter_config (OFPMP_METER_CONFIG reply entry) before its bands: length, flags,
meter_id."""

METER_FEATURES = struct.Struct("!IIIBB2x")
"""ofp_meter_features (OFPMP_METER_FEATURES reply body): max_meter, band_types,
capabilities, max_bands, max_color, 2 pad (16 bytes)."""


# --- functions --------------------------------------------------------------------------------
def sec_nsec(seconds: float) -> tuple[int, int]:
    """A duration as the (duration_sec, duration_nsec) pair of OpenFlow statistics."""
    return int(seconds), int(seconds % 1 * 1e9)


def multipart_request(version: int, xid: int, mtype: int, body: bytes = b"") -> bytes:
    """A whole MULTIPART_REQUEST message (ofp_multipart_request) of type `mtype`."""
    return codec.header(
        version, ofp.OFPT_MULTIPART_REQUEST, xid, MULTIPART_HEADER.pack(mtype, 0) + body
    )


def multipart_reply(version: int, xid: int, mtype: int, body: bytes, more: bool = False) -> bytes:
    """A whole MULTIPART_REPLY message (ofp_multipart_reply); `more` sets OFPMPF_REPLY_MORE."""
    flags = ofp.OFPMPF_REPLY_MORE if more else 0
    return codec.header(
        version, ofp.OFPT_MULTIPART_REPLY, xid, MULTIPART_HEADER.pack(mtype, flags) + body
    )


class FlowStatsRequest(NamedTuple):
    """A decoded ofp_flow_stats_request / ofp_aggregate_stats_request."""

    table_id: int
    out_port: int
    out_group: int
    cookie: int
    cookie_mask: int
    match: list[Oxm]


def flow_stats_request(
    table_id: int = ofp.OFPTT_ALL,
    out_port: int = ofp.OFPP_ANY,
    out_group: int = ofp.OFPG_ANY,
    cookie: int = 0,
    cookie_mask: int = 0,
    match: list[Oxm] | None = None,
) -> bytes:
    """ofp_flow_stats_request (or ofp_aggregate_stats_request) body with its match: what
    follows MULTIPART_HEADER.  The defaults select every rule."""
    fixed = FLOW_STATS_REQUEST.pack(table_id, out_port, out_group, cookie, cookie_mask)
    return fixed + codec.encode_match(match or [])


def parse_flow_stats_request(msg: bytes) -> FlowStatsRequest:
    """The ofp_flow_stats_request of a whole FLOW or AGGREGATE MULTIPART_REQUEST message."""
    if len(msg) < 16 + FLOW_STATS_REQUEST.size + 8:
        raise MalformedMessage("flow statistics request too short")
    table_id, out_port, out_group, cookie, mask = FLOW_STATS_REQUEST.unpack_from(msg, 16)
    match, _ = codec.parse_match(msg, 16 + FLOW_STATS_REQUEST.size)
    return FlowStatsRequest(table_id, out_port, out_group, cookie, mask, match)


def flow_stats_entry(
    table_id: int,
    duration: tuple[int, int],
    priority: int,
    idle_timeout: int,
    hard_timeout: int,
    flags: int,
    cookie: int,
    packet_count: int,
    byte_count: int,
    match: bytes,
    instructions: bytes,
) -> bytes:
    """One ofp_flow_stats with its encoded match and instructions (length computed)."""
    length = FLOW_STATS.size + len(match) + len(instructions)
    fixed = FLOW_STATS.pack(
        length, table_id, *duration, priority, idle_timeout, hard_timeout, flags,
        cookie, packet_count, byte_count,
    )  # fmt: skip
    return fixed + match + instructions


def group_stats_entry(
    group_id: int,
    ref_count: int,
    packet_count: int,
    byte_count: int,
    duration: tuple[int, int],
    buckets: list[tuple[int, int]],
) -> bytes:
    """One ofp_group_stats with a BUCKET_COUNTER (packets, bytes) per bucket."""
    length = GROUP_STATS.size + BUCKET_COUNTER.size * len(buckets)
    fixed = GROUP_STATS.pack(length, group_id, ref_count, packet_count, byte_count, *duration)
    return fixed + b"".join(BUCKET_COUNTER.pack(*b) for b in buckets)


def port_status(reason: int, port: bytes) -> bytes:
    """ofp_port_status body: the reason, then the 64-byte ofp_port."""
    return PORT_STATUS.pack(reason) + port
