"""The daemon finds the pswitch that does not parse a tenant's VLAN tag inside the fabric
tag (Open vSwitch left at its default other_config:vlan-limit=1) and says so.

`vlan-limit` belongs to a whole ovs-vswitchd, and the testbed's fabric runs one for all its
bridges (with vlan-limit=0), so the odd switch out is a second Open vSwitch instance in a
namespace of its own, cabled to s2 of a two-switch fabric:

    s1 (dpid 1) --- s2 (dpid 2) --- s3 (dpid 3, vlan-limit left at 1)
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tenantvisor.physical.links import QINQ_ADVICE
from tenantvisor.testbed import netns as nx
from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.ovs import OvsInstance
from tenantvisor.testbed.topo import linear

pytestmark = pytest.mark.root

ODD_DPID = 3
ODD_PORT_ON_S2 = 9  # linear(2, 1): s2 uses ports 1 (host) and 2 (s1)


def _qinq(daemon: Daemon) -> dict[int, Any]:
    sws = daemon.get("/v1/physical/topology").json()["switches"]
    return {s["dpid"]: s["qinq_ok"] for s in sws}


def _wait_qinq(daemon: Daemon, want: dict[int, bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    got = _qinq(daemon)
    while got != want and time.monotonic() < deadline:
        time.sleep(0.2)
        got = _qinq(daemon)
    assert got == want, daemon.log_tail()


def test_a_pswitch_at_the_default_vlan_limit_is_reported() -> None:
    rundir = Path(tempfile.mkdtemp(prefix="tv-qinq-"))
    fab = Fabric(linear(2, 1))
    odd_ns = fab.prefix + "q"
    odd_br, s2_end, odd_end = fab.prefix + "q3", fab.prefix + "qa", fab.prefix + "qb"
    odd: OvsInstance | None = None
    daemon: Daemon | None = None
    try:
        fab.build()
        assert fab.ovs is not None and fab.switch_netns is not None
        # the odd switch: its own namespace and vswitchd, at OVS's default vlan-limit
        nx.add_netns(odd_ns)
        nx.disable_ipv6_netns(odd_ns)
        nx.add_veth(s2_end, odd_end, mtu=fab.fabric_mtu, netns=fab.switch_netns,
                    peer_netns=odd_ns)  # fmt: skip
        nx.set_up(s2_end, fab.switch_netns)
        nx.set_up(odd_end, odd_ns)
        fab.ovs.vsctl(
            "add-port", fab.bridge("s2"), s2_end, "--", "set", "Interface", s2_end,
            f"ofport_request={ODD_PORT_ON_S2}", f"mtu_request={fab.fabric_mtu}",
        )  # fmt: skip
        odd = OvsInstance(rundir / "odd", netns=odd_ns, vlan_limit=None).start()
        assert odd.vsctl("get", "Open_vSwitch", ".", "other_config").strip() == "{}"
        odd.vsctl(
            "add-br", odd_br, "--", "set", "Bridge", odd_br, "datapath_type=netdev",
            "protocols=OpenFlow13", "fail_mode=secure", "other-config:disable-in-band=true",
            f"other-config:datapath-id={ODD_DPID:016x}",
            "--", "add-port", odd_br, odd_end, "--", "set", "Interface", odd_end,
            "ofport_request=1", f"mtu_request={fab.fabric_mtu}",
        )  # fmt: skip

        sock_path = fab.ovs.rundir / "tenantvisor.sock"
        daemon = Daemon(rundir / "daemon", f"unix:{sock_path}", lldp_interval=0.3).start()
        fab.set_controller(f"unix:{sock_path}")
        # vswitchd connects only to Unix sockets inside its own rundir: a link to the daemon's
        (odd.rundir / "tenantvisor.sock").symlink_to(sock_path)
        odd.vsctl("set-controller", odd_br, f"unix:{odd.rundir}/tenantvisor.sock")
        daemon.wait_for("the links", lambda st: st["links"] == 4)

        _wait_qinq(daemon, {1: True, 2: True, ODD_DPID: False})
        warnings = [ln for ln in daemon.log_text().splitlines() if "vlan-limit" in ln]
        assert len(warnings) == 1, warnings
        assert f"pswitch {ODD_DPID:016x}" in warnings[0] and QINQ_ADVICE in warnings[0]
        links = daemon.get("/v1/physical/topology").json()["links"]
        assert [lk["mtu_ok"] for lk in links] == [True] * 4  # only the parser is at fault

        # the operator follows the advice: the next probes say so, without a restart
        odd.vsctl("set", "Open_vSwitch", ".", "other_config:vlan-limit=2")
        _wait_qinq(daemon, {1: True, 2: True, ODD_DPID: True})
        assert f"pswitch {ODD_DPID:016x} now parses VLAN tags" in daemon.log_text()
    finally:
        if daemon is not None:
            daemon.stop()
        if odd is not None:
            odd.stop()
        nx.delete_netns(odd_ns)  # takes the odd switch's veth, and so its peer on s2
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)
