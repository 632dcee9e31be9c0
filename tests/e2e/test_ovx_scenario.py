"""An OpenVirteX user's script, end to end: big switches and protected vlinks over JSON-RPC.

Ring of six pswitches, two hosts on each (ports 1 and 2; port 3 toward the next switch, 4
toward the previous).  Two tenants, both over OVX's JSON-RPC with OVX's parameter names,
each driven by an unmodified ovs-testcontroller, with identical host MACs and addresses:

* each has a big switch over s1 and s2 (OVX's createSwitch with two dpids) holding the
  hosts of s1 and s2, and a vswitch on s4 holding the host of s4;
* a vlink (connectLink, spf, backup_num 1) joins the big switch's port on s2 toward s3 and
  the s4 vswitch's port toward s3: primary s2-s3-s4, backup around the other side.

Everything reaches everything inside each tenant, nothing crosses, and cutting s3-s4 keeps
the tenant's traffic flowing over the backup with no PORT_STATUS to its controller.
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
from tenantvisor.testbed.scenario import rx_packets, wait_physical
from tenantvisor.testbed.topo import Topology, ring

pytestmark = pytest.mark.root


@dataclass
class Ovx:
    fab: Fabric
    daemon: Daemon
    topo: Topology
    hosts: dict[str, list[str]]  # tenant -> its hosts
    tenant_ids: dict[str, int]
    tokens: dict[str, str]


def _build_tenant(
    daemon: Daemon, topo: Topology, name: str, port: int, ctl: TestController
) -> tuple[str, int, list[str]]:
    """One tenant's network through OVX calls; its hosts are those on `port` of s1, s2, s4."""
    tok = daemon.rest("POST", "/v1/tenants", {"name": name})["token"]
    rpc = lambda m, params: daemon.rpc("tenant", m, params, tok)  # noqa: E731
    tid = rpc("createNetwork", {"controllerUrls": [f"tcp:127.0.0.1:{ctl.port}"],
                                "networkAddress": "10.0.0.0", "mask": 24})["tenantId"]  # fmt: skip
    dp = {n: s.dpid for n, s in topo.switches.items()}
    big = rpc("createSwitch", {"tenantId": tid, "dpids": [dp["s1"], dp["s2"]]})["vdpid"]
    small = rpc("createSwitch", {"tenantId": tid, "dpids": [dp["s4"]]})["vdpid"]
    hosts = []
    for sw, vdpid in (("s1", big), ("s2", big), ("s4", small)):
        h = next(h for h in topo.hosts.values() if h.switch == sw and h.port == port)
        vp = rpc("createPort", {"tenantId": tid, "dpid": dp[sw], "port": port})["vport"]
        rpc("connectHost", {"tenantId": tid, "vdpid": vdpid, "vport": vp, "mac": h.mac})
        hosts.append(h.name)
    a = rpc("createPort", {"tenantId": tid, "dpid": dp["s2"], "port": 3})["vport"]
    b = rpc("createPort", {"tenantId": tid, "dpid": dp["s4"], "port": 4})["vport"]
    link = rpc("connectLink", {"tenantId": tid, "srcDpid": big, "srcPort": a, "dstDpid": small,
                               "dstPort": b, "algorithm": "spf", "backup_num": 1})  # fmt: skip
    assert link["backup_num"] == 1
    rpc("startNetwork", {"tenantId": tid})
    return tok, tid, hosts


@pytest.fixture(scope="module")
def ovx() -> Iterator[Ovx]:
    topo = ring(6, 2)
    for i, h in enumerate(sorted(topo.hosts.values(), key=lambda h: (h.switch, h.port))):
        n = i // 2 + 1  # the two hosts of a switch share MAC and address: one per tenant
        topo.set_host_address(h.name, mac=f"02:00:00:00:00:{n:02x}", ipv4=f"10.0.0.{n}/24")
    rundir = Path(tempfile.mkdtemp(prefix="tv-ovx-"))
    fab = Fabric(topo)
    daemon: Daemon | None = None
    ctls: list[TestController] = []
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir, sock).start()
        fab.set_controller(sock)
        wait_physical(daemon, topo)
        hosts, tids, toks = {}, {}, {}
        for name, port in (("ann", 1), ("ben", 2)):
            ctl = TestController(free_tcp_port(), rundir / f"ctl-{name}")
            ctls.append(ctl)
            ctl.start()
            toks[name], tids[name], hosts[name] = _build_tenant(daemon, topo, name, port, ctl)
        yield Ovx(fab, daemon, topo, hosts, tids, toks)
    finally:
        if daemon is not None:
            daemon.stop()
        for c in ctls:
            c.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)


def _reach(fab: Fabric, src: str, dst: str) -> bool:
    return fab.host(src).ping(fab.host(dst).ip, count=1, timeout=6.0)


def test_every_host_of_a_tenant_reaches_every_other(ovx: Ovx) -> None:
    for tenant, hosts in ovx.hosts.items():
        for src in hosts:
            for dst in hosts:
                if src != dst:
                    assert _reach(ovx.fab, src, dst), f"{tenant}: {src} -> {dst}"


def test_the_ovx_status_api_shows_the_big_switch_and_the_vlink_paths(ovx: Ovx) -> None:
    tok, tid = ovx.tokens["ann"], ovx.tenant_ids["ann"]
    mapping = ovx.daemon.rpc("status", "getVirtualSwitchMapping", {"tenantId": tid}, tok)
    assert sorted(len(v["switches"]) for v in mapping.values()) == [1, 2]
    links = ovx.daemon.rpc("status", "getVirtualLinkMapping", {"tenantId": tid}, tok)
    assert len(links) == 1


def test_tenants_with_the_same_addresses_stay_apart(ovx: Ovx) -> None:
    ann, ben = ovx.hosts["ann"], ovx.hosts["ben"]
    before = [rx_packets(ovx.fab, h) for h in ben]
    for dst in ann[1:]:
        assert _reach(ovx.fab, ann[0], dst)
    assert [rx_packets(ovx.fab, h) for h in ben] == before


def test_a_cut_on_the_vlinks_primary_path_keeps_both_tenants_connected(ovx: Ovx) -> None:
    fab = ovx.fab
    ovx.fab.set_link_state("s3", "s4", False)
    try:
        time.sleep(0.5)
        for tenant in ("ann", "ben"):
            h1, _, h4 = ovx.hosts[tenant]
            assert _reach(fab, h1, h4), f"{tenant}: no way around the cut"
            assert _reach(fab, h4, h1), f"{tenant}: no way back around the cut"
    finally:
        ovx.fab.set_link_state("s3", "s4", True)
    time.sleep(2.5)  # the link is rediscovered; the primary is used again
    for tenant in ("ann", "ben"):
        h1, _, h4 = ovx.hosts[tenant]
        assert _reach(fab, h1, h4)
