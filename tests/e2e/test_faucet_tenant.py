"""Faucet, unmodified and in its own virtualenv, as a tenant's controller through tenantvisor.

Fabric s1 - s2 - s3 (linear, two hosts each).  Tenant "fau": a line of three vswitches
(vs1 - vs2 - vs3) driven by Faucet, whose faucet.yaml uses the *virtual* dp_ids and port
numbers, VLAN trunks on the vlink ports and a native VLAN on the host ports.  Tenant "tst":
the same pswitches, hosts with the *same* MACs and IPs, a different tree (everything joined
at s3), driven by ovs-testcontroller.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenantvisor.testbed.controllers import TestController, free_tcp_port
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.faucet import FaucetConfig, FaucetController
from tenantvisor.testbed.scenario import rx_packets
from tenantvisor.testbed.topo import Topology, linear

pytestmark = pytest.mark.root
VID = 100


@dataclass
class FaucetEnv:
    fab: Fabric
    daemon: Daemon
    topo: Topology
    faucet: FaucetController
    fau_hosts: list[str]
    tst_hosts: list[str]
    vdpids: list[int]
    fau_net: int
    fau_host_ids: dict[str, int]


def _net(daemon: Daemon, token: str, url: str) -> int:
    return int(daemon.rest("POST", "/v1/networks", {"controller_urls": [url]}, token)["id"])


@pytest.fixture(scope="module")
def fenv() -> Iterator[FaucetEnv]:
    rundir = Path(tempfile.mkdtemp(prefix="tv-faucet-"))
    topo = linear(3, 2)
    for i in range(1, 4):  # h1/h2 on s1, h3/h4 on s2, h5/h6 on s3: pairs share MAC and IP
        for h in (f"h{2 * i - 1}", f"h{2 * i}"):
            topo.set_host_address(h, mac=f"02:00:00:00:00:0{i}", ipv4=f"10.0.0.{i}/24")
    fab = Fabric(topo)
    daemon: Daemon | None = None
    faucet: FaucetController | None = None
    tctl: TestController | None = None
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir, sock).start()
        fab.set_controller(sock)
        daemon.wait_for("3 pswitches, 4 link directions",
                        lambda st: len(st["pswitches"]) == 3 and st["links"] == 4)  # fmt: skip
        d = {n: s.dpid for n, s in topo.switches.items()}

        # tenant "fau": a line driven by Faucet
        tok = daemon.rest("POST", "/v1/tenants", {"name": "fau"})["token"]
        fport = free_tcp_port()
        nid = _net(daemon, tok, f"tcp:127.0.0.1:{fport}")
        cfg = FaucetConfig()
        cfg.add_vlan("office", VID)
        vdpid, vports = {}, {}
        for sw in ("s1", "s2", "s3"):
            vdpid[sw] = daemon.rest(
                "POST", f"/v1/networks/{nid}/switches", {"dpids": [d[sw]]}, tok
            )["vdpid"]

        def port(sw: str, p: int) -> int:
            return int(daemon.rest(
                "POST", f"/v1/networks/{nid}/ports", {"dpid": d[sw], "port": p}, tok
            )["number"])  # fmt: skip

        for sw in ("s1", "s2", "s3"):
            vports[sw] = {"host": port(sw, 1)}
        vports["s1"]["right"], vports["s2"]["left"] = port("s1", 3), port("s2", 3)
        vports["s2"]["right"], vports["s3"]["left"] = port("s2", 4), port("s3", 3)
        for a, b in (("s1", "s2"), ("s2", "s3")):
            daemon.rest("POST", f"/v1/networks/{nid}/links", {
                "src_vdpid": vdpid[a], "src_vport": vports[a]["right"],
                "dst_vdpid": vdpid[b], "dst_vport": vports[b]["left"]}, tok)  # fmt: skip
        hosts = {"s1": "h1", "s2": "h3", "s3": "h5"}
        host_ids = {}
        for sw, h in hosts.items():
            host_ids[h] = daemon.rest("POST", f"/v1/networks/{nid}/hosts", {
                "vdpid": vdpid[sw], "vport": vports[sw]["host"],
                "mac": topo.hosts[h].mac}, tok)["id"]  # fmt: skip
            dp = cfg.add_dp(f"v{sw}", vdpid[sw])
            for role, n in vports[sw].items():
                if role == "host":
                    dp.add_port(n, native_vlan="office")
                else:
                    dp.add_port(n, tagged_vlans=["office"])
        faucet = FaucetController(cfg, rundir / "faucet", port=fport).start()
        daemon.rest("POST", f"/v1/networks/{nid}/start", None, tok)

        # tenant "tst": everything joined at s3, ovs-testcontroller
        tok2 = daemon.rest("POST", "/v1/tenants", {"name": "tst"})["token"]
        tctl = TestController(free_tcp_port(), rundir / "tst")
        tctl.start()
        nid2 = _net(daemon, tok2, tctl.target)
        v2 = {sw: daemon.rest("POST", f"/v1/networks/{nid2}/switches", {"dpids": [d[sw]]},
                              tok2)["vdpid"] for sw in ("s1", "s2", "s3")}  # fmt: skip

        def port2(sw: str, p: int) -> int:
            return int(daemon.rest(
                "POST", f"/v1/networks/{nid2}/ports", {"dpid": d[sw], "port": p}, tok2
            )["number"])  # fmt: skip

        for sw, h in (("s1", "h2"), ("s2", "h4"), ("s3", "h6")):
            body = {"vdpid": v2[sw], "vport": port2(sw, 2), "mac": topo.hosts[h].mac}
            daemon.rest("POST", f"/v1/networks/{nid2}/hosts", body, tok2)
        for a, pa, pb in (("s1", 3, 3), ("s2", 4, 3)):  # s1 -> s3 crosses s2: two hops
            daemon.rest("POST", f"/v1/networks/{nid2}/links", {
                "src_vdpid": v2[a], "src_vport": port2(a, pa),
                "dst_vdpid": v2["s3"], "dst_vport": port2("s3", pb)}, tok2)  # fmt: skip
        daemon.rest("POST", f"/v1/networks/{nid2}/start", None, tok2)
        daemon.wait_for(
            "6 vswitches connected",
            lambda st: (
                len(st["vswitches"]) == 6
                and all(v["controllers_connected"] for v in st["vswitches"])
            ),
        )
        faucet.wait_connected(list(vdpid.values()))
        yield FaucetEnv(fab, daemon, topo, faucet, ["h1", "h3", "h5"], ["h2", "h4", "h6"],
                        list(vdpid.values()), nid, host_ids)  # fmt: skip
    finally:
        if faucet is not None:
            faucet.stop()
        if tctl is not None:
            tctl.stop()
        if daemon is not None:
            daemon.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)


def _pingall(env: FaucetEnv, names: list[str]) -> list[tuple[str, str]]:
    failed = []
    for s in names:
        for t in names:
            if s != t and not env.fab.host(s).ping(env.topo.hosts[t].ip, count=3, timeout=6):
                failed.append((s, t))
    return failed


def test_faucet_sees_its_virtual_switches_connected(fenv: FaucetEnv) -> None:
    assert fenv.faucet.connected_dps() == {v: True for v in fenv.vdpids}


def test_faucet_tenant_hosts_reach_each_other_over_vlan_trunks_on_vlinks(fenv: FaucetEnv) -> None:
    assert not _pingall(fenv, fenv.fau_hosts), fenv.faucet.log_tail()
    status = fenv.daemon.get("/v1/status").json()
    fau = [v for v in status["vswitches"] if v["vdpid"] in fenv.vdpids]
    assert all(v["flows"] >= 10 for v in fau)  # Faucet's multi-table pipeline is in place


def test_the_other_tenant_with_the_same_addresses_stays_isolated(fenv: FaucetEnv) -> None:
    before = {h: rx_packets(fenv.fab, h) for h in fenv.tst_hosts}
    assert not _pingall(fenv, fenv.fau_hosts)
    assert {h: rx_packets(fenv.fab, h) for h in fenv.tst_hosts} == before
    assert not _pingall(fenv, fenv.tst_hosts)


def test_a_faucet_tenants_host_moves_and_faucet_never_notices(fenv: FaucetEnv) -> None:
    """h1 (s1) is re-plugged onto a spare port of s2 and the admin tells the API: Faucet's
    hosts still reach each other over its VLAN trunks (its learned port for h1 is still the
    vport), and so do the other tenant's (h1's MAC and IP on s1); then home again.  (The
    other tenant's receive counters are not compared here: its hosts' own ARP refreshes
    for entries the earlier tests left move them.)"""
    path = f"/v1/networks/{fenv.fau_net}/hosts/{fenv.fau_host_ids['h1']}/move"
    for sw, port in (("s2", 9), ("s1", 1)):
        fenv.fab.move_host("h1", sw, port)
        dpid = fenv.topo.switches[sw].dpid
        deadline = time.monotonic() + 10
        while True:  # the daemon learns of the new port from the pswitch
            try:
                fenv.daemon.rest("POST", path, {"dpid": dpid, "port": port})
                break
            except Exception:
                assert time.monotonic() < deadline, fenv.daemon.log_tail(20)
                time.sleep(0.05)
        assert not _pingall(fenv, fenv.fau_hosts), fenv.faucet.log_tail()
    assert not _pingall(fenv, fenv.tst_hosts)
