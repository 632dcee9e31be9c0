"""The daemon measures whether fabric links carry full-size tagged frames, and says so."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tenantvisor.testbed.daemon import Daemon
from tenantvisor.testbed.fabric import Fabric
from tenantvisor.testbed.topo import linear

pytestmark = pytest.mark.root


@pytest.mark.parametrize(("mtu", "ok"), [(1500, False), (1600, True)])
def test_links_too_small_for_the_fabric_tag_are_reported(mtu: int, ok: bool) -> None:
    rundir = Path(tempfile.mkdtemp(prefix="tv-mtu-"))
    fab = Fabric(linear(2, 1), fabric_mtu=mtu)
    daemon: Daemon | None = None
    try:
        fab.build()
        assert fab.ovs is not None
        sock = f"unix:{fab.ovs.rundir}/tenantvisor.sock"
        daemon = Daemon(rundir, sock, lldp_interval=0.3).start()
        fab.set_controller(sock)
        daemon.wait_for("the link", lambda st: st["links"] == 2)
        deadline = time.monotonic() + 10
        links: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            links = daemon.get("/v1/physical/topology").json()["links"]
            if links and all(lk["mtu_ok"] is not None for lk in links):
                break
            time.sleep(0.2)
        assert [lk["mtu_ok"] for lk in links] == [ok, ok]
        warned = "set the MTU of both ends to at least 1504" in daemon.log_text()
        assert warned is not ok
    finally:
        if daemon is not None:
            daemon.stop()
        fab.close()
        shutil.rmtree(rundir, ignore_errors=True)
