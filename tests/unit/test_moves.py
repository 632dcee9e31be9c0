"""Which host a punted frame says moved (virtual/moves.py), and the provider's punt rules."""

from __future__ import annotations

import struct

from os_ken.ofproto import ofproto_v1_3 as ofp

from tenantvisor.mapping import layout
from tenantvisor.openflow import codec, oxm
from tenantvisor.translate import infra
from tenantvisor.virtual.model import Host, VirtualNetwork, VPort, VPortKind, VSwitch
from tenantvisor.virtual.moves import detect

MAC = "02:00:00:00:00:01"


def net(nid: int, ports: list[tuple[int, int]], macs: list[str]) -> VirtualNetwork:
    """A started network with one vswitch per pswitch of `ports` (edge vports there), its
    hosts `macs` on the first vport."""
    n = VirtualNetwork(nid, nid, [], started=True)
    for i, (dpid, port) in enumerate(ports):
        sw = n.switches.setdefault(dpid, VSwitch(dpid, [dpid], nid * 100 + dpid))
        number = len(sw.ports) + 1
        sw.ports[number] = VPort(number, dpid, port, VPortKind.EDGE)
        if i == 0:
            for j, mac in enumerate(macs):
                n.hosts[j + 1] = Host(j + 1, dpid, number, mac)
    return n


def test_a_frame_names_the_one_host_of_the_one_network_allowed_there() -> None:
    a = net(1, [(1, 1), (3, 5)], [MAC])
    assert detect([a], 3, 5, MAC) == (1, 1)  # a port the network has a vport on
    assert detect([a], 3, 9, MAC) == (1, 1)  # a fresh port of a pswitch only it uses
    assert "already here" in str(detect([a], 1, 1, MAC))
    assert "no host with this MAC" in str(detect([a], 3, 5, "02:00:00:00:00:99"))
    assert "no started network" in str(detect([a], 7, 1, MAC))
    a.started = False
    assert "no started network" in str(detect([a], 3, 5, MAC))


def test_a_frame_on_a_port_two_tenants_share_moves_nothing() -> None:
    """b's VM could send a's host's MAC: on a port (or a fresh port of a pswitch) that both
    networks use, nothing moves, whichever network has the MAC (here both do)."""
    a = net(1, [(1, 1), (3, 5)], [MAC])
    b = net(2, [(2, 1), (3, 5)], [MAC])
    assert "shared by networks 1, 2" in str(detect([a, b], 3, 5, MAC))
    assert "pswitch is shared" in str(detect([a, b], 3, 9, MAC))
    # on a port only b has, b's host moves; a's host with the same MAC is not b's to move
    b.switches[2].ports[2] = VPort(2, 2, 4, VPortKind.EDGE)
    assert detect([a, b], 2, 4, MAC) == (2, 1)


def test_a_mac_twice_in_one_network_is_ambiguous() -> None:
    a = net(1, [(1, 1), (3, 5)], [MAC, MAC])
    assert "2 hosts with this MAC" in str(detect([a], 3, 5, MAC))


def test_the_punt_rules_take_untagged_arp_through_the_providers_meter() -> None:
    rules = infra.provider_flows(9, punt=True)
    punts = [pf for pf in rules if pf.cookie == layout.PUNT_COOKIE]
    assert {pf.priority for pf in punts} == {infra.PRIO_PUNT}
    types = set()
    for pf in punts:
        m = {o.field: codec.oxm_int(o) for o in codec.parse_match(pf.match, 0)[0]}
        assert m[oxm.VLAN_VID] == 0  # untagged only: nothing from the fabric
        types.add(m[oxm.ETH_TYPE])
        ins = codec.parse_instructions(pf.instructions)
        assert ins.meter == layout.PUNT_METER
        (out,) = ins.apply_actions or []
        assert codec.u32(out.raw, 4) == ofp.OFPP_CONTROLLER
    assert types == {0x0806, 0x8035}
    assert not [pf for pf in infra.provider_flows(9) if pf.cookie == layout.PUNT_COOKIE]
    flags, band = infra.punt_meter()
    assert flags & ofp.OFPMF_PKTPS
    kind, length, rate, burst = struct.unpack_from("!HHII", band)
    assert (kind, length, rate, burst) == (ofp.OFPMBT_DROP, 16, infra.PUNT_RATE,
                                           infra.PUNT_BURST)  # fmt: skip


def test_a_frame_on_an_exclusive_port_or_from_its_host_moves_nothing() -> None:
    """An exclusive vport's port is its own whole, its network started or not; a host
    registered on it is information, bound to that port, never moved elsewhere."""
    a = net(1, [(1, 1), (3, 5)], [MAC])
    b = net(2, [(2, 1)], ["02:00:00:00:00:02"])
    b.switches[2].ports[1].exclusive = True
    assert "held by an exclusive vport of network 2" in str(detect([a, b], 2, 1, MAC))
    b.started = False
    assert "held by an exclusive vport" in str(detect([a, b], 2, 1, MAC))
    b.started = True
    assert "on an exclusive vport" in str(detect([a, b], 2, 7, "02:00:00:00:00:02"))
    assert detect([a, b], 3, 9, MAC) == (1, 1)  # a's own hosts move as before
