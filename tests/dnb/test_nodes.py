"""DNB and CNB on five emulated compute nodes (real OVS, userspace datapath, GRE)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tenantvisor.dedicated import planner
from tenantvisor.dedicated.manager import DnbManager
from tenantvisor.dedicated.ovsdb import NodeUnreachable
from tenantvisor.errors import Conflict, Forbidden, InvalidRequest, NotFound
from tenantvisor.testbed.nodes import NodeTestbed

from .conftest import Env

pytestmark = pytest.mark.root


def test_counts_on_every_node_match_the_equations_for_several_placements(clean: Env) -> None:
    env = clean
    for n in ("a", "b", "c"):
        env.dnb.create_network(1, n)
    placements = [
        [("a", "node1")],
        [("a", "node2"), ("b", "node2"), ("b", "node3")],
        [("c", "node5"), ("a", "node4"), ("a", "node5"), ("b", "node1")],
        [("c", "node1"), ("c", "node2"), ("c", "node3"), ("c", "node4"), ("a", "node3")],
    ]
    k = 0
    for step in placements:
        for net, node in step:
            k += 1
            env.vm(net, node, f"192.168.{k}.1/24")
        eq = env.dnb.equations()
        assert eq["holds"], eq
        for node in env.tb.nodes:
            tns_c = env.dnb.intent.networks_on(node)
            assert eq["nodes"][node]["bridges"] == 2 * (len(tns_c) + 1)
        for net in ("a", "b", "c"):
            h = len(env.dnb.intent.hosts(net))
            if h:
                assert eq["networks"][net]["tunnels"] == h * (h - 1) // 2 <= 10
    # detaching removes bridges and tunnels where they are no longer needed
    for net, vm in list(env.vms):
        env.dnb.detach_vm(net, None, vm.mac)
        assert env.dnb.equations()["holds"]


def test_vms_of_a_network_ping_across_nodes_and_overlapping_networks_stay_isolated(
    clean: Env,
) -> None:
    env = clean
    env.dnb.create_network(1, "red")
    env.dnb.create_network(2, "blue")
    red = [
        env.vm("red", n, f"192.168.7.{i}/24") for i, n in enumerate(["node1", "node2", "node3"], 1)
    ]
    blue = [env.vm("blue", n, f"192.168.7.{i}/24") for i, n in enumerate(["node1", "node2"], 1)]
    # same subnet, same addresses: each VM reaches its own network's peers
    for a, b in ((red[0], red[1]), (red[1], red[2]), (red[2], red[0]), (blue[0], blue[1])):
        assert a.ping(str(b.ip.ip), timeout=3), f"{a.name} -> {b.ip}"
    # ... and nothing of the other network: red's 192.168.7.3 does not exist for blue
    assert not blue[0].ping("192.168.7.3", timeout=1.5)
    # the ARP table of blue VMs holds only blue MACs
    neigh = blue[1].exec(["ip", "neigh", "show"]).stdout
    assert red[0].mac not in neigh and red[1].mac not in neigh


def test_tcp_through_gre_with_lowered_vm_mtu(clean: Env) -> None:
    env = clean
    env.dnb.create_network(1, "tcp")
    a = env.vm("tcp", "node1", "192.168.9.1/24")
    b = env.vm("tcp", "node2", "192.168.9.2/24")
    assert "mtu 1450" in a.exec(["ip", "link", "show", "eth0"]).stdout
    server = b.popen(["iperf3", "-s", "-1", "-B", "192.168.9.2"])
    try:
        time.sleep(0.3)
        out = a.exec(["iperf3", "-c", "192.168.9.2", "-t", "2", "-J"], timeout=30).stdout
        bps = json.loads(out)["end"]["sum_received"]["bits_per_second"]
        assert bps > 20e6, bps
    finally:
        server.kill()


def test_common_mode_attaches_to_the_shared_bridges_with_a_vlan_per_network(clean: Env) -> None:
    env = clean
    env.dnb.create_network(1, "c1", mode="common")
    env.dnb.create_network(2, "c2", mode="common")
    a = env.vm("c1", "node1", "192.168.5.1/24")
    b = env.vm("c1", "node3", "192.168.5.2/24")
    x = env.vm("c2", "node1", "192.168.5.1/24")
    y = env.vm("c2", "node3", "192.168.5.2/24")
    snap = env.dnb._db["node1"].snapshot()
    assert sorted(snap) == ["br-int", "br-tun"]
    assert snap["br-int"][a.tap]["tag"] != snap["br-int"][x.tap]["tag"]
    assert snap["br-tun"]["gre-3"]["options"]["key"] == "flow"
    assert a.ping("192.168.5.2", timeout=3) and x.ping("192.168.5.2", timeout=3)
    neigh = a.exec(["ip", "neigh", "show"]).stdout
    assert b.mac in neigh and y.mac not in neigh
    assert env.dnb.equations()["holds"]  # common networks add no bridges


def test_tenant_controller_programs_its_bridges_and_provider_rules_are_reasserted(
    clean: Env,
) -> None:
    env = clean
    dnb = env.dnb
    env.dnb.create_network(1, "ctl")
    a = env.vm("ctl", "node1", "192.168.11.1/24")
    env.vm("ctl", "node2", "192.168.11.2/24")
    env.tb.site_controller(6653)
    dnb.set_controller("ctl", None, f"tcp:{env.tb.site_ip}:6653")
    deadline = time.monotonic() + 10
    while not all(ok for _, ok in dnb._db["node1"].controller_status("brint-ctl")):
        assert time.monotonic() < deadline, "tenant controller never connected"
        time.sleep(0.1)
    assert dnb._db["node1"].controller_status("br-int") == []  # never on common bridges
    time.sleep(0.5)
    dnb.reassert()  # ovs-testcontroller may have wiped the tables on connect
    assert a.ping("192.168.11.2", timeout=3)
    # the tenant's controller installed rules of its own (cookie not ours) on its bridge
    dump = dnb.dump_flows("node1", "brint-ctl")
    assert any("cookie=0x7476" not in line for line in dump.splitlines()[1:]), dump
    # a tenant removes every provider rule of brtun-ctl: they come back by cookie
    flows = dnb._flows["node1"]
    wanted = dnb.plans["node1"].flows_on("brtun-ctl")
    subprocess.run(["ovs-ofctl", "del-flows", flows.target("brtun-ctl")], env=flows.env, check=True)
    assert flows.cookies("brtun-ctl") == set()
    assert dnb.reassert() >= len(wanted)
    assert flows.cookies("brtun-ctl") == {f.cookie for f in wanted}
    assert a.ping("192.168.11.2", timeout=3)
    dnb.set_controller("ctl", None, None)
    assert dnb._db["node1"].controller_status("brint-ctl") == []


def test_tenant_ports_only_on_own_bridges_and_endpoints_fenced_on_the_common_bridge(
    clean: Env,
) -> None:
    env = clean
    dnb = env.dnb
    a = dnb.create_network(1, "own")
    b = dnb.create_network(2, "other")
    env.vm("own", "node1", "192.168.12.1/24")
    env.vm("own", "node2", "192.168.12.2/24")
    env.vm("other", "node2", "192.168.12.1/24")
    node1, node2 = dnb.intent.nodes["node1"], dnb.intent.nodes["node2"]
    peer = str(planner.endpoint_ip(a, node2).ip)
    dnb.add_tenant_port("own", 1, "node1", "mytun", "vxlan", peer, 77)
    assert dnb._db["node1"].snapshot()["brtun-own"]["mytun"]["owner"] == "tenant"
    with pytest.raises(Forbidden):
        dnb.add_tenant_port("own", 1, "node1", "evil", "gre", str(planner.endpoint_ip(b, node2).ip))
    with pytest.raises(NotFound):  # another tenant's network looks absent
        dnb.add_tenant_port("other", 1, "node2", "x", "internal")
    with pytest.raises(Conflict):  # no bridges of "own" on node3
        dnb.add_tenant_port("own", 1, "node3", "t3", "internal")
    with pytest.raises(InvalidRequest):
        dnb.add_tenant_port("own", 1, "node1", "br-evil", "internal")
    # the common br-tun drops what ex-own sends to another network's endpoint
    ovs = env.tb.nodes["node1"].ovs
    src = planner.endpoint_ip(a, node1).ip
    bad = ovs.trace(
        "br-tun",
        f"in_port=ex-own,ip,nw_src={src},nw_dst={planner.endpoint_ip(b, node2).ip},nw_proto=47",
    )
    good = ovs.trace("br-tun", f"in_port=ex-own,ip,nw_src={src},nw_dst={peer},nw_proto=47")
    assert "Datapath actions: drop" in bad
    assert "Datapath actions: drop" not in good
    dnb.del_tenant_port("own", 1, "node1", "mytun")
    assert "mytun" not in dnb._db["node1"].snapshot()["brtun-own"]


def test_bad_input_is_refused_and_leaves_every_node_as_it_was(clean: Env) -> None:
    env = clean
    dnb = env.dnb
    dnb.create_network(1, "bad")
    vm = env.vm("bad", "node1", "192.168.13.1/24")
    before = env.snapshot()
    spare = env.vm("bad", "node2", "192.168.13.2/24", attach=False)
    with pytest.raises(NotFound):
        dnb.attach_vm("bad", None, "node9", "02:00:00:00:ff:01", "192.168.13.9/24", spare.tap)
    with pytest.raises(Conflict):
        dnb.attach_vm("bad", None, "node2", vm.mac, "192.168.13.9/24", spare.tap)
    with pytest.raises(InvalidRequest):
        dnb.attach_vm("bad", None, "node2", "02:00:00:00:ff:02", "192.168.13.9/24", "a" * 16)
    with pytest.raises(InvalidRequest):
        dnb.create_network(1, "toolongname")
    with pytest.raises(NotFound):
        dnb.attach_vm("bad", 7, "node2", "02:00:00:00:ff:03", "192.168.13.9/24", spare.tap)
    # a tap that does not exist on node2: OVS cannot open it; the half-built step is undone
    with pytest.raises(Conflict, match="did not come up"):
        dnb.attach_vm("bad", None, "node2", "02:00:00:00:ff:04", "192.168.13.9/24", "nosuchtap")
    assert env.snapshot() == before
    assert dnb.equations()["holds"]
    env.tb.remove_vm(spare)


def test_unreachable_node_is_refused_before_anything_changes() -> None:
    with NodeTestbed(2) as tb:
        dnb = DnbManager(ovsdb_timeout=2)
        try:
            for node in tb.nodes.values():
                dnb.add_node(**node.registration())
            with pytest.raises(NodeUnreachable):
                dnb.add_node("ghost", "unix:/nonexistent/db.sock", "10.123.0.99/24")
            dnb.create_network(1, "u")
            a = tb.add_vm("node1", "02:00:00:00:00:01", "192.168.1.1/24")
            b = tb.add_vm("node2", "02:00:00:00:00:02", "192.168.1.2/24")
            dnb.attach_vm("u", None, "node1", a.mac, str(a.ip), a.tap)
            before = dnb._db["node1"].snapshot()
            tb.nodes["node2"].ovs.stop(cleanup=False)  # its OVSDB goes away
            deadline = time.monotonic() + 5
            while dnb._db["node2"].connected and time.monotonic() < deadline:
                time.sleep(0.05)
            with pytest.raises(NodeUnreachable) as exc:
                dnb.attach_vm("u", None, "node2", b.mac, str(b.ip), b.tap)
            assert exc.value.http_status == 424
            assert dnb._db["node1"].snapshot() == before
            assert ("u", b.mac) not in dnb.intent.vms
        finally:
            dnb.close()
