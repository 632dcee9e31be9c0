"""Big switches end to end: one vswitch over four pswitches, hosts on three of them.

Two tenants, each with a big switch over the three leaves and one spine of a leaf-spine
fabric (alice over spine 1, bob over spine 2), identical host MACs and addresses, each driven
by an unmodified ovs-testcontroller that believes it runs one switch.  Hosts of one tenant
reach each other across the internal routes; nothing reaches the other tenant.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tenantvisor.testbed.controllers import TestController, free_tcp_port
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.scenario import Layout, rx_packets, two_tier_layout, wait_physical

pytestmark = pytest.mark.root


@dataclass
class BigEnv:
    fab: Fabric
    daemon: Daemon
    layout: Layout
    nets: dict[str, tuple[str, int, int]]  # tenant -> (token, network id, vdpid)
    hosts: dict[str, list[str]]  # tenant -> host names
    controllers: dict[str, TestController]


def _tenant(
    daemon: Daemon, layout: Layout, name: str, spine: str, which: str, ctl: TestController
) -> tuple[str, int, int, list[str]]:
    topo = layout.topo
    dpid = {n: s.dpid for n, s in topo.switches.items()}
    tok = daemon.rest("POST", "/v1/tenants", {"name": name})["token"]
    url = f"tcp:127.0.0.1:{ctl.port}"
    nid = daemon.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
    dpids = [dpid[e.switch] for e in layout.edges] + [dpid[spine]]
    sw = daemon.rest("POST", f"/v1/networks/{nid}/switches", {"dpids": dpids}, tok)
    hosts = []
    for e in layout.edges:
        hname = e.host_a if which == "a" else e.host_b
        h = topo.hosts[hname]
        vp = daemon.rest(
            "POST", f"/v1/networks/{nid}/ports",
            {"dpid": dpid[e.switch], "port": h.port, "vdpid": sw["vdpid"]}, tok,
        )  # fmt: skip
        daemon.rest(
            "POST", f"/v1/networks/{nid}/hosts",
            {"vdpid": sw["vdpid"], "vport": vp["number"], "mac": h.mac}, tok,
        )  # fmt: skip
        hosts.append(hname)
    daemon.rest("POST", f"/v1/networks/{nid}/start", None, tok)
    return tok, nid, sw["vdpid"], hosts


@pytest.fixture(scope="module")
def big() -> Iterator[BigEnv]:
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (network namespaces, Open vSwitch)")
    layout = two_tier_layout()
    rundir = Path(tempfile.mkdtemp(prefix="tv-big-"))
    fab = Fabric(layout.topo)
    daemon: Daemon | None = None
    ctls: dict[str, TestController] = {}
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir, sock).start()
        fab.set_controller(sock)
        wait_physical(daemon, layout.topo)
        nets, hosts = {}, {}
        for name, spine, which in (("alice", "sp1", "a"), ("bob", "sp2", "b")):
            ctls[name] = TestController(free_tcp_port(), rundir / f"ctl-{name}")
            ctls[name].start()
            tok, nid, vdpid, hs = _tenant(daemon, layout, name, spine, which, ctls[name])
            nets[name] = (tok, nid, vdpid)
            hosts[name] = hs
        yield BigEnv(fab, daemon, layout, nets, hosts, ctls)
    finally:
        if daemon is not None:
            daemon.stop()
        for c in ctls.values():
            c.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)


def _ping_ok(fab: Fabric, src: str, dst: str, tries: int = 4) -> bool:
    ip = fab.host(dst).ip
    return any(fab.host(src).ping(ip, count=1, timeout=2.0) for _ in range(tries))


def _tables(big: BigEnv) -> str:
    """What the pswitches hold, for a failure message."""
    out = []
    for sw in ("lf1", "lf2", "sp1"):
        out.append(f"--- {sw}")
        out.append(big.fab.ofctl(sw, "dump-flows"))
        out.append(big.fab.ofctl(sw, "dump-groups"))
    return "\n".join(out) + "\n--- log\n" + big.daemon.log_tail(40)


def test_hosts_on_three_pswitches_of_one_big_switch_reach_each_other(big: BigEnv) -> None:
    for tenant in ("alice", "bob"):
        hs = big.hosts[tenant]
        for src in hs:
            for dst in hs:
                if src != dst:
                    assert _ping_ok(big.fab, src, dst), f"{tenant}: {src} -> {dst}\n{_tables(big)}"


def test_the_tenant_controller_sees_one_switch_with_every_vport(big: BigEnv) -> None:
    for tenant, (tok, nid, vdpid) in big.nets.items():
        net = big.daemon.rest("GET", f"/v1/networks/{nid}", None, tok)
        (sw,) = net["switches"]
        assert sw["vdpid"] == vdpid
        assert len(sw["dpids"]) == 4, tenant
        assert len(sw["ports"]) == 3, tenant
    status = big.daemon.rest("GET", "/v1/status", None, big.daemon.admin_token)
    mine = [v for v in status["vswitches"] if v["vdpid"] in {n[2] for n in big.nets.values()}]
    assert len(mine) == 2
    assert all(v["controllers_connected"] == 1 and len(v["dpids"]) == 4 for v in mine)


def test_big_switches_of_two_tenants_with_the_same_addresses_stay_apart(big: BigEnv) -> None:
    """alice's h1 and bob's h2 share MAC and IP; each tenant's ping must reach only its own
    host, so the other tenant's twin receives nothing."""
    fab = big.fab
    a_src, a_dst = big.hosts["alice"][0], big.hosts["alice"][2]
    b_twin = big.hosts["bob"][2]
    before = rx_packets(fab, b_twin)
    assert _ping_ok(fab, a_src, a_dst)
    for _ in range(5):
        fab.host(a_src).ping(fab.host(a_dst).ip, count=1, timeout=1.0)
    assert rx_packets(fab, b_twin) == before, "alice's pings reached bob's twin host"


def test_each_big_switch_routes_through_its_own_spine_only(big: BigEnv) -> None:
    """alice's big switch spans sp1, bob's sp2: internal routes stay inside each switch's
    own pswitches, so sp1 carries only alice's network and sp2 only bob's."""
    nets = {name: nid for name, (_, nid, _) in big.nets.items()}

    def networks_on(sw: str) -> set[int]:
        found = set()
        for line in big.fab.ofctl(sw, "dump-flows").splitlines():
            if "cookie=" in line:
                cookie = int(line.split("cookie=")[1].split(",")[0], 16)
                if cookie >> 48:
                    found.add(cookie >> 48)
        return found

    assert networks_on("sp1") == {nets["alice"]}
    assert networks_on("sp2") == {nets["bob"]}
