"""A vswitch's own answers to a controller (FEATURES, QUEUE_GET_CONFIG), as a bare Open vSwitch
bridge gives them (the conformance harness compares the two: testbed/conformance)."""

from __future__ import annotations

import struct

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.openflow.codec import OFError

from .ofkit import DP, osken_bytes, osken_parse
from .test_reduce_churn import Channel, Conn, network


class Recording(Channel):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def send(self, msg: bytes) -> None:
        self.sent.append(msg)


def conn() -> Conn:
    c = Conn()
    c.channel = Recording()
    return c


def test_features_say_which_statistics_the_vswitch_answers() -> None:
    lf1 = network("exact")[1]["lf1"]
    c = conn()
    lf1.handle(c, ofp.OFPT_FEATURES_REQUEST, 7, osken_bytes(p.OFPFeaturesRequest(DP)))  # type: ignore[arg-type]
    (reply,) = [osken_parse(m) for m in c.channel.sent]  # type: ignore[attr-defined]
    want = ofp.OFPC_FLOW_STATS | ofp.OFPC_TABLE_STATS | ofp.OFPC_PORT_STATS | ofp.OFPC_GROUP_STATS
    assert reply.capabilities == want  # no queues, no reassembly, no STP
    assert (reply.datapath_id, reply.n_buffers, reply.auxiliary_id) == (lf1.vdpid, 0, 0)


def test_queue_config_of_a_vport_lists_no_queues_and_of_another_port_is_refused() -> None:
    lf1 = network("exact")[1]["lf1"]
    c = conn()
    msg = struct.pack("!BBHI", 4, ofp.OFPT_QUEUE_GET_CONFIG_REQUEST, 16, 7) + struct.pack("!I4x", 2)
    lf1.handle(c, ofp.OFPT_QUEUE_GET_CONFIG_REQUEST, 7, msg)  # type: ignore[arg-type]
    (reply,) = [osken_parse(m) for m in c.channel.sent]  # type: ignore[attr-defined]
    assert (reply.msg_type, reply.port, reply.queues) == (ofp.OFPT_QUEUE_GET_CONFIG_REPLY, 2, [])
    other = msg[:8] + struct.pack("!I4x", 77)
    with pytest.raises(OFError) as exc:
        lf1.handle(c, ofp.OFPT_QUEUE_GET_CONFIG_REQUEST, 7, other)  # type: ignore[arg-type]
    assert (exc.value.type, exc.value.code) == (ofp.OFPET_QUEUE_OP_FAILED, ofp.OFPQOFC_BAD_PORT)
