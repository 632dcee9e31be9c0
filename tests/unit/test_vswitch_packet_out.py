"""A tenant PACKET_OUT through a real endpoint: every path refuses what no PACKET_OUT may do.

The endpoint takes a PACKET_OUT one of three ways: an LLDP frame is delivered at the peer
vswitch as a PACKET_IN (virtual topology discovery), a reduced vswitch carries outputs
itself, and anything else is translated for the pswitch.  Actions a PACKET_OUT may not
carry (the fabric's S-tag, a field of the hypervisor's) get the same error on each path,
never a silent drop of the action.  The vswitches are leaf-spine as in test_reduce_churn.
"""

from __future__ import annotations

from typing import Any

import pytest
from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as p

from tenantvisor.openflow.codec import OFError

from .ofkit import DP, osken_bytes
from .test_reduce_churn import Conn, Host, network

# dst, src, ethertype: an LLDP frame to the nearest-bridge address, and an IPv4 one
LLDP = bytes.fromhex("0180c200000e" + "020000000001" + "88cc") + b"\x02\x07\x04" + b"\0" * 50
IPV4 = bytes.fromhex("020000000003" + "020000000001" + "0800") + b"\x45" + b"\0" * 50
LINK = 3  # lf1's vport toward the spine
EDGE = 2  # lf1's second host


class LldpHost(Host):
    """The fabric of test_reduce_churn, recording the LLDP frames delivered at vlink peers."""

    def __init__(self) -> None:
        super().__init__()
        self.lldp: list[tuple[int, int, bytes]] = []

    def deliver_lldp(self, net_id: int, vdpid: int, vport: int, data: bytes) -> None:
        self.lldp.append((vdpid, vport, data))


def packet_out(data: bytes, *actions: Any) -> bytes:
    po = p.OFPPacketOut(
        DP, buffer_id=ofp.OFP_NO_BUFFER, in_port=ofp.OFPP_CONTROLLER, actions=list(actions),
        data=data,
    )  # fmt: skip
    return osken_bytes(po)


BAD_ACTIONS = {
    "fabric-s-tag": ([p.OFPActionPushVlan(0x88A8)], (ofp.OFPET_BAD_ACTION,
                                                    ofp.OFPBAC_BAD_ARGUMENT)),
    "set-metadata": ([p.OFPActionSetField(metadata=1 << 44)], (ofp.OFPET_BAD_ACTION,
                                                              ofp.OFPBAC_BAD_SET_TYPE)),
    "set-tunnel-id": ([p.OFPActionSetField(tunnel_id=5)], (ofp.OFPET_BAD_ACTION,
                                                          ofp.OFPBAC_BAD_SET_TYPE)),
}  # fmt: skip


@pytest.mark.parametrize("out", [LINK, EDGE, ofp.OFPP_FLOOD], ids=["link", "edge", "flood"])
@pytest.mark.parametrize("case", list(BAD_ACTIONS))
def test_an_lldp_packet_out_with_an_action_no_packet_out_may_carry_is_refused(
    case: str, out: int
) -> None:
    host = LldpHost()
    lf1 = network("exact", host)[1]["lf1"]
    actions, error = BAD_ACTIONS[case]
    with pytest.raises(OFError) as exc:
        lf1.handle(Conn(), ofp.OFPT_PACKET_OUT, 7,  # type: ignore[arg-type]
                   packet_out(LLDP, *actions, p.OFPActionOutput(out)))  # fmt: skip
    assert (exc.value.type, exc.value.code) == error
    assert host.lldp == []  # nothing delivered at the peer


def test_an_lldp_packet_out_with_outputs_only_reaches_the_peer_vswitch() -> None:
    host = LldpHost()
    lf1 = network("exact", host)[1]["lf1"]
    lf1.handle(Conn(), ofp.OFPT_PACKET_OUT, 7,  # type: ignore[arg-type]
               packet_out(LLDP, p.OFPActionOutput(LINK)))  # fmt: skip
    assert host.lldp == [(101, LINK, LLDP)]


@pytest.mark.parametrize("case", list(BAD_ACTIONS))
def test_a_reduced_vswitchs_packet_out_with_an_action_no_packet_out_may_carry_is_refused(
    case: str,
) -> None:
    lf1 = network("hop")[1]["lf1"]
    assert lf1.plan is not None  # carried by the endpoint itself when it can
    actions, error = BAD_ACTIONS[case]
    with pytest.raises(OFError) as exc:
        lf1.handle(Conn(), ofp.OFPT_PACKET_OUT, 7,  # type: ignore[arg-type]
                   packet_out(IPV4, *actions, p.OFPActionOutput(EDGE)))  # fmt: skip
    assert (exc.value.type, exc.value.code) == error
