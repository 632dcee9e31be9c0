"""Tests of the test bed itself: topologies, private OVS, fabric build/teardown, controllers.

The root tests build real namespaces and a private Open vSwitch; everything they create carries a
random prefix, and each test checks afterwards that nothing with that prefix is left.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from tenantvisor.testbed import netns as nx
from tenantvisor.testbed.controllers import TestController, free_tcp_port, tcp_listening
from tenantvisor.testbed.fabric import Fabric, FabricError, random_prefix
from tenantvisor.testbed.ovs import OvsError, OvsInstance, netdev_datapath_owner
from tenantvisor.testbed.topo import Topology, fat_tree, linear, two_tier

SYSTEM_OVS_DIRS = ("/var/run/openvswitch", "/run/openvswitch", "/etc/openvswitch",
                   "/var/lib/openvswitch", "/var/log/openvswitch")  # fmt: skip


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{entry.name}: {cmd}")
    return found


def leftovers(prefix: str) -> list[str]:
    """Namespaces, root-namespace interfaces and processes that still carry ``prefix``."""
    left = [f"netns {n}" for n in nx.list_netns() if n.startswith(prefix)]
    left += [f"link {n}" for n in nx.list_links() if n.startswith(prefix)]
    left += [f"process {p}" for p in _processes_mentioning(f"/{prefix}")]
    return left


def _system_ovsdb_running() -> bool:
    for pidfile in ("/var/run/openvswitch/ovsdb-server.pid", "/run/openvswitch/ovsdb-server.pid"):
        try:
            pid = int(Path(pidfile).read_text().strip())
        except (OSError, ValueError):
            continue
        if os.path.exists(f"/proc/{pid}"):
            return True
    return False


def snapshot_system_ovs() -> dict[str, tuple[int, float]]:
    """Files of the system OVS directories: name -> (size, mtime).

    Sizes and mtimes are only meaningful when no system OVS daemon runs (a live one rewrites
    its database and logs by itself); names are compared in every case.
    """
    live = _system_ovsdb_running()
    snap: dict[str, tuple[int, float]] = {}
    for d in SYSTEM_OVS_DIRS:
        if not os.path.isdir(d):
            snap[d] = (-1, 0.0)
            continue
        for root, _dirs, files in os.walk(d):
            for name in files:
                p = os.path.join(root, name)
                try:
                    st = os.stat(p)
                except OSError:
                    continue
                snap[p] = (0, 0.0) if live else (st.st_size, st.st_mtime)
    return snap


# --- pure topology tests -------------------------------------------------------------------------
def test_fat_tree_k4_shape() -> None:
    topo = fat_tree(4)
    topo.validate()
    assert len(topo.switches) == 20
    assert len(topo.hosts) == 16
    assert len(topo.links) == 32
    layers = Counter(name[0] for name in topo.switches)
    assert layers == {"c": 4, "a": 8, "e": 8}
    assert [s.dpid for s in topo.switches.values()] == list(range(1, 21))
    # Every core reaches every pod once; every aggregation switch has k=4 links; edges 2 up.
    degree = Counter[str]()
    for lk in topo.links:
        degree[lk.a] += 1
        degree[lk.b] += 1
    assert all(degree[f"c{i}"] == 4 for i in range(1, 5))
    assert all(degree[f"a{i}"] == 4 for i in range(1, 9))
    assert all(degree[f"e{i}"] == 2 for i in range(1, 9))
    assert all(len(topo.ports(f"e{i}")) == 4 for i in range(1, 9))
    # Documented port scheme: e1 hosts on 1-2, aggregation a1 on 3, a2 on 4; a1 cores on 3-4.
    assert topo.ports("e1") == {1: "host h1", 2: "host h2", 3: "link to a1", 4: "link to a2"}
    assert topo.ports("a1") == {1: "link to e1", 2: "link to e2", 3: "link to c1", 4: "link to c2"}
    assert topo.ports("c1") == {p: f"link to a{2 * p - 1}" for p in range(1, 5)}
    # Default addresses are unique.
    assert len({h.mac for h in topo.hosts.values()}) == 16
    assert len({h.ip for h in topo.hosts.values()}) == 16
    assert topo.host("h1").mac == "00:00:00:00:00:01"
    assert topo.host("h16").ipv4 == "10.0.0.16/8"


def test_linear_and_two_tier_ports() -> None:
    lin = linear(3, 2)
    assert lin.ports("s1") == {1: "host h1", 2: "host h2", 3: "link to s2"}
    assert lin.ports("s2") == {1: "host h3", 2: "host h4", 3: "link to s1", 4: "link to s3"}
    assert lin.ports("s3") == {1: "host h5", 2: "host h6", 3: "link to s2"}
    tt = two_tier(2, 3, 1)
    assert [s.dpid for s in tt.switches.values()] == [1, 2, 3, 4, 5]
    assert len(tt.links) == 6  # every leaf to every spine
    assert tt.ports("lf2") == {1: "host h2", 2: "link to sp1", 3: "link to sp2"}
    assert tt.ports("sp2") == {1: "link to lf1", 2: "link to lf2", 3: "link to lf3"}


def test_host_address_override_allows_duplicates() -> None:
    topo = linear(2, 1)
    topo.set_host_address("h2", mac="00:00:00:00:00:01", ipv4="10.0.0.1/8")
    topo.validate()
    assert topo.host("h1").mac == topo.host("h2").mac
    assert topo.host("h1").ipv4 == topo.host("h2").ipv4
    with pytest.raises(ValueError, match="prefix"):
        topo.set_host_address("h2", ipv4="10.0.0.1")
    with pytest.raises(ValueError, match="already used"):
        topo.add_host("h3", "s1", 1)


def test_topology_rejects_clashes() -> None:
    topo = Topology()
    topo.add_switch("s1")
    topo.add_switch("s2")
    with pytest.raises(ValueError, match="dpid"):
        topo.add_switch("s3", dpid=2)
    topo.add_link("s1", "s2", 1, 1)
    with pytest.raises(ValueError, match="already used"):
        topo.add_link("s1", "s2", 1, 2)
    assert topo.next_free_port("s2") == 2


def test_free_tcp_port() -> None:
    port = free_tcp_port()
    assert 0 < port < 65536
    assert not tcp_listening(port)


def test_dummy_ovs_trace(tmp_path: Path) -> None:
    """Flow-table-only instance (no datapath): ofctl flows + ofproto/trace."""
    with OvsInstance(tmp_path / "ovs", dummy=True) as ovs:
        ovs.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev",
                  "protocols=OpenFlow13", "fail_mode=secure",
                  "--", "add-port", "br0", "p1", "--", "set", "Interface", "p1", "type=dummy",
                  "ofport_request=1",
                  "--", "add-port", "br0", "p2", "--", "set", "Interface", "p2", "type=dummy",
                  "ofport_request=2")  # fmt: skip
        qinq = (
            "in_port=1,actions=push_vlan:0x88a8,set_field:4101->vlan_vid,"
            "push_vlan:0x8100,set_field:4102->vlan_vid,output:2"
        )
        ovs.ofctl("-O", "OpenFlow13", "add-flow", "br0", qinq)
        out = ovs.trace("br0", "in_port=1,dl_dst=00:00:00:00:00:02")
        assert "output:2" in out
        assert "dl_vlan=6" in out and "dl_vlan1=5" in out  # both tags in the final flow
        assert "push_vlan(tpid=0x88a8,vid=5,pcp=0),push_vlan(vid=6,pcp=0),2" in out
        # vlan-limit=0 (set by start): vswitchd parses every VLAN header, QinQ needs both.
        assert ovs.vsctl("get", "Open_vSwitch", ".", "other_config:vlan-limit").strip() == '"0"'
    assert not ovs.running


# --- root tests ----------------------------------------------------------------------------------
@pytest.mark.root
def test_ovs_instance_private(tmp_path: Path) -> None:
    """vsctl show works; every file lives in the run dir; the system OVS is untouched."""
    before = snapshot_system_ovs()
    rundir = tmp_path / "ovs"
    # No bridge is created, so another vswitchd owning this namespace's datapath is no obstacle.
    ovs = OvsInstance(rundir, check_datapath=False)
    with ovs:
        assert ovs.running
        show = ovs.vsctl("show")
        uuid = ovs.vsctl("get", "Open_vSwitch", ".", "_uuid").strip()
        assert uuid in show
        assert ovs.appctl("version").startswith("ovs-vswitchd")
        names = {p.name for p in rundir.iterdir()}
        assert {"conf.db", "db.sock", "ovs-vswitchd.ctl", "ovsdb-server.ctl", "ovs-vswitchd.pid",
                "ovsdb-server.pid", "ovs-vswitchd.log", "ovsdb-server.log"} <= names  # fmt: skip
        procs = _processes_mentioning(str(rundir))
        assert len(procs) == 2, procs
    assert not ovs.running
    assert _processes_mentioning(str(rundir)) == []
    ovs.stop()  # idempotent
    with pytest.raises(nx.CommandError, match="ovs-vsctl"):
        ovs.vsctl("--timeout=1", "show", timeout=2)
    assert snapshot_system_ovs() == before


@pytest.mark.root
def test_ovs_instance_refuses_taken_datapath(tmp_path: Path) -> None:
    """A second userspace vswitchd in one namespace is refused before it fails obscurely."""
    ns = random_prefix() + "ovs"
    nx.add_netns(ns)
    try:
        with OvsInstance(tmp_path / "a", netns=ns) as first:
            first.vsctl("add-br", "br0", "--", "set", "Bridge", "br0", "datapath_type=netdev")
            owner = netdev_datapath_owner(ns)
            assert owner is not None
            with pytest.raises(OvsError, match="already owns"):
                OvsInstance(tmp_path / "b", netns=ns).start()
            assert _processes_mentioning(str(tmp_path / "b")) == []
        assert netdev_datapath_owner(ns) is None
        assert not nx.link_exists("ovs-netdev", ns)  # exit --cleanup took the taps along
    finally:
        nx.delete_netns(ns)


@pytest.mark.root
def test_linear_fabric_normal_ping() -> None:
    fab = Fabric(linear(2, 1))
    prefix = fab.prefix
    try:
        fab.build()
        assert fab.ovs is not None
        for sw in fab.topo.switches:
            fab.ovs.ofctl("-O", "OpenFlow13", "add-flow", fab.bridge(sw), "actions=NORMAL")
        h1, h2 = fab.host("h1"), fab.host("h2")
        assert h1.ping(h2.ip, count=2, timeout=10)
        assert h2.ping(h1.ip)

        # The bridges are configured as specified.
        br = fab.bridge("s2")
        assert fab.ovs.vsctl("get", "Bridge", br, "fail_mode").strip() == "secure"
        assert fab.ovs.vsctl("get", "Bridge", br, "datapath_type").strip() == "netdev"
        assert fab.ovs.vsctl("get", "Bridge", br, "protocols").strip() == "[OpenFlow13]"
        assert fab.ovs.vsctl("get", "Bridge", br, "datapath_id").strip() == '"0000000000000002"'
        other = fab.ovs.vsctl("get", "Bridge", br, "other_config")
        assert 'disable-in-band="true"' in other
        ports = json.loads(
            fab.ovs.vsctl("--format=json", "--columns=name,ofport,mtu", "list", "Interface")
        )["data"]
        by_name = {name: (ofport, mtu) for name, ofport, mtu in ports}
        assert by_name[fab.port_ifname("s1", 2)] == (2, 1600)  # fabric link
        assert by_name[fab.port_ifname("s1", 1)] == (1, 1500)  # host port

        # Host side: eth0 with the topology's MAC/IP, MTU 1500, no IPv6, tx offload off.
        link = h1.exec(["ip", "-o", "link", "show", "eth0"]).stdout
        assert "mtu 1500" in link and "00:00:00:00:00:01" in link
        addrs = h1.exec(["ip", "-o", "addr", "show"]).stdout
        assert "10.0.0.1/8" in addrs and "inet6" not in addrs
        feats = h1.exec(["ethtool", "-k", "eth0"]).stdout
        assert "tx-checksumming: off" in feats
        assert all(len(n) <= 15 and n.startswith(prefix) for n in fab.all_names())
    finally:
        fab.close()
    assert leftovers(prefix) == []
    fab.close()  # idempotent


@pytest.mark.root
def test_fabric_cleans_up_after_failed_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build that fails half way (here: at the second bridge) leaves nothing behind."""
    fab = Fabric(linear(3, 1))
    calls = []
    real = Fabric._make_bridge

    def failing(self: Fabric, switch: str) -> None:
        calls.append(switch)
        if len(calls) == 2:
            raise RuntimeError("injected failure")
        real(self, switch)

    monkeypatch.setattr(Fabric, "_make_bridge", failing)
    with pytest.raises(RuntimeError, match="injected"):
        fab.build()
    assert leftovers(fab.prefix) == []
    with pytest.raises(FabricError, match="closed"):
        fab.build()


@pytest.mark.root
def test_fabric_refuses_existing_names() -> None:
    """Names already present on the machine are not reused, and not deleted either."""
    prefix = random_prefix()
    squatter = f"{prefix}h1"
    nx.add_netns(squatter)
    try:
        with pytest.raises(FabricError, match="already in use"):
            Fabric(linear(1, 1), prefix=prefix).build()
        assert nx.netns_exists(squatter)
    finally:
        nx.delete_netns(squatter)
    assert leftovers(prefix) == []


@pytest.mark.root
def test_fabric_in_root_namespace() -> None:
    """switch_netns=False: works unless a live vswitchd owns the root namespace's datapath, in
    which case it must fail clearly and leave nothing behind."""
    fab = Fabric(linear(2, 1), switch_netns=False)
    if netdev_datapath_owner(None) is not None:
        with pytest.raises(OvsError, match="already owns"):
            fab.build()
    else:
        with fab:
            for sw in fab.topo.switches:
                fab.ofctl(sw, "add-flow", "actions=NORMAL")
            assert nx.link_exists(fab.port_ifname("s1", 2))  # veths are in the root namespace
            assert fab.host("h1").ping(fab.host("h2").ip, timeout=10)
    assert leftovers(fab.prefix) == []


@pytest.mark.root
@pytest.mark.parametrize("version", ["OpenFlow13", "OpenFlow10"])
def test_testcontroller_through_fabric(tmp_path: Path, version: str) -> None:
    """ovs-testcontroller (learning switch) drives a 3-switch chain; the bridges live in their
    own namespace and reach 127.0.0.1 through the fabric's relay.  OpenFlow10 also checks the
    per-switch protocol restriction."""
    port = free_tcp_port()
    topo = linear(3, 1)
    protocols = dict.fromkeys(topo.switches, version)
    with TestController(port, tmp_path, version=version) as ctl:
        assert tcp_listening(port)
        with Fabric(topo, controller=ctl.target, protocols=protocols) as fab:
            assert fab.ovs is not None
            got = fab.ovs.vsctl("get", "Bridge", fab.bridge("s1"), "protocols").strip()
            assert got == f"[{version}]"
            # Before the first packet: with OF1.0 a drop cached while unconnected would stick.
            fab.wait_connected(timeout=20)
            h1, h3 = fab.host("h1"), fab.host("h3")
            assert h1.ping(h3.ip, count=3, timeout=15), ctl.log_tail()
            # The learning switch installed flows on the middle switch: it is connected.
            assert "actions=output" in fab.ofctl("s2", "dump-flows")
            prefix = fab.prefix
        assert leftovers(prefix) == []
    assert not ctl.running
    ctl.stop()  # idempotent


@pytest.mark.root
def test_host_popen_is_reaped_on_close() -> None:
    with Fabric(linear(1, 1)) as fab:
        proc = fab.host("h1").popen(["sleep", "60"])
        prefix = fab.prefix
    assert proc.poll() is not None
    assert leftovers(prefix) == []


def test_prefix_and_name_lengths() -> None:
    fab = Fabric(fat_tree(4), prefix="tvabcd")
    names = fab.all_names()
    assert len(names) == len(set(names))
    assert all(len(n) <= 15 for n in names)
    assert fab.bridge("c1") == "tvabcdc1"
    assert fab.port_ifname("e8", 4) == "tvabcde8p4"
    with pytest.raises(ValueError, match="prefix"):
        Fabric(linear(1, 1), prefix="this-is-too-long")


@pytest.mark.root
def test_ovs_instance_adopts_stale_datapath(tmp_path: Path) -> None:
    """A vswitchd killed without cleanup leaves a persistent ``ovs-netdev`` tap.  The next
    instance re-attaches it, and on stop deletes only its own bridge taps, not the stale one."""
    ns = random_prefix() + "ovs"
    nx.add_netns(ns)
    try:
        first = OvsInstance(tmp_path / "a", netns=ns).start()
        first.vsctl("add-br", "bra", "--", "set", "Bridge", "bra", "datapath_type=netdev")
        first.stop(cleanup=False)  # like a SIGTERM/SIGKILL: taps stay behind
        assert nx.link_exists("ovs-netdev", ns) and nx.link_exists("bra", ns)
        assert netdev_datapath_owner(ns) is None
        with OvsInstance(tmp_path / "b", netns=ns) as second:
            second.vsctl("add-br", "brb", "--", "set", "Bridge", "brb", "datapath_type=netdev")
            assert netdev_datapath_owner(ns) is not None
        assert nx.link_exists("ovs-netdev", ns) and nx.link_exists("bra", ns)
        assert not nx.link_exists("brb", ns)
    finally:
        nx.delete_netns(ns)


@pytest.mark.root
def test_fat_tree_fabric_builds() -> None:
    """The 20-switch fabric the benchmarks use: every bridge, dpid and port as described."""
    topo = fat_tree(4)
    with Fabric(topo) as fab:
        assert fab.ovs is not None
        bridges = fab.ovs.vsctl("list-br").split()
        assert sorted(bridges) == sorted(fab.bridge(s) for s in topo.switches)
        rows = json.loads(
            fab.ovs.vsctl("--format=json", "--columns=name,datapath_id", "list", "Bridge")
        )["data"]
        dpids = {name: int(dpid, 16) for name, dpid in rows}
        assert all(dpids[fab.bridge(s.name)] == s.dpid for s in topo.switches.values())
        ports = fab.ofctl("c1", "dump-ports-desc")
        assert all(f"{p}({fab.port_ifname('c1', p)})" in ports for p in range(1, 5))
        prefix = fab.prefix
        assert fab.timings["build"] < 60
    assert leftovers(prefix) == []
