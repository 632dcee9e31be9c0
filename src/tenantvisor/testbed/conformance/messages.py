"""Message cases: PACKET_IN, PACKET_OUT, every statistics and description reply, and the
switch's own messages (echo, features, config, roles, asynchronous masks, errors).

Statistics cases observe the fields OpenFlow gives a meaning that both targets can have:
counters as deltas over what the case itself sent (the tester hosts are silent), echoes of
what was installed, and the shape of descriptions.  Values that name the switch (its
datapath id, manufacturer strings, its number of tables) are checked for being present
and sane, not equal.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.testbed.conformance.dsl import (
    Pin,
    apply,
    custom,
    error_of,
    flow,
    fwd,
    goto,
    out,
    setf,
    table_miss,
    write,
)
from tenantvisor.testbed.conformance.harness import DP, Case, Ctx, Obs, expect_obs
from tenantvisor.testbed.conformance.match import ARP, IP4, TCP4, UDP4
from tenantvisor.testbed.conformance.pipeline import bucket, group_mod, meter_mod
from tenantvisor.testbed.packets import ETH_IPV4, PROTO_UDP, Pkt

_HDR = struct.Struct("!BBHI")
LEN_UDP4 = len(UDP4.build(b"x" * 8))
LEN_ARP = len(ARP.build(b"x" * 8))
CTRL = "CONTROLLER"
NO_COOKIE = 0xFFFFFFFFFFFFFFFF  # what OVS says for a PACKET_IN no rule sent


def action_text(c: Ctx, a: Any) -> str:
    """An action in a few words, ports by alias (so both targets compare)."""
    if isinstance(a, p.OFPActionOutput):
        return f"output:{c.target.alias(a.port)}"
    if isinstance(a, p.OFPActionSetField):
        return f"set_field:{a.key}={a.value}"
    return type(a).__name__


def cases() -> list[Case]:
    return [*_packet_in(), *_packet_out(), *_stats(), *_switch()]


# --- PACKET_IN ---------------------------------------------------------------------------
def _packet_in() -> list[Case]:
    c: list[Case] = []
    c.append(fwd("packet_in/table_miss_rule", "packet_in",
                 lambda x: [table_miss(x, cookie=0x5A)], [(1, UDP4), (2, ARP)], {},
                 packet_in=[Pin(ofp.OFPR_NO_MATCH, UDP4, cookie=0x5A),
                            Pin(ofp.OFPR_NO_MATCH, ARP, in_port=2, cookie=0x5A)],
                 ci=True))  # fmt: skip
    c.append(fwd("packet_in/table_miss_in_table_1", "packet_in", lambda x: [
        flow(None, inst=[p.OFPInstructionWriteMetadata(0x33, 0xFF), goto(1)]),
        table_miss(x, table=1, cookie=0x6B),
    ], [(3, TCP4)], {}, packet_in=[Pin(ofp.OFPR_NO_MATCH, TCP4, in_port=3, table_id=1,
                                       cookie=0x6B, metadata=0x33)], ci=True))  # fmt: skip
    c.append(
        fwd(
            "packet_in/action_with_cookie",
            "packet_in",
            lambda x: [
                flow(p.OFPMatch(**IP4), [out(ofp.OFPP_CONTROLLER)], cookie=0xC0FFEE),
            ],
            [(4, UDP4)],
            {},
            packet_in=[Pin(ofp.OFPR_ACTION, UDP4, in_port=4, cookie=0xC0FFEE)],
        )
    )
    c.append(
        fwd(
            "packet_in/after_rewrite",
            "packet_in",
            lambda x: [
                flow(p.OFPMatch(**IP4), [setf(ipv4_dst="10.7.7.7"), out(ofp.OFPP_CONTROLLER)]),
            ],
            [(1, UDP4)],
            {},
            packet_in=[Pin(ofp.OFPR_ACTION, UDP4.but(ip_dst="10.7.7.7"))],
        )
    )
    c.append(
        fwd(
            "packet_in/from_action_set",
            "packet_in",
            lambda x: [
                flow(None, inst=[write(out(ofp.OFPP_CONTROLLER))], cookie=7),
            ],
            [(2, UDP4)],
            {},
            packet_in=[Pin(ofp.OFPR_ACTION, UDP4, in_port=2, cookie=7)],
        )
    )
    c.append(
        fwd(
            "packet_in/table_miss_max_len",
            "packet_in",
            lambda x: [
                flow(None, [out(ofp.OFPP_CONTROLLER, 40)], priority=0),
            ],
            [(1, TCP4)],
            {},
            packet_in=[Pin(ofp.OFPR_NO_MATCH, TCP4)],
            ovs_note="OVS sends the whole frame whatever max_len (it buffers nothing)",
        )
    )
    c.append(
        fwd(
            "packet_in/vlan_tag_kept",
            "packet_in",
            lambda x: [table_miss(x)],
            [(1, UDP4.but(vlans=((0x8100, 2, 42),)))],
            {},
            packet_in=[Pin(ofp.OFPR_NO_MATCH, UDP4.but(vlans=((0x8100, 2, 42),)))],
        )
    )
    c.append(custom("packet_in/invalid_ttl_to_controller", "packet_in", _invalid_ttl,
                    lambda mk: {"default": [], "asked": [Pin(
                        ofp.OFPR_INVALID_TTL, UDP4.but(ttl=1)).obs(mk)]}))  # fmt: skip
    c.append(
        custom(
            "packet_in/async_mask_off",
            "packet_in",
            _async_off,
            lambda mk: {"masked": [], "action": [Pin(ofp.OFPR_ACTION, TCP4).obs(mk)]},
        )
    )
    return c


def _invalid_ttl(c: Ctx) -> Obs:
    """dec_nw_ttl of a TTL-1 packet drops it; the controller gets it (INVALID_TTL) only once
    its asynchronous configuration asks (OpenFlow 1.3's default masks leave it out)."""
    c.install([flow(p.OFPMatch(**IP4), [p.OFPActionDecNwTtl(), out(c.p(2))])])
    c.inject(1, UDP4.but(ttl=1))
    default = c.observe(0).get("packet_in", [])
    pin = (1 << ofp.OFPR_NO_MATCH) | (1 << ofp.OFPR_ACTION) | (1 << ofp.OFPR_INVALID_TTL)
    c.install([p.OFPSetAsync(DP, [pin, 0], [7, 7], [15, 0])])
    c.cleanups.append(lambda: c.install([p.OFPSetAsync(DP, [3, 0], [7, 7], [15, 0])]))
    c.inject(1, UDP4.but(ttl=1))
    asked = c.observe(1)
    return {"default": default, "asked": asked.get("packet_in", [])}


def _async_off(c: Ctx) -> Obs:
    """SET_ASYNC without NO_MATCH: a table-miss PACKET_IN is not sent, an ACTION one is."""
    masks = 1 << ofp.OFPR_ACTION
    c.install([p.OFPSetAsync(DP, [masks, masks], [0xFF, 0xFF], [0xFF, 0xFF])])
    c.cleanups.append(lambda: c.install([p.OFPSetAsync(DP, [3, 0], [7, 7], [15, 0])]))
    c.install([table_miss(c), flow(p.OFPMatch(in_port=c.p(3)), [out(ofp.OFPP_CONTROLLER)])])
    c.inject(1, UDP4)
    masked = c.observe(0).get("packet_in", [])
    c.inject(3, TCP4)
    action = [dict(pi, in_port=1) for pi in c.observe(1).get("packet_in", [])]
    return {"masked": masked, "action": action}


# --- PACKET_OUT --------------------------------------------------------------------------
def po(
    name: str,
    actions: Callable[[Ctx], list[Any]],
    pkt: Pkt,
    expect: Mapping[int, Sequence[Pkt | bytes]],
    *,
    in_port: int | None = None,
    rules: Callable[[Ctx], list[Any]] | None = None,
    packet_in: list[Pin] | None = None,
    errors: list[list[int]] | None = None,
    ci: bool = False,
    ovs_note: str = "",
    buffer_id: int = ofp.OFP_NO_BUFFER,
) -> Case:  # fmt: skip
    """A PACKET_OUT of `pkt` (in_port: an alias, or the controller) after `rules`."""
    n = sum(len(v) for v in expect.values()) + len(packet_in or [])

    def body(c: Ctx) -> Obs:
        errs = c.install(rules(c) if rules else [])
        port = ofp.OFPP_CONTROLLER if in_port is None else c.p(in_port)
        c.send(p.OFPPacketOut(DP, buffer_id=buffer_id, in_port=port, actions=actions(c),
                              data=c.frame(pkt)))  # fmt: skip
        obs = c.observe(n)
        obs["install"] = errs
        return obs

    def exp(mk: bytes) -> Obs:
        d = expect_obs(mk, dict(expect), [pi.obs(mk) for pi in packet_in or []], errors)
        d["install"] = []
        return d

    return custom(f"packet_out/{name}", "packet_out", body, exp, ci=ci, ovs_note=ovs_note)


def _packet_out() -> list[Case]:
    c: list[Case] = []
    c.append(po("output_port", lambda x: [out(x.p(2))], UDP4, {2: [UDP4]}, ci=True))
    c.append(po("output_two_ports", lambda x: [out(x.p(2)), out(x.p(4))], ARP,
                {2: [ARP], 4: [ARP]}))  # fmt: skip
    c.append(po("in_port_given_output_in_port", lambda x: [out(ofp.OFPP_IN_PORT)], UDP4,
                {3: [UDP4]}, in_port=3, ci=True))  # fmt: skip
    c.append(po("output_to_its_in_port_dropped", lambda x: [out(x.p(3))], UDP4, {}, in_port=3))
    c.append(po("flood", lambda x: [out(ofp.OFPP_FLOOD)], UDP4,
                {2: [UDP4], 3: [UDP4], 4: [UDP4]}, in_port=1, ci=True))  # fmt: skip
    c.append(po("all_from_controller", lambda x: [out(ofp.OFPP_ALL)], UDP4,
                {1: [UDP4], 2: [UDP4], 3: [UDP4], 4: [UDP4]}))  # fmt: skip
    c.append(
        po(
            "table",
            lambda x: [out(ofp.OFPP_TABLE)],
            UDP4,
            {2: [UDP4]},
            in_port=1,
            rules=lambda x: [flow(p.OFPMatch(in_port=x.p(1)), [out(x.p(2))])],
            ci=True,
        )
    )
    c.append(
        po(
            "table_from_controller",
            lambda x: [out(ofp.OFPP_TABLE)],
            UDP4,
            {3: [UDP4]},
            rules=lambda x: [flow(p.OFPMatch(eth_dst="02:00:00:00:00:aa"), [out(x.p(3))])],
        )
    )
    c.append(po("table_goto_and_write", lambda x: [out(ofp.OFPP_TABLE)], UDP4, {4: [UDP4]},
                in_port=2, rules=lambda x: [
                    flow(None, inst=[write(out(x.p(4))), goto(1)]),
                    flow(p.OFPMatch(in_port=x.p(2)), inst=[apply()], table=1),
                ]))  # fmt: skip
    c.append(po("table_miss_to_controller", lambda x: [out(ofp.OFPP_TABLE)], TCP4, {},
                in_port=4, rules=lambda x: [table_miss(x, cookie=9)],
                packet_in=[Pin(ofp.OFPR_ACTION, TCP4, in_port=4, cookie=9)],
                ovs_note="OVS says ACTION for a PACKET_OUT's packet the table-miss rule sends "
                "(NO_MATCH for a packet from a port)"))  # fmt: skip
    c.append(po("set_field_then_output", lambda x: [setf(eth_dst="02:00:00:00:00:bb"),
                                                    out(x.p(2))],
                UDP4, {2: [UDP4.but(eth_dst="02:00:00:00:00:bb")]}))  # fmt: skip
    c.append(po("push_vlan", lambda x: [p.OFPActionPushVlan(0x8100),
                                        setf(vlan_vid=ofp.OFPVID_PRESENT | 77), out(x.p(2))],
                UDP4, {2: [UDP4.but(vlans=((0x8100, 0, 77),))]}))  # fmt: skip
    c.append(
        po(
            "group",
            lambda x: [p.OFPActionGroup(1)],
            UDP4,
            {2: [UDP4], 3: [UDP4]},
            rules=lambda x: [
                group_mod(1, ofp.OFPGT_ALL, [bucket([out(x.p(2))]), bucket([out(x.p(3))])])
            ],
        )
    )
    c.append(
        po(
            "to_controller",
            lambda x: [out(ofp.OFPP_CONTROLLER)],
            UDP4,
            {},
            in_port=2,
            packet_in=[Pin(ofp.OFPR_ACTION, UDP4, in_port=2, cookie=NO_COOKIE)],
        )
    )
    c.append(
        po(
            "to_controller_from_controller",
            lambda x: [out(ofp.OFPP_CONTROLLER)],
            ARP,
            {},
            packet_in=[Pin(ofp.OFPR_ACTION, ARP, in_port=CTRL, cookie=NO_COOKIE)],
        )
    )
    c.append(po("no_actions_drops", lambda x: [], UDP4, {}))
    c.append(
        custom(
            "packet_out/unknown_buffer_refused",
            "packet_out",
            _unknown_buffer,
            lambda mk: expect_obs(mk, errors=[[ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BUFFER_UNKNOWN]]),
        )
    )
    c.append(custom("packet_out/in_port_absent", "packet_out", _bad_in_port,
                    lambda mk: expect_obs(mk, {2: [UDP4]}),
                    ovs_note="OVS takes a PACKET_OUT from a port it does not have (the spec: "
                    "BAD_PORT)"))  # fmt: skip
    c.append(po("output_absent_port", lambda x: [out(99)], UDP4, {}))
    return c


def _bad_in_port(c: Ctx) -> Obs:
    """A PACKET_OUT whose in_port (0x7777) no switch here has."""
    c.send(p.OFPPacketOut(DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=0x7777,
                          actions=[out(c.p(2))], data=c.frame(UDP4)))  # fmt: skip
    return c.observe(1)


def _unknown_buffer(c: Ctx) -> Obs:
    """A PACKET_OUT of a buffer the switch does not have (neither buffers anything)."""
    c.send(p.OFPPacketOut(DP, buffer_id=77, in_port=ofp.OFPP_CONTROLLER, actions=[out(c.p(2))]))
    return c.observe(0)


# --- statistics --------------------------------------------------------------------------
def _flows(c: Ctx, **kw: Any) -> Any:
    kw.setdefault("table_id", ofp.OFPTT_ALL)
    kw.setdefault("out_port", ofp.OFPP_ANY)
    kw.setdefault("out_group", ofp.OFPG_ANY)
    kw.setdefault("cookie", 0)
    kw.setdefault("cookie_mask", 0)
    kw.setdefault("match", p.OFPMatch())
    return c.multipart(p.OFPFlowStatsRequest(DP, 0, **kw))


def _flow_obs(fs: Any) -> Obs:
    """What a flow statistics entry must echo and count (not its duration: its sign)."""
    return {
        "table_id": fs.table_id, "priority": fs.priority, "cookie": fs.cookie,
        "idle_timeout": fs.idle_timeout, "hard_timeout": fs.hard_timeout, "flags": fs.flags,
        "packets": fs.packet_count, "bytes": fs.byte_count,
        "match": sorted((k, str(v)) for k, v in fs.match.items()),
        "instructions": [str(i) for i in fs.instructions],
        "duration_ok": fs.duration_sec < 30,
    }  # fmt: skip


def _traffic(c: Ctx, n: int = 2, pkt: Pkt = UDP4, port: int = 1) -> None:
    for _ in range(n):
        c.inject(port, pkt)
    c.observe(n)


def _stats_flow(c: Ctx) -> Obs:
    c.install([flow(p.OFPMatch(in_port=c.p(1), eth_type=ETH_IPV4), [out(c.p(2))], priority=33,
                    cookie=0xAB, idle_timeout=300, hard_timeout=600,
                    flags=ofp.OFPFF_SEND_FLOW_REM)])  # fmt: skip
    _traffic(c, 3)
    got = _flows(c)
    if error_of(got):
        return {"error": error_of(got)}
    return {"flows": [_flow_obs(f) for f in got]}


def _in_port_obs(c: Ctx, port: int) -> list[tuple[str, str]]:
    return sorted([("eth_type", str(ETH_IPV4)), ("in_port", str(port))])


def _stats_flow_expect(_mk: bytes) -> Obs:
    return {"flows": [{
        "table_id": 0, "priority": 33, "cookie": 0xAB, "idle_timeout": 300, "hard_timeout": 600,
        "flags": ofp.OFPFF_SEND_FLOW_REM, "packets": 3, "bytes": 3 * LEN_UDP4,
        "match": "in_port=1,eth_type", "instructions": "output 2", "duration_ok": True,
    }]}  # fmt: skip


def _normalized_flow_stats(body: Callable[[Ctx], Obs]) -> Callable[[Ctx], Obs]:
    """Match and instructions named by port alias, so both targets compare."""

    def run(c: Ctx) -> Obs:
        obs = body(c)
        for f in obs.get("flows", []):
            f["match"] = _match_text(c, f["match"])
            f["instructions"] = _inst_text(c, f["instructions"])
        return obs

    return run


def _match_text(c: Ctx, items: list[tuple[str, str]]) -> str:
    parts = []
    for k, v in items:
        if k == "in_port":
            parts.append(f"in_port={c.target.alias(int(v))}")
        else:
            parts.append(k)
    order = {"in_port": 0}
    return ",".join(sorted(parts, key=lambda s: (order.get(s.split("=")[0], 1), s)))


def _inst_text(c: Ctx, items: list[str]) -> str:
    del items
    rules = _flows(c)
    texts = []
    for f in [] if error_of(rules) else rules:
        for i in f.instructions:
            for a in getattr(i, "actions", []):
                if isinstance(a, p.OFPActionOutput):
                    texts.append(f"output {c.target.alias(a.port)}")
    return ",".join(texts)


def _stats_filters(c: Ctx) -> Obs:
    """Flow statistics filtered by table, out_port, cookie and match."""
    c.install([
        flow(p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_UDP), [out(c.p(2))], cookie=0x101,
             priority=10),
        flow(p.OFPMatch(eth_type=ETH_IPV4), [out(c.p(3))], cookie=0x202, priority=5),
        flow(None, [out(c.p(2))], cookie=0x303, table=1),
    ])  # fmt: skip

    def cookies(**kw: Any) -> list[int]:
        got = _flows(c, **kw)
        return sorted(f.cookie for f in got) if not error_of(got) else [-1]

    return {
        "all": cookies(),
        "table_1": cookies(table_id=1),
        "out_port_2": cookies(out_port=c.p(2)),
        "cookie_mask": cookies(cookie=0x200, cookie_mask=0xF00),
        "match_subset": cookies(match=p.OFPMatch(eth_type=ETH_IPV4)),
        "match_narrower": cookies(match=p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_UDP)),
    }  # fmt: skip


def _stats_aggregate(c: Ctx) -> Obs:
    c.install([
        flow(p.OFPMatch(eth_type=ETH_IPV4), [out(c.p(2))], cookie=1),
        flow(p.OFPMatch(in_port=c.p(3)), [out(c.p(2))], cookie=2, priority=5),
        flow(None, [out(c.p(4))], cookie=3, table=1),
    ])  # fmt: skip
    _traffic(c, 2)
    _traffic(c, 1, ARP, 3)
    req = p.OFPAggregateStatsRequest(DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0,
                                     p.OFPMatch())  # fmt: skip
    got = c.multipart(req)
    req0 = p.OFPAggregateStatsRequest(DP, 0, 0, c.p(2), ofp.OFPG_ANY, 0, 0, p.OFPMatch())
    got0 = c.multipart(req0)

    def obs(g: Any) -> Any:
        if error_of(g):
            return error_of(g)
        b = g[0] if isinstance(g, list) else g
        return [b.packet_count, b.byte_count, b.flow_count]

    return {"all": obs(got), "table0_out2": obs(got0)}


def _table_rows(c: Ctx, tables: tuple[int, ...] = (0, 1)) -> dict[int, tuple[int, int, int]]:
    got = c.multipart(p.OFPTableStatsRequest(DP, 0))
    if error_of(got):
        return {}
    return {t.table_id: (t.active_count, t.lookup_count, t.matched_count)
            for t in got if t.table_id in tables}  # fmt: skip


def _delta(before: dict[int, tuple[int, int, int]], after: dict[int, tuple[int, int, int]],
           t: int) -> list[int]:  # fmt: skip
    b, a = before.get(t), after.get(t)
    if a is None or b is None:
        return []
    return [a[0], a[1] - b[1], a[2] - b[2]]


def _stats_table_lookups(c: Ctx) -> Obs:
    """Lookups and matches: 3 frames, 2 taken by a rule, 1 missed (no table-miss rule)."""
    c.install([flow(p.OFPMatch(eth_type=ETH_IPV4), [out(c.p(2))])])
    before = _table_rows(c)
    _traffic(c, 2)
    c.inject(1, ARP)
    c.observe(0)
    return {"table0": _delta(before, _table_rows(c), 0)}


def _stats_table_miss_rule(c: Ctx) -> Obs:
    """With a table-miss rule every lookup finds a rule; goto counts in the next table."""
    c.install([
        flow(p.OFPMatch(eth_type=ETH_IPV4), inst=[goto(1)]),
        flow(None, [], priority=0),
        flow(p.OFPMatch(eth_type=ETH_IPV4, ip_proto=PROTO_UDP), [out(c.p(2))], table=1),
    ])  # fmt: skip
    before = _table_rows(c)
    _traffic(c, 2)
    c.inject(1, TCP4)
    c.inject(1, ARP)
    c.observe(0)
    after = _table_rows(c)
    return {"table0": _delta(before, after, 0), "table1": _delta(before, after, 1)}


def _stats_table_active(c: Ctx) -> Obs:
    c.install([flow(None, [], priority=i) for i in range(3)] + [flow(None, [], table=1)])
    return {f"table{k}": v[0] for k, v in _table_rows(c).items()}


def _stats_table_packet_out(c: Ctx) -> Obs:
    """A PACKET_OUT to TABLE is a lookup in table 0 too."""
    c.install([flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))])])
    before = _table_rows(c)
    for _ in range(2):
        c.send(p.OFPPacketOut(DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=c.p(1),
                              actions=[out(ofp.OFPP_TABLE)], data=c.frame(UDP4)))  # fmt: skip
    c.observe(2)
    return {"table0": _delta(before, _table_rows(c), 0)}


def _port_row(c: Ctx, alias: int) -> list[int] | None:
    got = c.multipart(p.OFPPortStatsRequest(DP, 0, c.p(alias)))
    if error_of(got) or not got:
        return None
    s = got[0]
    return [s.rx_packets, s.tx_packets, s.rx_bytes, s.tx_bytes]


def _stats_port(c: Ctx) -> Obs:
    """rx of port 1 and tx of port 2 move by exactly what was forwarded."""
    c.install([flow(p.OFPMatch(in_port=c.p(1)), [out(c.p(2))])])
    b1, b2 = _port_row(c, 1), _port_row(c, 2)
    _traffic(c, 3)
    a1, a2 = _port_row(c, 1), _port_row(c, 2)
    if None in (b1, b2, a1, a2):
        return {"error": "no port statistics"}
    assert b1 and b2 and a1 and a2
    return {"rx_packets_1": a1[0] - b1[0], "rx_bytes_1": a1[2] - b1[2],
            "tx_packets_2": a2[1] - b2[1], "tx_bytes_2": a2[3] - b2[3]}  # fmt: skip


def _stats_port_all(c: Ctx) -> Obs:
    got = c.multipart(p.OFPPortStatsRequest(DP, 0, ofp.OFPP_ANY))
    if error_of(got):
        return {"error": error_of(got)}
    ports = sorted(a for s in got if isinstance(a := c.target.alias(s.port_no), int))
    return {"tester_ports": ports,
            "durations_ok": all(s.duration_sec < 100000 for s in got)}  # fmt: skip


def _stats_port_bad(c: Ctx) -> Obs:
    got = c.multipart(p.OFPPortStatsRequest(DP, 0, 0x7777))
    return {"error": error_of(got), "entries": 0 if error_of(got) else len(got)}


def _port_desc(c: Ctx) -> Obs:
    got = c.multipart(p.OFPPortDescStatsRequest(DP, 0))
    if error_of(got):
        return {"error": error_of(got)}
    rows = {}
    for d in got:
        a = c.target.alias(d.port_no)
        if isinstance(a, int):
            rows[str(a)] = {"live": not d.state & ofp.OFPPS_LINK_DOWN,
                            "hw_addr_ok": d.hw_addr != "00:00:00:00:00:00",
                            "name_ok": bool(d.name)}  # fmt: skip
    return {"ports": rows}


def _queue_stats(c: Ctx) -> Obs:
    got = c.multipart(p.OFPQueueStatsRequest(DP, 0, ofp.OFPP_ANY, ofp.OFPQ_ALL))
    return {"reply": error_of(got) or [q.queue_id for q in got]}


def _desc(c: Ctx) -> Obs:
    got = c.request(p.OFPDescStatsRequest(DP, 0))
    if error_of(got):
        return {"error": error_of(got)}
    b = got.body
    return {"mfr": bool(b.mfr_desc), "hw": bool(b.hw_desc), "sw": bool(b.sw_desc),
            "dp_desc_is_text": isinstance(b.dp_desc, str | bytes)}  # fmt: skip


def _group_stats(c: Ctx) -> Obs:
    c.install([
        group_mod(1, ofp.OFPGT_ALL, [bucket([out(c.p(2))]), bucket([out(c.p(3))])]),
        flow(p.OFPMatch(in_port=c.p(1)), [p.OFPActionGroup(1)]),
        flow(p.OFPMatch(in_port=c.p(4)), [p.OFPActionGroup(1)]),
    ])  # fmt: skip
    for _ in range(2):
        c.inject(1, UDP4)
    c.observe(4)
    got = c.multipart(p.OFPGroupStatsRequest(DP, 0, ofp.OFPG_ALL))
    if error_of(got):
        return {"error": error_of(got)}
    return {"groups": [{"group_id": g.group_id, "ref_count": g.ref_count,
                        "packets": g.packet_count, "bytes": g.byte_count,
                        "buckets": [[b.packet_count, b.byte_count] for b in g.bucket_stats]}
                       for g in got]}  # fmt: skip


def _group_desc(c: Ctx) -> Obs:
    c.install([
        group_mod(3, ofp.OFPGT_SELECT, [bucket([out(c.p(2))], weight=5),
                                        bucket([setf(eth_dst="02:00:00:00:00:bb"), out(c.p(3))],
                                               weight=7)]),
        group_mod(4, ofp.OFPGT_FF, [bucket([out(c.p(4))], watch_port=c.p(4))]),
    ])  # fmt: skip
    got = c.multipart(p.OFPGroupDescStatsRequest(DP, 0))
    if error_of(got):
        return {"error": error_of(got)}
    out_ = []
    for g in sorted(got, key=lambda g: g.group_id):
        bs = []
        for b in g.buckets:
            acts = []
            for a in b.actions:
                acts.append(action_text(c, a))
            watch = c.target.alias(b.watch_port) if b.watch_port != ofp.OFPP_ANY else "ANY"
            bs.append({"weight": b.weight, "watch_port": watch, "actions": acts})
        out_.append({"group_id": g.group_id, "type": g.type, "buckets": bs})
    return {"groups": out_}


def _group_features(c: Ctx) -> Obs:
    got = c.multipart(p.OFPGroupFeaturesStatsRequest(DP, 0))
    if error_of(got):
        return {"error": error_of(got)}
    b = got if not isinstance(got, list) else got[0]
    want = [ofp.OFPGT_ALL, ofp.OFPGT_SELECT, ofp.OFPGT_INDIRECT, ofp.OFPGT_FF]
    return {
        "types": all(b.types & (1 << t) for t in want),
        "max_groups": all(b.max_groups[t] > 0 for t in want),
        "output_in_buckets": all(b.actions[t] & (1 << ofp.OFPAT_OUTPUT) for t in want),
    }


def _meter_stats(c: Ctx) -> Obs:
    c.install([
        meter_mod(1, [p.OFPMeterBandDrop(rate=100000, burst_size=1000)],
                  ofp.OFPMF_KBPS | ofp.OFPMF_STATS),
        flow(p.OFPMatch(in_port=c.p(1)), inst=[p.OFPInstructionMeter(1, ofp.OFPIT_METER),
                                               apply(out(c.p(2)))]),
    ])  # fmt: skip
    _traffic(c, 3)
    got = c.multipart(p.OFPMeterStatsRequest(DP, 0, ofp.OFPM_ALL))
    if error_of(got):
        return {"error": error_of(got)}
    return {"meters": [{"meter_id": m.meter_id, "flow_count": m.flow_count,
                        "packets_in": m.packet_in_count, "bytes_in": m.byte_in_count,
                        "bands": [b.packet_band_count for b in m.band_stats]}
                       for m in got]}  # fmt: skip


def _meter_config(c: Ctx) -> Obs:
    c.install([
        meter_mod(1, [p.OFPMeterBandDrop(rate=5000, burst_size=0)], ofp.OFPMF_KBPS),
        meter_mod(2, [p.OFPMeterBandDrop(rate=100, burst_size=10)],
                  ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS),
    ])  # fmt: skip
    got = c.multipart(p.OFPMeterConfigStatsRequest(DP, 0, ofp.OFPM_ALL))
    if error_of(got):
        return {"error": error_of(got)}
    one = c.multipart(p.OFPMeterConfigStatsRequest(DP, 0, 2))
    return {
        "meters": [{"meter_id": m.meter_id, "flags": m.flags,
                    "bands": [[b.type, b.rate, b.burst_size] for b in m.bands]}
                   for m in sorted(got, key=lambda m: m.meter_id)],
        "one": [] if error_of(one) else [m.meter_id for m in one],
    }  # fmt: skip


def _meter_features(c: Ctx) -> Obs:
    got = c.multipart(p.OFPMeterFeaturesStatsRequest(DP, 0))
    if error_of(got):
        return {"error": error_of(got)}
    b = got[0] if isinstance(got, list) else got
    return {"max_meter": b.max_meter > 0, "drop_band": bool(b.band_types & (1 << ofp.OFPMBT_DROP)),
            "kbps_pktps": b.capabilities & (ofp.OFPMF_KBPS | ofp.OFPMF_PKTPS)
            == (ofp.OFPMF_KBPS | ofp.OFPMF_PKTPS), "max_bands": b.max_bands > 0}  # fmt: skip


def _table_features(c: Ctx) -> Obs:
    got = c.multipart(p.OFPTableFeaturesStatsRequest(DP, 0, []))
    if error_of(got):
        return {"error": error_of(got)}
    t0 = next((t for t in got if t.table_id == 0), None)
    if t0 is None:
        return {"table0": False}
    kinds = {prop.type for prop in t0.properties}
    match = next((prop for prop in t0.properties if prop.type == ofp.OFPTFPT_MATCH), None)
    fields = {f.type for f in match.oxm_ids} if match is not None else set()
    return {"table0": True,
            "has_instructions": ofp.OFPTFPT_INSTRUCTIONS in kinds,
            "has_apply_actions": ofp.OFPTFPT_APPLY_ACTIONS in kinds,
            "matches_eth_dst_and_ipv4": {"eth_dst", "ipv4_src"} <= fields,
            "tables": len(got) > 1}  # fmt: skip


def _stats() -> list[Case]:
    c: list[Case] = []

    def s(
        name: str, body: Callable[[Ctx], Obs], expected: Obs | Callable[[bytes], Obs], **kw: Any
    ) -> None:
        c.append(custom(f"stats/{name}", "stats", body, expected, **kw))

    s("flow", _normalized_flow_stats(_stats_flow), _stats_flow_expect, ci=True)
    s("flow_filters", _stats_filters, {
        "all": [0x101, 0x202, 0x303], "table_1": [0x303], "out_port_2": [0x101, 0x303],
        "cookie_mask": [0x202], "match_subset": [0x101, 0x202], "match_narrower": [0x101],
    }, ci=True)  # fmt: skip
    s("flow_table_200", lambda x: {"error": error_of(_flows(x, table_id=200))}, {"error": None})
    s(
        "aggregate",
        _stats_aggregate,
        {"all": [3, 2 * LEN_UDP4 + LEN_ARP, 3], "table0_out2": [3, 2 * LEN_UDP4 + LEN_ARP, 2]},
        ci=True,
    )
    s("table_lookups_and_matches", _stats_table_lookups, {"table0": [1, 3, 2]}, ci=True)
    s("table_with_table_miss_rule", _stats_table_miss_rule,
      {"table0": [2, 4, 4], "table1": [1, 3, 2]}, ci=True,
      ovs_note="a packet taken by the table-miss rule counts as matched")  # fmt: skip
    s("table_packet_out_to_table", _stats_table_packet_out, {"table0": [1, 2, 2]})
    s("table_active_count", _stats_table_active, {"table0": 3, "table1": 1})
    s(
        "port_counters",
        _stats_port,
        {
            "rx_packets_1": 3,
            "rx_bytes_1": 3 * LEN_UDP4,
            "tx_packets_2": 3,
            "tx_bytes_2": 3 * LEN_UDP4,
        },
        ci=True,
    )
    s("port_all", _stats_port_all, {"tester_ports": [1, 2, 3, 4], "durations_ok": True})
    s(
        "port_unknown",
        _stats_port_bad,
        {"error": None, "entries": 0},
        ovs_note="OVS answers an empty reply for a port it does not have (the spec: BAD_PORT)",
    )
    s("port_desc", _port_desc, {"ports": {str(a): {"live": True, "hw_addr_ok": True,
                                                   "name_ok": True} for a in range(1, 5)}},
      ci=True)  # fmt: skip
    s("queue", _queue_stats, {"reply": []})
    s("desc", _desc, {"mfr": True, "hw": True, "sw": True, "dp_desc_is_text": True}, ci=True)
    s("group", _group_stats, {"groups": [{"group_id": 1, "ref_count": 2, "packets": 2,
                                          "bytes": 2 * LEN_UDP4,
                                          "buckets": [[2, 2 * LEN_UDP4], [2, 2 * LEN_UDP4]]}]},
      ci=True)  # fmt: skip
    s("group_desc", _group_desc, {"groups": [
        {"group_id": 3, "type": ofp.OFPGT_SELECT, "buckets": [
            {"weight": 5, "watch_port": "ANY", "actions": ["output:2"]},
            {"weight": 7, "watch_port": "ANY", "actions": [
                "set_field:eth_dst=02:00:00:00:00:bb", "output:3"]}]},
        {"group_id": 4, "type": ofp.OFPGT_FF, "buckets": [
            {"weight": 0, "watch_port": 4, "actions": ["output:4"]}]},
    ]}, ci=True)  # fmt: skip
    s("group_features", _group_features,
      {"types": True, "max_groups": True, "output_in_buckets": True})  # fmt: skip
    s(
        "meter",
        _meter_stats,
        {
            "meters": [
                {
                    "meter_id": 1,
                    "flow_count": 1,
                    "packets_in": 3,
                    "bytes_in": 3 * LEN_UDP4,
                    "bands": [0],
                }
            ]
        },
        ci=True,
    )
    s("meter_config", _meter_config, {"meters": [
        {"meter_id": 1, "flags": ofp.OFPMF_KBPS, "bands": [[ofp.OFPMBT_DROP, 5000, 5000]]},
        {"meter_id": 2, "flags": ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS,
         "bands": [[ofp.OFPMBT_DROP, 100, 10]]},
    ], "one": [2]}, ci=True, ovs_note="OVS applies burst_size = rate to a band asked "
      "with burst 0 and reports what it applied")  # fmt: skip
    s(
        "meter_features",
        _meter_features,
        {"max_meter": True, "drop_band": True, "kbps_pktps": True, "max_bands": True},
    )
    s("table_features", _table_features,
      {"table0": True, "has_instructions": True, "has_apply_actions": True,
       "matches_eth_dst_and_ipv4": True, "tables": True})  # fmt: skip
    s("experimenter_refused", lambda x: {"error": error_of(x.request(
        p.OFPExperimenterStatsRequest(DP, 0, 0xDEAD, 1, b"")))},
      {"error": [ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER]})  # fmt: skip
    return c


# --- the switch's own messages -----------------------------------------------------------
def _echo(c: Ctx) -> Obs:
    got = c.request(p.OFPEchoRequest(DP, data=b"tenantvisor-echo"))
    return {"data": bytes(got.data).decode() if not error_of(got) else error_of(got)}


def _features(c: Ctx) -> Obs:
    got = c.request(p.OFPFeaturesRequest(DP))
    if error_of(got):
        return {"error": error_of(got)}
    caps = ofp.OFPC_FLOW_STATS | ofp.OFPC_TABLE_STATS | ofp.OFPC_PORT_STATS | ofp.OFPC_GROUP_STATS
    return {"dpid_ok": got.datapath_id == c.target.dpid and got.datapath_id != 0,
            "tables_ok": got.n_tables >= 1, "auxiliary_id": got.auxiliary_id,
            "stats_capabilities": got.capabilities & caps == caps}  # fmt: skip


def _config(c: Ctx) -> Obs:
    got = c.request(p.OFPGetConfigRequest(DP))
    first = [got.flags, got.miss_send_len] if not error_of(got) else error_of(got)
    c.install([p.OFPSetConfig(DP, ofp.OFPC_FRAG_NORMAL, 256)])
    got2 = c.request(p.OFPGetConfigRequest(DP))
    second = [got2.flags, got2.miss_send_len] if not error_of(got2) else error_of(got2)
    return {"default": first, "after_set": second}


def _role(c: Ctx) -> Obs:
    def role(r: int, gen: int) -> Any:
        got = c.request(p.OFPRoleRequest(DP, r, gen))
        return error_of(got) or [got.role, got.generation_id]

    out_ = {
        "master": role(ofp.OFPCR_ROLE_MASTER, 10),
        "query": role(ofp.OFPCR_ROLE_NOCHANGE, 0)[:1],
        "stale": role(ofp.OFPCR_ROLE_MASTER, 5),
        "equal": role(ofp.OFPCR_ROLE_EQUAL, 0)[:1],
    }
    return out_


def _async(c: Ctx) -> Obs:
    got = c.request(p.OFPGetAsyncRequest(DP))
    if error_of(got):
        return {"error": error_of(got)}
    return {"packet_in": got.packet_in_mask, "port_status": got.port_status_mask,
            "flow_removed": got.flow_removed_mask}  # fmt: skip


def _raw_error(data: bytes) -> Callable[[Ctx], Obs]:
    def body(c: Ctx) -> Obs:
        xid = c.send_raw(data)
        try:
            got = c.await_reply(xid, 2.0)
        except Exception:
            return {"error": None}
        return {"error": error_of(got)}

    return body


def _queue_config(c: Ctx) -> Obs:
    got = c.request(p.OFPQueueGetConfigRequest(DP, c.p(1)))
    if error_of(got):
        return {"error": error_of(got)}
    return {"port": c.target.alias(got.port), "queues": [q.queue_id for q in got.queues]}


def _port_status(c: Ctx) -> Obs:
    c.link(3, False)
    down = c.port_status(3.0)
    c.link(3, True)
    up = c.port_status(3.0)
    return {"down": down[-1:] if down else [], "up": up[-1:] if up else []}


def _switch() -> list[Case]:
    c: list[Case] = []

    def s(
        name: str, body: Callable[[Ctx], Obs], expected: Obs | Callable[[bytes], Obs], **kw: Any
    ) -> None:
        c.append(custom(f"message/{name}", "message", body, expected, **kw))

    s("echo", _echo, {"data": "tenantvisor-echo"}, ci=True)
    s("features", _features, {"dpid_ok": True, "tables_ok": True, "auxiliary_id": 0,
                              "stats_capabilities": True}, ci=True)  # fmt: skip
    s("get_set_config", _config, {"default": [0, 128], "after_set": [0, 256]}, ci=True)
    s("role_request", _role, {"master": [ofp.OFPCR_ROLE_MASTER, 10],
                              "query": [ofp.OFPCR_ROLE_MASTER],
                              "stale": [ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE],
                              "equal": [ofp.OFPCR_ROLE_EQUAL]})  # fmt: skip
    s("get_async_default", _async, {"packet_in": [3, 0], "port_status": [7, 7],
                                    "flow_removed": [15, 0]})  # fmt: skip
    s("bad_version", _raw_error(_HDR.pack(3, ofp.OFPT_BARRIER_REQUEST, 8, 0)),
      {"error": [ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_VERSION]})  # fmt: skip
    s("bad_type", _raw_error(_HDR.pack(4, 99, 8, 0)),
      {"error": [ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE]})  # fmt: skip
    s("bad_multipart", _raw_error(_HDR.pack(4, ofp.OFPT_MULTIPART_REQUEST, 16, 0)
                                  + struct.pack("!HH4x", 99, 0)),
      {"error": [ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_MULTIPART]})  # fmt: skip
    s("experimenter", _raw_error(_HDR.pack(4, ofp.OFPT_EXPERIMENTER, 16, 0)
                                 + struct.pack("!II", 0xDEAD, 1)),
      {"error": [ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER]})  # fmt: skip
    s("queue_get_config", _queue_config, {"port": 1, "queues": []})
    s("port_status_on_link_change", _port_status,
      {"down": [{"reason": ofp.OFPPR_MODIFY, "port": 3, "link_down": True}],
       "up": [{"reason": ofp.OFPPR_MODIFY, "port": 3, "link_down": False}]},
      slow=True)  # fmt: skip
    return c
