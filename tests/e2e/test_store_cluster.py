"""The intent store as a 3-member Raft cluster (`tenantvisor store cluster-start`).

A daemon runs with `--db` naming the three members; the cluster's leader is killed: after the
election, API changes are written again; the daemon is restarted against the two survivors
and finds every tenant and network it had.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tenantvisor.store import Cluster
from tenantvisor.testbed.daemon import Daemon

pytestmark = pytest.mark.root


def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "tenantvisor.main", "store", *args],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_daemon_on_a_raft_cluster_survives_the_leader_and_restarts_from_it() -> None:
    base = Path(tempfile.mkdtemp(prefix="tv-cluster-"))
    daemons: list[Daemon] = []
    try:
        remote = _cli("cluster-start", str(base / "raft")).strip()
        assert remote.count("tcp:") == 3
        sock = f"unix:{base}/unused.sock"  # no pswitch here: the store is under test
        d1 = Daemon(base / "d1", sock, extra_args=["--db", remote])
        daemons.append(d1)
        d1.start()
        tok = d1.rest("POST", "/v1/tenants", {"name": "alice"})["token"]
        nid = d1.rest("POST", "/v1/networks", {"controller_urls": ["ptcp:16701"]}, tok)["id"]
        cluster = Cluster(base / "raft", 3)
        leader = cluster.leader()
        assert leader is not None
        leader.stop()  # the leader dies: the two others elect a new one
        deadline = time.monotonic() + 20
        while True:  # writes work again once the store has reconnected to the new leader
            r = d1.post("/v1/tenants", {"name": "bob"})
            if r.status_code == 201 or time.monotonic() > deadline:
                break
            assert r.status_code == 503, r.text
            time.sleep(0.5)
        assert r.status_code == 201, r.text
        d1.stop()
        d2 = Daemon(base / "d2", sock, extra_args=["--db", remote],
                    admin_token=d1.admin_token)  # fmt: skip
        daemons.append(d2)
        d2.start()
        names = sorted(t["name"] for t in d2.rest("GET", "/v1/tenants"))
        assert names == ["alice", "bob"]
        net = d2.rest("GET", f"/v1/networks/{nid}", None, tok)
        assert net["controller_urls"] == ["ptcp:16701:0.0.0.0"]
        status = _cli("cluster-status", str(base / "raft"))
        assert status.count("not running") == 1 and "Role: leader" in status
    finally:
        for d in daemons:
            d.stop()
        subprocess.run([sys.executable, "-m", "tenantvisor.main", "store", "cluster-stop",
                        str(base / "raft")], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(base, ignore_errors=True)
