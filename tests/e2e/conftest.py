"""One emulated fabric, one tenantvisor daemon and three tenants per test module.

alice and bob are the demo's tenants (ovs-testcontroller, identical host addresses, different
virtual topologies); carol's two vswitches connect to a controller the tests drive by hand,
to send what real controllers never do (forbidden actions, garbage, LLDP).
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import pytest

from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ofclient import ControllerListener, OFPeer
from tenantvisor.testbed.scenario import Layout, TenantRun, two_tenants, two_tier_layout

pytestmark = pytest.mark.root


@pytest.fixture(scope="session", autouse=True)
def _as_root() -> None:
    """Every module here builds namespaces and Open vSwitch bridges: said once, first."""
    if os.geteuid() != 0:
        pytest.fail("end-to-end tests need root (network namespaces, Open vSwitch)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None]:
    """A failed test shows the daemon's last log lines: CI keeps nothing else of a run."""
    report = yield
    env = getattr(item, "funcargs", {}).get("env")
    if report.when == "call" and report.failed and isinstance(env, Env):
        report.sections.append(("tenantvisor log (last 80 lines)", env.daemon.log_tail(80)))
    return report


RULE_LIMIT = 400  # per vswitch: far above what the tests' controllers install


@dataclass
class Env:
    fab: Fabric
    daemon: Daemon
    layout: Layout
    alice: TenantRun
    bob: TenantRun
    carol_token: str
    carol_net: int
    carol: dict[str, OFPeer]  # pswitch name -> the connection from carol's vswitch on it
    carol_vports: dict[str, dict[str, int]]  # pswitch name -> role -> vport number
    listener: ControllerListener


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    layout = two_tier_layout()
    listener = ControllerListener()
    try:
        with two_tenants(layout, daemon_args=["--max-rules-per-vswitch", str(RULE_LIMIT)]) as run:
            daemon, topo = run.daemon, layout.topo
            d = {n: s.dpid for n, s in topo.switches.items()}
            tok = daemon.rest("POST", "/v1/tenants", {"name": "carol"})["token"]
            url = f"tcp:127.0.0.1:{listener.port}"
            nid = daemon.rest("POST", "/v1/networks", {"controller_urls": [url]}, tok)["id"]
            vports: dict[str, dict[str, int]] = {"lf1": {}, "lf2": {}}
            vdpid = {}
            for sw in ("lf1", "lf2"):
                vdpid[sw] = daemon.rest(
                    "POST", f"/v1/networks/{nid}/switches", {"dpids": [d[sw]]}, tok
                )["vdpid"]
                vports[sw]["link"] = daemon.rest(
                    "POST", f"/v1/networks/{nid}/ports", {"dpid": d[sw], "port": 3}, tok
                )["number"]
            # carol's edge vport is the outsider's port: no host registered, it stays outside
            outsider = topo.hosts[layout.outsider]
            vports["lf1"]["edge"] = daemon.rest(
                "POST", f"/v1/networks/{nid}/ports",
                {"dpid": d["lf1"], "port": outsider.port}, tok,
            )["number"]  # fmt: skip
            daemon.rest(
                "POST",
                f"/v1/networks/{nid}/links",
                {
                    "src_vdpid": vdpid["lf1"],
                    "src_vport": vports["lf1"]["link"],
                    "dst_vdpid": vdpid["lf2"],
                    "dst_vport": vports["lf2"]["link"],
                },
                tok,
            )
            daemon.rest("POST", f"/v1/networks/{nid}/start", None, tok)
            by_dpid = {p.dpid: p for p in listener.accept(2)}
            carol = {sw: by_dpid[vdpid[sw]] for sw in ("lf1", "lf2")}
            yield Env(run.fab, daemon, layout, run.alice, run.bob, tok, nid, carol, vports,
                      listener)  # fmt: skip
    finally:
        listener.close()
