"""End to end: real OVS fabric, the real daemon, unmodified tenant controllers.

alice and bob run ovs-testcontroller; carol's controller is the test itself.
"""

from __future__ import annotations

import re
import struct
import time
from collections.abc import Callable

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p
from os_ken.ofproto.ofproto_protocol import ProtocolDesc

from tenantvisor.compile.network import TAG_BYTES
from tenantvisor.testbed.ofclient import OFPeer
from tenantvisor.testbed.scenario import EXTRA_B_IP, OUTSIDER_IP, pingall, rx_packets

from .conftest import RULE_LIMIT, Env

pytestmark = pytest.mark.root
DP = ProtocolDesc(ofp.OFP_VERSION)


def wire(msg: p.MsgBase, xid: int) -> bytes:
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def flow_mod(xid: int, match: p.OFPMatch | None = None, actions: list | None = None, **kw) -> bytes:  # type: ignore[type-arg]
    inst = kw.pop("instructions", None)
    if inst is None:
        inst = [p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions or [])]
    return wire(
        p.OFPFlowMod(DP, match=match or p.OFPMatch(), instructions=inst, priority=10, **kw), xid
    )


def error_of(m: tuple[int, int, bytes] | None) -> tuple[int, int, bytes]:
    assert m is not None, "no reply"
    assert m[0] == ofp.OFPT_ERROR, f"expected ERROR, got type {m[0]}"
    etype, code = struct.unpack_from("!HH", m[2], 8)
    return etype, code, m[2][12:]


def physical_flows(env: Env, switch: str) -> list[str]:
    out = env.fab.ofctl(switch, "dump-flows", "--no-stats")
    return sorted(line.strip() for line in out.splitlines() if "cookie" in line or "table" in line)


_ASYNC = (ofp.OFPT_PACKET_IN, ofp.OFPT_FLOW_REMOVED, ofp.OFPT_PORT_STATUS)


def barrier(peer: OFPeer) -> list[tuple[int, int, bytes]]:
    """Send a BARRIER; return every message received before its reply (the reply last).
    Asynchronous messages among them are also left unread for the test's next recv: the
    switch may well send them before the reply (a FLOW_REMOVED of the rule a DELETE just
    removed, a PACKET_IN of a PACKET_OUT), and a test waiting for one must not miss it."""
    xid = peer.next_xid()
    peer.send(struct.pack("!BBHI", 4, ofp.OFPT_BARRIER_REQUEST, 8, xid))
    got = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        m = peer.recv(deadline - time.monotonic())
        assert m is not None, "no BARRIER reply"
        got.append(m)
        if m[0] == ofp.OFPT_BARRIER_REPLY and m[1] == xid:
            peer.unread([m for m in got if m[0] in _ASYNC])
            return got
    raise AssertionError("no BARRIER reply")


def send_packet(peer: OFPeer, frame: bytes, port: int) -> None:
    """PACKET_OUT from the controller to `port`, accepted (no error before the barrier)."""
    out = p.OFPPacketOut(
        DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
        actions=[p.OFPActionOutput(port)], data=frame,
    )  # fmt: skip
    peer.send(wire(out, peer.next_xid()))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(peer))


def delete_everything(peer: OFPeer) -> None:
    """The tenant's DELETE of every rule in every table."""
    msg = p.OFPFlowMod(
        DP, table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
    )  # fmt: skip
    peer.send(wire(msg, peer.next_xid()))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(peer))


def wait_until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll: packets cross the userspace datapath a little after the barrier reply."""
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_each_tenant_reaches_every_one_of_its_hosts(env: Env) -> None:
    for t in (env.alice, env.bob):
        failed = [(r.src, r.dst) for r in pingall(env.fab, env.layout, t.hosts) if not r.ok]
        assert not failed, f"tenant {t.name}: unreachable pairs {failed}"


def test_tenants_with_identical_addresses_never_see_each_other(env: Env) -> None:
    hosts = env.layout.topo.hosts
    e0 = env.layout.edges[0]
    assert hosts[e0.host_a].ip == hosts[e0.host_b].ip
    assert hosts[e0.host_a].mac == hosts[e0.host_b].mac
    before = {h: rx_packets(env.fab, h) for h in env.bob.hosts}
    assert all(r.ok for r in pingall(env.fab, env.layout, env.alice.hosts))
    after = {h: rx_packets(env.fab, h) for h in env.bob.hosts}
    assert after == before, "bob's hosts received packets while alice pinged"
    assert not env.fab.host(e0.host_a).ping(EXTRA_B_IP, count=2, timeout=2)
    assert not env.fab.host(e0.host_a).ping(OUTSIDER_IP, count=1, timeout=2)
    assert not env.fab.host(env.layout.outsider).ping(hosts[e0.host_a].ip, count=1, timeout=2)


FORBIDDEN = [
    ("output to a port outside the vswitch", dict(actions=[p.OFPActionOutput(99)]),
     ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT),
    ("output to LOCAL", dict(actions=[p.OFPActionOutput(ofp.OFPP_LOCAL)]),
     ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT),
    ("output to NORMAL", dict(actions=[p.OFPActionOutput(ofp.OFPP_NORMAL)]),
     ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT),
    ("push the fabric tag (802.1ad)", dict(actions=[p.OFPActionPushVlan(0x88A8)]),
     ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_ARGUMENT),
    ("set tunnel_id", dict(actions=[p.OFPActionSetField(tunnel_id=5)]),
     ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE),
    ("set the hypervisor's metadata bits by set_field",
     dict(actions=[p.OFPActionSetField(metadata=1 << 40)]),
     ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_SET_TYPE),
    ("match tunnel_id", dict(match=p.OFPMatch(tunnel_id=7)),
     ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_FIELD),
    ("match an in_port that is not a vport", dict(match=p.OFPMatch(in_port=77)),
     ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_VALUE),
    ("match the hypervisor's metadata bits", dict(match=p.OFPMatch(metadata=1 << 50)),
     ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_VALUE),
    ("write the hypervisor's metadata bits",
     dict(instructions=[p.OFPInstructionWriteMetadata(1 << 40, 1 << 40)]),
     ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_UNSUP_METADATA_MASK),
    ("goto a table beyond the offered ones", dict(instructions=[p.OFPInstructionGotoTable(200)]),
     ofp.OFPET_BAD_INSTRUCTION, ofp.OFPBIC_BAD_TABLE_ID),
    ("a table beyond the offered ones", dict(table_id=100),
     ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_TABLE_ID),
    ("output to a group that does not exist", dict(actions=[p.OFPActionGroup(1)]),
     ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP),
]  # fmt: skip


@pytest.mark.parametrize("case", FORBIDDEN, ids=[c[0] for c in FORBIDDEN])
def test_forbidden_flow_mod_gets_the_spec_error_and_changes_nothing(env: Env, case: tuple) -> None:  # type: ignore[type-arg]
    _, kwargs, etype, code = case
    peer = env.carol["lf1"]
    before = {sw: physical_flows(env, sw) for sw in ("lf1", "sp1", "lf2")}
    xid = peer.next_xid()
    msg = flow_mod(xid, **kwargs)
    peer.send(msg)
    replies = barrier(peer)
    errors = [m for m in replies if m[0] == ofp.OFPT_ERROR]
    assert len(errors) == 1 and errors[0][1] == xid
    got_type, got_code, data = error_of(errors[0])
    assert (got_type, got_code) == (etype, code)
    assert data == msg[: len(data)] and len(data) >= 8  # the offending message, as sent
    assert {sw: physical_flows(env, sw) for sw in before} == before


def test_a_tenant_deleting_everything_removes_only_its_own_rules(env: Env) -> None:
    peer = env.carol["lf1"]
    peer.send(flow_mod(peer.next_xid(), p.OFPMatch(eth_dst="02:00:00:00:00:77"),
                       [p.OFPActionOutput(env.carol_vports["lf1"]["edge"])]))  # fmt: skip
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(peer))
    assert any("02:00:00:00:00:77" in f for f in physical_flows(env, "lf1"))
    delete_everything(peer)
    assert not any("02:00:00:00:00:77" in f for f in physical_flows(env, "lf1"))
    for t in (env.alice, env.bob):
        assert all(r.ok for r in pingall(env.fab, env.layout, t.hosts[:2]))


def test_barrier_reply_comes_after_the_pswitch_refused_a_rule(env: Env) -> None:
    """ipv4_src without eth_type passes our checks; OVS refuses it (BAD_PREREQ).  The tenant
    gets that error with its own xid, then the BARRIER reply, and the rule is forgotten."""
    peer = env.carol["lf1"]
    status = env.daemon.get("/v1/status").json()
    n_before = sum(v["flows"] for v in status["vswitches"] if v["network"] == env.carol_net)
    xid = peer.next_xid()
    msg = flow_mod(xid, p.OFPMatch(ipv4_src="10.9.9.9"), [])
    peer.send(msg)
    replies = barrier(peer)
    kinds = [(m[0], m[1]) for m in replies]
    assert kinds[-1][0] == ofp.OFPT_BARRIER_REPLY
    assert (ofp.OFPT_ERROR, xid) in kinds[:-1]
    etype, code, data = error_of(next(m for m in replies if m[0] == ofp.OFPT_ERROR))
    assert (etype, code) == (ofp.OFPET_BAD_MATCH, ofp.OFPBMC_BAD_PREREQ)
    assert data[:8] == msg[:8]
    status = env.daemon.get("/v1/status").json()
    assert sum(v["flows"] for v in status["vswitches"] if v["network"] == env.carol_net) == n_before


def test_lldp_sent_out_of_a_link_vport_arrives_at_the_peer_vswitch(env: Env) -> None:
    a, b = env.carol["lf1"], env.carol["lf2"]
    frame = (
        bytes.fromhex("0180c200000e" "020000000abc" "88cc")
        + bytes.fromhex("0207" "04") + b"carol1"  # chassis id (7 bytes: subtype + 6)
        + bytes.fromhex("0403" "02") + b"\x00\x05"  # port id
        + bytes.fromhex("0602" "0078") + b"\x00\x00"
    )  # fmt: skip
    out = p.OFPPacketOut(
        DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
        actions=[p.OFPActionOutput(env.carol_vports["lf1"]["link"])], data=frame,
    )  # fmt: skip
    a.send(wire(out, a.next_xid()))
    m = b.recv_until(lambda m: m[0] == ofp.OFPT_PACKET_IN, timeout=5)
    assert m is not None, "LLDP did not arrive at the peer vswitch"
    pi = p.OFPPacketIn.parser(DP, 4, m[0], len(m[2]), m[1], m[2])
    assert pi.match["in_port"] == env.carol_vports["lf2"]["link"]
    assert pi.data == frame


def test_packet_out_to_an_edge_vport_leaves_by_its_physical_port(env: Env) -> None:
    peer = env.carol["lf1"]
    outsider = env.layout.outsider
    before = rx_packets(env.fab, outsider)
    frame = bytes.fromhex("ffffffffffff020000000abc0806") + bytes(28)
    send_packet(peer, frame, env.carol_vports["lf1"]["edge"])
    wait_until(lambda: rx_packets(env.fab, outsider) != before)
    assert rx_packets(env.fab, outsider) == before + 1


@pytest.mark.parametrize(
    "garbage",
    [
        bytes.fromhex("040e0004deadbeef"),  # length field below the header size
        # FLOW_MOD whose match claims 200 bytes in a 64-byte message
        struct.pack("!BBHI", 4, ofp.OFPT_FLOW_MOD, 64, 9) + bytes(40) + struct.pack("!HH", 1, 200)
        + bytes(12),
        # PACKET_OUT whose actions overrun the message
        struct.pack("!BBHI", 4, ofp.OFPT_PACKET_OUT, 24, 9) + struct.pack("!IIH6x", 0xFFFFFFFF,
                                                                          0xFFFFFFFD, 64),
    ],
    ids=["short-header", "truncated-flow-mod", "truncated-packet-out"],
)  # fmt: skip
def test_a_malformed_message_closes_only_that_tenant_channel(env: Env, garbage: bytes) -> None:
    peer = env.carol["lf2"]
    peer.send(garbage)
    assert peer.closed(5), "the channel stayed open after a malformed message"
    assert env.daemon.alive
    assert all(r.ok for r in pingall(env.fab, env.layout, env.alice.hosts[:2]))
    assert all(r.ok for r in pingall(env.fab, env.layout, env.bob.hosts[:2]))
    assert env.carol["lf1"].recv(0.2) is None and not env.carol["lf1"].eof
    (again,) = env.listener.accept(1, timeout=10)  # the vswitch reconnects, as a switch does
    assert again.dpid == peer.dpid
    env.carol["lf2"] = again
    assert "malformed message" in env.daemon.log_text()


def test_packet_out_to_table_runs_the_tenants_multi_table_pipeline(env: Env) -> None:
    """Tenant table 0 marks ARP in the tenant's metadata and jumps to table 1, which outputs
    what carries the mark: a PACKET_OUT to TABLE must travel both and reach the host."""
    peer = env.carol["lf1"]
    edge = env.carol_vports["lf1"]["edge"]
    mark = p.OFPFlowMod(
        DP, table_id=0, priority=20, match=p.OFPMatch(eth_type=0x0806),
        instructions=[p.OFPInstructionWriteMetadata(0x5, 0xFF), p.OFPInstructionGotoTable(1)],
    )  # fmt: skip
    out = p.OFPFlowMod(
        DP, table_id=1, priority=20, match=p.OFPMatch(metadata=(0x5, 0xFF)),
        instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(edge)])],
    )  # fmt: skip
    peer.send(wire(mark, peer.next_xid()) + wire(out, peer.next_xid()))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(peer))
    outsider = env.layout.outsider
    before = rx_packets(env.fab, outsider)
    arp = bytes.fromhex("ffffffffffff020000000abc0806") + bytes(28)
    send_packet(peer, arp, ofp.OFPP_TABLE)
    wait_until(lambda: rx_packets(env.fab, outsider) != before)
    assert rx_packets(env.fab, outsider) == before + 1
    delete_everything(peer)


def _port_status(m: tuple[int, int, bytes]) -> tuple[int, int, int]:
    """(reason, port_no, state) of an OFPT_PORT_STATUS."""
    reason = m[2][8]
    port_no, state = struct.unpack_from("!I", m[2], 16)[0], struct.unpack_from("!I", m[2], 52)[0]
    return reason, port_no, state


def test_a_physical_link_failure_takes_the_vlinks_over_it_down_and_back(env: Env) -> None:
    """carol's vlink runs lf1 -> sp1 -> lf2; pulling the sp1-lf2 cable must show carol's link
    vports as down (PORT_STATUS), cut alice's lf1-lf2 traffic (her vlinks use sp1 too), and
    bring both back when the cable returns."""
    a = env.carol["lf1"]
    vport = env.carol_vports["lf1"]["link"]
    hosts = env.layout.topo.hosts
    h1, h2 = env.layout.edges[0].host_a, env.layout.edges[1].host_a
    env.fab.set_link_state("sp1", "lf2", up=False)
    try:
        m = a.recv_until(lambda m: m[0] == ofp.OFPT_PORT_STATUS and _port_status(m)[1] == vport)
        assert m is not None, "no PORT_STATUS for the vlink's vport"
        reason, _, state = _port_status(m)
        assert reason == ofp.OFPPR_MODIFY and state & ofp.OFPPS_LINK_DOWN
        assert not env.fab.host(h1).ping(hosts[h2].ip, count=1, timeout=2)
    finally:
        env.fab.set_link_state("sp1", "lf2", up=True)
    m = a.recv_until(lambda m: m[0] == ofp.OFPT_PORT_STATUS and _port_status(m)[1] == vport, 10)
    assert m is not None, "no PORT_STATUS when the link came back"
    assert _port_status(m)[2] & ofp.OFPPS_LIVE
    assert env.fab.host(h1).ping(hosts[h2].ip, count=1, timeout=5)


def test_a_vswitch_answers_the_handshake_and_descriptions_itself(env: Env) -> None:
    peer = env.carol["lf1"]
    xid = peer.next_xid()
    peer.send(struct.pack("!BBHI", 4, ofp.OFPT_ECHO_REQUEST, 12, xid) + b"ping")
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_ECHO_REPLY and m[1] == xid)
    assert m is not None and m[2][8:] == b"ping"
    peer.send(wire(p.OFPSetConfig(DP, 0, 200), peer.next_xid()))
    xid = peer.next_xid()
    peer.send(wire(p.OFPGetConfigRequest(DP), xid))
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_GET_CONFIG_REPLY and m[1] == xid)
    assert m is not None and struct.unpack_from("!HH", m[2], 8) == (0, 200)
    xid = peer.next_xid()
    peer.send(wire(p.OFPPortDescStatsRequest(DP, 0), xid))
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    ports = p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body
    assert sorted(x.port_no for x in ports) == sorted(env.carol_vports["lf1"].values())
    assert all(x.state & ofp.OFPPS_LIVE for x in ports)
    xid = peer.next_xid()
    peer.send(wire(p.OFPDescStatsRequest(DP, 0), xid))
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    desc = p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body
    assert desc.mfr_desc == b"tenantvisor" and b"tenant=carol" in desc.dp_desc


@pytest.mark.parametrize(
    ("msg", "etype", "code"),
    [
        (wire(p.OFPExperimenter(DP, 0x12345678, 1, b"abcd"), 77),
         ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER),
        (struct.pack("!BBHI", 4, ofp.OFPT_QUEUE_GET_CONFIG_REQUEST, 16, 77)
         + struct.pack("!I4x", 0x7777), ofp.OFPET_QUEUE_OP_FAILED, ofp.OFPQOFC_BAD_PORT),
        (wire(p.OFPTableFeaturesStatsRequest(DP, 0, [p.OFPTableFeaturesStats(
            table_id=0, name=b"x", metadata_match=0, metadata_write=0, config=0,
            max_entries=1, properties=[])]), 77),
         ofp.OFPET_TABLE_FEATURES_FAILED, ofp.OFPTFFC_EPERM),
    ],
    ids=["experimenter", "queue-config-of-no-vport", "table-features-change"],
)  # fmt: skip
def test_an_unsupported_message_gets_the_spec_error_and_nothing_else(
    env: Env, msg: bytes, etype: int, code: int
) -> None:
    peer = env.carol["lf1"]
    peer.send(msg)
    replies = barrier(peer)
    assert [(m[0], m[1]) for m in replies[:-1]] == [(ofp.OFPT_ERROR, 77)]
    got_type, got_code, data = error_of(replies[0])
    assert (got_type, got_code) == (etype, code)
    assert data == msg[:64]


def test_a_hard_timeout_expires_the_rule_and_tells_the_tenant(env: Env) -> None:
    peer = env.carol["lf1"]
    match = p.OFPMatch(eth_dst="02:00:00:00:00:78")
    fm = p.OFPFlowMod(
        DP, cookie=0xC0FFEE, priority=33, hard_timeout=1, flags=ofp.OFPFF_SEND_FLOW_REM,
        match=match, instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [])],
    )  # fmt: skip
    peer.send(wire(fm, peer.next_xid()))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(peer))
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_FLOW_REMOVED, timeout=6)
    assert m is not None, "no FLOW_REMOVED after the hard timeout"
    fr = p.OFPFlowRemoved.parser(DP, 4, m[0], len(m[2]), m[1], m[2])
    assert (fr.cookie, fr.priority, fr.reason) == (0xC0FFEE, 33, ofp.OFPRR_HARD_TIMEOUT)
    assert fr.table_id == 0 and fr.match["eth_dst"] == "02:00:00:00:00:78"
    assert "metadata" not in fr.match  # the hypervisor's bits never show
    assert not any("02:00:00:00:00:78" in f for f in physical_flows(env, "lf1"))


def test_new_controller_urls_move_the_vswitches_and_versions_are_negotiated(
    env: Env,
) -> None:
    from tenantvisor.testbed.ofclient import ControllerListener

    other = ControllerListener()
    try:
        env.daemon.rest(
            "PUT",
            f"/v1/networks/{env.carol_net}/controllers",
            {"controller_urls": [f"tcp:127.0.0.1:{other.port}"]},
            env.carol_token,
        )
        for old in env.carol.values():
            assert old.closed(5), "the old controller kept its connection"
        other.sock.settimeout(10)
        s, _ = other.sock.accept()
        old11 = OFPeer(s, version=2)
        # HELLO whose version bitmap says OpenFlow 1.1 and nothing else
        old11.send(struct.pack("!BBHIHHI", 2, 0, 16, 1, 1, 8, 1 << 2))
        m = old11.recv_until(lambda m: m[0] == ofp.OFPT_ERROR)
        assert m is not None and struct.unpack_from("!HH", m[2], 8) == (0, 0)  # HELLO_FAILED
        assert old11.closed(5)
        s, _ = other.sock.accept()  # the vswitch tries again; now an OpenFlow 1.0 controller
        old10 = OFPeer(s, version=1)
        old10.send(struct.pack("!BBHI", 1, 0, 8, 1))
        assert old10.recv_until(lambda m: m[0] == ofp.OFPT_HELLO) is not None
        old10.send(struct.pack("!BBHI", 1, 5, 8, 2))  # FEATURES_REQUEST
        m = old10.recv_until(lambda m: m[0] == 6 and m[1] == 2)  # FEATURES_REPLY (1.0)
        assert m is not None and m[2][0] == 1
        n_tables = m[2][20]
        n_ports = (len(m[2]) - 32) // 48
        (dpid,) = struct.unpack_from("!Q", m[2], 8)
        sw = next(name for name, peer in env.carol.items() if peer.dpid == dpid)
        assert n_tables == 1 and n_ports == len(env.carol_vports[sw])
        old10.close()
    finally:
        env.daemon.rest(
            "PUT",
            f"/v1/networks/{env.carol_net}/controllers",
            {"controller_urls": [f"tcp:127.0.0.1:{env.listener.port}"]},
            env.carol_token,
        )
        other.close()
    peers = {p.dpid: p for p in env.listener.accept(2)}
    for sw, old in list(env.carol.items()):
        env.carol[sw] = peers[old.dpid]


def test_deleting_one_of_two_rules_that_share_a_physical_rule_keeps_the_other(env: Env) -> None:
    """A (FLOOD, ingress not pinned) expands per ingress vport; B pins the link vport at the
    same priority, so one of A's expansions and B are the same physical rule.  Deleting B
    must put A's back: the tenant's table still holds A."""
    peer = env.carol["lf1"]
    link = env.carol_vports["lf1"]["link"]
    dst = "02:00:00:00:00:7a"
    a = p.OFPFlowMod(
        DP, cookie=0xA, priority=7, match=p.OFPMatch(eth_dst=dst),
        instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                              [p.OFPActionOutput(ofp.OFPP_FLOOD)])],
    )  # fmt: skip
    b = p.OFPFlowMod(
        DP, cookie=0xB, priority=7, match=p.OFPMatch(in_port=link, eth_dst=dst),
        instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [])],
    )  # fmt: skip
    peer.send(wire(a, peer.next_xid()) + wire(b, peer.next_xid()))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(peer))
    mine = [f for f in physical_flows(env, "lf1") if dst in f]
    assert len(mine) == 3  # A from the controller and from the edge vport; B from the link
    del_b = p.OFPFlowMod(
        DP, command=ofp.OFPFC_DELETE_STRICT, priority=7, table_id=0,
        match=p.OFPMatch(in_port=link, eth_dst=dst), out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY,
    )  # fmt: skip
    peer.send(wire(del_b, peer.next_xid()))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(peer))
    after = [f for f in physical_flows(env, "lf1") if dst in f]
    assert len(after) == 3, after  # A's rule for ingress = link vport is back
    assert all("actions=drop" not in f and "actions=" in f for f in after)
    cookies = {f.split("cookie=")[1].split(",")[0] for f in after}
    assert len(cookies) == 1  # all A's
    delete_everything(peer)
    assert not [f for f in physical_flows(env, "lf1") if dst in f]


def _sample(text: str, key: str) -> float:
    line = next((ln for ln in text.splitlines() if ln.startswith(key + " ")), None)
    assert line is not None, key
    return float(line.rsplit(" ", 1)[1])


def test_prometheus_metrics_show_pswitches_and_each_tenants_rules_to_the_admin_only(
    env: Env,
) -> None:
    assert all(r.ok for r in pingall(env.fab, env.layout, env.alice.hosts[:2]))
    r = env.daemon.get("/metrics")
    assert r.status_code == 200
    text = r.text
    n_sw = len(env.layout.topo.switches)
    assert text.count("tenantvisor_pswitch_up{") == n_sw
    unclaimed = [ln for ln in text.splitlines()
                 if ln.startswith("tenantvisor_pswitch_unclaimed_messages_total{")]  # fmt: skip
    assert len(unclaimed) == 2 * n_sw, unclaimed
    # a PACKET_IN no vswitch owns (a rule of no network's sends it) is counted, not relayed
    dpid = env.layout.topo.switches["lf1"].dpid
    key = f'tenantvisor_pswitch_unclaimed_messages_total{{dpid="{dpid:016x}",type="packet_in"}}'
    before = _sample(text, key)
    env.fab.ofctl("lf1", "add-flow", "table=0,priority=65535,cookie=0x7fff000000000001,"
                  "dl_dst=02:00:00:00:00:99,actions=controller")  # fmt: skip
    try:
        frame = "020000000099020000000abc0800" + "00" * 46
        env.fab.ofctl("lf1", "packet-out", f"in_port=controller packet={frame} actions=table")
        wait_until(lambda: _sample(env.daemon.get("/metrics").text, key) > before)
        assert _sample(env.daemon.get("/metrics").text, key) == before + 1
    finally:
        env.fab.ofctl("lf1", "del-flows", "cookie=0x7fff000000000001/-1")
    rules = [
        line for line in text.splitlines()
        if line.startswith("tenantvisor_vswitch_virtual_rules{") and 'tenant="alice"' in line
    ]  # fmt: skip
    assert rules and any(float(line.rsplit(" ", 1)[1]) > 0 for line in rules)
    assert env.daemon.get("/metrics", token=env.alice.token).status_code == 403
    import httpx

    assert httpx.get(env.daemon.url + "/metrics").status_code == 401


def _ofctl(target: str, *args: str) -> str:
    import subprocess

    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", *args[:1], target, *args[1:]],
        capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_ovs_ofctl_talks_to_a_vswitch_listening_on_its_own_port(env: Env) -> None:
    """A vswitch with its own ptcp listener: ovs-ofctl adds a rule, sends a packet through
    it, and dumps flows and aggregates that show the tenant's virtual view with counters
    read from the pswitch, and nothing of the hypervisor or the other tenants."""
    from tenantvisor.testbed.controllers import free_tcp_port

    port = free_tcp_port()
    vdpid = env.carol["lf1"].dpid
    path = f"/v1/networks/{env.carol_net}/switches/{vdpid}/controllers"
    urls = [f"tcp:127.0.0.1:{env.listener.port}", f"ptcp:{port}:127.0.0.1"]
    env.daemon.rest("PUT", path, {"controller_urls": urls}, env.carol_token)
    (env.carol["lf1"],) = env.listener.accept(1)  # the active connection comes back
    target = f"tcp:127.0.0.1:{port}"
    edge = env.carol_vports["lf1"]["edge"]
    deadline = time.monotonic() + 5
    while True:
        try:
            _ofctl(target, "add-flow", f"priority=9,dl_dst=02:00:00:00:00:7b,actions=output:{edge}")
            break
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    peer = env.carol["lf1"]
    frame = bytes.fromhex("02000000007b020000000abc0800") + bytes(28)
    send_packet(peer, frame, ofp.OFPP_TABLE)
    flows = _ofctl(target, "dump-flows")
    rules = [line for line in flows.splitlines() if "priority=" in line]
    assert len(rules) == 1, flows  # only carol's rule on this vswitch, nothing of anyone else
    assert "dl_dst=02:00:00:00:00:7b" in rules[0] and "n_packets=1" in rules[0], flows
    assert "metadata" not in flows and "vlan" not in flows
    agg = _ofctl(target, "dump-aggregate")
    assert "packet_count=1" in agg and "flow_count=1" in agg, agg
    tables = _ofctl(target, "dump-tables")
    table0 = tables.split("table 1")[0]
    assert "active=1" in table0 and "matched=1" in table0, tables
    # the tenant's own lookups (its classified packets and PACKET_OUTs to TABLE): the
    # PACKET_OUT just sent at least, never the shared table's count nor unknown
    lookups = int(table0.split("lookup=")[1].split(",")[0])
    assert 1 <= lookups < 1 << 63, tables
    ports = _ofctl(target, "dump-ports")
    assert f"port  {edge}:" in ports or f"port {edge}:" in ports, ports
    _ofctl(target, "add-group", f"group_id=9,type=all,bucket=output:{edge}")
    groups = _ofctl(target, "dump-groups")
    assert "group_id=9,type=all" in groups and f"bucket=actions=output:{edge}" in groups, groups
    _ofctl(target, "del-groups")
    assert "group_id=9" not in _ofctl(target, "dump-groups")
    _ofctl(target, "del-flows")
    assert "priority=" not in _ofctl(target, "dump-flows")
    env.daemon.rest("PUT", path, {"controller_urls": None}, env.carol_token)
    (env.carol["lf1"],) = env.listener.accept(1)


def _role(peer: OFPeer, role: int, gen: int) -> tuple[int, int, int]:
    """(message type, role, generation) of the answer to a ROLE_REQUEST."""
    xid = peer.next_xid()
    peer.send(wire(p.OFPRoleRequest(DP, role, gen), xid))
    m = peer.recv_until(lambda m: m[1] == xid and m[0] in (ofp.OFPT_ROLE_REPLY, ofp.OFPT_ERROR))
    assert m is not None
    if m[0] == ofp.OFPT_ERROR:
        return (m[0], *struct.unpack_from("!HH", m[2], 8))
    got_role, got_gen = struct.unpack_from("!I4xQ", m[2], 8)
    return m[0], got_role, got_gen


def test_several_controllers_per_vswitch_follow_their_roles(env: Env) -> None:
    """Two controllers on one vswitch: MASTER/SLAVE with generation ids, a SLAVE may not
    write, a new MASTER demotes the old one, and PACKET_IN goes to the master only."""
    import socket

    from tenantvisor.testbed.controllers import free_tcp_port

    port = free_tcp_port()
    vdpid = env.carol["lf1"].dpid
    path = f"/v1/networks/{env.carol_net}/switches/{vdpid}/controllers"
    urls = [f"tcp:127.0.0.1:{env.listener.port}", f"ptcp:{port}:127.0.0.1"]
    env.daemon.rest("PUT", path, {"controller_urls": urls}, env.carol_token)
    (a,) = env.listener.accept(1)
    env.carol["lf1"] = a
    deadline = time.monotonic() + 5
    while True:
        try:
            b = OFPeer(socket.create_connection(("127.0.0.1", port), timeout=5)).handshake()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        assert _role(a, ofp.OFPCR_ROLE_MASTER, 10) == (
            ofp.OFPT_ROLE_REPLY,
            ofp.OFPCR_ROLE_MASTER,
            10,
        )
        assert _role(b, ofp.OFPCR_ROLE_SLAVE, 10)[1] == ofp.OFPCR_ROLE_SLAVE
        xid = b.next_xid()
        b.send(flow_mod(xid, p.OFPMatch(), [p.OFPActionOutput(ofp.OFPP_CONTROLLER)]))
        err = b.recv_until(lambda m: m[0] == ofp.OFPT_ERROR and m[1] == xid)
        assert err is not None
        assert struct.unpack_from("!HH", err[2], 8) == (ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE)
        assert _role(b, ofp.OFPCR_ROLE_MASTER, 9) == (
            ofp.OFPT_ERROR, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE,
        )  # fmt: skip
        assert _role(b, ofp.OFPCR_ROLE_MASTER, 11)[1] == ofp.OFPCR_ROLE_MASTER
        assert _role(a, ofp.OFPCR_ROLE_NOCHANGE, 0)[1] == ofp.OFPCR_ROLE_SLAVE  # demoted
        # the master installs a table-miss to the controller and injects a packet
        miss = p.OFPFlowMod(
            DP, priority=0, match=p.OFPMatch(),
            instructions=[p.OFPInstructionActions(
                ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(ofp.OFPP_CONTROLLER, 128)])],
        )  # fmt: skip
        b.send(wire(miss, b.next_xid()))
        assert all(m[0] != ofp.OFPT_ERROR for m in barrier(b))
        frame = bytes.fromhex("ffffffffffff020000000abc0806") + bytes(28)
        po = p.OFPPacketOut(
            DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER,
            actions=[p.OFPActionOutput(ofp.OFPP_TABLE)], data=frame,
        )  # fmt: skip
        b.send(wire(po, b.next_xid()))
        m = b.recv_until(lambda m: m[0] == ofp.OFPT_PACKET_IN, timeout=5)
        assert m is not None, "the master got no PACKET_IN"
        pi = p.OFPPacketIn.parser(DP, 4, m[0], len(m[2]), m[1], m[2])
        # a PACKET_OUT's packet the table-miss rule sends: ACTION, as a bare OVS bridge says
        assert pi.reason == ofp.OFPR_ACTION and pi.data[:14] == frame[:14]
        assert a.recv_until(lambda m: m[0] == ofp.OFPT_PACKET_IN, timeout=1) is None
        delete_everything(b)
    finally:
        b.close()
        env.daemon.rest("PUT", path, {"controller_urls": None}, env.carol_token)
        (env.carol["lf1"],) = env.listener.accept(1)


def _port_stats(peer: OFPeer) -> dict[int, p.OFPPortStats]:
    xid = peer.next_xid()
    peer.send(wire(p.OFPPortStatsRequest(DP, 0, ofp.OFPP_ANY), xid))
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    body = p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body
    return {s.port_no: s for s in body}


def test_port_counters_count_the_tenants_own_traffic_only(env: Env) -> None:
    """One frame out of carol's lf1 link vport: her lf2 link vport received one, her lf1
    link vport sent one.  alice's pings cross the same physical ports and change neither."""
    a, b = env.carol["lf1"], env.carol["lf2"]
    link1, link2 = env.carol_vports["lf1"]["link"], env.carol_vports["lf2"]["link"]
    before1, before2 = _port_stats(a), _port_stats(b)
    assert all(r.ok for r in pingall(env.fab, env.layout, env.alice.hosts[:2]))
    assert _port_stats(a)[link1].tx_packets == before1[link1].tx_packets
    assert _port_stats(b)[link2].rx_packets == before2[link2].rx_packets
    frame = bytes.fromhex("020000000abd020000000abc0800") + bytes(46)
    send_packet(a, frame, link1)
    wait_until(lambda: _port_stats(b)[link2].rx_packets > before2[link2].rx_packets)
    after1, after2 = _port_stats(a), _port_stats(b)
    assert after2[link2].rx_packets == before2[link2].rx_packets + 1
    assert after2[link2].rx_bytes == before2[link2].rx_bytes + len(frame)
    assert after1[link1].tx_packets == before1[link1].tx_packets + 1
    # an edge vport's tx: what left by its physical port, counted by its output group
    edge = env.carol_vports["lf1"]["edge"]
    out = bytes.fromhex("ffffffffffff020000000abc0806") + bytes(28)
    send_packet(a, out, edge)
    wait_until(lambda: _port_stats(a)[edge].tx_packets != after1[edge].tx_packets)
    last = _port_stats(a)[edge]
    assert last.tx_packets == after1[edge].tx_packets + 1
    assert last.tx_bytes == after1[edge].tx_bytes + len(out)
    assert last.rx_errors == 0xFFFFFFFFFFFFFFFF  # no counter of its own: unknown
    # and a frame that crossed the fabric to get there
    a.send(flow_mod(a.next_xid(), p.OFPMatch(in_port=link1), [p.OFPActionOutput(edge)]))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(a))
    try:
        send_packet(b, out, link2)
        wait_until(lambda: _port_stats(a)[edge].tx_packets != last.tx_packets)
        crossed = _port_stats(a)[edge]
        assert crossed.tx_packets == last.tx_packets + 1
        # Open vSwitch counts a frame in a group as it entered the pswitch: with the
        # fabric's S-tag (README, PORT stats row)
        assert crossed.tx_bytes == last.tx_bytes + len(out) + TAG_BYTES
    finally:
        delete_everything(a)


def _group_mod(peer: OFPeer, cmd: int, gtype: int, gid: int, buckets: list) -> int:  # type: ignore[type-arg]
    xid = peer.next_xid()
    peer.send(wire(p.OFPGroupMod(DP, cmd, gtype, gid, buckets), xid))
    return xid


def test_a_tenants_groups_are_its_own_translated_and_counted(env: Env) -> None:
    a, b = env.carol["lf1"], env.carol["lf2"]
    edge, link = env.carol_vports["lf1"]["edge"], env.carol_vports["lf1"]["link"]
    link2 = env.carol_vports["lf2"]["link"]
    Out, Bucket = p.OFPActionOutput, p.OFPBucket
    before = set(env.fab.ofctl("lf1", "dump-groups").splitlines())
    _group_mod(a, ofp.OFPGC_ADD, ofp.OFPGT_ALL, 5, [Bucket(actions=[Out(edge)]),
                                                    Bucket(actions=[Out(link)])])  # fmt: skip
    a.send(flow_mod(a.next_xid(), p.OFPMatch(eth_dst="02:00:00:00:00:7c"), [p.OFPActionGroup(5)]))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(a))
    # the tenant's id 5 is a physical id of the hypervisor's choosing on the pswitch
    groups = env.fab.ofctl("lf1", "dump-groups")
    tenant_groups = [g for g in groups.splitlines() if g not in before]
    assert len(tenant_groups) == 1 and "group_id=5," not in tenant_groups[0], groups
    # refusals
    for gtype, gid, buckets, code in [
        (ofp.OFPGT_ALL, 5, [Bucket(actions=[Out(edge)])], ofp.OFPGMFC_GROUP_EXISTS),
        # the ingress may be the vlink's, whose tag the bucket cannot know to push
        (ofp.OFPGT_ALL, 6, [Bucket(actions=[Out(ofp.OFPP_IN_PORT)])], ofp.OFPGMFC_BAD_BUCKET),
        (ofp.OFPGT_FF, 7, [Bucket(actions=[Out(edge)])], ofp.OFPGMFC_BAD_WATCH),
        (ofp.OFPGT_ALL, 8, [Bucket(actions=[Out(99)])], None),
    ]:
        xid = _group_mod(a, ofp.OFPGC_ADD, gtype, gid, buckets)
        replies = barrier(a)
        err = [m for m in replies if m[0] == ofp.OFPT_ERROR and m[1] == xid]
        assert err, f"group {gid} was not refused"
        etype, got, _ = error_of(err[0])
        if code is None:
            assert (etype, got) == (ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_PORT)
        else:
            assert (etype, got) == (ofp.OFPET_GROUP_MOD_FAILED, code)
    # one packet through the group: a copy to each bucket
    outsider = env.layout.outsider
    before_host = rx_packets(env.fab, outsider)
    before_link = _port_stats(b)[link2].rx_packets
    frame = bytes.fromhex("02000000007c020000000abc0800") + bytes(46)
    send_packet(a, frame, ofp.OFPP_TABLE)
    wait_until(lambda: rx_packets(env.fab, outsider) != before_host)
    assert rx_packets(env.fab, outsider) == before_host + 1
    wait_until(lambda: _port_stats(b)[link2].rx_packets != before_link)  # another path
    assert _port_stats(b)[link2].rx_packets == before_link + 1
    xid = a.next_xid()
    a.send(wire(p.OFPGroupStatsRequest(DP, 0, ofp.OFPG_ALL), xid))
    m = a.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    (st,) = p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body
    assert (st.group_id, st.ref_count, st.packet_count) == (5, 1, 1)
    xid = a.next_xid()
    a.send(wire(p.OFPGroupDescStatsRequest(DP, 0), xid))
    m = a.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    (desc,) = p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body
    assert desc.group_id == 5 and [bk.actions[0].port for bk in desc.buckets] == [edge, link]
    # deleting the group takes the rule that forwards to it away, here and on the pswitch
    _group_mod(a, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, 5, [])
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(a))
    assert not any("02:00:00:00:00:7c" in f for f in physical_flows(env, "lf1"))
    status = env.daemon.get("/v1/status").json()
    assert not any(v["flows"] for v in status["vswitches"] if v["network"] == env.carol_net)
    assert set(env.fab.ofctl("lf1", "dump-groups").splitlines()) <= before  # the group went


def test_a_group_in_the_action_set_wins_over_an_output_to_an_edge_vport(env: Env) -> None:
    """OpenFlow: with both in the action set, the group runs and the output is ignored.  The
    hypervisor's own output groups (edge tx counters) must not change that."""
    a, b = env.carol["lf1"], env.carol["lf2"]
    edge, link = env.carol_vports["lf1"]["edge"], env.carol_vports["lf1"]["link"]
    link2 = env.carol_vports["lf2"]["link"]
    match = p.OFPMatch(eth_dst="02:00:00:00:00:7f")
    _group_mod(a, ofp.OFPGC_ADD, ofp.OFPGT_ALL, 9, [p.OFPBucket(actions=[p.OFPActionOutput(link)])])
    for table, actions, goto in [
        (0, [p.OFPActionGroup(9)], 1),
        (1, [p.OFPActionOutput(edge)], None),
    ]:
        inst = [p.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, actions)]
        if goto is not None:
            inst.append(p.OFPInstructionGotoTable(goto))
        a.send(flow_mod(a.next_xid(), match, table_id=table, instructions=inst))
    try:
        assert all(m[0] != ofp.OFPT_ERROR for m in barrier(a))
        outsider = env.layout.outsider
        before_host, before_link = rx_packets(env.fab, outsider), _port_stats(b)[link2].rx_packets
        send_packet(a, bytes.fromhex("02000000007f020000000abc0800") + bytes(46), ofp.OFPP_TABLE)
        wait_until(lambda: _port_stats(b)[link2].rx_packets != before_link)
        assert _port_stats(b)[link2].rx_packets == before_link + 1
        time.sleep(0.3)
        assert rx_packets(env.fab, outsider) == before_host
    finally:
        delete_everything(a)
        _group_mod(a, ofp.OFPGC_DELETE, ofp.OFPGT_ALL, 9, [])
        assert all(m[0] != ofp.OFPT_ERROR for m in barrier(a))


def test_a_vswitch_holds_at_most_its_rule_limit_then_says_table_full(env: Env) -> None:
    b = env.carol["lf2"]
    delete_everything(b)
    xid = b.next_xid()
    b.send(wire(p.OFPTableFeaturesStatsRequest(DP, 0, []), xid))
    m = b.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    features = p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body
    assert {f.max_entries for f in features} == {RULE_LIMIT}
    try:
        for i in range(RULE_LIMIT):
            b.send(
                flow_mod(
                    b.next_xid(), p.OFPMatch(eth_dst=f"02:00:00:01:{i >> 8:02x}:{i & 255:02x}")
                )
            )
        assert not [m for m in barrier(b) if m[0] == ofp.OFPT_ERROR]
        xid = b.next_xid()
        b.send(flow_mod(xid, p.OFPMatch(eth_dst="02:00:00:02:00:00")))
        err = [m for m in barrier(b) if m[0] == ofp.OFPT_ERROR and m[1] == xid]
        assert err and error_of(err[0])[:2] == (ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL)
        # replacing a rule it holds is not a new rule
        b.send(
            flow_mod(b.next_xid(), p.OFPMatch(eth_dst="02:00:00:01:00:00"), [p.OFPActionOutput(1)])
        )
        assert not [m for m in barrier(b) if m[0] == ofp.OFPT_ERROR]
    finally:
        delete_everything(b)
    # the limit is per vswitch: its neighbour on another pswitch still takes rules
    a = env.carol["lf1"]
    a.send(flow_mod(a.next_xid(), p.OFPMatch(eth_dst="02:00:00:02:00:01")))
    assert not [m for m in barrier(a) if m[0] == ofp.OFPT_ERROR]
    delete_everything(a)


def test_a_tenants_meters_are_its_own_and_count_its_packets(env: Env) -> None:
    a = env.carol["lf1"]
    edge = env.carol_vports["lf1"]["edge"]
    band = p.OFPMeterBandDrop(rate=10_000, burst_size=0)
    xid = a.next_xid()
    a.send(wire(p.OFPMeterMod(DP, ofp.OFPMC_ADD, ofp.OFPMF_KBPS | ofp.OFPMF_STATS, 3, [band]), xid))
    rule = p.OFPFlowMod(
        DP, priority=9, match=p.OFPMatch(eth_dst="02:00:00:00:00:7d"),
        instructions=[p.OFPInstructionMeter(3),
                      p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(edge)])],
    )  # fmt: skip
    a.send(wire(rule, a.next_xid()))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(a))
    meters = env.fab.ofctl("lf1", "dump-meters")
    # the tenant's meter 3 is on a physical id of ours (the pswitch's meter 3, if there is
    # one, is another: e.g. a vswitch's PACKET_IN meter)
    ours = re.findall(r"meter=(\d+) kbps stats bands=\s*type=drop rate=10000", meters)
    assert len(ours) == 1 and ours[0] != "3", meters
    for mod, code in [
        (p.OFPMeterMod(DP, ofp.OFPMC_ADD, ofp.OFPMF_KBPS, 0, [band]), ofp.OFPMMFC_INVALID_METER),
        (p.OFPMeterMod(DP, ofp.OFPMC_ADD, ofp.OFPMF_KBPS, 3, [band]), ofp.OFPMMFC_METER_EXISTS),
        (p.OFPMeterMod(DP, ofp.OFPMC_MODIFY, ofp.OFPMF_KBPS, 4, [band]), ofp.OFPMMFC_UNKNOWN_METER),
    ]:
        xid = a.next_xid()
        a.send(wire(mod, xid))
        err = [m for m in barrier(a) if m[0] == ofp.OFPT_ERROR and m[1] == xid]
        assert err and error_of(err[0])[:2] == (ofp.OFPET_METER_MOD_FAILED, code)
    # a band OVS's userspace datapath does not have: its refusal reaches the tenant
    xid = a.next_xid()
    remark = p.OFPMeterBandDscpRemark(rate=10, burst_size=0, prec_level=1)
    a.send(wire(p.OFPMeterMod(DP, ofp.OFPMC_ADD, ofp.OFPMF_KBPS, 5, [remark]), xid))
    err = [m for m in barrier(a) if m[0] == ofp.OFPT_ERROR and m[1] == xid]
    assert err and error_of(err[0])[0] == ofp.OFPET_METER_MOD_FAILED
    frame = bytes.fromhex("02000000007d020000000abc0800") + bytes(46)
    send_packet(a, frame, ofp.OFPP_TABLE)
    xid = a.next_xid()
    a.send(wire(p.OFPMeterStatsRequest(DP, 0, ofp.OFPM_ALL), xid))
    m = a.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    stats = p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body
    assert [(s.meter_id, s.flow_count, s.packet_in_count) for s in stats] == [(3, 1, 1)]
    xid = a.next_xid()
    a.send(wire(p.OFPMeterConfigStatsRequest(DP, 0, ofp.OFPM_ALL), xid))
    m = a.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    (cfg,) = p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body
    assert cfg.meter_id == 3 and cfg.bands[0].rate == 10_000
    a.send(wire(p.OFPMeterMod(DP, ofp.OFPMC_DELETE, 0, ofp.OFPM_ALL, []), a.next_xid()))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(a))
    assert "rate=10000" not in env.fab.ofctl("lf1", "dump-meters")
    assert not any("02:00:00:00:00:7d" in f for f in physical_flows(env, "lf1"))


def test_a_tenant_delete_of_a_rule_it_asked_to_hear_about_sends_flow_removed(env: Env) -> None:
    peer = env.carol["lf1"]
    fm = p.OFPFlowMod(
        DP, cookie=0xD, priority=44, flags=ofp.OFPFF_SEND_FLOW_REM,
        match=p.OFPMatch(eth_dst="02:00:00:00:00:7e"),
        instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, [])],
    )  # fmt: skip
    peer.send(wire(fm, peer.next_xid()))
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(peer))
    delete_everything(peer)
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_FLOW_REMOVED, timeout=5)
    assert m is not None, "no FLOW_REMOVED after the tenant's delete"
    fr = p.OFPFlowRemoved.parser(DP, 4, m[0], len(m[2]), m[1], m[2])
    assert (fr.cookie, fr.priority, fr.reason) == (0xD, 44, ofp.OFPRR_DELETE)


def test_a_host_port_going_down_is_a_port_status_in_virtual_terms(env: Env) -> None:
    """carol's edge vport sits on the outsider's port: its veth going down shows as her
    vport going down, and back."""
    peer = env.carol["lf1"]
    edge = env.carol_vports["lf1"]["edge"]
    outsider = env.layout.topo.hosts[env.layout.outsider]
    ifname = env.fab.port_ifname("lf1", outsider.port)
    from tenantvisor.testbed import netns

    netns.set_down(ifname, env.fab.switch_netns)
    try:
        m = peer.recv_until(
            lambda m: m[0] == ofp.OFPT_PORT_STATUS and _port_status(m)[1] == edge, 10
        )
        assert m is not None and _port_status(m)[2] & ofp.OFPPS_LINK_DOWN
    finally:
        netns.set_up(ifname, env.fab.switch_netns)
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_PORT_STATUS and _port_status(m)[1] == edge, 10)
    assert m is not None and _port_status(m)[2] & ofp.OFPPS_LIVE


def test_set_async_decides_which_packet_ins_a_controller_gets(env: Env) -> None:
    peer = env.carol["lf1"]
    miss = p.OFPFlowMod(
        DP, priority=0, match=p.OFPMatch(),
        instructions=[p.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [p.OFPActionOutput(ofp.OFPP_CONTROLLER, 128)])],
    )  # fmt: skip
    peer.send(wire(miss, peer.next_xid()))
    frame = bytes.fromhex("ffffffffffff020000000abc0806") + bytes(28)
    try:
        no_packet_ins = p.OFPSetAsync(DP, [0, 0], [0b111, 0b111], [0b1111, 0])
        peer.send(wire(no_packet_ins, peer.next_xid()))
        send_packet(peer, frame, ofp.OFPP_TABLE)
        assert peer.recv_until(lambda m: m[0] == ofp.OFPT_PACKET_IN, timeout=1) is None
        defaults = p.OFPSetAsync(DP, [0b11, 0], [0b111, 0b111], [0b1111, 0])
        peer.send(wire(defaults, peer.next_xid()))
        send_packet(peer, frame, ofp.OFPP_TABLE)
        assert peer.recv_until(lambda m: m[0] == ofp.OFPT_PACKET_IN, timeout=3) is not None
    finally:
        delete_everything(peer)


def _flow_stats(peer: OFPeer, **kw: object) -> list[p.OFPFlowStats]:
    xid = peer.next_xid()
    req = p.OFPFlowStatsRequest(
        DP, 0, kw.pop("table_id", ofp.OFPTT_ALL), kw.pop("out_port", ofp.OFPP_ANY),
        ofp.OFPG_ANY, kw.pop("cookie", 0), kw.pop("cookie_mask", 0),
        kw.pop("match", p.OFPMatch()),
    )  # fmt: skip
    peer.send(wire(req, xid))
    m = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
    assert m is not None
    return list(p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body)


def test_flow_statistics_filters_select_the_tenants_rules_as_a_switch_would(env: Env) -> None:
    peer = env.carol["lf1"]
    edge, link = env.carol_vports["lf1"]["edge"], env.carol_vports["lf1"]["link"]
    rules = [
        (0xA1, "02:00:00:00:00:a1", edge, 0),
        (0xA2, "02:00:00:00:00:a2", link, 0),
        (0xB3, "02:00:00:00:00:b3", edge, 1),
    ]
    for cookie, mac, port, table in rules:
        peer.send(wire(p.OFPFlowMod(
            DP, cookie=cookie, table_id=table, priority=5, match=p.OFPMatch(eth_dst=mac),
            instructions=[p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                  [p.OFPActionOutput(port)])],
        ), peer.next_xid()))  # fmt: skip
    assert all(m[0] != ofp.OFPT_ERROR for m in barrier(peer))
    try:
        assert {s.cookie for s in _flow_stats(peer)} == {0xA1, 0xA2, 0xB3}
        assert {s.cookie for s in _flow_stats(peer, table_id=1)} == {0xB3}
        assert {s.cookie for s in _flow_stats(peer, cookie=0xA0, cookie_mask=0xF0)} == {
            0xA1, 0xA2,
        }  # fmt: skip
        assert {s.cookie for s in _flow_stats(peer, out_port=link)} == {0xA2}
        one = _flow_stats(peer, match=p.OFPMatch(eth_dst="02:00:00:00:00:a1"))
        assert [s.cookie for s in one] == [0xA1] and one[0].match["eth_dst"] == "02:00:00:00:00:a1"
        xid = peer.next_xid()
        req = p.OFPAggregateStatsRequest(
            DP, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0xA0, 0xF0, p.OFPMatch()
        )
        peer.send(wire(req, xid))
        m = peer.recv_until(lambda m: m[0] == ofp.OFPT_MULTIPART_REPLY and m[1] == xid)
        assert m is not None
        agg = p.OFPMultipartReply.parser(DP, 4, m[0], len(m[2]), m[1], m[2]).body
        assert agg.flow_count == 2
    finally:
        delete_everything(peer)
